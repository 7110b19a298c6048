/**
 * Just enough of Kubernetes' protobuf encoding to accept what kubectl's typed
 * clients send (`kubectl create secret …` and `kubectl create namespace` post
 * `application/vnd.kubernetes.protobuf` and do not fall back to JSON): the
 * `k8s\0` envelope (runtime.Unknown) and every kind this server serves that a kubectl typed
 * client creates (the table DECODERS below), read with protobufjs's wire Reader and given
 * meaning by a field table per message (field numbers from k8s.io/api's generated.proto; a
 * field outside the tables that carries a value is refused, not dropped). Everything else is a
 * 415 that names the media types this server speaks. Replies stay JSON
 * (clients accept it: they send `Accept: …protobuf, application/json`).
 */
import protobuf from 'protobufjs/minimal.js';
import { ApiError } from './resources.js';
import { hpaV1ToV2 } from './kinds/hpa.js';
import type { KObj } from './store.js';

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]); // "k8s\0"

/** One field of a message as read off the wire: varints as numbers (every varint Kubernetes sends here fits), length-delimited ones as bytes. */
interface Field { no: number; wire: number; value: number | Buffer }

/**
 * One message level as its fields, read with protobufjs's wire Reader (varint, 64-bit,
 * length-delimited, 32-bit). The field tables below give the fields their meaning; a field
 * outside them that carries a value is refused, which is why this does not decode through
 * generated protobufjs types (they skip unknown fields without a word).
 */
function fields(buf: Buffer): Field[] {
  const reader = protobuf.Reader.create(buf);
  const out: Field[] = [];
  while (reader.pos < reader.len) {
    const key = reader.uint32();
    const no = key >>> 3;
    const wire = key & 7;
    if (wire === 0) out.push({ no, wire, value: longToNumber(reader.int64()) });
    else if (wire === 2) out.push({ no, wire, value: Buffer.from(reader.bytes()) });
    else reader.skipType(wire);
  }
  return out;
}

/** protobufjs hands 64-bit varints back as a Long (or a number when no Long library is loaded); high * 2^32 + unsigned low keeps the sign. */
function longToNumber(v: protobuf.Long | number): number {
  return typeof v === 'number' ? v : v.high * 0x100000000 + (v.low >>> 0);
}

const bytesOf = (f: Field) => (Buffer.isBuffer(f.value) ? f.value : Buffer.alloc(0));
const str = (f: Field) => bytesOf(f).toString('utf8');

function mapEntry(f: Field): [string, Buffer] {
  let k = '';
  let v: Buffer = Buffer.alloc(0);
  for (const e of fields(bytesOf(f))) {
    if (e.no === 1) k = str(e);
    else if (e.no === 2) v = bytesOf(e);
  }
  return [k, v];
}

// ---------------------------------------------------------------- workloads, by field table

/**
 * A message's fields by number: JSON name and type, from k8s.io/api's generated.proto. Go's
 * encoder writes every non-pointer field, so empty strings, zeros and false mean "unset" and
 * are left out. A field not in the table that carries a value is refused (415 naming it), never
 * dropped: the caller is told to send JSON (kubectl apply -f) instead.
 */
type FieldType = 'string' | 'int' | 'bool' | 'boolPtr' | 'strings' | 'map' | 'bytesMap' | 'intOrString' | 'quantities' | Message | { repeated: Message };
interface Message { name: string; fields: Record<number, [string, FieldType]> }

