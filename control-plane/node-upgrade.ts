/**
 * A connection upgrade at a node API (exec, attach, port-forward), and the node's side of the
 * splice that follows.
 *
 * Why not https.request: the node → client direction carries a port-forward's download, hundreds
 * of MiB/s. Through a socket's 'data' events every TLS record arrives in a fresh 16 KiB buffer; V8
 * counts those as external memory and answers with full collections of the control plane's whole
 * heap (a fifth of its CPU on that path, bench/exec.ts). Here the node's socket decrypts straight
 * into reused arenas (the socket's `onread` option, which http's client cannot use: it reads the
 * response through 'data'), and what has arrived while a write is in flight goes out as one
 * contiguous write once it completes (a queue of chunks would be copied into one by the TLS layer).
 * The upgrade request and its answer are the few lines of HTTP/1.1 an upgrade needs.
 */
import * as tls from 'node:tls';
import type { OnReadOpts } from 'node:net';
import type { Duplex, Writable } from 'node:stream';
import { nodeServingCertProblem, type NodeClientTls } from './node-client.js';

/**
 * Arena sizes. A stream starts in a small one, enough for an exec's or attach's trickle and all an
 * idle stream holds; a new arena is a large one when the last filled up while a write was still
 * going out (a download). A read always has room for a whole TLS record.
 */
const SMALL_ARENA_BYTES = 32 << 10;
const LARGE_ARENA_BYTES = 256 << 10;
const MIN_READ_BYTES = 16 << 10;
/** Arenas of each size kept for the next stream once their bytes have gone out (the rest go to the GC). */
const IDLE_ARENAS = 8;
/** Bytes read from one side and not yet written to the other beyond this stop reading that side until they are down to SPLICE_RESUME_BYTES (both directions: stream-proxy.ts's spliceInto too). */
export const SPLICE_PAUSE_BYTES = 1 << 20;
export const SPLICE_RESUME_BYTES = 256 << 10;
/** An answer head longer than this is not an HTTP/1.1 upgrade answer. */
const MAX_HEAD_BYTES = 16 << 10;
/** What of a refusal's body is kept for the client's error. */
const MAX_REFUSAL_BYTES = 4096;

interface Arena { bytes: Buffer; holds: number }
const idleArenas = new Map<number, ArrayBuffer[]>([[SMALL_ARENA_BYTES, []], [LARGE_ARENA_BYTES, []]]);

function takeArena(size: number): Arena {
  return { bytes: Buffer.from(idleArenas.get(size)!.pop() ?? new ArrayBuffer(size)), holds: 1 };
}
function release(arena: Arena): void {
  const idle = idleArenas.get(arena.bytes.length)!;
  if (--arena.holds === 0 && idle.length < IDLE_ARENAS) idle.push(arena.bytes.buffer as ArrayBuffer);
}

/**
 * Bytes read into arenas, written to `to` in order: at once when no write is in flight, else all
 * that arrived meanwhile in one write when it completes. An arena goes back to the pool once
 * every range of it has been written.
 */
export class ArenaSplice {
  private arena = takeArena(SMALL_ARENA_BYTES);
  private readPos = 0;
  private unwrittenFrom = 0;
  /** Ranges of earlier arenas not yet written, oldest first. */
  private readonly sealed: Array<{ arena: Arena; bytes: Buffer }> = [];
  private writing = false;
  /** The last read landed while a write was still going out: the client is the slower side. */
  private backlogged = false;
  private unwritten = 0;
  private stopped = false;
  private ending = false;
  private ended = false;

  constructor(private readonly to: Writable, private readonly resumeReading: () => void) {}

  /** Where the next read lands. */
  room(): Buffer {
    if (this.arena.bytes.length - this.readPos < MIN_READ_BYTES) {
      if (this.readPos > this.unwrittenFrom) this.sealed.push(this.hold(this.unwrittenFrom, this.readPos));
      release(this.arena);
      this.arena = takeArena(this.backlogged ? LARGE_ARENA_BYTES : SMALL_ARENA_BYTES);
      this.readPos = this.unwrittenFrom = 0;
    }
    return this.arena.bytes.subarray(this.readPos);
  }

  /** `n` bytes landed in room(); false: stop reading until resumeReading is called. */
  landed(n: number): boolean {
    this.backlogged = this.writing;
    this.readPos += n;
    this.unwritten += n;
    this.writeNext();
    if (this.unwritten > SPLICE_PAUSE_BYTES) this.stopped = true;
    return !this.stopped;
  }

  /** The node has closed its side: end `to` once everything read has been written. */
  end(): void {
    this.ending = true;
    this.writeNext();
  }

  private hold(from: number, to: number): { arena: Arena; bytes: Buffer } {
    this.arena.holds++;
    return { arena: this.arena, bytes: this.arena.bytes.subarray(from, to) };
  }

  private writeNext(): void {
    if (this.writing) return;
    let range = this.sealed.shift();
    if (!range && this.readPos > this.unwrittenFrom) {
      range = this.hold(this.unwrittenFrom, this.readPos);
      this.unwrittenFrom = this.readPos;
    }
    if (!range) {
      if (this.ending && !this.ended) { this.ended = true; this.to.end(); }
      return;
    }
    const { arena, bytes } = range;
    this.writing = true;
    this.to.write(bytes, () => {
      this.writing = false;
      this.unwritten -= bytes.length;
      release(arena);
      if (this.stopped && this.unwritten <= SPLICE_RESUME_BYTES) { this.stopped = false; this.resumeReading(); }
      this.writeNext();
    });
  }
}

