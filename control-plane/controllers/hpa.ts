import type { Logger } from '../../common/log.js';
import { cpuMillis, memoryBytes } from '../../common/quantity.js';
import { resourceOfKind } from '../resources.js';
import type { KObj, Store } from '../store.js';
import type { ApiClient } from './client.js';
import type { EventRecorder } from './events.js';
import type { PodUsage } from '../metrics-api.js';
import { selectorMatches } from '../kinds/workloads.js';

const COMPONENT = 'horizontal-pod-autoscaler';
/** The resources whose spec.replicas and spec.selector the controller scales by. */
const SCALABLE = ['deployments', 'replicasets', 'statefulsets'];
/** kube-controller-manager's --horizontal-pod-autoscaler-tolerance: changes within 10 % are left alone. */
export const TOLERANCE = 0.1;
const now = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

// ------------------------------------------------------------------------- the replica calculator

/** One pod as the calculator sees it: usage and request in the metric's unit (CPU millicores, memory bytes). */
export interface PodSample {
  name: string;
  ready: boolean;
  usage?: number;
  request?: number;
}

export type Target = { type: 'Utilization'; averageUtilization: number } | { type: 'AverageValue'; averageValue: number };

export interface Recommendation {
  replicas: number;
  /** what the ready pods use now: percent of their requests, and the average per pod */
  utilization?: number;
  averageValue: number;
}

/**
 * kube's replica calculator for one resource metric. Pods not Ready count as
 * using nothing when the ready ones ask for more (so a wave of starting pods
 * does not trigger another), and pods without a measurement yet as using
 * nothing when scaling up and exactly the target when scaling down (so they
 * neither push nor hold a decision); a change that only these assumptions
 * would flip, or that is within the tolerance, is no change.
 */
export function replicasFor(current: number, pods: PodSample[], target: Target, tolerance = TOLERANCE): Recommendation | { error: string } {
  const measured = pods.filter((p) => p.ready && p.usage !== undefined);
  const unready = pods.filter((p) => !p.ready);
  const missing = pods.filter((p) => p.ready && p.usage === undefined);
  if (!measured.length) return { error: 'did not receive metrics for any ready pods' };
  const utilizationTarget = target.type === 'Utilization';
  if (utilizationTarget && pods.some((p) => !p.request)) return { error: `missing request for the resource in pod ${pods.find((p) => !p.request)!.name}` };
  const ratioOf = (set: Array<{ usage: number; request?: number }>) => {
    const usage = set.reduce((n, p) => n + p.usage, 0);
    if (target.type === 'Utilization') {
      const requests = set.reduce((n, p) => n + (p.request ?? 0), 0);
      const utilization = (usage * 100) / requests;
      return { ratio: utilization / target.averageUtilization, utilization: Math.round(utilization), averageValue: usage / set.length };
    }
    return { ratio: usage / set.length / target.averageValue, utilization: undefined, averageValue: usage / set.length };
  };
  const seen = ratioOf(measured.map((p) => ({ usage: p.usage!, request: p.request })));
  const report = (replicas: number): Recommendation => ({ replicas, averageValue: seen.averageValue, ...(seen.utilization !== undefined ? { utilization: seen.utilization } : {}) });
  const scaleUpWithUnready = unready.length > 0 && seen.ratio > 1;
  if (!scaleUpWithUnready && missing.length === 0) {
    if (Math.abs(1 - seen.ratio) <= tolerance) return report(current);
    return report(Math.ceil(seen.ratio * measured.length));
  }
  const assumedTarget = (p: PodSample) => (target.type === 'Utilization' ? ((p.request ?? 0) * target.averageUtilization) / 100 : target.averageValue);
  const filled = [
    ...measured.map((p) => ({ usage: p.usage!, request: p.request })),
    ...missing.map((p) => ({ usage: seen.ratio < 1 ? assumedTarget(p) : 0, request: p.request })),
    ...(scaleUpWithUnready ? unready.map((p) => ({ usage: 0, request: p.request })) : []),
  ];
  const next = ratioOf(filled);
  if (Math.abs(1 - next.ratio) <= tolerance || (seen.ratio < 1 && next.ratio > 1) || (seen.ratio > 1 && next.ratio < 1)) return report(current);
  const replicas = Math.ceil(next.ratio * filled.length);
  if ((next.ratio < 1 && replicas > current) || (next.ratio > 1 && replicas < current)) return report(current);
  return report(replicas);
}

// ------------------------------------------------------------------------- behavior

