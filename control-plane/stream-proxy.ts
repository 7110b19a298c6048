/**
 * pods/exec, pods/attach and pods/portforward: the connection upgrade
 * (WebSocket, or SPDY from older clients) is passed to the pod's node API as
 * it is, with the node identity and verified TLS of node-client.ts, and once
 * the node answers 101 the two connections are spliced byte for byte, as
 * kube-apiserver's upgrade-aware proxy does. The node speaks the stream
 * protocols (agent/streaming.ts); an error before the upgrade comes back to
 * kubectl as a metav1.Status it prints.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../common/log.js';
import { authenticate, type TokenAuthenticator } from './authn.js';
import { authorize, impersonate } from './rbac-authorizer.js';
import { isCertificateError, type NodeClientTls } from './node-client.js';
import { SPLICE_PAUSE_BYTES, SPLICE_RESUME_BYTES, upgradeAtNode } from './node-upgrade.js';
import { ApiError } from './resources.js';
import type { KObj, Store } from './store.js';

export const STREAM_SUBRESOURCES = ['exec', 'attach', 'portforward'] as const;
type StreamSubresource = (typeof STREAM_SUBRESOURCES)[number];

/** Request headers that carry the upgrade negotiation; nothing else (no credentials) goes to the node. */
const FORWARDED_HEADERS = new Set(['upgrade', 'connection', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol', 'x-stream-protocol-version', 'user-agent']);

/**
 * The client → node direction (node → client is node-upgrade.ts's, where a port-forward's
 * download goes). Copy `from` into `to`: every chunk is written the moment it arrives, never held
 * back to be batched (a keystroke of `kubectl run -i -t` must go out at once); only a `to` that
 * cannot keep up pauses `from`: above SPLICE_PAUSE_BYTES unwritten, until SPLICE_RESUME_BYTES.
 * (pipe() pauses at the socket's 16 KiB highWaterMark, i.e. after every TLS record: a readStop
 * and readStart per record.)
 */
function spliceInto(from: Duplex, to: Duplex): void {
  let paused = false;
  const written = () => {
    if (paused && to.writableLength <= SPLICE_RESUME_BYTES) { paused = false; from.resume(); }
  };
  from.on('data', (chunk: Buffer) => {
    to.write(chunk, written);
    if (!paused && to.writableLength > SPLICE_PAUSE_BYTES) { paused = true; from.pause(); }
  });
  from.on('end', () => to.end());
}

function reject(socket: Duplex, err: ApiError): void {
  const body = JSON.stringify(err.toStatus());
  if (!socket.writable) return;
  socket.end(`HTTP/1.1 ${err.code} ${err.reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

export class StreamProxy {
  constructor(private readonly store: Store, private readonly log: Logger, private readonly adminToken: string, private readonly nodeClient: NodeClientTls, private readonly tokens?: TokenAuthenticator) {}

  /** The server's 'upgrade' event. */
  handle(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    try {
      this.proxy(req, socket, head);
    } catch (err) {
      if (err instanceof ApiError) return reject(socket, err);
      this.log.error({ err: String(err), url: req.url }, 'stream upgrade failed');
      reject(socket, new ApiError(500, 'InternalError', `Internal error occurred: ${(err as Error).message}`));
    }
  }

  private proxy(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const u = new URL(req.url ?? '/', 'https://localhost');
    const authenticated = authenticate(req, this.adminToken, this.tokens);
    if (!authenticated) throw new ApiError(401, 'Unauthorized', 'Unauthorized');
    const user = impersonate(req.headers, authenticated, this.store);
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/([^/]+)\/?$/.exec(u.pathname);
    const sub = m?.[3] as StreamSubresource | undefined;
    if (!m || !sub || !STREAM_SUBRESOURCES.includes(sub)) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource (only pods/exec, pods/attach and pods/portforward take a connection upgrade)');
    const [ns, name] = [decodeURIComponent(m[1]!), decodeURIComponent(m[2]!)];
    // Creating a stream is "create" on the subresource whatever the method (kube-apiserver since 1.30 for WebSockets).
    authorize(user, { verb: 'create', resource: 'pods', subresource: sub, group: '', namespace: ns, name }, this.store);
    const pod = this.store.get('pods', ns, name);
    if (!pod) throw new ApiError(404, 'NotFound', `pods "${name}" not found`, { name, kind: 'pods' });
    let upstreamPath: string;
    const params = new URLSearchParams(u.searchParams);
    if (sub === 'portforward') {
      upstreamPath = `/portForward/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
    } else {
      const container = this.container(pod, params.get('container'), name);
      params.delete('container');
      upstreamPath = `/${sub}/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/${encodeURIComponent(container)}`;
    }
    if (params.size) upstreamPath += `?${params}`;
    const { nodeName, ip, port } = this.nodeOf(pod, ns, name);
    const headers: Array<[string, string]> = [['Accept', '*/*']];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      if (FORWARDED_HEADERS.has(req.rawHeaders[i]!.toLowerCase())) headers.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
    }
    const up = upgradeAtNode({ nodeName, host: ip, port, method: req.method ?? 'GET', path: upstreamPath, headers, tls: this.nodeClient, timeoutMs: 30_000 }, {
      upgraded: (head101, upHead, upSocket) => {
        socket.write(head101);
        if (upHead.length) socket.write(upHead);
        if (head.length) upSocket.write(head);
        spliceInto(socket, upSocket);
        const close = () => { upSocket.destroy(); socket.destroy(); };
        upSocket.on('close', close);
        socket.on('close', close);
        upSocket.on('error', close);
        this.log.info({ pod: `${ns}/${name}`, sub, node: nodeName, user: user.name }, 'stream opened');
        return socket;
      },
      refused: (status, text) => {
        const code = status === 404 || status === 400 || status === 403 || status === 429 ? status : 500;
        const reason = code === 404 ? 'NotFound' : code === 400 ? 'BadRequest' : code === 403 ? 'Forbidden' : code === 429 ? 'TooManyRequests' : 'InternalError';
        reject(socket, new ApiError(code, reason, `the node ${nodeName} refused ${sub} in ${ns}/${name} (${status}): ${text.trim()}`));
      },
      failed: (err) => {
        const why = isCertificateError(err)
          ? `tls: failed to verify the serving certificate of node ${nodeName}: ${err.message} (the node API must present a certificate from the cluster CA issued for node ${nodeName} at ${ip})`
          : `${err.message} (is the stevedore agent on node ${nodeName} running and reachable at ${ip}:${port}?)`;
        reject(socket, new ApiError(500, 'InternalError', `error dialing backend: ${why}`));
      },
    });
    socket.on('close', () => up.destroy());
  }

  private container(pod: KObj, asked: string | null, name: string): string {
    const containers: KObj[] = pod.spec?.containers ?? [];
    const names = [...(pod.spec?.initContainers ?? []), ...containers].map((c: KObj) => c.name as string);
    if (!asked) {
      if (containers.length === 1) return containers[0]!.name;
      throw new ApiError(400, 'BadRequest', `a container name must be specified for pod ${name}, choose one of: [${containers.map((c) => c.name).join(' ')}]`);
    }
    if (!names.includes(asked)) throw new ApiError(400, 'BadRequest', `container ${asked} is not valid for pod ${name}`);
    return asked;
  }

  private nodeOf(pod: KObj, ns: string, name: string): { nodeName: string; ip: string; port: number } {
    const nodeName = pod.spec?.nodeName;
    if (!nodeName) throw new ApiError(400, 'BadRequest', `pod ${name} does not have a host assigned`);
    const node = this.store.get('nodes', '', nodeName);
    if (!node) throw new ApiError(500, 'InternalError', `cannot reach pod ${ns}/${name}: node "${nodeName}" is not registered (start the stevedore agent on that node, then retry)`);
    const addrs: KObj[] = node.status?.addresses ?? [];
    const ip = (addrs.find((a) => a.type === 'InternalIP') ?? addrs.find((a) => a.type === 'Hostname') ?? addrs[0])?.address;
    const port = Number(node.status?.daemonEndpoints?.kubeletEndpoint?.Port ?? 10250) || 10250;
    if (!ip) throw new ApiError(500, 'InternalError', `cannot reach pod ${ns}/${name}: node "${nodeName}" reports no address in status.addresses (its agent must report an InternalIP)`);
    return { nodeName, ip, port };
  }
}
