/**
 * What makes the pods of an Indexed Job (completionMode: Indexed) as kube's Job
 * controller makes them: the index on the pod, in its environment and hostname,
 * and the compact index lists of the Job's status.
 */
import type { KObj } from '../store.js';

/** The annotation (and label) holding a pod's completion index. */
export const COMPLETION_INDEX = 'batch.kubernetes.io/job-completion-index';
/** How often the index failed before this pod (set only with backoffLimitPerIndex). */
export const INDEX_FAILURE_COUNT = 'batch.kubernetes.io/job-index-failure-count';
export const COMPLETION_INDEX_ENV = 'JOB_COMPLETION_INDEX';
/** Longest generateName (a pod name is at most 63 characters, 5 of them random). */
const MAX_GENERATED_NAME = 58;

/** A pod's completion index, if it has a valid one below `completions`. */
export function indexOf(pod: KObj, completions: number): number | undefined {
  const raw = pod.metadata?.annotations?.[COMPLETION_INDEX] ?? pod.metadata?.labels?.[COMPLETION_INDEX];
  if (typeof raw !== 'string' || !/^(0|[1-9]\d*)$/.test(raw)) return undefined;
  const i = Number(raw);
  return i < completions ? i : undefined;
}

/** `<job>-<index>-`, the job name cut so that the random suffix still fits (kube's podGenerateNameWithIndex). */
export function indexedPodPrefix(job: string, index: number): string {
  const suffix = `-${index}-`;
  const prefix = job + suffix;
  return prefix.length > MAX_GENERATED_NAME ? job.slice(0, MAX_GENERATED_NAME - suffix.length) + suffix : prefix;
}

/**
 * The Job's pod template for one index: the index as annotation and label, hostname
 * `<job>-<index>` (with the template's `subdomain` and a headless Service of that name, a
 * stable DNS name per index), and `JOB_COMPLETION_INDEX` in every container and init container
 * that does not set it itself, through the downward API so the pod carries its own truth.
 */
export function indexedPodTemplate(job: KObj, index: number, failuresSoFar?: number): KObj {
  const template = structuredClone(job.spec.template ?? {});
  const meta = (template.metadata ??= {});
  meta.annotations = { ...meta.annotations, [COMPLETION_INDEX]: String(index) };
  if (failuresSoFar !== undefined) meta.annotations[INDEX_FAILURE_COUNT] = String(failuresSoFar);
  meta.labels = { ...meta.labels, [COMPLETION_INDEX]: String(index) };
  const spec = (template.spec ??= {});
  spec.hostname = `${job.metadata.name}-${index}`;
  for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
    const env: KObj[] = (c.env ??= []);
    if (env.some((e) => e.name === COMPLETION_INDEX_ENV)) continue;
    env.push({ name: COMPLETION_INDEX_ENV, valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: `metadata.annotations['${COMPLETION_INDEX}']` } } });
  }
  return template;
}

/** Indexes as kube writes completedIndexes/failedIndexes: ascending, runs of three or more as `a-b`, e.g. "0-2,4,5". */
export function formatIndexes(indexes: Iterable<number>): string {
  const sorted = [...new Set(indexes)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    const first = sorted[i]!, last = sorted[j]!;
    parts.push(first === last ? `${first}` : last === first + 1 ? `${first},${last}` : `${first}-${last}`);
    i = j + 1;
  }
  return parts.join(',');
}
