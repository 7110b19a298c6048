/**
 * The node API's streaming endpoints (the kubelet's /exec and /attach), over
 * the WebSocket channel protocol kubectl speaks (v5.channel.k8s.io and
 * v4.channel.k8s.io): every binary message starts with a channel byte —
 * 0 stdin, 1 stdout, 2 stderr, 3 the final metav1.Status (exit code), 4
 * terminal resize ({"Width","Height"}); v5 adds [255, channel], the client
 * closing one channel (stdin's EOF).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { FRAMED_HEADROOM, SpdySession, type SpdyStream } from './spdy.js';
import { UserError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { ContainerRuntime, ExecProcess, PortForwardTarget, TerminalSize } from './runtime.js';

export const CHANNEL_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'] as const;
/** kubectl 1.31+'s port-forward: SPDY/3.1 frames in WebSocket binary messages (KEP 4006). */
export const PORT_FORWARD_TUNNEL = 'SPDY/3.1+portforward.k8s.io';
const PORT_FORWARD_PROTOCOL = 'portforward.k8s.io';
/** exec/attach over SPDY (kubectl before 1.30): the channel protocol with a JSON Status on the error stream. */
const SPDY_CHANNEL_PROTOCOL = 'v4.channel.k8s.io';
/**
 * ws refuses "SPDY/3.1+portforward.k8s.io" in Sec-WebSocket-Protocol ("/" is no token character
 * in RFC 7230), so the offer is renamed to this token before ws parses it and named back in the answer.
 */
const TUNNEL_TOKEN = 'stevedore-spdy-tunnel';
/** How long a port-forward connection's data stream may wait for its error stream, or the other way round (the kubelet's). */
const STREAM_PAIR_TIMEOUT_MS = 30_000;
const STDIN = 0, STDOUT = 1, STDERR = 2, STATUS = 3, RESIZE = 4, CLOSE = 255;
/** How long a terminal exec waits for the client's first size before it starts anyway. */
const TTY_SIZE_WAIT_MS = 2000;
/** Output waiting in the socket beyond this pauses the command's output (backpressure). */
const MAX_BUFFERED_BYTES = 4 << 20;
/** What one read of a port-forward connection takes from the pod (the size Node reads by default). */
const FORWARD_READ_BYTES = 64 << 10;
/**
 * A port-forward connection's bytes on their way to the client beyond this pause its reads from the
 * pod, until they are down to FORWARD_RESUME_BYTES: several reads stay in flight, so the client's
 * pace, not a pause and resume per read, sets the rate (each pause is two epoll_ctl calls).
 */
const FORWARD_PAUSE_BYTES = 1 << 20;
const FORWARD_RESUME_BYTES = 256 << 10;
/** Read buffers kept for the next connection once their bytes have left (the rest go to the GC). */
const IDLE_READ_BUFFERS = 16;

/**
 * The agent's port-forward read buffers, reused: a pod's bytes are read straight into one (after
 * room for the frame's headers), framed in place and written out, and the buffer comes back once
 * the TLS layer has taken them. A fresh 64 KiB buffer per read (Node's default) is external memory
 * V8 must collect: at a few hundred MiB/s that kept the agent — small heap limits, and
 * --optimize-for-size — in back-to-back full collections of its whole heap (bench/exec.ts).
 */
const readBuffers: ArrayBuffer[] = [];
function takeReadBuffer(): Buffer {
  return Buffer.from(readBuffers.pop() ?? new ArrayBuffer(FRAMED_HEADROOM + FORWARD_READ_BYTES), FRAMED_HEADROOM, FORWARD_READ_BYTES);
}
function giveBackReadBuffer(b: ArrayBufferLike): void {
  if (readBuffers.length < IDLE_READ_BUFFERS && b instanceof ArrayBuffer && b.byteLength === FRAMED_HEADROOM + FORWARD_READ_BYTES) readBuffers.push(b);
}

