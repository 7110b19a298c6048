/**
 * The hollow runtime: a ContainerRuntime that only pretends to run pods, as
 * kubemark's hollow kubelet drives a fake runtime. The agent above it is the
 * real one (registration, Lease, pod sync, status, events); nothing here
 * touches systemd, D-Bus, cgroups, CNI or the disk. A pod "starts" after a
 * configurable delay, gets an address from the node's pod CIDR and runs until
 * it is stopped.
 */
import { randomUUID, createHash } from 'node:crypto';
import { UserError } from '../common/errors.js';
import { ISOLATION_HANDLERS } from '../runtime-api/handlers.js';
import { HandlerNotOffered } from '../runtime-api/errors.js';
import type {
  AppStatus, ContainerRuntime, ExecOptions, ExecProcess, LogLine, LogQuery, Pod, PodStatus, PodUsage, PortForwardTarget, RuntimeFactory, RuntimeOpenOptions,
} from '../runtime-api/index.js';

export const HOLLOW_VERSION = '0.1.0';
/** The label a hollow node carries, so workloads and people can tell it from a real one. */
export const HOLLOW_NODE_LABEL = 'stevedore.io/hollow';

/**
 * Addresses of one IPv4 pod CIDR handed out lowest-free-first, as host-local
 * IPAM does: the network address, the gateway (.1, the bridge on a real
 * node) and the broadcast address are never given.
 */
export class IpPool {
  private readonly base: number;
  private readonly size: number;
  private readonly taken = new Set<number>();
  private next = 2;

  constructor(cidr: string) {
    const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
    const octets = m ? m.slice(1, 5).map(Number) : [];
    const prefix = m ? Number(m[5]) : -1;
    if (!m || octets.some((o) => o > 255) || prefix < 8 || prefix > 30) {
      throw new UserError(`hollow runtime: pod CIDR ${JSON.stringify(cidr)} is not an IPv4 network of /8 to /30`, { hint: 'give the node a pod CIDR such as 10.88.3.0/24 (the control plane\'s --allocate-node-cidrs does)' });
    }
    const addr = ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0;
    this.size = 2 ** (32 - prefix);
    this.base = addr - (addr % this.size);
  }

  /** How many pods the CIDR holds (all but network, gateway and broadcast). */
  get capacity(): number { return this.size - 3; }

  allocate(): string {
    if (this.taken.size >= this.capacity) throw new UserError(`hollow runtime: no address left in the pod CIDR (${this.capacity} in use)`, { hint: 'stop some pods on this node, or give it a larger pod CIDR' });
    // Round-robin from the last one given, as host-local does, so a freed address is not reused at once.
    while (this.taken.has(this.next) || this.next < 2 || this.next > this.size - 2) this.next = this.next >= this.size - 2 ? 2 : this.next + 1;
    const offset = this.next;
    this.taken.add(offset);
    this.next = offset >= this.size - 2 ? 2 : offset + 1;
    return toDotted(this.base + offset);
  }

  release(ip: string): void {
    this.taken.delete(fromDotted(ip) - this.base);
  }
}

const toDotted = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
const fromDotted = (ip: string) => ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);

export interface HollowRuntimeOptions {
  /** The node's pod CIDR: where the pretend pods' addresses come from. */
  podCidr: string;
  /** How long a pod takes to "start" (ms): the time a real runtime spends on namespaces, network and exec. */
  startDelayMs: number;
  /** Clock and timers, replaceable in unit tests. */
  now?: () => number;
}

interface HollowPod {
  status: PodStatus;
  ip?: string;
  startTimer?: NodeJS.Timeout;
}

/**
 * The runtime status of a pod just "created": init containers done, the
 * others (and sidecars) waiting in ContainerCreating until the start delay is over.
 */
