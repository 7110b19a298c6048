/**
 * kube-scheduler's default plugins, as pure functions of the pod, the
 * candidate node and the cluster's bound pods: the filters say why a node
 * cannot take the pod (in kube-scheduler's words, which its
 * `0/N nodes are available: …` message counts), the scores rank the nodes
 * that can. The Scheduler (scheduler.ts) runs them against the store.
 */
import { cpuMillis, memoryBytes } from '../../common/quantity.js';
import type { KObj } from '../store.js';
import { selectorMatches } from '../kinds/workloads.js';

export interface Usage {
  cpu: number; mem: number; pods: number;
  /** The same with best-effort pods counted at kube-scheduler's non-zero defaults (100m, 200Mi): what scoring sees. */
  scoreCpu: number; scoreMem: number;
}

export const NO_USAGE: Usage = Object.freeze({ cpu: 0, mem: 0, pods: 0, scoreCpu: 0, scoreMem: 0 });
const DEFAULT_CPU_REQUEST = 100;
const DEFAULT_MEM_REQUEST = 200 * 2 ** 20;

/** A node's usage with one more pod on it. */
export function addPod(u: Usage, pod: KObj): Usage {
  const r = podRequests(pod);
  return { cpu: u.cpu + r.cpu, mem: u.mem + r.mem, pods: u.pods + 1, scoreCpu: u.scoreCpu + (r.cpu || DEFAULT_CPU_REQUEST), scoreMem: u.scoreMem + (r.mem || DEFAULT_MEM_REQUEST) };
}

/** What the filters and scores look at besides the pod and the node. */
export interface ClusterView {
  nodes: KObj[];
  /** Pods bound to a node and not finished (those placed earlier in this pass included). */
  boundPods: KObj[];
  usage(node: string): Usage;
}

// ------------------------------------------------------------------ requests

const quantity = (parse: (q: string | number, what: string) => number, q: unknown, what: string): number => {
  if (q === undefined || q === null) return 0;
  try { return parse(q as string | number, what); } catch { return 0; /* validated on create */ }
};

function containerRequests(c: KObj): { cpu: number; mem: number } {
  const req = c?.resources?.requests ?? {};
  const lim = c?.resources?.limits ?? {};
  // A limit without a request is the request too (the API defaults it so).
  return { cpu: quantity(cpuMillis, req.cpu ?? lim.cpu, 'cpu'), mem: quantity(memoryBytes, req.memory ?? lim.memory, 'memory') };
}

/**
 * A pod's effective requests, as kube-scheduler computes them: the sum over
 * its containers and sidecars (init containers with restartPolicy Always),
 * or the largest one-shot init container (plus the sidecars started before
 * it) if that is more, plus the pod's overhead.
 */
export function podRequests(pod: KObj): { cpu: number; mem: number } {
  let cpu = 0, mem = 0;
  let initCpu = 0, initMem = 0;
  let sidecarCpu = 0, sidecarMem = 0;
  for (const c of pod.spec?.initContainers ?? []) {
    const r = containerRequests(c);
    if (c?.restartPolicy === 'Always') { sidecarCpu += r.cpu; sidecarMem += r.mem; continue; }
    initCpu = Math.max(initCpu, sidecarCpu + r.cpu);
    initMem = Math.max(initMem, sidecarMem + r.mem);
  }
  for (const c of pod.spec?.containers ?? []) {
    const r = containerRequests(c);
    cpu += r.cpu;
    mem += r.mem;
  }
  const overhead = pod.spec?.overhead ?? {};
  return {
    cpu: Math.max(cpu + sidecarCpu, initCpu) + quantity(cpuMillis, overhead.cpu, 'cpu'),
    mem: Math.max(mem + sidecarMem, initMem) + quantity(memoryBytes, overhead.memory, 'memory'),
  };
}

// ------------------------------------------------------------------ node selection

