import { prop, type UnitProperty } from '../common/systemd.js';
import { podPaths, type AppManifest, type PreparedPod, type Stage1 } from '../stage1/contract.js';
import { podSlice } from '../stage1/devices.js';
import { EXIT_RECORDER_SCRIPT } from './exit-recorder.js';

const RESTART: Record<string, string> = { Always: 'always', OnFailure: 'on-failure', Never: 'no' };

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
    prop.str('Restart', RESTART[pod.manifest.restartPolicy] ?? 'always'),
    prop.u64('RestartUSec', tuning.restartDelayMs * 1000),
    // Kubernetes never gives up restarting; systemd's start rate limit would.
    prop.u64('StartLimitIntervalUSec', 0),
    prop.u64('TimeoutStopUSec', Math.max(1, pod.manifest.terminationGracePeriodSeconds * 1_000_000)),
    ...plan.properties,
    // "privileged" runs these on the node even when the app is chrooted (fly's RootDirectory=).
    prop.execEx('ExecStopPostEx', [
      ...plan.stopPost.map((c) => ({ ...c, flags: ['ignore-failure', 'privileged'] })),
      { path: '/bin/sh', argv: ['/bin/sh', '-c', EXIT_RECORDER_SCRIPT, 'stevedore-exit-recorder', podPaths(pod.dir).exits(app.name)], flags: ['ignore-failure', 'privileged'] },
    ]),
  ];
  // kvm: the unit holds a proxy; the app's limits are the VM's RAM and vCPUs.
  if (stage1.cgroupLimits === false) return props;
  if (app.limits.memoryBytes !== undefined) props.push(prop.u64('MemoryMax', app.limits.memoryBytes));
  if (app.limits.cpuMillis !== undefined) props.push(prop.u64('CPUQuotaPerSecUSec', app.limits.cpuMillis * 1000));
  // cgroup v1 cpu.shares from requests, as the kubelet computes them (1024 per core, at least 2).
  if (app.requests.cpuMillis !== undefined) props.push(prop.u64('CPUShares', Math.max(2, Math.floor((app.requests.cpuMillis * 1024) / 1000))));
  return props;
}
