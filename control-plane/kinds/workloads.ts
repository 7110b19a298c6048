/**
 * apps/v1 ReplicaSet and Deployment, batch/v1 Job: defaults and validation as
 * kube-apiserver's apps and batch strategies apply them (the parts this
 * control plane's controllers act on).
 */
import type { Cause } from '../resources.js';
import type { KObj } from '../store.js';
import { validatePod } from './pods.js';
import { statusAndDefaults, type KindStrategy } from './strategy.js';
import { parseSchedule } from './cron.js';

const isObj = (v: unknown): v is KObj => typeof v === 'object' && v !== null && !Array.isArray(v);

function hasTag(image: string): boolean {
  const noDigest = image.split('@')[0]!;
  return noDigest.slice(noDigest.lastIndexOf('/') + 1).includes(':');
}

/**
 * The defaults a PodTemplateSpec gets (SetObjectDefaults_PodTemplateSpec): those of the
 * pod spec, but not what admission adds to pods (tolerations, priority) nor pod status.
 */
export function defaultPodTemplate(template: KObj): void {
  const spec = (template.spec ??= {});
  spec.restartPolicy ??= 'Always';
  spec.terminationGracePeriodSeconds ??= 30;
  spec.dnsPolicy ??= 'ClusterFirst';
  spec.schedulerName ??= 'default-scheduler';
  spec.securityContext ??= {};
  for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
    if (!isObj(c)) continue;
    if (typeof c.image === 'string') c.imagePullPolicy ??= !hasTag(c.image) || c.image.split('@')[0]!.endsWith(':latest') ? 'Always' : 'IfNotPresent';
    c.terminationMessagePath ??= '/dev/termination-log';
    c.terminationMessagePolicy ??= 'File';
    c.resources ??= {};
    for (const p of c.ports ?? []) if (isObj(p)) p.protocol ??= 'TCP';
  }
  template.metadata ??= {};
}

// ------------------------------------------------------------------ label selectors

/** metav1.LabelSelector against a label map (matchLabels and matchExpressions). */
export function selectorMatches(sel: KObj | undefined, labels: Record<string, string> | undefined): boolean {
  if (!isObj(sel)) return false;
  const l = labels ?? {};
  for (const [k, v] of Object.entries<string>(sel.matchLabels ?? {})) if (l[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const v = l[e.key];
    const values: string[] = e.values ?? [];
    switch (e.operator) {
      case 'In': if (v === undefined || !values.includes(v)) return false; break;
      case 'NotIn': if (v !== undefined && values.includes(v)) return false; break;
      case 'Exists': if (v === undefined) return false; break;
      case 'DoesNotExist': if (v !== undefined) return false; break;
      default: return false;
    }
  }
  return true;
}

const selectorEmpty = (sel: KObj) => Object.keys(sel.matchLabels ?? {}).length === 0 && (sel.matchExpressions ?? []).length === 0;

/** The selector as a label-selector string (Scale's status.selector, kubectl's SELECTOR column). */
export function selectorString(sel: KObj | undefined): string {
  if (!isObj(sel)) return '';
  const parts = Object.entries<string>(sel.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of sel.matchExpressions ?? []) {
    if (e.operator === 'In') parts.push(`${e.key} in (${(e.values ?? []).join(',')})`);
    else if (e.operator === 'NotIn') parts.push(`${e.key} notin (${(e.values ?? []).join(',')})`);
    else if (e.operator === 'Exists') parts.push(e.key);
    else if (e.operator === 'DoesNotExist') parts.push(`!${e.key}`);
  }
  return parts.sort().join(',');
}

const goMap = (m: Record<string, string> | undefined) => `map[string]string{${Object.entries(m ?? {}).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(', ')}}`;

function validateSelector(obj: KObj, causes: Cause[], what: string): void {
  const sel = obj.spec?.selector;
  if (!isObj(sel)) {
    causes.push({ field: 'spec.selector', reason: 'FieldValueRequired', message: 'Required value' });
    return;
  }
  if (selectorEmpty(sel)) causes.push({ field: 'spec.selector', reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(sel)}: empty selector is invalid for ${what}` });
  for (const [i, e] of (sel.matchExpressions ?? []).entries()) {
    if (!['In', 'NotIn', 'Exists', 'DoesNotExist'].includes(e?.operator)) causes.push({ field: `spec.selector.matchExpressions[${i}].operator`, reason: 'FieldValueNotSupported', message: `Unsupported value: "${e?.operator}": supported values: "In", "NotIn", "Exists", "DoesNotExist"` });
  }
  const labels = obj.spec?.template?.metadata?.labels;
  if (!selectorEmpty(sel) && !selectorMatches(sel, labels)) {
    causes.push({ field: 'spec.template.metadata.labels', reason: 'FieldValueInvalid', message: `Invalid value: ${goMap(labels)}: \`selector\` does not match template \`labels\`` });
  }
}

