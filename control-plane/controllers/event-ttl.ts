import type { Logger } from '../../common/log.js';
import type { KObj, Store } from '../store.js';

export interface EventTtlOptions {
  /** How long an Event lives after its last write (kube-apiserver's --event-ttl, default 1 h). */
  ttlSeconds: number;
  /** Events kept per namespace; past it the oldest go first (a flood cannot grow the store without bound). */
  maxPerNamespace: number;
}

export const DEFAULT_EVENT_TTL_SECONDS = 3600;
export const DEFAULT_MAX_EVENTS_PER_NAMESPACE = 5000;

/** When an event was last written, in ms: the newest of its timestamps. */
function lastWritten(ev: KObj): number {
  const times = [ev.lastTimestamp, ev.eventTime, ev.series?.lastObservedTime, ev.metadata?.creationTimestamp]
    .map((t) => (typeof t === 'string' ? Date.parse(t) : NaN)).filter(Number.isFinite);
  return times.length ? Math.max(...times) : Date.now();
}

/**
 * Events expire: kube-apiserver writes each with an etcd lease of --event-ttl,
 * renewed on every update. Here a controller beside the API watches the store
 * and deletes what has outlived the TTL, and trims a namespace that holds more
 * than the cap, oldest first. It keeps, per namespace, the event names in the
 * order of their last write (a Map keeps insertion order, and an update moves
 * a name to the end), so a sweep stops at the first event still alive.
 */
export class EventTtlController {
  private readonly byNamespace = new Map<string, Map<string, number>>();
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private trimQueued = new Set<string>();

  constructor(private readonly store: Store, private readonly log: Logger, private readonly opts: EventTtlOptions) {}

  start(): void {
    const all = this.store.list('events').map((ev) => ({ ev, at: lastWritten(ev) })).sort((a, b) => a.at - b.at);
    for (const { ev, at } of all) this.remember(ev.metadata.namespace, ev.metadata.name, at);
    this.unsubscribe = this.store.subscribe((c) => {
      if (c.resource !== 'events') return;
      if (c.type === 'DELETED') this.byNamespace.get(c.namespace)?.delete(c.name);
      else this.remember(c.namespace, c.name, Date.now());
    });
    for (const ns of this.byNamespace.keys()) this.queueTrim(ns);
    this.timer = setInterval(() => this.sweep(), Math.max(1000, Math.min(60_000, (this.opts.ttlSeconds * 1000) / 4)));
    this.timer.unref();
    this.sweep();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.unsubscribe?.();
  }

  private remember(namespace: string, name: string, writtenAt: number): void {
    let names = this.byNamespace.get(namespace);
    if (!names) this.byNamespace.set(namespace, (names = new Map()));
    names.delete(name);
    names.set(name, writtenAt);
    if (names.size > this.opts.maxPerNamespace) this.queueTrim(namespace);
  }

  /** Deletions happen after the write that caused them (store listeners run inside the write). */
  private queueTrim(namespace: string): void {
    if (this.trimQueued.has(namespace)) return;
    this.trimQueued.add(namespace);
    setImmediate(() => {
      this.trimQueued.delete(namespace);
      const names = this.byNamespace.get(namespace);
      let trimmed = 0;
      while (names && names.size > this.opts.maxPerNamespace) {
        const oldest = names.keys().next().value as string;
        names.delete(oldest);
        this.store.delete('events', namespace, oldest);
        trimmed++;
      }
      if (trimmed) this.log.warn({ namespace, trimmed, max: this.opts.maxPerNamespace }, 'too many events in a namespace: the oldest were deleted');
    });
  }

  /** Delete every event whose TTL has passed. */
  sweep(): void {
    const deadline = Date.now() - this.opts.ttlSeconds * 1000;
    let expired = 0;
    for (const [namespace, names] of this.byNamespace) {
      for (const [name, at] of names) {
        if (at > deadline) break;
        names.delete(name);
        this.store.delete('events', namespace, name);
        expired++;
      }
      if (names.size === 0) this.byNamespace.delete(namespace);
    }
    if (expired) this.log.debug({ expired }, 'expired events deleted');
  }
}
