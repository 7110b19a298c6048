/**
 * One run of a probe's or a lifecycle hook's action, as the kubelet runs it:
 * exec in the container (through the runtime's enter path), HTTP GET, TCP
 * connect and the gRPC health protocol to the pod's IP (or the action's
 * host). Each returns success or a failure message in the kubelet's words;
 * none throws.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import type { V1Container } from '@kubernetes/client-node';
import type { ContainerRuntime } from './runtime.js';

export interface ActionTarget {
  runtime: ContainerRuntime;
  /** The runtime's pod ID. */
  podId: string;
  container: V1Container;
  /** Where network actions go unless they name a host: the pod's IP (the node's for host-network pods). */
  podIP?: string;
}

export interface ActionResult { ok: boolean; message: string }

export interface Action {
  exec?: { command?: string[] } | null;
  httpGet?: { path?: string; port: number | string; host?: string; scheme?: string; httpHeaders?: Array<{ name: string; value: string }> } | null;
  tcpSocket?: { port: number | string; host?: string } | null;
  grpc?: { port: number; service?: string | null } | null;
  sleep?: { seconds: number } | null;
}

/** Output the kubelet keeps of an exec or HTTP body: 10 KiB. */
const MAX_OUTPUT = 10 * 1024;
const USER_AGENT = 'kube-probe/1.32';

/** A port by number, digits, or a name of one of the container's ports. */
export function resolvePort(port: number | string, container: V1Container): number | string {
  if (typeof port === 'number') return port;
  if (/^\d+$/.test(port)) return Number(port);
  const named = (container.ports ?? []).find((p) => p.name === port);
  return named ? named.containerPort : `port "${port}" is not the name of a port of container "${container.name}"`;
}

const hostPort = (host: string, port: number) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

export async function runAction(action: Action, target: ActionTarget, timeoutMs: number): Promise<ActionResult> {
  try {
    if (action.exec) return await execAction(action.exec.command ?? [], target, timeoutMs);
    if (action.httpGet) return await httpAction(action.httpGet, target, timeoutMs);
    if (action.tcpSocket) return await tcpAction(action.tcpSocket, target, timeoutMs);
    if (action.grpc) return await grpcAction(action.grpc, target, timeoutMs);
    if (action.sleep) {
      await new Promise((r) => setTimeout(r, action.sleep!.seconds * 1000));
      return { ok: true, message: '' };
    }
    return { ok: false, message: 'no action to run (exec, httpGet, tcpSocket, grpc or sleep)' };
  } catch (err) {
    return { ok: false, message: (err as Error).message ?? String(err) };
  }
}

async function execAction(command: string[], t: ActionTarget, timeoutMs: number): Promise<ActionResult> {
  const r = await t.runtime.runInContainer(t.podId, t.container.name, command, timeoutMs);
  if (r.timedOut) return { ok: false, message: `command ${JSON.stringify(command)} timed out after ${timeoutMs / 1000}s` };
  if (r.exitCode === 0) return { ok: true, message: r.output };
  // The kubelet's message is the command's output; with none, say what happened.
  return { ok: false, message: r.output.trim() || `command ${JSON.stringify(command)} exited with ${r.exitCode}` };
}

function networkHost(explicit: string | undefined, t: ActionTarget): string {
  if (explicit) return explicit;
  if (!t.podIP) throw new Error('the pod has no IP (yet) to send the probe to');
  return t.podIP;
}

function httpAction(h: NonNullable<Action['httpGet']>, t: ActionTarget, timeoutMs: number): Promise<ActionResult> {
  const port = resolvePort(h.port, t.container);
  if (typeof port === 'string') return Promise.resolve({ ok: false, message: port });
  const host = networkHost(h.host, t);
  const scheme = (h.scheme ?? 'HTTP').toLowerCase();
  const path = h.path ? (h.path.startsWith('/') ? h.path : `/${h.path}`) : '/';
  const url = `${scheme}://${hostPort(host, port)}${path}`;
  const headers: Record<string, string> = { 'User-Agent': USER_AGENT, Accept: '*/*' };
  for (const hd of h.httpHeaders ?? []) headers[hd.name] = hd.value;
  return new Promise((resolve) => {
    const lib = scheme === 'https' ? https : http;
    // The kubelet does not verify a probed server's certificate (there is no CA to check it against).
    const req = lib.request(url, { method: 'GET', headers, timeout: timeoutMs, rejectUnauthorized: false, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { if (body.length < MAX_OUTPUT) body += d; });
      res.on('end', () => {
        const code = res.statusCode ?? 0;
        if (code >= 200 && code < 400) resolve({ ok: true, message: body.slice(0, MAX_OUTPUT) });
        else resolve({ ok: false, message: `HTTP probe failed with statuscode: ${code}` });
      });
      res.on('error', (err) => resolve({ ok: false, message: `Get "${url}": ${err.message}` }));
    });
    req.on('timeout', () => { req.destroy(new Error(`context deadline exceeded (Client.Timeout exceeded while awaiting headers after ${timeoutMs / 1000}s)`)); });
    req.on('error', (err) => resolve({ ok: false, message: `Get "${url}": ${describeNetError(err, host, port)}` }));
    req.end();
  });
}

