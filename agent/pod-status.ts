import type { V1ContainerState, V1ContainerStatus, V1Pod, V1PodCondition, V1PodStatus } from '@kubernetes/client-node';
import type { AppStatus, PodStatus, Termination } from '../runtime-api/status.js';
import type { ContainerView } from './prober.js';

/** A container the runtime has not started (yet), and why. */
export interface Waiting {
  reason: string;
  message?: string;
  /** The node refused the pod for good (kubelet admission): it is Failed, never started. */
  rejected?: boolean;
}

const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z') : undefined);

function terminated(t: Termination, containerID: string, startedAt?: number, message?: string): V1ContainerState {
  return { terminated: { exitCode: t.exitCode, signal: t.signal, reason: t.reason, message: message || undefined, finishedAt: iso(t.finishedAt) as unknown as Date, startedAt: iso(startedAt) as unknown as Date, containerID } };
}

function containerStatus(pod: V1Pod, runtimeName: string, podId: string, app: AppStatus, view: ContainerView | undefined, logMessage: string | undefined, waitingReason = 'ContainerCreating'): V1ContainerStatus {
  const spec = [...pod.spec?.containers ?? [], ...pod.spec?.initContainers ?? []].find((c) => c.name === app.name);
  const image = spec?.image ?? app.image.name;
  const containerID = `${runtimeName}://${podId}:${app.name}`;
  let state: V1ContainerState;
  if (app.state === 'running') state = { running: { startedAt: iso(app.startedAt) as unknown as Date } };
  else if (app.state === 'exited' && app.exitCode !== undefined) {
    state = terminated({ exitCode: app.exitCode, signal: app.signal, reason: app.reason ?? 'Error', finishedAt: app.finishedAt ?? Date.now(), invocation: '' }, containerID, undefined, app.terminationMessage ?? logMessage);
  } else state = { waiting: { reason: app.reason ?? waitingReason } };
  const running = app.state === 'running';
  // A completed init container counts as ready (the kubelet's); a running one is ready once its probes say so.
  const initDone = spec?.restartPolicy !== 'Always' && pod.spec?.initContainers?.some((c) => c.name === app.name) && app.state === 'exited' && app.exitCode === 0;
  const started = running && (view?.started ?? true);
  return {
    name: app.name,
    image,
    imageID: app.image.id,
    containerID,
    ready: initDone === true || (started && (view?.ready ?? true)),
    started,
    restartCount: app.restartCount,
    state,
    lastState: app.lastTermination ? terminated(app.lastTermination, containerID) : {},
  };
}

function condition(type: string, ok: boolean, reason?: string): V1PodCondition {
  return { type, status: ok ? 'True' : 'False', reason: ok ? undefined : reason } as V1PodCondition;
}

/** A condition keeps its lastTransitionTime until its status flips. */
function withTransitionTimes(next: V1PodCondition[], previous: V1PodCondition[] | undefined): V1PodCondition[] {
  const now = iso(Date.now()) as unknown as Date;
  return next.map((c) => {
    const before = previous?.find((p) => p.type === c.type);
    return { ...c, lastTransitionTime: before && before.status === c.status ? before.lastTransitionTime ?? now : now };
  });
}

/** Kubernetes' phase rules: Succeeded/Failed only when every container has terminated for good. */
function phaseOf(pod: V1Pod, statuses: V1ContainerStatus[]): V1PodStatus['phase'] {
  const policy = pod.spec?.restartPolicy ?? 'Always';
  if (statuses.some((s) => s.state?.running)) return 'Running';
  const allTerminated = statuses.length > 0 && statuses.every((s) => s.state?.terminated);
  if (!allTerminated) return statuses.some((s) => s.restartCount > 0 || s.lastState?.terminated) ? 'Running' : 'Pending';
  const allSucceeded = statuses.every((s) => s.state?.terminated?.exitCode === 0);
  if (policy === 'Never') return allSucceeded ? 'Succeeded' : 'Failed';
  if (policy === 'OnFailure' && allSucceeded) return 'Succeeded';
  return 'Running';
}

/**
 * The status an API server should show for `pod`, given what the runtime
 * reports (or, before the runtime has it, why its containers wait).
 */
