/**
 * Filter semantics of the v1alpha contract: conditions within one filter are
 * ANDed, filters in a list are ORed (an empty list matches everything).
 * `ids`, `states`, `prefixes`, `keywords`, `base_names`, `full_names`,
 * `cgroups` and `pod_sub_cgroups` match on any listed value; `app_names`,
 * `image_ids`, `network_names`, `annotations` and `labels` need all of them.
 */
import type { ImageRecord } from '../runtime-rkt/image/types.js';
import type { EventFilterMsg, EventMsg, ImageFilterMsg, KeyValue, PodFilterMsg, PodMsg, PodStateName } from './proto.js';
import { splitName } from './reader.js';

const hasAll = (have: Set<string>, want: string[]) => want.every((w) => have.has(w));
const kvHasAll = (have: KeyValue[], want: KeyValue[]) => want.every((w) => have.some((h) => h.Key === w.Key && h.value === w.value));

/** What pod filters look at, besides the Pod message itself (apps are not always in it). */
export interface PodFacts {
  appNames: string[];
  imageIds: string[];
}

export function podFilterNeedsApps(filters: PodFilterMsg[]): boolean {
  return filters.some((f) => f.app_names.length > 0 || f.image_ids.length > 0);
}

/** A pod's cgroup contains `cg` when it is the cgroup itself or below it. */
const within = (cg: string, podCg: string) => podCg !== '' && (cg === podCg || cg.startsWith(podCg.endsWith('/') ? podCg : podCg + '/'));

export function matchPod(pod: PodMsg, facts: PodFacts, f: PodFilterMsg): boolean {
  if (f.ids.length && !f.ids.some((id) => pod.id === id || (id.length > 0 && pod.id.startsWith(id)))) return false;
  if (f.states.length && !(f.states as PodStateName[]).includes(pod.state)) return false;
  if (f.app_names.length && !hasAll(new Set(facts.appNames), f.app_names)) return false;
  if (f.image_ids.length && !hasAll(new Set(facts.imageIds), f.image_ids)) return false;
  if (f.network_names.length && !hasAll(new Set(pod.networks.map((n) => n.name)), f.network_names)) return false;
  if (f.annotations.length && !kvHasAll(pod.annotations, f.annotations)) return false;
  if (f.cgroups.length && !f.cgroups.includes(pod.cgroup)) return false;
  if (f.pod_sub_cgroups.length && !f.pod_sub_cgroups.some((cg) => within(cg, pod.cgroup))) return false;
  return true;
}

export function matchPodFilters(pod: PodMsg, facts: PodFacts, filters: PodFilterMsg[]): boolean {
  return filters.length === 0 || filters.some((f) => matchPod(pod, facts, f));
}

/** Last path element of a name without its tag: `k8s.io/etcd:3.5` → `etcd`. */
function baseName(full: string): string {
  const { name } = splitName(full);
  return name.slice(name.lastIndexOf('/') + 1);
}

export function matchImage(r: ImageRecord, f: ImageFilterMsg): boolean {
  const importedS = Math.floor(r.importedAt / 1000);
  if (f.ids.length && !f.ids.includes(r.id)) return false;
  if (f.prefixes.length && !f.prefixes.some((p) => p !== '' && r.id.startsWith(p.startsWith('sha256:') ? p : `sha256:${p}`))) return false;
  if (f.base_names.length && !r.names.some((n) => f.base_names.includes(baseName(n)))) return false;
  if (f.keywords.length && !r.names.some((n) => f.keywords.some((k) => splitName(n).name.includes(k)))) return false;
  const labels = Object.entries(r.config?.Labels ?? {}).map(([Key, value]) => ({ Key, value }));
  if (f.labels.length && !kvHasAll(labels, f.labels)) return false;
  const after = Number(f.imported_after);
  const before = Number(f.imported_before);
  if (after > 0 && importedS <= after) return false;
  if (before > 0 && importedS >= before) return false;
  const annotations = Object.entries(r.annotations ?? {}).map(([Key, value]) => ({ Key, value }));
  if (f.annotations.length && !kvHasAll(annotations, f.annotations)) return false;
  // A full name is the name with or without its tag (`localhost/busybox` or `localhost/busybox:latest`).
  if (f.full_names.length && !r.names.some((n) => f.full_names.includes(n) || f.full_names.includes(splitName(n).name))) return false;
  return true;
}

export function matchImageFilters(r: ImageRecord, filters: ImageFilterMsg[]): boolean {
  return filters.length === 0 || filters.some((f) => matchImage(r, f));
}

export function matchEvent(e: EventMsg, f: EventFilterMsg): boolean {
  if (f.types.length && !f.types.includes(e.type)) return false;
  if (f.ids.length && !f.ids.includes(e.id)) return false;
  if (f.names.length && !f.names.includes(e.from)) return false;
  const t = Number(e.time);
  if (Number(f.since_time) > 0 && t < Number(f.since_time)) return false;
  if (Number(f.until_time) > 0 && t > Number(f.until_time)) return false;
  return true;
}
