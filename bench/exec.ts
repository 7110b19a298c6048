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
 *     port-forward` beside the same download straight to the pod IP, and
 *     through kubectl port-forward against a minimal relay (bench/pf-relay.ts:
 *     what kubectl alone can move), alternating; with the CPU seconds each
 *     process on the path spent per download (kubectl, control plane, agent).
 *     The downloads are curl's (a native client costs little beside the
 *     path), and also Node's http client's, which costs more per MiB than a
 *     hop and so caps the direct transfer; the ratio differs several times
 *     between the two (bench/RESULTS.md);
 *   - port-forward latency: a small request on a new connection through it,
 *     beside the same straight to the pod IP.
 *
 *   node dist/bench/exec.js [--samples N] [--mib 100] [--rounds 3] [--port-forward-only] [--update-results bench/RESULTS.md]
 *
 * Traffic goes only to loopback and the pod network this bench creates.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { freePort, readProc, run } from './cluster-util.js';
import { eachFlag, fmtMs, median, nowMs, replaceResultsSection, sleep, summarize } from './stats.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const CLI = path.join(REPO, 'bin', 'stevedore.js');

interface Args { samples: number; mib: number; rounds: number; portForwardOnly: boolean; updateResults?: string }

function parseArgs(argv: string[]): Args {
  const a: Args = { samples: 20, mib: 100, rounds: 3, portForwardOnly: false };
  eachFlag(argv, (k, v) => {
    if (k === '--samples') a.samples = Number(v());
    else if (k === '--mib') a.mib = Number(v());
    else if (k === '--rounds') a.rounds = Number(v());
    else if (k === '--port-forward-only') a.portForwardOnly = true;
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

/** MiB/s of one download by curl, from its connect to the last byte (its own start not included). */
async function curlDownload(port: number, host: string): Promise<number> {
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/big`;
  const r = await run('curl', ['-sS', '--max-time', '60', '-o', '/dev/null', '-w', '%{size_download} %{time_total}', url]);
  const [bytes, seconds] = r.stdout.trim().split(' ').map(Number);
  if (r.code !== 0 || !bytes || !seconds) throw new Error(`curl ${url} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout}`);
  return bytes / (1 << 20) / seconds;
}

