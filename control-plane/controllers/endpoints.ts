/**
 * The Endpoints and EndpointSlice controllers: for every Service with a
 * selector, the pods it selects, as kube-controller-manager's endpoints and
 * endpointslice controllers keep them. Named target ports are resolved per pod
 * (a pod without such a port is left out of that port), terminal pods and pods
 * without an IP are never endpoints.
 *
 * - Endpoints (v1, name = the Service's): Ready pods in `addresses`, the others in
 *   `notReadyAddresses`; terminating pods left out unless publishNotReadyAddresses.
 *   Subsets group pods whose ports resolve alike. Marked with
 *   `endpointslice.kubernetes.io/skip-mirror: "true"`, which is also how this
 *   controller tells its own Endpoints from hand-made ones.
 * - EndpointSlices (discovery.k8s.io/v1, `<service>-<random>`): one per distinct
 *   port set, at most 100 endpoints each, terminating pods included with
 *   conditions ready (Ready and not terminating, or publishNotReadyAddresses),
 *   serving (Ready) and terminating; owned by the Service (the garbage collector
 *   removes them with it), labelled `kubernetes.io/service-name` and
 *   `endpointslice.kubernetes.io/managed-by`. A Service with no endpoint keeps
 *   one empty slice, as kube's placeholder.
 */
import type { Logger } from '../../common/log.js';
import { ApiError } from '../resources.js';
import type { KObj, Store } from '../store.js';
import { KindController, controllerRef, podReady, type ApiClient } from './client.js';
import { isHeadless } from '../kinds/services.js';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
export const SLICE_CONTROLLER = 'endpointslice-controller.k8s.io';
export const SKIP_MIRROR_LABEL = 'endpointslice.kubernetes.io/skip-mirror';
const HEADLESS_LABEL = 'service.kubernetes.io/headless';
const MAX_ENDPOINTS_PER_SLICE = 100;
/**
 * Endpoints and EndpointSlices are recomputed at most this often while pods churn
 * (kube-controller-manager's --endpoint-updates-batch-period): a Service over 1000 starting
 * pods is then rewritten a few times a second, not once per pod write.
 */
export const ENDPOINT_UPDATES_BATCH_MS = 500;

interface EndpointPort { name: string; port: number; protocol: string; appProtocol?: string }

/** The pods a Service selects: same namespace, all selector labels equal (a Service selector is a plain map). */
export function selectedPods(svc: KObj, pods: readonly KObj[]): KObj[] {
  const sel: Record<string, string> = svc.spec?.selector ?? {};
  return pods.filter((p) => Object.entries(sel).every(([k, v]) => p.metadata.labels?.[k] === v));
}

/** podutil.FindPort: a number as is, a name through the pod's container ports of the same protocol. */
export function resolveTargetPort(pod: KObj, port: KObj): number | undefined {
  const tp = port.targetPort ?? port.port;
  if (typeof tp === 'number') return tp;
  if (/^\d+$/.test(String(tp))) return Number(tp);
  for (const c of pod.spec?.containers ?? []) {
    for (const cp of c.ports ?? []) if (cp.name === tp && (cp.protocol ?? 'TCP') === (port.protocol ?? 'TCP')) return cp.containerPort;
  }
  return undefined;
}

function endpointPorts(svc: KObj, pod: KObj): EndpointPort[] {
  const out: EndpointPort[] = [];
  for (const p of svc.spec?.ports ?? []) {
    const port = resolveTargetPort(pod, p);
    if (port === undefined) continue;
    out.push({ name: p.name ?? '', port, protocol: p.protocol ?? 'TCP', ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}) });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name) || a.port - b.port);
}

/** Terminal pods and pods without an IP are never endpoints (ShouldPodBeInEndpoints). */
const candidate = (pod: KObj) => !!pod.status?.podIP && pod.status?.phase !== 'Succeeded' && pod.status?.phase !== 'Failed';
const ipKey = (ip: string) => ip.split('.').map((o) => o.padStart(3, '0')).join('.');
const targetRef = (pod: KObj) => ({ kind: 'Pod', namespace: pod.metadata.namespace, name: pod.metadata.name, uid: pod.metadata.uid });
const hostnameFor = (svc: KObj, pod: KObj): string | undefined =>
  pod.spec?.hostname && pod.spec?.subdomain === svc.metadata.name ? pod.spec.hostname : undefined;

