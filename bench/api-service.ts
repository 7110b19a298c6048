/**
 * api-service benchmark (issue 7): ListPods(detail) latency with 10, 100 and
 * 500 pods on disk, and the service's memory, beside the floor: the same
 * pod directories read in-process (readdir + pod.json + exit records), which
 * is the least any reader of the on-disk state must do.
 *
 * Two clients ask, one after the other, against the same service: this
 * repository's grpc-js client (decoding into plain objects with defaults,
 * as the tests do) and a C-core client (Debian's python3-grpcio with
 * protobuf's C++ decoder, bench/api-client.py) — the kind monitoring tools
 * use. The service's own handler times come from its --metrics histogram.
 *
 * The pods are synthetic (written by the tests' generator) and the service
 * talks to a real systemd in a node sandbox, so every ListPods pays its real
 * D-Bus listing call; none of the synthetic pods has live units.
 *
 *   bash bench/run.sh --api-service [--calls 500] [--no-python] [--update-results bench/RESULTS.md]
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSandbox, stopSandbox } from '../sandbox/sandbox.js';
import { V1ALPHA_PROTO } from '../api-service/proto.js';
import { apiClient, makeSyntheticDataDir, spawnApiService } from '../test/helpers/api-client.js';
import { eachFlag, fmtMs, fmtRatio, nowMs, replaceResultsSection, summarize, type Summary } from './stats.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BEGIN = '<!-- bench:api-service:begin -->';
const END = '<!-- bench:api-service:end -->';
const WARMUP = 20;
/** Debian's Python, where python3-grpcio is installed (an earlier python3 on PATH, e.g. pyenv's, lacks it). */
const PYTHON = '/usr/bin/python3';

interface Args { calls: number; python: boolean; updateResults?: string }
const args: Args = { calls: 500, python: true };
eachFlag(process.argv.slice(2), (k, v) => {
  if (k === '--calls') args.calls = Number(v());
  else if (k === '--no-python') args.python = false;
  else if (k === '--update-results') args.updateResults = v();
  else return false;
  return true;
});

function readFloor(dataDir: string): number {
  const run = path.join(dataDir, 'pods', 'run');
  let n = 0;
  for (const uuid of fs.readdirSync(run)) {
    JSON.parse(fs.readFileSync(path.join(run, uuid, 'pod.json'), 'utf8'));
    for (const app of fs.readdirSync(path.join(run, uuid, 'apps'))) n += fs.readdirSync(path.join(run, uuid, 'apps', app, 'exits')).length;
  }
  return n;
}

function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Python stubs generated from the project's proto, or why the C-core client cannot run. */
function pythonStubs(dir: string): string | { skipped: string } {
  const probe = spawnSync(PYTHON, ['-c', 'import grpc, grpc_tools'], { encoding: 'utf8' });
  if (probe.status !== 0) return { skipped: 'python3-grpcio / python3-grpc-tools not installed (bench/run.sh installs them)' };
  const gen = spawnSync(PYTHON, ['-m', 'grpc_tools.protoc', `-I${path.dirname(V1ALPHA_PROTO)}`, `--python_out=${dir}`, `--grpc_python_out=${dir}`, V1ALPHA_PROTO], { encoding: 'utf8' });
  if (gen.status !== 0) throw new Error(`generating Python stubs failed: ${gen.stderr}`);
  return dir;
}

function pythonClient(stubs: string, address: string): Promise<{ ms: number[]; pods: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [path.join(REPO, 'bench', 'api-client.py'), stubs, address, String(args.calls), String(WARMUP)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as { ms: number[]; pods: number }) : reject(new Error(`bench/api-client.py exited ${code}: ${err}`))));
  });
}

