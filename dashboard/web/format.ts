/** Pure helpers over Kubernetes objects: what kubectl's printers compute. */
import type { KObj } from './api.js';

export const STAGE1_ANNOTATION = 'rkt.alpha.kubernetes.io/stage1-name-override';
export const DEFAULT_STAGE1_LABEL = 'stevedore.io/default-stage1';
export const KVM_ACCEL_LABEL = 'stevedore.io/kvm-accel';

/** The STATUS column of `kubectl get pods`. */
export function podStatus(pod: KObj): string {
  if (pod.metadata.deletionTimestamp) return 'Terminating';
  let reason: string = pod.status?.reason ?? pod.status?.phase ?? 'Unknown';
  for (const c of [...(pod.status?.initContainerStatuses ?? [])]) {
    if (c.state?.waiting?.reason && c.state.waiting.reason !== 'PodInitializing') return `Init:${c.state.waiting.reason}`;
  }
  for (const c of pod.status?.containerStatuses ?? []) {
    if (c.state?.waiting?.reason) reason = c.state.waiting.reason;
    else if (c.state?.terminated?.reason) reason = c.state.terminated.reason;
  }
  return reason;
}

export function podTone(status: string): 'ok' | 'warn' | 'bad' | 'muted' {
  if (status === 'Running' || status === 'Succeeded' || status === 'Completed') return 'ok';
  if (status === 'Pending' || status === 'ContainerCreating' || status === 'Terminating' || status.startsWith('Init:')) return 'warn';
  if (status === 'Unknown') return 'muted';
  return 'bad';
}

export function podReady(pod: KObj): string {
  const all = pod.spec?.containers?.length ?? 0;
  const ready = (pod.status?.containerStatuses ?? []).filter((c: any) => c.ready).length;
  return `${ready}/${all}`;
}

export const podRestarts = (pod: KObj): number => (pod.status?.containerStatuses ?? []).reduce((n: number, c: any) => n + (c.restartCount ?? 0), 0);

/** The stage1 a pod asks for (rktnetes annotation, else its RuntimeClass), or undefined: the node's default. */
export function requestedStage1(pod: KObj): string | undefined {
  return pod.metadata.annotations?.[STAGE1_ANNOTATION] ?? pod.spec?.runtimeClassName ?? undefined;
}

export function isolationOf(stage1: string, kvmAccel?: string): string {
  switch (stage1) {
    case 'fly': return 'fly: chroot only, in the node\'s namespaces (root on the node)';
    case 'namespaces': return 'namespaces: crun in the pod\'s unit, its own Linux namespaces and cgroup';
    case 'kvm': return `kvm: a qemu VM per pod, ${kvmAccel === 'kvm' ? 'hardware-accelerated (KVM)' : kvmAccel === 'tcg' ? 'emulated (TCG, no hardware KVM)' : 'acceleration as the node decides (kvm or tcg)'}`;
    default: return `${stage1}: not a stage1 this node knows`;
  }
}

/** The systemd unit runtime-rkt starts for a container: stevedore-<pod uuid hex>-<app>.service (stage1/contract.ts unitNames). */
export function unitOf(containerID: string | undefined): string | undefined {
  const m = /^rkt:\/\/([0-9a-f-]{36}):([a-z0-9-]+)$/.exec(containerID ?? '');
  return m ? `stevedore-${m[1]!.replace(/-/g, '')}-${m[2]}.service` : undefined;
}

const SUFFIX: Record<string, number> = { n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };

export function quantity(q: string | undefined): number | undefined {
  const m = /^([0-9.]+)(n|u|m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(q ?? '');
  return m ? Number(m[1]) * (SUFFIX[m[2] ?? ''] ?? 1) : undefined;
}

export function cpuText(q: string | undefined): string {
  const v = quantity(q);
  if (v === undefined) return q ?? '';
  return v >= 1 && Number.isInteger(v) ? `${v} cores` : `${Math.round(v * 1000)}m`;
}

export function bytesText(q: string | undefined): string {
  const v = quantity(q);
  if (v === undefined) return q ?? '';
  if (v >= 1024 ** 3) return `${(v / 1024 ** 3).toFixed(1)} GiB`;
  return `${Math.round(v / 1024 ** 2)} MiB`;
}

export function readyCondition(obj: KObj): string {
  return (obj.status?.conditions ?? []).find((c: any) => c.type === 'Ready')?.status ?? 'Unknown';
}

/** The one key of a volume besides its name: its source's kind. */
export function volumeSource(v: Record<string, any>): [string, string] {
  const kind = Object.keys(v).find((k) => k !== 'name') ?? 'unknown';
  const src = v[kind];
  const detail = src && typeof src === 'object' ? Object.entries(src).map(([k, x]) => `${k}=${typeof x === 'object' ? JSON.stringify(x) : String(x)}`).join(' ') : '';
  return [kind, detail];
}
