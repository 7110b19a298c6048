/**
 * Authorization, as kube-apiserver's `--authorization-mode=Node,RBAC` with the NodeRestriction
 * admission plugin does it for the identities this control plane has:
 *
 * - `system:masters` (the admin token): everything;
 * - a node (`system:node:NAME` in group `system:nodes`, from its client certificate): the reads
 *   an agent needs (Services, Endpoints and EndpointSlices included, for its service proxy), writes to its own Node, Lease and Events, the status of pods bound to it and
 *   their deletion, and Secrets, ConfigMaps and PersistentVolumeClaims that a pod bound to it
 *   references, the PersistentVolumes those claims are bound to, and tokens of its pods'
 *   ServiceAccounts bound to those pods (projected serviceAccountToken volumes);
 * - what the Node authorizer does not allow goes on to RBAC (rbac-authorizer.ts, which chains
 *   the two and is what the server calls).
 *
 * Refusals are 403 Forbidden Status objects worded like kube-apiserver's.
 */
import { ApiError } from './resources.js';
import type { KObj } from './store.js';
import { MASTERS_GROUP, type UserInfo } from './authn.js';
import { NODES_GROUP, NODE_USER_PREFIX } from './pki.js';

export interface RequestAttributes {
  verb: string;
  resource: string;
  subresource?: string;
  group: string;
  /** '' for cluster-scoped resources and for lists across all namespaces. */
  namespace: string;
  name?: string;
}

/** What the authorizer reads to find relationships (the Node authorizer's graph, computed on demand). */
export interface ObjectReader {
  get(resource: string, namespace: string, name: string): KObj | undefined;
  /** Read-only: the server passes the store's shared, frozen objects. */
  list(resource: string, namespace?: string): readonly KObj[];
}

export const NODE_LEASE_NAMESPACE = 'kube-node-lease';
const READ = ['get', 'list', 'watch'];

/** The node a user is, if it is one: name `system:node:NAME` and group `system:nodes`, both (as the Node authorizer). */
export function nodeNameOf(user: UserInfo): string | undefined {
  if (!user.groups.includes(NODES_GROUP) || !user.name.startsWith(NODE_USER_PREFIX)) return undefined;
  const name = user.name.slice(NODE_USER_PREFIX.length);
  return name || undefined;
}

/** kube-apiserver's wording: `nodes "b" is forbidden: User "system:node:a" cannot patch resource "nodes" in API group "" at the cluster scope`. */
export function forbidden(user: UserInfo, a: RequestAttributes, reason?: string): ApiError {
  const qualified = a.group ? `${a.resource}.${a.group}` : a.resource;
  const what = a.name ? `${qualified} "${a.name}"` : qualified;
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const scope = a.namespace ? `in the namespace "${a.namespace}"` : 'at the cluster scope';
  const message = `${what} is forbidden: User "${user.name}" cannot ${a.verb} resource "${resource}" in API group "${a.group}" ${scope}${reason ? `: ${reason}` : ''}`;
  return new ApiError(403, 'Forbidden', message, { ...(a.name ? { name: a.name } : {}), group: a.group, kind: a.resource });
}

const noRelationship = (node: string) => `no relationship found between node '${node}' and this object`;

const allContainers = (spec: KObj): KObj[] => [...(spec.initContainers ?? []), ...(spec.containers ?? []), ...(spec.ephemeralContainers ?? [])];

/**
 * Where a pod names a Secret or a ConfigMap. Each entry returns the names it finds; add one here
 * when the node starts honouring another kind of reference (kubelet: volumes, env, envFrom, projected).
 */
const REFERENCES: Record<'secrets' | 'configmaps' | 'persistentvolumeclaims', Array<(spec: KObj) => unknown[]>> = {
  secrets: [
    (spec) => (spec.imagePullSecrets ?? []).map((r: KObj) => r?.name),
    (spec) => (spec.volumes ?? []).map((v: KObj) => v?.secret?.secretName),
    (spec) => (spec.volumes ?? []).map((v: KObj) => v?.flexVolume?.secretRef?.name),
    (spec) => (spec.volumes ?? []).flatMap((v: KObj) => (v?.projected?.sources ?? []).map((s: KObj) => s?.secret?.name)),
    (spec) => allContainers(spec).flatMap((c: KObj) => [
      ...(c?.env ?? []).map((e: KObj) => e?.valueFrom?.secretKeyRef?.name),
      ...(c?.envFrom ?? []).map((e: KObj) => e?.secretRef?.name),
    ]),
  ],
  configmaps: [
    (spec) => (spec.volumes ?? []).map((v: KObj) => v?.configMap?.name),
    (spec) => (spec.volumes ?? []).flatMap((v: KObj) => (v?.projected?.sources ?? []).map((s: KObj) => s?.configMap?.name)),
    (spec) => allContainers(spec).flatMap((c: KObj) => [
      ...(c?.env ?? []).map((e: KObj) => e?.valueFrom?.configMapKeyRef?.name),
      ...(c?.envFrom ?? []).map((e: KObj) => e?.configMapRef?.name),
    ]),
  ],
  persistentvolumeclaims: [
    (spec) => (spec.volumes ?? []).map((v: KObj) => v?.persistentVolumeClaim?.claimName),
  ],
};