/** MiB/s of one download by Node's http client in this process, from the request to the last byte. */
function nodeDownload(port: number, host: string): Promise<number> {
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

/** One small request on a new connection (the first KiB of the file): ms from connecting to the whole answer. */
function smallRequest(port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = nowMs();
    const req = http.get({ host, port, path: '/big', agent: false, headers: { Range: 'bytes=0-1023' } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 206 ? resolve(nowMs() - t) : reject(new Error(`small request to ${host}:${port}: HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`small request to ${host}:${port}: no answer in 10 s`)));
  });
}

/**
 * ms of CPU per MiB for AES-128-GCM sealing 16 KiB TLS records, by `openssl speed` (the OpenSSL
 * build's own loop, without a binding's per-call cost): the cheaper of the suites the path
 * negotiates, so a floor.
 */
async function aesGcmMsPerMiB(): Promise<number> {
  const r = await run('openssl', ['speed', '-elapsed', '-seconds', '2', '-bytes', '16384', '-evp', 'aes-128-gcm']);
  const kbPerS = Number(/^AES-128-GCM\s+([\d.]+)k/m.exec(r.stdout)?.[1]);
  if (r.code !== 0 || !kbPerS) throw new Error(`openssl speed aes-128-gcm: exit ${r.code}: ${r.stderr.trim() || r.stdout}`);
  return 1000 / (kbPerS * 1000 / (1 << 20));
}

/** CPU seconds (user + system) of each process while `fn` runs; a process that is gone counts 0. */
async function cpuSecondsDuring<T>(pids: Record<string, number>, fn: () => Promise<T>): Promise<{ value: T; cpu: Record<string, number> }> {
  const ticks = async () => Object.fromEntries(await Promise.all(Object.entries(pids).map(async ([k, pid]) => [k, await readProc(pid).then((p) => p.ticks, () => NaN)] as const)));
  const before = await ticks();
  const value = await fn();
  const after = await ticks();
  const clk = 100; // USER_HZ on Linux
  return { value, cpu: Object.fromEntries(Object.keys(pids).map((k) => [k, (after[k]! - before[k]!) / clk])) };
}

/** The PID listening on a TCP port (ss shows host PIDs, also for a node sandbox's processes). */
async function listenerPid(port: number): Promise<number> {
  const r = await run('ss', ['-ltnpH', `sport = :${port}`]);
  const pid = Number(/pid=(\d+)/.exec(r.stdout)?.[1]);
  if (!pid) throw new Error(`no process listens on port ${port}: ${r.stdout}${r.stderr}`);
  return pid;
}

/** `kubectl port-forward` on a free local port, once it listens. */
async function startPortForward(env: Record<string, string>): Promise<{ port: number; pid: number; output: () => string; stop: () => void }> {
  const port = await freePort();
  const pf = spawn('kubectl', ['port-forward', 'pod/bench', `${port}:8080`], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  pf.stdout.on('data', (d) => { out += d; });
  pf.stderr.on('data', (d) => { out += d; });
  for (let i = 0; !/Forwarding from/.test(out); i++) {
    if (i > 100) { pf.kill('SIGTERM'); throw new Error(`port-forward did not start: ${out}`); }
    await sleep(100);
  }
  return { port, pid: pf.pid!, output: () => out, stop: () => pf.kill('SIGTERM') };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const dataDir = await fs.mkdtemp('/var/tmp/stevedore-bench-exec-');
  const sandbox = `bench-exec-${randomBytes(2).toString('hex')}`;
  // Every port its own (the cluster DNS too: another cluster on the machine may hold the default 10053).
  const [port, nodePort, apiServicePort, dnsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const podCidr = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250)}.0/24`;
  const up = await run(process.execPath, [CLI, 'up', '--data-dir', dataDir, '--port', String(port), '--node-api-port', String(nodePort), '--api-service-port', String(apiServicePort), '--dns-port', String(dnsPort),
    '--bridge', `sdb${randomBytes(3).toString('hex')}`, '--pod-cidr', podCidr, '--node-name', 'bench-node', '--sandbox-name', sandbox]);
  if (up.code !== 0) {
    // What up made before it failed (a sandbox, the control plane) goes too.
    await run(process.execPath, [CLI, 'down', '--data-dir', dataDir]);
    await fs.rm(dataDir, { recursive: true, force: true });
    throw new Error(`stevedore up failed:\n${up.stderr}`);
  }
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
    let kubectlFloor: number[] = [], kubectlExec: number[] = [], nodeApi: number[] = [], crunExec: number[] = [];
    if (!args.portForwardOnly) {
      step('kubectl floor');
      kubectlFloor = await timeIt(args.samples, async () => { const r = await kubectl(['get', '--raw', '/version']); if (r.code) throw new Error(r.stderr); });
      step('kubectl exec');
      kubectlExec = await timeIt(args.samples, async () => { const r = await kubectl(['exec', 'bench', '--', 'true']); if (r.code) throw new Error(r.stderr); });
      step('node API exec');
      nodeApi = await timeIt(args.samples, () => nodeApiExec(nodePort, tls));
      // Timed inside the node: the sandbox's own process start is not part of a crun exec.
      const loop = `for i in $(seq ${args.samples + 1}); do a=$(date +%s%N); crun exec ${crunId} true || exit 1; b=$(date +%s%N); echo $(( (b-a)/1000 )); done`;
      step('bare crun exec');
      const bare = await onNode(['sh', '-c', loop]);
      if (bare.code !== 0) throw new Error(`crun exec: ${bare.stderr}`);
      crunExec = bare.stdout.trim().split('\n').slice(1).map((us) => Number(us) / 1000);
    }

    // The relay: a self-signed serving pair (kubectl is told to skip verification for it alone) and a kubeconfig naming it.
    const relayDir = path.join(dataDir, 'pf-relay');
    await fs.mkdir(relayDir, { recursive: true });
    const openssl = await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', path.join(relayDir, 'key.pem'), '-out', path.join(relayDir, 'cert.pem')]);
    if (openssl.code !== 0) throw new Error(`openssl: ${openssl.stderr}`);
    const kubeconfig = parseYaml(await fs.readFile(env.KUBECONFIG, 'utf8'));
    await fs.writeFile(path.join(relayDir, 'ca.pem'), Buffer.from(kubeconfig.clusters[0].cluster['certificate-authority-data'], 'base64'));
    const relayPort = await freePort();
    kubeconfig.clusters[0].cluster = { server: `https://127.0.0.1:${relayPort}`, 'insecure-skip-tls-verify': true };
    await fs.writeFile(path.join(relayDir, 'kubeconfig'), stringifyYaml(kubeconfig));
    const relay = spawn(process.execPath, [path.join(REPO, 'dist', 'bench', 'pf-relay.js'), '--listen', String(relayPort), '--cert', path.join(relayDir, 'cert.pem'), '--key', path.join(relayDir, 'key.pem'),
      '--upstream', `https://127.0.0.1:${port}`, '--ca', path.join(relayDir, 'ca.pem'), '--pod-ip', podIP!], { stdio: ['ignore', 'pipe', 'inherit'] });
    let relayOut = '';
    relay.stdout.on('data', (d) => { relayOut += d; });
    /** MiB/s per round for each path and client: `pf` through the cluster, `relay` through the minimal relay, `direct` to the pod IP. */
    const speeds = { pfCurl: [] as number[], directCurl: [] as number[], relayCurl: [] as number[], pfNode: [] as number[], directNode: [] as number[] };
    const smallForwarded: number[] = [], smallDirect: number[] = [];
    /** CPU seconds of this process (Node's http client) per direct download. */
    const nodeClientCpu: number[] = [];
    const cpuForwarded: Array<Record<string, number>> = [], cpuRelayed: Array<Record<string, number>> = [];
    const pf = await startPortForward(env);
    let pfRelay: Awaited<ReturnType<typeof startPortForward>> | undefined;
    const upJson = JSON.parse(await fs.readFile(path.join(dataDir, 'up.json'), 'utf8')) as { controlPlanePid: number };
    const agentPid = await listenerPid(nodePort);
    const load: string[] = [];
    try {
      for (let i = 0; !relayOut.includes('listening'); i++) { if (i > 100) throw new Error('the relay did not start'); await sleep(100); }
      pfRelay = await startPortForward({ KUBECONFIG: path.join(relayDir, 'kubeconfig') });
      const said = (which: Awaited<ReturnType<typeof startPortForward>>) => (err: Error) => { throw new Error(`${err.message}; kubectl port-forward said: ${which.output()}`); };
      for (let i = 0; i < args.rounds; i++) {
        load.push((await fs.readFile('/proc/loadavg', 'utf8')).split(' ')[0]!);
        step(`round ${i + 1}/${args.rounds}: curl through port-forward, straight to ${podIP}, through the minimal relay; Node's http client through port-forward, straight`);
        const f = await cpuSecondsDuring({ kubectl: pf.pid, 'control plane': upJson.controlPlanePid, agent: agentPid }, () => curlDownload(pf.port, '127.0.0.1').catch(said(pf)));
        speeds.pfCurl.push(f.value);
        cpuForwarded.push(f.cpu);
        speeds.directCurl.push(await curlDownload(8080, podIP!));
        const r = await cpuSecondsDuring({ kubectl: pfRelay.pid, relay: relay.pid! }, () => curlDownload(pfRelay!.port, '127.0.0.1').catch(said(pfRelay!)));
        speeds.relayCurl.push(r.value);
        cpuRelayed.push(r.cpu);
        speeds.pfNode.push(await nodeDownload(pf.port, '127.0.0.1').catch(said(pf)));
        const before = process.cpuUsage();
        speeds.directNode.push(await nodeDownload(8080, podIP!));
        const used = process.cpuUsage(before);
        nodeClientCpu.push((used.user + used.system) / 1e6);
      }
      step(`${args.samples} small requests through port-forward and straight to ${podIP}, alternating`);
      for (let i = 0; i <= args.samples; i++) {
        const [f, d] = [await smallRequest(pf.port, '127.0.0.1'), await smallRequest(8080, podIP!)];
        if (i > 0) { smallForwarded.push(f); smallDirect.push(d); } // the first of each is a warm-up
      }
    } finally {
      pf.stop();
      pfRelay?.stop();
      relay.kill('SIGTERM');
    }
    // Each round's download through port-forward beside its own direct one, a moment apart: on a
    // shared machine the direct transfer's speed wanders between rounds more than the ratio does.
    const shares = (through: number[], direct: number[]) => through.map((f, i) => (f / direct[i]!) * 100);
    const pct = (v: number) => `${v.toFixed(0)}%`;
    const curlShares = shares(speeds.pfCurl, speeds.directCurl), nodeShares = shares(speeds.pfNode, speeds.directNode);
    const cpuText = (samples: Array<Record<string, number>>) => Object.keys(samples[0]!).map((k) => `${k} ${median(samples.map((c) => c[k]!)).toFixed(2)}`).join(', ');
    // A floor on the path's CPU per MiB whatever the node's code does: kubectl's own (measured
    // against the relay) and the three AES-GCM passes the two TLS hops need on a download (the node
    // seals, the control plane opens and seals again). Curl, the pod's server, the kernel's copies
    // and everything else counted as free, the machine's cores give at most this.
    const kubectlMsPerMiB = median(cpuRelayed.map((c) => c.kubectl!)) * 1000 / args.mib;
    const aesMsPerMiB = await aesGcmMsPerMiB();
    const cores = os.availableParallelism();
    const pathCeiling = cores * 1000 / (kubectlMsPerMiB + 3 * aesMsPerMiB);
    const pfLines = [
      `Port-forward, ${args.mib} MiB download (MiB/s, median of ${args.rounds} rounds; load average ${load.join(', ')} at each round's start). `
      + `With curl: through \`kubectl port-forward\` ${median(speeds.pfCurl).toFixed(0)}, straight to the pod IP ${median(speeds.directCurl).toFixed(0)} `
      + `(**${pct(median(curlShares))}**, the median of each round's own share: ${curlShares.map((r) => r.toFixed(0)).join(', ')} %; goal: at least 50%); `
      + `through kubectl port-forward against a minimal relay (bench/pf-relay.ts: one process, one TLS hop, the agent's SPDY code, the pod dialled at its IP) ${median(speeds.relayCurl).toFixed(0)}. `
      + `With Node's http client downloading (it spends ${(median(nodeClientCpu) * 1000 / args.mib).toFixed(2)} ms of CPU per MiB on the direct transfer, and caps it): ${median(speeds.pfNode).toFixed(0)} beside ${median(speeds.directNode).toFixed(0)} (${pct(median(nodeShares))}; rounds ${nodeShares.map((r) => r.toFixed(0)).join(', ')} %).`,
      '',
      `CPU seconds per download by curl (median): through the cluster: ${cpuText(cpuForwarded)}; through the relay: ${cpuText(cpuRelayed)}. `
      + `A floor on the path's CPU per MiB: kubectl's own ${kubectlMsPerMiB.toFixed(2)} ms (against the relay) and three AES-128-GCM passes of ${aesMsPerMiB.toFixed(2)} ms (the node seals, the control plane opens and seals again); with all else free (curl, the pod's server, the kernel's copies, the node's and control plane's own code) ${cores} cores move at most ${pathCeiling.toFixed(0)} MiB/s through it, ${pct(pathCeiling / median(speeds.directCurl) * 100)} of the direct transfer with curl.`,
      '',
      `A small request on a new connection (1 KiB, HTTP/1.1, ms, median/p90 of ${smallForwarded.length}): through \`kubectl port-forward\` ${fmtMs(median(smallForwarded))}/${fmtMs(summarize(smallForwarded).p90)}, straight to the pod IP ${fmtMs(median(smallDirect))}/${fmtMs(summarize(smallDirect).p90)}.`,
    ];
    if (args.portForwardOnly) {
      process.stdout.write(`${pfLines.join('\n')}\n`);
      return;
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
      ...pfLines,
      '<!-- bench:exec:end -->',
    ].join('\n');
    process.stdout.write(`${body}\n`);
    if (args.updateResults) await replaceResultsSection(args.updateResults, '<!-- bench:exec:begin -->', '<!-- bench:exec:end -->', body, '# exec and port-forward (bench/exec.ts, issue 15)');
  } finally {
    await cleanup();
  }
}

await main();