const labelSelectorRequirement: Message = { name: 'LabelSelectorRequirement', fields: { 1: ['key', 'string'], 2: ['operator', 'string'], 3: ['values', 'strings'] } };
const labelSelector: Message = { name: 'LabelSelector', fields: { 1: ['matchLabels', 'map'], 2: ['matchExpressions', { repeated: labelSelectorRequirement }] } };
const ownerReference: Message = { name: 'OwnerReference', fields: { 1: ['kind', 'string'], 3: ['name', 'string'], 4: ['uid', 'string'], 5: ['apiVersion', 'string'], 6: ['controller', 'bool'], 7: ['blockOwnerDeletion', 'bool'] } };
const workloadMeta: Message = { name: 'ObjectMeta', fields: { 1: ['name', 'string'], 2: ['generateName', 'string'], 3: ['namespace', 'string'], 6: ['resourceVersion', 'string'], 11: ['labels', 'map'], 12: ['annotations', 'map'], 13: ['ownerReferences', { repeated: ownerReference }], 14: ['finalizers', 'strings'] } };
const containerPort: Message = { name: 'ContainerPort', fields: { 1: ['name', 'string'], 2: ['hostPort', 'int'], 3: ['containerPort', 'int'], 4: ['protocol', 'string'], 5: ['hostIP', 'string'] } };
const envVar: Message = { name: 'EnvVar', fields: { 1: ['name', 'string'], 2: ['value', 'string'] } };
const resources: Message = { name: 'ResourceRequirements', fields: { 1: ['limits', 'quantities'], 2: ['requests', 'quantities'] } };
const container: Message = {
  name: 'Container',
  fields: {
    1: ['name', 'string'], 2: ['image', 'string'], 3: ['command', 'strings'], 4: ['args', 'strings'], 5: ['workingDir', 'string'],
    6: ['ports', { repeated: containerPort }], 7: ['env', { repeated: envVar }], 8: ['resources', resources],
    13: ['terminationMessagePath', 'string'], 14: ['imagePullPolicy', 'string'], 16: ['stdin', 'bool'], 17: ['stdinOnce', 'bool'],
    18: ['tty', 'bool'], 20: ['terminationMessagePolicy', 'string'],
  },
};
const podSpec: Message = {
  name: 'PodSpec',
  fields: {
    2: ['containers', { repeated: container }], 3: ['restartPolicy', 'string'], 4: ['terminationGracePeriodSeconds', 'int'],
    5: ['activeDeadlineSeconds', 'int'], 6: ['dnsPolicy', 'string'], 7: ['nodeSelector', 'map'], 8: ['serviceAccountName', 'string'],
    10: ['nodeName', 'string'], 11: ['hostNetwork', 'bool'], 12: ['hostPID', 'bool'], 13: ['hostIPC', 'bool'], 16: ['hostname', 'string'],
    17: ['subdomain', 'string'], 19: ['schedulerName', 'string'], 20: ['initContainers', { repeated: container }],
    24: ['priorityClassName', 'string'], 29: ['runtimeClassName', 'string'],
  },
};
const podTemplateSpec: Message = { name: 'PodTemplateSpec', fields: { 1: ['metadata', workloadMeta], 2: ['spec', podSpec] } };
const rollingUpdate: Message = { name: 'RollingUpdateDeployment', fields: { 1: ['maxUnavailable', 'intOrString'], 2: ['maxSurge', 'intOrString'] } };
const deploymentSpec: Message = {
  name: 'DeploymentSpec',
  fields: {
    1: ['replicas', 'int'], 2: ['selector', labelSelector], 3: ['template', podTemplateSpec],
    4: ['strategy', { name: 'DeploymentStrategy', fields: { 1: ['type', 'string'], 2: ['rollingUpdate', rollingUpdate] } }],
    5: ['minReadySeconds', 'int'], 6: ['revisionHistoryLimit', 'int'], 7: ['paused', 'bool'], 9: ['progressDeadlineSeconds', 'int'],
  },
};
const jobSpec: Message = {
  name: 'JobSpec',
  fields: {
    1: ['parallelism', 'int'], 2: ['completions', 'int'], 3: ['activeDeadlineSeconds', 'int'], 4: ['selector', labelSelector],
    5: ['manualSelector', 'bool'], 6: ['template', podTemplateSpec], 7: ['backoffLimit', 'int'], 9: ['completionMode', 'string'], 10: ['suspend', 'bool'],
    14: ['podReplacementPolicy', 'string'],
  },
};
/** Status is the server's: whatever a create sends there is ignored (field 3 of every kind). */
const ignoredStatus: Message = { name: 'Status', fields: {} };
const deployment: Message = { name: 'Deployment', fields: { 1: ['metadata', workloadMeta], 2: ['spec', deploymentSpec], 3: ['status', ignoredStatus] } };
const cronJobSpec: Message = {
  name: 'CronJobSpec',
  fields: {
    1: ['schedule', 'string'], 2: ['startingDeadlineSeconds', 'int'], 3: ['concurrencyPolicy', 'string'], 4: ['suspend', 'bool'],
    5: ['jobTemplate', { name: 'JobTemplateSpec', fields: { 1: ['metadata', workloadMeta], 2: ['spec', jobSpec] } }],
    6: ['successfulJobsHistoryLimit', 'int'], 7: ['failedJobsHistoryLimit', 'int'], 8: ['timeZone', 'string'],
  },
};
const cronJob: Message = { name: 'CronJob', fields: { 1: ['metadata', workloadMeta], 2: ['spec', cronJobSpec], 3: ['status', ignoredStatus] } };
const job: Message = { name: 'Job', fields: { 1: ['metadata', workloadMeta], 2: ['spec', jobSpec], 3: ['status', ignoredStatus] } };

