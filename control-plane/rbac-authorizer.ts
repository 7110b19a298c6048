/**
 * Authorization as kube-apiserver's `--authorization-mode=Node,RBAC` does it:
 *
 * 1. `system:masters` is allowed everything (kube's privileged-group authorizer, before the others);
 * 2. the Node authorizer (node-authorizer.ts) allows what a node's own objects need;
 * 3. RBAC: the rules of every ClusterRole or Role that a ClusterRoleBinding, or a RoleBinding of
 *    the request's namespace, grants to the user, one of its groups, or its ServiceAccount.
 *
 * The first that allows wins; otherwise the request is refused with kube-apiserver's 403 and the
 * reasons the authorizers gave (the Node authorizer's "no relationship found…", RBAC's missing
 * roles). Also here: the rule matcher, the rules a user holds (SelfSubjectRulesReview) and the
 * escalation check on writes of roles and bindings (rbac's policybased storage).
 */
import { ApiError } from './resources.js';
import type { KObj } from './store.js';
import { MASTERS_GROUP, type UserInfo } from './authn.js';
import { forbidden, nodeDecision, nodeNameOf, type ObjectReader, type RequestAttributes } from './node-authorizer.js';
import { selectorMatches } from './kinds/workloads.js';
import { RBAC_GROUP } from './kinds/rbac.js';

