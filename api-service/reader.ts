/**
 * Read-only access to a node's state: the runtime's data directory
 * (pods/<state>/<uuid>/, images/records/), systemd over D-Bus. Nothing here
 * creates, locks exclusively, renames or writes anything: the pod store's
 * list is a readdir, pod status comes from runtime-rkt's readPodStatus (which
 * only reads), and image records are read straight from their files (the
 * ImageStore class takes the store lock on some paths, so it is not used).
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { FileLock, readdirOrEmpty } from '../common/fsutil.js';
import { errnoCode } from '../common/errors.js';
import { SystemdClient } from '../common/systemd.js';
import { PodStore, type PodLocation } from '../runtime-rkt/pod-store.js';
import { imageStoreDir, podStoreDir } from '../runtime-rkt/data-dir.js';
import { FolderChanges } from '../runtime-rkt/folder-changes.js';
import { PodStatusCache, readPodStatus, readUnitStates, type UnitStates } from '../runtime-rkt/pod-status.js';

export interface Listing { systemd: SystemdClient; units: UnitStates }
import type { AppStatus, PodStatus, PodState } from '../runtime-rkt/status.js';
import type { ImageRecord } from '../runtime-rkt/image/types.js';
import type { RuntimePodManifest } from '../stage1/contract.js';
import { invalid, notFound } from './errors.js';
import { isFullPodUuid } from './validate.js';
import type { AppMsg, AppStateName, ImageMsg, KeyValue, NetworkMsg, PodMsg, PodStateName } from './proto.js';

const POD_STATE: Record<PodState, PodStateName> = {
  embryo: 'POD_STATE_EMBRYO',
  preparing: 'POD_STATE_PREPARING',
  'aborted-prepare': 'POD_STATE_ABORTED_PREPARE',
  prepared: 'POD_STATE_PREPARED',
  running: 'POD_STATE_RUNNING',
  exited: 'POD_STATE_EXITED',
  deleting: 'POD_STATE_DELETING',
  garbage: 'POD_STATE_GARBAGE',
};

/** Annotation keys the api-service adds to every pod with a manifest (besides the pod's own annotations). */
export const ANNOTATION = {
  name: 'stevedore.io/pod-name',
  namespace: 'stevedore.io/pod-namespace',
  uid: 'stevedore.io/pod-uid',
  stage1: 'stevedore.io/stage1',
  appReason: 'stevedore.io/reason',
  appRestarts: 'stevedore.io/restart-count',
  appImageName: 'stevedore.io/image-name',
} as const;

const kvs = (o: Record<string, string> | null | undefined): KeyValue[] => Object.entries(o ?? {}).map(([Key, value]) => ({ Key, value: String(value) }));

/** A timestamp file (ns since epoch as text) as a decimal string, '0' when missing or unreadable. */
export async function readTimestampNs(file: string): Promise<string> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  return /^\d+$/.test(text.trim()) ? text.trim() : '0';
}

/**
 * systemd's cgroup path of a slice: every dash in a slice name is a level
 * (systemd.slice(5)), so `stevedore-<hex>.slice` lives at
 * `/stevedore.slice/stevedore-<hex>.slice`.
 */
export function sliceCgroup(slice: string): string {
  const base = slice.replace(/\.slice$/, '');
  const parts = base.split('-');
  const levels: string[] = [];
  for (let i = 1; i <= parts.length; i++) levels.push(`${parts.slice(0, i).join('-')}.slice`);
  return '/' + levels.join('/');
}

/** An embryo or prepare directory younger than this is never probed (see isAbandoned). */
export const LOCK_PROBE_GRACE_MS = 3000;

/**
 * True when a pod in embryo/ or prepare/ was abandoned: nobody holds its
 * flock. The probe is itself a (shared, non-blocking) flock, and the runtime
 * creates an embryo directory *before* locking it: probing a fresh directory
 * could both misreport it and make the runtime's own tryAcquire fail. So a
 * directory changed within the last LOCK_PROBE_GRACE_MS is taken as in use.
 */
export async function isAbandoned(dir: string): Promise<boolean> {
  const st = await fs.stat(dir);
  if (Date.now() - Math.max(st.ctimeMs, st.mtimeMs) < LOCK_PROBE_GRACE_MS) return false;
  return FileLock.isFree(dir);
}

