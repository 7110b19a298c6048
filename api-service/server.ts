/**
 * Stevedore's api-service: a separate, read-only gRPC server speaking rkt's
 * v1alpha PublicAPI (api-service/v1alpha.proto), plus grpc.health.v1 and
 * server reflection. See api-service/README.md for the contract.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { createLogger } from '../common/log.js';
import type { PodLocation } from '../runtime-rkt/pod-store.js';
import { ApiError, invalid, notFound, toServiceError } from './errors.js';
import { EventSource } from './events.js';
import { matchEvent, matchImageFilters, matchPodFilters } from './filters.js';
import { ApiMetrics, serveMetrics } from './metrics.js';
import { streamLogs } from './logs.js';
import { loadDefinitions, type EventMsg, type GetLogsRequestMsg, type ImageFilterMsg, type PodFilterMsg, type PodMsg, type EventFilterMsg } from './proto.js';
import { NodeReader } from './reader.js';
import { checkAppName, checkEventFilter, checkImageFilters, checkImageRef, checkPodFilters, checkPodRef, int64, isFullPodUuid } from './validate.js';

const log = createLogger('api-service');

export const DEFAULT_LISTEN = '127.0.0.1:15441';
export const API_VERSION = '1.0.0-alpha';
export const APPC_VERSION = '0.8.11';
/** rw for the socket's owner and group only: connecting needs write permission on it. */
export const SOCKET_MODE = 0o660;

export interface TlsOptions {
  /** PEM files: the server's certificate chain and key, and the CA that client certificates must chain to. */
  certFile: string;
  keyFile: string;
  clientCaFile: string;
}

export interface ApiServiceOptions {
  /** The runtime's data directory (pods/, images/); default /var/lib/stevedore. */
  dataDir?: string;
  /** host:port to listen on (port 0 picks one). Default 127.0.0.1:15441 unless only `socket` is given. */
  listen?: string;
  /** A unix socket path to listen on. */
  socket?: string;
  /** D-Bus address of the node's systemd (default: the system bus). */
  dbusAddress?: string;
  /** Read the journal from this directory (journalctl -D), e.g. a sandbox's; default: the node's journal. */
  journalDir?: string;
  /** Required to listen on anything but loopback: TLS with client certificates. */
  tls?: TlsOptions;
  /** Full rescan period of the event source (ms). */
  rescanMs?: number;
  /** Serve Prometheus metrics over plain HTTP here (host:port; port 0 picks one). */
  metricsListen?: string;
}

export interface ApiService {
  /** Where it listens: `127.0.0.1:PORT`, or `unix:PATH` when it listens only on a socket. */
  address: string;
  /** host:port of /metrics, when asked for. */
  metricsAddress?: string;
  close(): Promise<void>;
}

function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

function splitHostPort(listen: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(listen);
  if (!m) throw new Error(`--listen ${JSON.stringify(listen)}: expected HOST:PORT`);
  return { host: m[1]!, port: Number(m[2]) };
}

function packageVersion(): string {
  try {
    const dir = path.dirname(new URL(import.meta.url).pathname);
    for (const p of [path.join(dir, '..', '..', 'package.json'), path.join(dir, '..', 'package.json')]) {
      if (fs.existsSync(p)) return (JSON.parse(fs.readFileSync(p, 'utf8')) as { version?: string }).version ?? '0.0.0';
    }
  } catch { /* fall through */ }
  return '0.0.0';
}

/** Run `fn` over `items` with at most `limit` in flight. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  }));
  return out;
}

/**
 * The service definition with a ListPods serializer that encodes each Pod
 * message once: a repeated field's encoding is the concatenation of its
 * elements' encodings, so the response is the cached bytes of every pod
 * (`ListPodsResponse{pods:[p]}` each) put together. Pod messages are reused
 * while a pod is unchanged (NodeReader.podMessage), so a steady listing
 * encodes nothing.
 */
function withPodEncodingCache(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const listPods = service.ListPods as grpc.MethodDefinition<unknown, { pods: PodMsg[] }>;
  const encoded = new WeakMap<PodMsg, Buffer>();
  const encodeOne = (pod: PodMsg): Buffer => {
    let bytes = encoded.get(pod);
    if (!bytes) {
      bytes = listPods.responseSerialize({ pods: [pod] });
      encoded.set(pod, bytes);
    }
    return bytes;
  };
  return { ...service, ListPods: { ...listPods, responseSerialize: (res: { pods: PodMsg[] }) => Buffer.concat(res.pods.map(encodeOne)) } };
}