export function createdStatus(pod: Pod, uuid: string, handler: string, now: number): PodStatus {
  const hostNetwork = pod.spec.hostNetwork === true || handler === 'fly';
  const app = (c: Pod['spec']['containers'][number], state: AppStatus['state'], extra: Partial<AppStatus> = {}): AppStatus => ({
    name: c.name, image: { id: imageId(c.image), name: c.image }, unit: `hollow-${uuid}-${c.name}`, state, restartCount: 0, ...extra,
  });
  const inits = (pod.spec.initContainers ?? []).map((c) => (c.restartPolicy === 'Always'
    ? app(c, 'waiting', { reason: 'ContainerCreating' })
    // An init container has nothing to run: it completes at once, as `true` would.
    : app(c, 'exited', { exitCode: 0, reason: 'Completed', startedAt: now, finishedAt: now })));
  return {
    uuid, state: 'prepared', handler, hostNetwork,
    name: pod.metadata.name, namespace: pod.metadata.namespace ?? 'default', uid: pod.metadata.uid,
    annotations: { ...pod.metadata.annotations }, labels: { ...pod.metadata.labels },
    createdAt: now,
    apps: [...inits, ...pod.spec.containers.map((c) => app(c, 'waiting', { reason: 'ContainerCreating' }))],
  };
}

/** The pod once its start delay is over: every app that was waiting runs. */
export function startedStatus(s: PodStatus, now: number, ip: string | undefined): PodStatus {
  return {
    ...s, state: 'running', startedAt: now,
    ...(ip ? { podIPs: [ip], networks: [{ name: 'hollow', ifName: 'eth0', ips: [ip] }] } : {}),
    apps: s.apps.map((a) => (a.state === 'waiting' ? { ...a, state: 'running' as const, reason: undefined, startedAt: now } : a)),
  };
}

/** The pod stopped: every running app exits as a process that ends on SIGTERM does (0, Completed). */
export function stoppedStatus(s: PodStatus, now: number): PodStatus {
  return {
    ...s, state: 'exited',
    apps: s.apps.map((a) => (a.state === 'running' || a.state === 'waiting' ? { ...a, state: 'exited' as const, exitCode: 0, reason: 'Completed', finishedAt: now } : a)),
  };
}

/** A stable fake image ID per reference: every image is "present" on a hollow node, none is pulled. */
export function imageId(ref: string): string {
  return `sha256:${createHash('sha256').update(ref).digest('hex')}`;
}

const refused = (what: string) => new UserError(`${what} is not possible on a hollow node: its pods only pretend to run (no process, no network behind the pod IP)`, {
  hint: 'schedule the pod on a real node (stevedore up), or leave hollow nodes out with a nodeSelector / the stevedore.io/hollow label',
});