/** Whether a pod references the named Secret (resource `secrets`) or ConfigMap (`configmaps`). */
export function podReferences(pod: KObj, resource: 'secrets' | 'configmaps' | 'persistentvolumeclaims', name: string): boolean {
  const spec = pod.spec ?? {};
  return REFERENCES[resource].some((refs) => refs(spec).includes(name));
}

const boundTo = (pod: KObj | undefined, node: string) => !!pod && pod.spec?.nodeName === node;
/** A pod's ServiceAccount (`default` when unset, as the ServiceAccount admission plugin would set it). */
export const serviceAccountOf = (pod: KObj) => String(pod.spec?.serviceAccountName || pod.spec?.serviceAccount || 'default');

/**
 * What an event may be about when a node writes it: the node itself, or a pod bound to it (a pod
 * already gone is allowed: the agent reports on pods it is still cleaning up). Anything else
 * would let one node put words in another's mouth.
 */
function eventAboutOwnObjects(node: string, event: KObj, objects: ObjectReader): boolean {
  const about = event?.involvedObject ?? event?.regarding;
  if (!about || typeof about !== 'object') return false;
  if (about.kind === 'Node') return about.name === node;
  if (about.kind === 'Pod') {
    const pod = objects.get('pods', String(about.namespace ?? event?.metadata?.namespace ?? ''), String(about.name ?? ''));
    return !pod || boundTo(pod, node);
  }
  return false;
}

/** A refusal of the Node authorizer, with its reason kept apart (the union of authorizers reports it). */
class NodeDenial extends ApiError {
  constructor(user: UserInfo, a: RequestAttributes, readonly why: string) {
    const e = forbidden(user, a, why);
    super(e.code, e.reason, e.message, e.details);
  }
}

function authorizeNode(user: UserInfo, node: string, a: RequestAttributes, objects: ObjectReader): void {
  const deny = (reason?: string) => { throw new NodeDenial(user, a, reason ?? ''); };
  switch (`${a.group}/${a.resource}`) {
    case '/nodes':
      if (!a.subresource && READ.includes(a.verb)) return;
      if (!a.subresource && a.verb === 'create') return; // the name in the body is checked at admission
      if ((a.subresource === 'status' || !a.subresource) && ['get', 'update', 'patch'].includes(a.verb) && a.name === node) return;
      if (!a.subresource && a.verb === 'delete' && a.name === node) return;
      return deny();
    case '/pods':
      if (!a.subresource && READ.includes(a.verb)) return;
      if (a.subresource === 'status' && ['get', 'update', 'patch'].includes(a.verb)) {
        if (a.verb === 'get' || boundTo(objects.get('pods', a.namespace, a.name ?? ''), node)) return;
        return deny(noRelationship(node));
      }
      if (!a.subresource && a.verb === 'delete') {
        if (boundTo(objects.get('pods', a.namespace, a.name ?? ''), node)) return;
        return deny(noRelationship(node));
      }
      return deny();
    case '/namespaces':
    case 'node.k8s.io/runtimeclasses':
    // The node's service proxy and cluster DNS program every Service of the cluster (kube-proxy's
    // system:node-proxier role: get/list/watch services, endpoints and endpointslices).
    case '/services':
    case '/endpoints':
    case 'discovery.k8s.io/endpointslices':
      if (!a.subresource && READ.includes(a.verb)) return;
      return deny();
    case '/secrets':
    case '/configmaps':
    case '/persistentvolumeclaims': {
      if (a.verb !== 'get' || a.subresource || !a.name || !a.namespace) return deny();
      const resource = a.resource as 'secrets' | 'configmaps' | 'persistentvolumeclaims';
      const referenced = objects.list('pods', a.namespace).some((p) => boundTo(p, node) && podReferences(p, resource, a.name!));
      if (referenced) return;
      return deny(noRelationship(node));
    }
    case '/persistentvolumes': {
      // The graph node → pod → claim → volume, as kube's Node authorizer walks it.
      if (a.verb !== 'get' || a.subresource || !a.name) return deny();
      const referenced = objects.list('pods').some((p) => boundTo(p, node)
        && (p.spec?.volumes ?? []).some((v: KObj) => {
          const claim = v?.persistentVolumeClaim?.claimName;
          return claim && objects.get('persistentvolumeclaims', p.metadata?.namespace ?? '', claim)?.spec?.volumeName === a.name;
        }));
      if (referenced) return;
      return deny(noRelationship(node));
    }
    case '/serviceaccounts': {
      // A token for a pod bound to this node, for the pod's own ServiceAccount (projected
      // serviceAccountToken volumes); what it is bound to is checked at admission (admitTokenRequest).
      if (a.subresource !== 'token' || a.verb !== 'create' || !a.name || !a.namespace) return deny();
      if (objects.list('pods', a.namespace).some((p) => boundTo(p, node) && serviceAccountOf(p) === a.name)) return;
      return deny(noRelationship(node));
    }
    case 'coordination.k8s.io/leases':
      if (a.namespace !== NODE_LEASE_NAMESPACE) return deny();
      if (a.verb === 'create') return; // the name in the body is checked at admission
      if (['get', 'update', 'patch'].includes(a.verb) && a.name === node) return;
      return deny();
    case '/events':
      if (a.verb === 'create') return; // what the event is about is checked at admission
      if (['update', 'patch'].includes(a.verb) && a.name && eventAboutOwnObjects(node, objects.get('events', a.namespace, a.name) ?? {}, objects)) return;
      return deny();
    default:
      return deny();
  }
}

