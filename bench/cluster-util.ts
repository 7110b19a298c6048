/**
 * Helpers for bench/cluster.ts: child processes, free ports, /proc readings,
 * a raw pod watch against the control plane, and CPU profile summaries.
 */
import * as fs from 'node:fs/promises';
import * as https from 'node:https';
import { parse } from 'yaml';
import { nowMs } from './stats.js';

// One copy of these, shared with the tests' cluster helper.
export { freePort, freePortRange, run, type Run } from '../test/helpers/cluster.js';
import { freePort as port, run as runCmd, type Run } from '../test/helpers/cluster.js';


/** TLS material to call a node API as the control plane does (its kubelet-client certificate, the cluster CA). */
export interface NodeApiClient { ca: string; cert: string; key: string }

/** The agent's /metrics (node API, verified TLS, the control plane's client certificate) as name → value. */
export function agentMetrics(port: number, client: NodeApiClient): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: '/metrics', ca: client.ca, cert: client.cert, key: client.key, timeout: 5000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { text += d; });
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`/metrics: HTTP ${res.statusCode}`));
        const out: Record<string, number> = {};
        for (const line of text.split('\n')) {
          const m = /^([a-z_]+) (\S+)$/.exec(line);
          if (m) out[m[1]!] = Number(m[2]);
        }
        resolve(out);
      });
    });
    req.on('timeout', () => req.destroy(new Error('/metrics: timed out')));
    req.on('error', reject);
  });
}

// ---------------------------------------------------------------------------
// /proc

export interface ProcSample { at: number; rssKiB: number; hwmKiB: number; anonKiB: number; fileKiB: number; ticks: number }

export async function readProc(pid: number): Promise<ProcSample> {
  const at = nowMs();
  const [status, stat] = await Promise.all([fs.readFile(`/proc/${pid}/status`, 'utf8'), fs.readFile(`/proc/${pid}/stat`, 'utf8')]);
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, 'm').exec(status)?.[1] ?? NaN);
  // Fields after "(comm)": state is field 3, utime 14, stime 15 → indexes 11 and 12 here.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { at, rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM'), anonKiB: kib('RssAnon'), fileKiB: kib('RssFile'), ticks: Number(rest[11]) + Number(rest[12]) };
}

/** CPU % of one core between two samples. */
export function cpuPercent(a: ProcSample, b: ProcSample, clkTck: number): number {
  return ((b.ticks - a.ticks) / clkTck) / ((b.at - a.at) / 1000) * 100;
}