/** One NodeSelectorRequirement against a node (labels; matchFields only knows metadata.name, as the API). */
function requirementMatches(e: KObj, value: string | undefined): boolean {
  const values: string[] = e.values ?? [];
  switch (e.operator) {
    case 'In': return value !== undefined && values.includes(value);
    case 'NotIn': return value === undefined || !values.includes(value);
    case 'Exists': return value !== undefined;
    case 'DoesNotExist': return value === undefined;
    case 'Gt': return value !== undefined && /^-?\d+$/.test(value) && values.length === 1 && Number(value) > Number(values[0]);
    case 'Lt': return value !== undefined && /^-?\d+$/.test(value) && values.length === 1 && Number(value) < Number(values[0]);
    default: return false;
  }
}

/** A NodeSelectorTerm: its expressions and fields ANDed; an empty term matches no node. */
export function nodeSelectorTermMatches(term: KObj, node: KObj): boolean {
  const exprs: KObj[] = term?.matchExpressions ?? [];
  const fields: KObj[] = term?.matchFields ?? [];
  if (exprs.length + fields.length === 0) return false;
  const labels: Record<string, string> = node.metadata?.labels ?? {};
  return exprs.every((e) => requirementMatches(e, labels[e.key])) && fields.every((f) => f.key === 'metadata.name' && requirementMatches(f, node.metadata?.name));
}

/** NodeSelector terms are ORed; no terms at all matches every node. */
export function nodeSelectorMatches(terms: KObj[] | undefined, node: KObj): boolean {
  return !terms?.length || terms.some((t) => nodeSelectorTermMatches(t, node));
}

/** nodeSelector and required node affinity: both must hold. */
export function nodeAffinityFits(pod: KObj, node: KObj): boolean {
  const labels: Record<string, string> = node.metadata?.labels ?? {};
  if (!Object.entries<string>(pod.spec?.nodeSelector ?? {}).every(([k, v]) => labels[k] === v)) return false;
  return nodeSelectorMatches(pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms, node);
}

// ------------------------------------------------------------------ taints

/** Whether one toleration tolerates one taint (v1.Toleration.ToleratesTaint). */
export function tolerates(t: KObj, taint: KObj): boolean {
  if (t.effect && t.effect !== taint.effect) return false;
  if (t.key && t.key !== taint.key) return false;
  // An empty key with Exists tolerates everything.
  if ((t.operator ?? 'Equal') === 'Exists') return true;
  return (t.value ?? '') === (taint.value ?? '');
}

/** The node's taints with effect NoSchedule or NoExecute the pod does not tolerate. */
export function untoleratedTaints(pod: KObj, node: KObj): KObj[] {
  const tolerations: KObj[] = pod.spec?.tolerations ?? [];
  return (node.spec?.taints ?? []).filter((taint: KObj) => (taint.effect === 'NoSchedule' || taint.effect === 'NoExecute') && !tolerations.some((t) => tolerates(t, taint)));
}

// ------------------------------------------------------------------ inter-pod affinity

/** The namespaces a pod affinity term looks in: its list, else the pod's own (namespaceSelector: every namespace when empty). */
function termNamespaces(term: KObj, pod: KObj): ((ns: string) => boolean) {
  if (term.namespaceSelector && Object.keys(term.namespaceSelector).length === 0) return () => true;
  const list: string[] = term.namespaces?.length ? term.namespaces : [pod.metadata.namespace];
  return (ns) => list.includes(ns);
}

function termSelects(term: KObj, owner: KObj, candidate: KObj): boolean {
  return termNamespaces(term, owner)(candidate.metadata.namespace) && selectorMatches(term.labelSelector ?? {}, candidate.metadata.labels);
}

const domainOf = (node: KObj | undefined, key: string): string | undefined => node?.metadata?.labels?.[key];

function nodeOf(view: ClusterView, pod: KObj): KObj | undefined {
  return view.nodes.find((n) => n.metadata.name === pod.spec?.nodeName);
}

