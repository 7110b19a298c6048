import type { Logger } from '../../common/log.js';
import { now } from '../resources.js';
import type { KObj, Store } from '../store.js';
import { KindController, POD_BURST_BATCH_MS, podCreationAllowed, controllerUid, deleteOwnedPod, podActive, podReady, type ApiClient } from './client.js';
import type { EventRecorder } from './events.js';
import { podFromTemplate } from './replicaset.js';
import { formatIndexes, indexOf, indexedPodTemplate, indexedPodPrefix } from './indexed-job.js';

const COMPONENT = 'job-controller';

const conditionTrue = (job: KObj, type: string) => (job.status?.conditions ?? []).some((c: KObj) => c.type === type && c.status === 'True');
const finished = (job: KObj) => conditionTrue(job, 'Complete') || conditionTrue(job, 'Failed');

function cond(type: string, reason: string, message: string): KObj {
  const t = now();
  return { type, status: 'True', lastProbeTime: t, lastTransitionTime: t, reason, message };
}

/**
 * The Job controller. NonIndexed: runs at most `parallelism` pods at once until
 * `completions` pods have succeeded (condition Complete). Indexed: one pod per
 * index 0…completions-1 (`<job>-<index>-<random>`, the index in the
 * `batch.kubernetes.io/job-completion-index` annotation and label, in
 * `JOB_COMPLETION_INDEX` and in the hostname `<job>-<index>`), lowest pending
 * index first, a failed index run again, until every index has a succeeded pod
 * (`status.completedIndexes` "0-2,4"); with `backoffLimitPerIndex` an index
 * that failed more often than that is given up (`status.failedIndexes`) and the
 * Job fails once more than `maxFailedIndexes` are, or when no index is left to
 * run. Either mode fails (condition Failed) once more than `backoffLimit` pods
 * have failed or `activeDeadlineSeconds` has passed, then stops the pods still
 * running. A suspended Job runs none. Succeeded and failed pods are counted from
 * the pods that exist (pods deleted by hand are not remembered: kube's
 * job-tracking finalizer is not implemented).
 */
export class JobController extends KindController {
  constructor(store: Store, log: Logger, private readonly events: EventRecorder, private readonly client: ApiClient) {
    super(store, log, 'jobs', ['pods'], 1000, POD_BURST_BATCH_MS);
  }

  private deletePods(job: KObj, pods: KObj[]): void {
    for (const p of pods) deleteOwnedPod(this.client, this.events, job, p, COMPONENT);
  }

  /** Undefined when it was not made: refused (the event says why) or paced (the loop comes back for it). */
  private createPod(job: KObj, template: KObj, generateName: string): KObj | undefined {
    if (!podCreationAllowed(this.client, this)) return undefined;
    try {
      const pod = this.client.create('pods', job.metadata.namespace, podFromTemplate(job, template, generateName));
      this.events.record(job, 'Normal', 'SuccessfulCreate', `Created pod: ${pod.metadata.name}`, COMPONENT);
      return pod;
    } catch (err) {
      this.events.record(job, 'Warning', 'FailedCreate', `Error creating: ${(err as Error).message}`, COMPONENT);
      return undefined;
    }
  }