export interface StreamingLimits {
  /** Streams open at once on this node; one more is answered 429 (default 64). */
  maxStreams: number;
  /** A stream with no traffic either way for this long is closed (the kubelet's streamingConnectionIdleTimeout, default 4 h). */
  idleTimeoutMs: number;
}

export const DEFAULT_STREAMING_LIMITS: StreamingLimits = { maxStreams: 64, idleTimeoutMs: 4 * 3600_000 };

/** An HTTP error answered before any upgrade: kubectl prints its text. */
export class StreamError extends Error {
  constructor(readonly code: number, message: string) { super(message); }
}

export interface ExecRequest {
  /** the runtime pod's id */
  podId: string;
  container: string;
  command: string[];
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

/** The kubelet's query names (input/output/error) and kubectl's (stdin/stdout/stderr) both. */
export function execFlags(q: URLSearchParams): { stdin: boolean; stdout: boolean; stderr: boolean; tty: boolean; command: string[] } {
  const flag = (...names: string[]) => names.some((n) => ['1', 'true'].includes(String(q.get(n)).toLowerCase()));
  return { stdin: flag('input', 'stdin'), stdout: flag('output', 'stdout'), stderr: flag('error', 'stderr'), tty: flag('tty'), command: q.getAll('command') };
}

/** A resize message's {"Width","Height"}; undefined when malformed (dropped, as the kubelet does). */
/**
 * The metav1.Status that ends an exec or attach on the error/status channel. attach reports no
 * exit code (the container's is in the pod's status), as the kubelet's.
 */
function exitStatus(kind: 'exec' | 'attach', command: string[], code: number): Record<string, unknown> {
  if (code === 0 || kind === 'attach') return { metadata: {}, status: 'Success' };
  return {
    metadata: {}, status: 'Failure', reason: 'NonZeroExitCode',
    message: `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${code}`,
    details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
  };
}

function parseResize(body: Buffer): TerminalSize | undefined {
  try {
    const size = JSON.parse(body.toString('utf8')) as { Width?: number; Height?: number };
    return Number.isFinite(size.Width) && Number.isFinite(size.Height) && size.Width! > 0 && size.Height! > 0 ? { cols: size.Width!, rows: size.Height! } : undefined;
  } catch {
    return undefined;
  }
}

export function pickChannelProtocol(header: string | undefined): string | undefined {
  const offered = String(header ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  return CHANNEL_PROTOCOLS.find((p) => offered.includes(p));
}

export class StreamServer {
  private readonly wss = new WebSocketServer({
    noServer: true, perMessageDeflate: false, maxPayload: 16 << 20,
    handleProtocols: (offered: Set<string>) => (offered.has(TUNNEL_TOKEN) ? PORT_FORWARD_TUNNEL : CHANNEL_PROTOCOLS.find((p) => offered.has(p)) ?? false),
  });
  private open = 0;
  private readonly live = new Set<() => void>();

  constructor(private readonly runtime: ContainerRuntime, private readonly log: Logger, readonly limits: StreamingLimits = DEFAULT_STREAMING_LIMITS) {}

  get openStreams(): number { return this.open; }

  /** Reserve a stream slot, or refuse (429) when the node has as many as it allows. */
  private reserve(): () => void {
    if (this.open >= this.limits.maxStreams) {
      throw new StreamError(429, `this node already serves ${this.open} streams (exec, attach, port-forward), its limit; retry when one ends (agent option maxStreams)`);
    }
    this.open++;
    let released = false;
    return () => { if (!released) { released = true; this.open--; } };
  }

  /** Start the command, then upgrade: a command that cannot start is an HTTP error kubectl prints. */
  exec(req: IncomingMessage, socket: Duplex, head: Buffer, r: ExecRequest): Promise<void> {
    if (!r.command.length) throw new StreamError(400, 'you must specify at least one command for the container');
    return this.channels(req, socket, head, r, 'exec',
      () => this.runtime.checkExec(r.podId, r.container, { tty: r.tty }),
      (size) => this.runtime.exec(r.podId, r.container, r.command, { stdin: r.stdin, tty: r.tty, ...(size ? { size } : {}) }));
  }

  /** Connect to a running container's console (stdin: true / tty: true), then upgrade. */
  attach(req: IncomingMessage, socket: Duplex, head: Buffer, r: Omit<ExecRequest, 'command'>): Promise<void> {
    return this.channels(req, socket, head, { ...r, command: [] }, 'attach',
      () => this.runtime.checkAttach(r.podId, r.container, { tty: r.tty }),
      () => this.runtime.attach(r.podId, r.container, { stdin: r.stdin, tty: r.tty }));
  }

  private async channels(req: IncomingMessage, socket: Duplex, head: Buffer, r: ExecRequest, kind: 'exec' | 'attach', check: () => Promise<void>, start: (size?: TerminalSize) => Promise<ExecProcess>): Promise<void> {
    const protocol = pickChannelProtocol(req.headers['sec-websocket-protocol'] as string | undefined);
    const asStreamError = (err: unknown) => (err instanceof UserError ? new StreamError(400, `${err.message}${err.hint ? ` (${err.hint})` : ''}`) : err);
    if (String(req.headers.upgrade ?? '').toLowerCase() !== 'websocket' || !protocol) {
      // Checked before the protocol: kubectl falls back to SPDY when the WebSocket upgrade fails, and prints that
      // answer. (A WebSocket request skips this: starting checks the same, once.)
      await check().catch((err) => { throw asStreamError(err); });
      const spdyVersions = (req.headersDistinct['x-stream-protocol-version'] ?? []).flatMap((v) => v.split(',')).map((v) => v.trim());
      if (String(req.headers.upgrade ?? '').toLowerCase() === 'spdy/3.1' && spdyVersions.includes(SPDY_CHANNEL_PROTOCOL)) {
        if (!r.stdin && !r.stdout && !r.stderr) throw new StreamError(400, 'you must specify at least one of stdin, stdout, stderr');
        const release = this.reserve();
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${SPDY_CHANNEL_PROTOCOL}\r\n\r\n`);
        if (head.length) socket.unshift(head);
        this.serveSpdyChannels(SpdySession.onSocket(socket), r, kind, start, release);
        return;
      }
      throw new StreamError(400, `this node streams exec and attach over WebSocket (subprotocol ${CHANNEL_PROTOCOLS.join(' or ')}) or SPDY/3.1 (${SPDY_CHANNEL_PROTOCOL}); got Upgrade: ${req.headers.upgrade ?? '(none)'}, protocols: ${req.headers['sec-websocket-protocol'] ?? spdyVersions.join(', ') ?? '(none)'}`);
    }
    if (!r.stdin && !r.stdout && !r.stderr) throw new StreamError(400, 'you must specify at least one of stdin, stdout, stderr');
    const release = this.reserve();
    if (r.tty) {
      // The command starts (or, for attach, its terminal takes keystrokes) once the client has said its
      // terminal's size — kubectl does at once, but races it with stdin — so that what is typed and
      // printed first is already laid out for it; at most TTY_SIZE_WAIT_MS later.
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        const early: Buffer[] = [];
        let size: TerminalSize | undefined;
        let ready!: () => void;
        const sized = new Promise<void>((resolve) => { ready = resolve; });
        const timer = setTimeout(ready, TTY_SIZE_WAIT_MS);
        const onMessage = (data: Buffer, isBinary: boolean) => {
          if (!isBinary || !data.length) return;
          if (data[0] === RESIZE && !size) {
            size = parseResize(data.subarray(1));
            if (size) { clearTimeout(timer); ready(); return; }
          }
          early.push(data);
        };
        let gone = false;
        ws.on('message', onMessage);
        ws.once('close', () => { gone = true; clearTimeout(timer); ready(); });
        void sized.then(async () => {
          ws.off('message', onMessage);
          if (gone) return release();
          let proc: ExecProcess;
          try {
            proc = await start(size);
          } catch (err) {
            const e = asStreamError(err) as Error;
            if (ws.readyState === ws.OPEN) ws.send(Buffer.concat([Buffer.of(STATUS), Buffer.from(JSON.stringify({ metadata: {}, status: 'Failure', message: e.message, reason: 'InternalError' }))]));
            ws.close(1000);
            return release();
          }
          this.log.info({ pod: r.podId, container: r.container, command: r.command[0], tty: r.tty, protocol, kind }, `${kind} started`);
          if (size) proc.resize(size);
          this.serveExec(ws, protocol, proc, r, release, kind, early);
        });
      });
      return;
    }
    let proc: ExecProcess;
    try {
      proc = await start();
    } catch (err) {
      release();
      throw asStreamError(err);
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.log.info({ pod: r.podId, container: r.container, command: r.command[0], tty: r.tty, protocol, kind }, `${kind} started`);
      this.serveExec(ws, protocol, proc, r, release, kind, []);
    });
  }

  private serveExec(ws: WebSocket, protocol: string, proc: ExecProcess, r: ExecRequest, release: () => void, kind: 'exec' | 'attach', early: Buffer[]): void {
    const v5 = protocol === 'v5.channel.k8s.io';
    let idle: NodeJS.Timeout | undefined;
    const touch = () => {
      clearTimeout(idle);
      idle = setTimeout(() => {
        this.log.warn({ pod: r.podId, container: r.container }, 'exec stream idle too long; closed');
        ws.close(1000, 'idle timeout');
        void proc.kill();
      }, this.limits.idleTimeoutMs);
    };
    touch();
    let finished = false;
    const end = () => {
      clearTimeout(idle);
      release();
      this.live.delete(stop);
    };
    const stop = () => { ws.terminate(); void proc.kill(); };
    this.live.add(stop);

    let inFlight = 0;
    const outputs: Readable[] = [];
    const send = (channel: number, data: Buffer, from?: Readable) => {
      if (ws.readyState !== ws.OPEN) return;
      inFlight += data.length + 1;
      if (from && inFlight > MAX_BUFFERED_BYTES) from.pause();
      ws.send(Buffer.concat([Buffer.of(channel), data]), { binary: true }, () => {
        inFlight -= data.length + 1;
        if (inFlight <= MAX_BUFFERED_BYTES) for (const o of outputs) if (o.isPaused()) o.resume();
      });
      touch();
    };
    // An empty message on the lowest output channel tells the client the streams are set up (as the kubelet).
    send(r.stdout || r.tty ? STDOUT : r.stderr ? STDERR : STATUS, Buffer.alloc(0));
    const pipe = (from: Readable | undefined, channel: number, wanted: boolean) => {
      if (!from) return;
      if (!wanted) { from.resume(); return; }
      outputs.push(from);
      from.on('data', (d: Buffer) => send(channel, d, from));
    };
    pipe(proc.stdout, STDOUT, r.stdout || r.tty);
    pipe(proc.stderr, STDERR, r.stderr);

    const onMessage = (data: Buffer, isBinary: boolean) => {
      touch();
      if (!isBinary || data.length === 0) return;
      const channel = data[0]!;
      const body = data.subarray(1);
      if (channel === STDIN && proc.stdin && !proc.stdin.writableEnded) {
        if (!proc.stdin.write(body)) {
          ws.pause();
          proc.stdin.once('drain', () => ws.resume());
        }
      } else if (channel === RESIZE) {
        const size = parseResize(body);
        if (size) proc.resize(size);
      } else if (v5 && channel === CLOSE && body[0] === STDIN) {
        proc.stdin?.end();
      }
    };
    for (const data of early) onMessage(data, true);
    ws.on('message', onMessage);
    ws.on('close', () => {
      // The client went away: nothing of the command may outlive it.
      if (!finished) {
        this.log.info({ pod: r.podId, container: r.container, kind }, kind === 'exec' ? 'exec client disconnected; killing the command' : 'attach client detached');
        void proc.kill();
      }
      end();
    });
    ws.on('error', () => undefined);

    const outputsDone = Promise.all(outputs.map((o) => new Promise<void>((res) => { if (o.readableEnded) res(); else { o.once('end', res); o.once('close', res); } })));
    void Promise.all([proc.exit, outputsDone]).then(([{ code }]) => {
      finished = true;
      send(STATUS, Buffer.from(JSON.stringify(exitStatus(kind, r.command, code))));
      ws.close(1000);
    });
  }

  /**
   * Port-forward: a SPDY session (tunnelled in a WebSocket, or a raw SPDY/3.1 upgrade); each
   * connection the client makes is a pair of streams (error, data) with one requestid and a port.
   */
  async portForward(req: IncomingMessage, socket: Duplex, head: Buffer, podId: string): Promise<void> {
    // The pod is looked up once for the session; each connection is then only a dial.
    const target = await this.runtime.openPortForward(podId).catch((err) => {
      if (err instanceof UserError) throw new StreamError(400, `${err.message}${err.hint ? ` (${err.hint})` : ''}`);
      throw err;
    });
    try {
      const upgrade = String(req.headers.upgrade ?? '').toLowerCase();
      const offered = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
      const spdyVersions = req.headersDistinct['x-stream-protocol-version'] ?? [];
      if (upgrade === 'websocket' && offered.includes(PORT_FORWARD_TUNNEL)) {
        const release = this.reserve();
        let served = false;
        // ws answers a handshake it refuses itself and never calls back: the socket's close ends it then.
        socket.once('close', () => { if (!served) { release(); target.close(); } });
        req.headers['sec-websocket-protocol'] = TUNNEL_TOKEN;
        this.wss.handleUpgrade(req, socket, head, (ws) => {
          served = true;
          this.servePortForward(SpdySession.onWebSocket(ws, socket), podId, target, release, () => ws.terminate());
        });
        return;
      }
      if (upgrade === 'spdy/3.1' && spdyVersions.flatMap((v) => v.split(',')).map((v) => v.trim()).includes(PORT_FORWARD_PROTOCOL)) {
        const release = this.reserve();
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: ${PORT_FORWARD_PROTOCOL}\r\n\r\n`);
        if (head.length) socket.unshift(head);
        this.servePortForward(SpdySession.onSocket(socket), podId, target, release, () => socket.destroy());
        return;
      }
      throw new StreamError(400, `port-forward needs a WebSocket upgrade with subprotocol ${PORT_FORWARD_TUNNEL}, or Upgrade: SPDY/3.1 with X-Stream-Protocol-Version: ${PORT_FORWARD_PROTOCOL}; got Upgrade: ${req.headers.upgrade ?? '(none)'}`);
    } catch (err) {
      target.close();
      throw err;
    }
  }

  private servePortForward(session: SpdySession, podId: string, target: PortForwardTarget, release: () => void, terminate: () => void): void {
    this.log.info({ pod: podId }, 'port-forward started');
    const pending = new Map<string, { data?: SpdyStream; error?: SpdyStream; timer: NodeJS.Timeout }>();
    const connections = new Set<Duplex>();
    // Re-armed on every chunk: refresh() moves the one timer instead of making a new one per chunk.
    const idle = setTimeout(() => { this.log.warn({ pod: podId }, 'port-forward idle too long; closed'); session.close(); }, this.limits.idleTimeoutMs);
    const touch = () => { idle.refresh(); };
    const stop = () => { terminate(); session.close(); };
    this.live.add(stop);
    session.on('close', () => {
      clearTimeout(idle);
      for (const p of pending.values()) clearTimeout(p.timer);
      for (const c of connections) c.destroy();
      target.close();
      release();
      this.live.delete(stop);
    });
    session.on('stream', (stream: SpdyStream) => {
      touch();
      const { streamtype: type, requestid: id = '', port } = stream.headers;
      if (type !== 'data' && type !== 'error') { stream.reset(); return; }
      const entry = pending.get(id) ?? { timer: setTimeout(() => { pending.delete(id); entry.data?.reset(); entry.error?.reset(); }, STREAM_PAIR_TIMEOUT_MS) };
      entry[type] = stream;
      pending.set(id, entry);
      if (!entry.data || !entry.error) return;
      clearTimeout(entry.timer);
      pending.delete(id);
      const dataStream = entry.data, errorStream = entry.error;
      const portNumber = Number(port);
      if (!Number.isInteger(portNumber) || portNumber < 1 || portNumber > 65535) {
        errorStream.end(Buffer.from(`invalid port ${JSON.stringify(port)}`));
        dataStream.end();
        return;
      }
      void this.forwardOne(podId, target, portNumber, dataStream, errorStream, connections, touch, session);
    });
  }

  private async forwardOne(podId: string, target: PortForwardTarget, port: number, data: SpdyStream, error: SpdyStream, connections: Set<Duplex>, touch: () => void, session: SpdySession): Promise<void> {
    let conn;
    // Bytes from the pod handed to the session and not yet written out; reads pause above FORWARD_PAUSE_BYTES.
    let inFlight = 0;
    let paused = false;
    let socket: Duplex | undefined;
    const onread = {
      buffer: takeReadBuffer,
      callback: (n: number, buf: Uint8Array): boolean => {
        touch();
        inFlight += n;
        const frame = Buffer.from(buf.buffer, buf.byteOffset - FRAMED_HEADROOM, FRAMED_HEADROOM + n);
        data.writeFramed(frame, () => {
          inFlight -= n;
          giveBackReadBuffer(buf.buffer);
          if (paused && inFlight <= FORWARD_RESUME_BYTES) { paused = false; socket?.resume(); }
        });
        if (inFlight <= FORWARD_PAUSE_BYTES) return true;
        paused = true;
        return false;
      },
    };
    try {
      conn = await target.dial(port, { onread });
    } catch (err) {
      error.end(Buffer.from(`error forwarding port ${port}: ${(err as Error).message}`));
      data.end();
      return;
    }
    const { stream } = conn;
    socket = stream;
    connections.add(stream);
    stream.on('error', () => undefined);
    // What the client sent while the connection was being dialled was kept by the stream: delivered now, in order.
    // A pod that reads slower than the client sends holds the client's input (not the agent's memory).
    let holding = false;
    data.consume((d) => {
      touch();
      if (stream.write(d) || holding) return;
      holding = true;
      const release = session.holdInput();
      const drained = () => {
        stream.off('drain', drained);
        stream.off('close', drained);
        holding = false;
        release();
      };
      stream.on('drain', drained);
      stream.on('close', drained);
    }, () => stream.end());
    data.on('reset', () => stream.destroy());
    error.consume(() => undefined, () => undefined);
    // A runtime that does not take onread: its stream emits 'data' (fresh buffers) instead.
    stream.on('data', (d: Buffer) => {
      touch();
      if (!data.write(d)) {
        stream.pause();
        session.onDrain(() => stream.resume());
      }
    });
    stream.on('end', () => data.end());
    const why = await conn.done;
    connections.delete(stream);
    if (why) error.end(Buffer.from(`error forwarding port ${port} to pod ${podId}: ${why}`));
    else error.end();
    data.end();
  }

  /**
   * exec/attach over SPDY/3.1 (v4.channel.k8s.io; kubectl before 1.30, or with
   * KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false): the client opens one stream per channel, named by
   * its `streamtype` header (error, stdin, stdout, stderr, resize); the command starts once every
   * stream the query asked for is there (and, with a terminal, its first size), and the final
   * Status is written on the error stream, as over the WebSocket's channel 3.
   */
  private serveSpdyChannels(session: SpdySession, r: ExecRequest, kind: 'exec' | 'attach', start: (size?: TerminalSize) => Promise<ExecProcess>, release: () => void): void {
    const wanted = ['error', ...(r.stdin ? ['stdin'] : []), ...(r.stdout ? ['stdout'] : []), ...(r.stderr && !r.tty ? ['stderr'] : []), ...(r.tty ? ['resize'] : [])];
    const streams = new Map<string, SpdyStream>();
    let proc: ExecProcess | undefined;
    let finished = false;
    let idle: NodeJS.Timeout | undefined;
    const touch = () => {
      clearTimeout(idle);
      idle = setTimeout(() => { this.log.warn({ pod: r.podId, container: r.container }, `${kind} stream idle too long; closed`); session.close(); }, this.limits.idleTimeoutMs);
    };
    touch();
    const stop = () => session.close();
    this.live.add(stop);
    const giveUp = setTimeout(() => session.close(), STREAM_PAIR_TIMEOUT_MS);
    session.on('close', () => {
      clearTimeout(idle);
      clearTimeout(giveUp);
      this.live.delete(stop);
      release();
      if (proc && !finished && kind === 'exec') void proc.kill();
      else if (proc && kind === 'attach') void proc.kill();
    });
    let firstSize: TerminalSize | undefined;
    let sized: (() => void) | undefined;
    let resizeText = '';
    const onResize = (d: Buffer) => {
      resizeText += d.toString('utf8');
      // A sequence of JSON objects, one per resize.
      let end: number;
      while ((end = resizeText.indexOf('}')) >= 0) {
        const size = parseResize(Buffer.from(resizeText.slice(0, end + 1)));
        resizeText = resizeText.slice(end + 1);
        if (!size) continue;
        if (proc) proc.resize(size);
        else { firstSize ??= size; sized?.(); }
      }
    };
    session.on('stream', (stream: SpdyStream) => {
      touch();
      const type = stream.headers.streamtype ?? '';
      if (!wanted.includes(type) || streams.has(type)) { stream.reset(); return; }
      streams.set(type, stream);
      if (type === 'resize') stream.consume(onResize, () => undefined);
      if (wanted.every((w) => streams.has(w))) void begin();
    });
    const begin = async () => {
      clearTimeout(giveUp);
      if (r.tty && !firstSize) await new Promise<void>((resolve) => { sized = resolve; setTimeout(resolve, TTY_SIZE_WAIT_MS); });
      const errorStream = streams.get('error')!;
      try {
        proc = await start(firstSize);
      } catch (err) {
        const e = err instanceof UserError ? `${err.message}${err.hint ? ` (${err.hint})` : ''}` : (err as Error).message;
        errorStream.end(Buffer.from(JSON.stringify({ metadata: {}, status: 'Failure', message: e, reason: 'InternalError' })));
        session.close();
        return;
      }
      if (firstSize) proc.resize(firstSize);
      this.log.info({ pod: r.podId, container: r.container, command: r.command[0], tty: r.tty, protocol: `SPDY ${SPDY_CHANNEL_PROTOCOL}`, kind }, `${kind} started`);
      const p = proc;
      const stdin = streams.get('stdin');
      stdin?.consume((d) => { touch(); p.stdin?.write(d); }, () => p.stdin?.end());
      const outputs: Array<Promise<void>> = [];
      const pipe = (from: Readable | undefined, to: SpdyStream | undefined) => {
        if (!from) return;
        if (!to) { from.resume(); return; }
        to.consume(() => undefined, () => undefined);
        from.on('data', (d: Buffer) => {
          touch();
          if (!to.write(d)) { from.pause(); session.onDrain(() => from.resume()); }
        });
        outputs.push(new Promise((res) => { from.once('end', () => { to.end(); res(); }); from.once('close', () => res()); }));
      };
      pipe(p.stdout, streams.get('stdout'));
      pipe(p.stderr, streams.get('stderr'));
      const { code } = await p.exit;
      await Promise.all(outputs);
      finished = true;
      errorStream.end(Buffer.from(JSON.stringify(exitStatus(kind, r.command, code))));
      // The client reads the status, then its streams' ends; give it the moment the kubelet does.
      setTimeout(() => session.close(), 100);
    };
  }

  /** Close every stream (the agent is stopping). */
  close(): void {
    for (const stop of [...this.live]) stop();
    this.wss.close();
  }
}
