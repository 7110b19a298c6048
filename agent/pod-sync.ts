import * as path from 'node:path';
import * as k8s from '@kubernetes/client-node';
import type { V1Pod, V1PodStatus } from '@kubernetes/client-node';
import { CniError } from '../cni/index.js';
import type { Logger } from '../common/log.js';
import { ContainerConfigError, HandlerNotOffered, ImageNotFound, PodNotFound, UserError, shouldPull, validatePod, type Pod, type PodStatus, type RegistryKeyring } from '../runtime-api/index.js';
import type { AgentConfig } from './config.js';
import type { EventRecorder } from './events.js';
import { apiStatus, patchAs, type KubeClients } from './kube.js';
import { podStatusFor, sameStatus, type Waiting } from './pod-status.js';
import type { ContainerRuntime } from './runtime.js';
import { chooseStage1, hostAccessAsked, hostAccessRefusal, type Stage1Choice, type Stage1Policy } from './stage1-policy.js';
import { pullSecretsKeyring } from './pull-secrets.js';
import { resolveEnv, type EnvContext } from './env.js';
import { podObjects, type PodObjects } from './pod-objects.js';
import { VolumeManager } from './volumes.js';
import { VolumeSetupError, type VolumeContext } from './volume-sources.js';
import { nodeAllocatable } from './node.js';
import { resolveClaimVolumes } from './claims.js';
import { FlexVolumes } from './flexvolume.js';
import { Prober } from './prober.js';

/** How many of its last statuses a pod record remembers (ContainerCreating, Running, a restart or two). */
const SENT_VIEWS_KEPT = 4;
/** A status without its condition times, as JSON (times are what differ between versions of the same status). */
const statusView = (s: V1PodStatus | undefined) => JSON.stringify(s ?? null, (k, v) => {
  if (k === 'lastTransitionTime' || k === 'lastProbeTime') return undefined;
  // Keys in one order: the server's merge keeps the stored object's order, not the one sent.
  if (v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date)) return Object.fromEntries(Object.keys(v).sort().map((key) => [key, (v as Record<string, unknown>)[key]]));
  return v;
});

/** Runtime pods the agent made carry this annotation (value: node name); others are the operator's own. */
export const MANAGED_BY = 'agent.stevedore.io/node';

interface Backoff { until: number; delayMs: number }

/**
 * What the agent knows of one pod bound here, by UID: one record, dropped
 * whole when the pod is forgotten, so no per-pod state outlives its pod.
 */
interface PodRecord {
  /** The pod as the watch last saw it. */
  pod: V1Pod;
  /** Why it is not running (CreateContainerConfigError, ErrImagePull…), or that it was refused for good. */
  waiting?: Waiting;
  /** When the next start may be tried after a failure. */
  backoff?: Backoff;
  /** The last status sent (serialized), and what it was computed from: identical inputs need no recomputation. */
  reported?: string;
  reportedFrom?: { pod: V1Pod; current: PodStatus | undefined; waiting: Waiting | undefined; probes: string };
  /** The last status sent (parsed back from `reported`): the base of the next one's condition times. */
  sent?: V1PodStatus;
  /** The pod as it was when the last patch was sent. */
  patchedFor?: V1Pod;
  /** The last few statuses sent, without their times (statusView): what the watch may still show of ours. */
  sentViews?: string[];
  /** A status patch is on its way to the API server. */
  statusInFlight: boolean;
  /** Volume refresh failures already reported (one event per distinct message). */
  volumeErrors: Set<string>;
}

/**
 * Level-triggered pod sync, kubelet-style: every pass compares the pods the
 * API server binds to this node with the pods the runtime has, and acts on
 * the difference (start, replace, stop, remove, report status). Passes run
 * on a timer and on every watch or runtime event; acting twice is harmless.
 */
export class PodSync {
  /** Pods bound to this node, by UID. */
  private readonly records = new Map<string, PodRecord>();
  /** FallbackToLogsOnError messages by pod/container/finish time ('' while being read). */
  private readonly logMessages = new Map<string, string>();
  private logMessagesRead = 0;
  /** Probes and lifecycle hooks (the kubelet's prober). */
  readonly prober: Prober;
  /** Operations running, by pod UID (or `rm:<runtime pod>`): one at a time per key. */
  private readonly inflight = new Map<string, Promise<void>>();
  private refreshing = false;
  readonly volumes: VolumeManager;
  private passQueued = false;
  private passRunning: Promise<void> | undefined;
  /** Time the last pass succeeded (the watchdog only pings while passes keep succeeding). */
  lastPassAt = Date.now();
  /** Passes completed, and their total wall time (for /metrics). */
  passes = 0;
  passSeconds = 0;