  protected sync(job: KObj): void {
    if (job.metadata.deletionTimestamp) return;
    const ns = job.metadata.namespace;
    const spec = job.spec ?? {};
    const indexed = spec.completionMode === 'Indexed';
    const completions: number | undefined = spec.completions ?? undefined;
    const pods = this.store.listShared('pods', ns).filter((p) => controllerUid(p) === job.metadata.uid);
    let active = pods.filter(podActive);
    const failed = pods.filter((p) => p.status?.phase === 'Failed').length;
    // Indexed: which indexes have a succeeded pod, and how often each has failed.
    const completedIndexes = new Set<number>();
    const failuresOf = new Map<number, number>();
    if (indexed) {
      for (const p of pods) {
        const i = indexOf(p, completions ?? 0);
        if (i === undefined) continue;
        if (p.status?.phase === 'Succeeded') completedIndexes.add(i);
        else if (p.status?.phase === 'Failed') failuresOf.set(i, (failuresOf.get(i) ?? 0) + 1);
      }
    }
    const perIndexLimit: number | undefined = indexed && typeof spec.backoffLimitPerIndex === 'number' ? spec.backoffLimitPerIndex : undefined;
    const failedIndexes = new Set<number>();
    if (perIndexLimit !== undefined) for (const [i, n] of failuresOf) if (n > perIndexLimit && !completedIndexes.has(i)) failedIndexes.add(i);
    const succeeded = indexed ? completedIndexes.size : pods.filter((p) => p.status?.phase === 'Succeeded').length;
    const prev: KObj = job.status ?? {};
    const status: KObj = { ...structuredClone(prev) };
    const conditions: KObj[] = [...(prev.conditions ?? [])];
    if (finished(job)) {
      if (active.length) this.deletePods(job, active);
      active = [];
    } else if (spec.suspend) {
      if (active.length) this.deletePods(job, active);
      active = [];
      if (!conditionTrue(job, 'Suspended')) {
        conditions.push(cond('Suspended', 'JobSuspended', 'Job suspended'));
        this.events.record(job, 'Normal', 'Suspended', 'Job suspended', COMPONENT);
      }
    } else {
      status.startTime ??= now();
      const deadline = typeof spec.activeDeadlineSeconds === 'number' && Date.parse(status.startTime) + spec.activeDeadlineSeconds * 1000 <= Date.now();
      const done = completions !== undefined ? succeeded >= completions : succeeded > 0 && active.length === 0;
      // Per-index limits: too many indexes given up, or none left to run and some given up.
      const tooManyFailedIndexes = typeof spec.maxFailedIndexes === 'number' && failedIndexes.size > spec.maxFailedIndexes;
      const noIndexLeft = failedIndexes.size > 0 && completions !== undefined && completedIndexes.size + failedIndexes.size >= completions;
      const failure: [string, string] | undefined = deadline ? ['DeadlineExceeded', 'Job was active longer than specified deadline']
        : failed > (spec.backoffLimit ?? 6) ? ['BackoffLimitExceeded', 'Job has reached the specified backoff limit']
          : tooManyFailedIndexes ? ['MaxFailedIndexesExceeded', 'Job has exceeded the specified maximal number of failed indexes']
            : noIndexLeft && !done ? ['FailedIndexes', 'Job has failed indexes'] : undefined;
      if (failure) {
        const [reason, message] = failure;
        this.deletePods(job, active);
        active = [];
        conditions.push(cond('FailureTarget', reason, message), cond('Failed', reason, message));
        this.events.record(job, 'Warning', reason, message, COMPONENT);
      } else if (done) {
        this.deletePods(job, active);
        active = [];
        conditions.push(cond('SuccessCriteriaMet', 'CompletionsReached', 'Reached expected number of succeeded pods'), cond('Complete', 'CompletionsReached', 'Reached expected number of succeeded pods'));
        status.completionTime = now();
        this.events.record(job, 'Normal', 'Completed', 'Job completed', COMPONENT);
      } else if (indexed) {
        active = this.manageIndexed(job, active, completedIndexes, failedIndexes, failuresOf);
      } else {
        const parallelism: number = spec.parallelism ?? 1;
        const want = completions === undefined ? (succeeded > 0 ? 0 : parallelism) : Math.min(parallelism, completions - succeeded);
        if (active.length < want) {
          for (let i = active.length; i < want; i++) {
            const pod = this.createPod(job, spec.template, `${job.metadata.name}-`);
            if (!pod) break;
            active.push(pod);
          }
        } else if (active.length > want) {
          const extra = [...active].sort((a, b) => Date.parse(b.metadata.creationTimestamp) - Date.parse(a.metadata.creationTimestamp)).slice(0, active.length - want);
          this.deletePods(job, extra);
          const gone = new Set(extra.map((p) => p.metadata.uid));
          active = active.filter((p) => !gone.has(p.metadata.uid));
        }
      }
    }
    if (!spec.suspend && conditionTrue({ status: { conditions } }, 'Suspended')) {
      const i = conditions.findIndex((c) => c.type === 'Suspended');
      conditions[i] = { ...conditions[i], status: 'False', reason: 'JobResumed', message: 'Job resumed', lastTransitionTime: now() };
    }
    const set = (k: string, v: number) => { if (v) status[k] = v; else delete status[k]; };
    set('active', active.length);
    set('succeeded', succeeded);
    set('failed', failed);
    if (indexed) {
      if (completedIndexes.size) status.completedIndexes = formatIndexes(completedIndexes);
      else delete status.completedIndexes;
      if (perIndexLimit !== undefined) status.failedIndexes = formatIndexes(failedIndexes);
    }
    status.ready = active.filter(podReady).length;
    status.terminating = pods.filter((p) => p.metadata.deletionTimestamp && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed').length;
    status.uncountedTerminatedPods ??= {};
    if (conditions.length) status.conditions = conditions;
    if (JSON.stringify(status) === JSON.stringify(prev)) return;
    const cur = this.store.get('jobs', ns, job.metadata.name);
    if (!cur || cur.metadata.uid !== job.metadata.uid) return;
    this.client.updateStatus('jobs', ns, { ...cur, status });
  }

  /**
   * One pass of an Indexed Job that is still running: pods without a valid index, a second
   * pod of one index and pods of an index already done are deleted; the lowest indexes
   * neither done, given up nor running get a pod, up to parallelism. Returns the pods active after.
   */
  private manageIndexed(job: KObj, activeBefore: KObj[], completed: Set<number>, givenUp: Set<number>, failuresOf: Map<number, number>): KObj[] {
    const spec = job.spec;
    const completions: number = spec.completions;
    const keep: KObj[] = [];
    const drop: KObj[] = [];
    const running = new Map<number, KObj>();
    for (const p of [...activeBefore].sort((a, b) => Date.parse(a.metadata.creationTimestamp) - Date.parse(b.metadata.creationTimestamp))) {
      const i = indexOf(p, completions);
      if (i === undefined || completed.has(i) || givenUp.has(i) || running.has(i)) drop.push(p);
      else {
        running.set(i, p);
        keep.push(p);
      }
    }
    if (drop.length) this.deletePods(job, drop);
    // A pod being deleted no longer holds its index: its replacement starts at once (podReplacementPolicy TerminatingOrFailed).
    const parallelism: number = spec.parallelism ?? 1;
    for (let i = 0; i < completions && keep.length < parallelism; i++) {
      if (completed.has(i) || givenUp.has(i) || running.has(i)) continue;
      const failures = typeof spec.backoffLimitPerIndex === 'number' ? failuresOf.get(i) ?? 0 : undefined;
      const pod = this.createPod(job, indexedPodTemplate(job, i, failures), indexedPodPrefix(job.metadata.name, i));
      if (!pod) break;
      keep.push(pod);
    }
    return keep;
  }
}