const crossVersionObjectReference: Message = { name: 'CrossVersionObjectReference', fields: { 1: ['kind', 'string'], 2: ['name', 'string'], 3: ['apiVersion', 'string'] } };
const hpaV1Spec: Message = { name: 'HorizontalPodAutoscalerSpec', fields: { 1: ['scaleTargetRef', crossVersionObjectReference], 2: ['minReplicas', 'int'], 3: ['maxReplicas', 'int'], 4: ['targetCPUUtilizationPercentage', 'int'] } };
const hpaV1: Message = { name: 'HorizontalPodAutoscaler', fields: { 1: ['metadata', workloadMeta], 2: ['spec', hpaV1Spec], 3: ['status', ignoredStatus] } };
const servicePort: Message = {
  name: 'ServicePort',
  fields: { 1: ['name', 'string'], 2: ['protocol', 'string'], 3: ['port', 'int'], 4: ['targetPort', 'intOrString'], 5: ['nodePort', 'int'], 6: ['appProtocol', 'string'] },
};
const serviceSpec: Message = {
  name: 'ServiceSpec',
  fields: {
    1: ['ports', { repeated: servicePort }], 2: ['selector', 'map'], 3: ['clusterIP', 'string'], 4: ['type', 'string'], 5: ['externalIPs', 'strings'],
    7: ['sessionAffinity', 'string'], 8: ['loadBalancerIP', 'string'], 9: ['loadBalancerSourceRanges', 'strings'], 10: ['externalName', 'string'],
    11: ['externalTrafficPolicy', 'string'], 12: ['healthCheckNodePort', 'int'], 13: ['publishNotReadyAddresses', 'bool'],
    14: ['sessionAffinityConfig', { name: 'SessionAffinityConfig', fields: { 1: ['clientIP', { name: 'ClientIPConfig', fields: { 1: ['timeoutSeconds', 'int'] } }] } }],
    17: ['ipFamilyPolicy', 'string'], 18: ['clusterIPs', 'strings'], 19: ['ipFamilies', 'strings'], 20: ['allocateLoadBalancerNodePorts', 'bool'],
    21: ['loadBalancerClass', 'string'], 22: ['internalTrafficPolicy', 'string'], 23: ['trafficDistribution', 'string'],
  },
};
const service: Message = { name: 'Service', fields: { 1: ['metadata', workloadMeta], 2: ['spec', serviceSpec], 3: ['status', ignoredStatus] } };

/** Go writes a zero port, an empty targetPort (IntOrString{}) and healthCheckNodePort 0 when unset. */
function decodeService(b: Buffer): KObj {
  const obj: KObj = { apiVersion: 'v1', kind: 'Service', ...decodeMessage(b, service, '') };
  if (obj.spec) {
    dropGoZeros(obj.spec, ['healthCheckNodePort']);
    for (const p of obj.spec.ports ?? []) {
      dropGoZeros(p, ['nodePort']);
      if (p.targetPort === 0 || p.targetPort === '') delete p.targetPort;
    }
  }
  return obj;
}

/** A field that carries a value (Go writes empty ones too). */
const hasValue = (f: Field) => (Buffer.isBuffer(f.value) ? f.value.length > 0 : f.value !== 0);