/**
 * The Node authorizer's decision for a node's request: allowed, or no opinion with a reason
 * (then RBAC is asked, as in kube-apiserver's `Node,RBAC` chain; rbac-authorizer.ts).
 */
export function nodeDecision(user: UserInfo, node: string, a: RequestAttributes, objects: ObjectReader): { allowed: boolean; reason: string } {
  try {
    authorizeNode(user, node, a, objects);
    return { allowed: true, reason: '' };
  } catch (err) {
    if (err instanceof NodeDenial) return { allowed: false, reason: err.why };
    throw err;
  }
}

/** The privileged group and the Node authorizer alone (no RBAC); throws the 403 ApiError when refused. */
export function authorize(user: UserInfo, a: RequestAttributes, objects: ObjectReader): void {
  if (user.groups.includes(MASTERS_GROUP)) return;
  const node = nodeNameOf(user);
  if (node === undefined) throw forbidden(user, a);
  authorizeNode(user, node, a, objects);
}

/**
 * NodeRestriction for creates, where the object's name and content are in the body: a node may
 * create only its own Node and Lease, and Events only about itself and pods bound to it.
 */
export function admitCreate(user: UserInfo, a: RequestAttributes, body: unknown, objects: ObjectReader): void {
  const node = nodeNameOf(user);
  if (node === undefined || user.groups.includes(MASTERS_GROUP)) return;
  const obj = (body && typeof body === 'object' ? body : {}) as KObj;
  const name = String(obj.metadata?.name ?? '');
  const refuse = (why: string) => { throw new ApiError(403, 'Forbidden', `${a.group ? `${a.resource}.${a.group}` : a.resource} "${name}" is forbidden: ${why}`, { name, group: a.group, kind: a.resource }); };
  if (a.resource === 'nodes' && name !== node) refuse(`node "${node}" is not allowed to modify node "${name}"`);
  if (a.resource === 'leases' && name !== node) refuse(`node "${node}" can only access node lease with the same name as the requesting node`);
  if (a.resource === 'events' && !eventAboutOwnObjects(node, { ...obj, metadata: { ...obj.metadata, namespace: a.namespace } }, objects)) {
    refuse(`node "${node}" can only create events about itself and pods bound to it`);
  }
}

/**
 * NodeRestriction for a node's TokenRequest: the token must be bound to a pod on this node
 * (whose ServiceAccount the Node authorizer already checked), so a node cannot mint tokens that
 * outlive its pods.
 */
export function admitTokenRequest(user: UserInfo, namespace: string, serviceAccount: string, body: unknown, objects: ObjectReader): void {
  const node = nodeNameOf(user);
  if (node === undefined || user.groups.includes(MASTERS_GROUP)) return;
  const refuse = (why: string) => { throw new ApiError(403, 'Forbidden', `serviceaccounts "${serviceAccount}" is forbidden: ${why}`, { name: serviceAccount, kind: 'serviceaccounts' }); };
  const ref = (body && typeof body === 'object' ? (body as KObj).spec?.boundObjectRef : undefined) as KObj | undefined;
  if (!ref) return refuse('node requested token not bound to a pod');
  if (ref.kind !== 'Pod') return refuse('node requested token bound to non-pod object');
  const pod = objects.get('pods', namespace, String(ref.name ?? ''));
  if (!pod) return refuse(`pods "${ref.name}" not found`);
  if (ref.uid && ref.uid !== pod.metadata?.uid) return refuse(`the UID in the bound object reference (${ref.uid}) does not match the UID in record. The object might have been deleted and then recreated`);
  if (!boundTo(pod, node)) return refuse('node requested token bound to a pod scheduled on a different node');
}

/** The API verb of an HTTP request, as kube-apiserver's request-info resolver names it. */
export function verbOf(method: string, hasName: boolean, watch: boolean): string {
  switch (method) {
    case 'GET': case 'HEAD': return watch ? 'watch' : hasName ? 'get' : 'list';
    case 'POST': return 'create';
    case 'PUT': return 'update';
    case 'PATCH': return 'patch';
    case 'DELETE': return hasName ? 'delete' : 'deletecollection';
    default: return method.toLowerCase();
  }
}
