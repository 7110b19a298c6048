/**
 * The kubelet's prober and lifecycle hooks, in the agent. Probes need the
 * agent (they judge a container; systemd only restarts what exits), so they
 * stop while it is down and start again with it, as the kubelet's do: pods
 * keep running meanwhile, they are only not re-judged.
 *
 * One worker per container run and probe kind. A run is a runtime pod and a
 * container start (its start time and restart count): a restarted container
 * gets fresh workers, with readiness back to false and startup not yet
 * passed, as the kubelet resets them. Results feed the pod status (ready,
 * started; agent/pod-status.ts) through `view`.
 */
import type { V1Container, V1Pod, V1Probe } from '@kubernetes/client-node';
import type { Logger } from '../common/log.js';
import type { AppStatus, PodStatus } from '../runtime-api/status.js';
import type { EventRecorder } from './events.js';
import { runAction, type Action, type ActionTarget } from './probe-actions.js';
import type { ContainerRuntime } from './runtime.js';

export type ProbeKind = 'liveness' | 'readiness' | 'startup';
const KIND_FIELD = { liveness: 'livenessProbe', readiness: 'readinessProbe', startup: 'startupProbe' } as const;
const KIND_WORD = { liveness: 'Liveness', readiness: 'Readiness', startup: 'Startup' } as const;

/** A probe's settings with the API server's defaults. */
export interface ProbeTiming { initialDelayMs: number; periodMs: number; timeoutMs: number; successThreshold: number; failureThreshold: number }

export function probeTiming(p: V1Probe): ProbeTiming {
  return {
    initialDelayMs: (p.initialDelaySeconds ?? 0) * 1000,
    periodMs: (p.periodSeconds ?? 10) * 1000,
    timeoutMs: (p.timeoutSeconds ?? 1) * 1000,
    successThreshold: p.successThreshold ?? 1,
    failureThreshold: p.failureThreshold ?? 3,
  };
}

/**
 * The kubelet's thresholds: a result flips only after successThreshold
 * successes, or failureThreshold failures, in a row. `result` starts as the
 * kind's initial value (readiness and startup: false; liveness: true).
 */
export class ProbeCounter {
  private successes = 0;
  private failures = 0;
  constructor(private readonly timing: Pick<ProbeTiming, 'successThreshold' | 'failureThreshold'>, public result: boolean) {}

  /** Count one probe; true when the result flipped. */
  record(ok: boolean): boolean {
    if (ok) { this.successes++; this.failures = 0; } else { this.failures++; this.successes = 0; }
    const next = ok ? (this.successes >= this.timing.successThreshold ? true : this.result) : (this.failures >= this.timing.failureThreshold ? false : this.result);
    const flipped = next !== this.result;
    this.result = next;
    return flipped;
  }

  /** failureThreshold failures in a row: what makes a liveness or startup probe kill (a startup probe starts false without having failed). */
  get failedOut(): boolean {
    return this.failures >= this.timing.failureThreshold;
  }
}

export interface ContainerView {
  /** The startup probe has succeeded in this run (or there is none). */
  started: boolean;
  /** The readiness probe passes (or there is none). */
  ready: boolean;
}

interface Worker {
  kind: ProbeKind;
  runKey: string;
  counter: ProbeCounter;
  timer?: NodeJS.Timeout;
  /** A failure killed this run: no more probes for it. */
  killed: boolean;
  lastEvent?: { message: string; at: number };
}

/** How often the same failure message is told again as an event (the kubelet aggregates repeats into one). */
const EVENT_REPEAT_MS = 60_000;

export class Prober {
  private readonly workers = new Map<string, Worker>();
  /** uid/container → the run whose postStart hook ran (or runs). */
  private readonly postStartRan = new Map<string, string>();
  /** Bumped whenever a result that the pod status shows changes. */
  version = 0;
  private closed = false;

  constructor(private readonly runtime: ContainerRuntime, private readonly events: EventRecorder, private readonly log: Logger,
    private readonly onChange: () => void, private readonly hostIP: string) {}

  /** Containers with probes or hooks: the pod's containers and its sidecars. */
  private static probed(pod: V1Pod): V1Container[] {
    return [...(pod.spec?.initContainers ?? []).filter((c) => c.restartPolicy === 'Always'), ...(pod.spec?.containers ?? [])];
  }