/** Host PID of the process whose PID is `nsPid` in the pid namespace of `nsInitHostPid` (a sandbox's systemd). */
export async function hostPidInNamespace(nsInitHostPid: number, nsPid: number): Promise<number | undefined> {
  const target = await fs.readlink(`/proc/${nsInitHostPid}/ns/pid`);
  for (const d of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = await fs.readFile(`/proc/${d}/status`, 'utf8');
      const ids = /^NSpid:\s+(.*)$/m.exec(st)?.[1]?.trim().split(/\s+/) ?? [];
      if (ids.length > 1 && ids.at(-1) === String(nsPid) && (await fs.readlink(`/proc/${d}/ns/pid`)) === target) return Number(d);
    } catch { /* gone meanwhile */ }
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// The control plane, raw

export interface Api { server: string; ca: string; token: string }

export async function apiFromKubeconfig(file: string): Promise<Api> {
  const kc = parse(await fs.readFile(file, 'utf8')) as {
    clusters: Array<{ cluster: { server: string; 'certificate-authority-data': string } }>;
    users: Array<{ user: { token: string } }>;
  };
  const cluster = kc.clusters[0]!.cluster;
  return { server: cluster.server, ca: Buffer.from(cluster['certificate-authority-data'], 'base64').toString(), token: kc.users[0]!.user.token };
}

export function apiGet<T>(api: Api, urlPath: string): Promise<{ code: number; body: T }> {
  return new Promise((resolve, reject) => {
    const req = https.get(new URL(urlPath, api.server), { ca: api.ca, headers: { Authorization: `Bearer ${api.token}` }, timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => { try { resolve({ code: res.statusCode ?? 0, body: JSON.parse(body) as T }); } catch { resolve({ code: res.statusCode ?? 0, body: body as T }); } });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

interface KPod {
  metadata: { name: string; resourceVersion?: string };
  spec?: { nodeName?: string; containers?: unknown[] };
  status?: { phase?: string; containerStatuses?: Array<{ ready?: boolean }> };
}

/** When the watch first saw each pod in each state (ms, nowMs clock). */
export interface PodTimes { added?: number; bound?: number; pending?: number; running?: number; deleted?: number; events: number }

export function isRunningReady(p: KPod): boolean {
  const want = p.spec?.containers?.length ?? 1;
  const cs = p.status?.containerStatuses ?? [];
  return p.status?.phase === 'Running' && cs.length >= want && cs.every((c) => c.ready === true);
}

/**
 * One raw watch on pods (namespace, label selector) over https with the admin
 * token, started before the first apply. Every event is stamped with nowMs()
 * when its line is parsed. Reconnects from the last resourceVersion; relists
 * on 410 Gone.
 */
export class PodWatch {
  readonly pods = new Map<string, PodTimes>();
  private rv = '';
  private stopped = false;
  private req: ReturnType<typeof https.get> | undefined;
  private waiters = new Set<() => void>();
  reconnects = 0;
  eventCount = 0;

  constructor(private readonly api: Api, private readonly namespace: string, private readonly selector: string) {}

  private base(): string {
    return `/api/v1/namespaces/${this.namespace}/pods?labelSelector=${encodeURIComponent(this.selector)}`;
  }

  async start(): Promise<void> {
    await this.relist();
    await this.connect();
  }

  private async relist(): Promise<void> {
    const r = await apiGet<{ metadata: { resourceVersion: string }; items: KPod[] }>(this.api, this.base());
    if (r.code !== 200) throw new Error(`pod list: HTTP ${r.code} ${JSON.stringify(r.body)}`);
    this.rv = r.body.metadata.resourceVersion;
    const t = nowMs();
    for (const p of r.body.items) this.observe('ADDED', p, t);
  }

  private connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const url = new URL(`${this.base()}&watch=true&allowWatchBookmarks=true&resourceVersion=${this.rv}`, this.api.server);
      const req = https.get(url, { ca: this.api.ca, headers: { Authorization: `Bearer ${this.api.token}` } }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`watch: HTTP ${res.statusCode}`));
          return;
        }
        resolve();
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          const t = nowMs();
          buf += chunk;
          let i: number;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i).trim();
            buf = buf.slice(i + 1);
            if (!line) continue;
            const ev = JSON.parse(line) as { type: string; object: KPod & { code?: number } };
            if (ev.type === 'ERROR') { this.rv = ev.object.code === 410 ? '' : this.rv; continue; }
            if (ev.object.metadata?.resourceVersion) this.rv = ev.object.metadata.resourceVersion;
            if (ev.type !== 'BOOKMARK') this.observe(ev.type, ev.object, t);
          }
        });
        res.on('end', () => this.again());
        res.on('error', () => this.again());
      });
      req.on('error', (err) => { if (this.req === req) this.again(); reject(err); });
      this.req = req;
    });
  }

  private again(): void {
    if (this.stopped) return;
    this.reconnects++;
    setTimeout(() => {
      if (this.stopped) return;
      (this.rv ? Promise.resolve() : this.relist()).then(() => this.connect()).catch(() => { this.rv = ''; this.again(); });
    }, 100);
  }

  private observe(type: string, p: KPod, t: number): void {
    this.eventCount++;
    const name = p.metadata.name;
    const e = this.pods.get(name) ?? { events: 0 };
    e.events++;
    e.added ??= t;
    if (p.spec?.nodeName) e.bound ??= t;
    if (p.status?.phase === 'Pending' && p.status?.containerStatuses?.length) e.pending ??= t;
    if (isRunningReady(p)) e.running ??= t;
    if (type === 'DELETED') e.deleted ??= t;
    this.pods.set(name, e);
    for (const w of [...this.waiters]) w();
  }

  /** Resolve when `pred` holds (checked after every event), reject after timeoutMs. */
  waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!pred()) return;
        this.waiters.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => { this.waiters.delete(check); reject(new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`)); }, timeoutMs);
      this.waiters.add(check);
    });
  }

  stop(): void {
    this.stopped = true;
    this.req?.destroy();
  }
}

// ---------------------------------------------------------------------------
// V8 CPU profiles

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number; children?: number[] }
interface CpuProfile { nodes: ProfileNode[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] }

export interface ProfileSummary {
  windowS: number;
  sampledMs: number;
  /** Busy = not (idle); ms in the window. */
  busyMs: number;
  byModule: Array<[string, number]>;
  byFunction: Array<[string, number]>;
  /** Inclusive ms of interesting frames (synchronous stacks only: async continuations start new stacks). */
  inclusive: Array<[string, number]>;
}

function moduleOf(url: string, functionName: string): string {
  if (!url) return `(${functionName || 'native'})`.replace(/^\(\((.*)\)\)$/, '($1)');
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  if (url.startsWith('node:')) return url;
  const dist = /\/dist\/([^/]+)\/([^/]+)$/.exec(url);
  if (dist) return `stevedore ${dist[1]}/${dist[2]}`;
  return url.replace(/^file:\/\//, '');
}

/** Self time by module and function over the last `windowS` seconds of the profile (minus the last `tailS`). */
export function summarizeProfile(profile: CpuProfile, windowS: number, tailS: number, interesting: string[]): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const end = profile.endTime - tailS * 1e6;
  const start = end - windowS * 1e6;
  const self = new Map<string, number>();
  const mods = new Map<string, number>();
  const incl = new Map<string, number>();
  let t = profile.startTime;
  let sampled = 0;
  let busy = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0;
    t += dt;
    if (t < start || t > end) continue;
    const next = (profile.timeDeltas[i + 1] ?? dt) / 1000; // ms this sample stands for
    const node = byId.get(profile.samples[i]!)!;
    const fn = node.callFrame.functionName || '(anonymous)';
    sampled += next;
    if (fn === '(idle)') continue;
    busy += next;
    const key = `${fn} ${moduleOf(node.callFrame.url, node.callFrame.functionName)}${node.callFrame.url ? `:${node.callFrame.lineNumber + 1}` : ''}`;
    self.set(key, (self.get(key) ?? 0) + next);
    const mod = moduleOf(node.callFrame.url, node.callFrame.functionName);
    mods.set(mod, (mods.get(mod) ?? 0) + next);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)!.callFrame.functionName;
      if (interesting.includes(f) && !seen.has(f)) { seen.add(f); incl.set(f, (incl.get(f) ?? 0) + next); }
    }
  }
  const top = (m: Map<string, number>, n: number) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, n);
  return { windowS, sampledMs: sampled, busyMs: busy, byModule: top(mods, 14), byFunction: top(self, 16), inclusive: top(incl, interesting.length) };
}

/** A one-node `stevedore up` cluster of a benchmark's own (its data dir under /var/tmp, its own sandbox and ports). */
export interface BenchCluster {
  dataDir: string;
  sandbox: string;
  api: Api;
  controlPlanePid: number;
  kubectl(args: string[], input?: string): Promise<Run>;
  /** kubectl that must succeed; its stdout. */
  must(args: string[], input?: string): Promise<string>;
  /** A command inside the node sandbox. */
  onNode(argv: string[]): Promise<Run>;
  down(): Promise<void>;
}

/** `upArgs`: more `up` flags (a runtime, or a bridge and CIDRs of its own beside another cluster). */
export async function upBenchCluster(prefix: string, log: (msg: string) => void, upArgs: string[] = [], fromRepo?: string): Promise<BenchCluster> {
  const path = await import('node:path');
  // fromRepo: another built checkout (a base to compare with); its CLI ups the cluster, and its agent runs the node.
  const repo = fromRepo ?? path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
  const cli = path.join(repo, 'bin', 'stevedore.js');
  const dataDir = await fs.mkdtemp(`/var/tmp/stevedore-bench-${prefix}-`);
  const sandbox = `bench-${prefix}-${process.pid}`;
  const kubeconfig = path.join(dataDir, 'kubeconfig');
  const kubectl = (a: string[], input?: string) => runCmd('kubectl', a, { KUBECONFIG: kubeconfig }, input);
  const down = async () => {
    log('stevedore down');
    const r = await runCmd(process.execPath, [cli, 'down', '--data-dir', dataDir]);
    if (r.code !== 0) log(`warning: down failed: ${r.stderr}`);
    await fs.rm(dataDir, { recursive: true, force: true });
  };
  log(`stevedore up (sandbox ${sandbox})`);
  const up = await runCmd(process.execPath, [cli, 'up', '--data-dir', dataDir, '--port', String(await port()), '--node-api-port', String(await port()), '--node-name', 'bench-node', '--sandbox-name', sandbox, ...upArgs]);
  if (up.code !== 0) {
    await down();
    throw new Error(`stevedore up failed:\n${up.stderr}\n${up.stdout}`);
  }
  const must = async (a: string[], input?: string) => {
    const r = await kubectl(a, input);
    if (r.code !== 0) throw new Error(`kubectl ${a.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  return {
    dataDir, sandbox, kubectl, must, down,
    api: await apiFromKubeconfig(kubeconfig),
    controlPlanePid: (JSON.parse(await fs.readFile(path.join(dataDir, 'up.json'), 'utf8')) as { controlPlanePid: number }).controlPlanePid,
    onNode: (argv) => runCmd(process.execPath, [cli, 'sandbox', 'exec', '--name', sandbox, '--', ...argv]),
  };
}
