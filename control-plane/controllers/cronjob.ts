import type { Logger } from '../../common/log.js';
import { ApiError } from '../resources.js';
import type { KObj, Store } from '../store.js';
import { KindController, controllerRef, controllerUid, type ApiClient } from './client.js';
import type { EventRecorder } from './events.js';
import { latestScheduled, parseSchedule } from '../kinds/cron.js';

const COMPONENT = 'cronjob-controller';
const SCHEDULED_TIMESTAMP = 'batch.kubernetes.io/cronjob-scheduled-timestamp';

const conditionTrue = (job: KObj, type: string) => (job.status?.conditions ?? []).some((c: KObj) => c.type === type && c.status === 'True');
const finishedAt = (job: KObj) => Date.parse(job.status?.completionTime ?? (job.status?.conditions ?? []).find((c: KObj) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True')?.lastTransitionTime ?? job.metadata.creationTimestamp) || 0;
const rfc3339 = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

/**
 * The CronJob controller (kube-controller-manager's cronjob-controller v2): at each scheduled
 * minute (the latest one missed, if several were: the control plane was down) a Job named
 * `<cronjob>-<minutes since the epoch>` from the job template, unless the CronJob is suspended,
 * the start is later than startingDeadlineSeconds, or concurrencyPolicy Forbid finds one still
 * running (Replace deletes it first). Finished Jobs beyond the history limits are deleted,
 * oldest first. Status: active, lastScheduleTime, lastSuccessfulTime.
 */
export class CronJobController extends KindController {
  constructor(store: Store, log: Logger, private readonly events: EventRecorder, private readonly client: ApiClient) {
    super(store, log, 'cronjobs', ['jobs'], 1000);
  }

  protected sync(cj: KObj): void {
    if (cj.metadata.deletionTimestamp) return;
    const ns = cj.metadata.namespace;
    const spec = cj.spec ?? {};
    let jobs = this.store.list('jobs', ns).filter((j) => controllerUid(j) === cj.metadata.uid && !j.metadata.deletionTimestamp);
    const status: KObj = structuredClone(cj.status ?? {});
    const finished = (j: KObj) => conditionTrue(j, 'Complete') || conditionTrue(j, 'Failed');
    for (const j of jobs) {
      if (conditionTrue(j, 'Complete')) {
        const t = finishedAt(j);
        if (!status.lastSuccessfulTime || Date.parse(status.lastSuccessfulTime) < t) status.lastSuccessfulTime = rfc3339(t);
      }
    }
    // history limits, oldest first
    for (const [ok, limit] of [[true, spec.successfulJobsHistoryLimit ?? 3], [false, spec.failedJobsHistoryLimit ?? 1]] as const) {
      const done = jobs.filter((j) => (ok ? conditionTrue(j, 'Complete') : conditionTrue(j, 'Failed'))).sort((a, b) => finishedAt(a) - finishedAt(b));
      for (const j of done.slice(0, Math.max(0, done.length - limit))) {
        this.client.delete('jobs', ns, j.metadata.name, { propagationPolicy: 'Background', uid: j.metadata.uid });
        this.events.record(cj, 'Normal', 'SuccessfulDelete', `Deleted job ${j.metadata.name}`, COMPONENT);
        jobs = jobs.filter((x) => x !== j);
      }
    }
    let active = jobs.filter((j) => !finished(j));
    if (!spec.suspend) {
      const since = Date.parse(status.lastScheduleTime ?? cj.metadata.creationTimestamp);
      const due = latestScheduled(parseSchedule(String(spec.schedule)), since, Date.now(), spec.timeZone ?? undefined);
      const late = due !== undefined && typeof spec.startingDeadlineSeconds === 'number' && Date.now() - due > spec.startingDeadlineSeconds * 1000;
      if (due !== undefined && !late) {
        let start = true;
        if (active.length && spec.concurrencyPolicy === 'Forbid') {
          start = false;
          this.events.record(cj, 'Normal', 'JobAlreadyActive', 'Not starting job because prior execution is running and concurrency policy is Forbid', COMPONENT);
          status.lastScheduleTime = rfc3339(due);
        } else if (active.length && spec.concurrencyPolicy === 'Replace') {
          for (const j of active) {
            this.client.delete('jobs', ns, j.metadata.name, { propagationPolicy: 'Background', uid: j.metadata.uid });
            this.events.record(cj, 'Normal', 'SuccessfulDelete', `Deleted job ${j.metadata.name}`, COMPONENT);
          }
          active = [];
        }
        if (start) {
          const tmpl = spec.jobTemplate ?? {};
          const name = `${cj.metadata.name}-${Math.floor(due / 60_000)}`;
          let job: KObj | undefined;
          try {
            job = this.client.create('jobs', ns, {
              apiVersion: 'batch/v1', kind: 'Job',
              metadata: {
                name,
                ...(tmpl.metadata?.labels ? { labels: { ...tmpl.metadata.labels } } : {}),
                annotations: { ...tmpl.metadata?.annotations, [SCHEDULED_TIMESTAMP]: rfc3339(due) },
                ownerReferences: [controllerRef(cj)],
              },
              spec: structuredClone(tmpl.spec ?? {}),
            });
            this.events.record(cj, 'Normal', 'SuccessfulCreate', `Created job ${name}`, COMPONENT);
          } catch (err) {
            if (!(err instanceof ApiError && err.code === 409)) {
              this.events.record(cj, 'Warning', 'FailedCreate', `Error creating job: ${(err as Error).message}`, COMPONENT);
              throw err;
            }
            job = this.store.get('jobs', ns, name); // made before a restart: already counted
          }
          if (job && !active.some((j) => j.metadata.uid === job!.metadata.uid)) active.push(job);
          status.lastScheduleTime = rfc3339(due);
        }
      }
    }
    const refs = active.map((j) => ({ kind: 'Job', namespace: ns, name: j.metadata.name, uid: j.metadata.uid, apiVersion: 'batch/v1', resourceVersion: j.metadata.resourceVersion }));
    if (refs.length) status.active = refs;
    else delete status.active;
    const cur = this.store.get('cronjobs', ns, cj.metadata.name);
    if (!cur || cur.metadata.uid !== cj.metadata.uid) return;
    const strip = (s: KObj) => JSON.stringify({ ...s, active: (s.active ?? []).map((r: KObj) => r.uid) });
    if (strip(status) === strip(cur.status ?? {})) return;
    this.client.updateStatus('cronjobs', ns, { ...cur, status });
  }
}
