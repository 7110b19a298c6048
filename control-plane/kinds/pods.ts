import { cpuMillis, memoryBytes } from '../../common/quantity.js';
import { DNS1123_LABEL, type Cause } from '../resources.js';
import type { KObj } from '../store.js';
import { statusAndDefaults, type KindStrategy } from './strategy.js';

function hasTag(image: string): boolean {
  const noDigest = image.split('@')[0]!;
  const last = noDigest.slice(noDigest.lastIndexOf('/') + 1);
  return last.includes(':');
}

/** kube-apiserver's --default-not-ready-toleration-seconds and --default-unreachable-toleration-seconds. */
export interface DefaultTolerationSeconds { notReady: number; unreachable: number }
export const DEFAULT_TOLERATION_SECONDS: DefaultTolerationSeconds = Object.freeze({ notReady: 300, unreachable: 300 });

/**
 * kube-apiserver's DefaultTolerationSeconds admission: a pod that does not
 * tolerate the node lifecycle's NoExecute taints (not-ready, unreachable)
 * gets a toleration of each for a while, so a node that misses a few
 * heartbeats does not lose its pods at once, and one that stays gone does.
 */
export function admitDefaultTolerations(pod: KObj, seconds: DefaultTolerationSeconds): void {
  const spec = (pod.spec ??= {});
  const tolerations: KObj[] = Array.isArray(spec.tolerations) ? spec.tolerations : [];
  const covered = (key: string) => tolerations.some((t) => typeof t === 'object' && t !== null && (t.effect === undefined || t.effect === '' || t.effect === 'NoExecute') && (t.key === undefined || t.key === '' || t.key === key) && (t.key || t.operator === 'Exists'));
  const add: KObj[] = [];
  if (!covered('node.kubernetes.io/not-ready')) add.push({ key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: seconds.notReady });
  if (!covered('node.kubernetes.io/unreachable')) add.push({ key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: seconds.unreachable });
  if (add.length) spec.tolerations = [...tolerations, ...add];
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

/** Requests and limits must be quantities (kube-apiserver refuses the Pod otherwise). */
function validateResources(pod: KObj, causes: Cause[]): void {
  (pod.spec?.containers ?? []).forEach((c: KObj, i: number) => {
    for (const kind of ['requests', 'limits'] as const) {
      for (const [res, v] of Object.entries<any>(c?.resources?.[kind] ?? {})) {
        try {
          if (res === 'cpu') cpuMillis(v, res);
          else memoryBytes(v, res);
        } catch {
          causes.push({ field: `spec.containers[${i}].resources.${kind}[${res}]`, reason: 'FieldValueInvalid', message: `Invalid value: "${v}": must be a valid quantity` });
        }
      }
    }
  });
}

export const podStrategy: KindStrategy = {
  ...statusAndDefaults(() => ({}), defaultPod),
  validate(pod, causes) {
    validatePod(pod, causes);
    validateResources(pod, causes);
  },
  validateUpdate(pod, cur, causes) {
    const cause = podUpdateCause(cur, pod);
    if (cause) causes.push(cause);
  },
};
