/**
 * Watch fan-out benchmark (issue 22): 100 watchers on pods, each its own HTTPS watch connection
 * (`?watch=true`, as client-go, client-node and kubectl open them), while 100 pods are created one
 * after the other. Reports whether every watcher saw every pod's ADDED event, the latency from the
 * write (the moment the create request is sent) to each delivery and, beside it, the create's own
 * round trip, and the control plane's RSS (peak, sampled every 100 ms, and at the end).
 *
 * The control plane runs as its own process (`stevedore control-plane`), so its RSS is its own;
 * the watchers and the writer share this one.
 *
 *   bash bench/run.sh --watch-fanout [--watchers 100] [--pods 100] [--update-results bench/RESULTS.md]
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { eachFlag, fmtMs, nowMs, percentile, replaceResultsSection, sleep } from './stats.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BEGIN = '<!-- bench:watch-fanout:begin -->';
const END = '<!-- bench:watch-fanout:end -->';

interface Args { watchers: number; pods: number; updateResults?: string }
const args: Args = { watchers: 100, pods: 100 };
eachFlag(process.argv.slice(2), (k, v) => {
  if (k === '--watchers') args.watchers = Number(v());
  else if (k === '--pods') args.pods = Number(v());
  else if (k === '--update-results') args.updateResults = v();
  else return false;
  return true;
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function rssMiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

async function main(): Promise<void> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stevedore-bench-fanout-'));
  const port = await freePort();
  const cp = spawn(process.execPath, [path.join(REPO, 'bin', 'stevedore.js'), 'control-plane', '--data-dir', dataDir, '--port', String(port), '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const cpPid = cp.pid!;
  let peakRss = 0;
  const sampler = setInterval(() => { peakRss = Math.max(peakRss, rssMiB(cpPid) || 0); }, 100);
  const sockets: https.Agent[] = [];
  try {
    const base = `https://127.0.0.1:${port}`;
    let ca = '';
    let token = '';
    for (let i = 0; ; i++) {
      if (i > 200) throw new Error('the control plane did not start in 20 s');
      try {
        ca = fs.readFileSync(path.join(dataDir, 'pki', 'ca.crt'), 'utf8');
        token = fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
        const ok = await new Promise<boolean>((resolve) => {
          https.get(`${base}/readyz`, { ca }, (res) => { res.resume(); resolve(res.statusCode === 200); }).on('error', () => resolve(false));
        });
        if (ok) break;
      } catch { /* not written yet */ }
      await sleep(100);
    }
    const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json' };
    const rssIdle = rssMiB(cpPid);

    // Each watcher: its own connection (agent per watcher), counting ADDED events of the bench's pods.
    const delivered: Array<Map<string, number>> = [];
    const opened: Promise<void>[] = [];
    const requests: ReturnType<typeof https.request>[] = [];
    for (let w = 0; w < args.watchers; w++) {
      const seen = new Map<string, number>();
      delivered.push(seen);
      const agent = new https.Agent({ keepAlive: false, maxSockets: 1 });
      sockets.push(agent);
      opened.push(new Promise<void>((resolve, reject) => {
        const req = https.request(`${base}/api/v1/namespaces/default/pods?watch=true&labelSelector=bench%3Dfanout&timeoutSeconds=600`, { ca, headers, agent }, (res) => {
          if (res.statusCode !== 200) return reject(new Error(`watch ${w}: HTTP ${res.statusCode}`));
          resolve();
          let buf = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            const at = nowMs();
            buf += chunk;
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, nl);
              buf = buf.slice(nl + 1);
              if (!line) continue;
              const ev = JSON.parse(line) as { type: string; object: { metadata: { name: string } } };
              if (ev.type === 'ADDED' && !seen.has(ev.object.metadata.name)) seen.set(ev.object.metadata.name, at);
            }
          });
        });
        req.on('error', reject);
        req.end();
        requests.push(req);
      }));
    }
    await Promise.all(opened);
    await sleep(500);
    const rssWatching = rssMiB(cpPid);

    const sent = new Map<string, number>();
    const roundTrips: number[] = [];
    const writeStart = nowMs();
    for (let i = 0; i < args.pods; i++) {
      const name = `fanout-${i}`;
      const body = JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name, labels: { bench: 'fanout' } }, spec: { containers: [{ name: 'main', image: 'localhost/busybox:latest' }] } });
      const t0 = nowMs();
      sent.set(name, t0);
      const status = await new Promise<number>((resolve, reject) => {
        const req = https.request(`${base}/api/v1/namespaces/default/pods`, { method: 'POST', ca, headers: { ...headers, 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)) } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); });
        req.on('error', reject);
        req.end(body);
      });
      roundTrips.push(nowMs() - t0);
      if (status !== 201) throw new Error(`creating ${name}: HTTP ${status}`);
    }
    const writeMs = nowMs() - writeStart;
    // Wait until every watcher has every pod, or 10 s.
    const want = args.watchers * args.pods;
    const count = () => delivered.reduce((n, m) => n + m.size, 0);
    for (const end = nowMs() + 10_000; count() < want && nowMs() < end;) await sleep(20);
    const latencies: number[] = [];
    for (const seen of delivered) for (const [name, at] of seen) latencies.push(at - sent.get(name)!);
    const rssEnd = rssMiB(cpPid);
    peakRss = Math.max(peakRss, rssEnd || 0);
    for (const r of requests) r.destroy();

    const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    const complete = count() === want;
    const p50 = percentile(latencies, 50), p99 = percentile(latencies, 99), max = Math.max(...latencies);
    const lines = [
      `Measured ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}, load average ${load}, ${os.cpus().length} CPUs; \`node dist/bench/watch-fanout.js --watchers ${args.watchers} --pods ${args.pods}\`.`,
      '',
      '| measure | value | goal |',
      '|---|---|---|',
      `| events delivered | ${count()} of ${want} (${complete ? 'every watcher saw every pod' : 'MISSING EVENTS'}) | all |`,
      `| write → delivery p50 | ${fmtMs(p50)} ms | |`,
      `| write → delivery p99 | ${fmtMs(p99)} ms | < 50 ms |`,
      `| write → delivery max | ${fmtMs(max)} ms | |`,
      `| create round trip p50 / p99 | ${fmtMs(percentile(roundTrips, 50))} / ${fmtMs(percentile(roundTrips, 99))} ms | |`,
      `| ${args.pods} creates, one after the other | ${fmtMs(writeMs)} ms | |`,
      `| control plane RSS idle / ${args.watchers} watches open / peak / end | ${rssIdle.toFixed(0)} / ${rssWatching.toFixed(0)} / ${peakRss.toFixed(0)} / ${rssEnd.toFixed(0)} MiB | < 150 MiB |`,
    ];
    const text = lines.join('\n');
    console.log(text);
    if (args.updateResults) await replaceResultsSection(args.updateResults, BEGIN, END, `${BEGIN}\n${text}\n${END}`, '# Watch fan-out: 100 watchers, 100 pods (issue 22)');
    if (!complete) process.exitCode = 1;
  } finally {
    clearInterval(sampler);
    for (const a of sockets) a.destroy();
    cp.kill('SIGTERM');
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { cp.kill('SIGKILL'); resolve(); }, 10_000);
      cp.once('exit', () => { clearTimeout(timer); resolve(); });
    });
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
