/**
 * ListenEvents' source: pod, app and image events derived from the runtime's
 * on-disk state, level-triggered (kubelet-style): every scan compares what is
 * on disk now with what was already reported, so a missed inotify event, a
 * burst of changes or a restart of the runtime loses nothing; inotify
 * (fs.watch) only makes a scan happen sooner, and a periodic rescan catches
 * whatever it did not report.
 *
 * Per pod the events come in lifecycle order, each at most once:
 *   POD_PREPARED → POD_STARTED → APP_STARTED (each app) → APP_EXITED … →
 *   POD_EXITED → POD_GARBAGE_COLLECTED
 * or POD_PREPARE_ABORTED → POD_GARBAGE_COLLECTED. A pod first seen in a later
 * state gets the earlier events too (their times come from its timestamp
 * files). Sources on disk:
 *   prepared        pods/prepared|run|exited-garbage/<uuid>/pod.json (its mtime)
 *   aborted         pods/garbage/<uuid> never prepared, or an embryo/prepare nobody locks
 *   started         the `started` timestamp (ns)
 *   app started     `started` for the first run; a restart when the app's unit is
 *                   active again after an exit record (systemd), or when a later
 *                   exit record proves the run happened
 *   app exited      one per exit record apps/<app>/exits/<ns>.json; apps of a pod
 *                   removed while running (pod rm --force: no record is written)
 *                   get a synthesized one (data reason=Removed) when it is gone
 *   pod exited      every app exited (record, and systemd says not restarting) or
 *                   the pod was removed
 *   gc              the pod directory is gone from every lifecycle folder
 *   image imported  a new images/records/<hex>.json (time: its importedAt)
 *   image removed   a record gone
 * Pods and images present when the service starts are the baseline: only
 * what happens after that is reported (the contract: no history before the
 * service started).
 */
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { POD_DIR_STATES, type PodDirState, type PodLocation } from '../runtime-rkt/pod-store.js';
import { readPodStatus } from '../runtime-rkt/pod-status.js';
import { terminationOf } from '../runtime-rkt/status.js';
import { podPaths, type ExitRecord, type RuntimePodManifest } from '../stage1/contract.js';
import type { EventMsg, EventTypeName, KeyValue } from './proto.js';
import type { NodeReader } from './reader.js';
import { isAbandoned, readTimestampNs } from './reader.js';

interface AppTrack {
  /** exit record file names already reported, in order */
  exits: string[];
  /** runs reported as started (1 = the first run) */
  starts: number;
  lastExitAt?: number;
}

interface PodTrack {
  uuid: string;
  dirState: PodDirState;
  name: string;
  manifest?: RuntimePodManifest;
  emitted: Set<string>;
  apps: Map<string, AppTrack>;
  gcMarkedS?: number;
  watchers: Map<string, fs.FSWatcher>;
}

export interface StampedEvent { seq: number; event: EventMsg }

const nowS = () => Math.floor(Date.now() / 1000);
const nsToS = (ns: string) => (ns === '0' ? 0 : Number(BigInt(ns) / 1_000_000_000n));
const kv = (o: Record<string, string | number | undefined>): KeyValue[] =>
  Object.entries(o).filter(([, v]) => v !== undefined).map(([Key, v]) => ({ Key, value: String(v) }));

export interface EventSourceOptions {
  /** Full rescan period (ms); inotify makes most scans happen sooner. Default 1000. */
  rescanMs?: number;
  /** Events kept in memory for subscribers that ask for a since_time in the past. Default 100000. */
  historySize?: number;
}

export class EventSource extends EventEmitter {
  private readonly tracks = new Map<string, PodTrack>();
  private readonly images = new Map<string, string>();
  private readonly history: StampedEvent[] = [];
  private seq = 0;
  private scanning: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private readonly dirWatchers = new Map<string, fs.FSWatcher>();
  private closed = false;
  private baselined = false;
  readonly startedAtS = nowS();
  private readonly rescanMs: number;
  private readonly historySize: number;

