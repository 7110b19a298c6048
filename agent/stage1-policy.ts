import * as fs from 'node:fs/promises';
import { parse } from 'yaml';
import { InvalidInput } from '../common/errors.js';
import { STAGE1_NAMES, type Stage1Name } from '../stage1/contract.js';

/**
 * Which stage1 a pod runs under, and the node's policy on it.
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

export interface Stage1Policy {
  forbid: Stage1Name[];
  require: Stage1Rule[];
}

export const EMPTY_POLICY: Stage1Policy = { forbid: [], require: [] };

export interface PodFacts {
  namespace: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  runtimeClassName?: string;
}

export type Stage1Choice =
  | { stage1: Stage1Name; requested: boolean; raisedBy?: string }
  | { rejected: { reason: 'RuntimeClassNotFound' | 'Stage1NotAllowed' | 'InvalidStage1'; message: string } };

/** Rules that apply to a pod, in file order. */
function rulesFor(policy: Stage1Policy, pod: PodFacts): Stage1Rule[] {
  return policy.require.filter((r) =>
    (!r.namespaces || r.namespaces.includes(pod.namespace))
    && (!r.matchLabels || Object.entries(r.matchLabels).every(([k, v]) => pod.labels[k] === v)));
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
  const allowed = (s: Stage1Name) => STRENGTH[s] >= STRENGTH[minimum] && !policy.forbid.includes(s);

  if (requested) {
    if (policy.forbid.includes(requested)) return reject('Stage1NotAllowed', `stage1 ${requested} is forbidden on this node by its stage1 policy`);
    if (!allowed(requested)) {
      return reject('Stage1NotAllowed', `stage1 ${requested} is weaker than the ${minimum} this node's stage1 policy requires for ${describeRule(strongest!)}`);
    }
    return { stage1: requested, requested: true };
  }
  if (allowed(nodeDefault)) return { stage1: nodeDefault, requested: false };
  const raised = BY_STRENGTH.find((s) => STRENGTH[s] >= STRENGTH[nodeDefault] && allowed(s));
  if (!raised) return reject('Stage1NotAllowed', `no stage1 of this node satisfies its stage1 policy for this pod (forbidden: ${policy.forbid.join(', ') || 'none'}; required: ${minimum})`);
  return { stage1: raised, requested: false, raisedBy: strongest && STRENGTH[raised] === STRENGTH[minimum] ? describeRule(strongest) : 'forbidden stage1s' };
}

/** Parse a policy file's text; every mistake is an InvalidInput naming the field. */
export function parseStage1Policy(text: string, source: string): Stage1Policy {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new InvalidInput(`stage1 policy ${source}: not YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return EMPTY_POLICY;
  const fail = (msg: string): never => { throw new InvalidInput(`stage1 policy ${source}: ${msg}`, 'see agent/README.md, "Stage1 selection and policy"'); };
  if (typeof doc !== 'object' || Array.isArray(doc)) fail('must be a mapping with `forbid` and/or `require`');
  const obj = doc as Record<string, unknown>;
  const unknown = Object.keys(obj).filter((k) => k !== 'forbid' && k !== 'require');
  if (unknown.length) fail(`unknown field(s) ${unknown.join(', ')} (known: forbid, require)`);
  const stage1 = (v: unknown, field: string): Stage1Name => {
    if (typeof v !== 'string' || !(STAGE1_NAMES as readonly string[]).includes(v)) fail(`${field}: "${String(v)}" is not a stage1 (choose one of ${STAGE1_NAMES.join(', ')})`);
    return v as Stage1Name;
  };
  const forbid = obj.forbid === undefined ? [] : Array.isArray(obj.forbid) ? obj.forbid.map((v, i) => stage1(v, `forbid[${i}]`)) : fail('forbid must be a list of stage1 names');
  const require = obj.require === undefined ? [] : Array.isArray(obj.require) ? obj.require.map((r, i): Stage1Rule => {
    const at = `require[${i}]`;
    if (r === null || typeof r !== 'object' || Array.isArray(r)) fail(`${at} must be a mapping`);
    const rule = r as Record<string, unknown>;
    const extra = Object.keys(rule).filter((k) => !['stage1', 'namespaces', 'matchLabels'].includes(k));
    if (extra.length) fail(`${at}: unknown field(s) ${extra.join(', ')} (known: stage1, namespaces, matchLabels)`);
    const out: Stage1Rule = { stage1: stage1(rule.stage1, `${at}.stage1`) };
    if (rule.namespaces !== undefined) {
      if (!Array.isArray(rule.namespaces) || rule.namespaces.length === 0 || rule.namespaces.some((n) => typeof n !== 'string')) fail(`${at}.namespaces must be a non-empty list of names`);
      out.namespaces = rule.namespaces as string[];
    }
    if (rule.matchLabels !== undefined) {
      const labels = rule.matchLabels;
      if (labels === null || typeof labels !== 'object' || Array.isArray(labels) || Object.values(labels).some((v) => typeof v !== 'string')) fail(`${at}.matchLabels must map label keys to string values`);
      out.matchLabels = labels as Record<string, string>;
    }
    return out;
  }) : fail('require must be a list of rules');
  if (forbid.length === STAGE1_NAMES.length) fail('forbids every stage1: no pod could run');
  return { forbid, require };
}

export async function loadStage1Policy(file: string | undefined): Promise<Stage1Policy> {
  if (!file) return EMPTY_POLICY;
  const text = await fs.readFile(file, 'utf8').catch((err) => {
    throw new InvalidInput(`cannot read stage1 policy ${file}: ${(err as Error).message}`, 'pass --stage1-policy with a readable YAML file, or leave it out');
  });
  return parseStage1Policy(text, file);
}