function serviceLabels(svc: KObj): Record<string, string> {
  const labels: Record<string, string> = { ...(svc.metadata.labels ?? {}) };
  if (isHeadless(svc)) labels[HEADLESS_LABEL] = '';
  return labels;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** What the v1 Endpoints of a Service hold (subsets), from its pods. */
export function endpointSubsets(svc: KObj, pods: readonly KObj[]): KObj[] {
  const publishNotReady = svc.spec?.publishNotReadyAddresses === true;
  const groups = new Map<string, { ports: EndpointPort[]; ready: KObj[]; notReady: KObj[] }>();
  for (const pod of selectedPods(svc, pods)) {
    if (!candidate(pod)) continue;
    if (pod.metadata.deletionTimestamp && !publishNotReady) continue;
    const ports = endpointPorts(svc, pod);
    if ((svc.spec?.ports ?? []).length > 0 && ports.length === 0) continue;
    const key = JSON.stringify(ports);
    const g = groups.get(key) ?? { ports, ready: [], notReady: [] };
    groups.set(key, g);
    const hostname = hostnameFor(svc, pod);
    const address = { ip: pod.status.podIP, ...(hostname ? { hostname } : {}), ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}), targetRef: targetRef(pod) };
    (publishNotReady || podReady(pod) ? g.ready : g.notReady).push(address);
  }
  const byIp = (a: KObj, b: KObj) => ipKey(a.ip).localeCompare(ipKey(b.ip));
  return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, g]) => ({
    ...(g.ready.length ? { addresses: g.ready.sort(byIp) } : {}),
    ...(g.notReady.length ? { notReadyAddresses: g.notReady.sort(byIp) } : {}),
    ...(g.ports.length ? { ports: g.ports.map(({ name, ...rest }) => ({ ...(name ? { name } : {}), ...rest })) } : {}),
  }));
}

/** The EndpointSlices a Service should have: one entry per distinct port set, chunks of 100 endpoints. */
export function desiredSlices(svc: KObj, pods: readonly KObj[]): Array<{ ports: EndpointPort[]; endpoints: KObj[] }> {
  const publishNotReady = svc.spec?.publishNotReadyAddresses === true;
  const groups = new Map<string, { ports: EndpointPort[]; endpoints: KObj[] }>();
  for (const pod of selectedPods(svc, pods)) {
    if (!candidate(pod)) continue;
    const ports = endpointPorts(svc, pod);
    if ((svc.spec?.ports ?? []).length > 0 && ports.length === 0) continue;
    const key = JSON.stringify(ports);
    const g = groups.get(key) ?? { ports, endpoints: [] };
    groups.set(key, g);
    const serving = podReady(pod);
    const terminating = !!pod.metadata.deletionTimestamp;
    const hostname = hostnameFor(svc, pod);
    g.endpoints.push({
      addresses: [pod.status.podIP],
      conditions: { ready: publishNotReady || (serving && !terminating), serving, terminating },
      ...(hostname ? { hostname } : {}),
      targetRef: targetRef(pod),
      ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}),
    });
  }
  const out: Array<{ ports: EndpointPort[]; endpoints: KObj[] }> = [];
  for (const [, g] of [...groups.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    g.endpoints.sort((a, b) => ipKey(a.addresses[0]).localeCompare(ipKey(b.addresses[0])));
    for (let i = 0; i < g.endpoints.length; i += MAX_ENDPOINTS_PER_SLICE) out.push({ ports: g.ports, endpoints: g.endpoints.slice(i, i + MAX_ENDPOINTS_PER_SLICE) });
  }
  if (!out.length) out.push({ ports: [], endpoints: [] });
  return out;
}

const wantsEndpoints = (svc: KObj) => !!svc.spec?.selector && Object.keys(svc.spec.selector).length > 0 && svc.spec?.type !== 'ExternalName' && !svc.metadata.deletionTimestamp;

function ignoreGone(fn: () => void): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof ApiError && err.code === 404)) throw err;
  }
}

/**
 * Pods by namespace, read once per pass: every Service of a namespace looks at the same pods,
 * and the store parses every object it lists.
 */
class PodsPerPass {
  private byNs = new Map<string, readonly KObj[]>();
  constructor(private readonly store: Store) {}
  reset(): void { this.byNs.clear(); }
  of(ns: string): readonly KObj[] {
    let pods = this.byNs.get(ns);
    if (!pods) this.byNs.set(ns, (pods = this.store.listShared('pods', ns)));
    return pods;
  }
}

/** Keeps v1 Endpoints (name = Service name) in step with the selected pods. */
export class EndpointsController extends KindController {
  private readonly pods: PodsPerPass;