function decodeMessage(buf: Buffer, m: Message, at: string): KObj | undefined {
  if (m === ignoredStatus) return undefined;
  const out: KObj = {};
  for (const f of fields(buf)) {
    const def = m.fields[f.no];
    if (!def) {
      if (hasValue(f)) throw new ApiError(415, 'UnsupportedMediaType', `this control plane's protobuf decoder does not know field ${f.no} of ${m.name} (at ${at || m.name}); send the object as JSON or YAML instead (kubectl apply -f, or kubectl create … --dry-run=client -o yaml | kubectl apply -f -)`);
      continue;
    }
    const [name, type] = def;
    const path = at ? `${at}.${name}` : name;
    if (type === 'string') { if (hasValue(f)) out[name] = str(f); }
    else if (type === 'int') out[name] = f.value as number;
    else if (type === 'bool') { if (f.value !== 0) out[name] = true; }
    else if (type === 'boolPtr') out[name] = f.value !== 0; // a *bool: written when set, false included
    else if (type === 'strings') (out[name] ??= []).push(str(f));
    else if (type === 'map') { const [k, v] = mapEntry(f); (out[name] ??= {})[k] = v.toString('utf8'); }
    else if (type === 'bytesMap') { const [k, v] = mapEntry(f); (out[name] ??= {})[k] = v.toString('base64'); } // map<string, bytes>: base64 in JSON
    else if (type === 'quantities') {
      const [k, v] = mapEntry(f);
      let q = '';
      for (const e of fields(v)) if (e.no === 1) q = str(e);
      (out[name] ??= {})[k] = q;
    } else if (type === 'intOrString') {
      let kind = 0, intVal = 0, strVal = '';
      for (const e of fields(bytesOf(f))) e.no === 1 ? (kind = e.value as number) : e.no === 2 ? (intVal = e.value as number) : e.no === 3 ? (strVal = str(e)) : undefined;
      out[name] = kind === 1 ? strVal : intVal;
    } else if ('repeated' in type) (out[name] ??= []).push(decodeMessage(bytesOf(f), type.repeated, `${path}[${(out[name] ?? []).length}]`));
    else {
      const sub = decodeMessage(bytesOf(f), type, path);
      if (sub !== undefined) out[name] = sub;
    }
  }
  return out;
}

/** Non-pointer Go fields are sent as zero when unset; drop them where zero is not a value of its own. */
function dropGoZeros(obj: KObj, zeroable: string[]): void {
  for (const k of zeroable) if (obj[k] === 0) delete obj[k];
}

function cleanPodSpec(spec: KObj | undefined): void {
  if (!spec) return;
  for (const c of [...(spec.containers ?? []), ...(spec.initContainers ?? [])]) {
    for (const p of c.ports ?? []) dropGoZeros(p, ['hostPort']);
    if (c.resources && Object.keys(c.resources).length === 0) delete c.resources;
  }
}

function workload(m: Message, apiVersion: string, kind: string, zeroable: string[]): (b: Buffer) => KObj {
  return (b) => {
    const obj: KObj = { apiVersion, kind, ...decodeMessage(b, m, '') };
    if (obj.spec) {
      dropGoZeros(obj.spec, zeroable);
      cleanPodSpec(obj.spec.template?.spec);
      cleanPodSpec(obj.spec.jobTemplate?.spec?.template?.spec);
    }
    return obj;
  };
}

// ---------------------------------------------------------------- RBAC, ServiceAccounts, tokens and reviews