export interface NodeReaderOptions {
  dataDir: string;
  dbusAddress?: string;
  /** How long to wait for the D-Bus connection before answering from disk alone. */
  dbusTimeoutMs?: number;
}

export class NodeReader {
  readonly pods: PodStore;
  readonly imagesDir: string;
  private client: SystemdClient | undefined;
  /**
   * Pod files and statuses already read: a listing re-reads only pods whose
   * folders or units changed. The folders are watched (inotify) rather than
   * stat-ed on every listing: this service lists far more often than pods change.
   */
  private readonly folders = new FolderChanges();
  private readonly podCache = new PodStatusCache({ folders: this.folders });
  /** Listing messages per status object (see podMessage). Never mutated once built: callers share them. */
  private readonly messages = new WeakMap<PodStatus, { detail?: PodMsg; brief?: PodMsg }>();
  private connecting: Promise<SystemdClient | undefined> | undefined;
  private lastFailure = 0;
  private closed = false;

  constructor(readonly opts: NodeReaderOptions) {
    this.pods = new PodStore(podStoreDir(opts.dataDir));
    this.imagesDir = imageStoreDir(opts.dataDir);
  }

  /** The node's systemd, or undefined while it cannot be reached (answers then come from disk alone); retried every few seconds. */
  async systemd(): Promise<SystemdClient | undefined> {
    if (this.client || this.closed) return this.client;
    if (this.connecting) return this.connecting;
    if (Date.now() - this.lastFailure < 3000) return undefined;
    const timeout = this.opts.dbusTimeoutMs ?? 2000;
    this.connecting = (async () => {
      let timer: NodeJS.Timeout | undefined;
      try {
        const c = await Promise.race([
          SystemdClient.connect(this.opts.dbusAddress),
          new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('D-Bus connect timed out')), timeout); }),
        ]);
        if (this.closed) { c.close(); return undefined; }
        // A broken connection is dropped and redialled on the next call.
        (c as unknown as { bus: { on(e: string, f: () => void): void } }).bus?.on?.('error', () => { if (this.client === c) this.client = undefined; });
        this.client = c;
        return c;
      } catch {
        this.lastFailure = Date.now();
        return undefined;
      } finally {
        clearTimeout(timer);
        this.connecting = undefined;
      }
    })();
    return this.connecting;
  }

  close(): void {
    this.closed = true;
    this.folders.close();
    this.client?.close();
    this.client = undefined;
  }

  /**
   * The node's systemd plus the state of all our units, read with one
   * ListUnitsByPatterns call: a listing of N pods then costs one round trip
   * per live app instead of two per app. Undefined without systemd.
   */
  async listingSystemd(): Promise<Listing | undefined> {
    const c = await this.systemd();
    if (!c) return undefined;
    try {
      return { systemd: c, units: await readUnitStates(c) };
    } catch {
      this.client = undefined;
      c.close();
      return undefined;
    }
  }

  // ---- pods ------------------------------------------------------------------

  async listPodLocations(): Promise<PodLocation[]> {
    const locations = await this.pods.list();
    this.podCache.retain(locations.map((l) => l.dir));
    return locations;
  }

  /** A pod by UUID or unique prefix: INVALID_ARGUMENT for an ambiguous prefix, NOT_FOUND for none. */
  async findPod(ref: string): Promise<PodLocation> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const matches = (await this.listPodLocations()).filter((p) => p.uuid.startsWith(ref));
      const uuids = new Set(matches.map((m) => m.uuid));
      if (uuids.size > 1) throw invalid(`pod id prefix "${ref}" is ambiguous: it matches ${uuids.size} pods`);
      const [match] = matches;
      if (!match) break;
      // It may be moving between lifecycle folders right now: look again.
      if (await fs.stat(match.dir).then(() => true, () => false)) return match;
    }
    throw notFound(`no pod ${isFullPodUuid(ref) ? 'with UUID' : 'matching'} ${ref}`);
  }

  /** The pod's status as runtime-rkt computes it; a pod gone meanwhile reads as undefined. */
  async podStatus(loc: PodLocation, systemd: SystemdClient | undefined, units?: UnitStates): Promise<PodStatus | undefined> {
    if (loc.state === 'embryo' || loc.state === 'prepare') {
      // Only id and state are served for these; isFree needs read access to the directory.
      let free = false;
      try {
        free = await isAbandoned(loc.dir);
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') return undefined;
        free = false;
      }
      return { uuid: loc.uuid, state: free ? 'aborted-prepare' : loc.state === 'embryo' ? 'embryo' : 'preparing', apps: [] };
    }
    const status = await readPodStatus(systemd, loc, units, this.podCache);
    if (!status.handler && !(await fs.stat(loc.dir).then(() => true, () => false))) return undefined;
    return status;
  }

  /**
   * The Pod message. `detail` adds the manifest and apps; `inspect` (InspectPod)
   * also fills each app's state, exit code and full image.
   */
  async podMessage(loc: PodLocation, status: PodStatus, opts: { detail: boolean; inspect: boolean }): Promise<PodMsg> {
    // A status object is reused only while nothing it came from changed (PodStatusCache), and so is its message.
    if (opts.inspect) return this.buildPodMessage(loc, status, opts);
    let built = this.messages.get(status);
    if (!built) this.messages.set(status, built = {});
    const kind = opts.detail ? 'detail' : 'brief';
    return built[kind] ??= await this.buildPodMessage(loc, status, opts);
  }

  private async buildPodMessage(loc: PodLocation, status: PodStatus, opts: { detail: boolean; inspect: boolean }): Promise<PodMsg> {
    const msg: PodMsg = {
      id: status.uuid, pid: 0, state: POD_STATE[status.state], apps: [], networks: [], manifest: Buffer.alloc(0),
      annotations: [], cgroup: '', created_at: '0', started_at: '0', gc_marked_at: '0',
    };
    if (status.state === 'embryo' || status.state === 'preparing' || status.state === 'aborted-prepare') return msg;
    // The same snapshot readPodStatus just used (cached): no second read of the files.
    const snap = await this.podCache.files.podDir(loc.dir).catch(() => undefined);
    Object.assign(msg, { created_at: String(snap?.createdNs ?? 0n), started_at: String(snap?.startedNs ?? 0n), gc_marked_at: String(snap?.gcMarkedNs ?? 0n) });
    const annotations: Record<string, string> = { ...(status.annotations ?? {}) };
    if (status.name) annotations[ANNOTATION.name] = status.name;
    if (status.namespace) annotations[ANNOTATION.namespace] = status.namespace;
    if (status.uid) annotations[ANNOTATION.uid] = status.uid;
    if (status.handler) annotations[ANNOTATION.stage1] = status.handler;
    msg.annotations = kvs(annotations);
    const running = status.state === 'running';
    if (running) {
      msg.pid = status.apps.find((a) => a.state === 'running' && a.mainPid)?.mainPid ?? 0;
      if (status.slice) msg.cgroup = sliceCgroup(status.slice);
    }
    let manifest: RuntimePodManifest | undefined;
    const needManifest = opts.detail || opts.inspect || running;
    if (needManifest && snap?.manifestRaw) {
      manifest = snap.manifest;
      if (opts.detail || opts.inspect) msg.manifest = snap.manifestRaw;
    }
    if (running && manifest) msg.networks = networksOf(manifest, status.networks);
    if (opts.detail || opts.inspect) {
      const images = opts.inspect ? await this.imageIndex() : undefined;
      msg.apps = status.apps.map((a) => appMessage(a, opts.inspect, images));
    }
    return msg;
  }

  // ---- images ----------------------------------------------------------------

  async listImageRecords(): Promise<ImageRecord[]> {
    const dir = path.join(this.imagesDir, 'records');
    const files = await readdirOrEmpty(dir);
    const records = await Promise.all(files.filter((f) => /^[0-9a-f]{64}\.json$/.test(f)).map(async (f) => {
      try {
        const r = JSON.parse(await fs.readFile(path.join(dir, f), 'utf8')) as ImageRecord;
        return typeof r?.id === 'string' && r.id === `sha256:${f.slice(0, 64)}` ? r : undefined;
      } catch {
        return undefined; // removed meanwhile, or not a record
      }
    }));
    return records.filter((r): r is ImageRecord => r !== undefined).sort((a, b) => a.importedAt - b.importedAt || a.id.localeCompare(b.id));
  }

  private async imageIndex(): Promise<Map<string, ImageRecord>> {
    return new Map((await this.listImageRecords()).map((r) => [r.id, r]));
  }

  /** An image by full id or unique id prefix (hex, validated by checkImageRef). */
  async findImage(hex: string): Promise<ImageRecord> {
    const hits = (await this.listImageRecords()).filter((r) => r.id.slice(7).startsWith(hex));
    if (hits.length > 1) throw invalid(`image id prefix ${hex} is ambiguous (${hits.length} images)`);
    if (!hits[0]) throw notFound(`no image sha256:${hex}${hex.length < 64 ? '…' : ''}`);
    return hits[0];
  }

  async imageMessage(r: ImageRecord, detail: boolean): Promise<ImageMsg> {
    const msg = imageMessage(r);
    if (detail && /^sha256:[0-9a-f]{64}$/.test(r.manifestDigest)) {
      msg.manifest = await fs.readFile(path.join(this.imagesDir, 'blobs', 'sha256', r.manifestDigest.slice(7))).catch(() => Buffer.alloc(0));
    }
    return msg;
  }
}