function nonNegative(v: unknown, field: string, causes: Cause[]): void {
  if (v === undefined || v === null) return;
  if (typeof v !== 'number' || !Number.isInteger(v)) causes.push({ field, reason: 'FieldValueTypeInvalid', message: `Invalid value: ${JSON.stringify(v)}: must be an integer` });
  else if (v < 0) causes.push({ field, reason: 'FieldValueInvalid', message: `Invalid value: ${v}: must be greater than or equal to 0` });
}

/** The template's pod spec, validated as a pod's, with the causes' fields under spec.template. */
function validateTemplate(obj: KObj, causes: Cause[], restartPolicies: string[]): void {
  const template = obj.spec?.template;
  if (!isObj(template)) {
    causes.push({ field: 'spec.template', reason: 'FieldValueRequired', message: 'Required value' });
    return;
  }
  const podCauses: Cause[] = [];
  validatePod({ spec: template.spec ?? {} }, podCauses);
  for (const c of podCauses) {
    if (c.field === 'spec.restartPolicy') continue; // checked below with the kind's own allowed values
    causes.push({ ...c, field: c.field.replace(/^spec\b/, 'spec.template.spec') });
  }
  const rp = template.spec?.restartPolicy;
  if (!restartPolicies.includes(rp)) {
    causes.push({ field: 'spec.template.spec.restartPolicy', reason: rp ? 'FieldValueNotSupported' : 'FieldValueRequired', message: rp ? `Unsupported value: "${rp}": supported values: ${restartPolicies.map((p) => `"${p}"`).join(', ')}` : `Required value: valid values: ${restartPolicies.map((p) => `"${p}"`).join(', ')}` });
  }
  if (template.spec?.activeDeadlineSeconds !== undefined && restartPolicies.includes('Always')) {
    causes.push({ field: 'spec.template.spec.activeDeadlineSeconds', reason: 'FieldValueForbidden', message: 'Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported' });
  }
}

