/**
 * The default ClusterRoles and ClusterRoleBindings kube-apiserver bootstraps
 * (plugin/pkg/auth/authorizer/rbac/bootstrappolicy), for the resources this control plane
 * serves: cluster-admin, the aggregated admin/edit/view and their system:aggregate-to-* parts,
 * system:basic-user, system:discovery, system:public-info-viewer, system:monitoring, and
 * system:service-account-issuer-discovery. They carry `rbac.authorization.kubernetes.io/autoupdate:
 * "true"`: at every start missing ones are created and missing rules or subjects added back
 * (kube's reconciliation; set the annotation to "false" to keep a changed one as it is).
 */
import type { KObj } from './store.js';
import { RBAC_GROUP } from './kinds/rbac.js';
import type { PolicyRule } from './rbac-authorizer.js';

const READ = ['get', 'list', 'watch'];
const WRITE = ['create', 'delete', 'deletecollection', 'patch', 'update'];
const READ_WRITE = [...READ, ...WRITE];

const rule = (verbs: string[], groups: string[], resources: string[]): PolicyRule => ({ verbs, apiGroups: groups, resources });
const urls = (verbs: string[], nonResourceURLs: string[]): PolicyRule => ({ verbs, nonResourceURLs });

export const AGGREGATE_TO = (role: 'admin' | 'edit' | 'view') => `rbac.authorization.k8s.io/aggregate-to-${role}`;
const AUTOUPDATE = 'rbac.authorization.kubernetes.io/autoupdate';
const BOOTSTRAP_LABELS = { 'kubernetes.io/bootstrapping': 'rbac-defaults' };

function clusterRole(name: string, rules: PolicyRule[] | undefined, o: { labels?: Record<string, string>; aggregateFrom?: 'admin' | 'edit' | 'view' } = {}): KObj {
  return {
    apiVersion: `${RBAC_GROUP}/v1`, kind: 'ClusterRole',
    metadata: { name, labels: { ...BOOTSTRAP_LABELS, ...o.labels }, annotations: { [AUTOUPDATE]: 'true' } },
    ...(o.aggregateFrom ? { aggregationRule: { clusterRoleSelectors: [{ matchLabels: { [AGGREGATE_TO(o.aggregateFrom)]: 'true' } }] }, rules: [] } : { rules }),
  };
}

export const DEFAULT_CLUSTER_ROLES: KObj[] = [
  clusterRole('cluster-admin', [rule(['*'], ['*'], ['*']), urls(['*'], ['*'])]),
  clusterRole('system:discovery', [urls(['get'], ['/livez', '/readyz', '/healthz', '/version', '/version/', '/openapi', '/openapi/*', '/api', '/api/*', '/apis', '/apis/*'])]),
  clusterRole('system:monitoring', [urls(['get'], ['/metrics', '/metrics/slis', '/livez', '/readyz', '/healthz', '/livez/*', '/readyz/*', '/healthz/*'])]),
  clusterRole('system:basic-user', [
    rule(['create'], ['authorization.k8s.io'], ['selfsubjectaccessreviews', 'selfsubjectrulesreviews']),
    rule(['create'], ['authentication.k8s.io'], ['selfsubjectreviews']),
  ]),
  clusterRole('system:public-info-viewer', [urls(['get'], ['/livez', '/readyz', '/healthz', '/version', '/version/'])]),
  clusterRole('system:service-account-issuer-discovery', [urls(['get'], ['/.well-known/openid-configuration', '/.well-known/openid-configuration/', '/openid/v1/jwks', '/openid/v1/jwks/'])]),
  clusterRole('admin', undefined, { aggregateFrom: 'admin' }),
  clusterRole('edit', undefined, { aggregateFrom: 'edit', labels: { [AGGREGATE_TO('admin')]: 'true' } }),
  clusterRole('view', undefined, { aggregateFrom: 'view', labels: { [AGGREGATE_TO('edit')]: 'true' } }),
  clusterRole('system:aggregate-to-admin', [
    rule(['create'], ['authorization.k8s.io'], ['localsubjectaccessreviews']),
    rule(READ_WRITE, [RBAC_GROUP], ['rolebindings', 'roles']),
  ], { labels: { [AGGREGATE_TO('admin')]: 'true' } }),
  clusterRole('system:aggregate-to-edit', [
    // Read on resources that can escalate (a pod's exec is its service account's rights; Secrets hold tokens).
    rule(READ, [''], ['pods/attach', 'pods/exec', 'pods/portforward', 'pods/proxy', 'secrets', 'services/proxy']),
    rule(['impersonate'], [''], ['serviceaccounts']),
    rule(WRITE, [''], ['pods', 'pods/attach', 'pods/exec', 'pods/portforward', 'pods/proxy']),
    rule(['create'], [''], ['pods/eviction']),
    rule(WRITE, [''], ['configmaps', 'events', 'persistentvolumeclaims', 'replicationcontrollers', 'replicationcontrollers/scale', 'secrets', 'serviceaccounts', 'services', 'services/proxy']),
    rule(['create'], [''], ['serviceaccounts/token']),
    rule(WRITE, ['apps'], ['daemonsets', 'deployments', 'deployments/rollback', 'deployments/scale', 'replicasets', 'replicasets/scale', 'statefulsets', 'statefulsets/scale']),
    rule(WRITE, ['autoscaling'], ['horizontalpodautoscalers']),
    rule(WRITE, ['batch'], ['cronjobs', 'jobs']),
    rule(WRITE, ['extensions'], ['daemonsets', 'deployments', 'deployments/rollback', 'deployments/scale', 'ingresses', 'networkpolicies', 'replicasets', 'replicasets/scale', 'replicationcontrollers/scale']),
    rule(WRITE, ['policy'], ['poddisruptionbudgets']),
    rule(WRITE, ['networking.k8s.io'], ['ingresses', 'networkpolicies']),
    rule(READ_WRITE, ['coordination.k8s.io'], ['leases']),
  ], { labels: { [AGGREGATE_TO('edit')]: 'true' } }),
  clusterRole('system:aggregate-to-view', [
    rule(READ, [''], ['configmaps', 'endpoints', 'persistentvolumeclaims', 'persistentvolumeclaims/status', 'pods', 'replicationcontrollers', 'replicationcontrollers/scale', 'serviceaccounts', 'services', 'services/status']),
    rule(READ, [''], ['bindings', 'events', 'limitranges', 'namespaces/status', 'pods/log', 'pods/status', 'replicationcontrollers/status', 'resourcequotas', 'resourcequotas/status']),
    rule(READ, [''], ['namespaces']),
    rule(READ, ['discovery.k8s.io'], ['endpointslices']),
    rule(READ, ['apps'], ['controllerrevisions', 'daemonsets', 'daemonsets/status', 'deployments', 'deployments/scale', 'deployments/status', 'replicasets', 'replicasets/scale', 'replicasets/status', 'statefulsets', 'statefulsets/scale', 'statefulsets/status']),
    rule(READ, ['autoscaling'], ['horizontalpodautoscalers', 'horizontalpodautoscalers/status']),
    rule(READ, ['batch'], ['cronjobs', 'cronjobs/status', 'jobs', 'jobs/status']),
    rule(READ, ['extensions'], ['daemonsets', 'daemonsets/status', 'deployments', 'deployments/scale', 'deployments/status', 'ingresses', 'ingresses/status', 'networkpolicies', 'replicasets', 'replicasets/scale', 'replicasets/status', 'replicationcontrollers/scale']),
    rule(READ, ['policy'], ['poddisruptionbudgets', 'poddisruptionbudgets/status']),
    rule(READ, ['networking.k8s.io'], ['ingresses', 'ingresses/status', 'networkpolicies']),
  ], { labels: { [AGGREGATE_TO('view')]: 'true' } }),
];

