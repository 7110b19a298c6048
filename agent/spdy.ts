/**
 * The server side of SPDY/3.1 framing, as far as Kubernetes' streams use it
 * (client-go's spdystream): streams the client opens (SYN_STREAM, answered
 * SYN_REPLY), DATA with FIN, RST_STREAM, PING, SETTINGS, WINDOW_UPDATE,
 * GOAWAY. No npm package keeps SPDY framing maintained, and this is the small
 * subset port-forward needs: kubectl 1.31+ tunnels exactly these frames in
 * WebSocket binary messages (SPDY/3.1+portforward.k8s.io), older clients send
 * them over a raw `Upgrade: SPDY/3.1` connection.
 *
 * Flow control: spdystream neither sends nor waits for WINDOW_UPDATE (it relies
 * on TCP), so neither does this; back-pressure is the transport's.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import * as zlib from 'node:zlib';

const VERSION = 3;
const SYN_STREAM = 1, SYN_REPLY = 2, RST_STREAM = 3, SETTINGS = 4, PING = 6, GOAWAY = 7, HEADERS = 8, WINDOW_UPDATE = 9;
const FLAG_FIN = 0x01;
const RST_CANCEL = 5;
const MAX_FRAME = 1 << 24;

/** SPDY/3's header-compression dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1): length-prefixed words, then text. */
const DICTIONARY = (() => {
  const words = ['options', 'head', 'post', 'put', 'delete', 'trace', 'accept', 'accept-charset', 'accept-encoding', 'accept-language', 'accept-ranges',
    'age', 'allow', 'authorization', 'cache-control', 'connection', 'content-base', 'content-encoding', 'content-language', 'content-length',
    'content-location', 'content-md5', 'content-range', 'content-type', 'date', 'etag', 'expect', 'expires', 'from', 'host', 'if-match',
    'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'pragma',
    'proxy-authenticate', 'proxy-authorization', 'range', 'referer', 'retry-after', 'server', 'te', 'trailer', 'transfer-encoding', 'upgrade',
    'user-agent', 'vary', 'via', 'warning', 'www-authenticate', 'method', 'get', 'status', '200 OK', 'version', 'HTTP/1.1', 'url', 'public',
    'set-cookie', 'keep-alive', 'origin'];
  const tail = '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505'
    + '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found'
    + '500 Internal Server Error501 Not Implemented503 Service Unavailable'
    + 'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT'
    + 'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,'
    + 'publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';
  const parts: Buffer[] = [];
  for (const w of words) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(w.length);
    parts.push(len, Buffer.from(w, 'latin1'));
  }
  parts.push(Buffer.from(tail, 'latin1'));
  return Buffer.concat(parts);
})();

export type Headers = Record<string, string>;

/**
 * One stream the client opened; write()/end() send DATA. What the client sends is kept until
 * consume() is called (a port-forward's connection is dialled first), then delivered in order;
 * 'reset' when the client resets it.
 */
export class SpdyStream extends EventEmitter {
  private localClosed = false;
  remoteClosed = false;
  private pending: Array<Buffer | null> | undefined = [];
  private consumer: { onData: (d: Buffer) => void; onEnd: () => void } | undefined;
  constructor(private readonly session: SpdySession, readonly id: number, readonly headers: Headers) { super(); }

  /** Bytes from the client (null: its FIN, or the session's end). */
  deliver(data: Buffer | null): void {
    if (this.pending) { this.pending.push(data); return; }
    if (data === null) this.consumer?.onEnd();
    else this.consumer?.onData(data);
  }

  consume(onData: (d: Buffer) => void, onEnd: () => void): void {
    this.consumer = { onData, onEnd };
    const queued = this.pending ?? [];
    this.pending = undefined;
    for (const d of queued) this.deliver(d);
  }

  write(data: Buffer): boolean {
    if (this.localClosed) return true;
    return this.session.sendData(this.id, data, false);
  }

  /** FIN from our side (the client's side may stay open). */
  end(data?: Buffer): void {
    if (this.localClosed) return;
    this.localClosed = true;
    this.session.sendData(this.id, data ?? Buffer.alloc(0), true);
    this.session.maybeForget(this);
  }