const policyRule: Message = { name: 'PolicyRule', fields: { 1: ['verbs', 'strings'], 2: ['apiGroups', 'strings'], 3: ['resources', 'strings'], 4: ['resourceNames', 'strings'], 5: ['nonResourceURLs', 'strings'] } };
const role: Message = { name: 'Role', fields: { 1: ['metadata', workloadMeta], 2: ['rules', { repeated: policyRule }] } };
const clusterRole: Message = { name: 'ClusterRole', fields: { 1: ['metadata', workloadMeta], 2: ['rules', { repeated: policyRule }], 3: ['aggregationRule', { name: 'AggregationRule', fields: { 1: ['clusterRoleSelectors', { repeated: labelSelector }] } }] } };
const rbacSubject: Message = { name: 'Subject', fields: { 1: ['kind', 'string'], 2: ['apiGroup', 'string'], 3: ['name', 'string'], 4: ['namespace', 'string'] } };
const roleRef: Message = { name: 'RoleRef', fields: { 1: ['apiGroup', 'string'], 2: ['kind', 'string'], 3: ['name', 'string'] } };
const roleBinding: Message = { name: 'RoleBinding', fields: { 1: ['metadata', workloadMeta], 2: ['subjects', { repeated: rbacSubject }], 3: ['roleRef', roleRef] } };
const objectReference: Message = { name: 'ObjectReference', fields: { 1: ['kind', 'string'], 2: ['namespace', 'string'], 3: ['name', 'string'], 4: ['uid', 'string'], 5: ['apiVersion', 'string'], 6: ['resourceVersion', 'string'], 7: ['fieldPath', 'string'] } };
const serviceAccount: Message = { name: 'ServiceAccount', fields: { 1: ['metadata', workloadMeta], 2: ['secrets', { repeated: objectReference }], 3: ['imagePullSecrets', { repeated: { name: 'LocalObjectReference', fields: { 1: ['name', 'string'] } } }], 4: ['automountServiceAccountToken', 'boolPtr'] } };
const tokenRequest: Message = {
  name: 'TokenRequest',
  fields: {
    1: ['metadata', workloadMeta],
    2: ['spec', { name: 'TokenRequestSpec', fields: { 1: ['audiences', 'strings'], 3: ['boundObjectRef', { name: 'BoundObjectReference', fields: { 1: ['kind', 'string'], 2: ['apiVersion', 'string'], 3: ['name', 'string'], 4: ['uid', 'string'] } }], 4: ['expirationSeconds', 'int'] } }],
    3: ['status', ignoredStatus],
  },
};
const rawSelector: Message = { name: 'SelectorAttributes', fields: { 1: ['rawSelector', 'string'] } };
const resourceAttributes: Message = {
  name: 'ResourceAttributes',
  fields: { 1: ['namespace', 'string'], 2: ['verb', 'string'], 3: ['group', 'string'], 4: ['version', 'string'], 5: ['resource', 'string'], 6: ['subresource', 'string'], 7: ['name', 'string'], 8: ['fieldSelector', rawSelector], 9: ['labelSelector', rawSelector] },
};
const nonResourceAttributes: Message = { name: 'NonResourceAttributes', fields: { 1: ['path', 'string'], 2: ['verb', 'string'] } };
const review = (name: string, spec: Message): Message => ({ name, fields: { 1: ['metadata', workloadMeta], 2: ['spec', spec], 3: ['status', ignoredStatus] } });
const selfSubjectAccessReview = review('SelfSubjectAccessReview', { name: 'SelfSubjectAccessReviewSpec', fields: { 1: ['resourceAttributes', resourceAttributes], 2: ['nonResourceAttributes', nonResourceAttributes] } });
const selfSubjectRulesReview = review('SelfSubjectRulesReview', { name: 'SelfSubjectRulesReviewSpec', fields: { 1: ['namespace', 'string'] } });
const subjectAccessReviewSpec: Message = {
  name: 'SubjectAccessReviewSpec',
  fields: { 1: ['resourceAttributes', resourceAttributes], 2: ['nonResourceAttributes', nonResourceAttributes], 3: ['user', 'string'], 4: ['groups', 'strings'], 6: ['uid', 'string'] },
};
// kubectl create poddisruptionbudget
const pdbSpec: Message = { name: 'PodDisruptionBudgetSpec', fields: { 1: ['minAvailable', 'intOrString'], 2: ['selector', labelSelector], 3: ['maxUnavailable', 'intOrString'], 4: ['unhealthyPodEvictionPolicy', 'string'] } };
const pdb: Message = { name: 'PodDisruptionBudget', fields: { 1: ['metadata', workloadMeta], 2: ['spec', pdbSpec], 3: ['status', ignoredStatus] } };
// kubectl create secret|configmap|namespace
const secret: Message = { name: 'Secret', fields: { 1: ['metadata', workloadMeta], 2: ['data', 'bytesMap'], 3: ['type', 'string'], 4: ['stringData', 'map'], 5: ['immutable', 'boolPtr'] } };
const configMap: Message = { name: 'ConfigMap', fields: { 1: ['metadata', workloadMeta], 2: ['data', 'map'], 3: ['binaryData', 'bytesMap'], 4: ['immutable', 'boolPtr'] } };
const namespace: Message = { name: 'Namespace', fields: { 1: ['metadata', workloadMeta], 2: ['spec', { name: 'NamespaceSpec', fields: { 1: ['finalizers', 'strings'] } }], 3: ['status', ignoredStatus] } };
const typed = (m: Message, apiVersion: string, kind: string) => (b: Buffer): KObj => ({ apiVersion, kind, ...decodeMessage(b, m, '') });

