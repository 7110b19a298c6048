import { loadAddon } from '../../common/native.js';

/**
 * SHA-256 of a stream, computed on native threads (native/sha256.c) so that a
 * pull's two hashes per layer (blob and diff_id) run beside the download and
 * the unpacker instead of on the JavaScript thread, and the streams of
 * several layers share vector instructions.
 */
interface Sha256Addon {
  create(): unknown;
  /** With `flush`, someone waits on this update: it is hashed without waiting for other streams to share lanes with. */
  update(hasher: unknown, buffers: Buffer[], flush: boolean): Promise<void>;
  digest(hasher: unknown): string;
  kernel(name?: Sha256Kernel): Sha256Kernel;
}

/** The multi-stream kernel: 8 streams per AVX-512 or AVX2 instruction, or none (each stream on its own through OpenSSL: the default on CPUs with the SHA extensions, where it is faster). */
export type Sha256Kernel = 'avx512' | 'avx2' | 'none';

const addon: Sha256Addon = loadAddon('sha256');

/** The multi-stream kernel in use; with a name, use that one (tests compare them; it must be supported by the CPU). */
export function sha256Kernel(name?: Sha256Kernel): Sha256Kernel {
  return name === undefined ? addon.kernel() : addon.kernel(name);
}

/** Bytes queued or being hashed before update() asks its caller to wait. */
const DEFAULT_HIGH_WATER = 2 << 20;
/** Bytes gathered before an update is handed to the native threads: each costs a hand-off (tens of µs), a socket chunk is 64 KiB. */
const MIN_BATCH = 256 << 10;

export class StreamSha256 {
  private readonly hasher = addon.create();
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  /** Bytes handed to update() whose hashing has not finished. */
  private pendingBytes = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private failure: unknown;
  private waiters: Array<() => void> = [];

  constructor(private readonly highWater = DEFAULT_HIGH_WATER) {}

  /**
   * Hash `chunk` (which must not change afterwards). Returns a promise only
   * when more than the high-water mark is still waiting to be hashed; it
   * settles once the backlog is below it again — the caller's backpressure.
   */
  update(chunk: Buffer): Promise<void> | undefined {
    if (chunk.length === 0) return undefined;
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    this.pendingBytes += chunk.length;
    if (this.pendingBytes > this.highWater) {
      // The caller is about to wait: everything queued goes, and is hashed now rather than when lanes fill.
      this.send(true);
      return new Promise((resolve) => this.waiters.push(resolve));
    }
    if (this.queuedBytes >= MIN_BATCH) this.send(false);
    return undefined;
  }

  /** `sha256:<hex>` of everything given to update(), once it has all been hashed. */
  async digest(): Promise<string> {
    this.send(true);
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
    if (this.failure !== undefined) throw this.failure;
    return addon.digest(this.hasher);
  }

  /**
   * Hand what is queued to the native threads as one update, without waiting
   * for earlier ones: the hasher always has data queued there, so its lane
   * never idles waiting for this thread. `flush` when someone waits on it.
   */
  private send(flush: boolean): void {
    if (this.failure !== undefined) return;
    if (this.queue.length === 0) {
      // Nothing new, but earlier updates may be waiting for lanes to fill: an empty flush hurries them.
      if (flush && this.inFlight.size > 0) this.track(addon.update(this.hasher, [], true), 0);
      return;
    }
    const batch = this.queue;
    const bytes = this.queuedBytes;
    this.queue = [];
    this.queuedBytes = 0;
    this.track(addon.update(this.hasher, batch, flush), bytes);
  }

  private track(hashed: Promise<void>, bytes: number): void {
    const update: Promise<void> = hashed.then(
      () => this.settle(update, bytes),
      (err: unknown) => {
        this.failure ??= err;
        this.settle(update, bytes);
      },
    );
    this.inFlight.add(update);
  }

  private settle(update: Promise<void>, bytes: number): void {
    this.inFlight.delete(update);
    this.pendingBytes -= bytes;
    if (this.pendingBytes <= this.highWater || this.failure !== undefined) {
      const waiting = this.waiters;
      this.waiters = [];
      for (const wake of waiting) wake();
    }
  }
}