  /** FlexVolume mounts (agent/flexvolume.ts). */
  private readonly flex: FlexVolumes;

  constructor(private readonly kube: KubeClients, private readonly runtime: ContainerRuntime, private readonly cfg: AgentConfig,
    private readonly policy: Stage1Policy, private readonly events: EventRecorder, private readonly log: Logger) {
    this.volumes = new VolumeManager(cfg.dataDir, log);
    this.flex = new FlexVolumes(kube, cfg.volumePluginDir ?? path.join(cfg.dataDir, 'volume-plugins'), cfg.dataDir, log);
    this.prober = new Prober(runtime, events, log, () => this.trigger(), cfg.nodeIP);
  }

  close(): void {
    this.prober.close();
  }

  /** The pods bound to this node, as the watch last saw them. */
  desiredPods(): V1Pod[] {
    return [...this.records.values()].map((r) => r.pod);
  }

  desiredPod(namespace: string, name: string): V1Pod | undefined {
    for (const r of this.records.values()) if (r.pod.metadata?.namespace === namespace && r.pod.metadata?.name === name) return r.pod;
    return undefined;
  }

  /** What the pod's status says it waits for (tests and the node API). */
  waitingOf(uid: string): Waiting | undefined {
    return this.records.get(uid)?.waiting;
  }

  /**
   * A pod the watch saw added or changed. Returns whether a pass should look at it: not when the only change
   * is a status this agent sent coming back. Every status patch comes back so, in the middle of the pod's
   * start, and a pass on it would list every runtime pod to decide nothing the pass after the patch did not.
   */
  observe(pod: V1Pod): boolean {
    const uid = pod.metadata!.uid!;
    const record = this.records.get(uid);
    if (!record) {
      this.records.set(uid, { pod, statusInFlight: false, volumeErrors: new Set() });
      return true;
    }
    const echo = record.sentViews?.includes(statusView(pod.status)) === true && sameExceptStatus(record.pod, pod);
    record.pod = pod;
    return !echo;
  }

  /** A full list: pods bound here that it lacks are gone (deleted while the watch was down). */
  relisted(pods: V1Pod[]): void {
    const seen = new Set<string>();
    for (const pod of pods) { this.observe(pod); seen.add(pod.metadata!.uid!); }
    for (const uid of [...this.records.keys()]) if (!seen.has(uid)) this.forget(uid);
  }

  /** Ask for a pass soon; passes never overlap, and requests during one coalesce into one more. */
  trigger(): void {
    if (this.passRunning) { this.passQueued = true; return; }
    // Only a pass that finished counts for the watchdog: an agent stuck in failing passes gets restarted.
    const started = performance.now();
    this.passRunning = this.pass().then(() => {
      this.lastPassAt = Date.now();
      this.passes++;
      this.passSeconds += (performance.now() - started) / 1000;
    }, (err) => this.log.error({ err: String(err) }, 'sync pass failed')).finally(() => {
      this.passRunning = undefined;
      if (this.passQueued) { this.passQueued = false; this.trigger(); }
    });
  }

  async idle(): Promise<void> {
    while (this.passRunning) await this.passRunning;
    await Promise.all(this.inflight.values());
  }