export function podStatusFor(pod: V1Pod, opts: { runtimeName: string; hostIP: string; runtimePod?: PodStatus; waiting?: Waiting; previous?: V1PodStatus; probes?: (container: string) => ContainerView;
  /** FallbackToLogsOnError: the log tail of a container that failed without a message. */
  logMessage?: (container: string) => string | undefined }): V1PodStatus {
  const rp = opts.runtimePod;
  const containers = pod.spec?.containers ?? [];
  const inits = pod.spec?.initContainers ?? [];
  const statusOf = (c: { name: string; image?: string }, waitingReason: string): V1ContainerStatus => {
    const app = rp?.apps.find((a) => a.name === c.name);
    if (app && rp) return containerStatus(pod, opts.runtimeName, rp.uuid, app, opts.probes?.(c.name), opts.logMessage?.(c.name), waitingReason);
    return { name: c.name, image: c.image ?? '', imageID: '', ready: false, started: false, restartCount: 0, state: { waiting: { reason: opts.waiting?.reason ?? waitingReason, message: opts.waiting?.message } } };
  };
  const initStatuses = inits.map((c) => statusOf(c, 'PodInitializing'));
  // Until every init container has completed, an app container that never ran waits in PodInitializing,
  // whatever the runtime says of its unstarted unit (a pod stopped after a failed init container can
  // report it exited), as the kubelet reports it.
  const initsCompleted = inits.every((c, i) => c.restartPolicy === 'Always' || initStatuses[i]!.state?.terminated?.exitCode === 0);
  const neverRan = (name: string) => { const app = rp?.apps.find((a) => a.name === name); return app !== undefined && app.state !== 'running' && !app.startedAt && app.restartCount === 0 && !app.lastTermination; };
  const statuses: V1ContainerStatus[] = containers.map((c) => (!initsCompleted && neverRan(c.name)
    ? { name: c.name, image: c.image ?? '', imageID: '', ready: false, started: false, restartCount: 0, state: { waiting: { reason: 'PodInitializing' } } }
    : statusOf(c, inits.length ? 'PodInitializing' : 'ContainerCreating')));
  // Initialized: every init container completed, every sidecar started (Kubernetes 1.29+).
  const initialized = inits.every((c, i) => (c.restartPolicy === 'Always' ? initStatuses[i]!.started === true || statuses.some((s) => s.state?.running || s.state?.terminated) : initStatuses[i]!.state?.terminated?.exitCode === 0));
  const initFailedForGood = (pod.spec?.restartPolicy ?? 'Always') === 'Never' && initStatuses.some((s, i) => inits[i]!.restartPolicy !== 'Always' && (s.state?.terminated?.exitCode ?? 0) !== 0);
  let phase = phaseOf(pod, statuses);
  if (initFailedForGood) phase = 'Failed';
  else if (!initialized && phase === 'Running' && !statuses.some((s) => s.state?.running)) phase = 'Pending';
  // Sidecars count for readiness too, as the kubelet counts them.
  const sidecars = initStatuses.filter((_, i) => inits[i]!.restartPolicy === 'Always');
  const ready = statuses.length > 0 && statuses.every((s) => s.ready) && sidecars.every((s) => s.ready);
  const terminal = phase === 'Succeeded' || phase === 'Failed';
  const scheduled = opts.previous?.conditions?.find((c) => c.type === 'PodScheduled') ?? condition('PodScheduled', true);
  const hostNetwork = pod.spec?.hostNetwork === true || rp?.hostNetwork === true;
  const status: V1PodStatus = {
    phase,
    conditions: withTransitionTimes([
      // The pod's sandbox (its directory, namespaces and network) exists.
      condition('PodReadyToStartContainers', rp !== undefined && (rp.state === 'running' || rp.state === 'exited')),
      condition('Initialized', initialized || (terminal && !initFailedForGood), 'ContainersNotInitialized'),
      condition('Ready', ready && !terminal, terminal ? 'PodCompleted' : 'ContainersNotReady'),
      condition('ContainersReady', ready && !terminal, terminal ? 'PodCompleted' : 'ContainersNotReady'),
      scheduled,
      // kvm pods: which VM they got; TCG is emulation, not a hardware isolation boundary.
      ...(rp?.vm ? [{ type: 'stevedore.io/VMAcceleration', status: rp.vm.accel === 'kvm' ? 'True' : 'False', reason: rp.vm.accel === 'kvm' ? 'KVM' : 'TCG', message: rp.vm.accelReason } as V1PodCondition] : []),
    ], opts.previous?.conditions),
    hostIP: opts.hostIP,
    hostIPs: [{ ip: opts.hostIP }],
    startTime: (opts.previous?.startTime ?? iso(rp?.createdAt ?? Date.now())) as unknown as Date,
    containerStatuses: statuses,
    ...(inits.length ? { initContainerStatuses: initStatuses } : {}),
    qosClass: opts.previous?.qosClass,
  };
  if (hostNetwork) {
    status.podIP = opts.hostIP;
    status.podIPs = [{ ip: opts.hostIP }];
  } else if (rp?.podIPs?.length) {
    status.podIP = rp.podIPs[0];
    status.podIPs = rp.podIPs.map((ip) => ({ ip }));
  }
  if (opts.waiting && !rp) {
    status.reason = undefined;
    status.message = opts.waiting.message;
    if (opts.waiting.rejected) {
      status.phase = 'Failed';
      status.reason = opts.waiting.reason;
    }
  }
  // Stopped for good while it ran (activeDeadlineSeconds): Failed, with the reason.
  if (opts.waiting?.rejected && rp) {
    status.phase = 'Failed';
    status.reason = opts.waiting.reason;
    status.message = opts.waiting.message;
  }
  return status;
}

/** Compare two statuses ignoring condition timestamps, so unchanged pods are not patched every pass. */
export function sameStatus(a: V1PodStatus | undefined, b: V1PodStatus): boolean {
  const strip = (s: V1PodStatus | undefined) => JSON.stringify(s, (k, v) => (k === 'lastTransitionTime' || k === 'lastProbeTime' ? undefined : v));
  return strip(a) === strip(b);
}
