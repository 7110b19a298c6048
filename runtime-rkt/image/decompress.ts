import { loadAddon } from '../../common/native.js';
import { Duplex } from 'node:stream';

/**
 * Layer decompression, gzip or zstd (native/decompress.c): on libuv's thread
 * pool, gzip without the CRC-32 (the blob digest and the diff_id already
 * prove every byte), one call per batch of written chunks, so 64 KiB socket
 * reads need no copying into larger buffers first. Multi-member gzip and
 * multi-frame zstd are read to their end; bytes after a member or frame must
 * start another (as with node's Gunzip and Go's readers, which Docker and
 * containerd use). Data that ends inside one is an error.
 */
export type LayerCodec = 'gzip' | 'zstd';

interface DecompressResult {
  input: number;
  offset: number;
  produced: number;
  complete: boolean;
}

interface DecompressAddon {
  create(codec: LayerCodec): unknown;
  decompress(decoder: unknown, inputs: Buffer[], input: number, offset: number, out: Buffer, outOffset: number): Promise<DecompressResult>;
}

const addon: DecompressAddon = loadAddon('decompress');

/** Output buffer size: what is passed on at a time (the last piece may be shorter). */
const OUT_CHUNK = 1 << 20;

export class LayerDecompressor extends Duplex {
  private readonly decoder: unknown;
  private out = Buffer.alloc(0);
  private outOffset = 0;
  /** out[pushed, outOffset) is decoded but not yet passed on. */
  private pushed = 0;
  private complete = false;
  private sawInput = false;
  /** Resolves when the reader wants more (backpressure: output waits while the reader has enough). */
  private wake: (() => void) | undefined;

  constructor(private readonly codec: LayerCodec) {
    // Chunks written while a call runs wait here and go as one batch.
    super({ writableHighWaterMark: 1 << 20, readableHighWaterMark: 1 << 20 });
    this.decoder = addon.create(codec);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.settle(this.run([chunk]), callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    this.settle(this.run(chunks.map((c) => c.chunk)), callback);
  }

  override _read(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.settle(this.finish(), callback);
  }

  private settle(work: Promise<void>, callback: (err?: Error | null) => void): void {
    work.then(() => callback(), (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))));
  }

  /** The input is over: what the decoder held back for want of room comes out, then it must be complete. */
  private async finish(): Promise<void> {
    while (!this.complete && this.sawInput) {
      const r = await this.decode([], 0, 0);
      if (r === undefined || r.produced === 0) break;
    }
    if (!this.complete) {
      throw new Error(this.sawInput ? `${this.codec} data is truncated: it ends inside a ${this.codec === 'gzip' ? 'member' : 'frame'}` : `${this.codec} data is empty`);
    }
    if (this.outOffset > this.pushed) this.push(this.out.subarray(this.pushed, this.outOffset));
    this.push(null);
  }

  private async run(inputs: Buffer[]): Promise<void> {
    let at = { input: 0, offset: 0 };
    while (at.input < inputs.length) {
      if (inputs[at.input]!.length > at.offset) this.sawInput = true;
      const r = await this.decode(inputs, at.input, at.offset);
      if (r === undefined) return;
      if (r.produced === 0 && r.input === at.input && r.offset === at.offset) throw new Error(`${this.codec} data is corrupt: decoding made no progress`);
      at = r;
    }
  }

  /** One call: decode into the output buffer, pass it on once full; undefined once the stream is destroyed. */
  private async decode(inputs: Buffer[], input: number, offset: number): Promise<DecompressResult | undefined> {
    if (this.outOffset >= this.out.length) {
      this.out = Buffer.allocUnsafe(OUT_CHUNK);
      this.outOffset = 0;
      this.pushed = 0;
    }
    const r = await addon.decompress(this.decoder, inputs, input, offset, this.out, this.outOffset);
    if (this.destroyed) return undefined; // an aborted unpack: the rest is nobody's
    this.complete = r.complete;
    this.outOffset += r.produced;
    // Passed on in whole output buffers: every chunk costs the reader a hash update, a tar-stream slice and
    // an awaited write, and small batches of input (a socket read or two) would make small chunks.
    if (this.outOffset === this.out.length) {
      const full = this.out.subarray(this.pushed);
      this.pushed = this.outOffset;
      // Highly compressible input decodes many times over: never more than the reader asked for ahead.
      if (!this.push(full)) await new Promise<void>((resolve) => (this.wake = resolve));
    }
    return r;
  }
}