  private async pass(): Promise<void> {
    const actual = (await this.runtime.listPods()).filter((p) => p.annotations?.[MANAGED_BY] === this.cfg.nodeName && p.uid);
    const byUid = new Map<string, PodStatus[]>();
    for (const p of actual.sort((a, b) => (b.createdAt ?? 0) - (a.createdAt ?? 0))) byUid.set(p.uid!, [...(byUid.get(p.uid!) ?? []), p]);
    for (const [uid, record] of this.records) {
      const pod = record.pod;
      const [current, ...superseded] = byUid.get(uid) ?? [];
      for (const old of superseded) this.schedule(`rm:${old.uuid}`, () => this.removeRuntimePod(old, 0));
      if (pod.metadata?.deletionTimestamp) {
        this.prober.forget(uid);
        this.schedule(uid, () => this.terminate(pod, current));
        continue;
      }
      this.prober.sync(pod, current);
      if (current && deadlineExceeded(pod)) {
        this.prober.forget(uid);
        if (current.state === 'running') this.schedule(uid, () => this.exceedDeadline(pod, current));
        // Stopped at its deadline before this agent started (the API says so): still Failed, not Running with dead containers.
        else if (pod.status?.reason === 'DeadlineExceeded' && record.waiting?.reason !== 'DeadlineExceeded') record.waiting = { reason: 'DeadlineExceeded', message: DEADLINE_MESSAGE, rejected: true };
      }
      if (!current) {
        const phase = pod.status?.phase;
        const b = record.backoff;
        const rejected = record.waiting?.rejected === true;
        if (phase !== 'Succeeded' && phase !== 'Failed' && !rejected && (!b || Date.now() >= b.until)) this.schedule(uid, () => this.start(pod));
      } else if (imagesChanged(pod, current)) {
        this.schedule(uid, () => this.replace(pod, current));
      }
      this.reportStatus(record, current);
    }
    for (const [uid, pods] of byUid) {
      if (!this.records.has(uid)) for (const p of pods) this.schedule(`rm:${p.uuid}`, () => this.removeRuntimePod(p, undefined));
    }
    // FlexVolumes of pods neither wanted nor running any more are unmounted (the kubelet's orphaned volume cleanup).
    const keep = new Set([...this.records.keys(), ...byUid.keys()]);
    if (this.flex.needsGc(keep)) this.schedule('flexvolume-gc', () => this.flex.gc(keep));
  }

  /** Run one operation per key at a time; a key already busy is skipped (the next pass looks again). */
  private schedule(key: string, op: () => Promise<void>): void {
    if (this.inflight.has(key)) return;
    const p = op().catch((err) => this.log.error({ key, err: String(err) }, 'pod operation failed')).finally(() => {
      this.inflight.delete(key);
      this.trigger();
    });
    this.inflight.set(key, p);
  }

  /** The pod's stage1 (annotation, runtimeClassName, node default) under the node's policy. */
  private async stage1For(pod: V1Pod): Promise<Stage1Choice> {
    const md = pod.metadata ?? {};
    const runtimeClassName = pod.spec?.runtimeClassName ?? undefined;
    let handler: string | null | undefined;
    if (runtimeClassName) {
      try {
        handler = (await this.kube.node.readRuntimeClass({ name: runtimeClassName })).handler;
      } catch (err) {
        if (apiStatus(err) !== 404) throw err; // the API is unreachable: the next pass asks again
        handler = null;
      }
    }
    return chooseStage1({ namespace: md.namespace ?? 'default', labels: md.labels ?? {}, annotations: md.annotations ?? {}, runtimeClassName }, this.cfg.rktStage1Image, this.policy, handler);
  }

