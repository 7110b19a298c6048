/**
 * Known-field schemas used for fieldValidation (Strict/Warn/Ignore): enough of the
 * Kubernetes types to tell unknown fields from known ones. `'*'` accepts anything
 * below it (used for structures this server stores but does not interpret).
 */
export type Schema = '*' | 's' | { [field: string]: Schema } | [Schema];

const A = '*';
const S = 's';
const map: Schema = A; // string→string maps (labels, annotations, nodeSelector)

const objectMeta: Schema = {
  name: S, generateName: S, namespace: S, selfLink: S, uid: S, resourceVersion: S, generation: S,
  creationTimestamp: S, deletionTimestamp: S, deletionGracePeriodSeconds: S, labels: map, annotations: map,
  ownerReferences: A, finalizers: [S], managedFields: A,
};

const envVar: Schema = { name: S, value: S, valueFrom: A };
const probe: Schema = A;
const resources: Schema = { limits: map, requests: map, claims: A };
const container: Schema = {
  name: S, image: S, command: [S], args: [S], workingDir: S,
  ports: [{ name: S, hostPort: S, containerPort: S, protocol: S, hostIP: S }],
  envFrom: A, env: [envVar], resources, resizePolicy: A, restartPolicy: S,
  volumeMounts: [{ name: S, readOnly: S, recursiveReadOnly: S, mountPath: S, subPath: S, mountPropagation: S, subPathExpr: S }],
  volumeDevices: A, livenessProbe: probe, readinessProbe: probe, startupProbe: probe, lifecycle: A,
  terminationMessagePath: S, terminationMessagePolicy: S, imagePullPolicy: S, securityContext: A,
  stdin: S, stdinOnce: S, tty: S,
};

const podSpec: Schema = {
  volumes: A, initContainers: [container], containers: [container], ephemeralContainers: A,
  restartPolicy: S, terminationGracePeriodSeconds: S, activeDeadlineSeconds: S, dnsPolicy: S, nodeSelector: map,
  serviceAccountName: S, serviceAccount: S, automountServiceAccountToken: S, nodeName: S, hostNetwork: S, hostPID: S,
  hostIPC: S, shareProcessNamespace: S, securityContext: A, imagePullSecrets: A, hostname: S, subdomain: S, affinity: A,
  schedulerName: S, tolerations: A, hostAliases: A, priorityClassName: S, priority: S, dnsConfig: A, readinessGates: A,
  runtimeClassName: S, enableServiceLinks: S, preemptionPolicy: S, overhead: map, topologySpreadConstraints: A,
  setHostnameAsFQDN: S, os: A, hostUsers: S, schedulingGates: A, resourceClaims: A, resources: A,
};

const podStatus: Schema = {
  phase: S, conditions: A, message: S, reason: S, nominatedNodeName: S, hostIP: S, hostIPs: A, podIP: S, podIPs: A,
  startTime: S, initContainerStatuses: A, containerStatuses: A, qosClass: S, ephemeralContainerStatuses: A, resize: S,
  resourceClaimStatuses: A,
};

const top = (spec: Schema, status: Schema = A): Schema => ({ apiVersion: S, kind: S, metadata: objectMeta, spec, status });

const labelSelector: Schema = { matchLabels: map, matchExpressions: [{ key: S, operator: S, values: [S] }] };
const podTemplate: Schema = { metadata: objectMeta, spec: podSpec };
const policyRule: Schema = { verbs: [S], apiGroups: [S], resources: [S], resourceNames: [S], nonResourceURLs: [S] };
const subject: Schema = { kind: S, apiGroup: S, name: S, namespace: S };