/** Oldest first. created_at is a decimal string of ns without leading zeros: the shorter is the smaller. */
function byCreationThenId(a: PodMsg, b: PodMsg): number {
  const x = a.created_at;
  const y = b.created_at;
  if (x.length !== y.length) return x.length - y.length;
  if (x !== y) return x < y ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

type Unary<Req, Res> = (req: Req) => Promise<Res>;
function unary<Req, Res>(metrics: ApiMetrics, name: string, fn: Unary<Req, Res>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const started = performance.now();
    fn(call.request).then((res) => {
      metrics.observe(name, 'OK', (performance.now() - started) / 1000);
      callback(null, res);
    }, (err) => {
      if (!(err instanceof ApiError)) log.warn({ rpc: name, err: String(err) }, 'request failed');
      const serviceError = toServiceError(err);
      metrics.observe(name, grpc.status[serviceError.code] ?? String(serviceError.code), (performance.now() - started) / 1000);
      callback(serviceError);
    });
  };
}

/** Count a streaming RPC while it is open. */
function streaming<Req, Res>(metrics: ApiMetrics, name: string, fn: grpc.handleServerStreamingCall<Req, Res>): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    const done = metrics.streamStarted(name);
    for (const ev of ['finish', 'close', 'cancelled', 'error']) call.once(ev, done);
    fn(call);
  };
}