  constructor(store: Store, log: Logger, private readonly client: ApiClient) {
    super(store, log, 'services', ['pods', 'endpoints'], 2000, ENDPOINT_UPDATES_BATCH_MS);
    this.pods = new PodsPerPass(store);
  }

  protected override pass(): void {
    this.pods.reset();
    super.pass();
    // Endpoints this controller made whose Service is gone (kube deletes them with the Service).
    for (const ep of this.store.list('endpoints')) {
      if (ep.metadata.labels?.[SKIP_MIRROR_LABEL] !== 'true') continue;
      if (this.store.get('services', ep.metadata.namespace, ep.metadata.name)) continue;
      try {
        ignoreGone(() => this.client.delete('endpoints', ep.metadata.namespace, ep.metadata.name));
      } catch (err) {
        this.log.error({ err, object: `endpoints/${ep.metadata.namespace}/${ep.metadata.name}` }, 'deleting the Endpoints of a deleted Service failed');
      }
    }
  }

  protected sync(svc: KObj): void {
    if (!wantsEndpoints(svc)) return;
    const ns = svc.metadata.namespace;
    const subsets = endpointSubsets(svc, this.pods.of(ns));
    const labels = { ...serviceLabels(svc), [SKIP_MIRROR_LABEL]: 'true' };
    const cur = this.store.get('endpoints', ns, svc.metadata.name);
    if (!cur) {
      this.client.create('endpoints', ns, { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: svc.metadata.name, labels }, ...(subsets.length ? { subsets } : {}) });
      return;
    }
    if (same(cur.subsets ?? [], subsets) && same(cur.metadata.labels ?? {}, labels)) return;
    const next: KObj = { ...cur, metadata: { ...cur.metadata, labels } };
    if (subsets.length) next.subsets = subsets;
    else delete next.subsets;
    this.client.update('endpoints', ns, next);
  }
}

/**
 * Make a set of EndpointSlices (`existing`, this controller's for one owner) hold `desired`:
 * update in place where the ports match (else reuse any), create what is missing
 * (`<name>-<random>`, owned by `owner`), delete the rest.
 */
function reconcileSlices(client: ApiClient, ns: string, name: string, owner: KObj, labels: Record<string, string>, existing: KObj[], desired: Array<{ ports: KObj[]; endpoints: KObj[] }>): void {
  const unused = [...existing].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  for (const want of desired) {
    // Prefer a slice that already has these ports (an update, not a delete and create).
    let i = unused.findIndex((s) => same(s.ports ?? [], want.ports));
    if (i < 0) i = unused.length ? 0 : -1;
    const body = { addressType: 'IPv4', endpoints: want.endpoints, ports: want.ports };
    if (i < 0) {
      client.create('endpointslices', ns, {
        apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
        metadata: { generateName: `${name}-`, labels, ownerReferences: [controllerRef(owner)] },
        ...body,
      });
      continue;
    }
    const cur = unused.splice(i, 1)[0]!;
    if (same(cur.endpoints ?? [], body.endpoints) && same(cur.ports ?? [], body.ports) && same(cur.metadata.labels ?? {}, labels)) continue;
    client.update('endpointslices', ns, { ...cur, ...body, metadata: { ...cur.metadata, labels } });
  }
  for (const s of unused) ignoreGone(() => client.delete('endpointslices', ns, s.metadata.name));
}

/** Slices of one manager, by `namespace/service`. */
function slicesByService(store: Store, manager: string): Map<string, KObj[]> {
  const out = new Map<string, KObj[]>();
  for (const s of store.list('endpointslices')) {
    if (s.metadata.labels?.[MANAGED_BY_LABEL] !== manager) continue;
    const key = `${s.metadata.namespace}/${s.metadata.labels?.[SERVICE_NAME_LABEL]}`;
    (out.get(key) ?? out.set(key, []).get(key)!).push(s);
  }
  return out;
}

/** Keeps a Service's EndpointSlices in step with the selected pods. */
export class EndpointSliceController extends KindController {
  private readonly pods: PodsPerPass;
  /** This controller's slices by `namespace/service`, read once per pass. */
  private slices = new Map<string, KObj[]>();

  constructor(store: Store, log: Logger, private readonly client: ApiClient) {
    super(store, log, 'services', ['pods', 'endpointslices'], 2000, ENDPOINT_UPDATES_BATCH_MS);
    this.pods = new PodsPerPass(store);
  }

