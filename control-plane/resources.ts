import { randomUUID } from 'node:crypto';
import type { KObj } from './store.js';
import { POD_MERGE_KEYS, NODE_MERGE_KEYS, META_MERGE_KEYS, WORKLOAD_MERGE_KEYS, CRONJOB_MERGE_KEYS, SERVICE_MERGE_KEYS, type MergeKeys } from './patch.js';

/** An API error answered as a meta/v1 Status. */
export class ApiError extends Error {
  /** headers: extra response headers (Retry-After on 429). */
  constructor(readonly code: number, readonly reason: string, message: string, readonly details?: KObj, readonly headers: Record<string, string> = {}) {
    super(message);
  }
  toStatus(): KObj {
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: this.message, reason: this.reason, ...(this.details ? { details: this.details } : {}), code: this.code };
  }
}

export interface Cause { field: string; reason: string; message: string }

export interface ResourceDef {
  name: string;
  singular: string;
  kind: string;
  group: string;
  version: string;
  namespaced: boolean;
  shortNames?: string[];
  categories?: string[];
  subresources: string[];
  mergeKeys: MergeKeys;
  /** What a DELETE without propagationPolicy does to dependents (kube-apiserver's per-kind default). */
  defaultPropagation?: 'Background' | 'Orphan';
  /** Verbs discovery lists, when not the usual ones (create-only reviews). */
  verbs?: string[];
  /** Nothing is stored: a create is answered from the request (SelfSubjectAccessReview and the other reviews). */
  virtual?: boolean;
}

