import { randomUUID } from 'node:crypto';
import type { KObj } from './store.js';
import { POD_MERGE_KEYS, NODE_MERGE_KEYS, META_MERGE_KEYS, type MergeKeys } from './patch.js';

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
}

export const RESOURCES: ResourceDef[] = [
  { name: 'pods', singular: 'pod', kind: 'Pod', group: '', version: 'v1', namespaced: true, shortNames: ['po'], categories: ['all'], subresources: ['status', 'binding', 'log'], mergeKeys: POD_MERGE_KEYS },
  { name: 'nodes', singular: 'node', kind: 'Node', group: '', version: 'v1', namespaced: false, shortNames: ['no'], subresources: ['status'], mergeKeys: NODE_MERGE_KEYS },
  { name: 'namespaces', singular: 'namespace', kind: 'Namespace', group: '', version: 'v1', namespaced: false, shortNames: ['ns'], subresources: ['status'], mergeKeys: META_MERGE_KEYS },
  { name: 'secrets', singular: 'secret', kind: 'Secret', group: '', version: 'v1', namespaced: true, subresources: [], mergeKeys: META_MERGE_KEYS },
  { name: 'events', singular: 'event', kind: 'Event', group: '', version: 'v1', namespaced: true, shortNames: ['ev'], subresources: [], mergeKeys: META_MERGE_KEYS },
  { name: 'leases', singular: 'lease', kind: 'Lease', group: 'coordination.k8s.io', version: 'v1', namespaced: true, subresources: [], mergeKeys: META_MERGE_KEYS },
  { name: 'runtimeclasses', singular: 'runtimeclass', kind: 'RuntimeClass', group: 'node.k8s.io', version: 'v1', namespaced: false, subresources: [], mergeKeys: META_MERGE_KEYS },
];

/** Query booleans as kube-apiserver reads them (Go's strconv.ParseBool): 1, t, T, TRUE, true, True. */
export function parseBool(v: string | null): boolean {
  return v !== null && ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v);
}

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

export function findResource(group: string, version: string, name: string): ResourceDef | undefined {
  return RESOURCES.find((r) => r.group === group && r.version === version && r.name === name);
}

export const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
export const microNow = () => new Date().toISOString().replace(/Z$/, '000Z');

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
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

function hasTag(image: string): boolean {
  const noDigest = image.split('@')[0]!;
  const last = noDigest.slice(noDigest.lastIndexOf('/') + 1);
  return last.includes(':');
}

