import type { Logger } from '../../common/log.js';
import { now } from '../resources.js';
import type { KObj, Store } from '../store.js';
import { KindController, POD_BURST_BATCH_MS, controllerUid, deleteOwnedPod, podActive, podReady, type ApiClient } from './client.js';
import type { EventRecorder } from './events.js';
import { podFromTemplate } from './replicaset.js';

const COMPONENT = 'job-controller';

const conditionTrue = (job: KObj, type: string) => (job.status?.conditions ?? []).some((c: KObj) => c.type === type && c.status === 'True');
const finished = (job: KObj) => conditionTrue(job, 'Complete') || conditionTrue(job, 'Failed');

function cond(type: string, reason: string, message: string): KObj {
  const t = now();
  return { type, status: 'True', lastProbeTime: t, lastTransitionTime: t, reason, message };
}

/**
 * The Job controller (NonIndexed completion mode): runs at most `parallelism` pods at once until
 * `completions` pods have succeeded (condition Complete), or until more than `backoffLimit`
 * pods have failed or `activeDeadlineSeconds` has passed (condition Failed), then stops the
 * pods still running. A suspended Job runs none. Succeeded and failed pods are counted from
 * the pods that exist (pods deleted by hand are not remembered: kube's job-tracking finalizer
 * is not implemented).
 */
export class JobController extends KindController {
  constructor(store: Store, log: Logger, private readonly events: EventRecorder, private readonly client: ApiClient) {
    super(store, log, 'jobs', ['pods'], 1000, POD_BURST_BATCH_MS);
  }

  private deletePods(job: KObj, pods: KObj[]): void {
    for (const p of pods) deleteOwnedPod(this.client, this.events, job, p, COMPONENT);
  }

  protected sync(job: KObj): void {
    if (job.metadata.deletionTimestamp) return;
    const ns = job.metadata.namespace;
    const spec = job.spec ?? {};
    const pods = this.store.list('pods', ns).filter((p) => controllerUid(p) === job.metadata.uid);
    let active = pods.filter(podActive);
    const succeeded = pods.filter((p) => p.status?.phase === 'Succeeded').length;
    const failed = pods.filter((p) => p.status?.phase === 'Failed').length;
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
      const completions: number | undefined = spec.completions ?? undefined;
      const deadline = typeof spec.activeDeadlineSeconds === 'number' && Date.parse(status.startTime) + spec.activeDeadlineSeconds * 1000 <= Date.now();
      const done = completions !== undefined ? succeeded >= completions : succeeded > 0 && active.length === 0;
      if (failed > (spec.backoffLimit ?? 6) || deadline) {
        const [reason, message] = deadline ? ['DeadlineExceeded', 'Job was active longer than specified deadline'] : ['BackoffLimitExceeded', 'Job has reached the specified backoff limit'];
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
      } else {
        const parallelism: number = spec.parallelism ?? 1;
        const want = completions === undefined ? (succeeded > 0 ? 0 : parallelism) : Math.min(parallelism, completions - succeeded);
        if (active.length < want) {
          for (let i = active.length; i < want; i++) {
            try {
              const pod = this.client.create('pods', ns, podFromTemplate(job, spec.template, `${job.metadata.name}-`));
              active.push(pod);
              this.events.record(job, 'Normal', 'SuccessfulCreate', `Created pod: ${pod.metadata.name}`, COMPONENT);
            } catch (err) {
              this.events.record(job, 'Warning', 'FailedCreate', `Error creating: ${(err as Error).message}`, COMPONENT);
              break;
            }
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
    status.ready = active.filter(podReady).length;
    status.terminating = pods.filter((p) => p.metadata.deletionTimestamp && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed').length;
    status.uncountedTerminatedPods ??= {};
    if (conditions.length) status.conditions = conditions;
    if (JSON.stringify(status) === JSON.stringify(prev)) return;
    const cur = this.store.get('jobs', ns, job.metadata.name);
    if (!cur || cur.metadata.uid !== job.metadata.uid) return;
    this.client.updateStatus('jobs', ns, { ...cur, status });
  }
}