function clusterRoleBinding(name: string, role: string, groups: string[]): KObj {
  return {
    apiVersion: `${RBAC_GROUP}/v1`, kind: 'ClusterRoleBinding',
    metadata: { name, labels: { ...BOOTSTRAP_LABELS }, annotations: { [AUTOUPDATE]: 'true' } },
    roleRef: { apiGroup: RBAC_GROUP, kind: 'ClusterRole', name: role },
    subjects: groups.map((g) => ({ apiGroup: RBAC_GROUP, kind: 'Group', name: g })),
  };
}

export const DEFAULT_CLUSTER_ROLE_BINDINGS: KObj[] = [
  clusterRoleBinding('cluster-admin', 'cluster-admin', ['system:masters']),
  clusterRoleBinding('system:discovery', 'system:discovery', ['system:authenticated']),
  clusterRoleBinding('system:basic-user', 'system:basic-user', ['system:authenticated']),
  clusterRoleBinding('system:public-info-viewer', 'system:public-info-viewer', ['system:authenticated', 'system:unauthenticated']),
  clusterRoleBinding('system:monitoring', 'system:monitoring', ['system:monitoring']),
  clusterRoleBinding('system:service-account-issuer-discovery', 'system:service-account-issuer-discovery', ['system:serviceaccounts']),
];

/**
 * What reconciliation changes in a stored default (undefined: nothing): the rules or subjects it
 * lacks are added, as `kube-apiserver` does for objects whose autoupdate annotation is "true".
 * Aggregated roles' rules are the aggregation controller's, so only their rule selectors are
 * reconciled.
 */
export function reconcileDefault(stored: KObj, wanted: KObj): KObj | undefined {
  if (stored.metadata?.annotations?.[AUTOUPDATE] === 'false') return undefined;
  const next = structuredClone(stored);
  let changed = false;
  const addMissing = (field: 'rules' | 'subjects') => {
    const have: KObj[] = Array.isArray(next[field]) ? next[field] : [];
    for (const w of wanted[field] ?? []) {
      if (!have.some((h) => JSON.stringify(h) === JSON.stringify(w))) {
        have.push(structuredClone(w));
        changed = true;
      }
    }
    next[field] = have;
  };
  if (wanted.kind === 'ClusterRole') {
    if (wanted.aggregationRule) {
      if (JSON.stringify(next.aggregationRule) !== JSON.stringify(wanted.aggregationRule)) {
        next.aggregationRule = structuredClone(wanted.aggregationRule);
        changed = true;
      }
    } else addMissing('rules');
  } else addMissing('subjects');
  return changed ? next : undefined;
}