  /** Start, keep or stop the workers of one pod, from what the runtime says now. Cheap when nothing changed. */
  sync(pod: V1Pod, rp: PodStatus | undefined): void {
    if (this.closed) return;
    const uid = pod.metadata!.uid!;
    for (const c of Prober.probed(pod)) {
      const app = rp?.apps.find((a) => a.name === c.name);
      const running = rp !== undefined && app?.state === 'running' && !pod.metadata?.deletionTimestamp;
      const runKey = running ? `${rp!.uuid}/${app!.restartCount}/${app!.startedAt ?? 0}` : '';
      for (const kind of ['startup', 'liveness', 'readiness'] as const) {
        const probe = c[KIND_FIELD[kind]];
        const key = `${uid}/${c.name}/${kind}`;
        const w = this.workers.get(key);
        if (!probe || !running) {
          if (w) this.stopWorker(key, w);
          continue;
        }
        if (w?.runKey === runKey) continue;
        if (w) this.stopWorker(key, w);
        this.startWorker(key, kind, probe, pod, c, rp!, app!, runKey);
      }
      if (running && c.lifecycle?.postStart && this.postStartRan.get(`${uid}/${c.name}`) !== runKey) {
        this.postStartRan.set(`${uid}/${c.name}`, runKey);
        void this.postStart(pod, c, rp!);
      }
    }
  }

  view(pod: V1Pod, container: string): ContainerView {
    const uid = pod.metadata?.uid ?? '';
    const startup = this.workers.get(`${uid}/${container}/startup`);
    const readiness = this.workers.get(`${uid}/${container}/readiness`);
    const c = Prober.probed(pod).find((x) => x.name === container);
    return {
      started: c?.startupProbe ? startup?.counter.result === true : true,
      ready: c?.readinessProbe ? readiness?.counter.result === true : true,
    };
  }

  forget(uid: string): void {
    for (const [key, w] of this.workers) if (key.startsWith(`${uid}/`)) this.stopWorker(key, w);
    for (const key of this.postStartRan.keys()) if (key.startsWith(`${uid}/`)) this.postStartRan.delete(key);
  }

  close(): void {
    this.closed = true;
    for (const [key, w] of this.workers) this.stopWorker(key, w);
  }

  private stopWorker(key: string, w: Worker): void {
    clearTimeout(w.timer);
    this.workers.delete(key);
    if (w.kind !== 'liveness') this.changed();
  }

  private changed(): void {
    this.version++;
    this.onChange();
  }

  private target(pod: V1Pod, c: V1Container, rp: PodStatus): ActionTarget {
    const hostNetwork = pod.spec?.hostNetwork === true || rp.hostNetwork === true;
    return { runtime: this.runtime, podId: rp.uuid, container: c, podIP: hostNetwork ? this.hostIP : rp.podIPs?.[0] };
  }

  private startWorker(key: string, kind: ProbeKind, probe: V1Probe, pod: V1Pod, c: V1Container, rp: PodStatus, app: AppStatus, runKey: string): void {
    const timing = probeTiming(probe);
    // The same run the API's status already judged (the agent restarted): keep its verdict, so a restart of
    // the agent does not flip ready pods to not ready until their next probe.
    const reported = [...pod.status?.containerStatuses ?? [], ...pod.status?.initContainerStatuses ?? []].find((s) => s.name === c.name);
    const sameRun = reported?.restartCount === app.restartCount && reported?.state?.running?.startedAt !== undefined && app.startedAt !== undefined
      && Math.abs(new Date(reported.state.running.startedAt as unknown as string).getTime() - app.startedAt) < 1000;
    const initial = kind === 'liveness' ? true : sameRun ? (kind === 'readiness' ? reported!.ready === true : reported!.started === true) : false;
    const w: Worker = { kind, runKey, counter: new ProbeCounter(timing, initial), killed: false };
    this.workers.set(key, w);
    if (kind !== 'liveness') this.changed();
    const startedAt = app.startedAt ?? Date.now();
    const fieldPath = `spec.${pod.spec?.containers.some((x) => x.name === c.name) ? 'containers' : 'initContainers'}{${c.name}}`;
    const tick = async () => {
      if (this.workers.get(key) !== w || w.killed) return;
      // A startup probe that has passed for this run is done (the kubelet stops it).
      if (kind === 'startup' && w.counter.result) return;
      // Liveness and readiness wait for the startup probe, as the kubelet's do.
      const startupKey = `${pod.metadata!.uid}/${c.name}/startup`;
      const held = kind !== 'startup' && c.startupProbe && this.workers.get(startupKey)?.counter.result !== true;
      if (!held) {
        const r = await runAction(probe as Action, this.target(pod, c, rp), timing.timeoutMs);
        if (this.workers.get(key) !== w || w.killed) return;
        const flipped = w.counter.record(r.ok);
        if (!r.ok) this.failed(pod, w, kind, r.message, fieldPath);
        if (flipped && kind !== 'liveness') this.changed();
        if (w.counter.failedOut && kind !== 'readiness') {
          w.killed = true;
          await this.kill(pod, c, rp, kind, probe, fieldPath);
          return;
        }
        // A passed startup probe is done for this run (the kubelet stops it).
        if (kind === 'startup' && w.counter.result) return;
      }
      w.timer = setTimeout(() => void tick(), timing.periodMs);
    };
    w.timer = setTimeout(() => void tick(), Math.max(0, startedAt + timing.initialDelayMs - Date.now()));
  }

