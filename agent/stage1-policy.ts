import * as fs from 'node:fs/promises';
import { parse } from 'yaml';
import { InvalidInput } from '../common/errors.js';
import { ISOLATION_HANDLERS as STAGE1_NAMES, type IsolationHandler as Stage1Name } from '../runtime-api/handlers.js';

/**
 * Which stage1 a pod runs under, and the node's policy on it and on host access.
 *
 * A pod asks for a stage1 with the annotation
 * `rkt.alpha.kubernetes.io/stage1-name-override` (rktnetes) or with
 * `spec.runtimeClassName` (a RuntimeClass whose handler is a stage1 name);
 * otherwise it gets the node default (`--rkt-stage1-image`). The node's policy
 * file (`--stage1-policy`) can forbid stage1s and require a minimum for pods
 * of chosen namespaces or labels. Isolation is ordered fly < namespaces < kvm:
 *   - a pod that asks for a stage1 the policy forbids or ranks below its
 *     minimum is rejected (a clear reason in its status and events; it never
 *     starts: retrying cannot help);
 *   - a pod that asks for nothing gets the node default raised to its minimum
 *     and past forbidden ones — the policy protects, it doesn't punish pods
 *     that never chose.
 * Host access fails closed: fly (root on the node), hostNetwork, hostPID,
 * hostIPC and privileged containers are refused for every pod unless an
 * `allowHostAccess` rule of the policy opens them for the pod's namespace or
 * labels. With no policy file nothing is opened, so a pod that asks for
 * nothing under a node whose default is fly is raised to namespaces.
 */
export const STAGE1_OVERRIDE = 'rkt.alpha.kubernetes.io/stage1-name-override';

const STRENGTH: Record<Stage1Name, number> = { fly: 0, namespaces: 1, kvm: 2 };
const BY_STRENGTH = [...STAGE1_NAMES].sort((a, b) => STRENGTH[a] - STRENGTH[b]);

export interface Stage1Rule {
  /** The weakest stage1 matching pods may use. */
  stage1: Stage1Name;
  /** Pods in any of these namespaces. */
  namespaces?: string[];
  /** Pods carrying all of these labels. */
  matchLabels?: Record<string, string>;
}

/** What a pod can get of the node itself; each is refused unless the policy opens it for the pod. */
export const HOST_ACCESS = ['fly', 'hostNetwork', 'hostPID', 'hostIPC', 'privileged', 'hostPath'] as const;
export type HostAccess = (typeof HOST_ACCESS)[number];

export interface HostAccessRule {
  allow: HostAccess[];
  /** Pods in any of these namespaces. */
  namespaces?: string[];
  /** Pods carrying all of these labels. */
  matchLabels?: Record<string, string>;
}

export interface Stage1Policy {
  forbid: Stage1Name[];
  require: Stage1Rule[];
  allowHostAccess: HostAccessRule[];
  /** The file it came from (for messages); absent: the node has none. */
  source?: string;
}

/** The Node annotation that shows the node's policy to the cluster (the dashboard's node page, `kubectl describe node`). */
export const STAGE1_POLICY_ANNOTATION = 'stevedore.io/stage1-policy';

/** The policy as the Node annotation carries it: its rules as JSON, not the file's path on the node. */
export function policyAnnotation(policy: Stage1Policy): string {
  return JSON.stringify({ forbid: policy.forbid, require: policy.require, allowHostAccess: policy.allowHostAccess });
}

/** No policy file: no stage1 forbidden or required, and no host access opened to any pod. */
export const EMPTY_POLICY: Stage1Policy = { forbid: [], require: [], allowHostAccess: [] };

/** The policy `stevedore up` writes when it is given none: host access only for the cluster's own pods. */
export const DEFAULT_UP_POLICY = `# The node's stage1 and host-access policy (agent/README.md, "Stage1 selection and policy").
# Written by \`stevedore up\` because no --stage1-policy was given. fly is root on the node, and
# hostNetwork, hostPID, hostIPC, privileged containers and hostPath volumes reach into it: only kube-system gets them.
allowHostAccess:
  - namespaces: [kube-system]
    allow: [${HOST_ACCESS.join(', ')}]
`;

export interface PodFacts {
  namespace: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  runtimeClassName?: string;
}

export type Stage1Choice =
  | { stage1: Stage1Name; requested: boolean; raisedBy?: string }
  | { rejected: { reason: 'RuntimeClassNotFound' | 'Stage1NotAllowed' | 'InvalidStage1'; message: string } };