/** `localhost/busybox:latest` → name `localhost/busybox`, version `latest`. */
export function splitName(full: string): { name: string; version: string } {
  const slash = full.lastIndexOf('/');
  const colon = full.lastIndexOf(':');
  return colon > slash ? { name: full.slice(0, colon), version: full.slice(colon + 1) } : { name: full, version: '' };
}

export function imageMessage(r: ImageRecord): ImageMsg {
  const { name, version } = splitName(r.names[0] ?? '');
  return {
    base_format: r.format === 'oci' ? { type: 'IMAGE_TYPE_OCI', version: '1.0' } : { type: 'IMAGE_TYPE_DOCKER', version: '1.2' },
    id: r.id,
    name,
    version,
    import_timestamp: String(Math.floor(r.importedAt / 1000)),
    manifest: Buffer.alloc(0),
    size: String(r.size ?? 0),
    annotations: kvs(r.annotations),
    labels: kvs(r.config?.Labels ?? undefined),
  };
}

const APP_STATE: Record<AppStatus['state'], AppStateName> = { running: 'APP_STATE_RUNNING', exited: 'APP_STATE_EXITED', waiting: 'APP_STATE_UNDEFINED', unknown: 'APP_STATE_UNDEFINED' };

function appMessage(a: AppStatus, inspect: boolean, images: Map<string, ImageRecord> | undefined): AppMsg {
  const record = images?.get(a.image.id);
  const annotations: Record<string, string> = { [ANNOTATION.appImageName]: a.image.name };
  if (!inspect) return { name: a.name, image: { ...blankImage(), id: a.image.id }, state: 'APP_STATE_UNDEFINED', exit_code: 0, annotations: kvs(annotations) };
  if (a.reason) annotations[ANNOTATION.appReason] = a.reason;
  annotations[ANNOTATION.appRestarts] = String(a.restartCount);
  // Waiting to be restarted (CrashLoopBackOff): its last run has exited.
  const exited = a.state === 'exited' || (a.state === 'waiting' && a.lastTermination !== undefined);
  return {
    name: a.name,
    image: record ? imageMessage(record) : { ...blankImage(), id: a.image.id, ...splitName(a.image.name) },
    state: exited ? 'APP_STATE_EXITED' : APP_STATE[a.state],
    exit_code: a.state === 'exited' ? a.exitCode ?? 0 : exited ? a.lastTermination!.exitCode : 0,
    annotations: kvs(annotations),
  };
}

function blankImage(): ImageMsg {
  return { base_format: null, id: '', name: '', version: '', import_timestamp: '0', manifest: Buffer.alloc(0), size: '0', annotations: [], labels: [] };
}

/**
 * Networks of a running pod: a pod on the host's network (stage1 fly, or
 * hostNetwork: true) is on network `host`; a pod attached through CNI is on
 * its network with the addresses the plugins gave it; a pod in its own
 * network namespace without CNI (`--cni-conf-dir` unset) has only its
 * loopback, named `loopback`.
 */
export function networksOf(m: RuntimePodManifest, attached: PodStatus['networks']): NetworkMsg[] {
  if (m.stage1 === 'fly' || m.pod?.spec?.hostNetwork) return [{ name: 'host', ipv4: '', ipv6: '' }];
  if (attached?.length) {
    return attached.map((n) => ({ name: n.name, ipv4: n.ips.find((ip) => !ip.includes(':')) ?? '', ipv6: n.ips.find((ip) => ip.includes(':')) ?? '' }));
  }
  return [{ name: 'loopback', ipv4: '127.0.0.1', ipv6: '::1' }];
}
