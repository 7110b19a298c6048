import dbus from 'dbus-next';
import { EventEmitter } from 'node:events';
import { UserError } from './errors.js';

const { Message, Variant } = dbus;
type DbusMessage = InstanceType<typeof Message>;
export type DbusVariant = InstanceType<typeof Variant>;
export { Variant };

const SYSTEMD = 'org.freedesktop.systemd1';
const MANAGER_PATH = '/org/freedesktop/systemd1';
const MANAGER = 'org.freedesktop.systemd1.Manager';
const PROPERTIES = 'org.freedesktop.DBus.Properties';
/** Calls in flight per connection; well under dbus-daemon's max_replies_per_connection (128). */
const MAX_IN_FLIGHT = 32;

/** A transient unit property as StartTransientUnit takes it: (name, variant). */
export type UnitProperty = [string, DbusVariant];

export interface JobResult {
  unit: string;
  /** done, canceled, timeout, failed, dependency, skipped */
  result: string;
}

export interface UnitListEntry {
  name: string;
  description: string;
  loadState: string;
  activeState: string;
  subState: string;
  path: string;
}

/** Unwrap dbus-next Variants recursively into plain values. */
function plain(value: unknown): unknown {
  if (value instanceof Variant) return plain(value.value);
  if (Array.isArray(value)) return value.map(plain);
  return value;
}

/** systemd escapes unit names into object paths: every byte outside [A-Za-z0-9] becomes _XX. */
export function unitObjectPath(unit: string): string {
  let out = '';
  for (const byte of Buffer.from(unit)) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9]/.test(c) ? c : `_${byte.toString(16).padStart(2, '0')}`;
  }
  return `/org/freedesktop/systemd1/unit/${out}`;
}

/**
 * A thin, typed client for systemd's manager over D-Bus. It speaks raw
 * messages instead of dbus-next's proxy objects: proxies introspect on first
 * use, which costs a round trip per object on the pod start path.
 */
export class SystemdClient extends EventEmitter {
  private subscribed = false;
  private inFlight = 0;
  private readonly waiting: Array<() => void> = [];
  private readonly pendingJobs = new Map<string, (r: JobResult) => void>();
  /** Jobs that finished before anyone waited for them (a fast unit can beat the waiter). */
  private readonly finishedJobs = new Map<string, JobResult>();

  private constructor(private readonly bus: dbus.MessageBus, readonly address: string) {
    super();
    bus.on('message', (msg: DbusMessage) => this.onMessage(msg));
  }