export const RESOURCES: ResourceDef[] = [
  { name: 'pods', singular: 'pod', kind: 'Pod', group: '', version: 'v1', namespaced: true, shortNames: ['po'], categories: ['all'], subresources: ['status', 'binding', 'eviction', 'log', 'exec', 'attach', 'portforward'], mergeKeys: POD_MERGE_KEYS },
  { name: 'nodes', singular: 'node', kind: 'Node', group: '', version: 'v1', namespaced: false, shortNames: ['no'], subresources: ['status'], mergeKeys: NODE_MERGE_KEYS },
  { name: 'namespaces', singular: 'namespace', kind: 'Namespace', group: '', version: 'v1', namespaced: false, shortNames: ['ns'], subresources: ['status'], mergeKeys: META_MERGE_KEYS },
  { name: 'secrets', singular: 'secret', kind: 'Secret', group: '', version: 'v1', namespaced: true, subresources: [], mergeKeys: META_MERGE_KEYS },
  { name: 'configmaps', singular: 'configmap', kind: 'ConfigMap', group: '', version: 'v1', namespaced: true, shortNames: ['cm'], subresources: [], mergeKeys: META_MERGE_KEYS },
  { name: 'persistentvolumes', singular: 'persistentvolume', kind: 'PersistentVolume', group: '', version: 'v1', namespaced: false, shortNames: ['pv'], subresources: ['status'], mergeKeys: META_MERGE_KEYS },
  { name: 'persistentvolumeclaims', singular: 'persistentvolumeclaim', kind: 'PersistentVolumeClaim', group: '', version: 'v1', namespaced: true, shortNames: ['pvc'], subresources: ['status'], mergeKeys: META_MERGE_KEYS },
  { name: 'events', singular: 'event', kind: 'Event', group: '', version: 'v1', namespaced: true, shortNames: ['ev'], subresources: [], mergeKeys: META_MERGE_KEYS },
  { name: 'leases', singular: 'lease', kind: 'Lease', group: 'coordination.k8s.io', version: 'v1', namespaced: true, subresources: [], mergeKeys: META_MERGE_KEYS },
  { name: 'replicasets', singular: 'replicaset', kind: 'ReplicaSet', group: 'apps', version: 'v1', namespaced: true, shortNames: ['rs'], categories: ['all'], subresources: ['status', 'scale'], mergeKeys: WORKLOAD_MERGE_KEYS },
  { name: 'daemonsets', singular: 'daemonset', kind: 'DaemonSet', group: 'apps', version: 'v1', namespaced: true, shortNames: ['ds'], categories: ['all'], subresources: ['status'], mergeKeys: WORKLOAD_MERGE_KEYS },
  { name: 'statefulsets', singular: 'statefulset', kind: 'StatefulSet', group: 'apps', version: 'v1', namespaced: true, shortNames: ['sts'], categories: ['all'], subresources: ['status', 'scale'], mergeKeys: WORKLOAD_MERGE_KEYS },
  { name: 'controllerrevisions', singular: 'controllerrevision', kind: 'ControllerRevision', group: 'apps', version: 'v1', namespaced: true, subresources: [], mergeKeys: META_MERGE_KEYS },
  { name: 'deployments', singular: 'deployment', kind: 'Deployment', group: 'apps', version: 'v1', namespaced: true, shortNames: ['deploy'], categories: ['all'], subresources: ['status', 'scale'], mergeKeys: WORKLOAD_MERGE_KEYS },
  // batch/v1 Jobs orphan their pods when a DELETE names no propagationPolicy (kubectl always names one).
  { name: 'jobs', singular: 'job', kind: 'Job', group: 'batch', version: 'v1', namespaced: true, categories: ['all'], subresources: ['status'], mergeKeys: WORKLOAD_MERGE_KEYS, defaultPropagation: 'Orphan' },
  { name: 'cronjobs', singular: 'cronjob', kind: 'CronJob', group: 'batch', version: 'v1', namespaced: true, shortNames: ['cj'], categories: ['all'], subresources: ['status'], mergeKeys: CRONJOB_MERGE_KEYS },
  { name: 'horizontalpodautoscalers', singular: 'horizontalpodautoscaler', kind: 'HorizontalPodAutoscaler', group: 'autoscaling', version: 'v2', namespaced: true, shortNames: ['hpa'], categories: ['all'], subresources: ['status'], mergeKeys: META_MERGE_KEYS },
  { name: 'poddisruptionbudgets', singular: 'poddisruptionbudget', kind: 'PodDisruptionBudget', group: 'policy', version: 'v1', namespaced: true, shortNames: ['pdb'], subresources: ['status'], mergeKeys: META_MERGE_KEYS },
  { name: 'storageclasses', singular: 'storageclass', kind: 'StorageClass', group: 'storage.k8s.io', version: 'v1', namespaced: false, shortNames: ['sc'], subresources: [], mergeKeys: META_MERGE_KEYS },
  { name: 'services', singular: 'service', kind: 'Service', group: '', version: 'v1', namespaced: true, shortNames: ['svc'], categories: ['all'], subresources: ['status'], mergeKeys: SERVICE_MERGE_KEYS },
  { name: 'endpoints', singular: 'endpoints', kind: 'Endpoints', group: '', version: 'v1', namespaced: true, shortNames: ['ep'], subresources: [], mergeKeys: META_MERGE_KEYS },
  { name: 'endpointslices', singular: 'endpointslice', kind: 'EndpointSlice', group: 'discovery.k8s.io', version: 'v1', namespaced: true, subresources: [], mergeKeys: META_MERGE_KEYS },
  { name: 'serviceaccounts', singular: 'serviceaccount', kind: 'ServiceAccount', group: '', version: 'v1', namespaced: true, shortNames: ['sa'], subresources: ['token'], mergeKeys: META_MERGE_KEYS },
  { name: 'roles', singular: 'role', kind: 'Role', group: 'rbac.authorization.k8s.io', version: 'v1', namespaced: true, subresources: [], mergeKeys: META_MERGE_KEYS },
  { name: 'rolebindings', singular: 'rolebinding', kind: 'RoleBinding', group: 'rbac.authorization.k8s.io', version: 'v1', namespaced: true, subresources: [], mergeKeys: META_MERGE_KEYS },
  { name: 'clusterroles', singular: 'clusterrole', kind: 'ClusterRole', group: 'rbac.authorization.k8s.io', version: 'v1', namespaced: false, subresources: [], mergeKeys: META_MERGE_KEYS },
  { name: 'clusterrolebindings', singular: 'clusterrolebinding', kind: 'ClusterRoleBinding', group: 'rbac.authorization.k8s.io', version: 'v1', namespaced: false, subresources: [], mergeKeys: META_MERGE_KEYS },
  { name: 'selfsubjectaccessreviews', singular: 'selfsubjectaccessreview', kind: 'SelfSubjectAccessReview', group: 'authorization.k8s.io', version: 'v1', namespaced: false, subresources: [], mergeKeys: META_MERGE_KEYS, verbs: ['create'], virtual: true },
  { name: 'selfsubjectrulesreviews', singular: 'selfsubjectrulesreview', kind: 'SelfSubjectRulesReview', group: 'authorization.k8s.io', version: 'v1', namespaced: false, subresources: [], mergeKeys: META_MERGE_KEYS, verbs: ['create'], virtual: true },
  { name: 'subjectaccessreviews', singular: 'subjectaccessreview', kind: 'SubjectAccessReview', group: 'authorization.k8s.io', version: 'v1', namespaced: false, subresources: [], mergeKeys: META_MERGE_KEYS, verbs: ['create'], virtual: true },
  { name: 'localsubjectaccessreviews', singular: 'localsubjectaccessreview', kind: 'LocalSubjectAccessReview', group: 'authorization.k8s.io', version: 'v1', namespaced: true, subresources: [], mergeKeys: META_MERGE_KEYS, verbs: ['create'], virtual: true },
  { name: 'selfsubjectreviews', singular: 'selfsubjectreview', kind: 'SelfSubjectReview', group: 'authentication.k8s.io', version: 'v1', namespaced: false, subresources: [], mergeKeys: META_MERGE_KEYS, verbs: ['create'], virtual: true },
  { name: 'runtimeclasses', singular: 'runtimeclass', kind: 'RuntimeClass', group: 'node.k8s.io', version: 'v1', namespaced: false, subresources: [], mergeKeys: META_MERGE_KEYS },
];