export interface ScalingRules { stabilizationWindowSeconds: number; selectPolicy: 'Max' | 'Min' | 'Disabled'; policies: Array<{ type: 'Pods' | 'Percent'; value: number; periodSeconds: number }> }
/** autoscaling/v2's defaults when an HPA names no behavior. */
export const DEFAULT_SCALE_UP: ScalingRules = { stabilizationWindowSeconds: 0, selectPolicy: 'Max', policies: [{ type: 'Pods', value: 4, periodSeconds: 15 }, { type: 'Percent', value: 100, periodSeconds: 15 }] };
export const DEFAULT_SCALE_DOWN: ScalingRules = { stabilizationWindowSeconds: 300, selectPolicy: 'Max', policies: [{ type: 'Percent', value: 100, periodSeconds: 15 }] };

interface TimedValue { at: number; value: number }

/** The most (or, scaling down, fewest) replicas the rules allow now, given the changes made within each policy's period. */
export function rateLimit(current: number, up: boolean, rules: ScalingRules, changes: TimedValue[], atMs: number): number {
  if (rules.selectPolicy === 'Disabled') return current;
  const limits = rules.policies.map((p) => {
    const moved = changes.filter((c) => c.at > atMs - p.periodSeconds * 1000 && (up ? c.value > 0 : c.value < 0)).reduce((n, c) => n + c.value, 0);
    const start = current - moved;
    if (up) return p.type === 'Pods' ? start + p.value : Math.ceil(start * (1 + p.value / 100));
    return p.type === 'Pods' ? start - p.value : Math.ceil(start * (1 - p.value / 100));
  });
  if (!limits.length) return current;
  const pickMore = (rules.selectPolicy === 'Max') === up;
  const limit = pickMore ? Math.max(...limits) : Math.min(...limits);
  // Changes already made within the period may put the limit behind the current count: then no further change yet.
  return up ? Math.max(limit, current) : Math.min(limit, current);
}

/** The recommendation after the stabilization windows: the lowest of the window when going up, the highest when going down. */
export function stabilize(current: number, desired: number, history: TimedValue[], upWindowS: number, downWindowS: number, atMs: number): number {
  let upRec = desired;
  let downRec = desired;
  for (const r of history) {
    if (r.at > atMs - upWindowS * 1000) upRec = Math.min(upRec, r.value);
    if (r.at > atMs - downWindowS * 1000) downRec = Math.max(downRec, r.value);
  }
  let out = current;
  if (out < upRec) out = upRec;
  if (out > downRec) out = downRec;
  return out;
}

function rulesOf(spec: KObj | undefined, defaults: ScalingRules): ScalingRules {
  if (!spec) return defaults;
  return {
    stabilizationWindowSeconds: spec.stabilizationWindowSeconds ?? defaults.stabilizationWindowSeconds,
    selectPolicy: spec.selectPolicy ?? defaults.selectPolicy,
    policies: spec.policies ?? defaults.policies,
  };
}

// ------------------------------------------------------------------------- the controller

const condition = (type: string, status: 'True' | 'False', reason: string, message: string, prev: KObj[] | undefined): KObj => {
  const old = (prev ?? []).find((c) => c.type === type);
  return { type, status, lastTransitionTime: old && old.status === status ? old.lastTransitionTime : now(), reason, message };
};

/** The pods' usage source (metrics-api.ts in-process, the metrics-server role). */
export type PodUsageSource = (namespace: string) => Promise<PodUsage[]>;

/**
 * The HorizontalPodAutoscaler controller: every sync period, for each HPA, the
 * target's pods' usage against the metrics' targets gives a replica count per
 * metric (the largest wins), held in [minReplicas, maxReplicas], stabilized and
 * rate-limited per spec.behavior (or autoscaling/v2's defaults: up at once, by
 * 4 pods or 100 % per 15 s; down after 300 s of lower recommendations), then
 * written to the target's spec.replicas (Deployment, ReplicaSet, StatefulSet).
 * Status: current/desired replicas, current metrics, lastScaleTime and the
 * conditions AbleToScale, ScalingActive and ScalingLimited; events
 * SuccessfulRescale and FailedGetResourceMetric as kube's.
 */
export class HpaController {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly recommendations = new Map<string, TimedValue[]>();
  private readonly scaleEvents = new Map<string, TimedValue[]>();

  constructor(private readonly store: Store, private readonly log: Logger, private readonly events: EventRecorder, private readonly client: ApiClient, private readonly usage: PodUsageSource, private readonly syncPeriodMs = 15_000) {}

