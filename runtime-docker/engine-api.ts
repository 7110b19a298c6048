/**
 * A client of the Docker Engine API (version 1.41, Engine 20.10) over its unix
 * socket, with node:http alone: the handful of calls this runtime makes are
 * plain HTTP + JSON, and the one binary framing (the multiplexed stdout/stderr
 * stream of logs, attach and exec) is an 8-byte header per frame.
 */
import * as http from 'node:http';
import type { Socket } from 'node:net';
import { PassThrough, type Readable } from 'node:stream';
import { UserError } from '../common/errors.js';

export const API_VERSION = '1.41';

/** The engine answered a call with an error status. */
export class EngineError extends UserError {
  constructor(readonly call: string, readonly status: number, readonly engineMessage: string) {
    super(`docker engine: ${call} failed (${status}): ${engineMessage}`, { hint: hintFor(status) });
    this.name = 'EngineError';
  }
}

function hintFor(status: number): string {
  if (status === 404) return 'the object is gone from the engine (removed, or never made): `docker ps -a` on the node shows what it holds';
  if (status === 409) return 'the object is in a state that does not allow this (already running, stopped, or removed meanwhile)';
  if (status >= 500) return 'see dockerd\'s journal on the node (journalctl -u stevedore-dockerd)';
  return 'this is a bug in the request stevedore made; please report it with the message';
}

export type Query = Record<string, string | number | boolean | string[] | undefined>;

export interface CallOptions {
  query?: Query;
  body?: unknown;
  /** Raw body (a tar, say) instead of JSON. */
  rawBody?: Buffer | Readable;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

function queryString(q: Query | undefined): string {
  if (!q) return '';
  const entries = Object.entries(q).flatMap(([k, v]) => (v === undefined ? [] : Array.isArray(v) ? v.map((x) => [k, x]) : [[k, String(v)]]));
  return entries.length ? `?${new URLSearchParams(entries).toString()}` : '';
}

export class EngineClient {
  constructor(readonly socketPath: string) {}

  private open(method: string, path: string, opts: CallOptions, extra: http.RequestOptions = {}): http.ClientRequest {
    const headers: Record<string, string> = { ...opts.headers };
    let payload: Buffer | undefined;
    if (opts.body !== undefined) {
      payload = Buffer.from(JSON.stringify(opts.body));
      headers['Content-Type'] = 'application/json';
    } else if (Buffer.isBuffer(opts.rawBody)) {
      payload = opts.rawBody;
      headers['Content-Type'] ??= 'application/x-tar';
    }
    if (payload) headers['Content-Length'] = String(payload.length);
    const req = http.request({ socketPath: this.socketPath, method, path: `/v${API_VERSION}${path}${queryString(opts.query)}`, headers, signal: opts.signal, ...extra });
    if (payload) req.end(payload);
    else if (opts.rawBody) (opts.rawBody as Readable).pipe(req);
    else if (!extra.headers || !('Upgrade' in extra.headers)) req.end();
    return req;
  }

  /** Start a call and resolve with the response once the engine said it succeeded (a stream: logs, events, pulls). */
  stream(method: string, path: string, opts: CallOptions = {}): Promise<http.IncomingMessage> {
    const call = `${method} ${path.split('?')[0]}`;
    return new Promise((resolve, reject) => {
      const req = this.open(method, path, opts);
      req.on('error', (err) => reject(connectError(call, this.socketPath, err)));
      req.on('response', (res) => {
        if ((res.statusCode ?? 500) < 400) return resolve(res);
        readAll(res).then((body) => reject(new EngineError(call, res.statusCode ?? 500, engineMessage(body))), reject);
      });
    });
  }

  /** A call whose answer is JSON (or empty: undefined). */
  async call<T>(method: string, path: string, opts: CallOptions = {}): Promise<T> {
    const res = await this.stream(method, path, opts);
    const text = (await readAll(res)).toString('utf8');
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /**
   * A call that takes the connection over (exec start, attach): the engine
   * answers 101 and from then on the socket carries the process's stdin one
   * way and its output (multiplexed unless it has a terminal) the other.
   */
  hijack(path: string, body: unknown): Promise<Socket> {
    const call = `POST ${path}`;
    return new Promise((resolve, reject) => {
      const payload = Buffer.from(JSON.stringify(body ?? {}));
      const req = http.request({
        socketPath: this.socketPath, method: 'POST', path: `/v${API_VERSION}${path}`,
        headers: { 'Content-Type': 'application/json', 'Content-Length': String(payload.length), Connection: 'Upgrade', Upgrade: 'tcp' },
      });
      req.on('error', (err) => reject(connectError(call, this.socketPath, err)));
      req.on('upgrade', (_res, socket, head) => {
        if (head.length) socket.unshift(head);
        resolve(socket as Socket);
      });
      req.on('response', (res) => {
        readAll(res).then((b) => reject(new EngineError(call, res.statusCode ?? 500, engineMessage(b) || 'the engine did not take the connection over')), reject);
      });
      req.end(payload);
    });
  }
}

function connectError(call: string, socketPath: string, err: Error): UserError {
  return new UserError(`docker engine: ${call} failed: ${err.message}`, { hint: `is dockerd running and listening on ${socketPath}?`, cause: err });
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function engineMessage(body: Buffer): string {
  const text = body.toString('utf8').trim();
  try {
    return String((JSON.parse(text) as { message?: unknown }).message ?? text);
  } catch {
    return text;
  }
}

/** One frame of a multiplexed stream: 0 stdin, 1 stdout, 2 stderr. */
export interface Frame { stream: 0 | 1 | 2; data: Buffer }

/**
 * Split a multiplexed stream into frames: each is an 8-byte header (stream
 * byte, three zero bytes, big-endian payload length) and its payload.
 */
export async function* demultiplex(input: AsyncIterable<Buffer | string>): AsyncGenerator<Frame> {
  let buf = Buffer.alloc(0);
  for await (const chunk of input) {
    buf = buf.length ? Buffer.concat([buf, Buffer.from(chunk)]) : Buffer.from(chunk);
    while (buf.length >= 8) {
      const size = buf.readUInt32BE(4);
      if (buf.length < 8 + size) break;
      const stream = buf[0] as 0 | 1 | 2;
      yield { stream, data: buf.subarray(8, 8 + size) };
      buf = buf.subarray(8 + size);
    }
  }
}

/** Pipe a multiplexed stream's stdout and stderr frames into two streams (ended with the input). */
export function splitStreams(input: Readable): { stdout: PassThrough; stderr: PassThrough; done: Promise<void> } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const done = (async () => {
    try {
      for await (const frame of demultiplex(input)) (frame.stream === 2 ? stderr : stdout).write(frame.data);
    } catch {
      // the connection broke: what arrived was passed on
    } finally {
      stdout.end();
      stderr.end();
    }
  })();
  return { stdout, stderr, done };
}

/** Lines of a JSON stream (events, pull progress), one object per line. */
export async function* jsonLines<T>(input: Readable): AsyncGenerator<T> {
  let rest = '';
  for await (const chunk of input) {
    rest += String(chunk);
    let nl: number;
    while ((nl = rest.indexOf('\n')) >= 0) {
      const line = rest.slice(0, nl).trim();
      rest = rest.slice(nl + 1);
      if (line) yield JSON.parse(line) as T;
    }
  }
  if (rest.trim()) yield JSON.parse(rest) as T;
}