const matches = (r: { namespaces?: string[]; matchLabels?: Record<string, string> }, pod: PodFacts) =>
  (!r.namespaces || r.namespaces.includes(pod.namespace))
  && (!r.matchLabels || Object.entries(r.matchLabels).every(([k, v]) => pod.labels[k] === v));

/** Rules that apply to a pod, in file order. */
function rulesFor(policy: Stage1Policy, pod: PodFacts): Stage1Rule[] {
  return policy.require.filter((r) => matches(r, pod));
}

/** Whether the policy opens one kind of host access to a pod. */
export function hostAccessOpen(policy: Stage1Policy, pod: PodFacts, what: HostAccess): boolean {
  return policy.allowHostAccess.some((r) => r.allow.includes(what) && matches(r, pod));
}

/** Why a kind of host access is closed to a pod, naming the policy and what would open it. */
function closedBecause(policy: Stage1Policy, pod: PodFacts, what: HostAccess): string {
  if (!policy.source) return `this node has no stage1 policy (--stage1-policy), so ${what} is open to no pod (an allowHostAccess rule opens it; agent/README.md)`;
  return `this node's stage1 policy ${policy.source} does not open ${what} to pods in namespace ${pod.namespace}${Object.keys(pod.labels).length ? ' with these labels' : ''} (add it to an allowHostAccess rule that matches the pod; agent/README.md)`;
}

const describeRule = (r: Stage1Rule) => [
  r.namespaces ? `namespace ${r.namespaces.length === 1 ? r.namespaces[0] : `in [${r.namespaces.join(', ')}]`}` : '',
  r.matchLabels ? `labels ${Object.entries(r.matchLabels).map(([k, v]) => `${k}=${v}`).join(',')}` : '',
].filter(Boolean).join(' and ') || 'every pod';

/**
 * The stage1 for a pod. `runtimeClassHandler` is the handler of the pod's
 * RuntimeClass (undefined when it names none; null when the class does not exist).
 */
export function chooseStage1(pod: PodFacts, nodeDefault: Stage1Name, policy: Stage1Policy, runtimeClassHandler?: string | null): Stage1Choice {
  const reject = (reason: 'RuntimeClassNotFound' | 'Stage1NotAllowed' | 'InvalidStage1', message: string): Stage1Choice => ({ rejected: { reason, message } });
  const isStage1 = (s: string): s is Stage1Name => (STAGE1_NAMES as readonly string[]).includes(s);

  const byAnnotation = pod.annotations[STAGE1_OVERRIDE];
  if (byAnnotation !== undefined && !isStage1(byAnnotation)) {
    return reject('InvalidStage1', `annotation ${STAGE1_OVERRIDE}="${byAnnotation}" names no stage1 of this node (choose one of ${STAGE1_NAMES.join(', ')})`);
  }
  let byClass: Stage1Name | undefined;
  if (pod.runtimeClassName) {
    if (runtimeClassHandler === null || runtimeClassHandler === undefined) {
      return reject('RuntimeClassNotFound', `RuntimeClass "${pod.runtimeClassName}" not found (create it, or use one of: ${STAGE1_NAMES.join(', ')})`);
    }
    if (!isStage1(runtimeClassHandler)) {
      return reject('InvalidStage1', `RuntimeClass "${pod.runtimeClassName}" has handler "${runtimeClassHandler}", which is no stage1 of this node (handlers here: ${STAGE1_NAMES.join(', ')})`);
    }
    byClass = runtimeClassHandler;
  }
  if (byAnnotation && byClass && byAnnotation !== byClass) {
    return reject('InvalidStage1', `the pod asks for two stage1s: ${byAnnotation} (annotation ${STAGE1_OVERRIDE}) and ${byClass} (runtimeClassName ${pod.runtimeClassName}); keep one`);
  }
  const requested = byAnnotation ?? byClass;

  const rules = rulesFor(policy, pod);
  const strongest = rules.reduce<Stage1Rule | undefined>((best, r) => (!best || STRENGTH[r.stage1] > STRENGTH[best.stage1] ? r : best), undefined);
  const minimum = strongest?.stage1 ?? 'fly';
  const flyOpen = hostAccessOpen(policy, pod, 'fly');
  const allowed = (s: Stage1Name) => STRENGTH[s] >= STRENGTH[minimum] && !policy.forbid.includes(s) && (s !== 'fly' || flyOpen);

  if (requested) {
    if (policy.forbid.includes(requested)) return reject('Stage1NotAllowed', `stage1 ${requested} is forbidden on this node by its stage1 policy`);
    if (requested === 'fly' && !flyOpen) return reject('Stage1NotAllowed', `stage1 fly runs the pod as root on the node: ${closedBecause(policy, pod, 'fly')}`);
    if (!allowed(requested)) {
      return reject('Stage1NotAllowed', `stage1 ${requested} is weaker than the ${minimum} this node's stage1 policy requires for ${describeRule(strongest!)}`);
    }
    return { stage1: requested, requested: true };
  }
  if (allowed(nodeDefault)) return { stage1: nodeDefault, requested: false };
  const raised = BY_STRENGTH.find((s) => STRENGTH[s] >= STRENGTH[nodeDefault] && allowed(s));
  if (!raised) return reject('Stage1NotAllowed', `no stage1 of this node satisfies its stage1 policy for this pod (forbidden: ${policy.forbid.join(', ') || 'none'}; required: ${minimum})`);
  const raisedBy = strongest && STRENGTH[raised] === STRENGTH[minimum] ? describeRule(strongest)
    : policy.forbid.includes(nodeDefault) ? 'forbidden stage1s' : 'fly not opened by allowHostAccess';
  return { stage1: raised, requested: false, raisedBy };
}

