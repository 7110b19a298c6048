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
import { Deflate, Inflate, Z_SYNC_FLUSH } from 'pako';
import type { WebSocket } from 'ws';

const VERSION = 3;
const SYN_STREAM = 1, SYN_REPLY = 2, RST_STREAM = 3, SETTINGS = 4, PING = 6, GOAWAY = 7, HEADERS = 8, WINDOW_UPDATE = 9;
const FLAG_FIN = 0x01;
const RST_CANCEL = 5;
const MAX_FRAME = (1 << 24) - 1;
/** Bytes of a DATA frame's header (stream id, flags, length), before its payload. */
const DATA_FRAME_HEADER = 8;
/** Room for the transport's own header ahead of a frame: a server's WebSocket frame header is at most 10 bytes. */
export const TRANSPORT_HEADROOM = 10;
/** Room a caller of SpdyStream.writeFramed leaves ahead of the payload: the transport's header and the DATA frame's. */
export const FRAMED_HEADROOM = TRANSPORT_HEADROOM + DATA_FRAME_HEADER;

/** SPDY/3's header-compression dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1): length-prefixed words, then text. */
export const SPDY_HEADER_DICTIONARY = (() => {
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

/** Output chunk of the header codecs: a header block is a few hundred bytes. */
const HEADER_CHUNK_BYTES = 4096;

/**
 * One direction's header compression of a session: SPDY/3 runs every header block of a direction
 * through one zlib stream with SPDY_HEADER_DICTIONARY, each ending in a sync flush. pako, not
 * node:zlib: node:zlib has no synchronous call for a stream that goes on (its *Sync functions each
 * start a new one), and its asynchronous one is two thread-pool round trips per block (a write, a
 * flush), four per stream opened, which also forced every later frame of the session to queue
 * behind the block being inflated. Throws on a block that is not valid zlib (a protocol error).
 */
class HeaderCodec {
  private readonly z: Inflate | Deflate;
  private out: Uint8Array[] = [];

  constructor(direction: 'inflate' | 'deflate') {
    const options = { dictionary: SPDY_HEADER_DICTIONARY, chunkSize: HEADER_CHUNK_BYTES };
    this.z = direction === 'inflate' ? new Inflate(options) : new Deflate(options);
    this.z.onData = (chunk) => { this.out.push(chunk); };
  }

  run(block: Uint8Array): Buffer {
    this.out = [];
    if (!this.z.push(block, Z_SYNC_FLUSH)) throw new Error(`SPDY header block: ${this.z.msg || `zlib status ${this.z.err}`}`);
    return Buffer.concat(this.out);
  }
}

/**
 * Where a session's frames go and come from: a raw upgraded connection, or a WebSocket whose
 * binary messages carry the frames (kubectl 1.31+). `send` writes the parts as one contiguous
 * piece of the byte stream, without first copying them into one buffer (a port-forward moves
 * every byte through here), and says false when the connection below wants a pause. `written`
 * is called once the parts have left for the connection below (or can never leave): from then
 * on nothing holds them, and their memory may be reused.
 */
export interface SpdyTransport {
  send(parts: Buffer[], written?: () => void): boolean;
  /**
   * One frame that starts TRANSPORT_HEADROOM bytes into `buffer`: the transport writes its own
   * header, if it has one, into that room, and the whole leaves as one buffer. (TLS encrypts a
   * single buffer where it lies; several buffers it first copies into one.)
   */
  sendWithHeadroom(buffer: Buffer, written: () => void): void;
  onDrain(cb: () => void): void;
  /** Stop (and restart) reading from the client: a stream's consumer cannot keep up. */
  pause(): void;
  resume(): void;
  end(): void;
  destroy(): void;
}

/** Frames straight on the upgraded connection: the parts go out corked, as one writev. */
function duplexTransport(socket: Duplex, receive: (d: Buffer) => void, closed: () => void): SpdyTransport {
  socket.on('data', receive);
  socket.on('close', closed);
  socket.on('end', closed);
  socket.on('error', closed);
  return {
    send(parts, written) {
      if (socket.destroyed) { written?.(); return true; }
      socket.cork();
      parts.forEach((p, i) => socket.write(p, i === parts.length - 1 ? written : undefined));
      socket.uncork();
      return !socket.writableNeedDrain;
    },
    sendWithHeadroom(buffer, written) {
      if (socket.destroyed) written();
      else socket.write(buffer.subarray(TRANSPORT_HEADROOM), written);
    },
    onDrain(cb) { if (socket.writableNeedDrain) socket.once('drain', cb); else cb(); },
    pause() { socket.pause(); },
    resume() { socket.resume(); },
    end() { socket.end(); },
    destroy() { socket.destroy(); },
  };
}

/**
 * Frames in WebSocket binary messages. A frame header and its payload go as two fragments of one
 * message (the tunnel reads messages as a byte stream, and fragments are reassembled by every
 * WebSocket client), written corked on the connection below so that they leave in one write;
 * back-pressure is that connection's. A DATA frame built with headroom (a port-forward's download)
 * gets its message header written in place, on the connection itself: ws would send header and
 * payload as two buffers. That is safe beside ws's own sends because nothing of ws's is ever
 * queued here (no permessage-deflate, no Blobs): every send, ws's or this, is on the connection
 * whole and in order when it returns.
 */
function webSocketTransport(ws: WebSocket, socket: Duplex, receive: (d: Buffer) => void, closed: () => void): SpdyTransport {
  ws.on('message', (d: Buffer | ArrayBuffer | Buffer[]) => receive(Buffer.isBuffer(d) ? d : Array.isArray(d) ? Buffer.concat(d) : Buffer.from(d)));
  ws.on('close', closed);
  ws.on('error', closed);
  return {
    send(parts, written) {
      if (ws.readyState !== ws.OPEN) { written?.(); return true; }
      socket.cork();
      parts.forEach((p, i) => ws.send(p, { binary: true, fin: i === parts.length - 1 }, i === parts.length - 1 ? written : undefined));
      socket.uncork();
      return !socket.writableNeedDrain;
    },
    sendWithHeadroom(buffer, written) {
      if (ws.readyState !== ws.OPEN) { written(); return; }
      socket.write(buffer.subarray(writeBinaryMessageHead(buffer)), written);
    },
    onDrain(cb) { if (socket.writableNeedDrain) socket.once('drain', cb); else cb(); },
    pause() { ws.pause(); },
    resume() { ws.resume(); },
    end() { ws.close(1000); },
    destroy() { ws.terminate(); },
  };
}

/**
 * A server's (unmasked) WebSocket header for one whole binary message, written at the end of the
 * TRANSPORT_HEADROOM bytes that open `buffer`, for the payload that follows them (RFC 6455 5.2: a
 * 7-bit length, or 126 and 16 bits, or 127 and 64 bits). Returns where the message starts.
 */
export function writeBinaryMessageHead(buffer: Buffer): number {
  const length = buffer.length - TRANSPORT_HEADROOM;
  const head = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const start = TRANSPORT_HEADROOM - head;
  buffer[start] = 0x82; // FIN, binary
  if (head === 2) buffer[start + 1] = length;
  else if (head === 4) { buffer[start + 1] = 126; buffer.writeUInt16BE(length, start + 2); }
  else { buffer[start + 1] = 127; buffer.writeUInt32BE(Math.floor(length / 2 ** 32), start + 2); buffer.writeUInt32BE(length % 2 ** 32, start + 6); }
  return start;
}

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

  /**
   * One DATA frame whose payload is `frame` after its first FRAMED_HEADROOM bytes, which are room
   * for the frame's headers (written here and by the transport): headers and payload leave as one
   * buffer, with no copy and no allocation. `written` is called once `frame` is no longer needed.
   */
  writeFramed(frame: Buffer, written: () => void): void {
    if (this.localClosed) { written(); return; }
    this.session.sendFramed(this.id, frame, written);
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
  /** Bytes received and not yet framed: chunks kept apart until a whole frame is there (no copy per chunk). */
  private chunks: Buffer[] = [];
  private buffered = 0;
  private readonly streams = new Map<number, SpdyStream>();
  private readonly inflate = new HeaderCodec('inflate');
  private readonly deflate = new HeaderCodec('deflate');
  private closed = false;
  private readonly transport: SpdyTransport;

  /** A session on a raw upgraded connection (`Upgrade: SPDY/3.1`). */
  static onSocket(socket: Duplex): SpdySession {
    return new SpdySession((receive, closed) => duplexTransport(socket, receive, closed));
  }

  /** A session tunnelled in a WebSocket's binary messages; `socket` is the connection the WebSocket runs on. */
  static onWebSocket(ws: WebSocket, socket: Duplex): SpdySession {
    return new SpdySession((receive, closed) => webSocketTransport(ws, socket, receive, closed));
  }

  private constructor(open: (receive: (d: Buffer) => void, closed: () => void) => SpdyTransport) {
    super();
    this.transport = open((d) => this.receive(d), () => this.shutdown());
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
    this.transport.destroy();
    this.emit('close');
  }

  maybeForget(s: SpdyStream): void {
    if (s.closed) this.streams.delete(s.id);
  }

  /** The first `n` buffered bytes as one buffer (a copy only when they span chunks), and they are taken off. */
  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift(); else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[0]!;
        const part = Math.min(c.length, n - filled);
        c.copy(out, filled, 0, part);
        filled += part;
        if (part === c.length) this.chunks.shift(); else this.chunks[0] = c.subarray(part);
      }
    }
    this.buffered -= n;
    return out;
  }

  /** Bytes 5..7 of the buffered frame header: its length. */
  private pendingFrameLength(): number {
    const first = this.chunks[0]!;
    if (first.length < 8) {
      const head = this.take(8);
      this.chunks.unshift(head);
      this.buffered += head.length;
    }
    return this.chunks[0]!.readUIntBE(5, 3);
  }

  private receive(chunk: Buffer): void {
    if (!chunk.length) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (this.buffered >= 8) {
      const length = this.pendingFrameLength();
      if (length > MAX_FRAME) { this.shutdown(); return; }
      if (this.buffered < 8 + length) break;
      const frame = this.take(8 + length);
      const flags = frame[4]!;
      const body = frame.subarray(8);
      try {
        if (frame[0]! & 0x80) this.control(frame.readUInt16BE(2), flags, body);
        else this.data(frame.readUInt32BE(0) & 0x7fffffff, flags, body);
      } catch {
        // A frame shorter than its type's fields (RangeError), or a header block that does not
        // inflate: a protocol error ends the SPDY session it came on, not the process that serves every other.
        this.shutdown();
      }
      if (this.closed) return;
    }
  }

  private data(id: number, flags: number, body: Buffer): void {
    const s = this.streams.get(id);
    if (!s || s.remoteClosed) return;
    if (body.length) s.deliver(body);
    if (flags & FLAG_FIN) { s.remoteClosed = true; s.deliver(null); this.maybeForget(s); }
  }

  private control(type: number, flags: number, body: Buffer): void {
    switch (type) {
      case SYN_STREAM: {
        const id = body.readUInt32BE(0) & 0x7fffffff;
        const headers = parseHeaderBlock(this.inflate.run(body.subarray(10)));
        const s = new SpdyStream(this, id, headers);
        this.streams.set(id, s);
        this.sendSynReply(id);
        if (flags & FLAG_FIN) { s.remoteClosed = true; s.deliver(null); }
        this.emit('stream', s);
        break;
      }
      case RST_STREAM: {
        const id = body.readUInt32BE(0) & 0x7fffffff;
        const s = this.streams.get(id);
        if (!s) return;
        this.streams.delete(id);
        s.remoteClosed = true;
        s.emit('reset');
        s.deliver(null);
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
        this.inflate.run(body.subarray(4));
        break;
      case SETTINGS: case WINDOW_UPDATE: case SYN_REPLY:
      default:
        break;
    }
  }


  private sendSynReply(id: number): void {
    const block = this.deflate.run(buildHeaderBlock({}));
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

  /**
   * DATA frames (split below the frame limit); false when the transport wants a pause. Each
   * frame's header and payload go to the transport as parts, so the payload is never copied here.
   */
  sendData(id: number, data: Buffer, fin: boolean): boolean {
    if (this.closed) return true;
    const CHUNK = 1 << 20;
    const parts: Buffer[] = [];
    let offset = 0;
    do {
      const part = data.subarray(offset, offset + CHUNK);
      offset += part.length;
      const head = Buffer.allocUnsafe(8);
      head.writeUInt32BE(id & 0x7fffffff, 0);
      head.writeUInt32BE(part.length, 4);
      head[4] = fin && offset >= data.length ? FLAG_FIN : 0;
      parts.push(head);
      if (part.length) parts.push(part);
    } while (offset < data.length);
    return this.transport.send(parts);
  }

  /** A DATA frame built in place (SpdyStream.writeFramed). */
  sendFramed(id: number, frame: Buffer, written: () => void): void {
    const length = frame.length - FRAMED_HEADROOM;
    if (this.closed || length < 0 || length > MAX_FRAME) { written(); return; }
    frame.writeUInt32BE(id & 0x7fffffff, TRANSPORT_HEADROOM);
    frame.writeUInt32BE(length, TRANSPORT_HEADROOM + 4); // flags (the length's first byte) 0: the stream stays open
    this.transport.sendWithHeadroom(frame, written);
  }

  private writeControl(type: number, flags: number, body: Buffer): void {
    if (this.closed) return;
    const head = Buffer.allocUnsafe(8);
    head.writeUInt16BE(0x8000 | VERSION, 0);
    head.writeUInt16BE(type, 2);
    head.writeUInt32BE(body.length, 4);
    head[4] = flags;
    this.transport.send([head, body]);
  }

  /** The transport's writable side drained (for back-pressure). */
  onDrain(cb: () => void): void { this.transport.onDrain(cb); }

  /** Streams whose consumer asked the client's bytes to wait: reading resumes once none does. */
  private inputHolds = 0;

  /**
   * Stop reading from the client until `released` is called: a consumer (a pod's port that reads
   * slower than the client sends) would otherwise have everything the client sends buffered in
   * the agent. It holds every stream of the session, as spdystream's TCP-only flow control does.
   */
  holdInput(): () => void {
    if (this.inputHolds++ === 0 && !this.closed) this.transport.pause();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.inputHolds === 0 && !this.closed) this.transport.resume();
    };
  }
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
