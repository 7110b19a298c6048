import * as https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import * as os from 'node:os';
import { parse as parseYaml } from 'yaml';
import { createLogger, type Logger } from '../common/log.js';
import { parseBool } from '../common/format.js';
import { UserError, errnoCode } from '../common/errors.js';
import { ConflictError, GoneError, type KObj, type Change, type Store } from './store.js';
import { openStore, describeStore } from './store-spec.js';
import { LeaderElector, DEFAULT_LEADER_ELECTION, type LeaderElectionConfig } from './leader-election.js';
import { ensureCredentials, kubeconfigText, writeKubeconfig } from './pki.js';
import { mergePatch, strategicMergePatch, jsonPatch, PatchError } from './patch.js';
import { parseLabelSelector, parseFieldSelector, matchLabels, matchFields, SelectorError } from './selectors.js';
import { toTable, type IncludeObject } from './tables.js';
import { SCHEMAS, unknownFields, dropFields } from './schema.js';
import { openApiSchemas } from './openapi.js';
import { CachedRepresentation, encodeOpenApiV2, negotiateOpenApiV2, openApiV2FromV3, OPENAPI_V2_JSON, OPENAPI_V2_PROTOBUF, OPENAPI_V2_PROTOBUF_OLD } from './openapi-v2.js';
import {
  ApiError, RESOURCES, apiVersionOf, findResource, invalid, validateMeta, withNewMeta, now, microNow,
  type ResourceDef, type Cause,
} from './resources.js';
import { decodeProtobufBody } from './protobuf.js';
import { apply as serverSideApply, conflictStatus, managedAfterUpdate, managedForCreate, managerFromUserAgent, sentManagedFields, ManagedFieldsError } from './apply.js';
import { listPage } from './list-snapshot.js';
import { DEFAULT_EVENT_TTL_SECONDS, DEFAULT_MAX_EVENTS_PER_NAMESPACE, EventTtlController } from './controllers/event-ttl.js';
import { EventRecorder } from './controllers/events.js';
import { NodeLifecycleController } from './controllers/node-lifecycle.js';
import { Scheduler } from './controllers/scheduler.js';
import { DEFAULT_WATCH_LIMITS, WatchLimits, type WatchLimitOptions } from './watch-limits.js';
import { strategyFor } from './kinds/index.js';
import { budgetStatus, budgetsOf, DisruptionController } from './controllers/disruption.js';
import { admitDefaultTolerations, DEFAULT_TOLERATION_SECONDS, type DefaultTolerationSeconds } from './kinds/pods.js';
import { selectorString } from './kinds/workloads.js';
import { hpaV1ToV2, hpaV2ToV1 } from './kinds/hpa.js';
import { ReplicaSetController } from './controllers/replicaset.js';
import { DeploymentController } from './controllers/deployment.js';
import { JobController } from './controllers/job.js';
import { CronJobController } from './controllers/cronjob.js';
import { DaemonSetController } from './controllers/daemonset.js';
import { StatefulSetController } from './controllers/statefulset.js';
import { HpaController } from './controllers/hpa.js';
import { PersistentVolumeController } from './controllers/persistent-volume.js';
import { admitDefaultStorageClass, LOCAL_PATH_CLASS, LOCAL_PATH_STORAGE_CLASS } from './kinds/storage.js';
import { EndpointSliceController, EndpointSliceMirroringController, EndpointsController } from './controllers/endpoints.js';
import { ServiceAllocator } from './service-allocator.js';
import { GarbageCollector, dependentsOf } from './controllers/garbage-collector.js';
import { DEFAULT_KUBE_API_BURST, DEFAULT_KUBE_API_QPS, TokenBucket, type ApiClient, type PropagationPolicy } from './controllers/client.js';
import { AsyncLocalStorage } from 'node:async_hooks';
import { authenticate, type UserInfo } from './authn.js';
import { admitCreate, admitTokenRequest, verbOf, type ObjectReader, type RequestAttributes } from './node-authorizer.js';
import { authorize, admitRbacWrite, impersonate } from './rbac-authorizer.js';
import { DEFAULT_CLUSTER_ROLES, DEFAULT_CLUSTER_ROLE_BINDINGS, reconcileDefault } from './rbac-bootstrap.js';
import { ServiceAccountTokens } from './serviceaccount-tokens.js';
import { reviewRequest, tokenRequest } from './reviews.js';
import { ClusterRoleAggregationController, ServiceAccountsController } from './controllers/rbac.js';
import { METRICS_GROUP, METRICS_VERSION, MetricsApi, metricsDiscovery } from './metrics-api.js';
import { nodeEndpoint, nodeRequestOptions, isCertificateError, type NodeClientTls } from './node-client.js';
import { NodeIpamController, type NodeIpamOptions } from './controllers/node-ipam.js';
import { StreamProxy, STREAM_SUBRESOURCES } from './stream-proxy.js';
import { RequestMetrics, requestLabels } from './request-metrics.js';

export interface ControlPlaneOptions {
  dataDir: string;
  port?: number;
  host?: string;
  /** Node IPAM (kube-controller-manager's --allocate-node-cidrs): Nodes without spec.podCIDR get one from clusterCidr. */
  allocateNodeCidrs?: NodeIpamOptions;
  /** More addresses to serve on besides host (e.g. the node bridge's, for nodes in network namespaces of their own); in the serving certificate's SANs. */
  alsoListen?: string[];
  kubeconfigPath?: string;
  logLevel?: string;
  /** Where objects live (store-spec.ts): `sqlite:PATH` or `etcd:URL[,URL...]`; default sqlite:DATADIR/state.db. */
  store?: string;
  /** Key prefix in etcd (kube-apiserver's --etcd-prefix); default /registry. */
  etcdPrefix?: string;
  /** Run controllers and the scheduler only while holding a Lease (kube-controller-manager's --leader-elect); fields override DEFAULT_LEADER_ELECTION. */
  leaderElect?: Partial<LeaderElectionConfig>;
  /** Seconds without a Lease renewal before a node's Ready condition turns Unknown (default 40). */
  nodeMonitorGracePeriodSeconds?: number;
  /** Seconds new pods tolerate a not-ready or unreachable node before they are evicted (kube-apiserver's default 300 each). */
  defaultNotReadyTolerationSeconds?: number;
  defaultUnreachableTolerationSeconds?: number;
  /** How many changes the watch log keeps (default 10000); older resourceVersions get 410 Gone. */
  watchLogRetain?: number;
  /** Seconds an Event lives after its last write (kube-apiserver's --event-ttl; default 3600). */
  eventTtlSeconds?: number;
  /** Events kept per namespace, oldest deleted first (default 5000). */
  maxEventsPerNamespace?: number;
  /** Open watches in total and per client, and the longest a watch lasts (control-plane/watch-limits.ts). */
  watchLimits?: Partial<WatchLimitOptions>;
  /** Seconds between evaluations of each HorizontalPodAutoscaler (kube-controller-manager's default 15). */
  hpaSyncPeriodSeconds?: number;
  /** The pace of the pods the workload controllers create (kube-controller-manager's --kube-api-qps/--kube-api-burst; default 20 and 30). */
  kubeApiQps?: number;
  kubeApiBurst?: number;
  /** Where Services' cluster IPs come from (kube-apiserver's --service-cluster-ip-range; default 10.96.0.0/16). */
  serviceClusterIpRange?: string;
  /** NodePort range (kube-apiserver's --service-node-port-range; default 30000-32767). */
  serviceNodePortRange?: string;
}

export interface ControlPlane {
  url: string;
  adminToken: string;
  caCertPem: string;
  /** The underlying store (tests use it to compact the watch log). */
  store: Store;
  /** Whether this process runs the controllers and the scheduler now (always, without leaderElect). */
  isLeader(): boolean;
  close(): Promise<void>;
}

export const MAX_BODY_BYTES = 3 * 1024 * 1024;
const SYSTEM_NAMESPACES = ['default', 'kube-system', 'kube-node-lease'];
const RUNTIME_CLASSES = ['kvm', 'namespaces', 'fly'];
const KUBE_VERSION = { major: '1', minor: '32', gitVersion: 'v1.32.0-stevedore', gitCommit: '0000000000000000000000000000000000000000', gitTreeState: 'clean', buildDate: '2025-01-01T00:00:00Z', goVersion: 'go1.23.0', compiler: 'gc', platform: `linux/${process.arch === 'x64' ? 'amd64' : process.arch}` };

type Query = URLSearchParams;