  start(): void {
    this.timer = setInterval(() => void this.pass(), this.syncPeriodMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private async pass(): Promise<void> {
    if (this.running) return; // a slow scrape: skip this tick rather than pile passes up
    this.running = true;
    try {
      const live = new Set<string>();
      for (const hpa of this.store.list('horizontalpodautoscalers')) {
        live.add(hpa.metadata.uid);
        await this.sync(hpa).catch((err) => this.log.error({ err: String(err), hpa: `${hpa.metadata.namespace}/${hpa.metadata.name}` }, 'HPA sync failed'));
      }
      for (const uid of [...this.recommendations.keys()]) if (!live.has(uid)) { this.recommendations.delete(uid); this.scaleEvents.delete(uid); }
    } finally {
      this.running = false;
    }
  }

  private async sync(hpa: KObj): Promise<void> {
    const ns: string = hpa.metadata.namespace;
    const spec = hpa.spec ?? {};
    const ref = spec.scaleTargetRef ?? {};
    const r = resourceOfKind(ref.apiVersion ?? 'apps/v1', ref.kind ?? '');
    const prev: KObj[] | undefined = hpa.status?.conditions;
    const writeStatus = (status: KObj) => {
      const cur = this.store.get('horizontalpodautoscalers', ns, hpa.metadata.name);
      if (!cur || cur.metadata.uid !== hpa.metadata.uid) return;
      const next = { ...status, observedGeneration: cur.metadata.generation ?? 1 };
      if (JSON.stringify(next) !== JSON.stringify(cur.status ?? {})) this.client.updateStatus('horizontalpodautoscalers', ns, { ...cur, status: next });
    };
    const scalable = r !== undefined && SCALABLE.includes(r.name);
    const target = scalable ? this.store.get(r.name, ns, ref.name ?? '') : undefined;
    if (!r || !target) {
      const why = !scalable ? `the HPA controller can scale Deployments, ReplicaSets and StatefulSets, not ${ref.apiVersion ?? ''} ${ref.kind ?? ''}` : `${ref.kind} ${ref.name} not found`;
      this.events.record(hpa, 'Warning', 'FailedGetScale', why, COMPONENT);
      writeStatus({ ...(hpa.status ?? {}), conditions: [condition('AbleToScale', 'False', 'FailedGetScale', `the HPA controller was unable to get the target's current scale: ${why}`, prev)] });
      return;
    }
    const current: number = target.spec?.replicas ?? 1;
    if (current === 0) {
      writeStatus({ currentReplicas: 0, desiredReplicas: 0, conditions: [condition('AbleToScale', 'True', 'SucceededGetScale', 'the HPA controller was able to get the target\'s current scale', prev), condition('ScalingActive', 'False', 'ScalingDisabled', 'scaling is disabled since the replica count of the target is zero', prev)] });
      return;
    }
    const pods = this.store.list('pods', ns).filter((p) => !p.metadata.deletionTimestamp && p.status?.phase !== 'Failed' && p.status?.phase !== 'Succeeded' && selectorMatches(target.spec?.selector, p.metadata.labels));
    const usage = new Map((await this.usage(ns)).map((u) => [u.pod.metadata.uid, u]));
    const currentMetrics: KObj[] = [];
    const proposals: Array<{ replicas: number; metric: string }> = [];
    let failure: string | undefined;
    for (const m of spec.metrics ?? []) {
      const name: 'cpu' | 'memory' = m.resource?.name;
      const t = m.resource?.target ?? {};
      const samples: PodSample[] = pods.map((p) => {
        const u = usage.get(p.metadata.uid);
        const containers: KObj[] = p.spec?.containers ?? [];
        const requests = containers.map((c) => c.resources?.requests?.[name]);
        const request = requests.every((q) => q !== undefined)
          ? requests.reduce((n: number, q) => n + (name === 'cpu' ? cpuMillis(q, 'request') : memoryBytes(q, 'request')), 0)
          : undefined;
        const used = u ? u.containers.reduce((n, c) => n + (name === 'cpu' ? c.cpuNanoCores / 1e6 : c.memoryBytes), 0) : undefined;
        const ready = p.status?.phase === 'Running' && (p.status?.conditions ?? []).some((c: KObj) => c.type === 'Ready' && c.status === 'True');
        return { name: p.metadata.name, ready, ...(used !== undefined ? { usage: used } : {}), ...(request !== undefined ? { request } : {}) };
      });
      const targetSpec: Target = t.type === 'Utilization'
        ? { type: 'Utilization', averageUtilization: t.averageUtilization }
        : { type: 'AverageValue', averageValue: name === 'cpu' ? cpuMillis(t.averageValue, 'averageValue') : memoryBytes(t.averageValue, 'averageValue') };
      const rec = replicasFor(current, samples, targetSpec);
      if ('error' in rec) {
        failure = `failed to get ${name} utilization: ${rec.error}`;
        continue;
      }
      currentMetrics.push({ type: 'Resource', resource: { name, current: { averageValue: name === 'cpu' ? `${Math.round(rec.averageValue)}m` : String(Math.round(rec.averageValue)), ...(rec.utilization !== undefined ? { averageUtilization: rec.utilization } : {}) } } });
      proposals.push({ replicas: rec.replicas, metric: `${name} resource${t.type === 'Utilization' ? ' utilization (percentage of request)' : ''}` });
    }
    if (failure) this.events.record(hpa, 'Warning', 'FailedGetResourceMetric', failure, COMPONENT);
    if (!proposals.length) {
      writeStatus({
        currentReplicas: current, desiredReplicas: hpa.status?.desiredReplicas ?? current, ...(hpa.status?.lastScaleTime ? { lastScaleTime: hpa.status.lastScaleTime } : {}),
        conditions: [condition('AbleToScale', 'True', 'SucceededGetScale', 'the HPA controller was able to get the target\'s current scale', prev), condition('ScalingActive', 'False', 'FailedGetResourceMetric', `the HPA was unable to compute the replica count: ${failure ?? 'no metrics'}`, prev)],
      });
      return;
    }
    const best = proposals.reduce((a, b) => (b.replicas > a.replicas ? b : a));
    const at = Date.now();
    const uid: string = hpa.metadata.uid;
    const history = (this.recommendations.get(uid) ?? []).filter((h) => h.at > at - 3600_000);
    const upRules = rulesOf(spec.behavior?.scaleUp, DEFAULT_SCALE_UP);
    const downRules = rulesOf(spec.behavior?.scaleDown, DEFAULT_SCALE_DOWN);
    const stabilized = stabilize(current, best.replicas, history, upRules.stabilizationWindowSeconds, downRules.stabilizationWindowSeconds, at);
    this.recommendations.set(uid, [...history, { at, value: best.replicas }]);
    const changes = (this.scaleEvents.get(uid) ?? []).filter((e) => e.at > at - 1800_000);
    let desired = stabilized;
    let limited: string | undefined;
    if (desired > current) desired = Math.min(desired, rateLimit(current, true, upRules, changes, at));
    if (desired < current) desired = Math.max(desired, rateLimit(current, false, downRules, changes, at));
    if (desired > spec.maxReplicas) { desired = spec.maxReplicas; limited = 'TooManyReplicas'; }
    if (desired < spec.minReplicas) { desired = spec.minReplicas; limited = 'TooFewReplicas'; }
    let lastScaleTime: string | undefined = hpa.status?.lastScaleTime;
    let able = condition('AbleToScale', 'True', 'ReadyForNewScale', 'recommended size matches current size', prev);
    if (desired !== current) {
      try {
        this.client.update(r.name, ns, { ...target, spec: { ...target.spec, replicas: desired } });
        this.scaleEvents.set(uid, [...changes, { at, value: desired - current }]);
        lastScaleTime = now();
        const reason = desired > current ? `${best.metric} above target` : 'All metrics below target';
        this.events.record(hpa, 'Normal', 'SuccessfulRescale', `New size: ${desired}; reason: ${reason}`, COMPONENT);
        able = condition('AbleToScale', 'True', 'SucceededRescale', `the HPA controller was able to update the target scale to ${desired}`, prev);
      } catch (err) {
        this.events.record(hpa, 'Warning', 'FailedRescale', `New size: ${desired}; error: ${(err as Error).message}`, COMPONENT);
        able = condition('AbleToScale', 'False', 'FailedUpdateScale', `the HPA controller was unable to update the target scale: ${(err as Error).message}`, prev);
        desired = current;
      }
    }
    writeStatus({
      ...(lastScaleTime ? { lastScaleTime } : {}),
      currentReplicas: current,
      desiredReplicas: desired,
      currentMetrics,
      conditions: [
        able,
        condition('ScalingActive', 'True', 'ValidMetricFound', `the HPA was able to successfully calculate a replica count from ${best.metric}`, prev),
        limited
          ? condition('ScalingLimited', 'True', limited, `the desired replica count is ${limited === 'TooManyReplicas' ? 'more than the maximum' : 'less than the minimum'} replica count`, prev)
          : condition('ScalingLimited', 'False', 'DesiredWithinRange', 'the desired count is within the acceptable range', prev),
      ],
    });
  }
}
