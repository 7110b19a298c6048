import * as https from 'node:https';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Logger } from '../common/log.js';
import { parseBool } from '../common/format.js';
import { formatTimestamp } from '../runtime-api/logs.js';
import { agentMetrics } from './metrics.js';
import type { PodSync } from './pod-sync.js';
import type { ContainerRuntime } from './runtime.js';
import { resourceMetrics, type StatsCollector } from './stats.js';
import { CHANNEL_PROTOCOLS, DEFAULT_STREAMING_LIMITS, execFlags, StreamError, StreamServer, type StreamingLimits } from './streaming.js';

function send(res: ServerResponse, code: number, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json' });
  res.end(text);
}

const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2';

export interface NodeApiOptions {
  host: string;
  port: number;
  tls: { cert: string; key: string };
  /** CA (PEM) whose client certificates are accepted; undefined refuses every request but /healthz. */
  clientCa: string | undefined;
  /** Common names of the client certificates served (the control plane's kubelet-client identity). */
  allowedClients: string[];
  /** exec/attach/port-forward limits (agent/streaming.ts); default 64 streams, 4 h idle. */
  streaming?: Partial<StreamingLimits>;
}

/**
 * Who may call: a client certificate the TLS layer verified against the client CA, meant for
 * client authentication, whose CN is one of the allowed ones. 401 without a verified
 * certificate, 403 for a CA-issued one of someone else (a node's, say), as the kubelet answers.
 */
function authorizeClient(req: IncomingMessage, opts: NodeApiOptions): { code: 401 | 403; message: string } | undefined {
  const socket = req.socket as TLSSocket;
  if (!opts.clientCa) return { code: 401, message: 'Unauthorized: this node API has no --client-ca-file, so it serves only /healthz\n' };
  if (!socket.authorized) return { code: 401, message: 'Unauthorized: present a client certificate from the cluster CA\n' };
  const cert = socket.getPeerCertificate();
  const cn = typeof cert?.subject?.CN === 'string' ? cert.subject.CN : '';
  if (!(cert.ext_key_usage ?? []).includes(CLIENT_AUTH_OID)) return { code: 403, message: `Forbidden: the certificate of "${cn}" is not a client certificate\n` };
  if (!opts.allowedClients.includes(cn)) return { code: 403, message: `Forbidden: "${cn}" may not use this node API (allowed: ${opts.allowedClients.join(', ')})\n` };
  return undefined;
}

/**
 * The node's HTTPS API (the kubelet's port 10250 subset): /healthz, /metrics, /pods,
 * /stats/summary and /metrics/resource (usage, for the control plane's metrics API) and
 * /containerLogs/{namespace}/{pod}/{container}, which the control plane proxies
 * `kubectl logs` to. Logs come from journald through the runtime.
 */