export async function startApiService(opts: ApiServiceOptions = {}): Promise<ApiService> {
  const dataDir = path.resolve(opts.dataDir ?? '/var/lib/stevedore');
  const reader = new NodeReader({ dataDir, dbusAddress: opts.dbusAddress });
  const metrics = new ApiMetrics();
  const events = new EventSource(reader, { rescanMs: opts.rescanMs });
  events.on('scanError', (err) => log.warn({ err: String(err) }, 'event scan failed'));
  await events.start();
  const definitions = loadDefinitions();
  const proto = grpc.loadPackageDefinition(definitions) as unknown as {
    v1alpha: { PublicAPI: { service: grpc.ServiceDefinition } };
    grpc: { health: { v1: { Health: { service: grpc.ServiceDefinition } } } };
  };
  const version = packageVersion();
  const openStreams = new Set<() => void>();

  // ---- pods --------------------------------------------------------------------

  async function listPods(req: { filters: PodFilterMsg[]; detail: boolean }): Promise<{ pods: PodMsg[] }> {
    const filters = checkPodFilters(req.filters);
    const detail = !!req.detail;
    const listing = await reader.listingSystemd();
    const locations = await reader.listPodLocations();
    const seen = new Set<string>();
    const unique = locations.filter((l) => !seen.has(l.uuid) && seen.add(l.uuid));
    const pods = await mapLimit(unique, 32, async (loc: PodLocation) => {
      const status = await reader.podStatus(loc, listing?.systemd, listing?.units).catch((err) => {
        if ((err as { code?: string }).code === 'ENOENT') return undefined;
        throw err;
      });
      if (!status) return undefined;
      const msg = await reader.podMessage(loc, status, { detail, inspect: false });
      const facts = { appNames: status.apps.map((a) => a.name), imageIds: status.apps.map((a) => a.image.id) };
      return matchPodFilters(msg, facts, filters) ? msg : undefined;
    });
    const out = pods.filter((p): p is PodMsg => p !== undefined);
    out.sort(byCreationThenId);
    return { pods: out };
  }

  async function inspectPod(req: { id: string }): Promise<{ pod: PodMsg }> {
    const loc = await reader.findPod(checkPodRef(req.id));
    const status = await reader.podStatus(loc, await reader.systemd());
    if (!status) throw notFound(`pod ${loc.uuid} is gone`);
    return { pod: await reader.podMessage(loc, status, { detail: true, inspect: true }) };
  }

  // ---- images ------------------------------------------------------------------

  async function listImages(req: { filters: ImageFilterMsg[]; detail: boolean }) {
    const filters = checkImageFilters(req.filters);
    const records = (await reader.listImageRecords()).filter((r) => matchImageFilters(r, filters));
    return { images: await Promise.all(records.map((r) => reader.imageMessage(r, !!req.detail))) };
  }

  async function inspectImage(req: { id: string }) {
    const record = await reader.findImage(checkImageRef(req.id));
    return { image: await reader.imageMessage(record, true) };
  }

  // ---- streams -------------------------------------------------------------------

  function listenEvents(call: grpc.ServerWritableStream<{ filter: EventFilterMsg | null }, { events: EventMsg[] }>): void {
    let filter: EventFilterMsg;
    try {
      filter = checkEventFilter(call.request.filter);
    } catch (err) {
      call.emit('error', toServiceError(err));
      return;
    }
    const since = Number(filter.since_time);
    const until = Number(filter.until_time);
    let ended = false;
    let untilTimer: NodeJS.Timeout | undefined;
    const send = (batch: Array<{ event: EventMsg }>) => {
      if (ended) return;
      const evs = batch.map((s) => s.event).filter((e) => matchEvent(e, filter));
      if (evs.length) call.write({ events: evs });
    };
    const onEvents = (batch: Array<{ event: EventMsg }>) => send(batch);
    const end = () => {
      if (ended) return;
      ended = true;
      clearTimeout(untilTimer);
      events.off('events', onEvents);
      openStreams.delete(end);
      call.end();
    };
    openStreams.add(end);
    call.on('cancelled', end);
    call.on('error', end);
    // Subscribe and replay in the same tick: nothing falls between the two.
    events.on('events', onEvents);
    if (since > 0) send(events.since(since));
    call.sendMetadata(new grpc.Metadata());
    if (until > 0) {
      const close = () => { void events.scanNow().finally(end); };
      const ms = until * 1000 + 999 - Date.now();
      if (ms <= 0) close();
      else untilTimer = setTimeout(close, Math.min(ms, 2 ** 31 - 1));
    }
  }

  function getLogs(call: grpc.ServerWritableStream<GetLogsRequestMsg, { lines: string[] }>): void {
    const abort = new AbortController();
    let untilTimer: NodeJS.Timeout | undefined;
    const end = () => abort.abort();
    openStreams.add(end);
    call.on('cancelled', end);
    const run = async () => {
      const req = call.request;
      const ref = checkPodRef(req.pod_id, 'pod_id');
      const lines = Number(req.lines ?? 0);
      if (!Number.isInteger(lines) || lines < 0) throw invalid('lines must be >= 0');
      const sinceS = int64(req.since_time, 'since_time');
      const untilS = int64(req.until_time, 'until_time');
      if (untilS && sinceS && untilS < sinceS) throw invalid('until_time is before since_time');
      const app = req.app_name ? checkAppName(req.app_name) : undefined;
      let uuid: string;
      try {
        const loc = await reader.findPod(ref);
        uuid = loc.uuid;
        const status = await reader.podStatus(loc, undefined);
        if (app && status && status.apps.length && !status.apps.some((a) => a.name === app)) throw notFound(`pod ${uuid} has no app "${app}"`);
      } catch (err) {
        // A removed pod's lines stay in the journal: a full UUID may still be read.
        if (!(err instanceof ApiError && err.code === grpc.status.NOT_FOUND && isFullPodUuid(ref) && !String(err.message).includes('has no app'))) throw err;
        uuid = ref;
      }
      if (req.follow && untilS) {
        const ms = untilS * 1000 - Date.now();
        untilTimer = setTimeout(end, Math.max(0, ms));
      }
      await streamLogs({
        podUuid: uuid, app, lines, follow: !!req.follow, sinceS: sinceS || undefined, untilS: untilS || undefined,
        journalDir: opts.journalDir, signal: abort.signal,
        send: (batch) => new Promise<void>((resolve) => {
          if (abort.signal.aborted) return resolve();
          if (call.write({ lines: batch })) resolve();
          else call.once('drain', () => resolve());
        }),
      });
    };
    run().then(() => call.end(), (err) => {
      if (abort.signal.aborted) return call.end();
      if (!(err instanceof ApiError)) log.warn({ rpc: 'GetLogs', err: String(err) }, 'request failed');
      const e = err instanceof ApiError ? toServiceError(err) : { code: grpc.status.UNAVAILABLE, details: String((err as Error)?.message ?? err) };
      call.emit('error', e);
    }).finally(() => {
      clearTimeout(untilTimer);
      openStreams.delete(end);
    });
  }

  // ---- health ------------------------------------------------------------------

  const SERVICES = new Set(['', 'v1alpha.PublicAPI', 'grpc.health.v1.Health']);
  const health = {
    Check: (call: grpc.ServerUnaryCall<{ service: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      if (SERVICES.has(call.request.service ?? '')) cb(null, { status: 'SERVING' });
      else cb({ code: grpc.status.NOT_FOUND, details: `unknown service ${JSON.stringify(call.request.service)}` });
    },
    Watch: (call: grpc.ServerWritableStream<{ service: string }, unknown>) => {
      call.write({ status: SERVICES.has(call.request.service ?? '') ? 'SERVING' : 'SERVICE_UNKNOWN' });
      const end = () => { openStreams.delete(end); call.end(); };
      openStreams.add(end);
      call.on('cancelled', end);
    },
  };

  const server = new grpc.Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024 });
  server.addService(withPodEncodingCache(proto.v1alpha.PublicAPI.service), {
    GetInfo: unary(metrics, 'GetInfo', async () => ({
      info: { rkt_version: version, appc_version: APPC_VERSION, api_version: API_VERSION, global_flags: { dir: dataDir } },
    })),
    ListPods: unary(metrics, 'ListPods', listPods),
    InspectPod: unary(metrics, 'InspectPod', inspectPod),
    ListImages: unary(metrics, 'ListImages', listImages),
    InspectImage: unary(metrics, 'InspectImage', inspectImage),
    ListenEvents: streaming(metrics, 'ListenEvents', listenEvents),
    GetLogs: streaming(metrics, 'GetLogs', getLogs),
  });
  server.addService(proto.grpc.health.v1.Health.service, health);
  new ReflectionService(definitions).addToServer(server);

  const bind = (target: string, creds: grpc.ServerCredentials) => new Promise<number>((resolve, reject) => {
    server.bindAsync(target, creds, (err, port) => (err ? reject(err) : resolve(port)));
  });
  const addresses: string[] = [];
  let metricsServer: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  try {
    if (opts.metricsListen) metricsServer = await serveMetrics(metrics, splitHostPort(opts.metricsListen));
    const listen = opts.listen ?? (opts.socket ? undefined : DEFAULT_LISTEN);
    if (listen) {
      const { host } = splitHostPort(listen);
      let creds = grpc.ServerCredentials.createInsecure();
      if (opts.tls) {
        creds = grpc.ServerCredentials.createSsl(fs.readFileSync(opts.tls.clientCaFile), [{ cert_chain: fs.readFileSync(opts.tls.certFile), private_key: fs.readFileSync(opts.tls.keyFile) }], true);
      } else if (!isLoopback(host)) {
        throw new Error(`refusing to listen on ${listen} without TLS: pass --tls-cert, --tls-key and --tls-client-ca (client certificates are required), or listen on loopback / a unix socket`);
      }
      const port = await bind(listen, creds);
      addresses.push(`${host}:${port}`);
    }
    if (opts.socket) {
      const sock = path.resolve(opts.socket);
      // A stale socket from a killed predecessor (the socket only, never anything else).
      try { if (fs.lstatSync(sock).isSocket()) fs.unlinkSync(sock); } catch { /* not there */ }
      // The socket is the access control (no authentication on it): bound
      // owner-only, so nobody else can connect in between, then opened to
      // the process's group. Under the installed unit that is root and the
      // `stevedore` group (README "Who may read what").
      const umask = process.umask(0o177);
      try {
        await bind(`unix:${sock}`, grpc.ServerCredentials.createInsecure());
      } finally {
        process.umask(umask);
      }
      fs.chmodSync(sock, SOCKET_MODE);
      addresses.push(`unix:${sock}`);
    }
  } catch (err) {
    events.close();
    reader.close();
    server.forceShutdown();
    metricsServer?.server.close();
    throw err;
  }
  log.info({ addresses, dataDir }, 'api-service listening');

  let closing: Promise<void> | undefined;
  return {
    address: addresses[0]!,
    metricsAddress: metricsServer?.address,
    close() {
      closing ??= (async () => {
        events.close();
        metricsServer?.server.close();
        for (const end of [...openStreams]) end();
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => { server.forceShutdown(); resolve(); }, 2000);
          server.tryShutdown(() => { clearTimeout(t); resolve(); });
        });
        reader.close();
        if (opts.socket) { try { if (fs.lstatSync(opts.socket).isSocket()) fs.unlinkSync(opts.socket); } catch { /* gone */ } }
      })();
      return closing;
    },
  };
}