  private async start(pod: V1Pod): Promise<void> {
    const uid = pod.metadata!.uid!;
    let runtimePod: Pod;
    try {
      runtimePod = validatePod(JSON.parse(JSON.stringify({ metadata: pod.metadata, spec: pod.spec })), { strict: false });
    } catch (err) {
      // One line per refused or invalid field, each naming its path (a field this node does not implement is never dropped).
      this.fail(pod, 'CreateContainerConfigError', (err as Error).message.replace(/^invalid pod manifest:\s*/, '').replace(/\n\s*/g, '; '));
      return;
    }
    runtimePod.metadata.annotations = { ...runtimePod.metadata.annotations, [MANAGED_BY]: this.cfg.nodeName };
    const choice = await this.stage1For(pod);
    if ('rejected' in choice) {
      this.reject(pod, choice.rejected.reason, choice.rejected.message);
      return;
    }
    const md = pod.metadata ?? {};
    const refused = hostAccessRefusal({ namespace: md.namespace ?? 'default', labels: md.labels ?? {}, annotations: md.annotations ?? {} }, hostAccessAsked(pod.spec ?? {}), this.policy);
    if (refused) {
      this.reject(pod, refused.reason, refused.message);
      return;
    }
    try {
      // After the host-access gate: the hostPaths claims become are the agent's own (agent/claims.ts).
      runtimePod = await resolveClaimVolumes(this.kube, this.cfg.nodeName, runtimePod);
      runtimePod = await this.flex.mountVolumes(pod, runtimePod);
    } catch (err) {
      if (!(err instanceof ContainerConfigError)) throw err;
      this.fail(pod, 'CreateContainerConfigError', err.message);
      return;
    }
    if (choice.raisedBy) this.log.info({ pod: `${pod.metadata?.namespace}/${pod.metadata?.name}`, stage1: choice.stage1, raisedBy: choice.raisedBy }, 'stage1 raised by the node policy');
    if (!(await this.ensureImages(pod))) return;
    if (!(await this.resolveSources(pod, runtimePod, choice.stage1))) return;
    try {
      const uuid = await this.runtime.runPod(runtimePod, { handler: choice.stage1 });
      const record = this.records.get(uid);
      if (record) { record.waiting = undefined; record.backoff = undefined; }
      for (const c of [...pod.spec?.initContainers ?? [], ...pod.spec?.containers ?? []]) {
        const fieldPath = `spec.containers{${c.name}}`;
        this.events.emit(pod, 'Normal', 'Created', `Created container ${c.name}`, fieldPath);
        this.events.emit(pod, 'Normal', 'Started', `Started container ${c.name}`, fieldPath);
      }
      this.log.info({ pod: `${pod.metadata?.namespace}/${pod.metadata?.name}`, uuid }, 'pod started');
    } catch (err) {
      if (!(err instanceof UserError)) {
        // A bug or an unexpected failure: still a status, an event and a back-off, never a retry every pass.
        this.log.error({ pod: `${pod.metadata?.namespace}/${pod.metadata?.name}`, err: (err as Error).stack ?? String(err) }, 'pod start failed unexpectedly');
        this.fail(pod, 'CreateContainerError', `internal error: ${(err as Error).message ?? String(err)} (see the agent's journal)`);
        return;
      }
      const previous = this.records.get(uid)?.waiting;
      // A network failure names itself (CNIPluginNotFound, CNIConfigInvalid…), with the hint saying what to fix.
      if (err instanceof CniError) {
        this.fail(pod, err.reason, err.hint ? `${err.message} (${err.hint})` : err.message);
        return;
      }
      if (err instanceof ContainerConfigError || err instanceof HandlerNotOffered) {
        this.fail(pod, 'CreateContainerConfigError', err.message);
        return;
      }
      const reason = err instanceof ImageNotFound ? (previous?.reason === 'ErrImagePull' || previous?.reason === 'ImagePullBackOff' ? 'ImagePullBackOff' : 'ErrImagePull') : 'CreateContainerError';
      this.fail(pod, reason, err.message);
    }
  }

  /**
   * Kubernetes' image pull policy for each container: pull when the policy
   * says so (Always, or IfNotPresent and missing; `:latest` defaults to
   * Always), never for images built or imported on this node. False (with the
   * reason in the pod's status and events) when an image cannot be had.
   */
  private async ensureImages(pod: V1Pod): Promise<boolean> {
    const previous = this.records.get(pod.metadata!.uid!)?.waiting?.reason;
    let auth: RegistryKeyring | undefined; // the pod's imagePullSecrets, read once the first pull needs them
    for (const c of [...pod.spec?.initContainers ?? [], ...pod.spec?.containers ?? []]) {
      const image = c.image ?? '';
      const fieldPath = `spec.containers{${c.name}}`;
      const present = await this.runtime.findImage(image).catch(() => undefined);
      if (present?.local || !shouldPull(c.imagePullPolicy as 'Always' | 'IfNotPresent' | 'Never' | undefined, image, present !== undefined)) {
        if (!present) {
          this.fail(pod, 'ErrImageNeverPull', `Container image "${image}" is not present with pull policy of Never`, fieldPath);
          return false;
        }
        this.events.emit(pod, 'Normal', 'Pulled', `Container image "${image}" already present on machine`, fieldPath);
        continue;
      }
      this.events.emit(pod, 'Normal', 'Pulling', `Pulling image "${image}"`, fieldPath);
      const started = Date.now();
      auth ??= await this.pullSecrets(pod);
      try {
        await this.runtime.pullImage(image, { insecureRegistries: this.cfg.insecureRegistries, auth });
      } catch (err) {
        const backoff = previous === 'ErrImagePull' || previous === 'ImagePullBackOff';
        this.fail(pod, backoff ? 'ImagePullBackOff' : 'ErrImagePull', `Failed to pull image "${image}": ${(err as Error).message}`, fieldPath);
        return false;
      }
      this.events.emit(pod, 'Normal', 'Pulled', `Successfully pulled image "${image}" in ${((Date.now() - started) / 1000).toFixed(3)}s`, fieldPath);
    }
    return true;
  }