const notFound = (r: ResourceDef, name: string) => new ApiError(404, 'NotFound', `${r.name}${r.group ? '.' + r.group : ''} "${name}" not found`, { name, group: r.group, kind: r.name });
const conflict = (r: ResourceDef, name: string) => new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${r.name}${r.group ? '.' + r.group : ''} "${name}": the object has been modified; please apply your changes to the latest version and try again`, { name, group: r.group, kind: r.name });
const badRequest = (msg: string) => new ApiError(400, 'BadRequest', msg);
/** A watch request whose options contradict each other (kube-apiserver answers 422 Invalid naming the field). */
const invalidWatch = (field: string, msg: string) => new ApiError(422, 'Invalid', `ListOptions.meta.k8s.io "" is invalid: ${field}: Forbidden: ${msg}`, { kind: 'ListOptions', group: 'meta.k8s.io', causes: [{ reason: 'FieldValueForbidden', message: `Forbidden: ${msg}`, field }] });

function sendJson(res: ServerResponse, code: number, body: unknown, extraHeaders: Record<string, string> = {}): void {
  const data = JSON.stringify(body);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Content-Length': Buffer.byteLength(data), ...extraHeaders });
  res.end(data);
}

/** A JSON document kept as the bytes sent, with its ETag (the SHA-512 of those bytes). */
function jsonRepresentation(doc: unknown): CachedRepresentation {
  const body = Buffer.from(JSON.stringify(doc));
  return new CachedRepresentation(body, 'application/json', CachedRepresentation.etagOf(body), new Date());
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY_BYTES) return reject(new ApiError(413, 'RequestEntityTooLarge', `Request entity too large: limit is ${MAX_BODY_BYTES}`));
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new ApiError(413, 'RequestEntityTooLarge', `Request entity too large: limit is ${MAX_BODY_BYTES}`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function parseBody(buf: Buffer, contentType: string): any {
  // kubectl's typed clients (kubectl create secret …) send protobuf and do not fall back to JSON.
  if (/protobuf/.test(contentType)) return decodeProtobufBody(buf);
  if (/cbor/.test(contentType)) throw new ApiError(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (Secrets, ConfigMaps, Namespaces, Services, Deployments, Jobs, CronJobs, HorizontalPodAutoscalers)');
  const text = buf.toString('utf8');
  if (!text.trim()) throw badRequest('the request body is empty; send a JSON object');
  try {
    if (/yaml/.test(contentType)) return parseYaml(text);
    return JSON.parse(text);
  } catch (err) {
    throw badRequest(`the request body is not valid ${/yaml/.test(contentType) ? 'YAML' : 'JSON'}: ${(err as Error).message}`);
  }
}

/** DeleteOptions' propagationPolicy (query or body), or the deprecated orphanDependents. */
function propagationPolicyOf(q: Query, body: KObj): PropagationPolicy | undefined {
  const given = q.get('propagationPolicy') ?? body?.propagationPolicy;
  const orphan = q.get('orphanDependents') ?? body?.orphanDependents;
  if (given !== undefined && given !== null && given !== '') {
    if (!['Orphan', 'Background', 'Foreground'].includes(given)) {
      throw new ApiError(422, 'Invalid', `DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "${given}": supported values: "Foreground", "Background", "Orphan"`, { kind: 'DeleteOptions', group: 'meta.k8s.io', causes: [{ reason: 'FieldValueNotSupported', message: `Unsupported value: "${given}": supported values: "Foreground", "Background", "Orphan"`, field: 'propagationPolicy' }] });
    }
    if (orphan !== undefined && orphan !== null) throw new ApiError(422, 'Invalid', 'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Invalid value: "": orphanDependents and deletionPropagation cannot be both set');
    return given as PropagationPolicy;
  }
  if (orphan === undefined || orphan === null) return undefined;
  return orphan === true || orphan === 'true' ? 'Orphan' : 'Background';
}

/** 422 for PatchOptions, worded as kube-apiserver's validation of them. */
const invalidPatchOptions = (field: string, reason: string, message: string) =>
  new ApiError(422, 'Invalid', `PatchOptions.meta.k8s.io "" is invalid: ${field}: ${message}`, { kind: 'PatchOptions', group: 'meta.k8s.io', causes: [{ reason, message, field }] });

/** dryRun: only `All` exists (kube-apiserver refuses anything else with 400). */
function dryRunOf(q: Query): boolean {
  const values = q.getAll('dryRun');
  for (const v of values) if (v !== 'All') throw badRequest(`Invalid dry run value: "${v}": supported values: "All"`);
  return values.length > 0;
}

/** The manager a write is recorded under: `fieldManager`, else the User-Agent's product (kube-apiserver's default). */
function fieldManagerOf(q: Query, userAgent: string | undefined): string {
  const given = q.get('fieldManager');
  if (given === null) return managerFromUserAgent(userAgent);
  if (given.length > 128) throw new ApiError(422, 'Invalid', `fieldManager: Too long: may not be more than 128 bytes`, { causes: [{ reason: 'FieldValueTooLong', message: 'Too long: may not be more than 128 bytes', field: 'fieldManager' }] });
  if (!/^[\x20-\x7e]*$/.test(given)) throw new ApiError(422, 'Invalid', `fieldManager: Invalid value: ${JSON.stringify(given)}: must be printable ASCII`, { causes: [{ reason: 'FieldValueInvalid', message: 'must be printable ASCII', field: 'fieldManager' }] });
  return given;
}

/**
 * Content negotiation of the reply: JSON (also as Table or PartialObjectMetadata). A client that
 * accepts only protobuf or YAML replies gets 406, as kube-apiserver answers a media type it lacks;
 * clients that list JSON beside protobuf (kubectl's typed clients) get JSON.
 */
export function negotiate(accept: string): void {
  if (!accept.trim()) return;
  const types = accept.split(',').map((t) => t.split(';')[0]!.trim().toLowerCase());
  if (types.some((t) => t === 'application/json' || t === '*/*' || t === 'application/*' || t === '')) return;
  throw new ApiError(406, 'NotAcceptable', `the server cannot answer in ${types.join(', ')}: only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io, application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io (protobuf and YAML replies are not implemented; accept application/json)`);
}

/** managedFields a client sent, or 422 naming what is wrong with them. */
function managedFieldsOf(sent: unknown, stored: unknown): ReturnType<typeof sentManagedFields> {
  try {
    return sentManagedFields(sent, stored);
  } catch (err) {
    if (err instanceof ManagedFieldsError) throw new ApiError(422, 'Invalid', err.message, { causes: [{ reason: 'FieldValueInvalid', message: err.message, field: 'metadata.managedFields' }] });
    throw err;
  }
}

/**
 * One watch event's line, serialized once for every watch that sends it: a change's object is the
 * same instance for every store listener, so 100 watches of pods cost one JSON.stringify per change.
 */
const watchLines = new WeakMap<KObj, Map<string, string>>();
function watchLine(type: string, obj: KObj): string {
  let byType = watchLines.get(obj);
  if (!byType) watchLines.set(obj, (byType = new Map()));
  let line = byType.get(type);
  if (line === undefined) byType.set(type, (line = JSON.stringify({ type, object: obj }) + '\n'));
  return line;
}

const partialObject = (o: KObj): KObj => ({ kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata });

/**
 * Equal as JSON, whatever the key order (a key holding undefined is no key): what a no-op write is.
 * Compared in place, stopping at the first difference: the writes that do change something (most)
 * cost a few comparisons, not two key-sorted serializations of the whole object.
 */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const x = a as KObj, y = b as KObj;
  for (const k of Object.keys(x)) if (x[k] !== undefined && !sameJson(x[k], y[k])) return false;
  for (const k of Object.keys(y)) if (y[k] !== undefined && x[k] === undefined) return false;
  return true;
}

const isObj = (v: unknown): v is KObj => typeof v === 'object' && v !== null && !Array.isArray(v);
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v));
const randomSuffix = (n = 5) => Array.from(randomBytes(n), (b) => 'bcdfghjklmnpqrstvwxz2456789'[b % 27]).join('');

export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const log = createLogger('control-plane', opts.logLevel);
  const host = opts.host ?? '127.0.0.1';
  const dataDir = path.resolve(opts.dataDir);
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const alsoListen = opts.alsoListen ?? [];
  const creds = await ensureCredentials(dataDir, [host, ...alsoListen]);
  const store = openStore(opts.store, dataDir, log, { retain: opts.watchLogRetain, etcdPrefix: opts.etcdPrefix });
  const saTokens = await ServiceAccountTokens.load(path.join(dataDir, 'pki'));
  const nodeClient: NodeClientTls = { caCertPem: creds.caCertPem, clientCertPem: creds.kubeletClientCertPem, clientKeyPem: creds.kubeletClientKeyPem };
  let allocator: ServiceAllocator;
  try {
    allocator = new ServiceAllocator(store, opts.serviceClusterIpRange, opts.serviceNodePortRange);
  } catch (err) {
    store.close();
    throw err;
  }
  const cp = new ApiServer(store, log, creds.adminToken, nodeClient, new WatchLimits({ ...DEFAULT_WATCH_LIMITS, ...opts.watchLimits }), allocator, saTokens);
  // Controllers beside the API, as kube-controller-manager and kube-scheduler sit beside kube-apiserver.
  const events = new EventRecorder(store, log);
  const nodeGraceSeconds = opts.nodeMonitorGracePeriodSeconds ?? 40;
  cp.defaultTolerationSeconds = { notReady: opts.defaultNotReadyTolerationSeconds ?? DEFAULT_TOLERATION_SECONDS.notReady, unreachable: opts.defaultUnreachableTolerationSeconds ?? DEFAULT_TOLERATION_SECONDS.unreachable };
  const client = cp.internalClient(new TokenBucket(opts.kubeApiQps ?? DEFAULT_KUBE_API_QPS, opts.kubeApiBurst ?? DEFAULT_KUBE_API_BURST));
  const makeControllers = () => [
    new ReplicaSetController(store, log, events, client),
    new DeploymentController(store, log, events, client),
    new JobController(store, log, events, client),
    new CronJobController(store, log, events, client),
    new DaemonSetController(store, log, events, client),
    new StatefulSetController(store, log, events, client),
    new HpaController(store, log, events, client, (ns) => cp.metrics.podUsage(ns), (opts.hpaSyncPeriodSeconds ?? 15) * 1000),
    new PersistentVolumeController(store, log, events, client),
    new EndpointsController(store, log, client),
    new EndpointSliceController(store, log, client),
    new EndpointSliceMirroringController(store, log, client),
    new GarbageCollector(store, log, client),
    new Scheduler(store, log, events, { nodeGraceSeconds, bind: (pod, node) => cp.bindPod(pod, node) }),
    new NodeLifecycleController(store, log, events, client, nodeGraceSeconds),
    new DisruptionController(store, log, client),
    new ClusterRoleAggregationController(store, log, client),
    new ServiceAccountsController(store, log, client),
    ...(opts.allocateNodeCidrs ? [new NodeIpamController(store, log, events, client, opts.allocateNodeCidrs)] : []),
    new EventTtlController(store, log, { ttlSeconds: opts.eventTtlSeconds ?? DEFAULT_EVENT_TTL_SECONDS, maxPerNamespace: opts.maxEventsPerNamespace ?? DEFAULT_MAX_EVENTS_PER_NAMESPACE }),
  ];
  let controllers: ReturnType<typeof makeControllers> = [];
  cp.seed();
  // --leader-elect: controllers and the scheduler run only while this process holds the Lease
  // (several control planes on one etcd); a fresh set each time it becomes leader.
  const elector = opts.leaderElect
    ? new LeaderElector(store, client, log, { ...DEFAULT_LEADER_ELECTION, identity: `${os.hostname()}_${process.pid}_${randomUUID().slice(0, 8)}`, ...opts.leaderElect }, {
      startedLeading() {
        controllers = makeControllers();
        for (const c of controllers) c.start();
      },
      stoppedLeading() {
        for (const c of controllers) c.stop();
        controllers = [];
      },
    })
    : undefined;

  // Client certificates are asked for, verified against the cluster CA (nodes authenticate with
  // them), but not required: kubectl's admin kubeconfig uses a bearer token.
  const serveOn = async (address: string, port: number): Promise<https.Server> => {
    const srv = https.createServer({ cert: creds.serverCertPem, key: creds.serverKeyPem, ca: creds.caCertPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
      cp.handle(req, res).catch((err) => {
        log.error({ err }, 'request failed');
        if (!res.headersSent) sendJson(res, 500, new ApiError(500, 'InternalError', `Internal error occurred: ${(err as Error).message}`).toStatus());
        else res.destroy();
      });
    });
    srv.keepAliveTimeout = 65_000;
    // kubectl exec/attach/port-forward: upgrades are spliced through to the pod's node (stream-proxy.ts).
    srv.on('upgrade', (req, socket, head) => streams.handle(req, socket, head));
    await new Promise<void>((resolve, reject) => {
      srv.once('error', (err) => {
        if (errnoCode(err) === 'EADDRINUSE') reject(new UserError(`cannot listen on ${address}:${port}: the port is already in use`, { hint: 'stop whatever uses it (maybe another control plane) or choose another port with --port', cause: err }));
        else if (errnoCode(err) === 'EADDRNOTAVAIL') reject(new UserError(`cannot listen on ${address}: no interface of this host has that address`, { hint: 'create the interface first (stevedore up --nodes N makes the node bridge) or drop the address', cause: err }));
        else reject(err);
      });
      srv.listen(port, address, () => resolve());
    });
    return srv;
  };
  const streams = new StreamProxy(store, log, creds.adminToken, nodeClient, cp.tokenAuthenticator);
  const servers: https.Server[] = [];
  try {
    servers.push(await serveOn(host, opts.port ?? 6443));
    // The same port on every other address (the first listen may have picked a free one).
    const firstAddr = servers[0]!.address();
    const boundPort = typeof firstAddr === 'object' && firstAddr ? firstAddr.port : opts.port ?? 6443;
    for (const address of alsoListen) servers.push(await serveOn(address, boundPort));
  } catch (err) {
    for (const srv of servers) srv.close();
    store.close();
    throw err;
  }
  const server = servers[0]!;
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port ?? 6443;
  const url = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (opts.kubeconfigPath) await writeKubeconfig(opts.kubeconfigPath, kubeconfigText(url, creds.caCertPem, creds.adminToken));
  if (elector) elector.start();
  else {
    controllers = makeControllers();
    for (const c of controllers) c.start();
  }
  log.info({ url, dataDir, store: describeStore(opts.store, dataDir) }, 'control plane listening');

  let closed = false;
  return {
    url,
    adminToken: creds.adminToken,
    caCertPem: creds.caCertPem,
    store,
    isLeader: () => (elector ? elector.isLeader : true),
    async close() {
      if (closed) return;
      closed = true;
      elector?.stop();
      for (const c of controllers) c.stop();
      cp.stop();
      await Promise.all(servers.map((srv) => new Promise<void>((resolve) => {
        srv.close(() => resolve());
        srv.closeAllConnections();
      })));
      store.close();
    },
  };
}

/**
 * Control planes sharing one etcd may seed at the same moment: what another made first stands
 * (kube-apiserver's bootstrap takes AlreadyExists and conflicts the same way).
 */
function unlessAnotherDidIt(write: () => unknown): void {
  try {
    write();
  } catch (err) {
    if (!(err instanceof ConflictError)) throw err;
  }
}

class ApiServer {
  private watchers = new Set<() => void>();

  readonly metrics: MetricsApi;
  /** apiserver_request_total and apiserver_request_duration_seconds, served on /metrics. */
  readonly requestMetrics = new RequestMetrics();
  /** How long new pods tolerate their node being not-ready or unreachable (DefaultTolerationSeconds admission). */
  defaultTolerationSeconds: DefaultTolerationSeconds = DEFAULT_TOLERATION_SECONDS;

  /** Who sent the request being handled, for admission checks deep in create/update (unset for the controllers' own writes). */
  private readonly requester = new AsyncLocalStorage<UserInfo | undefined>();

  /** ServiceAccount bearer tokens, checked against the objects they are bound to. */
  readonly tokenAuthenticator: { authenticate(token: string): UserInfo | undefined };

  /**
   * The store's shared, frozen objects, for the checks that only read: authentication,
   * authorization and admission run on every request, and RBAC's read every binding (no parse each).
   */
  private readonly reader: ObjectReader;

  constructor(private store: Store, private log: Logger, private adminToken: string, private nodeClient: NodeClientTls, private watchLimits: WatchLimits, private serviceAllocator: ServiceAllocator, private saTokens: ServiceAccountTokens) {
    this.reader = { get: (r, ns, name) => store.getShared(r, ns, name), list: (r, ns) => store.listShared(r, ns) };
    this.metrics = new MetricsApi(store, nodeClient, log);
    this.tokenAuthenticator = { authenticate: (token) => saTokens.authenticate(token, store) };
  }

  seed(): void {
    const ns = RESOURCES.find((r) => r.name === 'namespaces')!;
    for (const name of SYSTEM_NAMESPACES) {
      if (!this.store.get('namespaces', '', name)) unlessAnotherDidIt(() => this.store.create('namespaces', '', name, withNewMeta(ns, { metadata: { name, labels: { 'kubernetes.io/metadata.name': name } }, spec: { finalizers: ['kubernetes'] }, status: { phase: 'Active' } }, '')));
    }
    // The default StorageClass, as kind and k3s ship one: a PVC with no PV gets a directory on its pod's node.
    const sc = RESOURCES.find((r) => r.name === 'storageclasses')!;
    if (!this.store.get('storageclasses', '', LOCAL_PATH_CLASS)) unlessAnotherDidIt(() => this.store.create('storageclasses', '', LOCAL_PATH_CLASS, withNewMeta(sc, structuredClone(LOCAL_PATH_STORAGE_CLASS), '')));
    const rc = RESOURCES.find((r) => r.name === 'runtimeclasses')!;
    for (const name of RUNTIME_CLASSES) {
      if (!this.store.get('runtimeclasses', '', name)) unlessAnotherDidIt(() => this.store.create('runtimeclasses', '', name, withNewMeta(rc, { metadata: { name }, handler: name }, '')));
    }
    this.seedRbac();
  }

  /** kube-apiserver's RBAC bootstrap: the default ClusterRoles and ClusterRoleBindings, made or reconciled at start. */
  private seedRbac(): void {
    for (const [resource, defaults] of [['clusterroles', DEFAULT_CLUSTER_ROLES], ['clusterrolebindings', DEFAULT_CLUSTER_ROLE_BINDINGS]] as const) {
      const r = RESOURCES.find((x) => x.name === resource)!;
      for (const wanted of defaults) {
        const name = wanted.metadata.name;
        const stored = this.store.get(resource, '', name);
        if (!stored) unlessAnotherDidIt(() => this.store.create(resource, '', name, withNewMeta(r, structuredClone(wanted), '')));
        else {
          const next = reconcileDefault(stored, wanted);
          if (next) unlessAnotherDidIt(() => this.store.update(resource, '', name, next, stored.metadata.resourceVersion));
        }
      }
    }
  }

  /** Ends every open watch. */
  stop(): void {
    for (const w of this.watchers) w();
    this.watchers.clear();
  }

  // ---------------------------------------------------------------- HTTP

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', 'https://localhost');
    const p = u.pathname.replace(/\/+$/, '') || '/';
    const method = req.method ?? 'GET';
    this.log.debug({ method, url: req.url }, 'request');
    const started = performance.now();
    res.once('close', () => this.requestMetrics.observe(requestLabels(method, u, String(req.headers['content-type'] ?? '')), res.statusCode, (performance.now() - started) / 1000));
    try {
      if (['/healthz', '/livez', '/readyz'].includes(p)) {
        if (p === '/readyz') {
          // Not ready while the store cannot serve (on etcd: the control plane lost its watch), so a balancer in front
          // of several control planes (`up --control-planes 3`) sends clients elsewhere.
          try {
            this.store.get('namespaces', '', 'default');
          } catch (err) {
            res.writeHead(503, { 'Content-Type': 'text/plain' });
            res.end(`[-]store failed: ${(err as Error).message}\nreadyz check failed`);
            return;
          }
        }
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end('ok');
        return;
      }
      if (p === '/version') return sendJson(res, 200, KUBE_VERSION);
      const authenticated = authenticate(req, this.adminToken, this.tokenAuthenticator);
      if (!authenticated) throw new ApiError(401, 'Unauthorized', 'Unauthorized');
      const user = impersonate(req.headers, authenticated, this.reader);
      await this.requester.run(user, () => this.handleAuthenticated(req, res, u, p, method, user));
    } catch (err) {
      if (err instanceof ApiError) {
        if (!res.headersSent) sendJson(res, err.code, err.toStatus(), err.headers);
        return;
      }
      throw err;
    }
  }

  private async handleAuthenticated(req: IncomingMessage, res: ServerResponse, u: URL, p: string, method: string, user: UserInfo): Promise<void> {
    {
      // Requests outside the resource paths are authorized by path (system:discovery and friends).
      const resourcePath = /^\/api\/v1\/./.test(p) || /^\/apis\/[^/]+\/[^/]+\/./.test(p);
      if (!resourcePath) authorize(user, { verb: method === 'HEAD' ? 'get' : method.toLowerCase(), path: p }, this.reader);
      if (p === '/metrics') {
        res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end(this.requestMetrics.render());
        return;
      }
      if (p === '/.well-known/openid-configuration') return sendJson(res, 200, this.saTokens.openidConfiguration());
      if (p === '/openid/v1/jwks') return sendJson(res, 200, this.saTokens.jwks(), { 'Content-Type': 'application/jwk-set+json' });
      if (p === '/api') return sendJson(res, 200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: `${req.socket.localAddress}:${req.socket.localPort}` }] });
      if (p === '/apis') return sendJson(res, 200, this.apiGroupList());
      if (p === '/openapi/v3') return (await this.openApiRoot()).send(req, res);
      if (p.startsWith('/openapi/v3/')) {
        // A document asked for by its hash never changes: clients may keep it (kube-apiserver says the same).
        const caching: Record<string, string> = u.searchParams.has('hash') ? { 'Cache-Control': 'public, immutable', Expires: new Date(Date.now() + 365 * 86_400_000).toUTCString() } : { 'Cache-Control': 'no-cache, private' };
        return (await this.openApiV3Document(p.slice('/openapi/v3/'.length))).send(req, res, caching);
      }
      if (p === '/openapi/v2') {
        const representation = negotiateOpenApiV2(req.headers.accept);
        if (!representation) throw new ApiError(406, 'NotAcceptable', `/openapi/v2 is served as ${OPENAPI_V2_JSON}, ${OPENAPI_V2_PROTOBUF} or ${OPENAPI_V2_PROTOBUF_OLD}; ask for one of them in Accept`);
        return (await this.openApiV2(representation)).send(req, res);
      }
      const parts = p.split('/').filter(Boolean).map(decodeURIComponent);
      let group: string, version: string, rest: string[];
      if (parts[0] === 'api' && parts[1] === 'v1') [group, version, rest] = ['', 'v1', parts.slice(2)];
      else if (parts[0] === 'apis' && parts.length >= 3) [group, version, rest] = [parts[1]!, parts[2]!, parts.slice(3)];
      else if (parts[0] === 'apis' && parts.length === 2) {
        const g = this.apiGroupList().groups.find((x: KObj) => x.name === parts[1]);
        if (!g) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
        return sendJson(res, 200, { kind: 'APIGroup', apiVersion: 'v1', ...g });
      } else throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
      // kubectl autoscale creates autoscaling/v1 HPAs with its typed client; they are converted and kept as v2 (the
      // one version served), so that create lands on the v2 resource. Reads of v1 are not served.
      let respondAs: ((obj: KObj) => KObj) | undefined;
      if (group === 'autoscaling' && version === 'v1' && method === 'POST' && rest.length === 3 && rest[0] === 'namespaces' && rest[2] === 'horizontalpodautoscalers') {
        version = 'v2';
        respondAs = hpaV2ToV1; // the typed client decodes the answer as the version it sent
      }
      if (rest.length === 0) {
        const list = this.resourceList(group, version);
        if (!list) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
        return sendJson(res, 200, list);
      }
      let watch = parseBool(u.searchParams.get('watch'));
      if (rest[0] === 'watch') {
        watch = true;
        rest = rest.slice(1);
      }
      // namespaces/{ns}/{resource}/... vs namespaces/{name}[/status]
      let ns = '';
      if (rest[0] === 'namespaces' && rest.length >= 3 && !(rest.length === 3 && ['status', 'finalize'].includes(rest[2]!))) {
        ns = rest[1]!;
        rest = rest.slice(2);
      }
      if (group === METRICS_GROUP && version === METRICS_VERSION && method === 'GET' && !watch && rest.length <= 2) {
        const [resource, name] = rest as [string, string | undefined];
        authorize(user, { verb: name === undefined ? 'list' : 'get', resource, group, namespace: ns, name }, this.reader);
        return sendJson(res, 200, await this.metrics.get(resource, ns, name, u.searchParams));
      }
      const r = findResource(group, version, rest[0]!);
      if (!r) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
      if (r.namespaced !== (ns !== '') && !(r.namespaced && rest.length === 1 && ['GET'].includes(method))) {
        throw new ApiError(404, 'NotFound', r.namespaced ? `the server could not find the requested resource (${r.name} must be addressed under /namespaces/{namespace}/)` : 'the server could not find the requested resource');
      }
      const name = rest[1];
      const sub = rest[2];
      if (rest.length > 3 || (sub && !r.subresources.includes(sub))) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
      // A Namespace is in itself, for authorization (kube's RequestInfo): a RoleBinding there may grant reading it.
      const attrs: RequestAttributes = { verb: verbOf(method, name !== undefined, watch), resource: r.name, subresource: sub, group: r.group, namespace: r.name === 'namespaces' && name ? name : ns, name };
      // A list or watch of one object (fieldSelector metadata.name=X) is authorized for that name, so resourceNames rules cover it.
      if (!name && (attrs.verb === 'list' || attrs.verb === 'watch')) {
        const one = /(?:^|,)metadata\.name==?([^,]+)(?:,|$)/.exec(u.searchParams.get('fieldSelector') ?? '');
        if (one) attrs.name = one[1];
      }
      authorize(user, attrs, this.reader);
      await this.dispatch(req, res, u.searchParams, method, r, ns, name, sub, watch, user, attrs, respondAs);
    }
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse, q: Query, method: string, r: ResourceDef, ns: string, name: string | undefined, sub: string | undefined, watch: boolean, user: UserInfo, attrs: RequestAttributes, respondAs?: (obj: KObj) => KObj): Promise<void> {
    const accept = String(req.headers.accept ?? '');
    const table = /as=Table/.test(accept) && /g=meta\.k8s\.io/.test(accept);
    // client-go's metadata client: objects reduced to their metadata.
    const partial = !table && /as=PartialObjectMetadata/.test(accept) && /g=meta\.k8s\.io/.test(accept);
    const include = (q.get('includeObject') ?? 'Metadata') as IncludeObject;
    const dryRun = dryRunOf(q);
    const manager = fieldManagerOf(q, req.headers['user-agent']);
    if (sub !== 'log') negotiate(accept); // logs are text, whatever the client accepts
    if (r.virtual) {
      if (method !== 'POST' || name) throw new ApiError(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource (${r.name} only take a create)`);
      const body = parseBody(await readBody(req), String(req.headers['content-type'] ?? ''));
      return sendJson(res, 201, reviewRequest(r, ns, body, user, this.store));
    }
    if (!name) {
      if (method === 'GET' && watch) return this.watch(req, res, q, r, ns, user, table, include, partial);
      if (method === 'GET') return this.list(res, q, r, ns, table, include, partial);
      if (method === 'POST') {
        if (r.namespaced && !ns) throw new ApiError(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`);
        const body = parseBody(await readBody(req), String(req.headers['content-type'] ?? ''));
        admitCreate(user, attrs, body, this.reader);
        const { obj, warnings } = this.create(r, ns, body, q, dryRun, manager);
        return sendJson(res, 201, respondAs ? respondAs(obj) : obj, warnings);
      }
      throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
    }
    if (method === 'GET' && watch && !sub) {
      q.set('fieldSelector', [q.get('fieldSelector'), `metadata.name=${name}`].filter(Boolean).join(','));
      return this.watch(req, res, q, r, ns, user, table, include, partial);
    }
    if (sub === 'log') {
      if (method !== 'GET') throw new ApiError(405, 'MethodNotAllowed', 'pods/log only supports GET');
      return this.proxyLogs(req, res, q, ns, name);
    }
    if ((STREAM_SUBRESOURCES as readonly string[]).includes(sub ?? '')) {
      throw new ApiError(400, 'BadRequest', `Upgrade request required: pods/${sub} streams over a connection upgrade (WebSocket or SPDY)`);
    }
    if (sub === 'binding') {
      if (method !== 'POST') throw new ApiError(405, 'MethodNotAllowed', 'pods/binding only supports POST');
      const body = parseBody(await readBody(req), String(req.headers['content-type'] ?? ''));
      return sendJson(res, 201, this.bind(ns, name, body, dryRun));
    }
    if (sub === 'eviction') {
      if (method !== 'POST') throw new ApiError(405, 'MethodNotAllowed', 'pods/eviction only supports POST');
      const body = parseBody(await readBody(req), String(req.headers['content-type'] ?? ''));
      return sendJson(res, 201, this.evict(ns, name, body, dryRun));
    }
    if (sub === 'scale') return this.scale(req, res, q, method, r, ns, name, dryRun);
    if (sub === 'token') {
      if (method !== 'POST') throw new ApiError(405, 'MethodNotAllowed', 'serviceaccounts/token only supports POST (a TokenRequest)');
      const body = parseBody(await readBody(req), String(req.headers['content-type'] ?? ''));
      admitTokenRequest(user, ns, name, body, this.store);
      return sendJson(res, 201, tokenRequest(ns, name, body, this.store, this.saTokens, dryRun));
    }
    switch (method) {
      case 'GET': {
        // Only serialized: the shared object needs no copy.
        const obj = this.store.getShared(r.name, ns, name);
        if (!obj) throw notFound(r, name);
        if (table) return sendJson(res, 200, toTable(r.name, [obj], obj.metadata.resourceVersion, include));
        return sendJson(res, 200, partial ? partialObject(obj) : obj);
      }
      case 'PUT': {
        const body = parseBody(await readBody(req), String(req.headers['content-type'] ?? ''));
        const cur = this.store.get(r.name, ns, name);
        if (!cur) throw notFound(r, name);
        if (isObj(body.metadata) && body.metadata.name !== undefined && body.metadata.name !== name) throw badRequest(`the name of the object (${body.metadata.name}) does not match the name on the URL (${name})`);
        const warnings = this.checkFields(r, body, q);
        const { obj } = this.update(r, ns, name, cur, body, sub, body.metadata?.resourceVersion, dryRun, { manager });
        return sendJson(res, 200, obj, warnings);
      }
      case 'PATCH': {
        const ct = String(req.headers['content-type'] ?? '').split(';')[0]!.trim();
        if (ct === 'application/apply-patch+yaml') return this.applyPatch(req, res, q, r, ns, name, sub, dryRun);
        if (q.get('force') !== null) throw invalidPatchOptions('force', 'FieldValueForbidden', 'Forbidden: may not be specified for non-apply patch');
        const patch = parseBody(await readBody(req), 'application/json');
        const cur = this.store.get(r.name, ns, name);
        if (!cur) throw notFound(r, name);
        let next: KObj;
        try {
          if (ct === 'application/merge-patch+json') next = mergePatch(cur, patch);
          else if (ct === 'application/strategic-merge-patch+json') next = strategicMergePatch(cur, patch, r.mergeKeys);
          else if (ct === 'application/json-patch+json') next = jsonPatch(cur, patch);
          else throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml`);
        } catch (err) {
          if (err instanceof PatchError) throw new ApiError(422, 'Invalid', err.message);
          throw err;
        }
        if (!isObj(next)) throw new ApiError(422, 'Invalid', 'the patch did not produce an object');
        const warnings = this.checkFields(r, next, q);
        const expect = next.metadata?.resourceVersion !== cur.metadata.resourceVersion ? next.metadata?.resourceVersion : undefined;
        const { obj } = this.update(r, ns, name, cur, next, sub, expect, dryRun, { manager });
        return sendJson(res, 200, obj, warnings);
      }
      case 'DELETE': {
        const buf = await readBody(req);
        const body = buf.length ? parseBody(buf, 'application/json') : {};
        const grace = q.get('gracePeriodSeconds') ?? body.gracePeriodSeconds;
        const policy = propagationPolicyOf(q, body);
        return sendJson(res, 200, this.delete(r, ns, name, grace === undefined || grace === null ? undefined : Number(grace), body.preconditions, dryRun, policy));
      }
      default:
        throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
    }
  }

  // ---------------------------------------------------------------- discovery

  private apiGroupList(): KObj {
    const groups = [...new Set(RESOURCES.filter((r) => r.group).map((r) => r.group))];
    return {
      kind: 'APIGroupList',
      apiVersion: 'v1',
      groups: [...groups.map((g) => {
        const v = RESOURCES.find((r) => r.group === g)!.version;
        return { name: g, versions: [{ groupVersion: `${g}/${v}`, version: v }], preferredVersion: { groupVersion: `${g}/${v}`, version: v } };
      }), metricsDiscovery.group],
    };
  }

  private resourceList(group: string, version: string): KObj | undefined {
    if (group === METRICS_GROUP && version === METRICS_VERSION) return metricsDiscovery.resources;
    const rs = RESOURCES.filter((r) => r.group === group && r.version === version);
    if (!rs.length) return undefined;
    const verbs = () => ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'];
    const resources: KObj[] = [];
    for (const r of rs) {
      resources.push({ name: r.name, singularName: r.singular, namespaced: r.namespaced, kind: r.kind, verbs: r.verbs ?? verbs(), ...(r.shortNames ? { shortNames: r.shortNames } : {}), ...(r.categories ? { categories: r.categories } : {}), storageVersionHash: Buffer.from(r.name).toString('base64').slice(0, 11) });
      for (const s of r.subresources) {
        // kubectl scale finds the Scale kind and its group-version here
        if (s === 'scale') {
          resources.push({ name: `${r.name}/scale`, singularName: '', namespaced: r.namespaced, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] });
          continue;
        }
        // kubectl drain evicts through policy/v1 only when discovery names the group and version here.
        if (s === 'eviction') {
          resources.push({ name: `${r.name}/eviction`, singularName: '', namespaced: r.namespaced, group: 'policy', version: 'v1', kind: 'Eviction', verbs: ['create'] });
          continue;
        }
        const streamKind: Record<string, string> = { exec: 'PodExecOptions', attach: 'PodAttachOptions', portforward: 'PodPortForwardOptions' };
        if (s === 'token') {
          resources.push({ name: `${r.name}/token`, singularName: '', namespaced: r.namespaced, group: 'authentication.k8s.io', version: 'v1', kind: 'TokenRequest', verbs: ['create'] });
          continue;
        }
        const kind = s === 'binding' ? 'Binding' : streamKind[s] ?? r.kind;
        const v = s === 'log' ? ['get'] : s === 'binding' ? ['create'] : streamKind[s] ? ['create', 'get'] : ['get', 'patch', 'update'];
        resources.push({ name: `${r.name}/${s}`, singularName: '', namespaced: r.namespaced, kind, verbs: v });
      }
    }
    return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group ? `${group}/${version}` : version, resources };
  }

  /** Each group-version's document with the hash of its content (kubectl caches documents by it). */
  private openApiRootDoc: Promise<CachedRepresentation> | undefined;
  private openApiRoot(): Promise<CachedRepresentation> {
    this.openApiRootDoc ??= (async () => {
      const paths: KObj = {};
      // The hash is the document's ETag, unquoted (kube-apiserver's too).
      for (const gv of this.openApiGroupVersions()) paths[gv] = { serverRelativeURL: `/openapi/v3/${gv}?hash=${(await this.openApiV3Document(gv)).etag.slice(1, -1)}` };
      return jsonRepresentation({ paths });
    })();
    return this.openApiRootDoc;
  }

  /** `api/v1`, `apis/apps/v1`…: the group-versions with a document. */
  private openApiGroupVersions(): string[] {
    return [...new Set(RESOURCES.filter((r) => !r.virtual).map((r) => (r.group ? `apis/${r.group}/${r.version}` : 'api/v1')))];
  }

  /** The v3 documents, each made once, on first ask (the served kinds do not change while the server runs). */
  private openApiV3Documents = new Map<string, Promise<CachedRepresentation>>();
  private async openApiV3Document(gvPath: string): Promise<CachedRepresentation> {
    if (!this.openApiGroupVersions().includes(gvPath)) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    let doc = this.openApiV3Documents.get(gvPath);
    if (!doc) {
      doc = this.openApiGroupVersion(gvPath).then(jsonRepresentation);
      this.openApiV3Documents.set(gvPath, doc);
    }
    return doc;
  }

  /**
   * /openapi/v2: one Swagger 2.0 document converted from the v3 documents of every group-version
   * (openapi-v2.ts), as JSON, and as gnostic's protobuf (what client-go asks for) made from that
   * JSON on first ask; both carry the JSON's ETag.
   */
  private openApiV2Json: Promise<CachedRepresentation> | undefined;
  private openApiV2Protobuf: Promise<CachedRepresentation> | undefined;
  private openApiV2(representation: 'json' | 'protobuf'): Promise<CachedRepresentation> {
    this.openApiV2Json ??= (async () => {
      const v3 = await Promise.all(this.openApiGroupVersions().map((gv) => this.openApiGroupVersion(gv)));
      return jsonRepresentation(openApiV2FromV3(v3, { title: 'Kubernetes (stevedore control plane)', version: KUBE_VERSION.gitVersion }));
    })();
    if (representation === 'json') return this.openApiV2Json;
    this.openApiV2Protobuf ??= this.openApiV2Json.then((json) => new CachedRepresentation(encodeOpenApiV2(JSON.parse(json.body.toString('utf8'))), OPENAPI_V2_PROTOBUF, json.etag, json.lastModified));
    return this.openApiV2Protobuf;
  }

  /**
   * The OpenAPI v3 document of a group-version: the schemas of its kinds (openapi.ts; what
   * `kubectl explain` reads) and paths whose PATCH operations declare the fieldValidation query
   * parameter, so `kubectl apply` (validate=strict) lets the server validate instead of
   * downloading the protobuf OpenAPI v2 schema. PATCH declares no request body on purpose: kubectl
   * then computes strategic merge patches from its built-in Go types, not from these schemas
   * (which lack the patch strategies and merge keys).
   */
  private async openApiGroupVersion(gvPath: string): Promise<KObj> {
    const [prefix, a, b] = gvPath.split('/');
    const group = prefix === 'api' ? '' : a!;
    const version = prefix === 'api' ? a! : b!;
    const rs = RESOURCES.filter((r) => r.group === group && r.version === version && !r.virtual);
    if (!rs.length) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    const base = group ? `/apis/${group}/${version}` : '/api/v1';
    const paths: KObj = {};
    for (const r of rs) {
      const gvk = { group, version, kind: r.kind };
      const params = ['dryRun', 'fieldManager', 'fieldValidation', 'force'].map((n) => ({ name: n, in: 'query', schema: { type: n === 'force' ? 'boolean' : 'string', uniqueItems: true } }));
      const item = r.namespaced ? `${base}/namespaces/{namespace}/${r.name}/{name}` : `${base}/${r.name}/{name}`;
      paths[item] = {
        get: { operationId: `read${r.kind}`, 'x-kubernetes-action': 'get', 'x-kubernetes-group-version-kind': gvk, responses: { '200': { description: 'OK' } } },
        patch: { operationId: `patch${r.kind}`, 'x-kubernetes-action': 'patch', 'x-kubernetes-group-version-kind': gvk, parameters: params, responses: { '200': { description: 'OK' } } },
      };
      const coll = r.namespaced ? `${base}/namespaces/{namespace}/${r.name}` : `${base}/${r.name}`;
      paths[coll] = { post: { operationId: `create${r.kind}`, 'x-kubernetes-action': 'post', 'x-kubernetes-group-version-kind': gvk, parameters: params.slice(0, 3), responses: { '201': { description: 'Created' } } } };
    }
    const kinds = RESOURCES.filter((r) => !r.virtual).map((r) => ({ group: r.group, version: r.version, kind: r.kind }));
    const schemas = await openApiSchemas(kinds, group ? `${group}/${version}` : version);
    return { openapi: '3.0.0', info: { title: 'Kubernetes (stevedore control plane)', version: KUBE_VERSION.gitVersion }, paths, components: { schemas } };
  }

  // ---------------------------------------------------------------- read

  private selectors(q: Query, r: ResourceDef) {
    try {
      return { labels: parseLabelSelector(q.get('labelSelector')), fields: parseFieldSelector(q.get('fieldSelector'), r.name, r.kind) };
    } catch (err) {
      if (err instanceof SelectorError) throw badRequest(err.message);
      throw err;
    }
  }

  private list(res: ServerResponse, q: Query, r: ResourceDef, ns: string, table: boolean, include: IncludeObject, partial = false): void {
    const sel = this.selectors(q, r);
    const limitText = q.get('limit');
    if (limitText !== null && !/^\d+$/.test(limitText)) throw badRequest(`invalid limit "${limitText}": must be a non-negative integer`);
    const rvText = q.get('resourceVersion');
    const match = q.get('resourceVersionMatch');
    if (match !== null && !['Exact', 'NotOlderThan'].includes(match)) throw badRequest(`resourceVersionMatch: Unsupported value: "${match}": supported values: "Exact", "NotOlderThan"`);
    if (match !== null && !rvText) throw badRequest('resourceVersionMatch is forbidden unless resourceVersion is provided');
    if (rvText && !/^\d+$/.test(rvText)) throw badRequest(`invalid resourceVersion "${rvText}"`);
    if (q.get('continue') && match) throw badRequest('specifying resource version match is not allowed when using continue');
    if (rvText && Number(rvText) > this.store.currentRv && match !== null) {
      throw new ApiError(504, 'Timeout', `Too large resource version: ${rvText}, current resource version: ${this.store.currentRv}`);
    }
    const page = listPage(this.store, r.name, ns || undefined, { limit: Number(limitText ?? 0), cont: q.get('continue') ?? undefined, exactRv: match === 'Exact' ? Number(rvText) : undefined },
      (o) => matchLabels(o, sel.labels) && matchFields(o, sel.fields));
    const rv = String(page.rv);
    const listMeta = { resourceVersion: rv, ...(page.continueToken ? { continue: page.continueToken, remainingItemCount: page.remainingItemCount } : {}) };
    if (table) return sendJson(res, 200, { ...toTable(r.name, page.items, rv, include), metadata: listMeta });
    if (partial) return sendJson(res, 200, { kind: 'PartialObjectMetadataList', apiVersion: 'meta.k8s.io/v1', metadata: listMeta, items: page.items.map(partialObject) });
    sendJson(res, 200, { kind: `${r.kind}List`, apiVersion: apiVersionOf(r), metadata: listMeta, items: page.items });
  }

  private watch(req: IncomingMessage, res: ServerResponse, q: Query, r: ResourceDef, ns: string, user: UserInfo, table: boolean, include: IncludeObject, partial = false): void {
    const askedTimeout = q.get('timeoutSeconds');
    if (askedTimeout !== null && !/^\d+$/.test(askedTimeout)) throw badRequest(`invalid timeoutSeconds "${askedTimeout}": must be a non-negative integer`);
    if (q.get('sendInitialEvents') !== null) {
      if (q.get('resourceVersionMatch') !== 'NotOlderThan') throw invalidWatch('sendInitialEvents', 'sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan');
      if (parseBool(q.get('sendInitialEvents')) && !parseBool(q.get('allowWatchBookmarks'))) throw invalidWatch('allowWatchBookmarks', 'allowWatchBookmarks must be true when sendInitialEvents is true');
    }
    const slot = this.watchLimits.acquire(user.name);
    if ('refused' in slot) throw new ApiError(429, 'TooManyRequests', slot.refused, undefined, { 'Retry-After': '1' });
    const sel = this.selectors(q, r);
    const matches = (o: KObj | undefined) => !!o && (!ns || o.metadata?.namespace === ns) && matchLabels(o, sel.labels) && matchFields(o, sel.fields);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    let first = true;
    const send = (type: string, obj: KObj) => {
      let out = obj;
      if (table && type !== 'ERROR' && type !== 'BOOKMARK') {
        out = toTable(r.name, [obj], obj.metadata.resourceVersion, include, first);
        first = false;
      } else if (partial && type !== 'ERROR') out = partialObject(obj);
      res.write(out === obj ? watchLine(type, obj) : JSON.stringify({ type, object: out }) + '\n');
    };
    const emit = (c: Change) => {
      const now_ = matches(c.object), before = matches(c.prev);
      if (c.type === 'ADDED' && now_) send('ADDED', c.object);
      else if (c.type === 'DELETED' && before) send('DELETED', c.object);
      else if (c.type === 'MODIFIED') {
        if (now_ && before) send('MODIFIED', c.object);
        else if (now_) send('ADDED', c.object);
        else if (before) send('DELETED', { ...c.prev, metadata: { ...c.prev!.metadata, resourceVersion: c.object.metadata.resourceVersion } });
      }
    };
    const rvParam = q.get('resourceVersion');
    // The streaming list (Kubernetes 1.27+): the current objects as ADDED, then a bookmark saying they are all there.
    const initialEvents = q.get('sendInitialEvents');
    if (initialEvents !== null && parseBool(initialEvents)) {
      for (const o of this.store.listShared(r.name, ns || undefined)) if (matches(o)) send('ADDED', o);
      send('BOOKMARK', { kind: r.kind, apiVersion: apiVersionOf(r), metadata: { resourceVersion: String(this.store.currentRv), annotations: { 'k8s.io/initial-events-end': 'true' } } });
    } else if (!rvParam || rvParam === '0') {
      for (const o of this.store.listShared(r.name, ns || undefined)) if (matches(o)) send('ADDED', o);
    } else {
      const from = Number(rvParam);
      if (!Number.isInteger(from) || from < 0) {
        res.end(JSON.stringify({ type: 'ERROR', object: badRequest(`invalid resourceVersion "${rvParam}"`).toStatus() }) + '\n');
        slot.release();
        return;
      }
      try {
        for (const c of this.store.changesSince(r.name, from)) emit(c);
      } catch (err) {
        if (!(err instanceof GoneError)) throw err;
        res.end(JSON.stringify({ type: 'ERROR', object: new ApiError(410, 'Expired', `too old resource version: ${from} (${this.store.oldestWatchableRv})`).toStatus() }) + '\n');
        slot.release();
        return;
      }
    }
    const unsub = this.store.subscribe((c) => {
      if (c.resource === r.name) emit(c);
    });
    const timers: NodeJS.Timeout[] = [];
    if (parseBool(q.get('allowWatchBookmarks'))) {
      timers.push(setInterval(() => send('BOOKMARK', { kind: r.kind, apiVersion: apiVersionOf(r), metadata: { resourceVersion: String(this.store.currentRv) } }), 15_000));
    }
    const timeout = this.watchLimits.timeoutSeconds(askedTimeout === null ? undefined : Number(askedTimeout));
    const end = () => {
      slot.release();
      unsub();
      this.watchers.delete(end);
      for (const t of timers) clearTimeout(t);
      if (!res.writableEnded) res.end();
    };
    timers.push(setTimeout(end, timeout * 1000));
    this.watchers.add(end);
    req.on('close', end);
    res.on('close', end);
  }

  // ---------------------------------------------------------------- write

  /** fieldValidation: Strict rejects unknown fields (400), Warn (default) and Ignore drop them. */
  private checkFields(r: ResourceDef, obj: KObj, q: Query): Record<string, string> {
    const mode = q.get('fieldValidation') ?? 'Warn';
    if (!['Strict', 'Warn', 'Ignore'].includes(mode)) throw badRequest(`fieldValidation parameter unsupported: ${mode}; use one of Strict, Warn, Ignore`);
    const unknown = unknownFields(obj, SCHEMAS[r.kind]);
    if (!unknown.length) return {};
    if (mode === 'Strict') {
      const list = unknown.map((f) => `unknown field "${f}"`).join(', ');
      throw badRequest(`${r.kind} in version "${r.version}" cannot be handled as a ${r.kind}: strict decoding error: ${list}`);
    }
    dropFields(obj, unknown);
    return mode === 'Warn' ? { Warning: unknown.map((f) => `299 - "unknown field \\"${f}\\""`).join(', ') } : {};
  }

  /** Metadata and the kind's own checks (and, for an update of the main resource, its immutable fields). */
  private validate(r: ResourceDef, obj: KObj, cur?: KObj): void {
    const causes: Cause[] = [];
    const strategy = strategyFor(r.kind);
    validateMeta(obj.metadata ?? {}, r.kind, r.namespaced, causes);
    strategy.validate?.(obj, causes);
    if (cur) strategy.validateUpdate?.(obj, cur, causes);
    if (causes.length) throw invalid(r, String(obj.metadata?.name ?? ''), causes);
  }

  private create(r: ResourceDef, ns: string, sent: unknown, q: Query, dryRun: boolean, manager?: string): { obj: KObj; warnings: Record<string, string> } {
    if (!isObj(sent)) throw badRequest(`the request body must be a ${r.kind} object`);
    const body = r.kind === 'HorizontalPodAutoscaler' && sent.apiVersion === 'autoscaling/v1' ? hpaV1ToV2(sent) : sent;
    if (body.kind !== undefined && body.kind !== r.kind) throw badRequest(`the API version in the data (${body.apiVersion}) does not match the expected API version (${apiVersionOf(r)}) or kind ${body.kind} is not ${r.kind}`);
    if (body.apiVersion !== undefined && body.apiVersion !== apiVersionOf(r)) throw badRequest(`the API version in the data (${body.apiVersion}) does not match the expected API version (${apiVersionOf(r)})`);
    const warnings = this.checkFields(r, body, q);
    const meta: KObj = isObj(body.metadata) ? body.metadata : {};
    if (r.namespaced && meta.namespace && meta.namespace !== ns) throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    if (!meta.name && meta.generateName) meta.name = `${meta.generateName}${randomSuffix()}`;
    if (!meta.name) throw invalid(r, '', [{ field: 'metadata.name', reason: 'FieldValueRequired', message: 'Required value: name or generateName is required' }]);
    if (r.namespaced && !this.store.getShared('namespaces', '', ns)) throw new ApiError(404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' });
    if (r.namespaced) {
      const nsObj = this.store.getShared('namespaces', '', ns);
      if (nsObj?.status?.phase === 'Terminating') throw new ApiError(403, 'Forbidden', `${r.name} "${meta.name}" is forbidden: unable to create new content in namespace ${ns} because it is being terminated`);
    }
    const { resourceVersion: _rv, uid: _uid, deletionTimestamp: _dt, deletionGracePeriodSeconds: _dg, ...keepMeta } = meta;
    const obj = withNewMeta(r, { ...body, metadata: keepMeta }, ns);
    strategyFor(r.kind).prepareForCreate?.(obj);
    // Field ownership (managedFields): the creating manager owns what it sent, unless the body names owners itself.
    if (manager !== undefined) {
      const given = managedFieldsOf(keepMeta.managedFields, undefined);
      const managed = 'keep' in given ? managedForCreate(obj, manager, apiVersionOf(r), !!strategyFor(r.kind).statusSubresource) : given.replace;
      if (managed) obj.metadata.managedFields = managed;
      else delete obj.metadata.managedFields;
    }
    // Mutating admission after field ownership, as kube-apiserver orders them: defaults it adds belong to no manager.
    if (r.kind === 'Pod') admitDefaultTolerations(obj, this.defaultTolerationSeconds);
    if (r.kind === 'PersistentVolumeClaim') admitDefaultStorageClass(obj, this.store.listShared('storageclasses'));
    this.validate(r, obj);
    admitRbacWrite(this.requester.getStore(), r.kind, obj, undefined, this.store);
    if (r.kind === 'Service') this.allocate(r, obj);
    if (this.store.getShared(r.name, ns, meta.name)) throw new ApiError(409, 'AlreadyExists', `${r.name}${r.group ? '.' + r.group : ''} "${meta.name}" already exists`, { name: meta.name, group: r.group, kind: r.name });
    if (dryRun) return { obj: { ...obj, metadata: { ...obj.metadata, resourceVersion: '' } }, warnings };
    try {
      return { obj: this.store.create(r.name, ns, meta.name, obj), warnings };
    } catch (err) {
      if (err instanceof ConflictError) throw new ApiError(409, 'AlreadyExists', `${r.name} "${meta.name}" already exists`, { name: meta.name, kind: r.name });
      throw err;
    }
  }

  /** A Service's cluster IP and node ports (given or free ones), or a 422 naming what cannot be had. */
  private allocate(r: ResourceDef, svc: KObj, cur?: KObj): void {
    const causes = this.serviceAllocator.assign(svc, cur);
    if (causes.length) throw invalid(r, String(svc.metadata?.name ?? ''), causes);
  }

  /** Update main resource or status subresource: `next` is the full desired object. */
  /**
   * `owner`: who writes, for managedFields. `manager`: an Update by that manager; `applied`: the
   * object comes from server-side apply, which set managedFields itself; none (the controllers):
   * managedFields stay as they are.
   */
  private update(r: ResourceDef, ns: string, name: string, cur: KObj, next: KObj, sub: string | undefined, expectRv: string | undefined, dryRun: boolean, owner?: { manager?: string; applied?: boolean }): { obj: KObj } {
    if (!isObj(next)) throw badRequest(`the request body must be a ${r.kind} object`);
    const nextMeta: KObj = isObj(next.metadata) ? next.metadata : {};
    let obj: KObj;
    if (sub === 'status') {
      obj = { ...clone(cur), status: next.status ?? {} };
      if (isObj(nextMeta.labels) || isObj(nextMeta.annotations)) obj.metadata = { ...obj.metadata, labels: nextMeta.labels ?? obj.metadata.labels, annotations: nextMeta.annotations ?? obj.metadata.annotations };
      if (obj.metadata.labels === undefined) delete obj.metadata.labels;
      if (obj.metadata.annotations === undefined) delete obj.metadata.annotations;
    } else {
      obj = { ...clone(next), kind: r.kind, apiVersion: apiVersionOf(r) };
      obj.metadata = { ...nextMeta, name: cur.metadata.name, uid: cur.metadata.uid, creationTimestamp: cur.metadata.creationTimestamp, generation: cur.metadata.generation ?? 1 };
      if (r.namespaced) obj.metadata.namespace = ns;
      for (const k of ['deletionTimestamp', 'deletionGracePeriodSeconds']) {
        if (cur.metadata[k] !== undefined) obj.metadata[k] = cur.metadata[k];
        else delete obj.metadata[k];
      }
      const strategy = strategyFor(r.kind);
      if (strategy.statusSubresource) obj.status = cur.status;
      strategy.prepareForUpdate?.(obj, cur);
      if (JSON.stringify(obj.spec) !== JSON.stringify(cur.spec)) obj.metadata.generation = (cur.metadata.generation ?? 1) + 1;
    }
    if (owner?.applied) {
      if (nextMeta.managedFields) obj.metadata.managedFields = nextMeta.managedFields;
      else delete obj.metadata.managedFields;
    } else if (owner?.manager !== undefined) {
      const given = managedFieldsOf(nextMeta.managedFields, cur.metadata.managedFields);
      const base = 'keep' in given ? cur.metadata.managedFields : given.replace;
      const managed = managedAfterUpdate({ ...cur, metadata: { ...cur.metadata, managedFields: base } }, obj, owner.manager, apiVersionOf(r), sub, !!strategyFor(r.kind).statusSubresource);
      if (managed) obj.metadata.managedFields = managed;
      else delete obj.metadata.managedFields;
    } else if (sub !== 'status' && nextMeta.managedFields === undefined && cur.metadata.managedFields) {
      obj.metadata.managedFields = cur.metadata.managedFields;
    }
    if (nextMeta.uid && nextMeta.uid !== cur.metadata.uid) throw new ApiError(409, 'Conflict', `Precondition failed: UID in precondition: ${nextMeta.uid}, UID in object meta: ${cur.metadata.uid}`);
    this.validate(r, obj, sub === 'status' ? undefined : cur);
    if (sub !== 'status') admitRbacWrite(this.requester.getStore(), r.kind, obj, cur, this.store);
    if (r.kind === 'Service' && sub !== 'status') this.allocate(r, obj, cur);
    if (expectRv && expectRv !== cur.metadata.resourceVersion) throw conflict(r, name);
    // a no-op write keeps the resourceVersion, as kube-apiserver does
    const strip = (o: KObj) => ({ ...o, metadata: { ...o.metadata, resourceVersion: undefined } });
    if (sameJson(strip(obj), strip(cur)) || dryRun) return { obj: dryRun ? obj : cur };
    try {
      const stored = this.store.update(r.name, ns, name, obj, cur.metadata.resourceVersion);
      this.afterUpdate(r, stored);
      return { obj: stored };
    } catch (err) {
      if (err instanceof ConflictError) throw conflict(r, name);
      throw err;
    }
  }

  /**
   * An object being deleted whose last finalizer was just removed is gone (a pod only once its
   * deletion was final, grace 0: a node still finishing it confirms with its own DELETE).
   */
  private afterUpdate(r: ResourceDef, obj: KObj): void {
    if (!obj.metadata.deletionTimestamp || (obj.metadata.finalizers ?? []).length > 0) return;
    if (r.kind === 'Pod' && obj.metadata.deletionGracePeriodSeconds !== 0) return;
    this.store.delete(r.name, obj.metadata.namespace ?? '', obj.metadata.name);
  }

  /** Mark an object deleted but kept for its finalizers (kube-apiserver's graceful deletion with finalizers). */
  private markDeleted(r: ResourceDef, cur: KObj, finalizers: string[], grace: number): KObj {
    const obj = clone(cur);
    obj.metadata.finalizers = finalizers;
    obj.metadata.deletionTimestamp ??= now();
    obj.metadata.deletionGracePeriodSeconds = Math.min(grace, obj.metadata.deletionGracePeriodSeconds ?? grace);
    if (JSON.stringify(obj) === JSON.stringify(cur)) return cur;
    return this.store.update(r.name, cur.metadata.namespace ?? '', cur.metadata.name, obj, cur.metadata.resourceVersion);
  }

  /**
   * Server-side apply (`PATCH`, `application/apply-patch+yaml`): the configuration merged into the
   * object by field ownership (apply.ts), 409 on conflicts unless `force`, the object created when
   * it does not exist.
   */
  private async applyPatch(req: IncomingMessage, res: ServerResponse, q: Query, r: ResourceDef, ns: string, name: string, sub: string | undefined, dryRun: boolean): Promise<void> {
    const manager = q.get('fieldManager');
    if (manager === null || manager === '') throw invalidPatchOptions('fieldManager', 'FieldValueRequired', 'Required value: is required for apply patch');
    const force = q.get('force') !== null && parseBool(q.get('force'));
    if (sub && sub !== 'status') throw new ApiError(415, 'UnsupportedMediaType', `server-side apply is served for ${r.name} and ${r.name}/status, not ${r.name}/${sub}; use a merge or JSON patch there`);
    const config = parseBody(await readBody(req), 'application/yaml');
    if (!isObj(config)) throw badRequest(`the applied configuration must be a ${r.kind} object`);
    if (config.apiVersion !== apiVersionOf(r) || config.kind !== r.kind) {
      throw badRequest(`the applied configuration must have apiVersion "${apiVersionOf(r)}" and kind "${r.kind}" (got apiVersion ${JSON.stringify(config.apiVersion ?? '')}, kind ${JSON.stringify(config.kind ?? '')})`);
    }
    const meta: KObj = isObj(config.metadata) ? config.metadata : (config.metadata = {});
    if (meta.name !== undefined && meta.name !== name) throw badRequest(`the name of the object (${meta.name}) does not match the name on the URL (${name})`);
    if (r.namespaced && meta.namespace !== undefined && meta.namespace !== ns) throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    meta.name = name;
    if (meta.managedFields !== undefined) throw badRequest('metadata.managedFields must be nil in an applied configuration');
    const warnings = this.checkFields(r, config, q);
    const expect = typeof meta.resourceVersion === 'string' && meta.resourceVersion ? meta.resourceVersion : undefined;
    const statusSubresource = !!strategyFor(r.kind).statusSubresource;
    const cur = this.store.get(r.name, ns, name);
    if (!cur) {
      if (sub) throw notFound(r, name);
      if (expect) throw conflict(r, name);
      const { object } = serverSideApply(undefined, config, manager, apiVersionOf(r), force, undefined, statusSubresource);
      const { obj } = this.create(r, ns, object, new URLSearchParams({ fieldValidation: 'Ignore' }), dryRun);
      return sendJson(res, 201, obj, warnings);
    }
    const { object, conflicts } = serverSideApply(cur, config, manager, apiVersionOf(r), force, sub, statusSubresource);
    if (conflicts.length) {
      const { message, causes } = conflictStatus(conflicts);
      throw new ApiError(409, 'Conflict', message, { causes });
    }
    const { obj } = this.update(r, ns, name, cur, object, sub, expect, dryRun, { applied: true });
    return sendJson(res, 200, obj, warnings);
  }

  /** The autoscaling/v1 Scale subresource of a Deployment, ReplicaSet or StatefulSet (kubectl scale). */
  private async scale(req: IncomingMessage, res: ServerResponse, q: Query, method: string, r: ResourceDef, ns: string, name: string, dryRun: boolean): Promise<void> {
    const cur = this.store.get(r.name, ns, name);
    if (!cur) throw notFound(r, name);
    const toScale = (o: KObj): KObj => ({
      kind: 'Scale', apiVersion: 'autoscaling/v1',
      metadata: { name, namespace: ns, uid: o.metadata.uid, resourceVersion: o.metadata.resourceVersion, creationTimestamp: o.metadata.creationTimestamp },
      spec: { replicas: o.spec?.replicas ?? 0 },
      status: { replicas: o.status?.replicas ?? 0, selector: selectorString(o.spec?.selector) },
    });
    if (method === 'GET') return sendJson(res, 200, toScale(cur));
    if (method !== 'PUT' && method !== 'PATCH') throw new ApiError(405, 'MethodNotAllowed', `${r.name}/scale supports GET, PUT and PATCH`);
    const ct = String(req.headers['content-type'] ?? '').split(';')[0]!.trim();
    const body = parseBody(await readBody(req), method === 'PUT' ? ct : 'application/json');
    const current = toScale(cur);
    let next: KObj;
    try {
      if (method === 'PUT') next = body;
      else if (ct === 'application/merge-patch+json') next = mergePatch(current, body);
      else if (ct === 'application/strategic-merge-patch+json') next = strategicMergePatch(current, body, {});
      else if (ct === 'application/json-patch+json') next = jsonPatch(current, body);
      else throw new ApiError(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json');
    } catch (err) {
      if (err instanceof PatchError) throw new ApiError(422, 'Invalid', err.message);
      throw err;
    }
    if (!isObj(next)) throw badRequest('the request body must be an autoscaling/v1 Scale object');
    this.checkFields({ ...r, kind: 'Scale' }, next, q);
    const replicas = next.spec?.replicas;
    if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0) {
      throw invalid({ ...r, kind: 'Scale', group: 'autoscaling' }, name, [{ field: 'spec.replicas', reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(replicas)}: must be greater than or equal to 0` }]);
    }
    const wanted = clone(cur);
    wanted.spec.replicas = replicas;
    const expect = method === 'PUT' ? next.metadata?.resourceVersion : next.metadata?.resourceVersion !== cur.metadata.resourceVersion ? next.metadata?.resourceVersion : undefined;
    const { obj } = this.update(r, ns, name, cur, wanted, undefined, expect, dryRun);
    return sendJson(res, 200, toScale(obj));
  }

  /** What the controllers write through: the same create, update and delete code as requests. */
  internalClient(podCreations: TokenBucket): ApiClient {
    const def = (resource: string) => {
      const r = RESOURCES.find((x) => x.name === resource);
      if (!r) throw new Error(`unknown resource ${resource}`);
      return r;
    };
    const current = (r: ResourceDef, ns: string, name: string) => {
      const cur = this.store.get(r.name, ns, name);
      if (!cur) throw notFound(r, name);
      return cur;
    };
    // The controllers act as themselves, not as whoever sent the request that woke them.
    const internal = <T>(fn: () => T): T => this.requester.run(undefined, fn);
    // Create and update fill in and prune the object they are given, as they do a request's parsed body;
    // a controller's object may be built from the store's shared, frozen ones (spread copies keep frozen parts), so
    // they get a copy of their own.
    return {
      podCreations,
      create: (resource, ns, sent) => internal(() => this.create(def(resource), ns, structuredClone(sent), new URLSearchParams(), false).obj),
      update: (resource, ns, sent) => {
        const r = def(resource);
        const obj = structuredClone(sent);
        return internal(() => this.update(r, ns, obj.metadata.name, current(r, ns, obj.metadata.name), obj, undefined, obj.metadata.resourceVersion, false).obj);
      },
      updateStatus: (resource, ns, sent) => {
        const r = def(resource);
        const obj = structuredClone(sent);
        return this.update(r, ns, obj.metadata.name, current(r, ns, obj.metadata.name), obj, 'status', obj.metadata.resourceVersion, false).obj;
      },
      delete: (resource, ns, name, opts = {}) => this.delete(def(resource), ns, name, undefined, opts.uid ? { uid: opts.uid } : undefined, false, opts.propagationPolicy),
    };
  }

  private delete(r: ResourceDef, ns: string, name: string, grace: number | undefined, preconditions: KObj | undefined, dryRun: boolean, propagation?: PropagationPolicy): KObj {
    const cur = this.store.get(r.name, ns, name);
    if (!cur) throw notFound(r, name);
    if (preconditions?.uid && preconditions.uid !== cur.metadata.uid) throw new ApiError(409, 'Conflict', `Precondition failed: UID in precondition: ${preconditions.uid}, UID in object meta: ${cur.metadata.uid}`);
    if (preconditions?.resourceVersion && preconditions.resourceVersion !== cur.metadata.resourceVersion) throw conflict(r, name);
    if (grace !== undefined && (!Number.isInteger(grace) || grace < 0)) throw badRequest(`gracePeriodSeconds must be a non-negative integer, got ${grace}`);
    if (r.name === 'namespaces' && SYSTEM_NAMESPACES.includes(name)) throw new ApiError(403, 'Forbidden', `namespaces "${name}" is forbidden: this namespace may not be deleted`);
    if (dryRun) return cur;
    // Orphan and Foreground are finalizers the garbage collector acts on; only worth adding when
    // something names this object as its owner (kube-apiserver adds them regardless; the
    // collector would remove them at once).
    const policy = propagation ?? r.defaultPropagation ?? 'Background';
    const finalizers: string[] = [...(cur.metadata.finalizers ?? [])];
    const gcFinalizer = policy === 'Orphan' ? 'orphan' : policy === 'Foreground' ? 'foregroundDeletion' : undefined;
    if (gcFinalizer && !finalizers.includes(gcFinalizer) && !cur.metadata.deletionTimestamp && dependentsOf(this.store, cur).length > 0) finalizers.push(gcFinalizer);
    if (r.kind === 'Pod') {
      const terminal = cur.status?.phase === 'Succeeded' || cur.status?.phase === 'Failed';
      const g = grace ?? cur.spec?.terminationGracePeriodSeconds ?? 30;
      const nodeGone = cur.spec?.nodeName && !this.store.get('nodes', '', cur.spec.nodeName);
      if (!cur.spec?.nodeName || terminal || g === 0 || nodeGone) {
        if (finalizers.length) return this.markDeleted(r, cur, finalizers, 0);
        return this.store.delete(r.name, ns, name) ?? cur;
      }
      const prevGrace = cur.metadata.deletionGracePeriodSeconds;
      if (prevGrace !== undefined && g >= prevGrace) return cur;
      const obj = clone(cur);
      obj.metadata.deletionTimestamp = new Date(Date.now() + g * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
      obj.metadata.deletionGracePeriodSeconds = g;
      return this.store.update(r.name, ns, name, obj);
    }
    if (finalizers.length) return this.markDeleted(r, cur, finalizers, grace ?? 0);
    if (r.name === 'namespaces') {
      for (const res of RESOURCES.filter((x) => x.namespaced)) {
        for (const o of this.store.list(res.name, name)) {
          try {
            this.delete(res, name, o.metadata.name, undefined, undefined, false, 'Background');
          } catch (err) {
            this.log.warn({ err }, 'deleting namespace content failed');
          }
        }
      }
    }
    return this.store.delete(r.name, ns, name) ?? cur;
  }

  private bind(ns: string, name: string, body: KObj, dryRun: boolean): KObj {
    const pods = RESOURCES[0]!;
    const pod = this.store.get('pods', ns, name);
    if (!pod) throw notFound(pods, name);
    const target = body?.target?.name;
    if (!target) throw invalid({ ...pods, kind: 'Binding' }, name, [{ field: 'target.name', reason: 'FieldValueRequired', message: 'Required value' }]);
    if (pod.spec?.nodeName) throw new ApiError(409, 'Conflict', `Operation cannot be fulfilled on pods/binding "${name}": pod ${name} is already assigned to node "${pod.spec.nodeName}"`, { name, kind: 'pods/binding' });
    if (pod.metadata.deletionTimestamp) throw new ApiError(409, 'Conflict', `Operation cannot be fulfilled on pods/binding "${name}": pod ${name} is being deleted, cannot be assigned to a host`);
    if (!dryRun) this.bindPod(pod, target);
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 };
  }

  /**
   * pods/eviction (policy/v1 Eviction): a delete that respects the pod's
   * PodDisruptionBudget, as kube-apiserver's eviction REST does. Pods that
   * are Pending, finished or already being deleted go without a budget check;
   * an unready pod goes when the budget is met anyway (IfHealthyBudget) or
   * always (AlwaysAllow); a ready one only while the budget allows a
   * disruption, which the eviction spends (disruptedPods) before it deletes.
   */
  private evict(ns: string, name: string, body: KObj, dryRun: boolean): KObj {
    const pods = RESOURCES[0]!;
    const pod = this.store.get('pods', ns, name);
    if (!pod) throw notFound(pods, name);
    if (isObj(body?.metadata) && body.metadata.name && body.metadata.name !== name) throw badRequest(`name in URL does not match name in Eviction object`);
    const options: KObj = isObj(body?.deleteOptions) ? body.deleteOptions : {};
    const success = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 };
    const remove = () => { this.delete(pods, ns, name, options.gracePeriodSeconds, options.preconditions, dryRun || (options.dryRun ?? []).includes('All')); return success; };
    const phase = pod.status?.phase ?? 'Pending';
    if (pod.metadata.deletionTimestamp || phase === 'Pending' || phase === 'Succeeded' || phase === 'Failed') return remove();
    const budgets = budgetsOf(this.store, pod);
    if (budgets.length > 1) throw new ApiError(500, 'InternalError', 'This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.');
    const pdb = budgets[0];
    if (!pdb) return remove();
    const status = budgetStatus(this.store, pdb);
    const refuse = () => new ApiError(429, 'TooManyRequests', "Cannot evict pod as it would violate the pod's disruption budget.",
      { causes: [{ reason: 'DisruptionBudget', message: `The disruption budget ${pdb.metadata.name} needs ${status.desiredHealthy} healthy pods and has ${status.currentHealthy} currently` }] });
    const ready = (pod.status?.conditions ?? []).some((c: KObj) => c.type === 'Ready' && c.status === 'True');
    if (!ready) {
      if (pdb.spec?.unhealthyPodEvictionPolicy === 'AlwaysAllow' || status.currentHealthy >= status.desiredHealthy) return remove();
      throw refuse();
    }
    if (status.disruptionsAllowed <= 0) throw refuse();
    if (!dryRun) {
      const spent = clone(pdb);
      spent.status = { ...status, disruptionsAllowed: status.disruptionsAllowed - 1, disruptedPods: { ...status.disruptedPods, [name]: now() } };
      // A concurrent eviction spent it first: the caller retries, as kubectl drain does on 429.
      try { this.store.update('poddisruptionbudgets', ns, pdb.metadata.name, spent, pdb.metadata.resourceVersion); } catch (err) { if (err instanceof ConflictError) throw refuse(); throw err; }
    }
    return remove();
  }

  /** Bind a pod to a node: the pods/binding subresource's write, which the scheduler uses too. */
  bindPod(pod: KObj, node: string): KObj {
    const obj = clone(pod);
    obj.spec.nodeName = node;
    obj.status ??= {};
    const conds: KObj[] = (obj.status.conditions ?? []).filter((c: KObj) => c.type !== 'PodScheduled');
    conds.push({ type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: now() });
    obj.status.conditions = conds;
    return this.store.update('pods', pod.metadata.namespace, pod.metadata.name, obj, pod.metadata.resourceVersion);
  }

  // ---------------------------------------------------------------- logs

  private async proxyLogs(req: IncomingMessage, res: ServerResponse, q: Query, ns: string, name: string): Promise<void> {
    const pod = this.store.get('pods', ns, name);
    if (!pod) throw notFound(RESOURCES[0]!, name);
    const names: string[] = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map((c: KObj) => c.name);
    let container = q.get('container') ?? '';
    if (!container) {
      if ((pod.spec?.containers ?? []).length === 1) container = pod.spec.containers[0].name;
      else throw badRequest(`a container name must be specified for pod ${name}, choose one of: [${(pod.spec?.containers ?? []).map((c: KObj) => c.name).join(' ')}]`);
    }
    if (!names.includes(container)) throw badRequest(`container ${container} is not valid for pod ${name}`);
    const nodeName = pod.spec?.nodeName;
    if (!nodeName) throw badRequest(`pod ${name} does not have a host assigned`);
    const node = this.store.get('nodes', '', nodeName);
    if (!node) throw new ApiError(500, 'InternalError', `cannot fetch logs of pod ${ns}/${name}: node "${nodeName}" is not registered (start the stevedore agent on that node, then retry)`);
    const { ip, port } = nodeEndpoint(node);
    if (!ip) throw new ApiError(500, 'InternalError', `cannot fetch logs of pod ${ns}/${name}: node "${nodeName}" reports no address in status.addresses (its agent must report an InternalIP)`);
    const params = new URLSearchParams();
    for (const k of ['follow', 'tailLines', 'sinceSeconds', 'sinceTime', 'timestamps', 'previous', 'limitBytes']) {
      const v = q.get(k);
      if (v !== null && v !== '') params.set(k, v);
    }
    const upstreamPath = `/containerLogs/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/${encodeURIComponent(container)}${params.size ? `?${params}` : ''}`;
    const target = `https://${ip.includes(':') ? `[${ip}]` : ip}:${port}${upstreamPath}`;
    await new Promise<void>((resolve) => {
      const up = https.request({ ...nodeRequestOptions(nodeName, ip, port, upstreamPath, this.nodeClient), timeout: 10_000 }, (ur) => {
        if ((ur.statusCode ?? 500) >= 400) {
          let text = '';
          ur.setEncoding('utf8');
          ur.on('data', (d) => { if (text.length < 4096) text += d; });
          ur.on('end', () => {
            const code = ur.statusCode === 404 || ur.statusCode === 400 ? ur.statusCode : 500;
            let msg = text.trim();
            try { msg = JSON.parse(text).message ?? msg; } catch { /* plain text */ }
            sendJson(res, code, new ApiError(code, code === 404 ? 'NotFound' : code === 400 ? 'BadRequest' : 'InternalError', `the node ${nodeName} answered ${ur.statusCode} for the logs of ${ns}/${name}/${container}: ${msg}`).toStatus());
            resolve();
          });
          return;
        }
        up.setTimeout(0);
        res.writeHead(200, { 'Content-Type': 'text/plain', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
        res.flushHeaders();
        ur.pipe(res);
        ur.on('end', resolve);
        ur.on('error', () => { res.destroy(); resolve(); });
        res.on('close', () => { ur.destroy(); resolve(); });
      });
      up.on('timeout', () => up.destroy(new Error('timed out after 10 s')));
      up.on('error', (err) => {
        const why = isCertificateError(err)
          ? `tls: failed to verify the serving certificate of node ${nodeName}: ${err.message} (the node API must present a certificate from the cluster CA issued for node ${nodeName} at ${ip}; issue one with \`stevedore control-plane node-credentials\`)`
          : `${err.message} (is the stevedore agent on node ${nodeName} running and reachable at ${ip}:${port}?)`;
        if (isCertificateError(err)) this.log.warn({ node: nodeName, address: `${ip}:${port}`, err: err.message }, 'refused to send a request to a node whose certificate does not verify');
        if (!res.headersSent) sendJson(res, 500, new ApiError(500, 'InternalError', `Get "${target}": ${why}`).toStatus());
        else res.destroy();
        resolve();
      });
      req.on('close', () => { if (!res.writableEnded) up.destroy(); });
      up.end();
    });
  }
}

export { microNow };
