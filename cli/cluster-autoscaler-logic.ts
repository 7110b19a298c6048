/**
 * The cluster autoscaler's decisions (cluster-autoscaler's role), as pure
 * functions of what the API shows: nodes, pods, PodDisruptionBudgets, the
 * node group (min, max, the shape of a new node) and the time. The effects
 * (adding a node sandbox, tainting, evicting, removing one, events and the
 * status ConfigMap) are in cluster-autoscaler.ts; these are unit-tested
 * with fake inputs (test/cluster-autoscaler-logic.test.ts).
 *
 * Scale-up: pods the scheduler marked PodScheduled=False/Unschedulable that
 * do not fit in the free room of the existing nodes (cluster-autoscaler's
 * "filter out schedulable") are packed first-fit onto new nodes of the
 * group's shape; the nodes needed (up to max) are added. A pod that would
 * not fit even on an empty new node, or only past max, does not trigger one.
 *
 * Scale-down: a group node whose requested cpu and memory (the larger share
 * of allocatable) stay under the utilization threshold for the unneeded time,
 * whose pods can all be evicted (a controller, no local storage, not
 * kube-system without a budget, no PDB at 0 disruptions, not annotated
 * safe-to-evict=false) and fit on the other nodes, is removed, one at a time,
 * never below min.
 */
import type { KObj } from '../control-plane/store.js';
import { NO_USAGE, addPod, filterReason, podRequests, allocatable, type ClusterView, type Usage } from '../control-plane/controllers/scheduling.js';
import { selectorMatches } from '../control-plane/kinds/workloads.js';

/** The taint cluster-autoscaler puts on a node it is about to delete (value: unix seconds). */
export const TO_BE_DELETED_TAINT = 'ToBeDeletedByClusterAutoscaler';
export const SAFE_TO_EVICT = 'cluster-autoscaler.kubernetes.io/safe-to-evict';
export const SCALE_DOWN_DISABLED = 'cluster-autoscaler.kubernetes.io/scale-down-disabled';

export interface NodeGroup {
  name: string;
  min: number;
  max: number;
  /** The group's node names (up.json's nodes). */
  members: string[];
}

export interface AutoscalerOptions {
  /** Under this share of allocatable (requests, the larger of cpu and memory) a node is unneeded (cluster-autoscaler's default 0.5). */
  utilizationThreshold: number;
  /** How long a node stays unneeded before it goes (default 10 min). */
  unneededMs: number;
  /** No scale-down this long after a scale-up (default 10 min). */
  delayAfterAddMs: number;
}

export const DEFAULT_OPTIONS: AutoscalerOptions = { utilizationThreshold: 0.5, unneededMs: 10 * 60_000, delayAfterAddMs: 10 * 60_000 };

const podKey = (p: KObj) => `${p.metadata.namespace}/${p.metadata.name}`;
const finished = (p: KObj) => p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed';

/** Pods the scheduler gave up on for now (PodScheduled=False, reason Unschedulable), not being deleted. */
export function unschedulablePods(pods: KObj[]): KObj[] {
  return pods.filter((p) => !p.spec?.nodeName && !p.metadata.deletionTimestamp && !finished(p)
    && (p.status?.conditions ?? []).some((c: KObj) => c.type === 'PodScheduled' && c.status === 'False' && c.reason === 'Unschedulable'));
}

/** A view of the cluster the scheduling filters can run against, with usage that grows as the simulation places pods. */
function simulation(nodes: KObj[], pods: KObj[]): ClusterView & { place(pod: KObj, node: string): void } {
  const used = new Map<string, Usage>();
  const boundPods: KObj[] = [];
  for (const p of pods) {
    if (!p.spec?.nodeName || finished(p)) continue;
    used.set(p.spec.nodeName, addPod(used.get(p.spec.nodeName) ?? NO_USAGE, p));
    boundPods.push(p);
  }
  return {
    nodes, boundPods,
    usage: (n) => used.get(n) ?? NO_USAGE,
    place(pod, node) {
      const bound = { ...pod, spec: { ...pod.spec, nodeName: node } };
      used.set(node, addPod(used.get(node) ?? NO_USAGE, bound));
      boundPods.push(bound);
    },
  };
}

/** A new node of the group: the template's labels (its own hostname) and allocatable, no taints, schedulable, no pods. */
export function newNodeFrom(template: KObj, name: string): KObj {
  const labels = { ...(template.metadata?.labels ?? {}), 'kubernetes.io/hostname': name };
  return { apiVersion: 'v1', kind: 'Node', metadata: { name, labels }, spec: {}, status: { allocatable: { ...(template.status?.allocatable ?? template.status?.capacity ?? {}) }, conditions: [{ type: 'Ready', status: 'True' }] } };
}

export interface PodVerdict { pod: KObj; message: string }
export interface ScaleUpPlan {
  /** How many nodes to add now (0: none). */
  add: number;
  /** Pods a new node will take: a TriggeredScaleUp event each. */
  triggered: PodVerdict[];
  /** Pods no new node helps: a NotTriggerScaleUp event each. */
  notTriggered: PodVerdict[];
}