/**
 * The host access a pod's spec asks for, with the field that asks (stage1 fly
 * is chooseStage1's). Called on the spec as the API server holds it: a
 * hostPath volume the pod's author wrote is gated (any path of the node is
 * root on it; PodSecurity baseline forbids them too), while the hostPaths the
 * agent itself makes for configMap, secret, downwardAPI, projected and
 * persistentVolumeClaim volumes are never in that spec, so they pass.
 */
export function hostAccessAsked(spec: {
  hostNetwork?: boolean | null; hostPID?: boolean | null; hostIPC?: boolean | null;
  containers?: Array<{ securityContext?: { privileged?: boolean | null } | null }> | null;
  initContainers?: Array<{ securityContext?: { privileged?: boolean | null } | null }> | null;
  volumes?: Array<{ hostPath?: unknown }> | null;
}): Array<{ what: HostAccess; field: string }> {
  const asked: Array<{ what: HostAccess; field: string }> = [];
  for (const what of ['hostNetwork', 'hostPID', 'hostIPC'] as const) if (spec[what] === true) asked.push({ what, field: `spec.${what}` });
  (spec.containers ?? []).forEach((c, i) => {
    if (c.securityContext?.privileged === true) asked.push({ what: 'privileged', field: `spec.containers[${i}].securityContext.privileged` });
  });
  // An init container runs on the node as much as a container does.
  (spec.initContainers ?? []).forEach((c, i) => {
    if (c.securityContext?.privileged === true) asked.push({ what: 'privileged', field: `spec.initContainers[${i}].securityContext.privileged` });
  });
  (spec.volumes ?? []).forEach((v, i) => {
    if (v.hostPath !== undefined && v.hostPath !== null) asked.push({ what: 'hostPath', field: `spec.volumes[${i}].hostPath` });
  });
  return asked;
}

/** The kubelet-admission refusal of a pod that asks for host access the policy does not open to it, if any. */
export function hostAccessRefusal(pod: PodFacts, asked: Array<{ what: HostAccess; field: string }>, policy: Stage1Policy): { reason: 'HostAccessNotAllowed'; message: string } | undefined {
  const closed = asked.filter((a) => !hostAccessOpen(policy, pod, a.what));
  if (!closed.length) return undefined;
  const kinds = [...new Set(closed.map((a) => a.what))];
  const because = kinds.map((what) => closedBecause(policy, pod, what)).join('; ');
  return { reason: 'HostAccessNotAllowed', message: `${closed.map((a) => `${a.field}: ${a.what} reaches into the node`).join('; ')}: ${because}` };
}