export interface NodeUpgradeRequest {
  nodeName: string;
  host: string;
  port: number;
  method: string;
  path: string;
  /** Header lines to send (name, value), beside Host. */
  headers: Array<[string, string]>;
  tls: NodeClientTls;
  /** How long the node may take to answer the upgrade. */
  timeoutMs: number;
}

export interface NodeUpgradeHandlers {
  /**
   * The node answered 101: `head` is its answer as it came (status line to blank line), `rest`
   * what followed it. Returns the client the node's bytes are spliced into from then on (the
   * caller copies the client's bytes to the node, and closes both on an error).
   */
  upgraded(head: Buffer, rest: Buffer, node: tls.TLSSocket): Duplex;
  /** The node answered anything else. */
  refused(status: number, body: string): void;
  /** No answer: the connection or the TLS verification failed, or the time ran out. */
  failed(err: Error): void;
}

/**
 * Dial the node with the verification of node-client.ts, send the upgrade request once the
 * handshake has verified the node, and read its answer.
 */
export function upgradeAtNode(req: NodeUpgradeRequest, handlers: NodeUpgradeHandlers): tls.TLSSocket {
  let phase: 'head' | 'refusal' | 'spliced' | 'done' = 'head';
  let answer = Buffer.alloc(0);
  let status = 0, refusalLength = Infinity, refusal = '';
  let splice: ArenaSplice | undefined;
  // Until the upgrade, reads land here and are copied out: an answer head is a few hundred bytes.
  const scratch = Buffer.allocUnsafe(MIN_READ_BYTES);
  /** The end of the time before the upgrade: one outcome, reported once. */
  const settle = (report: () => void) => {
    if (phase === 'spliced' || phase === 'done') return;
    phase = 'done';
    clearTimeout(timer);
    report();
    node.destroy();
  };
  const refusalRead = () => Buffer.byteLength(refusal) >= Math.min(refusalLength, MAX_REFUSAL_BYTES);

  const onread: OnReadOpts = {
    buffer: () => splice?.room() ?? scratch,
    callback: (n, buf) => {
      if (splice) return splice.landed(n);
      if (phase === 'done') return false;
      const bytes = Buffer.from(buf.buffer, buf.byteOffset, n);
      if (phase === 'refusal') {
        refusal += bytes.toString('utf8');
        if (refusalRead()) settle(() => handlers.refused(status, refusal));
        return true;
      }
      answer = Buffer.concat([answer, bytes]);
      const end = answer.indexOf('\r\n\r\n');
      if (end < 0) {
        if (answer.length > MAX_HEAD_BYTES) settle(() => handlers.failed(new Error(`the node's answer has no end of headers within ${MAX_HEAD_BYTES} bytes`)));
        return true;
      }
      const head = answer.subarray(0, end + 4);
      const text = head.toString('latin1');
      status = Number(/^HTTP\/1\.[01] (\d{3}) /.exec(text)?.[1] ?? 0);
      if (status !== 101) {
        const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(text)?.[1];
        if (length !== undefined) refusalLength = Number(length);
        refusal = answer.subarray(end + 4).toString('utf8');
        phase = 'refusal';
        if (refusalRead()) settle(() => handlers.refused(status, refusal));
        return true;
      }
      phase = 'spliced';
      clearTimeout(timer);
      const client = handlers.upgraded(head, answer.subarray(end + 4), node);
      splice = new ArenaSplice(client, () => node.resume());
      return true;
    },
  };
  const node = tls.connect({
    host: req.host, port: req.port,
    ca: req.tls.caCertPem, cert: req.tls.clientCertPem, key: req.tls.clientKeyPem,
    rejectUnauthorized: true,
    checkServerIdentity: (_host, cert) => nodeServingCertProblem(req.nodeName, req.host, cert),
    onread,
  } as tls.ConnectionOptions);
  // A client socket, unlike a server's, starts with Nagle's algorithm on: a SPDY SYN_STREAM or a
  // keystroke behind a small write not yet acknowledged would wait for the node's delayed ACK
  // (40 ms; three such waits put 125 ms before a port-forward connection's first byte).
  node.setNoDelay(true);
  const timer = setTimeout(() => settle(() => handlers.failed(new Error(`timed out after ${req.timeoutMs / 1000} s`))), req.timeoutMs);
  node.on('secureConnect', () => {
    // Only now, with the node verified, does it learn the path and headers.
    const host = req.host.includes(':') ? `[${req.host}]:${req.port}` : `${req.host}:${req.port}`;
    let head = `${req.method} ${req.path} HTTP/1.1\r\nHost: ${host}\r\n`;
    for (const [name, value] of req.headers) head += `${name}: ${value}\r\n`;
    node.write(`${head}\r\n`);
  });
  node.on('end', () => {
    if (splice) return splice.end();
    if (phase === 'refusal') return settle(() => handlers.refused(status, refusal));
    settle(() => handlers.failed(new Error('the node closed the connection without answering')));
  });
  node.on('error', (err) => settle(() => handlers.failed(err)));
  return node;
}