function selectorImmutable(obj: KObj, cur: KObj, causes: Cause[]): void {
  if (JSON.stringify(obj.spec?.selector) !== JSON.stringify(cur.spec?.selector)) {
    causes.push({ field: 'spec.selector', reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(obj.spec?.selector)}: field is immutable` });
  }
}

// ------------------------------------------------------------------ int-or-percent

const PERCENT = /^(\d+)%$/;

/** An IntOrString (maxSurge, maxUnavailable) against a total, rounding up or down as the deployment controller does. */
export function scaledValue(v: unknown, total: number, roundUp: boolean): number {
  if (typeof v === 'number') return v;
  const m = PERCENT.exec(String(v ?? '0'));
  if (!m) return 0;
  const x = (Number(m[1]) * total) / 100;
  return roundUp ? Math.ceil(x) : Math.floor(x);
}

function validateIntOrPercent(v: unknown, field: string, causes: Cause[]): void {
  if (v === undefined) return;
  if (typeof v === 'number') return nonNegative(v, field, causes);
  if (typeof v !== 'string' || !PERCENT.exec(v)) {
    causes.push({ field, reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(v)}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')` });
  } else if (Number(PERCENT.exec(v)![1]) > 100) causes.push({ field, reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(v)}: must not be greater than 100%` });
}

// ------------------------------------------------------------------ ReplicaSet

function defaultReplicaSet(rs: KObj): void {
  rs.spec ??= {};
  rs.spec.replicas ??= 1;
  rs.spec.minReadySeconds ??= undefined;
  if (rs.spec.minReadySeconds === undefined) delete rs.spec.minReadySeconds;
  if (isObj(rs.spec.template)) defaultPodTemplate(rs.spec.template);
}

export const replicaSetStrategy: KindStrategy = {
  ...statusAndDefaults(() => ({ replicas: 0 }), defaultReplicaSet),
  validate(rs, causes) {
    nonNegative(rs.spec?.replicas, 'spec.replicas', causes);
    nonNegative(rs.spec?.minReadySeconds, 'spec.minReadySeconds', causes);
    validateSelector(rs, causes, 'replicaset');
    validateTemplate(rs, causes, ['Always']);
  },
  validateUpdate: selectorImmutable,
};

// ------------------------------------------------------------------ Deployment

function defaultDeployment(d: KObj): void {
  const spec = (d.spec ??= {});
  spec.replicas ??= 1;
  spec.strategy ??= {};
  spec.strategy.type ??= 'RollingUpdate';
  if (spec.strategy.type === 'RollingUpdate') {
    spec.strategy.rollingUpdate ??= {};
    spec.strategy.rollingUpdate.maxUnavailable ??= '25%';
    spec.strategy.rollingUpdate.maxSurge ??= '25%';
  }
  spec.revisionHistoryLimit ??= 10;
  spec.progressDeadlineSeconds ??= 600;
  if (isObj(spec.template)) defaultPodTemplate(spec.template);
}

export const deploymentStrategy: KindStrategy = {
  ...statusAndDefaults(() => ({}), defaultDeployment),
  validate(d, causes) {
    const spec = d.spec ?? {};
    nonNegative(spec.replicas, 'spec.replicas', causes);
    nonNegative(spec.minReadySeconds, 'spec.minReadySeconds', causes);
    nonNegative(spec.revisionHistoryLimit, 'spec.revisionHistoryLimit', causes);
    nonNegative(spec.progressDeadlineSeconds, 'spec.progressDeadlineSeconds', causes);
    if (typeof spec.progressDeadlineSeconds === 'number' && typeof spec.minReadySeconds === 'number' && spec.progressDeadlineSeconds <= spec.minReadySeconds) {
      causes.push({ field: 'spec.progressDeadlineSeconds', reason: 'FieldValueInvalid', message: `Invalid value: ${spec.progressDeadlineSeconds}: must be greater than minReadySeconds` });
    }
    validateSelector(d, causes, 'deployment');
    validateTemplate(d, causes, ['Always']);
    const st = spec.strategy ?? {};
    if (!['RollingUpdate', 'Recreate'].includes(st.type)) {
      causes.push({ field: 'spec.strategy.type', reason: 'FieldValueNotSupported', message: `Unsupported value: "${st.type}": supported values: "Recreate", "RollingUpdate"` });
    } else if (st.type === 'Recreate' && st.rollingUpdate !== undefined && st.rollingUpdate !== null) {
      causes.push({ field: 'spec.strategy.rollingUpdate', reason: 'FieldValueForbidden', message: "Forbidden: may not be specified when strategy `type` is 'Recreate'" });
    } else if (st.type === 'RollingUpdate') {
      const ru = st.rollingUpdate ?? {};
      validateIntOrPercent(ru.maxUnavailable, 'spec.strategy.rollingUpdate.maxUnavailable', causes);
      validateIntOrPercent(ru.maxSurge, 'spec.strategy.rollingUpdate.maxSurge', causes);
      if (scaledValue(ru.maxSurge, 100, true) === 0 && scaledValue(ru.maxUnavailable, 100, false) === 0 && (ru.maxSurge === 0 || ru.maxSurge === '0%') && (ru.maxUnavailable === 0 || ru.maxUnavailable === '0%')) {
        causes.push({ field: 'spec.strategy.rollingUpdate.maxUnavailable', reason: 'FieldValueInvalid', message: 'Invalid value: 0: may not be 0 when `maxSurge` is 0' });
      }
    }
    if (spec.rollbackTo !== undefined) causes.push({ field: 'spec.rollbackTo', reason: 'FieldValueForbidden', message: 'Forbidden: rollbackTo is not part of apps/v1; use kubectl rollout undo' });
  },
  validateUpdate: selectorImmutable,
};

// ------------------------------------------------------------------ Job

export const JOB_UID_LABELS = ['batch.kubernetes.io/controller-uid', 'controller-uid'];
export const JOB_NAME_LABELS = ['batch.kubernetes.io/job-name', 'job-name'];

function defaultJob(job: KObj): void {
  const spec = (job.spec ??= {});
  if (spec.completions === undefined && spec.parallelism === undefined) {
    spec.completions = 1;
    spec.parallelism = 1;
  }
  spec.parallelism ??= 1;
  // With a per-index limit the Job-wide one is off unless given (kube: math.MaxInt32).
  spec.backoffLimit ??= typeof spec.backoffLimitPerIndex === 'number' ? 2147483647 : 6;
  spec.completionMode ??= 'NonIndexed';
  spec.suspend ??= false;
  spec.podReplacementPolicy ??= 'TerminatingOrFailed';
  spec.manualSelector ??= undefined;
  if (spec.manualSelector === undefined) delete spec.manualSelector;
  if (isObj(spec.template)) {
    defaultPodTemplate(spec.template);
    // restartPolicy has no default for Jobs: "Always" (the template default) is refused by validation
  }
}

/** Most completions (and parallelism) of an Indexed Job, as kube-apiserver (completionModeIndexedMax). */
const INDEXED_MAX = 100_000;

/** completionMode, and the per-index failure fields that only an Indexed Job may have (kube's validateJobSpec). */
function validateCompletionMode(spec: KObj, causes: Cause[]): void {
  if (spec.completionMode !== 'NonIndexed' && spec.completionMode !== 'Indexed') {
    causes.push({ field: 'spec.completionMode', reason: 'FieldValueNotSupported', message: `Unsupported value: "${spec.completionMode}": supported values: "NonIndexed", "Indexed"` });
    return;
  }
  nonNegative(spec.backoffLimitPerIndex, 'spec.backoffLimitPerIndex', causes);
  nonNegative(spec.maxFailedIndexes, 'spec.maxFailedIndexes', causes);
  const has = (f: string) => spec[f] !== undefined && spec[f] !== null;
  if (spec.completionMode === 'Indexed') {
    if (!has('completions')) causes.push({ field: 'spec.completions', reason: 'FieldValueRequired', message: 'Required value: when completion mode is Indexed' });
    else if (spec.completions > INDEXED_MAX) causes.push({ field: 'spec.completions', reason: 'FieldValueInvalid', message: `Invalid value: ${spec.completions}: must be less than or equal to ${INDEXED_MAX} when completion mode is Indexed` });
    if (spec.parallelism > INDEXED_MAX) causes.push({ field: 'spec.parallelism', reason: 'FieldValueInvalid', message: `Invalid value: ${spec.parallelism}: must be less than or equal to ${INDEXED_MAX} when completion mode is Indexed` });
  } else if (has('backoffLimitPerIndex')) {
    causes.push({ field: 'spec.backoffLimitPerIndex', reason: 'FieldValueForbidden', message: 'Forbidden: requires indexed completion mode' });
  }
  if (has('maxFailedIndexes')) {
    if (!has('backoffLimitPerIndex')) causes.push({ field: 'spec.maxFailedIndexes', reason: 'FieldValueForbidden', message: 'Forbidden: cannot set maxFailedIndexes when backoffLimitPerIndex is not set' });
    else if (has('completions') && spec.maxFailedIndexes > spec.completions) causes.push({ field: 'spec.maxFailedIndexes', reason: 'FieldValueInvalid', message: `Invalid value: ${spec.maxFailedIndexes}: must be less than or equal to completions` });
  }
}

export const jobStrategy: KindStrategy = {
  statusSubresource: true,
  prepareForCreate(job) {
    job.status = {};
    const spec = (job.spec ??= {});
    // The Job's own selector and pod labels (generated unless manualSelector), keyed by the Job's uid.
    if (!spec.manualSelector && isObj(spec.template)) {
      const uid = job.metadata.uid;
      const name = job.metadata.name;
      spec.selector = { matchLabels: { 'batch.kubernetes.io/controller-uid': uid } };
      const t = spec.template;
      t.metadata ??= {};
      t.metadata.labels = { ...(t.metadata.labels ?? {}), 'batch.kubernetes.io/controller-uid': uid, 'batch.kubernetes.io/job-name': name, 'controller-uid': uid, 'job-name': name };
    }
    defaultJob(job);
  },
  prepareForUpdate: defaultJob,
  validate(job, causes) {
    const spec = job.spec ?? {};
    nonNegative(spec.parallelism, 'spec.parallelism', causes);
    nonNegative(spec.completions, 'spec.completions', causes);
    nonNegative(spec.backoffLimit, 'spec.backoffLimit', causes);
    nonNegative(spec.activeDeadlineSeconds, 'spec.activeDeadlineSeconds', causes);
    validateCompletionMode(spec, causes);
    for (const f of ['podFailurePolicy', 'successPolicy', 'ttlSecondsAfterFinished', 'managedBy']) {
      if (spec[f] !== undefined && spec[f] !== null) causes.push({ field: `spec.${f}`, reason: 'FieldValueForbidden', message: `Forbidden: spec.${f} is not implemented by this control plane's Job controller yet; remove it` });
    }
    validateSelector(job, causes, 'job');
    validateTemplate(job, causes, ['OnFailure', 'Never']);
  },
  validateUpdate(job, cur, causes) {
    selectorImmutable(job, cur, causes);
    for (const f of ['completions', 'completionMode']) {
      if (JSON.stringify(job.spec?.[f]) !== JSON.stringify(cur.spec?.[f])) causes.push({ field: `spec.${f}`, reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(job.spec?.[f])}: field is immutable` });
    }
    if (JSON.stringify(job.spec?.template) !== JSON.stringify(cur.spec?.template)) {
      causes.push({ field: 'spec.template', reason: 'FieldValueInvalid', message: 'Invalid value: field is immutable' });
    }
  },
};

// ------------------------------------------------------------------ CronJob

function defaultCronJob(cj: KObj): void {
  const spec = (cj.spec ??= {});
  spec.concurrencyPolicy ??= 'Allow';
  spec.suspend ??= false;
  spec.successfulJobsHistoryLimit ??= 3;
  spec.failedJobsHistoryLimit ??= 1;
  const js = spec.jobTemplate?.spec;
  if (isObj(js)) {
    js.backoffLimit ??= typeof js.backoffLimitPerIndex === 'number' ? 2147483647 : 6;
    js.completionMode ??= 'NonIndexed';
    js.suspend ??= false;
    js.podReplacementPolicy ??= 'TerminatingOrFailed';
    if (isObj(js.template)) defaultPodTemplate(js.template);
  }
}

function validTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

export const cronJobStrategy: KindStrategy = {
  ...statusAndDefaults(() => ({}), defaultCronJob),
  validate(cj, causes) {
    const spec = cj.spec ?? {};
    if (!spec.schedule) causes.push({ field: 'spec.schedule', reason: 'FieldValueRequired', message: 'Required value' });
    else {
      try {
        parseSchedule(String(spec.schedule));
      } catch (err) {
        causes.push({ field: 'spec.schedule', reason: 'FieldValueInvalid', message: `Invalid value: "${spec.schedule}": ${(err as Error).message}` });
      }
    }
    if (spec.timeZone !== undefined && spec.timeZone !== null && (typeof spec.timeZone !== 'string' || !validTimeZone(spec.timeZone))) {
      causes.push({ field: 'spec.timeZone', reason: 'FieldValueInvalid', message: `Invalid value: "${spec.timeZone}": unknown time zone ${spec.timeZone}` });
    }
    if (!['Allow', 'Forbid', 'Replace'].includes(spec.concurrencyPolicy)) causes.push({ field: 'spec.concurrencyPolicy', reason: 'FieldValueNotSupported', message: `Unsupported value: "${spec.concurrencyPolicy}": supported values: "Allow", "Forbid", "Replace"` });
    nonNegative(spec.startingDeadlineSeconds, 'spec.startingDeadlineSeconds', causes);
    nonNegative(spec.successfulJobsHistoryLimit, 'spec.successfulJobsHistoryLimit', causes);
    nonNegative(spec.failedJobsHistoryLimit, 'spec.failedJobsHistoryLimit', causes);
    const jobCauses: Cause[] = [];
    const js = spec.jobTemplate?.spec;
    if (!isObj(js)) causes.push({ field: 'spec.jobTemplate.spec', reason: 'FieldValueRequired', message: 'Required value' });
    else {
      jobStrategy.validate!({ spec: { ...js, selector: js.selector ?? { matchLabels: { 'cronjob-template': 'x' } }, template: { ...js.template, metadata: { ...js.template?.metadata, labels: { ...js.template?.metadata?.labels, 'cronjob-template': 'x' } } } } }, jobCauses);
      // the Job's selector is generated when the Job is made; only the rest of its spec is checked here
      for (const c of jobCauses) if (!c.field.startsWith('spec.selector') && !c.field.startsWith('spec.template.metadata.labels')) causes.push({ ...c, field: c.field.replace(/^spec\b/, 'spec.jobTemplate.spec') });
    }
  },
};

// ------------------------------------------------------------------ DaemonSet

function defaultDaemonSet(ds: KObj): void {
  const spec = (ds.spec ??= {});
  spec.updateStrategy ??= {};
  spec.updateStrategy.type ??= 'RollingUpdate';
  if (spec.updateStrategy.type === 'RollingUpdate') {
    spec.updateStrategy.rollingUpdate ??= {};
    spec.updateStrategy.rollingUpdate.maxUnavailable ??= 1;
    spec.updateStrategy.rollingUpdate.maxSurge ??= 0;
  }
  spec.revisionHistoryLimit ??= 10;
  if (isObj(spec.template)) defaultPodTemplate(spec.template);
}

export const daemonSetStrategy: KindStrategy = {
  ...statusAndDefaults(() => ({ currentNumberScheduled: 0, numberMisscheduled: 0, desiredNumberScheduled: 0, numberReady: 0 }), defaultDaemonSet),
  validate(ds, causes) {
    const spec = ds.spec ?? {};
    nonNegative(spec.minReadySeconds, 'spec.minReadySeconds', causes);
    nonNegative(spec.revisionHistoryLimit, 'spec.revisionHistoryLimit', causes);
    validateSelector(ds, causes, 'daemonset');
    validateTemplate(ds, causes, ['Always']);
    const st = spec.updateStrategy ?? {};
    if (!['RollingUpdate', 'OnDelete'].includes(st.type)) causes.push({ field: 'spec.updateStrategy.type', reason: 'FieldValueNotSupported', message: `Unsupported value: "${st.type}": supported values: "OnDelete", "RollingUpdate"` });
    else if (st.type === 'RollingUpdate') {
      const ru = st.rollingUpdate ?? {};
      validateIntOrPercent(ru.maxUnavailable, 'spec.updateStrategy.rollingUpdate.maxUnavailable', causes);
      validateIntOrPercent(ru.maxSurge, 'spec.updateStrategy.rollingUpdate.maxSurge', causes);
      if (ru.maxSurge !== undefined && ru.maxSurge !== 0 && ru.maxSurge !== '0%') causes.push({ field: 'spec.updateStrategy.rollingUpdate.maxSurge', reason: 'FieldValueForbidden', message: 'Forbidden: maxSurge is not implemented by this control plane\'s DaemonSet controller yet; use maxUnavailable' });
      if (scaledValue(ru.maxUnavailable, 100, false) === 0 && (ru.maxUnavailable === 0 || ru.maxUnavailable === '0%')) causes.push({ field: 'spec.updateStrategy.rollingUpdate.maxUnavailable', reason: 'FieldValueInvalid', message: 'Invalid value: 0: cannot be 0 when maxSurge is 0' });
    }
  },
  validateUpdate: selectorImmutable,
};

// ------------------------------------------------------------------ StatefulSet

function defaultStatefulSet(sts: KObj): void {
  const spec = (sts.spec ??= {});
  spec.replicas ??= 1;
  spec.podManagementPolicy ??= 'OrderedReady';
  spec.updateStrategy ??= {};
  spec.updateStrategy.type ??= 'RollingUpdate';
  if (spec.updateStrategy.type === 'RollingUpdate') {
    spec.updateStrategy.rollingUpdate ??= {};
    spec.updateStrategy.rollingUpdate.partition ??= 0;
  }
  spec.revisionHistoryLimit ??= 10;
  spec.persistentVolumeClaimRetentionPolicy ??= {};
  spec.persistentVolumeClaimRetentionPolicy.whenDeleted ??= 'Retain';
  spec.persistentVolumeClaimRetentionPolicy.whenScaled ??= 'Retain';
  if (isObj(spec.template)) defaultPodTemplate(spec.template);
}

/** What apps/v1 lets an update of a StatefulSet's spec change (ValidateStatefulSetUpdate). */
const STATEFULSET_MUTABLE = ['replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy', 'minReadySeconds'];

export const statefulSetStrategy: KindStrategy = {
  ...statusAndDefaults(() => ({ replicas: 0, availableReplicas: 0 }), defaultStatefulSet),
  validate(sts, causes) {
    const spec = sts.spec ?? {};
    nonNegative(spec.replicas, 'spec.replicas', causes);
    nonNegative(spec.minReadySeconds, 'spec.minReadySeconds', causes);
    nonNegative(spec.revisionHistoryLimit, 'spec.revisionHistoryLimit', causes);
    nonNegative(spec.ordinals?.start, 'spec.ordinals.start', causes);
    validateSelector(sts, causes, 'statefulset');
    validateTemplate(sts, causes, ['Always']);
    if (!['OrderedReady', 'Parallel'].includes(spec.podManagementPolicy)) {
      causes.push({ field: 'spec.podManagementPolicy', reason: 'FieldValueInvalid', message: `Invalid value: "${spec.podManagementPolicy}": must be 'OrderedReady' or 'Parallel'` });
    }
    const st = spec.updateStrategy ?? {};
    if (!['RollingUpdate', 'OnDelete'].includes(st.type)) {
      causes.push({ field: 'spec.updateStrategy.type', reason: 'FieldValueNotSupported', message: `Unsupported value: "${st.type}": supported values: "OnDelete", "RollingUpdate"` });
    } else if (st.type === 'OnDelete' && st.rollingUpdate !== undefined && st.rollingUpdate !== null) {
      causes.push({ field: 'spec.updateStrategy.rollingUpdate', reason: 'FieldValueInvalid', message: "Invalid value: only allowed for updateStrategy 'RollingUpdate'" });
    } else if (st.type === 'RollingUpdate') {
      nonNegative(st.rollingUpdate?.partition, 'spec.updateStrategy.rollingUpdate.partition', causes);
      if (st.rollingUpdate?.maxUnavailable !== undefined && st.rollingUpdate?.maxUnavailable !== null) {
        causes.push({ field: 'spec.updateStrategy.rollingUpdate.maxUnavailable', reason: 'FieldValueForbidden', message: 'Forbidden: maxUnavailable (the MaxUnavailableStatefulSet alpha feature) is not implemented by this control plane; pods are updated one at a time' });
      }
    }
    for (const [policy, value] of Object.entries<string>(spec.persistentVolumeClaimRetentionPolicy ?? {})) {
      if (!['Retain', 'Delete'].includes(value)) causes.push({ field: `spec.persistentVolumeClaimRetentionPolicy.${policy}`, reason: 'FieldValueNotSupported', message: `Unsupported value: "${value}": supported values: "Delete", "Retain"` });
    }
    const podVolumes = new Set((spec.template?.spec?.volumes ?? []).map((v: KObj) => v?.name));
    for (const [i, t] of (Array.isArray(spec.volumeClaimTemplates) ? spec.volumeClaimTemplates : []).entries()) {
      const at = `spec.volumeClaimTemplates[${i}]`;
      if (!isObj(t) || !t.metadata?.name) causes.push({ field: `${at}.metadata.name`, reason: 'FieldValueRequired', message: 'Required value' });
      else if (podVolumes.has(t.metadata.name)) causes.push({ field: `${at}.metadata.name`, reason: 'FieldValueInvalid', message: `Invalid value: "${t.metadata.name}": a volume of the pod template has this name; the claim's volume would replace it` });
      if (!isObj(t?.spec) || !Array.isArray(t.spec.accessModes) || t.spec.accessModes.length === 0) causes.push({ field: `${at}.spec.accessModes`, reason: 'FieldValueRequired', message: 'Required value: at least 1 access mode is required' });
      if (t?.spec?.resources?.requests?.storage === undefined) causes.push({ field: `${at}.spec.resources[storage]`, reason: 'FieldValueRequired', message: 'Required value' });
    }
  },
  validateUpdate(sts, cur, causes) {
    const strip = (spec: KObj | undefined) => Object.fromEntries(Object.entries(spec ?? {}).filter(([k]) => !STATEFULSET_MUTABLE.includes(k)));
    if (JSON.stringify(strip(sts.spec)) !== JSON.stringify(strip(cur.spec))) {
      causes.push({ field: 'spec', reason: 'FieldValueForbidden', message: `Forbidden: updates to statefulset spec for fields other than ${STATEFULSET_MUTABLE.map((f) => `'${f}'`).join(', ').replace(/, ([^,]*)$/, ' and $1')} are forbidden` });
    }
  },
};

// ------------------------------------------------------------------ ControllerRevision

/** apps/v1 ControllerRevision: `revision` ≥ 0, `data` frozen once made (kube's ValidateControllerRevision[Update]). */
export const controllerRevisionStrategy: KindStrategy = {
  validate(rev, causes) {
    if (rev.revision === undefined || rev.revision === null) rev.revision = 0;
    nonNegative(rev.revision, 'revision', causes);
  },
  validateUpdate(rev, cur, causes) {
    if (JSON.stringify(rev.data) !== JSON.stringify(cur.data)) causes.push({ field: 'data', reason: 'FieldValueInvalid', message: 'Invalid value: field is immutable' });
  },
};