export const SCHEMAS: Record<string, Schema> = {
  ReplicaSet: top({ replicas: S, minReadySeconds: S, selector: labelSelector, template: podTemplate }),
  Deployment: top({
    replicas: S, selector: labelSelector, template: podTemplate, minReadySeconds: S, revisionHistoryLimit: S, paused: S,
    progressDeadlineSeconds: S, strategy: { type: S, rollingUpdate: { maxUnavailable: S, maxSurge: S } },
  }),
  Job: top({
    parallelism: S, completions: S, activeDeadlineSeconds: S, podFailurePolicy: A, successPolicy: A, backoffLimit: S,
    backoffLimitPerIndex: S, maxFailedIndexes: S, selector: labelSelector, manualSelector: S, template: podTemplate,
    ttlSecondsAfterFinished: S, completionMode: S, suspend: S, podReplacementPolicy: S, managedBy: S,
  }),
  Scale: top({ replicas: S }),
  DaemonSet: top({
    selector: labelSelector, template: podTemplate, minReadySeconds: S, revisionHistoryLimit: S,
    updateStrategy: { type: S, rollingUpdate: { maxUnavailable: S, maxSurge: S } },
  }),
  CronJob: top({
    schedule: S, timeZone: S, startingDeadlineSeconds: S, concurrencyPolicy: S, suspend: S, successfulJobsHistoryLimit: S,
    failedJobsHistoryLimit: S, jobTemplate: { metadata: objectMeta, spec: A },
  }),
  Pod: top(podSpec, podStatus),
  Node: top({ podCIDR: S, podCIDRs: [S], providerID: S, unschedulable: S, taints: A, configSource: A, externalID: S }),
  Namespace: top({ finalizers: [S] }),
  Lease: top({ holderIdentity: S, leaseDurationSeconds: S, acquireTime: S, renewTime: S, leaseTransitions: S, strategy: S, preferredHolder: S }),
  Event: {
    apiVersion: S, kind: S, metadata: objectMeta, involvedObject: A, reason: S, message: S, source: A, firstTimestamp: S,
    lastTimestamp: S, count: S, type: S, eventTime: S, series: A, action: S, related: A, reportingComponent: S, reportingInstance: S,
  },
  RuntimeClass: { apiVersion: S, kind: S, metadata: objectMeta, handler: S, overhead: A, scheduling: A },
  Secret: { apiVersion: S, kind: S, metadata: objectMeta, data: map, stringData: map, type: S, immutable: S },
  Service: top({
    ports: [{ name: S, protocol: S, appProtocol: S, port: S, targetPort: S, nodePort: S }], selector: map, clusterIP: S, clusterIPs: [S],
    type: S, externalIPs: [S], sessionAffinity: S, loadBalancerIP: S, loadBalancerSourceRanges: [S], externalName: S,
    externalTrafficPolicy: S, healthCheckNodePort: S, publishNotReadyAddresses: S, sessionAffinityConfig: { clientIP: { timeoutSeconds: S } },
    ipFamilies: [S], ipFamilyPolicy: S, allocateLoadBalancerNodePorts: S, loadBalancerClass: S, internalTrafficPolicy: S, trafficDistribution: S,
  }),
  Endpoints: { apiVersion: S, kind: S, metadata: objectMeta, subsets: [{ addresses: A, notReadyAddresses: A, ports: [{ name: S, port: S, protocol: S, appProtocol: S }] }] },
  EndpointSlice: {
    apiVersion: S, kind: S, metadata: objectMeta, addressType: S, ports: [{ name: S, port: S, protocol: S, appProtocol: S }],
    endpoints: [{ addresses: [S], conditions: { ready: S, serving: S, terminating: S }, hostname: S, targetRef: A, deprecatedTopology: A, nodeName: S, zone: S, hints: A }],
  },
  Binding: { apiVersion: S, kind: S, metadata: objectMeta, target: A },
  Eviction: { apiVersion: S, kind: S, metadata: objectMeta, deleteOptions: A },
  PodDisruptionBudget: top({ minAvailable: S, maxUnavailable: S, selector: labelSelector, unhealthyPodEvictionPolicy: S }),
  ServiceAccount: { apiVersion: S, kind: S, metadata: objectMeta, secrets: A, imagePullSecrets: A, automountServiceAccountToken: S },
  Role: { apiVersion: S, kind: S, metadata: objectMeta, rules: [policyRule] },
  ClusterRole: { apiVersion: S, kind: S, metadata: objectMeta, rules: [policyRule], aggregationRule: { clusterRoleSelectors: [labelSelector] } },
  RoleBinding: { apiVersion: S, kind: S, metadata: objectMeta, subjects: [subject], roleRef: { apiGroup: S, kind: S, name: S } },
  ClusterRoleBinding: { apiVersion: S, kind: S, metadata: objectMeta, subjects: [subject], roleRef: { apiGroup: S, kind: S, name: S } },
};

/** Paths of fields not in the schema, formatted like the apiserver's strict decoder ("spec.containers[0].foo"). */
export function unknownFields(obj: unknown, schema: Schema | undefined, at = ''): string[] {
  if (schema === undefined || schema === '*' || obj === null || obj === undefined) return [];
  if (schema === 's') return [];
  if (Array.isArray(schema)) {
    if (!Array.isArray(obj)) return [];
    return obj.flatMap((e, i) => unknownFields(e, schema[0], `${at}[${i}]`));
  }
  if (typeof obj !== 'object' || Array.isArray(obj)) return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    const p = at ? `${at}.${k}` : k;
    if (!(k in schema)) out.push(p);
    else out.push(...unknownFields(v, schema[k], p));
  }
  return out;
}

/** Remove the given unknown field paths from obj (fieldValidation Ignore/Warn drop them, as the apiserver does). */
export function dropFields(obj: any, paths: string[]): void {
  for (const p of paths) {
    const parts = p.match(/[^.[\]]+/g) ?? [];
    let cur = obj;
    for (const part of parts.slice(0, -1)) cur = cur?.[/^\d+$/.test(part) ? Number(part) : part];
    if (cur && typeof cur === 'object') delete cur[parts[parts.length - 1]!];
  }
}
