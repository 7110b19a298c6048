/**
 * rbac.authorization.k8s.io/v1 Role, ClusterRole, RoleBinding and ClusterRoleBinding, and v1
 * ServiceAccount, as kube-apiserver defaults and validates them (pkg/apis/rbac/validation):
 * a rule names verbs and either resources (with API groups) or non-resource URLs, never both
 * (and a namespaced Role none of the latter); a binding's roleRef names a Role or ClusterRole
 * of this API group and cannot change; subjects are Users, Groups or ServiceAccounts.
 */
import type { Cause } from '../resources.js';
import type { KObj } from '../store.js';
import type { KindStrategy } from './strategy.js';

export const RBAC_GROUP = 'rbac.authorization.k8s.io';

const isObj = (v: unknown): v is KObj => typeof v === 'object' && v !== null && !Array.isArray(v);
const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');
const SA_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function validateRules(rules: unknown, namespaced: boolean, causes: Cause[], at = 'rules'): void {
  if (rules === undefined || rules === null) return;
  if (!Array.isArray(rules)) {
    causes.push({ field: at, reason: 'FieldValueInvalid', message: 'Invalid value: must be a list of PolicyRules' });
    return;
  }
  rules.forEach((rule: unknown, i) => {
    const p = `${at}[${i}]`;
    if (!isObj(rule)) {
      causes.push({ field: p, reason: 'FieldValueInvalid', message: 'Invalid value: must be a PolicyRule object' });
      return;
    }
    for (const f of ['verbs', 'apiGroups', 'resources', 'resourceNames', 'nonResourceURLs']) {
      if (rule[f] !== undefined && rule[f] !== null && !strings(rule[f])) causes.push({ field: `${p}.${f}`, reason: 'FieldValueInvalid', message: 'Invalid value: must be a list of strings' });
    }
    const len = (f: string) => (Array.isArray(rule[f]) ? rule[f].length : 0);
    if (len('verbs') === 0) causes.push({ field: `${p}.verbs`, reason: 'FieldValueRequired', message: 'Required value: verbs must contain at least one value' });
    if (len('nonResourceURLs') > 0) {
      if (namespaced) causes.push({ field: `${p}.nonResourceURLs`, reason: 'FieldValueInvalid', message: `Invalid value: ${goStrings(rule.nonResourceURLs)}: namespaced rules cannot apply to non-resource URLs` });
      if (len('apiGroups') > 0 || len('resources') > 0) causes.push({ field: `${p}.nonResourceURLs`, reason: 'FieldValueInvalid', message: `Invalid value: ${goStrings(rule.nonResourceURLs)}: rules cannot apply to both regular resources and non-resource URLs` });
      return;
    }
    if (len('apiGroups') === 0) causes.push({ field: `${p}.apiGroups`, reason: 'FieldValueRequired', message: 'Required value: resource rules must supply at least one api group' });
    if (len('resources') === 0) causes.push({ field: `${p}.resources`, reason: 'FieldValueRequired', message: 'Required value: resource rules must supply at least one resource' });
  });
}

/** Go's %#v of a []string, as field.Invalid prints it. */
const goStrings = (v: string[]) => `[]string{${v.map((s) => JSON.stringify(s)).join(', ')}}`;

function validateAggregationRule(role: KObj, causes: Cause[]): void {
  const agg = role.aggregationRule;
  if (agg === undefined || agg === null) return;
  if (!isObj(agg) || !Array.isArray(agg.clusterRoleSelectors) || agg.clusterRoleSelectors.length === 0) {
    causes.push({ field: 'aggregationRule.clusterRoleSelectors', reason: 'FieldValueRequired', message: 'Required value' });
    return;
  }
  agg.clusterRoleSelectors.forEach((s: unknown, i: number) => {
    if (!isObj(s)) causes.push({ field: `aggregationRule.clusterRoleSelectors[${i}]`, reason: 'FieldValueInvalid', message: 'Invalid value: must be a label selector' });
    else if (s.matchExpressions !== undefined && !Array.isArray(s.matchExpressions)) causes.push({ field: `aggregationRule.clusterRoleSelectors[${i}].matchExpressions`, reason: 'FieldValueInvalid', message: 'Invalid value: must be a list' });
  });
}

/** SetDefaults_Subject / SetDefaults_RoleBinding: Users and Groups (and the roleRef) are of the RBAC group. */
function defaultBinding(binding: KObj): void {
  if (isObj(binding.roleRef) && !binding.roleRef.apiGroup) binding.roleRef.apiGroup = RBAC_GROUP;
  for (const s of Array.isArray(binding.subjects) ? binding.subjects : []) {
    if (isObj(s) && (s.apiGroup === undefined || s.apiGroup === '') && (s.kind === 'User' || s.kind === 'Group')) s.apiGroup = RBAC_GROUP;
  }
}