  reset(): void {
    if (this.localClosed && this.remoteClosed) return;
    this.localClosed = this.remoteClosed = true;
    this.session.sendRst(this.id, RST_CANCEL);
    this.session.maybeForget(this);
    this.deliver(null);
  }

  get closed(): boolean { return this.localClosed && this.remoteClosed; }
}

/**
 * A SPDY/3.1 session on `transport` as the server. Emits 'stream' (SpdyStream,
 * already answered with SYN_REPLY) and 'close'.
 */
export class SpdySession extends EventEmitter {
  private buffer: Buffer = Buffer.alloc(0);
  private readonly streams = new Map<number, SpdyStream>();
  private readonly inflate = zlib.createInflate({ dictionary: DICTIONARY });
  private readonly deflate = zlib.createDeflate({ dictionary: DICTIONARY });
  private inflateQueue: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(private readonly transport: Duplex) {
    super();
    transport.on('data', (d: Buffer) => this.receive(d));
    transport.on('close', () => this.shutdown());
    transport.on('end', () => this.shutdown());
    transport.on('error', () => this.shutdown());
  }

  close(): void {
    if (this.closed) return;
    const goaway = Buffer.alloc(8);
    goaway.writeUInt32BE(0, 0);
    goaway.writeUInt32BE(0, 4);
    this.writeControl(GOAWAY, 0, goaway);
    this.transport.end();
    this.shutdown();
  }

