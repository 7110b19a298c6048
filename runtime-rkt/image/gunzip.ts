import { createRequire } from 'node:module';
import { Duplex } from 'node:stream';

/**
 * gunzip for layers (native/inflate.c): zlib on libuv's thread pool without
 * the CRC-32 (the blob digest and the diff_id already prove every byte), and
 * one call per batch of written chunks, so 64 KiB socket reads need no
 * copying into larger buffers first. Multi-member data is read to its end;
 * bytes after a member must start another (as with node's Gunzip and Go's
 * reader, which Docker and containerd use). Data that ends inside a member is
 * an error.
 */
interface InflateResult {
  input: number;
  offset: number;
  produced: number;
  complete: boolean;
}

interface InflateAddon {
  create(): unknown;
  inflate(inflater: unknown, inputs: Buffer[], input: number, offset: number, out: Buffer, outOffset: number): Promise<InflateResult>;
}

const require = createRequire(import.meta.url);
// dist/runtime-rkt/image/gunzip.js -> <repo>/native/build/Release
const addon: InflateAddon = require('../../../native/build/Release/inflate.node');

/** Output buffer size: what is passed on at a time (the last piece may be shorter). */
const OUT_CHUNK = 1 << 20;

export class LayerGunzip extends Duplex {
  private readonly inflater = addon.create();
  private out = Buffer.alloc(0);
  private outOffset = 0;
  /** out[pushed, outOffset) is inflated but not yet passed on. */
  private pushed = 0;
  private complete = false;
  private sawInput = false;
  /** Resolves when the reader wants more (backpressure: output waits while the reader has enough). */
  private wake: (() => void) | undefined;

  constructor() {
    // Chunks written while a call runs wait here and go as one batch.
    super({ writableHighWaterMark: 1 << 20, readableHighWaterMark: 1 << 20 });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.inflateAll([chunk], callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    this.inflateAll(chunks.map((c) => c.chunk), callback);
  }

  override _read(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (this.complete) {
      if (this.outOffset > this.pushed) this.push(this.out.subarray(this.pushed, this.outOffset));
      this.push(null);
      callback();
    } else {
      callback(new Error(this.sawInput ? 'gzip data is truncated: it ends inside a member' : 'gzip data is empty'));
    }
  }

  private inflateAll(inputs: Buffer[], callback: (err?: Error | null) => void): void {
    this.run(inputs).then(() => callback(), (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))));
  }

  private async run(inputs: Buffer[]): Promise<void> {
    let input = 0;
    let offset = 0;
    while (input < inputs.length) {
      if (inputs[input]!.length > offset) this.sawInput = true;
      if (this.outOffset >= this.out.length) {
        this.out = Buffer.allocUnsafe(OUT_CHUNK);
        this.outOffset = 0;
        this.pushed = 0;
      }
      const r = await addon.inflate(this.inflater, inputs, input, offset, this.out, this.outOffset);
      if (this.destroyed) return; // an aborted unpack: the rest of the batch is nobody's
      if (r.produced === 0 && r.input === input && r.offset === offset) throw new Error('gzip data is corrupt: inflating made no progress');
      ({ input, offset } = r);
      this.complete = r.complete;
      this.outOffset += r.produced;
      // Passed on in whole output buffers: every chunk costs the reader a hash update, a tar-stream slice and
      // an awaited write, and small batches of input (a socket read or two) would make small chunks.
      if (this.outOffset === this.out.length) {
        const full = this.out.subarray(this.pushed);
        this.pushed = this.outOffset;
        // Highly compressible input inflates many times over: never more than the reader asked for ahead.
        if (!this.push(full)) await new Promise<void>((resolve) => (this.wake = resolve));
      }
    }
  }
}