export async function startNodeApi(opts: NodeApiOptions, sync: PodSync, runtime: ContainerRuntime, log: Logger, stats?: StatsCollector): Promise<https.Server> {
  const streams = new StreamServer(runtime, log, { ...DEFAULT_STREAMING_LIMITS, ...opts.streaming });
  // The certificate is asked for and verified against the client CA. Connections without one
  // still get in, for /healthz only (as the kubelet, which answers the rest 401); a certificate
  // that does not verify ends the connection at once, before any request is read.
  const server = https.createServer({ cert: opts.tls.cert, key: opts.tls.key, ...(opts.clientCa ? { ca: opts.clientCa } : {}), requestCert: true, rejectUnauthorized: false }, (req, res) => {
    handle(req, res).catch((err) => {
      log.error({ err: String(err), url: req.url }, 'node API request failed');
      if (!res.headersSent) send(res, 500, `internal error: ${(err as Error).message}\n`);
      else res.end();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://node');
    if (url.pathname === '/healthz') return send(res, 200, 'ok');
    const refused = authorizeClient(req, opts);
    if (refused) {
      log.warn({ url: url.pathname, remote: req.socket.remoteAddress, code: refused.code }, 'node API request refused');
      return send(res, refused.code, refused.message);
    }
    if (/^\/(exec|attach|portForward)\//.test(url.pathname)) return send(res, 400, `${url.pathname.split('/')[1]} needs a connection upgrade (WebSocket, subprotocol ${CHANNEL_PROTOCOLS.join(' or ')})\n`);
    if (req.method !== 'GET') return send(res, 405, 'method not allowed\n');
    if (url.pathname === '/metrics') return send(res, 200, agentMetrics(sync));
    if (url.pathname === '/stats/summary') {
      if (!stats) return send(res, 503, 'this node API collects no stats\n');
      return send(res, 200, await stats.summary());
    }
    if (url.pathname === '/metrics/resource') {
      if (!stats) return send(res, 503, 'this node API collects no stats\n');
      return send(res, 200, resourceMetrics(await stats.summary()));
    }
    if (url.pathname === '/pods' || url.pathname === '/pods/') {
      return send(res, 200, { kind: 'PodList', apiVersion: 'v1', metadata: {}, items: sync.desiredPods() });
    }
    const m = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)\/?$/.exec(url.pathname);
    if (m) return containerLogs(decodeURIComponent(m[1]!), decodeURIComponent(m[2]!), decodeURIComponent(m[3]!), url.searchParams, req, res);
    return send(res, 404, `no such endpoint: ${url.pathname}\n`);
  }

  async function containerLogs(namespace: string, name: string, container: string, q: URLSearchParams, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const pod = sync.desiredPod(namespace, name);
    if (!pod) return send(res, 404, `pod ${namespace}/${name} is not on this node\n`);
    if (![...pod.spec?.initContainers ?? [], ...pod.spec?.containers ?? []].some((c) => c.name === container)) return send(res, 400, `container ${container} is not valid for pod ${name}\n`);
    const runtimePod = (await runtime.listPods()).filter((p) => p.uid === pod.metadata?.uid).sort((a, b) => (b.createdAt ?? 0) - (a.createdAt ?? 0))[0];
    if (!runtimePod) return send(res, 400, `container "${container}" in pod "${name}" is waiting to start\n`);
    const app = runtimePod.apps.find((a) => a.name === container);
    let invocation: string | undefined;
    if (parseBool(q.get('previous'))) {
      invocation = app?.lastTermination?.invocation;
      if (!invocation) return send(res, 400, `previous terminated container "${container}" in pod "${name}" not found\n`);
    }
    const num = (k: string) => (q.has(k) && Number.isFinite(Number(q.get(k))) ? Number(q.get(k)) : undefined);
    const sinceSeconds = num('sinceSeconds');
    const sinceTime = q.get('sinceTime') ? Date.parse(q.get('sinceTime')!) : undefined;
    const limitBytes = num('limitBytes');
    const controller = new AbortController();
    req.on('close', () => controller.abort());
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Transfer-Encoding': 'chunked' });
    let written = 0;
    for await (const line of runtime.logs({
      podUuid: runtimePod.uuid, container, invocation, tail: num('tailLines'), follow: parseBool(q.get('follow')),
      sinceMs: sinceSeconds !== undefined ? Date.now() - sinceSeconds * 1000 : sinceTime, signal: controller.signal,
    })) {
      const text = `${parseBool(q.get('timestamps')) ? formatTimestamp(line.timeUs) + ' ' : ''}${line.message}\n`;
      if (limitBytes !== undefined && written + Buffer.byteLength(text) > limitBytes) break;
      written += Buffer.byteLength(text);
      res.write(text);
    }
    res.end();
  }

  /** The runtime pod of a Kubernetes pod on this node, newest first; a StreamError saying why when there is none. */
  async function runtimePodOf(namespace: string, name: string, container: string): Promise<string> {
    const pod = sync.desiredPod(namespace, name);
    if (!pod) throw new StreamError(404, `pod ${namespace}/${name} is not on this node`);
    if (!pod.spec?.containers.some((c) => c.name === container)) throw new StreamError(400, `container ${container} is not valid for pod ${name}`);
    const runtimePod = (await runtime.listPods()).filter((p) => p.uid === pod.metadata?.uid).sort((a, b) => (b.createdAt ?? 0) - (a.createdAt ?? 0))[0];
    if (!runtimePod) throw new StreamError(400, `container "${container}" in pod "${name}" is waiting to start`);
    return runtimePod.uuid;
  }

  async function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://node');
    const refused = authorizeClient(req, opts);
    if (refused) {
      log.warn({ url: url.pathname, remote: req.socket.remoteAddress, code: refused.code }, 'node API stream refused');
      throw new StreamError(refused.code, refused.message.trim());
    }
    const m = /^\/(exec|attach)\/([^/]+)\/([^/]+)\/([^/]+)\/?$/.exec(url.pathname);
    if (m && m[1] === 'exec') {
      const [namespace, name, container] = [m[2]!, m[3]!, m[4]!].map(decodeURIComponent) as [string, string, string];
      const podId = await runtimePodOf(namespace, name, container);
      return streams.exec(req, socket, head, { podId, container, ...execFlags(url.searchParams) });
    }
    if (m && m[1] === 'attach') {
      const [namespace, name, container] = [m[2]!, m[3]!, m[4]!].map(decodeURIComponent) as [string, string, string];
      const podId = await runtimePodOf(namespace, name, container);
      return streams.attach(req, socket, head, { podId, container, ...execFlags(url.searchParams) });
    }
    const pf = /^\/portForward\/([^/]+)\/([^/]+)\/?$/.exec(url.pathname);
    if (pf) {
      const [namespace, name] = [decodeURIComponent(pf[1]!), decodeURIComponent(pf[2]!)];
      const pod = sync.desiredPod(namespace, name);
      const first = pod?.spec?.containers[0]?.name ?? '';
      return streams.portForward(req, socket, head, await runtimePodOf(namespace, name, first));
    }
    throw new StreamError(404, `no such streaming endpoint: ${url.pathname}`);
  }

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    upgrade(req, socket, head).catch((err) => {
      const code = err instanceof StreamError ? err.code : 500;
      if (!(err instanceof StreamError)) log.error({ err: String(err), url: req.url }, 'node API stream failed');
      const text = `${err instanceof StreamError ? err.message : `internal error: ${(err as Error).message}`}\n`;
      if (socket.writable) socket.end(`HTTP/1.1 ${code} ${STATUS_CODES[code] ?? 'Error'}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`);
    });
  });
  server.on('close', () => streams.close());

  server.on('secureConnection', (socket: TLSSocket) => {
    const presented = Object.keys(socket.getPeerCertificate() ?? {}).length > 0;
    if (presented && !socket.authorized) {
      log.warn({ remote: socket.remoteAddress, why: String(socket.authorizationError) }, 'node API connection with a client certificate that does not verify; closed');
      socket.destroy();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => { server.off('error', reject); resolve(); });
  });
  return server;
}