/** The kinds kubectl's typed clients create here: `kubectl create secret|configmap|namespace|deployment|job|cronjob|service|pdb|…`. */
const DECODERS: Record<string, (b: Buffer) => KObj> = {
  'v1/Secret': typed(secret, 'v1', 'Secret'),
  'v1/ConfigMap': typed(configMap, 'v1', 'ConfigMap'),
  'v1/Namespace': typed(namespace, 'v1', 'Namespace'),
  'apps/v1/Deployment': workload(deployment, 'apps/v1', 'Deployment', ['minReadySeconds']),
  'batch/v1/Job': workload(job, 'batch/v1', 'Job', []),
  'batch/v1/CronJob': workload(cronJob, 'batch/v1', 'CronJob', []),
  // kubectl autoscale's typed client sends v1; this server keeps v2.
  'autoscaling/v1/HorizontalPodAutoscaler': (b) => hpaV1ToV2({ apiVersion: 'autoscaling/v1', kind: 'HorizontalPodAutoscaler', ...decodeMessage(b, hpaV1, '') }),
  'v1/Service': decodeService,
  'policy/v1/PodDisruptionBudget': typed(pdb, 'policy/v1', 'PodDisruptionBudget'),
  // kubectl create role|clusterrole|rolebinding|clusterrolebinding|serviceaccount|token, kubectl auth can-i|whoami
  'rbac.authorization.k8s.io/v1/Role': typed(role, 'rbac.authorization.k8s.io/v1', 'Role'),
  'rbac.authorization.k8s.io/v1/ClusterRole': typed(clusterRole, 'rbac.authorization.k8s.io/v1', 'ClusterRole'),
  'rbac.authorization.k8s.io/v1/RoleBinding': typed(roleBinding, 'rbac.authorization.k8s.io/v1', 'RoleBinding'),
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': typed({ ...roleBinding, name: 'ClusterRoleBinding' }, 'rbac.authorization.k8s.io/v1', 'ClusterRoleBinding'),
  'v1/ServiceAccount': typed(serviceAccount, 'v1', 'ServiceAccount'),
  'authentication.k8s.io/v1/TokenRequest': typed(tokenRequest, 'authentication.k8s.io/v1', 'TokenRequest'),
  'authentication.k8s.io/v1/SelfSubjectReview': typed({ name: 'SelfSubjectReview', fields: { 1: ['metadata', workloadMeta], 2: ['status', ignoredStatus] } }, 'authentication.k8s.io/v1', 'SelfSubjectReview'),
  'authorization.k8s.io/v1/SelfSubjectAccessReview': typed(selfSubjectAccessReview, 'authorization.k8s.io/v1', 'SelfSubjectAccessReview'),
  'authorization.k8s.io/v1/SelfSubjectRulesReview': typed(selfSubjectRulesReview, 'authorization.k8s.io/v1', 'SelfSubjectRulesReview'),
  'authorization.k8s.io/v1/SubjectAccessReview': typed(review('SubjectAccessReview', subjectAccessReviewSpec), 'authorization.k8s.io/v1', 'SubjectAccessReview'),
  'authorization.k8s.io/v1/LocalSubjectAccessReview': typed(review('LocalSubjectAccessReview', subjectAccessReviewSpec), 'authorization.k8s.io/v1', 'LocalSubjectAccessReview'),
};

/** A protobuf request body as the JSON object it encodes; 415 for kinds this server cannot decode. */
export function decodeProtobufBody(buf: Buffer): KObj {
  if (buf.length < 4 || !buf.subarray(0, 4).equals(MAGIC)) throw new ApiError(400, 'BadRequest', 'the protobuf request body does not start with the k8s envelope');
  try {
    let apiVersion = '';
    let kind = '';
    let raw: Buffer = Buffer.alloc(0);
    for (const f of fields(buf.subarray(4))) {
      if (f.no === 1) for (const t of fields(bytesOf(f))) t.no === 1 ? (apiVersion = str(t)) : t.no === 2 ? (kind = str(t)) : undefined;
      else if (f.no === 2) raw = bytesOf(f);
    }
    const decode = DECODERS[`${apiVersion}/${kind}`];
    if (!decode) {
      throw new ApiError(415, 'UnsupportedMediaType', `this control plane decodes protobuf only for v1 Secret, ConfigMap, Namespace, Service and ServiceAccount, apps/v1 Deployment, batch/v1 Job and CronJob, autoscaling/v1 HorizontalPodAutoscaler, policy/v1 PodDisruptionBudget, rbac.authorization.k8s.io/v1 kinds, TokenRequest and the access reviews, not ${apiVersion}/${kind}; send application/json or application/yaml`);
    }
    return decode(raw);
  } catch (err) {
    if (err instanceof ApiError) throw err;
    throw new ApiError(400, 'BadRequest', `the protobuf request body cannot be decoded: ${(err as Error).message}`);
  }
}
