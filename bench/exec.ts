/**
 * exec and port-forward benchmark (issue 15), on a `stevedore up` cluster of
 * its own:
 *   - `kubectl exec POD -- true`, end to end (kubectl's own start included;
 *     `kubectl get --raw /version` beside it is that floor);
 *   - the same exec at the node API (a WebSocket v5.channel.k8s.io client with
 *     the control plane's kubelet-client certificate, straight to :10250);
 *   - a bare `crun exec ID true` of the same container, timed inside the node
 *     (what the node adds = node API − bare crun exec);
 *   - port-forward throughput: a 100 MiB download through `kubectl
 *     port-forward` beside the same download straight to the pod IP.
 *
 *   node dist/bench/exec.js [--samples N] [--mib 100] [--update-results bench/RESULTS.md]
 *
 * Traffic goes only to loopback and the pod network this bench creates.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { freePort, run } from './cluster-util.js';
import { eachFlag, fmtMs, median, nowMs, replaceResultsSection, sleep, summarize } from './stats.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const CLI = path.join(REPO, 'bin', 'stevedore.js');

interface Args { samples: number; mib: number; updateResults?: string }

function parseArgs(argv: string[]): Args {
  const a: Args = { samples: 20, mib: 100 };
  eachFlag(argv, (k, v) => {
    if (k === '--samples') a.samples = Number(v());
    else if (k === '--mib') a.mib = Number(v());
    else if (k === '--update-results') a.updateResults = v();
    else return false;
    return true;
  });
  return a;
}

async function timeIt(n: number, fn: () => Promise<void>): Promise<number[]> {
  await fn(); // warm-up
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = nowMs();
    await fn();
    out.push(nowMs() - t);
  }
  return out;
}

function nodeApiExec(port: number, tls: { ca: string; cert: string; key: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${port}/exec/default/bench/c?command=true&output=1&error=1`, ['v5.channel.k8s.io'], { ...tls });
    let status = '';
    ws.on('message', (d: Buffer) => { if (d[0] === 3) status += d.subarray(1).toString(); });
    ws.on('close', () => (status.includes('Success') ? resolve() : reject(new Error(`exec status: ${status || '(none)'}`))));
    ws.on('error', reject);
  });
}

function download(port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = nowMs();
    let bytes = 0;
    const req = http.get({ host, port, path: '/big', agent: false }, (res) => {
      res.on('data', (d: Buffer) => { bytes += d.length; });
      res.on('end', () => resolve(bytes / (1 << 20) / ((nowMs() - t) / 1000)));
    });
    req.on('error', reject);
    req.setTimeout(60_000, () => req.destroy(new Error(`download from ${host}:${port} stalled for 60 s after ${bytes} bytes`)));
  });
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const dataDir = await fs.mkdtemp('/var/tmp/stevedore-bench-exec-');
  const sandbox = `bench-exec-${randomBytes(2).toString('hex')}`;
  const [port, nodePort, apiServicePort] = [await freePort(), await freePort(), await freePort()];
  const podCidr = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250)}.0/24`;
  const up = await run(process.execPath, [CLI, 'up', '--data-dir', dataDir, '--port', String(port), '--node-api-port', String(nodePort), '--api-service-port', String(apiServicePort),
    '--bridge', `sdb${randomBytes(3).toString('hex')}`, '--pod-cidr', podCidr, '--node-name', 'bench-node', '--sandbox-name', sandbox]);
  if (up.code !== 0) throw new Error(`stevedore up failed:\n${up.stderr}`);
  // Whatever happens (a signal, a hang on a loaded machine), the cluster goes with the bench.
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    await run(process.execPath, [CLI, 'down', '--data-dir', dataDir]);
    await fs.rm(dataDir, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => { void cleanup().then(() => process.exit(130)); });
  const watchdog = setTimeout(() => { process.stderr.write('bench: exec bench took over 15 minutes; stopping\n'); void cleanup().then(() => process.exit(1)); }, 15 * 60_000);
  watchdog.unref();
  const env = { KUBECONFIG: path.join(dataDir, 'kubeconfig') };
  const kubectl = (a: string[], input?: string) => run('kubectl', a, env, input);
  const onNode = (argv: string[]) => run(process.execPath, [CLI, 'sandbox', 'exec', '--name', sandbox, '--', ...argv]);
  try {
    const pod = `apiVersion: v1\nkind: Pod\nmetadata: {name: bench}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: busybox\n    command: [sh, -c, 'mkdir -p /www && dd if=/dev/zero of=/www/big bs=1M count=${args.mib} 2>/dev/null && exec httpd -f -p 8080 -h /www']\n`;
    const applied = await kubectl(['apply', '-f', '-'], pod);
    if (applied.code !== 0) throw new Error(applied.stderr);
    for (let i = 0; ; i++) {
      const r = await kubectl(['get', 'pod', 'bench', '-o', 'jsonpath={.status.containerStatuses[0].ready}/{.status.podIP}/{.status.containerStatuses[0].containerID}']);
      if (r.stdout.startsWith('true/')) break;
      if (i > 120) throw new Error('the bench pod did not start');
      await sleep(500);
    }
    const [podIP, containerID] = (await kubectl(['get', 'pod', 'bench', '-o', 'jsonpath={.status.podIP} {.status.containerStatuses[0].containerID}'])).stdout.split(' ');
    const [uuid, app] = containerID!.replace('rkt://', '').split(':');
    const crunId = `stevedore-${uuid!.replace(/-/g, '')}-${app}`;
    // Wait until the dd is done and httpd answers.
    for (let i = 0; (await kubectl(['exec', 'bench', '--', 'sh', '-c', 'pidof httpd'])).code !== 0; i++) { if (i > 120) throw new Error('httpd did not start'); await sleep(500); }

    const pki = path.join(dataDir, 'control-plane', 'pki');
    const tls = { ca: await fs.readFile(path.join(pki, 'ca.crt'), 'utf8'), cert: await fs.readFile(path.join(pki, 'apiserver-kubelet-client.crt'), 'utf8'), key: await fs.readFile(path.join(pki, 'apiserver-kubelet-client.key'), 'utf8') };

    const step = (what: string) => process.stderr.write(`bench: ${what}\n`);
    step('kubectl floor');
    const kubectlFloor = await timeIt(args.samples, async () => { const r = await kubectl(['get', '--raw', '/version']); if (r.code) throw new Error(r.stderr); });
    step('kubectl exec');
    const kubectlExec = await timeIt(args.samples, async () => { const r = await kubectl(['exec', 'bench', '--', 'true']); if (r.code) throw new Error(r.stderr); });
    step('node API exec');
    const nodeApi = await timeIt(args.samples, () => nodeApiExec(nodePort, tls));
    // Timed inside the node: the sandbox's own process start is not part of a crun exec.
    const loop = `for i in $(seq ${args.samples + 1}); do a=$(date +%s%N); crun exec ${crunId} true || exit 1; b=$(date +%s%N); echo $(( (b-a)/1000 )); done`;
    step('bare crun exec');
    const bare = await onNode(['sh', '-c', loop]);
    if (bare.code !== 0) throw new Error(`crun exec: ${bare.stderr}`);
    const crunExec = bare.stdout.trim().split('\n').slice(1).map((us) => Number(us) / 1000);

    const localPort = await freePort();
    const pf = spawn('kubectl', ['port-forward', 'pod/bench', `${localPort}:8080`], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let pfOut = '';
    pf.stdout.on('data', (d) => { pfOut += d; });
    pf.stderr.on('data', (d) => { pfOut += d; });
    const forwarded: number[] = [];
    const direct: number[] = [];
    try {
      for (let i = 0; !/Forwarding from/.test(pfOut); i++) { if (i > 100) throw new Error('port-forward did not start'); await sleep(100); }
      for (let i = 0; i < 3; i++) {
        step(`download ${i + 1}/3 through port-forward`);
        forwarded.push(await download(localPort, '127.0.0.1').catch((err: Error) => { throw new Error(`${err.message}; kubectl port-forward said: ${pfOut}`); }));
        step(`download ${i + 1}/3 straight to ${podIP}`);
        direct.push(await download(8080, podIP!));
      }
    } finally {
      pf.kill('SIGTERM');
    }
    const s = (v: number[]) => summarize(v);
    const rows = [
      ['`kubectl get --raw /version` (kubectl\'s own floor)', s(kubectlFloor)],
      ['`kubectl exec bench -- true` (end to end)', s(kubectlExec)],
      ['node API exec (WebSocket v5, straight to :10250)', s(nodeApi)],
      ['bare `crun exec ID true` inside the node', s(crunExec)],
    ] as const;
    const added = median(nodeApi) - median(crunExec);
    const body = [
      '<!-- bench:exec:begin -->',
      `Run ${new Date().toISOString().slice(0, 16)}Z, ${args.samples} samples each after one warm-up (ms):`,
      '',
      '| what | median | p90 | min | max |',
      '|---|---|---|---|---|',
      ...rows.map(([name, v]) => `| ${name} | ${fmtMs(v.median)} | ${fmtMs(v.p90)} | ${fmtMs(v.min)} | ${fmtMs(v.max)} |`),
      '',
      `The node adds **${fmtMs(added)} ms** (median) over a bare crun exec (goal: under 30 ms); end to end, kubectl adds ${fmtMs(median(kubectlExec) - median(nodeApi))} ms over the node API (its process start, discovery, the control plane's splice).`,
      '',
      `Port-forward, ${args.mib} MiB download (MiB/s, median of 3): through \`kubectl port-forward\` ${median(forwarded).toFixed(0)}, straight to the pod IP ${median(direct).toFixed(0)} (${(median(forwarded) / median(direct) * 100).toFixed(0)}%; goal: at least 50%).`,
      '<!-- bench:exec:end -->',
    ].join('\n');
    process.stdout.write(`${body}\n`);
    if (args.updateResults) await replaceResultsSection(args.updateResults, '<!-- bench:exec:begin -->', '<!-- bench:exec:end -->', body, '# exec and port-forward (bench/exec.ts, issue 15)');
  } finally {
    await cleanup();
  }
}

await main();