function describeNetError(err: NodeJS.ErrnoException, host: string, port: number): string {
  if (err.code === 'ECONNREFUSED') return `dial tcp ${hostPort(host, port)}: connect: connection refused`;
  if (err.code === 'EHOSTUNREACH') return `dial tcp ${hostPort(host, port)}: connect: no route to host`;
  return err.message;
}

function tcpAction(s: NonNullable<Action['tcpSocket']>, t: ActionTarget, timeoutMs: number): Promise<ActionResult> {
  const port = resolvePort(s.port, t.container);
  if (typeof port === 'string') return Promise.resolve({ ok: false, message: port });
  const host = networkHost(s.host, t);
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const done = (r: ActionResult) => { sock.destroy(); clearTimeout(timer); resolve(r); };
    const timer = setTimeout(() => done({ ok: false, message: `dial tcp ${hostPort(host, port)}: i/o timeout` }), timeoutMs);
    sock.on('connect', () => done({ ok: true, message: '' }));
    sock.on('error', (err) => done({ ok: false, message: describeNetError(err, host, port) }));
  });
}

/** grpc.health.v1.HealthCheckRequest { string service = 1; }, encoded by hand: one field. */
function encodeHealthRequest(service: string): Buffer {
  const s = Buffer.from(service, 'utf8');
  // Even an empty service is sent as the field: some gRPC stacks take a zero-length message for none at all.
  const len: number[] = [];
  let n = s.length;
  while (n > 127) { len.push((n & 0x7f) | 0x80); n >>>= 7; }
  len.push(n);
  return Buffer.concat([Buffer.from([0x0a, ...len]), s]);
}

/** grpc.health.v1.HealthCheckResponse { ServingStatus status = 1; }: the enum's value (0 when absent). */
function decodeHealthStatus(b: Buffer): number {
  for (let i = 0; i < b.length;) {
    const tag = b[i++]!;
    let v = 0, shift = 0, byte: number;
    if ((tag & 7) === 0) {
      do { byte = b[i++]!; v |= (byte & 0x7f) << shift; shift += 7; } while (byte & 0x80 && i < b.length);
      if (tag >> 3 === 1) return v;
    } else if ((tag & 7) === 2) {
      do { byte = b[i++]!; v |= (byte & 0x7f) << shift; shift += 7; } while (byte & 0x80 && i < b.length);
      i += v;
    } else return 0;
  }
  return 0;
}

const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

async function grpcAction(g: NonNullable<Action['grpc']>, t: ActionTarget, timeoutMs: number): Promise<ActionResult> {
  const grpc = await import('@grpc/grpc-js');
  const host = networkHost(undefined, t);
  const address = hostPort(host, g.port);
  const Client = grpc.makeGenericClientConstructor({
    Check: {
      path: '/grpc.health.v1.Health/Check', requestStream: false, responseStream: false,
      requestSerialize: (s: string) => encodeHealthRequest(s), requestDeserialize: (b: Buffer) => b.toString(),
      responseSerialize: (n: number) => Buffer.from([0x08, n]), responseDeserialize: decodeHealthStatus,
    },
  }, 'Health');
  const client = new Client(address, grpc.credentials.createInsecure());
  try {
    const status = await new Promise<number>((resolve, reject) => {
      (client as unknown as { Check: (req: string, opts: { deadline: Date }, cb: (err: Error | null, res: number) => void) => void })
        .Check(g.service ?? '', { deadline: new Date(Date.now() + timeoutMs) }, (err, res) => (err ? reject(err) : resolve(res)));
    });
    if (status === 1) return { ok: true, message: '' };
    return { ok: false, message: `service unhealthy (responded with "${SERVING_STATUS[status] ?? status}")` };
  } catch (err) {
    const e = err as { code?: number; details?: string; message: string };
    if (e.code === grpc.status.DEADLINE_EXCEEDED) return { ok: false, message: `timeout: health rpc did not complete within ${timeoutMs / 1000}s` };
    if (e.code === grpc.status.UNAVAILABLE) return { ok: false, message: `timeout: failed to connect service "${address}" within ${timeoutMs / 1000}s: ${e.details ?? e.message}` };
    return { ok: false, message: `error: health rpc failed: ${e.details ?? e.message}` };
  } finally {
    client.close();
  }
}