  /**
   * Connect to a systemd's bus. `address` is a D-Bus address such as
   * `unix:path=/run/dbus/system_bus_socket`; default: $DBUS_SYSTEM_BUS_ADDRESS
   * or the system bus.
   */
  static async connect(address?: string): Promise<SystemdClient> {
    const busAddress = address ?? process.env.DBUS_SYSTEM_BUS_ADDRESS ?? 'unix:path=/run/dbus/system_bus_socket';
    // sessionBus() is dbus-next's only constructor that takes an explicit address;
    // the protocol is the same for a system bus.
    const bus = dbus.sessionBus({ busAddress });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: unknown) => reject(new UserError(`cannot connect to systemd's D-Bus at ${busAddress}: ${String((err as Error)?.message ?? err)}`, {
        hint: 'is systemd running on this node? Without systemd as PID 1, start a node sandbox (`stevedore sandbox start`) and run commands inside it (`stevedore sandbox exec -- …`), or pass --dbus-address.',
      }));
      bus.once('error', onError);
      bus.once('connect', () => { bus.off('error', onError); resolve(); });
    });
    bus.on('error', () => { /* surfaced through failing calls */ });
    return new SystemdClient(bus, busAddress);
  }

  close(): void {
    this.bus.disconnect();
  }

  private async call(path: string, iface: string, member: string, signature = '', body: unknown[] = []): Promise<unknown[]> {
    // The bus daemon refuses more than 128 pending replies per connection
    // (LimitsExceeded): a node with many pods must queue here, not fail there.
    while (this.inFlight >= MAX_IN_FLIGHT) await new Promise<void>((r) => this.waiting.push(r));
    this.inFlight++;
    try {
      const reply = await this.bus.call(new Message({ destination: SYSTEMD, path, interface: iface, member, signature, body }));
      return (reply?.body ?? []) as unknown[];
    } finally {
      this.inFlight--;
      this.waiting.shift()?.();
    }
  }

  private onMessage(msg: DbusMessage): void {
    if (msg.type !== dbus.MessageType.SIGNAL) return;
    if (msg.interface === MANAGER && msg.member === 'JobRemoved') {
      const [, job, unit, result] = msg.body as [number, string, string, string];
      const done = { unit, result };
      const waiter = this.pendingJobs.get(job);
      if (waiter) {
        this.pendingJobs.delete(job);
        waiter(done);
      } else {
        this.finishedJobs.set(job, done);
        if (this.finishedJobs.size > 1000) this.finishedJobs.delete(this.finishedJobs.keys().next().value as string);
      }
      this.emit('jobRemoved', done);
    } else if (msg.interface === PROPERTIES && msg.member === 'PropertiesChanged' && msg.path?.startsWith('/org/freedesktop/systemd1/unit/')) {
      this.emit('unitChanged', msg.path);
    } else if (msg.interface === MANAGER && (msg.member === 'UnitNew' || msg.member === 'UnitRemoved')) {
      this.emit('unitChanged', (msg.body as [string, string])[1]);
    }
  }

  /** Ask systemd to send job and unit signals to us (JobRemoved, PropertiesChanged). */
  async subscribe(): Promise<void> {
    if (this.subscribed) return;
    await this.bus.call(new Message({
      destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus', member: 'AddMatch',
      signature: 's', body: [`type='signal',sender='${SYSTEMD}'`],
    }));
    await this.call(MANAGER_PATH, MANAGER, 'Subscribe');
    this.subscribed = true;
  }

  /** Resolve when a job (object path returned by Start/Stop calls) has finished. */
  waitForJob(job: string, timeoutMs = 120_000): Promise<JobResult> {
    const early = this.finishedJobs.get(job);
    if (early) {
      this.finishedJobs.delete(job);
      return Promise.resolve(early);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pendingJobs.delete(job);
        reject(new Error(`systemd job ${job} did not finish within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pendingJobs.set(job, (r) => { clearTimeout(timer); resolve(r); });
    });
  }

  async startTransientUnit(name: string, properties: UnitProperty[], aux: Array<[string, UnitProperty[]]> = []): Promise<string> {
    const [job] = await this.call(MANAGER_PATH, MANAGER, 'StartTransientUnit', 'ssa(sv)a(sa(sv))', [name, 'fail', properties, aux]);
    return job as string;
  }

  /** Set properties of a unit (loading it if need be); `runtime`: until the next boot only (/run). */
  async setUnitProperties(name: string, runtime: boolean, properties: UnitProperty[]): Promise<void> {
    await this.call(MANAGER_PATH, MANAGER, 'SetUnitProperties', 'sba(sv)', [name, runtime, properties]);
  }

  /** Start a loaded unit again (a transient one that stopped but is still loaded, say). */
  async startUnit(name: string): Promise<string> {
    const [job] = await this.call(MANAGER_PATH, MANAGER, 'StartUnit', 'ss', [name, 'replace']);
    return job as string;
  }

  async stopUnit(name: string): Promise<string | undefined> {
    try {
      const [job] = await this.call(MANAGER_PATH, MANAGER, 'StopUnit', 'ss', [name, 'replace']);
      return job as string;
    } catch (err) {
      if (isNoSuchUnit(err)) return undefined;
      throw err;
    }
  }

  async killUnit(name: string, signal: number, who: 'main' | 'all' = 'all'): Promise<void> {
    try {
      await this.call(MANAGER_PATH, MANAGER, 'KillUnit', 'ssi', [name, who, signal]);
    } catch (err) {
      if (!isNoSuchUnit(err)) throw err;
    }
  }

  /** Forget a failed unit so its name can be used again; a unit that isn't loaded is fine. */
  async resetFailedUnit(name: string): Promise<void> {
    try {
      await this.call(MANAGER_PATH, MANAGER, 'ResetFailedUnit', 's', [name]);
    } catch (err) {
      if (!isNoSuchUnit(err) && !String((err as Error).message).includes('not failed')) throw err;
    }
  }

  async listUnitsByPatterns(patterns: string[], states: string[] = []): Promise<UnitListEntry[]> {
    const [units] = await this.call(MANAGER_PATH, MANAGER, 'ListUnitsByPatterns', 'asas', [states, patterns]);
    return (units as unknown[][]).map((u) => ({
      name: u[0] as string, description: u[1] as string, loadState: u[2] as string,
      activeState: u[3] as string, subState: u[4] as string, path: u[6] as string,
    }));
  }

  /** All properties of one interface of a unit, as plain values; a unit that isn't loaded reads as LoadState not-found. */
  async unitProperties(unit: string, iface: 'Unit' | 'Service' | 'Slice' = 'Unit'): Promise<Record<string, unknown>> {
    const [props] = await this.call(unitObjectPath(unit), PROPERTIES, 'GetAll', 's', [`org.freedesktop.systemd1.${iface}`]).catch((err) => {
      if (isNoSuchUnit(err)) return [{ LoadState: new Variant('s', 'not-found') }];
      throw err;
    });
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(props as Record<string, unknown>)) out[k] = plain(v);
    return out;
  }

  /**
   * Chosen properties of one interface of a unit, one small Get each (in
   * parallel): a Service's GetAll carries ~200 properties, which a reader
   * polling many pods would parse and throw away on every pass.
   */
  async unitPropertyValues(unit: string, iface: 'Unit' | 'Service' | 'Slice', names: string[]): Promise<Record<string, unknown>> {
    const path = unitObjectPath(unit);
    const values = await Promise.all(names.map((name) => this.call(path, PROPERTIES, 'Get', 'ss', [`org.freedesktop.systemd1.${iface}`, name])
      .then(([v]) => plain(v), (err) => {
        if (isNoSuchUnit(err)) return undefined;
        throw err;
      })));
    const out: Record<string, unknown> = {};
    names.forEach((name, i) => { if (values[i] !== undefined) out[name] = values[i]; });
    return out;
  }

  async managerProperty(name: string): Promise<unknown> {
    const [value] = await this.call(MANAGER_PATH, PROPERTIES, 'Get', 'ss', [MANAGER, name]);
    return plain(value);
  }
}

function isNoSuchUnit(err: unknown): boolean {
  const type = (err as { type?: string })?.type ?? '';
  return type.endsWith('NoSuchUnit') || type.endsWith('UnknownObject') || type.endsWith('LoadFailed')
    || type.endsWith('UnknownMethod') && String((err as Error).message).includes('Unknown object');
}

/** Helpers to build property variants with the D-Bus types systemd expects. */
export const prop = {
  str: (name: string, v: string): UnitProperty => [name, new Variant('s', v)],
  bool: (name: string, v: boolean): UnitProperty => [name, new Variant('b', v)],
  u64: (name: string, v: bigint | number): UnitProperty => [name, new Variant('t', BigInt(v))],
  i32: (name: string, v: number): UnitProperty => [name, new Variant('i', v)],
  strs: (name: string, v: string[]): UnitProperty => [name, new Variant('as', v)],
  /** ExecStart-style: [(path, argv, ignoreFailure)] */
  exec: (name: string, cmds: Array<{ path: string; argv: string[]; ignoreFailure?: boolean }>): UnitProperty =>
    [name, new Variant('a(sasb)', cmds.map((c) => [c.path, c.argv, c.ignoreFailure ?? false]))],
  /** ExecStartEx-style: [(path, argv, flags)] with flags such as "privileged", "ignore-failure". */
  execEx: (name: string, cmds: Array<{ path: string; argv: string[]; flags: string[] }>): UnitProperty =>
    [name, new Variant('a(sasas)', cmds.map((c) => [c.path, c.argv, c.flags]))],
  /** LogExtraFields: journal fields as FIELD=value byte arrays. */
  logFields: (fields: Record<string, string>): UnitProperty =>
    ['LogExtraFields', new Variant('aay', Object.entries(fields).map(([k, v]) => Buffer.from(`${k}=${v}`)))],
  /** BindPaths / BindReadOnlyPaths: (source, destination, ignoreMissing, recursive flags) */
  binds: (name: 'BindPaths' | 'BindReadOnlyPaths', binds: Array<{ source: string; destination: string }>): UnitProperty =>
    [name, new Variant('a(ssbt)', binds.map((b) => [b.source, b.destination, false, 0n]))],
};
