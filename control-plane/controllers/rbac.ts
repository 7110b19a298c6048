/**
 * Two small controllers of kube-controller-manager's, for RBAC and identities:
 *
 * - ClusterRole aggregation (clusterrole-aggregation-controller): a ClusterRole with an
 *   aggregationRule gets the rules of every ClusterRole its selectors match (admin ⊇ edit ⊇ view
 *   through their aggregate-to-* labels; a ClusterRole labelled
 *   `rbac.authorization.k8s.io/aggregate-to-view: "true"` adds to view, and so to edit and admin);
 * - ServiceAccounts (serviceaccount-controller): every namespace that is not terminating has a
 *   `default` ServiceAccount, made again if deleted.
 */
import type { Logger } from '../../common/log.js';
import { ApiError } from '../resources.js';
import type { KObj, Store } from '../store.js';
import { aggregatedRules } from '../rbac-authorizer.js';
import { Loop, type ApiClient } from './client.js';

export class ClusterRoleAggregationController extends Loop {
  constructor(store: Store, private readonly log: Logger, private readonly client: ApiClient) {
    super(store, ['clusterroles'], 5000);
  }

  protected pass(): void {
    // Aggregated roles feed each other (view → edit → admin): a few rounds reach the fixed point in one pass.
    for (let round = 0; round < 5; round++) {
      let changed = false;
      const all = this.store.list('clusterroles');
      for (const role of all.filter((r) => r.aggregationRule)) {
        const rules = aggregatedRules(role, all);
        if (JSON.stringify(rules) === JSON.stringify(role.rules ?? [])) continue;
        try {
          const updated = this.client.update('clusterroles', '', { ...role, rules });
          Object.assign(role, updated);
          changed = true;
        } catch (err) {
          if (err instanceof ApiError && (err.code === 409 || err.code === 404)) continue;
          this.log.error({ err, clusterrole: role.metadata.name }, 'aggregating cluster role failed');
        }
      }
      if (!changed) return;
    }
  }
}

export const DEFAULT_SERVICE_ACCOUNT = 'default';

export class ServiceAccountsController extends Loop {
  constructor(store: Store, private readonly log: Logger, private readonly client: ApiClient) {
    super(store, ['namespaces', 'serviceaccounts'], 5000);
  }

  protected pass(): void {
    for (const ns of this.store.list('namespaces')) {
      if (ns.metadata.deletionTimestamp || ns.status?.phase === 'Terminating') continue;
      const name: string = ns.metadata.name;
      if (this.store.get('serviceaccounts', name, DEFAULT_SERVICE_ACCOUNT)) continue;
      try {
        this.client.create('serviceaccounts', name, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: DEFAULT_SERVICE_ACCOUNT, namespace: name } } as KObj);
      } catch (err) {
        if (err instanceof ApiError && [404, 409, 403].includes(err.code)) continue;
        this.log.error({ err, namespace: name }, 'creating the default service account failed');
      }
    }
  }
}