/** Required pod affinity: every term has a matching pod in the node's domain (or none anywhere and the pod matches itself: the first of a group). */
export function podAffinityFits(pod: KObj, node: KObj, view: ClusterView): boolean {
  for (const term of pod.spec?.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? []) {
    const domain = domainOf(node, term.topologyKey);
    if (domain === undefined) return false;
    const matching = view.boundPods.filter((p) => termSelects(term, pod, p));
    if (matching.some((p) => domainOf(nodeOf(view, p), term.topologyKey) === domain)) continue;
    if (matching.length === 0 && termSelects(term, pod, pod)) continue;
    return false;
  }
  return true;
}

/** Required anti-affinity: no pod its terms select in the node's domain. */
export function podAntiAffinityFits(pod: KObj, node: KObj, view: ClusterView): boolean {
  for (const term of pod.spec?.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? []) {
    const domain = domainOf(node, term.topologyKey);
    if (domain === undefined) continue;
    if (view.boundPods.some((p) => termSelects(term, pod, p) && domainOf(nodeOf(view, p), term.topologyKey) === domain)) return false;
  }
  return true;
}

/** The bound pods' own required anti-affinity, which the new pod must not break. */
export function existingAntiAffinityFits(pod: KObj, node: KObj, view: ClusterView): boolean {
  for (const p of view.boundPods) {
    for (const term of p.spec?.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? []) {
      const domain = domainOf(node, term.topologyKey);
      if (domain !== undefined && domainOf(nodeOf(view, p), term.topologyKey) === domain && termSelects(term, p, pod)) return false;
    }
  }
  return true;
}

// ------------------------------------------------------------------ topology spread

/** A constraint's selector with matchLabelKeys folded in (the pod's own values for those keys). */
function spreadSelector(c: KObj, pod: KObj): KObj {
  const sel: KObj = structuredClone(c.labelSelector ?? {});
  for (const key of c.matchLabelKeys ?? []) {
    const v = pod.metadata.labels?.[key];
    if (v !== undefined) (sel.matchExpressions ??= []).push({ key, operator: 'In', values: [v] });
  }
  return sel;
}

/**
 * The counts depend on the constraint, the pod and the bound pods, not on the
 * node being weighed: kept per constraint object until a pod is bound, so
 * filtering and scoring N nodes counts once, not N times.
 */
const countsMemo = new WeakMap<KObj, { view: ClusterView; bound: number; counts: Map<string, number> }>();

/** Matching pods per domain of a constraint, over the nodes the pod could go to by its node affinity (nodeAffinityPolicy Honor). */
function spreadCounts(c: KObj, pod: KObj, view: ClusterView): Map<string, number> {
  const memo = countsMemo.get(c);
  if (memo && memo.view === view && memo.bound === view.boundPods.length) return memo.counts;
  const counts = countSpread(c, pod, view);
  countsMemo.set(c, { view, bound: view.boundPods.length, counts });
  return counts;
}

function countSpread(c: KObj, pod: KObj, view: ClusterView): Map<string, number> {
  const sel = spreadSelector(c, pod);
  const honourAffinity = (c.nodeAffinityPolicy ?? 'Honor') === 'Honor';
  const honourTaints = c.nodeTaintsPolicy === 'Honor';
  const counts = new Map<string, number>();
  const eligible = new Set<string>();
  for (const n of view.nodes) {
    const d = domainOf(n, c.topologyKey);
    if (d === undefined) continue;
    if (honourAffinity && !nodeAffinityFits(pod, n)) continue;
    if (honourTaints && untoleratedTaints(pod, n).length) continue;
    eligible.add(n.metadata.name);
    if (!counts.has(d)) counts.set(d, 0);
  }
  for (const p of view.boundPods) {
    if (p.metadata.namespace !== pod.metadata.namespace || !eligible.has(p.spec?.nodeName) || p.metadata.deletionTimestamp) continue;
    if (!selectorMatches(sel, p.metadata.labels)) continue;
    const d = domainOf(nodeOf(view, p), c.topologyKey)!;
    counts.set(d, (counts.get(d) ?? 0) + 1);
  }
  return counts;
}

