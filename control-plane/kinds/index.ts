import { now, type Cause } from '../resources.js';
import type { KObj } from '../store.js';
import { configMapUpdateCauses, normaliseConfigMap, validateConfigMap } from './configmaps.js';
import { hpaStrategy } from './hpa.js';
import { pdbStrategy } from './disruption.js';
import { podStrategy } from './pods.js';
import { endpointSliceStrategy, endpointsStrategy, serviceStrategy } from './services.js';
import { normaliseSecret, secretUpdateCauses, validateSecret } from './secrets.js';
import { persistentVolumeClaimStrategy, persistentVolumeStrategy, storageClassStrategy } from './storage.js';
import type { KindStrategy } from './strategy.js';
import { clusterRoleBindingStrategy, clusterRoleStrategy, roleBindingStrategy, roleStrategy, serviceAccountStrategy } from './rbac.js';
import { controllerRevisionStrategy, cronJobStrategy, daemonSetStrategy, deploymentStrategy, jobStrategy, replicaSetStrategy, statefulSetStrategy } from './workloads.js';

export type { KindStrategy } from './strategy.js';

const required = (obj: KObj, field: string, causes: Cause[]) => {
  if (!obj[field]) causes.push({ field, reason: 'FieldValueRequired', message: 'Required value' });
};

/** One strategy per kind the control plane serves (control-plane/resources.ts lists their REST shape). */
export const STRATEGIES: Record<string, KindStrategy> = {
  Pod: podStrategy,
  Node: { statusSubresource: true },
  Namespace: {
    statusSubresource: true,
    prepareForCreate: (ns) => { ns.status = { phase: 'Active' }; },
  },
  Secret: {
    prepareForCreate: normaliseSecret,
    prepareForUpdate: normaliseSecret,
    validate: validateSecret,
    validateUpdate: (secret, cur, causes) => causes.push(...secretUpdateCauses(cur, secret)),
  },
  ConfigMap: {
    prepareForCreate: normaliseConfigMap,
    prepareForUpdate: normaliseConfigMap,
    validate: validateConfigMap,
    validateUpdate: (cm, cur, causes) => causes.push(...configMapUpdateCauses(cur, cm)),
  },
  Event: {
    prepareForCreate(ev) {
      ev.firstTimestamp ??= ev.eventTime ? null : now();
      ev.lastTimestamp ??= ev.firstTimestamp;
      ev.count ??= 1;
      ev.type ??= 'Normal';
    },
    validate: (ev, causes) => required(ev, 'involvedObject', causes),
  },
  Lease: {},
  PersistentVolume: persistentVolumeStrategy,
  PersistentVolumeClaim: persistentVolumeClaimStrategy,
  StorageClass: storageClassStrategy,
  RuntimeClass: { validate: (rc, causes) => required(rc, 'handler', causes) },
  ReplicaSet: replicaSetStrategy,
  Deployment: deploymentStrategy,
  Job: jobStrategy,
  CronJob: cronJobStrategy,
  DaemonSet: daemonSetStrategy,
  StatefulSet: statefulSetStrategy,
  ControllerRevision: controllerRevisionStrategy,
  HorizontalPodAutoscaler: hpaStrategy,
  PodDisruptionBudget: pdbStrategy,
  Service: serviceStrategy,
  Endpoints: endpointsStrategy,
  EndpointSlice: endpointSliceStrategy,
  ServiceAccount: serviceAccountStrategy,
  Role: roleStrategy,
  ClusterRole: clusterRoleStrategy,
  RoleBinding: roleBindingStrategy,
  ClusterRoleBinding: clusterRoleBindingStrategy,
};

export function strategyFor(kind: string): KindStrategy {
  const s = STRATEGIES[kind];
  if (!s) throw new Error(`no strategy for kind ${kind}`);
  return s;
}