/** Parse a policy file's text; every mistake is an InvalidInput naming the field. */
export function parseStage1Policy(text: string, source: string): Stage1Policy {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new InvalidInput(`stage1 policy ${source}: not YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return { ...EMPTY_POLICY, source };
  const fail = (msg: string): never => { throw new InvalidInput(`stage1 policy ${source}: ${msg}`, 'see agent/README.md, "Stage1 selection and policy"'); };
  if (typeof doc !== 'object' || Array.isArray(doc)) fail('must be a mapping with `forbid`, `require` and/or `allowHostAccess`');
  const obj = doc as Record<string, unknown>;
  const unknown = Object.keys(obj).filter((k) => !['forbid', 'require', 'allowHostAccess'].includes(k));
  if (unknown.length) fail(`unknown field(s) ${unknown.join(', ')} (known: forbid, require, allowHostAccess)`);
  const stage1 = (v: unknown, field: string): Stage1Name => {
    if (typeof v !== 'string' || !(STAGE1_NAMES as readonly string[]).includes(v)) fail(`${field}: "${String(v)}" is not a stage1 (choose one of ${STAGE1_NAMES.join(', ')})`);
    return v as Stage1Name;
  };
  const forbid = obj.forbid === undefined ? [] : Array.isArray(obj.forbid) ? obj.forbid.map((v, i) => stage1(v, `forbid[${i}]`)) : fail('forbid must be a list of stage1 names');
  /** A rule's fields: its own key (stage1 or allow) plus the pod selectors; at least one selector when `selectorRequired`. */
  const selectorsOf = (rule: Record<string, unknown>, at: string, own: string, selectorRequired: boolean) => {
    const extra = Object.keys(rule).filter((k) => ![own, 'namespaces', 'matchLabels'].includes(k));
    if (extra.length) fail(`${at}: unknown field(s) ${extra.join(', ')} (known: ${own}, namespaces, matchLabels)`);
    const out: { namespaces?: string[]; matchLabels?: Record<string, string> } = {};
    if (rule.namespaces !== undefined) {
      if (!Array.isArray(rule.namespaces) || rule.namespaces.length === 0 || rule.namespaces.some((n) => typeof n !== 'string')) fail(`${at}.namespaces must be a non-empty list of names`);
      out.namespaces = rule.namespaces as string[];
    }
    if (rule.matchLabels !== undefined) {
      const labels = rule.matchLabels;
      if (labels === null || typeof labels !== 'object' || Array.isArray(labels) || Object.keys(labels).length === 0 || Object.values(labels).some((v) => typeof v !== 'string')) fail(`${at}.matchLabels must map label keys to string values`);
      out.matchLabels = labels as Record<string, string>;
    }
    // Host access for every pod of the cluster is too much to open by leaving something out.
    if (selectorRequired && !out.namespaces && !out.matchLabels) fail(`${at} must name the pods it opens host access to (namespaces and/or matchLabels)`);
    return out;
  };
  const mapping = (r: unknown, at: string): Record<string, unknown> => {
    if (r === null || typeof r !== 'object' || Array.isArray(r)) fail(`${at} must be a mapping`);
    return r as Record<string, unknown>;
  };
  const require = obj.require === undefined ? [] : Array.isArray(obj.require) ? obj.require.map((r, i): Stage1Rule => {
    const at = `require[${i}]`;
    const rule = mapping(r, at);
    const selectors = selectorsOf(rule, at, 'stage1', false);
    return { stage1: stage1(rule.stage1, `${at}.stage1`), ...selectors };
  }) : fail('require must be a list of rules');
  const allowHostAccess = obj.allowHostAccess === undefined ? [] : Array.isArray(obj.allowHostAccess) ? obj.allowHostAccess.map((r, i): HostAccessRule => {
    const at = `allowHostAccess[${i}]`;
    const rule = mapping(r, at);
    const selectors = selectorsOf(rule, at, 'allow', true);
    if (!Array.isArray(rule.allow) || rule.allow.length === 0) fail(`${at}.allow must be a non-empty list of: ${HOST_ACCESS.join(', ')}`);
    const allow = (rule.allow as unknown[]).map((a, j) => {
      if (typeof a !== 'string' || !(HOST_ACCESS as readonly string[]).includes(a)) fail(`${at}.allow[${j}]: "${String(a)}" is not a kind of host access (choose from ${HOST_ACCESS.join(', ')})`);
      return a as HostAccess;
    });
    if (allow.includes('fly') && forbid.includes('fly')) fail(`${at}.allow opens fly, which forbid forbids on this node: keep one`);
    return { allow, ...selectors };
  }) : fail('allowHostAccess must be a list of rules');
  if (forbid.length === STAGE1_NAMES.length) fail('forbids every stage1: no pod could run');
  return { forbid, require, allowHostAccess, source };
}

export async function loadStage1Policy(file: string | undefined): Promise<Stage1Policy> {
  if (!file) return EMPTY_POLICY;
  const text = await fs.readFile(file, 'utf8').catch((err) => {
    throw new InvalidInput(`cannot read stage1 policy ${file}: ${(err as Error).message}`, 'pass --stage1-policy with a readable YAML file, or leave it out');
  });
  return parseStage1Policy(text, file);
}