  private shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.streams.values()) { s.remoteClosed = true; s.deliver(null); }
    this.streams.clear();
    this.inflate.close();
    this.deflate.close();
    this.transport.destroy();
    this.emit('close');
  }

  maybeForget(s: SpdyStream): void {
    if (s.closed) this.streams.delete(s.id);
  }

  private receive(chunk: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    while (this.buffer.length >= 8) {
      const length = this.buffer.readUIntBE(5, 3);
      if (this.buffer.length < 8 + length) break;
      const frame = this.buffer.subarray(0, 8 + length);
      this.buffer = this.buffer.subarray(8 + length);
      const flags = frame[4]!;
      const body = frame.subarray(8);
      if (frame[0]! & 0x80) this.control(frame.readUInt16BE(2), flags, body);
      else this.data(frame.readUInt32BE(0) & 0x7fffffff, flags, body);
      if (this.closed) return;
    }
    if (this.buffer.length >= 8 && this.buffer.readUIntBE(5, 3) > MAX_FRAME) this.shutdown();
  }

  private data(id: number, flags: number, body: Buffer): void {
    // Frames are handled in order behind any header block still being inflated.
    this.inflateQueue = this.inflateQueue.then(() => {
      const s = this.streams.get(id);
      if (!s || s.remoteClosed) return;
      if (body.length) s.deliver(body);
      if (flags & FLAG_FIN) { s.remoteClosed = true; s.deliver(null); this.maybeForget(s); }
    });
  }

  private control(type: number, flags: number, body: Buffer): void {
    switch (type) {
      case SYN_STREAM: {
        const id = body.readUInt32BE(0) & 0x7fffffff;
        const block = body.subarray(10);
        this.inflateQueue = this.inflateQueue.then(async () => {
          const headers = parseHeaderBlock(await this.inflateBlock(block));
          if (this.closed) return;
          const s = new SpdyStream(this, id, headers);
          this.streams.set(id, s);
          await this.sendSynReply(id);
          if (flags & FLAG_FIN) { s.remoteClosed = true; s.deliver(null); }
          this.emit('stream', s);
        }).catch(() => this.shutdown());
        break;
      }
      case RST_STREAM: {
        const id = body.readUInt32BE(0) & 0x7fffffff;
        this.inflateQueue = this.inflateQueue.then(() => {
          const s = this.streams.get(id);
          if (!s) return;
          this.streams.delete(id);
          s.remoteClosed = true;
          s.emit('reset');
          s.deliver(null);
        });
        break;
      }
      case PING:
        this.writeControl(PING, 0, body.subarray(0, 4));
        break;
      case GOAWAY:
        this.transport.end();
        this.shutdown();
        break;
      case HEADERS:
        // Header blocks share the compression context: inflate to keep it in step, then drop.
        this.inflateQueue = this.inflateQueue.then(() => this.inflateBlock(body.subarray(4))).catch(() => this.shutdown());
        break;
      case SETTINGS: case WINDOW_UPDATE: case SYN_REPLY:
      default:
        break;
    }
  }

  private inflateBlock(block: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const out: Buffer[] = [];
      const onData = (d: Buffer) => out.push(d);
      this.inflate.on('data', onData);
      this.inflate.write(block, (err) => {
        if (err) { this.inflate.off('data', onData); return reject(err); }
        this.inflate.flush(zlib.constants.Z_SYNC_FLUSH, () => {
          this.inflate.off('data', onData);
          resolve(Buffer.concat(out));
        });
      });
    });
  }

  private deflateBlock(headers: Headers): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const out: Buffer[] = [];
      const onData = (d: Buffer) => out.push(d);
      this.deflate.on('data', onData);
      this.deflate.write(buildHeaderBlock(headers), (err) => {
        if (err) { this.deflate.off('data', onData); return reject(err); }
        this.deflate.flush(zlib.constants.Z_SYNC_FLUSH, () => {
          this.deflate.off('data', onData);
          resolve(Buffer.concat(out));
        });
      });
    });
  }

  private async sendSynReply(id: number): Promise<void> {
    const block = await this.deflateBlock({});
    const body = Buffer.alloc(4 + block.length);
    body.writeUInt32BE(id, 0);
    block.copy(body, 4);
    this.writeControl(SYN_REPLY, 0, body);
  }

  sendRst(id: number, status: number): void {
    const body = Buffer.alloc(8);
    body.writeUInt32BE(id, 0);
    body.writeUInt32BE(status, 4);
    this.writeControl(RST_STREAM, 0, body);
  }

  /** DATA frames (split below the frame limit); false when the transport wants a pause. */
  sendData(id: number, data: Buffer, fin: boolean): boolean {
    if (this.closed) return true;
    let ok = true;
    const CHUNK = 64 * 1024;
    let offset = 0;
    do {
      const part = data.subarray(offset, offset + CHUNK);
      offset += part.length;
      const last = offset >= data.length;
      const head = Buffer.alloc(8);
      head.writeUInt32BE(id & 0x7fffffff, 0);
      head[4] = fin && last ? FLAG_FIN : 0;
      head.writeUIntBE(part.length, 5, 3);
      ok = this.transport.write(Buffer.concat([head, part])) && ok;
    } while (offset < data.length);
    return ok;
  }

  private writeControl(type: number, flags: number, body: Buffer): void {
    if (this.closed) return;
    const head = Buffer.alloc(8);
    head.writeUInt16BE(0x8000 | VERSION, 0);
    head.writeUInt16BE(type, 2);
    head[4] = flags;
    head.writeUIntBE(body.length, 5, 3);
    this.transport.write(Buffer.concat([head, body]));
  }

  /** The transport's writable side drained (for back-pressure). */
  onDrain(cb: () => void): void { this.transport.once('drain', cb); }
}

function parseHeaderBlock(block: Buffer): Headers {
  const headers: Headers = {};
  let off = 0;
  const count = block.readUInt32BE(off); off += 4;
  for (let i = 0; i < count; i++) {
    const nl = block.readUInt32BE(off); off += 4;
    const name = block.subarray(off, off + nl).toString('utf8'); off += nl;
    const vl = block.readUInt32BE(off); off += 4;
    const value = block.subarray(off, off + vl).toString('utf8'); off += vl;
    headers[name.toLowerCase()] = value.split('\0')[0]!;
  }
  return headers;
}

function buildHeaderBlock(headers: Headers): Buffer {
  const parts: Buffer[] = [];
  const n = Buffer.alloc(4);
  n.writeUInt32BE(Object.keys(headers).length);
  parts.push(n);
  for (const [k, v] of Object.entries(headers)) {
    for (const s of [k.toLowerCase(), v]) {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(Buffer.byteLength(s));
      parts.push(len, Buffer.from(s));
    }
  }
  return Buffer.concat(parts);
}