  /**
   * What the runtime cannot know: configMap, secret, downwardAPI and
   * projected volumes written on the node and turned into hostPaths
   * (agent/volumes.ts), and env from ConfigMaps, Secrets, the downward API
   * and resources resolved into the runtime pod's env (agent/env.ts). A
   * missing object or key holds the pod (ContainerCreating with FailedMount
   * for a volume, CreateContainerConfigError for env) and is tried again every
   * 10 s (the kubelet's pod worker back-off), so the pod starts soon after the
   * object appears. False when the pod cannot start yet.
   */
  private async resolveSources(pod: V1Pod, runtimePod: Pod, stage1: string): Promise<boolean> {
    const objects = podObjects(this.kube, pod.metadata?.namespace ?? 'default');
    const onHostNetwork = pod.spec?.hostNetwork === true || stage1 === 'fly';
    const ctx: EnvContext & VolumeContext = { hostIP: this.cfg.nodeIP, podIPFromRuntime: !onHostNetwork, ...(onHostNetwork ? { podIPs: [this.cfg.nodeIP] } : {}), node: await nodeAllocatable(this.cfg.dataDir, this.cfg.systemReserved) };
    // Volumes first, as the kubelet mounts them before it makes any container's config.
    if (VolumeManager.needsVolumes(pod)) {
      try {
        await this.volumes.setUp(pod, runtimePod, objects, ctx);
      } catch (err) {
        // The kubelet leaves such a pod in ContainerCreating, with a FailedMount event, and tries again.
        if (!(err instanceof VolumeSetupError)) this.log.error({ pod: `${pod.metadata?.namespace}/${pod.metadata?.name}`, err: (err as Error).stack ?? String(err) }, 'volume set-up failed unexpectedly');
        this.fail(pod, 'ContainerCreating', (err as Error).message, undefined, 10_000, 'FailedMount');
        return false;
      }
    }
    try {
      const targets = [...runtimePod.spec.initContainers ?? [], ...runtimePod.spec.containers];
      for (const [i, c] of [...pod.spec?.initContainers ?? [], ...pod.spec?.containers ?? []].entries()) {
        const target = targets[i]!;
        if (!c.env?.some((e) => e.valueFrom) && !c.envFrom?.length) continue;
        const { env, warnings } = await resolveEnv(pod, c, objects, ctx);
        for (const w of warnings) this.events.emit(pod, 'Warning', 'InvalidEnvironmentVariableNames', w);
        target.env = env;
        delete target.envFrom;
      }
    } catch (err) {
      const message = err instanceof ContainerConfigError ? err.message : `cannot read the pod's ConfigMaps and Secrets: ${String((err as Error).message ?? err).slice(0, 300)}`;
      this.fail(pod, 'CreateContainerConfigError', message, undefined, 10_000);
      return false;
    }
    return true;
  }

  /**
   * Keep the agent-made volumes of running pods in step with their
   * ConfigMaps, Secrets and labels (one read per object and pass), and remove
   * those of pods that are gone (from the API and the runtime).
   */
  async refreshVolumes(): Promise<void> {
    if (this.refreshing) return; // a slow API server: the next tick looks again
    this.refreshing = true;
    try {
      await this.refreshVolumesNow();
    } finally {
      this.refreshing = false;
    }
  }

