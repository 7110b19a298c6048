import { createRequire } from 'node:module';

/**
 * SHA-256 of a stream, computed on libuv's thread pool (native/sha256.c) so
 * that a pull's two hashes per layer (blob and diff_id) run beside the
 * download and the unpacker instead of on the JavaScript thread.
 */
interface Sha256Addon {
  create(): unknown;
  update(hasher: unknown, buffers: Buffer[]): Promise<void>;
  digest(hasher: unknown): string;
}

const require = createRequire(import.meta.url);
// dist/runtime-rkt/image/sha256.js -> <repo>/native/build/Release
const addon: Sha256Addon = require('../../../native/build/Release/sha256.node');

/** Bytes queued or being hashed before update() asks its caller to wait. */
const DEFAULT_HIGH_WATER = 4 << 20;
/** Bytes gathered before a pool job is queued: each job costs a thread hand-off (tens of µs), a socket chunk is 64 KiB. */
const MIN_BATCH = 256 << 10;

export class StreamSha256 {
  private readonly hasher = addon.create();
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  /** Bytes handed to update() whose hashing has not finished. */
  private pendingBytes = 0;
  private running: Promise<void> | undefined;
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
    // A caller about to be told to wait must not wait on a batch too small to be sent.
    this.pump(this.pendingBytes > this.highWater);
    if (this.pendingBytes <= this.highWater) return undefined;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** `sha256:<hex>` of everything given to update(), once it has all been hashed. */
  async digest(): Promise<string> {
    for (;;) {
      if (this.running) await this.running;
      else if (this.queue.length > 0 && this.failure === undefined) this.pump(true);
      else break;
    }
    if (this.failure !== undefined) throw this.failure;
    return addon.digest(this.hasher);
  }

  private pump(evenIfSmall: boolean): void {
    if (this.running || this.queue.length === 0 || this.failure !== undefined) return;
    if (!evenIfSmall && this.queuedBytes < MIN_BATCH) return;
    // Everything queued while the previous batch ran goes as one batch: one pool job, not one per socket chunk.
    const batch = this.queue;
    const bytes = this.queuedBytes;
    this.queue = [];
    this.queuedBytes = 0;
    this.running = addon.update(this.hasher, batch).then(
      () => this.settle(bytes),
      (err: unknown) => {
        this.failure = err;
        this.queue = [];
        this.queuedBytes = 0;
        this.pendingBytes = 0;
        this.settle(0);
      },
    );
  }

  private settle(bytes: number): void {
    this.running = undefined;
    this.pendingBytes -= bytes;
    if (this.pendingBytes <= this.highWater || this.failure !== undefined) {
      const waiting = this.waiters;
      this.waiters = [];
      for (const wake of waiting) wake();
    }
    this.pump(false);
  }
}