function validateBinding(binding: KObj, namespaced: boolean, causes: Cause[]): void {
  const ref = binding.roleRef;
  if (!isObj(ref)) {
    causes.push({ field: 'roleRef', reason: 'FieldValueRequired', message: 'Required value' });
  } else {
    if (ref.apiGroup !== RBAC_GROUP) causes.push({ field: 'roleRef.apiGroup', reason: 'FieldValueNotSupported', message: `Unsupported value: "${ref.apiGroup ?? ''}": supported values: "${RBAC_GROUP}"` });
    const kinds = namespaced ? ['Role', 'ClusterRole'] : ['ClusterRole'];
    if (!kinds.includes(ref.kind)) causes.push({ field: 'roleRef.kind', reason: 'FieldValueNotSupported', message: `Unsupported value: "${ref.kind ?? ''}": supported values: ${kinds.map((k) => `"${k}"`).join(', ')}` });
    if (!ref.name) causes.push({ field: 'roleRef.name', reason: 'FieldValueRequired', message: 'Required value' });
    else if (typeof ref.name !== 'string' || /[/%]/.test(ref.name) || ref.name === '.' || ref.name === '..') {
      causes.push({ field: 'roleRef.name', reason: 'FieldValueInvalid', message: `Invalid value: "${ref.name}": may not contain '/' or '%'` });
    }
  }
  const subjects = binding.subjects ?? [];
  if (!Array.isArray(subjects)) {
    causes.push({ field: 'subjects', reason: 'FieldValueInvalid', message: 'Invalid value: must be a list of subjects' });
    return;
  }
  subjects.forEach((s: unknown, i: number) => {
    const p = `subjects[${i}]`;
    if (!isObj(s)) {
      causes.push({ field: p, reason: 'FieldValueInvalid', message: 'Invalid value: must be a Subject object' });
      return;
    }
    if (!s.name) causes.push({ field: `${p}.name`, reason: 'FieldValueRequired', message: 'Required value' });
    switch (s.kind) {
      case 'ServiceAccount':
        if (s.apiGroup) causes.push({ field: `${p}.apiGroup`, reason: 'FieldValueNotSupported', message: `Unsupported value: "${s.apiGroup}": supported values: ""` });
        if (s.name && (typeof s.name !== 'string' || !SA_NAME.test(s.name) || s.name.length > 253)) causes.push({ field: `${p}.name`, reason: 'FieldValueInvalid', message: `Invalid value: "${s.name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character` });
        if (!namespaced && !s.namespace) causes.push({ field: `${p}.namespace`, reason: 'FieldValueRequired', message: 'Required value' });
        break;
      case 'User':
      case 'Group':
        if (s.apiGroup !== RBAC_GROUP) causes.push({ field: `${p}.apiGroup`, reason: 'FieldValueNotSupported', message: `Unsupported value: "${s.apiGroup ?? ''}": supported values: "${RBAC_GROUP}"` });
        if (s.kind === 'Group' && s.namespace) causes.push({ field: `${p}.namespace`, reason: 'FieldValueInvalid', message: `Invalid value: "${s.namespace}": must be empty for a Group` });
        break;
      default:
        causes.push({ field: `${p}.kind`, reason: 'FieldValueNotSupported', message: `Unsupported value: "${s.kind ?? ''}": supported values: "ServiceAccount", "User", "Group"` });
    }
  });
}

/** ValidateRoleBindingUpdate: `roleRef` is fixed for a binding's life (delete and recreate to change it). */
function roleRefUnchanged(binding: KObj, cur: KObj, causes: Cause[]): void {
  const a = cur.roleRef ?? {}, b = binding.roleRef ?? {};
  if (a.apiGroup !== b.apiGroup || a.kind !== b.kind || a.name !== b.name) {
    causes.push({ field: 'roleRef', reason: 'FieldValueInvalid', message: `Invalid value: rbac.RoleRef{APIGroup:${JSON.stringify(b.apiGroup ?? '')}, Kind:${JSON.stringify(b.kind ?? '')}, Name:${JSON.stringify(b.name ?? '')}}: cannot change roleRef` });
  }
}

export const roleStrategy: KindStrategy = { validate: (role, causes) => validateRules(role.rules, true, causes) };

export const clusterRoleStrategy: KindStrategy = {
  validate(role, causes) {
    validateRules(role.rules, false, causes);
    validateAggregationRule(role, causes);
  },
};

export const roleBindingStrategy: KindStrategy = {
  prepareForCreate: defaultBinding,
  prepareForUpdate: defaultBinding,
  validate: (b, causes) => validateBinding(b, true, causes),
  validateUpdate: roleRefUnchanged,
};

export const clusterRoleBindingStrategy: KindStrategy = {
  prepareForCreate: defaultBinding,
  prepareForUpdate: defaultBinding,
  validate: (b, causes) => validateBinding(b, false, causes),
  validateUpdate: roleRefUnchanged,
};

export const serviceAccountStrategy: KindStrategy = {
  validate(sa, causes) {
    for (const f of ['secrets', 'imagePullSecrets']) {
      const v = sa[f];
      if (v === undefined || v === null) continue;
      if (!Array.isArray(v)) causes.push({ field: f, reason: 'FieldValueInvalid', message: 'Invalid value: must be a list of references' });
      else v.forEach((r: unknown, i: number) => { if (!isObj(r) || !r.name) causes.push({ field: `${f}[${i}].name`, reason: 'FieldValueRequired', message: 'Required value' }); });
    }
    if (sa.automountServiceAccountToken !== undefined && sa.automountServiceAccountToken !== null && typeof sa.automountServiceAccountToken !== 'boolean') {
      causes.push({ field: 'automountServiceAccountToken', reason: 'FieldValueInvalid', message: 'Invalid value: must be true or false' });
    }
  },
};

/** The ROLE column of bindings and the subjects columns of `-o wide`, as kubectl prints them. */
export function bindingColumns(b: KObj): { role: string; users: string; groups: string; serviceAccounts: string } {
  const subjects: KObj[] = Array.isArray(b.subjects) ? b.subjects : [];
  const of = (kind: string) => subjects.filter((s) => s.kind === kind);
  return {
    role: `${b.roleRef?.kind ?? ''}/${b.roleRef?.name ?? ''}`,
    users: of('User').map((s) => s.name).join(', '),
    groups: of('Group').map((s) => s.name).join(', '),
    serviceAccounts: of('ServiceAccount').map((s) => `${s.namespace ?? ''}/${s.name}`).join(', '),
  };
}