  private async refreshVolumesNow(): Promise<void> {
    const running = new Map((await this.runtime.listPods()).filter((p) => p.uid).map((p) => [p.uid!, p]));
    const readers = new Map<string, PodObjects>();
    const objectsFor = (ns: string) => readers.get(ns) ?? readers.set(ns, podObjects(this.kube, ns)).get(ns)!;
    const pods = this.desiredPods().filter((p) => running.get(p.metadata!.uid!)?.state === 'running' && VolumeManager.needsVolumes(p));
    const ctx = { hostIP: this.cfg.nodeIP, node: await nodeAllocatable(this.cfg.dataDir, this.cfg.systemReserved) };
    await this.volumes.refresh(pods, objectsFor, ctx, (pod, message) => {
      const errors = this.records.get(pod.metadata!.uid!)?.volumeErrors;
      if (!errors || errors.has(message)) return; // one event per distinct failure, not one per pass
      errors.add(message);
      this.events.emit(pod, 'Warning', 'FailedMount', message);
    });
    await this.volumes.cleanup(new Set([...this.records.keys(), ...running.keys()]));
  }

  /** Refuse a pod for good (kubelet admission): it turns Failed with the reason, one Warning event, no retries. */
  private reject(pod: V1Pod, reason: string, message: string): void {
    const record = this.records.get(pod.metadata!.uid!);
    if (!record) return; // deleted meanwhile
    record.waiting = { reason, message, rejected: true };
    this.events.emit(pod, 'Warning', reason, message);
    this.log.warn({ pod: `${pod.metadata?.namespace}/${pod.metadata?.name}`, reason, message }, 'pod rejected');
  }

  /** Registry credentials from the pod's imagePullSecrets; unusable ones are reported (kubelet's event) and skipped. */
  private async pullSecrets(pod: V1Pod): Promise<RegistryKeyring> {
    if (!pod.spec?.imagePullSecrets?.length) return {};
    const { keyring, problems } = await pullSecretsKeyring(this.kube, pod);
    if (problems.length) {
      this.events.emit(pod, 'Warning', 'FailedToRetrieveImagePullSecret', `Unable to retrieve some image pull secrets (${problems.join('; ')}); attempting to pull the image may not succeed.`);
    }
    return keyring;
  }

  /** Record why a pod cannot start, tell the user with an event, and back off exponentially (1 s … 5 min). */
  private fail(pod: V1Pod, reason: string, message: string, fieldPath?: string, retryAfterMs?: number, eventReason?: string): void {
    const record = this.records.get(pod.metadata!.uid!);
    if (!record) return; // deleted meanwhile
    record.waiting = { reason, message };
    const delayMs = retryAfterMs ?? Math.min(300_000, (record.backoff?.delayMs ?? 500) * 2);
    record.backoff = { until: Date.now() + delayMs, delayMs };
    this.events.emit(pod, 'Warning', eventReason ?? (reason === 'ImagePullBackOff' ? 'BackOff' : reason.startsWith('CNI') ? reason : 'Failed'), message, fieldPath);
    this.log.warn({ pod: `${pod.metadata?.namespace}/${pod.metadata?.name}`, reason, message }, 'pod cannot start');
  }

  /** activeDeadlineSeconds passed: the kubelet stops the pod for good (Failed, DeadlineExceeded). */
  private async exceedDeadline(pod: V1Pod, current: PodStatus): Promise<void> {
    const record = this.records.get(pod.metadata!.uid!);
    const message = DEADLINE_MESSAGE;
    if (record?.waiting?.reason !== 'DeadlineExceeded') this.events.emit(pod, 'Normal', 'DeadlineExceeded', message);
    if (record) record.waiting = { reason: 'DeadlineExceeded', message, rejected: true };
    await this.stopRuntimePod(current, pod.spec?.terminationGracePeriodSeconds ?? 30, pod);
  }

  private async replace(pod: V1Pod, current: PodStatus): Promise<void> {
    await this.removeRuntimePod(current, pod.spec?.terminationGracePeriodSeconds ?? 30, pod);
    await this.start(pod);
  }