  protected override pass(): void {
    this.pods.reset();
    this.slices = slicesByService(this.store, SLICE_CONTROLLER);
    super.pass();
  }

  protected sync(svc: KObj): void {
    if (!wantsEndpoints(svc)) return;
    const ns = svc.metadata.namespace;
    const labels = { ...serviceLabels(svc), [SERVICE_NAME_LABEL]: svc.metadata.name, [MANAGED_BY_LABEL]: SLICE_CONTROLLER };
    const desired = desiredSlices(svc, this.pods.of(ns)).map((want) => ({
      endpoints: want.endpoints,
      ports: want.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol, ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}) })),
    }));
    reconcileSlices(this.client, ns, svc.metadata.name, svc, labels, this.slices.get(`${ns}/${svc.metadata.name}`) ?? [], desired);
  }
}

export const MIRRORING_CONTROLLER = 'endpointslicemirroring-controller.k8s.io';

/**
 * The EndpointSlice mirroring controller: the hand-written Endpoints of a Service without a
 * selector are copied into EndpointSlices (one per subset; `addresses` ready, `notReadyAddresses`
 * not), owned by the Endpoints, managed by `endpointslicemirroring-controller.k8s.io`, so the
 * nodes' service proxies (which read slices) send that Service's traffic there too.
 */
export class EndpointSliceMirroringController extends KindController {
  private slices = new Map<string, KObj[]>();

  constructor(store: Store, log: Logger, private readonly client: ApiClient) {
    super(store, log, 'endpoints', ['services', 'endpointslices'], 2000);
  }

  protected override pass(): void {
    this.slices = slicesByService(this.store, MIRRORING_CONTROLLER);
    super.pass();
    // Mirrors whose Endpoints stopped being mirrored (the Service got a selector, or is gone).
    for (const [key, list] of this.slices) {
      const [ns, name] = key.split('/') as [string, string];
      const ep = this.store.get('endpoints', ns, name);
      if (ep && this.mirrored(ep)) continue;
      for (const s of list) {
        try {
          ignoreGone(() => this.client.delete('endpointslices', ns, s.metadata.name));
        } catch (err) {
          this.log.error({ err, object: `endpointslices/${ns}/${s.metadata.name}` }, 'deleting a mirrored EndpointSlice failed');
        }
      }
    }
  }

  /** Endpoints are mirrored when they are not the endpoints controller's and their Service has no selector. */
  private mirrored(ep: KObj): boolean {
    if (ep.metadata.labels?.[SKIP_MIRROR_LABEL] === 'true' || ep.metadata.deletionTimestamp) return false;
    const svc = this.store.get('services', ep.metadata.namespace, ep.metadata.name);
    return !!svc && !wantsEndpoints(svc) && svc.spec?.type !== 'ExternalName' && !svc.metadata.deletionTimestamp;
  }

  protected sync(ep: KObj): void {
    if (!this.mirrored(ep)) return;
    const ns = ep.metadata.namespace, name = ep.metadata.name;
    const desired: Array<{ ports: KObj[]; endpoints: KObj[] }> = [];
    for (const sub of ep.subsets ?? []) {
      const endpoints: KObj[] = [];
      for (const [list, ready] of [[sub.addresses ?? [], true], [sub.notReadyAddresses ?? [], false]] as const) {
        for (const a of list) {
          if (!a?.ip) continue;
          endpoints.push({
            addresses: [a.ip], conditions: { ready, serving: ready, terminating: false },
            ...(a.hostname ? { hostname: a.hostname } : {}), ...(a.targetRef ? { targetRef: a.targetRef } : {}), ...(a.nodeName ? { nodeName: a.nodeName } : {}),
          });
        }
      }
      if (!endpoints.length) continue;
      const ports = (sub.ports ?? []).map((p: KObj) => ({ name: p.name ?? '', port: p.port, protocol: p.protocol ?? 'TCP', ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}) }));
      for (let i = 0; i < endpoints.length; i += MAX_ENDPOINTS_PER_SLICE) desired.push({ ports, endpoints: endpoints.slice(i, i + MAX_ENDPOINTS_PER_SLICE) });
    }
    const labels = { ...(ep.metadata.labels ?? {}), [SERVICE_NAME_LABEL]: name, [MANAGED_BY_LABEL]: MIRRORING_CONTROLLER };
    reconcileSlices(this.client, ns, name, ep, labels, this.slices.get(`${ns}/${name}`) ?? [], desired);
  }
}