  constructor(private readonly reader: NodeReader, opts: EventSourceOptions = {}) {
    super();
    this.setMaxListeners(0);
    this.rescanMs = opts.rescanMs ?? 1000;
    this.historySize = opts.historySize ?? 100_000;
  }

  /** Take the baseline (silently) and start watching. */
  async start(): Promise<void> {
    // An unreadable data dir must not keep the service from answering: the
    // baseline is then taken by the first scan that succeeds.
    await this.scan(true).then(() => { this.baselined = true; }, (err) => this.emit('scanError', err));
    const tick = () => {
      if (this.closed) return;
      this.timer = setTimeout(() => { void this.scanNow().catch(() => undefined).finally(tick); }, this.rescanMs);
      this.timer.unref();
    };
    tick();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.debounce);
    for (const w of this.dirWatchers.values()) w.close();
    for (const t of this.tracks.values()) for (const w of t.watchers.values()) w.close();
    this.dirWatchers.clear();
  }

  /** Events after seq `after` (history), oldest first. */
  since(timeS: number): StampedEvent[] {
    return this.history.filter((e) => Number(e.event.time) >= timeS);
  }

  get lastSeq(): number {
    return this.seq;
  }

  /** Scan now (or right after the scan in progress) and resolve when done. */
  scanNow(): Promise<void> {
    if (this.scanning) {
      this.again = true;
      return this.scanning.then(() => this.scanning ?? undefined);
    }
    this.scanning = (async () => {
      try {
        do {
          this.again = false;
          const silent = !this.baselined;
          await this.scan(silent).then(() => { this.baselined = true; }, (err) => this.emit('scanError', err));
        } while (this.again && !this.closed);
      } finally {
        this.scanning = undefined;
      }
    })();
    return this.scanning;
  }

  private poke = (): void => {
    if (this.closed || this.debounce) return;
    this.debounce = setTimeout(() => { this.debounce = undefined; void this.scanNow(); }, 15);
  };

  private watchDir(map: Map<string, fs.FSWatcher>, dir: string): void {
    if (map.has(dir) || this.closed) return;
    try {
      const w = fs.watch(dir, { persistent: false }, this.poke);
      w.on('error', () => { w.close(); map.delete(dir); });
      map.set(dir, w);
    } catch {
      // Not there yet, or not readable: the periodic rescan covers it.
    }
  }

  private publish(batch: EventMsg[], silent: boolean): void {
    if (silent || batch.length === 0) return;
    const stamped = batch.map((event) => ({ seq: ++this.seq, event }));
    this.history.push(...stamped);
    if (this.history.length > this.historySize) this.history.splice(0, this.history.length - this.historySize);
    this.emit('events', stamped);
  }

  // ---- scanning ----------------------------------------------------------------

  private async scan(silent: boolean): Promise<void> {
    const root = this.reader.pods.root;
    for (const s of POD_DIR_STATES) this.watchDir(this.dirWatchers, path.join(root, s));
    this.watchDir(this.dirWatchers, path.join(this.reader.imagesDir, 'records'));
    const batch: EventMsg[] = [];
    let locations = await this.reader.listPodLocations();
    const seen = new Set(locations.map((l) => l.uuid));
    if ([...this.tracks.keys()].some((u) => !seen.has(u))) {
      // A pod that seems gone may have been renamed between two readdirs: look once more.
      locations = await this.reader.listPodLocations();
    }
    const byUuid = new Map<string, PodLocation>();
    for (const loc of locations) byUuid.set(loc.uuid, loc); // the later folder wins (moves only go forward)
    await Promise.all([...byUuid.values()].map(async (loc) => {
      const events: EventMsg[] = [];
      await this.scanPod(loc, events).catch(() => undefined);
      batch.push(...events);
    }));
    for (const [uuid, t] of this.tracks) {
      if (byUuid.has(uuid)) continue;
      this.podGone(t, batch);
      for (const w of t.watchers.values()) w.close();
      this.tracks.delete(uuid);
    }
    await this.scanImages(batch);
    this.publish(batch, silent);
  }

  private track(loc: PodLocation): PodTrack {
    let t = this.tracks.get(loc.uuid);
    if (!t) {
      t = { uuid: loc.uuid, dirState: loc.state, name: '', emitted: new Set(), apps: new Map(), watchers: new Map() };
      this.tracks.set(loc.uuid, t);
    }
    t.dirState = loc.state;
    return t;
  }

  private add(t: PodTrack, out: EventMsg[], key: string, type: EventTypeName, from: string, time: number, data: KeyValue[] = []): boolean {
    if (t.emitted.has(key)) return false;
    t.emitted.add(key);
    out.push({ type, id: t.uuid, from, time: String(Math.max(0, Math.floor(time))), data });
    return true;
  }

  private podData(t: PodTrack): KeyValue[] {
    const md = t.manifest?.pod.metadata;
    return kv({ namespace: md ? md.namespace ?? 'default' : undefined, stage1: t.manifest?.stage1 });
  }

  private async scanPod(loc: PodLocation, out: EventMsg[]): Promise<void> {
    const t = this.track(loc);
    if (t.emitted.has('exited') || t.emitted.has('aborted')) return; // only its removal is left to report
    const paths = podPaths(loc.dir);
    if (loc.state === 'embryo' || loc.state === 'prepare') {
      let free = false;
      try { free = await isAbandoned(loc.dir); } catch { free = false; }
      if (free) this.add(t, out, 'aborted', 'EVENT_TYPE_POD_PREPARE_ABORTED', t.name, nowS());
      return;
    }
    if (!t.manifest) {
      try {
        t.manifest = JSON.parse(await fsp.readFile(paths.manifest, 'utf8')) as RuntimePodManifest;
        t.name = t.manifest.pod?.metadata?.name ?? '';
        for (const a of t.manifest.apps) if (!t.apps.has(a.name)) t.apps.set(a.name, { exits: [], starts: 0 });
      } catch {
        t.manifest = undefined;
      }
    }
    if (loc.state === 'garbage') {
      if (!t.emitted.has('prepared')) this.add(t, out, 'aborted', 'EVENT_TYPE_POD_PREPARE_ABORTED', t.name, nsToS(await readTimestampNs(paths.gcMarked)) || nowS());
      return;
    }
    if (!t.manifest) return; // mid-write, or unreadable: next scan
    if (!t.emitted.has('prepared')) {
      const st = await fsp.stat(paths.manifest).catch(() => undefined);
      this.add(t, out, 'prepared', 'EVENT_TYPE_POD_PREPARED', t.name, st ? st.mtimeMs / 1000 : nowS(), this.podData(t));
    }
    if (loc.state === 'prepared') return;
    // run/ or exited-garbage/: watch the pod directory (started, gc-marked) and each app's exits/.
    if (loc.state === 'run') {
      this.watchDir(t.watchers, loc.dir);
      for (const a of t.apps.keys()) this.watchDir(t.watchers, paths.exits(a));
    }
    if (!t.emitted.has('started')) {
      const startedNs = await readTimestampNs(paths.started);
      if (startedNs === '0') return;
      const s = nsToS(startedNs);
      this.add(t, out, 'started', 'EVENT_TYPE_POD_STARTED', t.name, s, this.podData(t));
      for (const [name, app] of t.apps) {
        app.starts = 1;
        this.add(t, out, `app-started:${name}:1`, 'EVENT_TYPE_APP_STARTED', name, s, kv({ run: 1 }));
      }
    }
    let allExited = true;
    let anyExit = false;
    for (const [name, app] of t.apps) {
      const dir = paths.exits(name);
      const files = (await fsp.readdir(dir).catch(() => [] as string[])).filter((f) => /^\d+\.json$/.test(f));
      files.sort((a, b) => (a.length - b.length) || (a < b ? -1 : 1));
      for (const f of files) {
        if (app.exits.includes(f)) continue;
        let record: ExitRecord;
        try { record = JSON.parse(await fsp.readFile(path.join(dir, f), 'utf8')) as ExitRecord; } catch { break; }
        const run = app.exits.length + 1;
        if (app.starts < run) {
          // The run that just ended must have started: report it first.
          app.starts = run;
          this.add(t, out, `app-started:${name}:${run}`, 'EVENT_TYPE_APP_STARTED', name, app.lastExitAt ?? record.at / 1e9, kv({ run }));
        }
        app.exits.push(f);
        app.lastExitAt = record.at / 1e9;
        const term = terminationOf(record);
        this.add(t, out, `app-exited:${name}:${f}`, 'EVENT_TYPE_APP_EXITED', name, record.at / 1e9,
          kv({ run, exit_code: term.exitCode, reason: term.reason, signal: term.signal, invocation: record.invocation }));
      }
      if (app.exits.length === 0) allExited = false;
      else anyExit = true;
    }
    if (loc.state === 'exited-garbage') {
      t.gcMarkedS ??= nsToS(await readTimestampNs(paths.gcMarked)) || nowS();
      return; // POD_EXITED comes when its directory is gone (the apps are being stopped now)
    }
    // run/: did every app finish for good, or is one running again (a restart)?
    if (!anyExit || t.emitted.has('exited')) return;
    const policy = t.manifest.restartPolicy;
    if (allExited && policy === 'Never') {
      this.podExited(t, out);
      return;
    }
    const systemd = await this.reader.systemd();
    if (!systemd) return;
    const status = await readPodStatus(systemd, loc);
    for (const a of status.apps) {
      const app = t.apps.get(a.name);
      if (!app) continue;
      if (a.state === 'running' && app.starts === app.exits.length && app.exits.length > 0) {
        const run = app.exits.length + 1;
        app.starts = run;
        this.add(t, out, `app-started:${a.name}:${run}`, 'EVENT_TYPE_APP_STARTED', a.name, (a.startedAt ?? Date.now()) / 1000, kv({ run }));
      }
    }
    if (status.state === 'exited') this.podExited(t, out);
  }

  private podExited(t: PodTrack, out: EventMsg[]): void {
    const last = Math.max(0, ...[...t.apps.values()].map((a) => a.lastExitAt ?? 0));
    this.add(t, out, 'exited', 'EVENT_TYPE_POD_EXITED', t.name, last || t.gcMarkedS || nowS(), this.podData(t));
  }

  private podGone(t: PodTrack, out: EventMsg[]): void {
    if (t.emitted.has('started') && !t.emitted.has('exited')) {
      // Removed while running (pod rm --force): its apps were stopped without an exit record.
      const at = t.gcMarkedS ?? nowS();
      for (const [name, app] of t.apps) {
        if (app.starts > app.exits.length) {
          app.lastExitAt = at;
          this.add(t, out, `app-exited:${name}:removed`, 'EVENT_TYPE_APP_EXITED', name, at, kv({ run: app.starts, reason: 'Removed' }));
        }
      }
      this.podExited(t, out);
    }
    if (!t.emitted.has('prepared') && !t.emitted.has('aborted')) this.add(t, out, 'aborted', 'EVENT_TYPE_POD_PREPARE_ABORTED', t.name, t.gcMarkedS ?? nowS());
    this.add(t, out, 'gc', 'EVENT_TYPE_POD_GARBAGE_COLLECTED', t.name, nowS(), this.podData(t));
  }

  private async scanImages(out: EventMsg[]): Promise<void> {
    const records = await this.reader.listImageRecords().catch(() => undefined);
    if (!records) return;
    const now = new Set<string>();
    for (const r of records) {
      now.add(r.id);
      if (this.images.has(r.id)) continue;
      this.images.set(r.id, r.names[0] ?? '');
      out.push({ type: 'EVENT_TYPE_IMAGE_IMPORTED', id: r.id, from: r.names[0] ?? '', time: String(Math.floor(r.importedAt / 1000)), data: kv({ names: r.names.join(','), format: r.format }) });
    }
    for (const [id, name] of this.images) {
      if (now.has(id)) continue;
      this.images.delete(id);
      out.push({ type: 'EVENT_TYPE_IMAGE_REMOVED', id, from: name, time: String(nowS()), data: [] });
    }
  }
}