  /** Graceful deletion: stop within the grace period, remove, then let the API server forget the pod. */
  private async terminate(pod: V1Pod, current: PodStatus | undefined): Promise<void> {
    const md = pod.metadata!;
    if (current) await this.removeRuntimePod(current, md.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30, pod);
    try {
      await this.kube.core.deleteNamespacedPod({ name: md.name!, namespace: md.namespace!, gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0, preconditions: { uid: md.uid } } });
    } catch (err) {
      if (apiStatus(err) !== 404 && apiStatus(err) !== 409) throw err;
    }
    this.forget(md.uid!);
  }

  /** Stop a running pod: the Killing events, preStop hooks within the grace period, then SIGTERM and SIGKILL for what is left of it. */
  private async stopRuntimePod(p: PodStatus, gracePeriodSeconds: number | undefined, pod?: V1Pod): Promise<void> {
    if (p.state !== 'running') return;
    let grace = gracePeriodSeconds;
    if (pod) {
      for (const a of p.apps.filter((x) => x.state === 'running')) this.events.emit(pod, 'Normal', 'Killing', `Stopping container ${a.name}`, `spec.containers{${a.name}}`);
      grace = await this.prober.preStopAll(pod, p, gracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30);
    }
    await this.runtime.stopPod(p.uuid, grace);
  }

  private async removeRuntimePod(p: PodStatus, gracePeriodSeconds: number | undefined, pod?: V1Pod): Promise<void> {
    try {
      await this.stopRuntimePod(p, gracePeriodSeconds, pod);
      await this.runtime.removePod(p.uuid);
    } catch (err) {
      // A pass that listed the pod just before an earlier removal finished asks again: gone is what we wanted.
      if (!(err instanceof PodNotFound)) throw err;
    }
  }

  forget(uid: string): void {
    this.prober.forget(uid);
    this.records.delete(uid);
  }

  private reportStatus(record: PodRecord, current: PodStatus | undefined): void {
    const { pod, waiting } = record;
    const from = record.reportedFrom;
    const probes = `${this.prober.version}/${this.logMessagesRead}`;
    if (from && from.pod === pod && from.current === current && from.waiting === waiting && from.probes === probes) return;
    const status: V1PodStatus = podStatusFor(pod, { runtimeName: this.runtime.name, hostIP: this.cfg.nodeIP, runtimePod: current, waiting, previous: record.sent ?? pod.status, probes: (c) => this.prober.view(pod, c), logMessage: (c) => this.fallbackMessage(pod, current, c) });
    const key = JSON.stringify(status);
    // Unchanged since the last patch, and the server shows a status this agent sent (perhaps an older one the watch
    // still delivers): nothing to do. A status someone else wrote (the node lifecycle controller's Ready=False) is
    // answered with ours again.
    // Once per version of the pod at most: a server (or a test's fake) that has not shown the patch yet is not re-patched.
    const ours = record.reported === key && (record.patchedFor === pod || record.sentViews?.includes(statusView(pod.status)));
    if (ours || sameStatus(pod.status, status)) {
      record.reportedFrom = { pod, current, waiting, probes };
      return;
    }
    // One status patch per pod at a time: two in flight can reach the server in either order, and
    // an older status applied last (Pending after Failed) would stay, since `reported` says the newer one went.
    // The pass that runs when the patch completes computes the status again.
    if (record.statusInFlight) return;
    record.statusInFlight = true;
    record.reported = key;
    record.reportedFrom = { pod, current, waiting, probes };
    const md = pod.metadata!;
    // What was sent is what the next status is computed from (condition times, start time), as the kubelet's
    // status manager keeps its own: the watch may still hand over older versions of the pod, and computing from
    // those made each patch differ from the one before (times of one version, then of the other, on and on).
    record.sent = JSON.parse(key) as V1PodStatus;
    record.patchedFor = pod;
    record.sentViews = [...(record.sentViews ?? []).slice(-(SENT_VIEWS_KEPT - 1)), statusView(record.sent)];
    this.kube.core.patchNamespacedPodStatus({ name: md.name!, namespace: md.namespace!, body: { status } }, patchAs('merge')).catch((err) => {
      record.sent = undefined;
      record.reported = undefined;
      record.reportedFrom = undefined;
      if (apiStatus(err) !== 404) this.log.warn({ pod: `${md.namespace}/${md.name}`, err: String(err) }, 'status update failed; will retry');
    }).finally(() => {
      record.statusInFlight = false;
      this.trigger();
    });
  }

  /**
   * terminationMessagePolicy FallbackToLogsOnError: a container that failed
   * without writing a message gets the last 80 lines (at most 2 KiB) of its
   * log, read once per run in the background (the status is computed again
   * when it is there).
   */
  private fallbackMessage(pod: V1Pod, current: PodStatus | undefined, name: string): string | undefined {
    const spec = [...pod.spec?.initContainers ?? [], ...pod.spec?.containers ?? []].find((c) => c.name === name);
    const app = current?.apps.find((a) => a.name === name);
    if (spec?.terminationMessagePolicy !== 'FallbackToLogsOnError' || !current || !app || app.state !== 'exited' || !app.exitCode || app.terminationMessage) return undefined;
    const key = `${current.uuid}/${name}/${app.finishedAt}`;
    const known = this.logMessages.get(key);
    if (known !== undefined) return known || undefined;
    if (this.logMessages.size > 10_000) this.logMessages.clear();
    this.logMessages.set(key, '');
    void (async () => {
      const lines: string[] = [];
      for await (const line of this.runtime.logs({ podUuid: current.uuid, container: name, tail: 80 })) lines.push(line.message);
      let text = lines.join('\n');
      if (Buffer.byteLength(text) > 2048) text = Buffer.from(text).subarray(-2048).toString('utf8');
      return text;
    })().then((text) => {
      this.logMessages.set(key, text);
      this.logMessagesRead++;
      this.trigger();
    }, (err) => this.log.warn({ pod: `${pod.metadata?.namespace}/${pod.metadata?.name}`, container: name, err: String(err) }, 'could not read the log for FallbackToLogsOnError'));
    return undefined;
  }

  /** Keep `desired` in step with the API server: list, then watch from the list's resourceVersion; relist on 410 or errors. */
  async watchPods(signal: AbortSignal): Promise<void> {
    const fieldSelector = `spec.nodeName=${this.cfg.nodeName}`;
    const watch = new k8s.Watch(this.kube.kc);
    while (!signal.aborted) {
      try {
        const list = await this.kube.core.listPodForAllNamespaces({ fieldSelector });
        this.relisted(list.items);
        this.trigger();
        let resourceVersion = list.metadata?.resourceVersion;
        await new Promise<void>((resolve) => {
          const onAbort = () => { void controller.then((c) => c.abort()); resolve(); };
          const controller = watch.watch('/api/v1/pods', { fieldSelector, resourceVersion, allowWatchBookmarks: true, timeoutSeconds: 300 },
            (type: string, obj: V1Pod & { code?: number }) => {
              if (type === 'BOOKMARK') { resourceVersion = obj.metadata?.resourceVersion; return; }
              if (type === 'ERROR') { resolve(); return; }
              const uid = obj.metadata?.uid;
              if (!uid) return;
              if (type === 'DELETED') this.forget(uid);
              else if (!this.observe(obj)) return;
              this.trigger();
            },
            () => { signal.removeEventListener('abort', onAbort); resolve(); });
          signal.addEventListener('abort', onAbort, { once: true });
          controller.catch(() => resolve());
        });
      } catch (err) {
        this.log.warn({ err: String(err) }, 'pod list/watch failed; retrying (pods keep running meanwhile)');
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  }
}

/** Two versions of a pod that differ in status alone (a status write moves resourceVersion and managedFields). */
function sameExceptStatus(a: V1Pod, b: V1Pod): boolean {
  const rest = (p: V1Pod) => JSON.stringify([p.spec, { ...p.metadata, resourceVersion: undefined, managedFields: undefined }]);
  return rest(a) === rest(b);
}

function imagesChanged(pod: V1Pod, current: PodStatus): boolean {
  return (pod.spec?.containers ?? []).some((c) => {
    const app = current.apps.find((a) => a.name === c.name);
    return app !== undefined && app.image.name !== c.image;
  });
}

const DEADLINE_MESSAGE = 'Pod was active on the node longer than the specified deadline';

/** activeDeadlineSeconds counted from the pod's startTime, as the kubelet counts it. */
export function deadlineExceeded(pod: V1Pod, now = Date.now()): boolean {
  const deadline = pod.spec?.activeDeadlineSeconds;
  const start = pod.status?.startTime ? new Date(pod.status.startTime as unknown as string).getTime() : NaN;
  return typeof deadline === 'number' && !Number.isNaN(start) && now - start >= deadline * 1000;
}