/** The skew placing the pod on this node would give a constraint (its count there + 1 − the smallest count). */
function skewOn(c: KObj, pod: KObj, node: KObj, view: ClusterView): number | undefined {
  const domain = domainOf(node, c.topologyKey);
  if (domain === undefined) return undefined;
  const counts = spreadCounts(c, pod, view);
  const min = counts.size < (c.minDomains ?? 1) ? 0 : Math.min(...counts.values());
  const self = selectorMatches(spreadSelector(c, pod), pod.metadata.labels) ? 1 : 0;
  return (counts.get(domain) ?? 0) + self - min;
}

/**
 * The soft constraints the score weighs: the pod's own, or, for a pod a
 * controller owns that states none, kube-scheduler's system defaults (spread
 * its kind over hosts with maxSkew 3 and zones with maxSkew 5, ScheduleAnyway),
 * matched by the pod's own labels as the controller's selector would.
 */
const systemDefaults = new WeakMap<KObj, KObj[]>();

function spreadConstraintsForScoring(pod: KObj): KObj[] {
  const own: KObj[] | undefined = pod.spec?.topologySpreadConstraints;
  if (own?.length) return own;
  const known = systemDefaults.get(pod);
  if (known) return known;
  const owned = (pod.metadata.ownerReferences ?? []).some((r: KObj) => r.controller);
  const labels = pod.metadata.labels ?? {};
  if (!owned || Object.keys(labels).length === 0) return [];
  const selector = { matchLabels: labels };
  const defaults = [
    { maxSkew: 3, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: selector },
    { maxSkew: 5, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: selector },
  ];
  systemDefaults.set(pod, defaults);
  return defaults;
}

/** DoNotSchedule constraints: the node has every topology key and placing the pod keeps each skew within maxSkew. */
export function topologySpreadFits(pod: KObj, node: KObj, view: ClusterView): boolean {
  for (const c of pod.spec?.topologySpreadConstraints ?? []) {
    if ((c.whenUnsatisfiable ?? 'DoNotSchedule') !== 'DoNotSchedule') continue;
    const skew = skewOn(c, pod, node, view);
    if (skew === undefined || skew > (c.maxSkew ?? 1)) return false;
  }
  return true;
}

// ------------------------------------------------------------------ resources

export function allocatable(node: KObj): { cpu?: number; mem?: number; pods?: number } | undefined {
  const alloc = node.status?.allocatable ?? node.status?.capacity ?? {};
  try {
    return {
      ...(alloc.cpu !== undefined ? { cpu: cpuMillis(alloc.cpu, 'cpu') } : {}),
      ...(alloc.memory !== undefined ? { mem: memoryBytes(alloc.memory, 'memory') } : {}),
      ...(alloc.pods !== undefined ? { pods: Number(alloc.pods) } : {}),
    };
  } catch {
    return undefined;
  }
}

// ------------------------------------------------------------------ filter and score

/** The first filter the node fails, in kube-scheduler's words; undefined when the pod fits. */
export function filterReason(pod: KObj, node: KObj, view: ClusterView, extra?: (pod: KObj, node: KObj) => string | undefined): string | undefined {
  const tolerationsFor = (key: string, effect: string) => (pod.spec?.tolerations ?? []).some((t: KObj) => tolerates(t, { key, effect }));
  if (node.spec?.unschedulable && !tolerationsFor('node.kubernetes.io/unschedulable', 'NoSchedule')) return 'node(s) were unschedulable';
  const [taint] = untoleratedTaints(pod, node);
  if (taint) return `node(s) had untolerated taint {${taint.key}: ${taint.value ?? ''}}`;
  if (!nodeAffinityFits(pod, node)) return "node(s) didn't match Pod's node affinity/selector";
  const alloc = allocatable(node);
  if (!alloc) return 'node(s) had invalid allocatable resources';
  const req = podRequests(pod);
  const u = view.usage(node.metadata.name);
  if (alloc.cpu !== undefined && req.cpu > 0 && u.cpu + req.cpu > alloc.cpu) return 'Insufficient cpu';
  if (alloc.mem !== undefined && req.mem > 0 && u.mem + req.mem > alloc.mem) return 'Insufficient memory';
  if (alloc.pods !== undefined && u.pods + 1 > alloc.pods) return 'Too many pods';
  const more = extra?.(pod, node);
  if (more) return more;
  if (!podAffinityFits(pod, node, view)) return "node(s) didn't match pod affinity rules";
  if (!podAntiAffinityFits(pod, node, view)) return "node(s) didn't match pod anti-affinity rules";
  if (!existingAntiAffinityFits(pod, node, view)) return "node(s) didn't satisfy existing pods anti-affinity rules";
  if (!topologySpreadFits(pod, node, view)) return "node(s) didn't match pod topology spread constraints";
  return undefined;
}

