/**
 * api-service benchmark (issue 7): ListPods(detail) latency with 10, 100 and
 * 500 pods on disk, and the service's memory, beside the floor: the same
 * pod directories read in-process (readdir + pod.json + exit records), which
 * is the least any reader of the on-disk state must do.
 *
 * The pods are synthetic (written by the tests' generator) and the service
 * talks to a real systemd in a node sandbox, so every ListPods pays its real
 * D-Bus listing call; none of the synthetic pods has live units.
 *
 *   node dist/bench/api-service.js [--calls 200]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startSandbox, stopSandbox } from '../sandbox/sandbox.js';
import { apiClient, makeSyntheticDataDir, spawnApiService } from '../test/helpers/api-client.js';
import { fmtMs, fmtRatio, nowMs, summarize } from './stats.js';

const calls = Number(process.argv[process.argv.indexOf('--calls') + 1] ?? 200) || 200;

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

const sandboxName = `bench-api-${process.pid}`;
const sandbox = await startSandbox({ name: sandboxName });
const rows: string[] = [];
try {
  for (const pods of [10, 100, 500]) {
    const dataDir = fs.mkdtempSync(path.join('/var/tmp', 'stevedore-bench-api-'));
    try {
      makeSyntheticDataDir(dataDir, { pods, appsPerPod: 2, images: 3 });
      const svc = await spawnApiService(['--dir', dataDir, '--dbus-address', sandbox.busAddress]);
      const client = apiClient(svc.address);
      try {
        for (let i = 0; i < 20; i++) await client.call('ListPods', { detail: true });
        const times: number[] = [];
        let listed = 0;
        for (let i = 0; i < calls; i++) {
          const t = nowMs();
          listed = (await client.call<{ pods: unknown[] }>('ListPods', { detail: true })).pods.length;
          times.push(nowMs() - t);
        }
        const floor: number[] = [];
        for (let i = 0; i < calls; i++) {
          const t = nowMs();
          readFloor(dataDir);
          floor.push(nowMs() - t);
        }
        const s = summarize(times);
        const f = summarize(floor);
        rows.push(`| ${pods} | ${listed} | ${fmtMs(s.median)} | ${fmtMs(s.p99)} | ${fmtMs(f.median)} | ${fmtRatio(s.median, f.median)} | ${rssMiB(svc.pid).toFixed(0)} MiB |`);
        process.stdout.write(`${pods} pods: ListPods(detail) median ${fmtMs(s.median)} ms p99 ${fmtMs(s.p99)} ms; floor median ${fmtMs(f.median)} ms (${fmtRatio(s.median, f.median)}); rss ${rssMiB(svc.pid).toFixed(0)} MiB\n`);
      } finally {
        client.close();
        await svc.stop();
      }
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  }
} finally {
  await stopSandbox(sandboxName);
}
process.stdout.write(`\n${os.cpus().length} x ${os.cpus()[0]?.model}, ${os.release()}, ${new Date().toISOString()}, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}\n`);
process.stdout.write('| pods on disk | listed | ListPods(detail) median ms | p99 ms | floor (in-process read) median ms | ratio | api-service RSS |\n|---|---|---|---|---|---|---|\n');
process.stdout.write(rows.join('\n') + '\n');
