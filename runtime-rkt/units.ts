import { prop, type UnitProperty } from '../common/systemd.js';
import { appRestart, podPaths, unitNames, type AppManifest, type AppUnitPlan, type PreparedPod, type Stage1 } from '../stage1/contract.js';
import { podSlice } from '../stage1/devices.js';
import { Variant } from 'dbus-next';
import * as path from 'node:path';
import { EXIT_RECORDER_SCRIPT } from './exit-recorder.js';
import { INIT_GATE_SCRIPT, SIDECAR_STARTED } from './init-gate.js';

/** Journal fields every line of an app carries, so logs are selected exactly (and the api-service can find them). */
export function appLogFields(pod: PreparedPod, app: AppManifest): Record<string, string> {
  const md = pod.manifest.pod.metadata;
  const fields: Record<string, string> = {
    STEVEDORE_POD_UUID: pod.manifest.uuid,
    STEVEDORE_POD_NAME: md.name,
    STEVEDORE_POD_NAMESPACE: md.namespace ?? 'default',
    STEVEDORE_CONTAINER: app.name,
  };
  if (md.uid) fields.STEVEDORE_POD_UID = md.uid;
  return fields;
}

function sum(values: Array<number | undefined>): number | undefined {
  return values.every((v) => v !== undefined) ? values.reduce((a: number, b) => a + b!, 0) : undefined;
}

/** The pod's slice: it carries the pod-level limits (the sum of the containers' limits, when all have one). */
export function sliceProperties(pod: PreparedPod, cgroupLimits = true): UnitProperty[] {
  const md = pod.manifest.pod.metadata;
  const props: UnitProperty[] = [prop.str('Description', `Stevedore pod ${md.namespace ?? 'default'}/${md.name} (${pod.manifest.uuid})`)];
  if (!cgroupLimits) return props;
  const memory = sum(pod.manifest.apps.map((a) => a.limits.memoryBytes));
  const cpu = sum(pod.manifest.apps.map((a) => a.limits.cpuMillis));
  if (memory !== undefined) props.push(prop.u64('MemoryMax', memory));
  if (cpu !== undefined) props.push(prop.u64('CPUQuotaPerSecUSec', cpu * 1000));
  return props;
}

export interface UnitTuning {
  /** Delay before systemd restarts an app under restartPolicy Always/OnFailure. */
  restartDelayMs: number;
}

/** Everything one app's service needs: stage0's common properties plus the stage1's way of running it. */
export async function appProperties(pod: PreparedPod, app: AppManifest, stage1: Stage1, tuning: UnitTuning): Promise<UnitProperty[]> {
  const md = pod.manifest.pod.metadata;
  const plan = await stage1.appUnit(pod, app);
  const props: UnitProperty[] = [
    prop.str('Description', `Stevedore pod ${md.namespace ?? 'default'}/${md.name} container ${app.name}`),
    prop.str('Slice', podSlice(pod.manifest)),
    prop.str('SyslogIdentifier', app.name),
    prop.logFields(appLogFields(pod, app)),
    prop.str('Restart', appRestart(pod.manifest.restartPolicy, app)),
    prop.u64('RestartUSec', tuning.restartDelayMs * 1000),
    // Kubernetes never gives up restarting; systemd's start rate limit would.
    prop.u64('StartLimitIntervalUSec', 0),
    prop.u64('TimeoutStopUSec', Math.max(1, pod.manifest.terminationGracePeriodSeconds * 1_000_000)),
    ...plan.properties,
    // "privileged" runs these on the node even when the app is chrooted (fly's RootDirectory=).
    prop.execEx('ExecStopPostEx', [
      ...plan.stopPost.map((c) => ({ ...c, flags: ['ignore-failure', 'privileged'] })),
      // A fresh termination message for each run (the kubelet makes a new file per container instance): the recorder
      // keeps this run's and empties the file, after the run rather than with a process of its own before the next.
      { path: '/bin/sh', argv: ['/bin/sh', '-c', EXIT_RECORDER_SCRIPT, 'stevedore-exit-recorder', podPaths(pod.dir).exits(app.name), ...(app.terminationMessagePath ? [podPaths(pod.dir).terminationLog(app.name)] : [])], flags: ['ignore-failure', 'privileged'] },
    ]),
  ];
  props.push(...initOrderProperties(pod, app, plan));
  // kvm: the unit holds a proxy; the app's limits are the VM's RAM and vCPUs.
  if (stage1.cgroupLimits === false) return props;
  if (app.limits.memoryBytes !== undefined) props.push(prop.u64('MemoryMax', app.limits.memoryBytes));
  if (app.limits.cpuMillis !== undefined) props.push(prop.u64('CPUQuotaPerSecUSec', app.limits.cpuMillis * 1000));
  // cgroup v1 cpu.shares from requests, as the kubelet computes them (1024 per core, at least 2).
  if (app.requests.cpuMillis !== undefined) props.push(prop.u64('CPUShares', Math.max(2, Math.floor((app.requests.cpuMillis * 1024) / 1000))));
  return props;
}

/**
 * The pod's init order, as systemd enforces it (init-gate.ts): a unit behind
 * an init container waits in its ExecCondition= (no start timeout: an init
 * container may run for hours), and the containers are ordered After= the
 * sidecars, so that a pod's stop stops the sidecars last.
 */
export function initOrderProperties(pod: PreparedPod, app: AppManifest, plan: Pick<AppUnitPlan, 'started'> = {}): UnitProperty[] {
  const apps = pod.manifest.apps;
  const index = apps.indexOf(app);
  const before = apps.slice(0, index).filter((a) => a.init);
  const predecessor = app.init ? before.at(-1) : apps.filter((a) => a.init).at(-1);
  const props: UnitProperty[] = [];
  if (app.init === 'sidecar') {
    const marker = path.join(podPaths(pod.dir).app(app.name), SIDECAR_STARTED);
    // The marker only once the container's own process runs: the unit's start (systemd forked crun) comes first.
    props.push(prop.execEx('ExecStartPostEx', [
      ...(plan.started ? [{ ...plan.started, flags: ['ignore-failure', 'privileged'] }] : []),
      { path: '/bin/touch', argv: ['touch', marker], flags: ['ignore-failure', 'privileged'] },
    ]));
  }
  if (!predecessor) return props;
  const dep = predecessor.init === 'sidecar'
    ? `started:${path.join(podPaths(pod.dir).app(predecessor.name), SIDECAR_STARTED)}`
    : `done:${podPaths(pod.dir).exits(predecessor.name)}`;
  props.push(
    prop.execEx('ExecConditionEx', [{ path: '/bin/sh', argv: ['/bin/sh', '-c', INIT_GATE_SCRIPT, 'stevedore-init-gate', pod.manifest.restartPolicy === 'Never' ? 'never' : 'retry', dep], flags: ['privileged'] }]),
    ['TimeoutStartUSec', new Variant('t', 0xffffffffffffffffn)],
  );
  const sidecars = before.filter((a) => a.init === 'sidecar').map((a) => unitNames.app(pod.manifest.uuid, a.name));
  if (!app.init && sidecars.length) props.push(prop.strs('After', sidecars));
  return props;
}