/** Each plugin's score of a node, 0–100 (higher is better), weighted as kube-scheduler's defaults. */
export function scoreNode(pod: KObj, node: KObj, view: ClusterView): number {
  const alloc = allocatable(node) ?? {};
  const req = podRequests(pod);
  const u = view.usage(node.metadata.name);
  // NodeResourcesFit, LeastAllocated: the share of cpu and memory left after placing the pod.
  // Best-effort pods count as kube-scheduler's non-zero defaults (100m, 200Mi), so they spread too.
  const free = (total: number | undefined, used: number, ask: number) => (total ? Math.max(0, (total - used - ask) / total) * 100 : 0);
  const cpuFree = free(alloc.cpu, u.scoreCpu, req.cpu || DEFAULT_CPU_REQUEST);
  const memFree = free(alloc.mem, u.scoreMem, req.mem || DEFAULT_MEM_REQUEST);
  const leastAllocated = (cpuFree + memFree) / 2;
  // NodeResourcesBalancedAllocation: cpu and memory used alike.
  const balanced = 100 - Math.abs(cpuFree - memFree);
  // NodeAffinity: the preferred terms' weights the node matches (weights 1–100 each).
  const preferred: KObj[] = pod.spec?.affinity?.nodeAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
  const prefTotal = preferred.reduce((s, p) => s + (p.weight ?? 0), 0);
  const nodeAffinity = prefTotal ? (preferred.filter((p) => nodeSelectorTermMatches(p.preference, node)).reduce((s, p) => s + (p.weight ?? 0), 0) / prefTotal) * 100 : 0;
  // TaintToleration: fewer untolerated PreferNoSchedule taints is better.
  const soft = (node.spec?.taints ?? []).filter((t: KObj) => t.effect === 'PreferNoSchedule' && !(pod.spec?.tolerations ?? []).some((x: KObj) => tolerates(x, t))).length;
  const taintScore = 100 / (1 + soft);
  // InterPodAffinity: preferred terms, + weight for affinity matches and − for anti-affinity matches in the node's domain.
  let interPod = 0, interTotal = 0;
  for (const [kind, sign] of [['podAffinity', 1], ['podAntiAffinity', -1]] as const) {
    for (const w of pod.spec?.affinity?.[kind]?.preferredDuringSchedulingIgnoredDuringExecution ?? []) {
      const term = w.podAffinityTerm ?? {};
      interTotal += w.weight ?? 0;
      const domain = domainOf(node, term.topologyKey);
      if (domain !== undefined && view.boundPods.some((p) => termSelects(term, pod, p) && domainOf(nodeOf(view, p), term.topologyKey) === domain)) interPod += sign * (w.weight ?? 0);
    }
  }
  const interPodScore = interTotal ? ((interPod + interTotal) / (2 * interTotal)) * 100 : 0;
  // PodTopologySpread, ScheduleAnyway: lower skew is better.
  let spread = 0, spreadCount = 0;
  for (const c of spreadConstraintsForScoring(pod)) {
    if (c.whenUnsatisfiable !== 'ScheduleAnyway') continue;
    const skew = skewOn(c, pod, node, view);
    spreadCount++;
    spread += skew === undefined ? 0 : 100 / (1 + Math.max(0, skew));
  }
  const spreadScore = spreadCount ? spread / spreadCount : 0;
  return leastAllocated * 1 + balanced * 1 + nodeAffinity * 2 + taintScore * 3 + interPodScore * 2 + spreadScore * 2;
}