/** Defaults kube-apiserver applies to a new Pod. */
export function defaultPod(pod: KObj): void {
  const spec = (pod.spec ??= {});
  spec.restartPolicy ??= 'Always';
  spec.terminationGracePeriodSeconds ??= 30;
  spec.dnsPolicy ??= 'ClusterFirst';
  spec.schedulerName ??= 'default-scheduler';
  spec.securityContext ??= {};
  spec.enableServiceLinks ??= true;
  spec.preemptionPolicy ??= 'PreemptLowerPriority';
  spec.priority ??= 0;
  spec.tolerations ??= [
    { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
    { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
  ];
  for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
    if (!c || typeof c !== 'object') continue;
    if (typeof c.image === 'string') c.imagePullPolicy ??= !hasTag(c.image) || c.image.split('@')[0]!.endsWith(':latest') ? 'Always' : 'IfNotPresent';
    c.terminationMessagePath ??= '/dev/termination-log';
    c.terminationMessagePolicy ??= 'File';
    c.resources ??= {};
    for (const p of c.ports ?? []) if (p && typeof p === 'object') p.protocol ??= 'TCP';
  }
  pod.status ??= {};
  pod.status.phase ??= 'Pending';
  pod.status.qosClass ??= qosClass(spec);
}

function qosClass(spec: KObj): string {
  const cs: any[] = spec.containers ?? [];
  let any = false, guaranteed = cs.length > 0;
  for (const c of cs) {
    const req = c?.resources?.requests ?? {}, lim = c?.resources?.limits ?? {};
    if (Object.keys(req).length || Object.keys(lim).length) any = true;
    if (!lim.cpu || !lim.memory || (req.cpu && req.cpu !== lim.cpu) || (req.memory && req.memory !== lim.memory)) guaranteed = false;
  }
  return guaranteed ? 'Guaranteed' : any ? 'Burstable' : 'BestEffort';
}

export function validatePod(pod: KObj, causes: Cause[]): void {
  const spec = pod.spec ?? {};
  const containers = spec.containers;
  if (!Array.isArray(containers) || containers.length === 0) causes.push({ field: 'spec.containers', reason: 'FieldValueRequired', message: 'Required value' });
  const names = new Set<string>();
  for (const [list, field] of [[spec.initContainers ?? [], 'spec.initContainers'], [containers ?? [], 'spec.containers']] as const) {
    if (!Array.isArray(list)) continue;
    list.forEach((c: any, i: number) => {
      const f = `${field}[${i}]`;
      if (!c?.name) causes.push({ field: `${f}.name`, reason: 'FieldValueRequired', message: 'Required value' });
      else if (!DNS1123_LABEL.test(c.name) || c.name.length > 63) causes.push({ field: `${f}.name`, reason: 'FieldValueInvalid', message: `Invalid value: "${c.name}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')` });
      else if (names.has(c.name)) causes.push({ field: `${f}.name`, reason: 'FieldValueDuplicate', message: `Duplicate value: "${c.name}"` });
      else names.add(c.name);
      if (!c?.image || typeof c.image !== 'string' || !c.image.trim()) causes.push({ field: `${f}.image`, reason: 'FieldValueRequired', message: 'Required value' });
      if (c?.imagePullPolicy && !['Always', 'IfNotPresent', 'Never'].includes(c.imagePullPolicy)) causes.push({ field: `${f}.imagePullPolicy`, reason: 'FieldValueNotSupported', message: `Unsupported value: "${c.imagePullPolicy}": supported values: "Always", "IfNotPresent", "Never"` });
    });
  }
  if (!['Always', 'OnFailure', 'Never'].includes(spec.restartPolicy)) causes.push({ field: 'spec.restartPolicy', reason: 'FieldValueNotSupported', message: `Unsupported value: "${spec.restartPolicy}": supported values: "Always", "OnFailure", "Never"` });
  if (typeof spec.terminationGracePeriodSeconds !== 'number' || spec.terminationGracePeriodSeconds < 0) causes.push({ field: 'spec.terminationGracePeriodSeconds', reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(spec.terminationGracePeriodSeconds)}: must be greater than or equal to 0` });
  if (spec.nodeSelector !== undefined && (typeof spec.nodeSelector !== 'object' || Array.isArray(spec.nodeSelector))) causes.push({ field: 'spec.nodeSelector', reason: 'FieldValueTypeInvalid', message: 'Invalid value: must be a map of strings' });
}

const ALLOWED_POD_UPDATE = 'pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)';

function diffLines(a: unknown, b: unknown, at = 'spec'): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) => diffLines((a as any)[k], (b as any)[k], Array.isArray(a) ? `${at}[${k}]` : `${at}.${k}`));
  }
  return [`  ${at}: -${JSON.stringify(a) ?? '<unset>'} +${JSON.stringify(b) ?? '<unset>'}`];
}

/** Pod spec immutability as in ValidatePodUpdate. Returns a cause or undefined. */
export function podUpdateCause(oldPod: KObj, newPod: KObj): Cause | undefined {
  const oldSpec = oldPod.spec ?? {}, newSpec = newPod.spec ?? {};
  const mutated = JSON.parse(JSON.stringify(oldSpec));
  const copyImages = (field: 'containers' | 'initContainers') => {
    const o: any[] = mutated[field] ?? [], n: any[] = newSpec[field] ?? [];
    if (o.length !== n.length) return;
    o.forEach((c, i) => { if (n[i]?.image) c.image = n[i].image; });
  };
  copyImages('containers');
  copyImages('initContainers');
  if (newSpec.activeDeadlineSeconds !== undefined) mutated.activeDeadlineSeconds = newSpec.activeDeadlineSeconds;
  else delete mutated.activeDeadlineSeconds;
  const oldTol: any[] = oldSpec.tolerations ?? [];
  const newTol: any[] = newSpec.tolerations ?? [];
  if (oldTol.every((t) => newTol.some((u) => JSON.stringify(u) === JSON.stringify(t)))) mutated.tolerations = newSpec.tolerations;
  if ((oldSpec.terminationGracePeriodSeconds ?? 0) < 0 && newSpec.terminationGracePeriodSeconds === 1) mutated.terminationGracePeriodSeconds = 1;
  if (JSON.stringify(mutated) === JSON.stringify(newSpec)) return undefined;
  const diff = diffLines(mutated, newSpec).slice(0, 20).join('\n');
  return { field: 'spec', reason: 'FieldValueForbidden', message: `Forbidden: ${ALLOWED_POD_UPDATE}\n${diff}` };
}

export function newUid(): string {
  return randomUUID();
}