export const apiVersionOf = (r: ResourceDef) => (r.group ? `${r.group}/${r.version}` : r.version);

/** A new object of kind r: kind, apiVersion, and the metadata the server owns (uid, creationTimestamp, generation). */
export function withNewMeta(r: ResourceDef, obj: KObj, ns: string): KObj {
  const meta = obj.metadata ?? {};
  return {
    kind: r.kind,
    apiVersion: apiVersionOf(r),
    ...obj,
    metadata: { ...meta, ...(r.namespaced ? { namespace: ns } : {}), uid: newUid(), creationTimestamp: now(), generation: 1 },
  };
}

export function resourceOfKind(apiVersion: string, kind: string): ResourceDef | undefined {
  return RESOURCES.find((r) => r.kind === kind && apiVersionOf(r) === apiVersion);
}

export function findResource(group: string, version: string, name: string): ResourceDef | undefined {
  return RESOURCES.find((r) => r.group === group && r.version === version && r.name === name);
}

export const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
export const microNow = () => new Date().toISOString().replace(/Z$/, '000Z');

export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const MAX_ANNOTATIONS = 262144;

export function invalid(r: ResourceDef, name: string, causes: Cause[]): ApiError {
  const msg = causes.map((c) => `${c.field}: ${c.message}`).join(', ');
  return new ApiError(422, 'Invalid', `${r.kind} "${name}" is invalid: ${causes.length > 1 ? `[${msg}]` : msg}`, { name, group: r.group, kind: r.kind, causes: causes.map((c) => ({ reason: c.reason, message: c.message, field: c.field })) });
}

function validateName(name: string, namespaced: boolean, kind: string, causes: Cause[]): void {
  const re = kind === 'Namespace' ? DNS1123_LABEL : DNS1123_SUBDOMAIN;
  const max = kind === 'Namespace' ? 63 : 253;
  if (name.length > max || !re.test(name)) {
    causes.push({ field: 'metadata.name', reason: 'FieldValueInvalid', message: `Invalid value: "${name}": a lowercase RFC 1123 ${kind === 'Namespace' ? 'label' : 'subdomain'} must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '${re.source.slice(1, -1)}')` });
  }
  void namespaced;
}

export function validateMeta(meta: KObj, kind: string, namespaced: boolean, causes: Cause[]): void {
  validateName(String(meta.name ?? ''), namespaced, kind, causes);
  const ann = meta.annotations ?? {};
  if (typeof ann !== 'object' || Array.isArray(ann)) causes.push({ field: 'metadata.annotations', reason: 'FieldValueTypeInvalid', message: 'Invalid value: must be a map of strings' });
  else {
    let total = 0;
    for (const [k, v] of Object.entries(ann)) total += k.length + String(v).length;
    if (total > MAX_ANNOTATIONS) causes.push({ field: 'metadata.annotations', reason: 'FieldValueTooLong', message: `Too long: must have at most ${MAX_ANNOTATIONS} bytes` });
  }
  for (const [k, v] of Object.entries<any>(meta.labels ?? {})) {
    if (typeof v !== 'string' || v.length > 63 || !LABEL_VALUE.test(v)) causes.push({ field: `metadata.labels`, reason: 'FieldValueInvalid', message: `Invalid value: "${v}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')` });
    void k;
  }
}

export function newUid(): string {
  return randomUUID();
}