/**
 * What to add for the unschedulable pods. `nodes` are the cluster's Nodes
 * (those of the group still starting count as capacity, as
 * cluster-autoscaler's upcoming nodes); `template` a Ready node of the group.
 */
export function planScaleUp(nodes: KObj[], pods: KObj[], group: NodeGroup, template: KObj | undefined): ScaleUpPlan {
  const plan: ScaleUpPlan = { add: 0, triggered: [], notTriggered: [] };
  const pending = unschedulablePods(pods).sort((a, b) => (b.spec?.priority ?? 0) - (a.spec?.priority ?? 0) || String(a.metadata.creationTimestamp).localeCompare(String(b.metadata.creationTimestamp)));
  if (!pending.length) return plan;
  // Nodes being deleted take nothing; the others (Ready or still starting) are where pods may still land.
  const usable = nodes.filter((n) => !(n.spec?.taints ?? []).some((t: KObj) => t.key === TO_BE_DELETED_TAINT) && !n.metadata.deletionTimestamp);
  const view = simulation(usable, pods);
  const current = group.members.length;
  const room = Math.max(0, group.max - current);
  const fresh: KObj[] = [];
  for (const pod of pending) {
    // Filter out schedulable: it fits where the cluster already has room (the scheduler will bind it).
    const existing = usable.find((n) => !filterReason(pod, n, view));
    if (existing) { view.place(pod, existing.metadata.name); continue; }
    if (!template) { plan.notTriggered.push({ pod, message: 'pod didn\'t trigger scale-up: no ready node in the node group to model a new node on' }); continue; }
    // Would an empty node of the group's shape take it at all?
    const probe = newNodeFrom(template, `${group.name}-template`);
    const emptyView = simulation([probe], []);
    const why = filterReason(pod, probe, emptyView);
    if (why) { plan.notTriggered.push({ pod, message: `pod didn't trigger scale-up: 1 ${why}` }); continue; }
    const onFresh = fresh.find((n) => !filterReason(pod, n, view));
    if (onFresh) { view.place(pod, onFresh.metadata.name); plan.triggered.push({ pod, message: '' }); continue; }
    if (fresh.length >= room) { plan.notTriggered.push({ pod, message: 'pod didn\'t trigger scale-up: 1 max node group size reached' }); continue; }
    const node = newNodeFrom(template, `${group.name}-new-${fresh.length + 1}`);
    fresh.push(node);
    usable.push(node);
    view.nodes.push(node);
    view.place(pod, node.metadata.name);
    plan.triggered.push({ pod, message: '' });
  }
  plan.add = fresh.length;
  const msg = `pod triggered scale-up: [{${group.name} ${current}->${current + plan.add} (max: ${group.max})}]`;
  for (const t of plan.triggered) t.message = msg;
  return plan;
}

/** The share of a node's allocatable its pods request: the larger of cpu and memory (cluster-autoscaler's utilization). */
export function nodeUtilization(node: KObj, pods: KObj[]): number {
  const alloc = allocatable(node) ?? {};
  let cpu = 0, mem = 0;
  for (const p of pods) {
    if (p.spec?.nodeName !== node.metadata.name || finished(p)) continue;
    // Mirror pods and DaemonSet pods would run on any node: they do not make it needed.
    if (isDaemonSetPod(p) || isMirrorPod(p)) continue;
    const r = podRequests(p);
    cpu += r.cpu;
    mem += r.mem;
  }
  return Math.max(alloc.cpu ? cpu / alloc.cpu : 0, alloc.mem ? mem / alloc.mem : 0);
}

const isDaemonSetPod = (p: KObj) => (p.metadata.ownerReferences ?? []).some((r: KObj) => r.controller && r.kind === 'DaemonSet');
const isMirrorPod = (p: KObj) => Boolean(p.metadata.annotations?.['kubernetes.io/config.mirror']);

/** Why a pod keeps its node from going (cluster-autoscaler's drain rules with their defaults), or undefined when it may be evicted. */
export function podBlocksScaleDown(pod: KObj, pdbs: KObj[]): string | undefined {
  const safe = pod.metadata.annotations?.[SAFE_TO_EVICT];
  if (safe === 'false') return `pod ${podKey(pod)} is annotated ${SAFE_TO_EVICT}=false`;
  const budgets = pdbs.filter((b) => b.metadata.namespace === pod.metadata.namespace && b.spec?.selector !== undefined
    && (Object.keys(b.spec.selector).length === 0 || selectorMatches(b.spec.selector, pod.metadata.labels)));
  const held = budgets.find((b) => (b.status?.disruptionsAllowed ?? 0) < 1);
  if (held) return `not enough pod disruption budget to move ${podKey(pod)} (PodDisruptionBudget ${held.metadata.name})`;
  if (safe === 'true') return undefined;
  const controller = (pod.metadata.ownerReferences ?? []).find((r: KObj) => r.controller);
  if (!controller) return `pod ${podKey(pod)} is not replicated (no controller)`;
  if (pod.metadata.namespace === 'kube-system' && !budgets.length) return `non-daemonset, non-mirrored, non-pdb-assigned kube-system pod present: ${pod.metadata.name}`;
  const local = (pod.spec?.volumes ?? []).find((v: KObj) => v.emptyDir !== undefined || v.hostPath !== undefined);
  if (local) return `pod ${podKey(pod)} with local storage present (volume ${local.name})`;
  return undefined;
}