  private failed(pod: V1Pod, w: Worker, kind: ProbeKind, message: string, fieldPath: string): void {
    const now = Date.now();
    if (w.lastEvent && w.lastEvent.message === message && now - w.lastEvent.at < EVENT_REPEAT_MS) return;
    w.lastEvent = { message, at: now };
    this.events.emit(pod, 'Warning', 'Unhealthy', `${KIND_WORD[kind]} probe failed: ${message}`, fieldPath);
  }

  /** A failed liveness or startup probe: the kubelet's events, the preStop hook, then the kill; restartPolicy decides the rest. */
  private async kill(pod: V1Pod, c: V1Container, rp: PodStatus, kind: ProbeKind, probe: V1Probe, fieldPath: string): Promise<void> {
    const what = kind === 'liveness' ? 'liveness' : 'startup';
    this.events.emit(pod, 'Normal', 'Killing', `Container ${c.name} failed ${what} probe, will be restarted`, fieldPath);
    let grace = probe.terminationGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
    grace = await this.preStop(pod, c, rp, grace);
    try {
      await this.runtime.killContainer(rp.uuid, c.name, grace);
    } catch (err) {
      this.log.warn({ pod: `${pod.metadata?.namespace}/${pod.metadata?.name}`, container: c.name, err: String(err) }, 'killing a container after a failed probe failed');
    }
  }

  private async postStart(pod: V1Pod, c: V1Container, rp: PodStatus): Promise<void> {
    const fieldPath = `spec.containers{${c.name}}`;
    const r = await runAction(c.lifecycle!.postStart as Action, this.target(pod, c, rp), HOOK_TIMEOUT_MS);
    if (r.ok || this.closed) return;
    this.events.emit(pod, 'Warning', 'FailedPostStartHook', `PostStartHook failed: ${r.message}`, fieldPath);
    // The kubelet kills a container whose postStart hook failed.
    this.events.emit(pod, 'Normal', 'Killing', `FailedPostStartHook`, fieldPath);
    await this.runtime.killContainer(rp.uuid, c.name, pod.spec?.terminationGracePeriodSeconds ?? 30).catch(() => undefined);
  }

  /**
   * Run a container's preStop hook, if it has one and runs, within the grace
   * period; returns what is left of the grace period for the stop, at least
   * 2 s (the kubelet's minimum after a hook).
   */
  async preStop(pod: V1Pod, c: V1Container, rp: PodStatus, graceSeconds: number): Promise<number> {
    const hook = c.lifecycle?.preStop;
    const app = rp.apps.find((a) => a.name === c.name);
    if (!hook || app?.state !== 'running' || graceSeconds <= 0) return graceSeconds;
    const started = Date.now();
    const r = await runAction(hook as Action, this.target(pod, c, rp), graceSeconds * 1000);
    if (!r.ok) this.events.emit(pod, 'Warning', 'FailedPreStopHook', `PreStopHook failed: ${r.message}`, `spec.containers{${c.name}}`);
    return Math.max(2, Math.ceil(graceSeconds - (Date.now() - started) / 1000));
  }

  /** preStop of every running container of a pod, in parallel; returns the grace period left for the stop. */
  async preStopAll(pod: V1Pod, rp: PodStatus, graceSeconds: number): Promise<number> {
    const hooked = Prober.probed(pod).filter((c) => c.lifecycle?.preStop);
    if (!hooked.length || graceSeconds <= 0) return graceSeconds;
    const left = await Promise.all(hooked.map((c) => this.preStop(pod, c, rp, graceSeconds)));
    return Math.min(...left);
  }
}

/** The kubelet gives postStart no timeout of its own; this one keeps a hung hook from holding a worker for ever. */
const HOOK_TIMEOUT_MS = 5 * 60_000;