export class HollowRuntime implements ContainerRuntime {
  readonly name = 'hollow';
  readonly version = HOLLOW_VERSION;
  readonly handlers: readonly string[] = ISOLATION_HANDLERS;
  readonly nodeLabels: Readonly<Record<string, string>> = { [HOLLOW_NODE_LABEL]: 'true' };
  private readonly pods = new Map<string, HollowPod>();
  private readonly listeners: Array<() => void> = [];
  private readonly ips: IpPool;
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly opts: HollowRuntimeOptions) {
    this.ips = new IpPool(opts.podCidr);
    this.now = opts.now ?? Date.now;
    if (!Number.isFinite(opts.startDelayMs) || opts.startDelayMs < 0) throw new UserError(`hollow runtime: start delay ${opts.startDelayMs} ms is not a duration`, { hint: 'give a number of milliseconds, e.g. 50' });
  }

  async runPod(pod: Pod, opts: { handler?: string }): Promise<string> {
    const handler = opts.handler ?? 'namespaces';
    if (!this.handlers.includes(handler)) throw new HandlerNotOffered(handler, this.name, this.handlers);
    const uuid = randomUUID();
    const status = createdStatus(pod, uuid, handler, this.now());
    const record: HollowPod = { status, ip: status.hostNetwork ? undefined : this.ips.allocate() };
    this.pods.set(uuid, record);
    record.startTimer = setTimeout(() => {
      record.startTimer = undefined;
      if (record.status.state !== 'prepared') return;
      record.status = startedStatus(record.status, this.now(), record.ip);
      this.changed();
    }, this.opts.startDelayMs);
    this.changed();
    return uuid;
  }

  async findImage(ref: string): Promise<{ id: string; local: boolean }> {
    // Local: the agent never pulls (as kubemark's fake image service answers every image present).
    return { id: imageId(ref), local: true };
  }

  async pullImage(): Promise<void> {}

  async listPods(): Promise<PodStatus[]> {
    return [...this.pods.values()].map((p) => p.status);
  }

  async stopPod(id: string): Promise<void> {
    const record = this.pods.get(id);
    if (!record || record.status.state === 'exited') return;
    clearTimeout(record.startTimer);
    record.status = stoppedStatus(record.status, this.now());
    this.changed();
  }

  async removePod(id: string): Promise<void> {
    const record = this.pods.get(id);
    if (!record) return;
    clearTimeout(record.startTimer);
    if (record.ip) this.ips.release(record.ip);
    this.pods.delete(id);
    this.changed();
  }

  async *logs(_query?: LogQuery): AsyncGenerator<LogLine> {
    // Nothing ran, so nothing was written: every container's log is empty.
  }

  async containerUsage(): Promise<PodUsage[]> {
    return [...this.pods.values()].filter((p) => p.status.state === 'running').map(({ status: s }) => ({
      uuid: s.uuid, uid: s.uid, name: s.name, namespace: s.namespace, startedAt: s.startedAt,
      containers: s.apps.filter((a) => a.state === 'running').map((a) => ({ name: a.name, startedAt: a.startedAt, cpuUsageNs: 0, memoryUsageBytes: 0, workingSetBytes: 0, rssBytes: 0 })),
    }));
  }

  async exec(_podId: string, _container: string, _command: string[], _opts: ExecOptions): Promise<ExecProcess> { throw refused('exec'); }
  async attach(_podId: string, _container: string, _opts: { stdin: boolean; tty: boolean }): Promise<ExecProcess> { throw refused('attach'); }
  async checkAttach(_podId: string, _container: string, _opts: { tty: boolean }): Promise<void> { throw refused('attach'); }
  async checkExec(_podId: string, _container: string, _opts: Pick<ExecOptions, 'tty'>): Promise<void> { throw refused('exec'); }
  async openPortForward(_podId: string): Promise<PortForwardTarget> { throw refused('port-forward'); }

  /** Exec probes and hooks: nothing can run, so they are refused too (the prober reports the probe failed with this message). */
  async runInContainer(_podId: string, _container: string, _command: string[], _timeoutMs: number): Promise<{ exitCode: number; output: string; timedOut: boolean }> { throw refused('running a command in a container (exec probe or hook)'); }

  /** A liveness kill: the container "restarts" at once, with the run before as its last termination. */
  async killContainer(podId: string, container: string): Promise<void> {
    const record = this.pods.get(podId);
    const app = record?.status.apps.find((a) => a.name === container);
    if (!record || !app || app.state !== 'running') return;
    const now = this.now();
    record.status = {
      ...record.status,
      apps: record.status.apps.map((a) => (a !== app ? a : {
        ...a, restartCount: a.restartCount + 1, startedAt: now,
        lastTermination: { exitCode: 137, signal: 9, reason: 'Error', finishedAt: now, invocation: String(a.restartCount) },
      })),
    };
    this.changed();
  }

  async gc(): Promise<void> {}

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.pods.values()) clearTimeout(p.startTimer);
  }

  private changed(): void {
    if (this.closed) return;
    for (const l of this.listeners) l();
  }
}

/** Milliseconds a hollow pod takes to start unless the node says otherwise. */
export const DEFAULT_START_DELAY_MS = 50;

/**
 * The agent's factory for --container-runtime=hollow: the pod CIDR comes
 * from the node's settings (--pod-cidr or the Node's spec.podCIDR), the start
 * delay from whoever composes the agent (the hollow-nodes command's --start-delay).
 */
export function hollowRuntimeFactory(startDelayMs = DEFAULT_START_DELAY_MS): RuntimeFactory {
  return async (opts: RuntimeOpenOptions) => {
    if (!opts.podCidr) throw new UserError('the hollow runtime needs the node\'s pod CIDR', { hint: 'pass --pod-cidr, or --pod-cidr-from-node with a control plane that allocates them' });
    return new HollowRuntime({ podCidr: opts.podCidr, startDelayMs });
  };
}