export interface PolicyRule {
  verbs: string[];
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

/** A request that is not for a resource: discovery, /healthz, /version, /openapi… */
export interface NonResourceAttributes { verb: string; path: string }

export type Attributes = RequestAttributes | NonResourceAttributes;

export const isNonResource = (a: Attributes): a is NonResourceAttributes => 'path' in a;

export interface Decision { allowed: boolean; reason: string }

const ALL = '*';
const list = (v: unknown): string[] => (Array.isArray(v) ? v.filter((s) => typeof s === 'string') : []);
const has = (set: string[], v: string) => set.includes(v);

// ---------------------------------------------------------------- matching (rbac.go RuleAllows)

/** Whether one PolicyRule allows a request: verb, API group, resource (or `*`, or `*` + "/sub" for a subresource), resource name, or URL. */
export function ruleAllows(a: Attributes, rule: PolicyRule): boolean {
  const verbs = list(rule.verbs);
  if (!has(verbs, ALL) && !has(verbs, a.verb)) return false;
  if (isNonResource(a)) {
    return list(rule.nonResourceURLs).some((u) => u === ALL || u === a.path || (u.endsWith('*') && a.path.startsWith(u.slice(0, -1))));
  }
  const groups = list(rule.apiGroups);
  if (!has(groups, ALL) && !has(groups, a.group)) return false;
  const combined = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const resourceMatches = list(rule.resources).some((r) => r === ALL || r === combined || (!!a.subresource && r === `*/${a.subresource}`));
  if (!resourceMatches) return false;
  const names = list(rule.resourceNames);
  return names.length === 0 || (!!a.name && has(names, a.name));
}

// ---------------------------------------------------------------- who is bound to what

export const SERVICE_ACCOUNT_PREFIX = 'system:serviceaccount:';

function subjectApplies(s: KObj, user: UserInfo, bindingNamespace: string): boolean {
  switch (s?.kind) {
    case 'User': return s.name === user.name;
    case 'Group': return user.groups.includes(s.name);
    case 'ServiceAccount': {
      const ns = s.namespace || bindingNamespace;
      return !!ns && user.name === `${SERVICE_ACCOUNT_PREFIX}${ns}:${s.name}`;
    }
    default: return false;
  }
}

function describeSubject(s: KObj, bindingNamespace: string): string {
  if (s.kind === 'ServiceAccount') return `${s.kind} ${JSON.stringify(`${s.name}/${s.namespace || bindingNamespace}`)}`;
  return `${s.kind} ${JSON.stringify(s.name)}`;
}

interface RuleSource { rule: PolicyRule; source: string }

/**
 * Every rule granted to `user` in `namespace` ('' = cluster-wide only): ClusterRoleBindings
 * first, then the namespace's RoleBindings; a binding whose role does not exist is an error
 * (`clusterrole.rbac.authorization.k8s.io "x" not found`), as RBAC's rule resolver reports it.
 * `visit` returning true stops the walk.
 */
function visitRules(objects: ObjectReader, user: UserInfo, namespace: string, visit: (r: RuleSource) => boolean): string[] {
  const errors: string[] = [];
  const roleRules = (ref: KObj, bindingNamespace: string): PolicyRule[] | undefined => {
    if (ref?.kind === 'ClusterRole') {
      const role = objects.get('clusterroles', '', String(ref.name ?? ''));
      if (!role) errors.push(`clusterrole.${RBAC_GROUP} ${JSON.stringify(ref.name)} not found`);
      return role?.rules ?? (role ? [] : undefined);
    }
    if (ref?.kind === 'Role' && bindingNamespace) {
      const role = objects.get('roles', bindingNamespace, String(ref.name ?? ''));
      if (!role) errors.push(`role.${RBAC_GROUP} ${JSON.stringify(ref.name)} not found`);
      return role?.rules ?? (role ? [] : undefined);
    }
    return undefined;
  };
  const walk = (bindings: readonly KObj[], namespaced: boolean): boolean => {
    for (const b of bindings) {
      const ns = namespaced ? String(b.metadata?.namespace ?? '') : '';
      const subject = (Array.isArray(b.subjects) ? b.subjects : []).find((s: KObj) => subjectApplies(s, user, ns));
      if (!subject) continue;
      const rules = roleRules(b.roleRef, ns);
      if (!rules) continue;
      const source = namespaced
        ? `RoleBinding ${JSON.stringify(`${b.metadata.name}/${ns}`)} of ${b.roleRef.kind} ${JSON.stringify(b.roleRef.name)} to ${describeSubject(subject, ns)}`
        : `ClusterRoleBinding ${JSON.stringify(b.metadata.name)} of ${b.roleRef.kind} ${JSON.stringify(b.roleRef.name)} to ${describeSubject(subject, '')}`;
      for (const rule of Array.isArray(rules) ? rules : []) if (visit({ rule, source })) return true;
    }
    return false;
  };
  if (walk(objects.list('clusterrolebindings'), false)) return errors;
  if (namespace) walk(objects.list('rolebindings', namespace), true);
  return errors;
}

/** kube's utilerrors.NewAggregate: one error as itself, several as a bracketed list. */
const aggregate = (errors: string[]) => (errors.length === 1 ? errors[0]! : `[${errors.join(', ')}]`);

/** The RBAC authorizer alone. */
export function rbacDecision(objects: ObjectReader, user: UserInfo, a: Attributes): Decision {
  let allowedBy = '';
  const errors = visitRules(objects, user, isNonResource(a) ? '' : a.namespace, ({ rule, source }) => {
    if (!ruleAllows(a, rule)) return false;
    allowedBy = source;
    return true;
  });
  if (allowedBy) return { allowed: true, reason: `RBAC: allowed by ${allowedBy}` };
  return { allowed: false, reason: errors.length ? `RBAC: ${aggregate(errors)}` : '' };
}

/** The union of the authorizers (privileged group, Node, RBAC): the first to allow wins; the reasons of the others are kept. */
export function decide(user: UserInfo, a: Attributes, objects: ObjectReader): Decision {
  if (user.groups.includes(MASTERS_GROUP)) return { allowed: true, reason: '' };
  const reasons: string[] = [];
  const node = nodeNameOf(user);
  if (node !== undefined && !isNonResource(a)) {
    const d = nodeDecision(user, node, a, objects);
    if (d.allowed) return d;
    if (d.reason) reasons.push(d.reason);
  }
  const r = rbacDecision(objects, user, a);
  if (r.allowed) return r;
  if (r.reason) reasons.push(r.reason);
  return { allowed: false, reason: reasons.join('\n') };
}

/** kube-apiserver's 403 for a non-resource request: `forbidden: User "dev" cannot get path "/apis"`. */
export function forbiddenPath(user: UserInfo, a: NonResourceAttributes, reason?: string): ApiError {
  return new ApiError(403, 'Forbidden', `forbidden: User "${user.name}" cannot ${a.verb} path "${a.path}"${reason ? `: ${reason}` : ''}`);
}

/** Authorize a request; throws kube-apiserver's 403 when no authorizer allows it. */
export function authorize(user: UserInfo, a: Attributes, objects: ObjectReader): void {
  const d = decide(user, a, objects);
  if (d.allowed) return;
  throw isNonResource(a) ? forbiddenPath(user, a, d.reason) : forbidden(user, a, d.reason);
}

// ---------------------------------------------------------------- what a user may do (SelfSubjectRulesReview)

export interface UserRules {
  resourceRules: Array<{ verbs: string[]; apiGroups: string[]; resources: string[]; resourceNames?: string[] }>;
  nonResourceRules: Array<{ verbs: string[]; nonResourceURLs: string[] }>;
  incomplete: boolean;
  evaluationError?: string;
}

/** Every rule the authorizers can list for a user in a namespace (the Node authorizer cannot list its rules: incomplete). */
export function rulesFor(user: UserInfo, namespace: string, objects: ObjectReader): UserRules {
  const out: UserRules = { resourceRules: [], nonResourceRules: [], incomplete: false };
  const errors: string[] = [];
  if (user.groups.includes(MASTERS_GROUP)) {
    out.resourceRules.push({ verbs: [ALL], apiGroups: [ALL], resources: [ALL] });
    out.nonResourceRules.push({ verbs: [ALL], nonResourceURLs: [ALL] });
  }
  if (nodeNameOf(user) !== undefined) {
    out.incomplete = true;
    errors.push('node authorizer does not support user rule resolution');
  }
  errors.push(...visitRules(objects, user, namespace, ({ rule }) => {
    const urls = list(rule.nonResourceURLs);
    if (urls.length) out.nonResourceRules.push({ verbs: list(rule.verbs), nonResourceURLs: urls });
    else {
      const names = list(rule.resourceNames);
      out.resourceRules.push({ verbs: list(rule.verbs), apiGroups: list(rule.apiGroups), resources: list(rule.resources), ...(names.length ? { resourceNames: names } : {}) });
    }
    return false;
  }));
  if (errors.length) {
    out.incomplete = true;
    out.evaluationError = aggregate(errors);
  }
  return out;
}

// ---------------------------------------------------------------- escalation (rbac/validation ConfirmNoEscalation)

/** One verb on one resource of one group (or one URL), optionally one name: BreakdownRule's pieces. */
export function breakdownRule(rule: PolicyRule): PolicyRule[] {
  const out: PolicyRule[] = [];
  for (const group of list(rule.apiGroups)) {
    for (const resource of list(rule.resources)) {
      for (const verb of list(rule.verbs)) {
        const names = list(rule.resourceNames);
        if (names.length) for (const n of names) out.push({ apiGroups: [group], resources: [resource], verbs: [verb], resourceNames: [n] });
        else out.push({ apiGroups: [group], resources: [resource], verbs: [verb] });
      }
    }
  }
  for (const url of list(rule.nonResourceURLs)) for (const verb of list(rule.verbs)) out.push({ nonResourceURLs: [url], verbs: [verb] });
  return out;
}

const hasAll = (set: string[], want: string[]) => want.every((w) => set.includes(w));

/** Whether an owner's rule covers a sub-rule (policy_comparator.go ruleCovers): a star covers anything, star-slash-sub any resource's sub. */
export function ruleCovers(owner: PolicyRule, sub: PolicyRule): boolean {
  const ov = list(owner.verbs), og = list(owner.apiGroups), or = list(owner.resources), on = list(owner.resourceNames), ou = list(owner.nonResourceURLs);
  const sv = list(sub.verbs), sg = list(sub.apiGroups), sr = list(sub.resources), sn = list(sub.resourceNames), su = list(sub.nonResourceURLs);
  const verbs = has(ov, ALL) || hasAll(ov, sv);
  const groups = has(og, ALL) || hasAll(og, sg);
  const resources = has(or, ALL) || sr.every((r) => has(or, r) || (r.includes('/') && has(or, `*/${r.split('/').slice(1).join('/')}`)));
  const urls = su.every((u) => ou.some((o) => o === u || (o.endsWith('*') && u.startsWith(o.slice(0, -1)))));
  const names = sn.length === 0 ? on.length === 0 : on.length === 0 || hasAll(on, sn);
  return verbs && groups && resources && urls && names;
}

/** Go's %q of a []string: ["a" "b"]. */
const goQuoted = (v: string[]) => `[${v.map((s) => JSON.stringify(s)).join(' ')}]`;

/** rbacv1helpers.CompactString. */
export function compactString(r: PolicyRule): string {
  const parts: string[] = [];
  if (list(r.apiGroups).length) parts.push(`APIGroups:${goQuoted(list(r.apiGroups))}`);
  if (list(r.resources).length) parts.push(`Resources:${goQuoted(list(r.resources))}`);
  if (list(r.nonResourceURLs).length) parts.push(`NonResourceURLs:${goQuoted(list(r.nonResourceURLs))}`);
  if (list(r.resourceNames).length) parts.push(`ResourceNames:${goQuoted(list(r.resourceNames))}`);
  if (list(r.verbs).length) parts.push(`Verbs:${goQuoted(list(r.verbs))}`);
  return `{${parts.join(', ')}}`;
}

/** The pieces of `rules` that `owned` does not cover, with verbs of the same group/resource merged (CompactRules), sorted. */
export function uncoveredRules(owned: PolicyRule[], rules: PolicyRule[]): PolicyRule[] {
  const missing = rules.flatMap(breakdownRule).filter((piece) => !owned.some((o) => ruleCovers(o, piece)));
  const merged = new Map<string, PolicyRule>();
  const out: PolicyRule[] = [];
  for (const m of missing) {
    const simple = list(m.resourceNames).length === 0 && list(m.nonResourceURLs).length === 0;
    const key = simple ? `${m.apiGroups![0]}\u0000${m.resources![0]}` : '';
    const prev = simple ? merged.get(key) : undefined;
    if (prev) {
      if (!prev.verbs.includes(m.verbs[0]!)) prev.verbs.push(m.verbs[0]!);
      continue;
    }
    const copy = { ...m, verbs: [...m.verbs] };
    if (simple) merged.set(key, copy);
    out.push(copy);
  }
  return out.sort((a, b) => (compactString(a) < compactString(b) ? -1 : compactString(a) > compactString(b) ? 1 : 0));
}

function ownedRules(user: UserInfo, namespace: string, objects: ObjectReader): { rules: PolicyRule[]; errors: string[] } {
  const rules: PolicyRule[] = [];
  const errors = visitRules(objects, user, namespace, ({ rule }) => { rules.push(rule); return false; });
  return { rules, errors };
}

/** The message of a refused grant, as ConfirmNoEscalation words it. */
function escalationMessage(user: UserInfo, missing: PolicyRule[], errors: string[]): string {
  let msg = `user ${JSON.stringify(user.name)} (groups=${goQuoted(user.groups)}) is attempting to grant RBAC permissions not currently held:\n${missing.map(compactString).join('\n')}`;
  if (errors.length) msg += `; resolution errors: [${errors.join(' ')}]`;
  return msg;
}

/**
 * RBAC's escalation prevention for a write of a Role, ClusterRole, RoleBinding or
 * ClusterRoleBinding by `user` (the requester; undefined for the control plane's own
 * controllers, which are trusted): a role may hold only rules the requester holds in its
 * namespace, unless the requester may `escalate` roles; a binding may grant a role only if the
 * requester holds all its rules or may `bind` it; an aggregationRule needs cluster-admin's
 * rights. Unchanged rules (or roleRef) on update are not checked again.
 */
export function admitRbacWrite(user: UserInfo | undefined, kind: string, obj: KObj, cur: KObj | undefined, objects: ObjectReader): void {
  if (!user || user.groups.includes(MASTERS_GROUP)) return;
  if (!['Role', 'ClusterRole', 'RoleBinding', 'ClusterRoleBinding'].includes(kind)) return;
  const namespace = kind === 'Role' || kind === 'RoleBinding' ? String(obj.metadata?.namespace ?? '') : '';
  const name = String(obj.metadata?.name ?? '');
  const resource = { Role: 'roles', ClusterRole: 'clusterroles', RoleBinding: 'rolebindings', ClusterRoleBinding: 'clusterrolebindings' }[kind]!;
  const refuse = (why: string) => new ApiError(403, 'Forbidden', `${resource}.${RBAC_GROUP} ${JSON.stringify(name)} is forbidden: ${why}`, { name, group: RBAC_GROUP, kind: resource });
  const allowedTo = (verb: string, res: string, resName?: string) => decide(user, { verb, group: RBAC_GROUP, resource: res, namespace, ...(resName ? { name: resName } : {}) }, objects).allowed;
  if (kind === 'Role' || kind === 'ClusterRole') {
    const rules: PolicyRule[] = Array.isArray(obj.rules) ? obj.rules : [];
    const rulesChanged = !cur || JSON.stringify(cur.rules ?? []) !== JSON.stringify(rules);
    const aggChanged = kind === 'ClusterRole' && JSON.stringify(cur?.aggregationRule ?? null) !== JSON.stringify(obj.aggregationRule ?? null);
    if (!rulesChanged && !aggChanged) return;
    if (allowedTo('escalate', resource)) return;
    const owned = ownedRules(user, namespace, objects);
    if (rulesChanged) {
      const missing = uncoveredRules(owned.rules, rules);
      if (missing.length) throw refuse(escalationMessage(user, missing, owned.errors));
    }
    if (aggChanged && obj.aggregationRule) {
      if (uncoveredRules(owned.rules, [{ verbs: [ALL], apiGroups: [ALL], resources: [ALL] }, { verbs: [ALL], nonResourceURLs: [ALL] }]).length) {
        throw refuse('must have cluster-admin privileges to use the aggregationRule');
      }
    }
    return;
  }
  const ref: KObj = obj.roleRef ?? {};
  if (cur && JSON.stringify(cur.roleRef) === JSON.stringify(ref)) return;
  if (allowedTo('bind', ref.kind === 'Role' ? 'roles' : 'clusterroles', String(ref.name ?? ''))) return;
  const role = ref.kind === 'Role' ? objects.get('roles', namespace, String(ref.name ?? '')) : objects.get('clusterroles', '', String(ref.name ?? ''));
  if (!role) {
    const what = ref.kind === 'Role' ? 'roles' : 'clusterroles';
    throw new ApiError(404, 'NotFound', `${what}.${RBAC_GROUP} ${JSON.stringify(ref.name)} not found`, { name: ref.name, group: RBAC_GROUP, kind: what });
  }
  const owned = ownedRules(user, namespace, objects);
  const missing = uncoveredRules(owned.rules, Array.isArray(role.rules) ? role.rules : []);
  if (missing.length) throw refuse(escalationMessage(user, missing, owned.errors));
}

// ---------------------------------------------------------------- aggregation (clusterroleaggregation controller)

/**
 * The rules an aggregated ClusterRole should have: those of every other ClusterRole whose labels
 * match one of its clusterRoleSelectors, in name order, each rule once.
 */
export function aggregatedRules(role: KObj, all: KObj[]): PolicyRule[] {
  const selectors: KObj[] = role.aggregationRule?.clusterRoleSelectors ?? [];
  const out: PolicyRule[] = [];
  const seen = new Set<string>();
  const sources = all
    .filter((r) => r.metadata.name !== role.metadata.name && selectors.some((s) => selectorMatches(s, r.metadata.labels ?? {})))
    .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
  for (const src of sources) {
    for (const rule of Array.isArray(src.rules) ? src.rules : []) {
      const key = JSON.stringify(rule);
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(structuredClone(rule));
    }
  }
  return out;
}

// ---------------------------------------------------------------- impersonation (kubectl --as, --as-group)

const IMPERSONATE_EXTRA_PREFIX = 'impersonate-extra-';

/**
 * The user a request acts as: the authenticated one, or the one its `Impersonate-User`,
 * `Impersonate-Group`, `Impersonate-Uid` and `Impersonate-Extra-*` headers name, if the
 * authenticated user may `impersonate` each of them (users, groups, serviceaccounts, uids,
 * userextras), as kube-apiserver's impersonation filter. The impersonated user is in
 * `system:authenticated` (unless a group says otherwise) and a ServiceAccount in its groups.
 */
export function impersonate(headers: Record<string, string | string[] | undefined>, user: UserInfo, objects: ObjectReader): UserInfo {
  const all = (h: string) => { const v = headers[h]; return v === undefined ? [] : Array.isArray(v) ? v : [v]; };
  const name = all('impersonate-user')[0];
  const groups = all('impersonate-group').flatMap((g) => g.split(',').map((s) => s.trim()).filter(Boolean));
  const uid = all('impersonate-uid')[0];
  const extraKeys = Object.keys(headers).filter((h) => h.startsWith(IMPERSONATE_EXTRA_PREFIX));
  if (name === undefined) {
    if (groups.length || uid !== undefined || extraKeys.length) throw new ApiError(400, 'BadRequest', 'Impersonate-Group, Impersonate-Uid and Impersonate-Extra headers need an Impersonate-User header (kubectl --as-group needs --as)');
    return user;
  }
  const check = (a: RequestAttributes) => {
    const d = decide(user, a, objects);
    if (!d.allowed) throw forbidden(user, a, d.reason);
  };
  const sa = name.startsWith(SERVICE_ACCOUNT_PREFIX) ? name.slice(SERVICE_ACCOUNT_PREFIX.length).split(':') : undefined;
  if (sa && sa.length === 2 && sa[0] && sa[1]) check({ verb: 'impersonate', group: '', resource: 'serviceaccounts', namespace: sa[0], name: sa[1] });
  else check({ verb: 'impersonate', group: '', resource: 'users', namespace: '', name });
  for (const g of groups) check({ verb: 'impersonate', group: '', resource: 'groups', namespace: '', name: g });
  if (uid !== undefined) check({ verb: 'impersonate', group: 'authentication.k8s.io', resource: 'uids', namespace: '', name: uid });
  const extra: Record<string, string[]> = {};
  for (const h of extraKeys) {
    const key = decodeURIComponent(h.slice(IMPERSONATE_EXTRA_PREFIX.length));
    for (const v of all(h)) {
      check({ verb: 'impersonate', group: 'authentication.k8s.io', resource: 'userextras', subresource: key, namespace: '', name: v });
      (extra[key] ??= []).push(v);
    }
  }
  const effective = [...groups];
  if (sa && sa.length === 2) effective.push('system:serviceaccounts', `system:serviceaccounts:${sa[0]}`);
  if (name !== 'system:anonymous' && !effective.some((g) => g === 'system:authenticated' || g === 'system:unauthenticated')) effective.push('system:authenticated');
  return { name, groups: [...new Set(effective)], ...(uid !== undefined ? { uid } : {}), ...(extraKeys.length ? { extra } : {}) };
}