export interface UnneededState {
  /** Node name → since when (ms) it has been unneeded. */
  since: Map<string, number>;
}

export interface ScaleDownPlan {
  /** The node to remove now, with the pods to evict. */
  remove?: { node: string; pods: KObj[] };
  /** Group nodes under the threshold, with why they stay (or how long they have been unneeded). */
  candidates: Array<{ node: string; utilization: number; blocked?: string; unneededForMs: number }>;
}

/**
 * Which node (if any) to remove now. Updates `state.since` (a node above
 * the threshold or blocked starts over). `lastScaleUpAt`: no scale-down
 * within delayAfterAdd of it. A scale-up pending this pass means no scale-down.
 */
export function planScaleDown(nodes: KObj[], pods: KObj[], pdbs: KObj[], group: NodeGroup, state: UnneededState, now: number, lastScaleUpAt: number, opts: AutoscalerOptions): ScaleDownPlan {
  const plan: ScaleDownPlan = { candidates: [] };
  const members = new Set(group.members);
  const groupNodes = nodes.filter((n) => members.has(n.metadata.name));
  const seen = new Set<string>();
  for (const node of groupNodes) {
    const name = node.metadata.name;
    const ready = (node.status?.conditions ?? []).some((c: KObj) => c.type === 'Ready' && c.status === 'True');
    if (!ready || node.metadata.annotations?.[SCALE_DOWN_DISABLED] === 'true') continue;
    const utilization = nodeUtilization(node, pods);
    if (utilization >= opts.utilizationThreshold) continue;
    const movable = pods.filter((p) => p.spec?.nodeName === name && !finished(p) && !isDaemonSetPod(p) && !isMirrorPod(p) && !p.metadata.deletionTimestamp);
    let blocked = movable.map((p) => podBlocksScaleDown(p, pdbs)).find((why) => why !== undefined);
    if (!blocked) {
      // Every pod must find room on the other nodes (not this one, not one being deleted).
      const others = nodes.filter((n) => n.metadata.name !== name && !n.spec?.unschedulable
        && !(n.spec?.taints ?? []).some((t: KObj) => t.key === TO_BE_DELETED_TAINT)
        && (n.status?.conditions ?? []).some((c: KObj) => c.type === 'Ready' && c.status === 'True'));
      const view = simulation(others, pods.filter((p) => p.spec?.nodeName !== name));
      for (const p of movable) {
        const stripped = { ...p, spec: { ...p.spec, nodeName: undefined } };
        const dest = others.find((n) => !filterReason(stripped, n, view));
        if (!dest) { blocked = `no place to move pod ${podKey(p)}`; break; }
        view.place(stripped, dest.metadata.name);
      }
    }
    if (blocked) { plan.candidates.push({ node: name, utilization, blocked, unneededForMs: 0 }); continue; }
    seen.add(name);
    const since = state.since.get(name) ?? now;
    state.since.set(name, since);
    plan.candidates.push({ node: name, utilization, unneededForMs: now - since });
  }
  for (const name of [...state.since.keys()]) if (!seen.has(name)) state.since.delete(name);
  if (groupNodes.length <= group.min || now - lastScaleUpAt < opts.delayAfterAddMs) return plan;
  // The longest unneeded first; ties: the newest node (highest name) first.
  const ripe = plan.candidates.filter((c) => !c.blocked && c.unneededForMs >= opts.unneededMs)
    .sort((a, b) => b.unneededForMs - a.unneededForMs || b.node.localeCompare(a.node, undefined, { numeric: true }));
  const chosen = ripe[0];
  if (chosen) plan.remove = { node: chosen.node, pods: pods.filter((p) => p.spec?.nodeName === chosen.node && !finished(p) && !isDaemonSetPod(p) && !isMirrorPod(p) && !p.metadata.deletionTimestamp) };
  return plan;
}

/** The next free node-N name of the group. */
export function nextNodeName(existing: string[]): string {
  const taken = new Set(existing);
  let i = 1;
  while (taken.has(`node-${i}`)) i++;
  return `node-${i}`;
}

/** `up --node-allocatable cpu=1,memory=2Gi` as the agent's --system-reserved on a host with these cpus and memory. */
export function reservedFor(wanted: { cpuMillis?: number; memoryBytes?: number }, host: { cpuMillis: number; memoryBytes: number }): string {
  const parts: string[] = [];
  if (wanted.cpuMillis !== undefined) parts.push(`cpu=${Math.max(0, host.cpuMillis - wanted.cpuMillis)}m`);
  if (wanted.memoryBytes !== undefined) parts.push(`memory=${Math.max(0, Math.ceil((host.memoryBytes - wanted.memoryBytes) / 1024))}Ki`);
  return parts.join(',');
}