/** Shares of ListPods calls the service itself answered within 5 and 20 ms, from one read of its --metrics histogram. */
async function handlerShares(metricsAddress: string): Promise<{ within5: number; within20: number }> {
  const text = await (await fetch(`http://${metricsAddress}/metrics`)).text();
  const bucket = (b: string) => Number(new RegExp(`^stevedore_api_request_duration_seconds_bucket\\{rpc="ListPods",le="${b.replace('+', '\\+')}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  const all = bucket('+Inf');
  return { within5: bucket('0.005') / all, within20: bucket('0.02') / all };
}

interface Row { pods: number; listed: number; node: Summary; python?: Summary; floor: Summary; rss: number; within5: number; within20: number }

const work = fs.mkdtempSync(path.join('/var/tmp', 'stevedore-bench-api-'));
const stubs = args.python ? pythonStubs(work) : { skipped: '--no-python' };
const load = os.loadavg().map((l) => l.toFixed(1)).join(' ');
const sandboxName = `bench-api-${process.pid}`;
const rows: Row[] = [];
const node = await startSandbox({ name: sandboxName });
try {
  for (const pods of [10, 100, 500]) {
    const dataDir = path.join(work, `pods-${pods}`);
    fs.mkdirSync(dataDir);
    makeSyntheticDataDir(dataDir, { pods, appsPerPod: 2, images: 3 });
    const svc = await spawnApiService(['--dir', dataDir, '--dbus-address', node.busAddress, '--metrics', '127.0.0.1:0']);
    const client = apiClient(svc.address);
    try {
      for (let i = 0; i < WARMUP; i++) await client.call('ListPods', { detail: true });
      const times: number[] = [];
      let listed = 0;
      for (let i = 0; i < args.calls; i++) {
        const t = nowMs();
        listed = (await client.call<{ pods: unknown[] }>('ListPods', { detail: true })).pods.length;
        times.push(nowMs() - t);
      }
      const python = typeof stubs === 'string' ? await pythonClient(stubs, svc.address) : undefined;
      if (python && python.pods !== listed) throw new Error(`the Python client listed ${python.pods} pods, the grpc-js client ${listed}`);
      const floor: number[] = [];
      for (let i = 0; i < args.calls; i++) {
        const t = nowMs();
        readFloor(dataDir);
        floor.push(nowMs() - t);
      }
      const row: Row = {
        pods, listed, node: summarize(times), ...(python ? { python: summarize(python.ms) } : {}), floor: summarize(floor), rss: rssMiB(svc.pid),
        ...(await handlerShares(svc.metricsAddress!)),
      };
      rows.push(row);
      process.stderr.write(`bench: ${pods} pods: grpc-js median ${fmtMs(row.node.median)} p99 ${fmtMs(row.node.p99)} ms; C-core ${row.python ? `median ${fmtMs(row.python.median)} p99 ${fmtMs(row.python.p99)} ms` : '-'}; rss ${row.rss.toFixed(0)} MiB\n`);
    } finally {
      client.close();
      await svc.stop();
    }
  }
} finally {
  await stopSandbox(sandboxName);
  fs.rmSync(work, { recursive: true, force: true });
}

const cpu = os.cpus();
const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
const lines = [
  `Machine: ${cpu.length} × ${cpu[0]?.model ?? '?'}, kernel ${os.release()}, node ${process.version}, ${new Date().toISOString().slice(0, 16)}Z; load average at start ${load}.`,
  `${args.calls} sequential ListPods(detail=true) per client after ${WARMUP} warm-up calls; pods with 2 apps each.`,
  '',
  '| pods on disk | C-core client (python3-grpcio) median | p99 | grpc-js client median | p99 | service handler ≤ 5 ms / ≤ 20 ms | floor (in-process read) median | C-core median vs floor | api-service RSS |',
  '|---|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.pods} | ${r.python ? `${fmtMs(r.python.median)} ms` : '–'} | ${r.python ? `${fmtMs(r.python.p99)} ms` : '–'} | ${fmtMs(r.node.median)} ms | ${fmtMs(r.node.p99)} ms | ${pct(r.within5)} / ${pct(r.within20)} | ${fmtMs(r.floor.median)} ms | ${r.python ? fmtRatio(r.python.median, r.floor.median) : '–'} | ${r.rss.toFixed(0)} MiB |`),
  '',
  typeof stubs === 'string' ? '' : `C-core client skipped: ${stubs.skipped}.`,
];
const at100 = rows.find((r) => r.pods === 100);
if (at100) {
  const verdict = (s: Summary | undefined) => (s === undefined ? 'not measured' : `${fmtMs(s.p99)} ms, ${s.p99 < 20 ? 'MET' : 'MISSED'}`);
  lines.push(`Goal (p99 < 20 ms at 100 pods): C-core client ${verdict(at100.python)}; grpc-js client ${verdict(at100.node)}.`);
}
const text = lines.join('\n').replace(/\n{3,}/g, '\n\n').trim();
process.stdout.write(`${text}\n`);
if (args.updateResults) {
  const body = `${BEGIN}\n_Generated by \`bash bench/run.sh --api-service --calls ${args.calls}${args.python ? '' : ' --no-python'}\`._\n\n${text}\n${END}`;
  await replaceResultsSection(args.updateResults, BEGIN, END, body, '# api-service: ListPods(detail) latency (issue 7)');
}
