/**
 * Just enough of Kubernetes' protobuf encoding to accept what kubectl's typed
 * clients send (`kubectl create secret …` and `kubectl create namespace` post
 * `application/vnd.kubernetes.protobuf` and do not fall back to JSON): the
 * `k8s\0` envelope (runtime.Unknown), v1 Secret and v1 Namespace with the
 * ObjectMeta fields a create carries, v1 Service (`kubectl create service`), apps/v1 Deployment and batch/v1 Job with the pod
 * template fields `kubectl create deployment|job` fills (a field table per message; a field
 * outside the tables that carries a value is refused, not dropped). Everything else is a
 * 415 that names the media types this server speaks. Replies stay JSON
 * (clients accept it: they send `Accept: …protobuf, application/json`).
 */
import { ApiError } from './resources.js';
import { hpaV1ToV2 } from './kinds/hpa.js';
import type { KObj } from './store.js';

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]); // "k8s\0"

interface Field { no: number; wire: number; value: bigint | Buffer }

/** Decode one message level into its fields (varint, 64-bit, length-delimited, 32-bit). */
function fields(buf: Buffer): Field[] {
  const out: Field[] = [];
  let i = 0;
  const varint = (): bigint => {
    let v = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (i >= buf.length || shift > 63n) throw new Error('truncated or overlong varint');
      const b = buf[i++]!;
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
    }
  };
  while (i < buf.length) {
    const key = Number(varint());
    const no = key >>> 3;
    const wire = key & 7;
    if (wire === 0) out.push({ no, wire, value: varint() });
    else if (wire === 2) {
      const len = Number(varint());
      if (i + len > buf.length) throw new Error('length-delimited field runs past the end');
      out.push({ no, wire, value: buf.subarray(i, i + len) });
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`unsupported wire type ${wire}`);
    if (i > buf.length) throw new Error('field runs past the end');
  }
  return out;
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

function objectMeta(buf: Buffer): KObj {
  const meta: KObj = {};
  for (const f of fields(buf)) {
    switch (f.no) {
      case 1: meta.name = str(f); break;
      case 2: meta.generateName = str(f); break;
      case 3: meta.namespace = str(f); break;
      case 6: meta.resourceVersion = str(f); break;
      case 11: { const [k, v] = mapEntry(f); (meta.labels ??= {})[k] = v.toString('utf8'); break; }
      case 12: { const [k, v] = mapEntry(f); (meta.annotations ??= {})[k] = v.toString('utf8'); break; }
      case 14: (meta.finalizers ??= []).push(str(f)); break;
      default: break; // uid, timestamps, owner references…: a create does not need them
    }
  }
  for (const k of ['name', 'generateName', 'namespace', 'resourceVersion']) if (meta[k] === '') delete meta[k];
  return meta;
}

function secret(buf: Buffer): KObj {
  const obj: KObj = { apiVersion: 'v1', kind: 'Secret', metadata: {} };
  for (const f of fields(buf)) {
    switch (f.no) {
      case 1: obj.metadata = objectMeta(bytesOf(f)); break;
      case 2: { const [k, v] = mapEntry(f); (obj.data ??= {})[k] = v.toString('base64'); break; }
      case 3: obj.type = str(f); break;
      case 4: { const [k, v] = mapEntry(f); (obj.stringData ??= {})[k] = v.toString('utf8'); break; }
      case 5: obj.immutable = f.value !== 0n; break;
      default: break;
    }
  }
  return obj;
}

function configMap(buf: Buffer): KObj {
  const obj: KObj = { apiVersion: 'v1', kind: 'ConfigMap', metadata: {} };
  for (const f of fields(buf)) {
    switch (f.no) {
      case 1: obj.metadata = objectMeta(bytesOf(f)); break;
      case 2: { const [k, v] = mapEntry(f); (obj.data ??= {})[k] = v.toString('utf8'); break; }
      case 3: { const [k, v] = mapEntry(f); (obj.binaryData ??= {})[k] = v.toString('base64'); break; }
      case 4: obj.immutable = f.value !== 0n; break;
      default: break;
    }
  }
  return obj;
}

function namespace(buf: Buffer): KObj {
  const obj: KObj = { apiVersion: 'v1', kind: 'Namespace', metadata: {} };
  for (const f of fields(buf)) {
    if (f.no === 1) obj.metadata = objectMeta(bytesOf(f));
    else if (f.no === 2) for (const s of fields(bytesOf(f))) if (s.no === 1) ((obj.spec ??= {}).finalizers ??= []).push(str(s));
  }
  return obj;
}

// ---------------------------------------------------------------- workloads, by field table

/**
 * A message's fields by number: JSON name and type, from k8s.io/api's generated.proto. Go's
 * encoder writes every non-pointer field, so empty strings, zeros and false mean "unset" and
 * are left out. A field not in the table that carries a value is refused (415 naming it), never
 * dropped: the caller is told to send JSON (kubectl apply -f) instead.
 */
type FieldType = 'string' | 'int' | 'bool' | 'boolPtr' | 'strings' | 'map' | 'intOrString' | 'quantities' | Message | { repeated: Message };
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
const hasValue = (f: Field) => (Buffer.isBuffer(f.value) ? f.value.length > 0 : f.value !== 0n);

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
    else if (type === 'int') out[name] = Number(BigInt.asIntN(64, f.value as bigint));
    else if (type === 'bool') { if (f.value !== 0n) out[name] = true; }
    else if (type === 'boolPtr') out[name] = f.value !== 0n; // a *bool: written when set, false included
    else if (type === 'strings') (out[name] ??= []).push(str(f));
    else if (type === 'map') { const [k, v] = mapEntry(f); (out[name] ??= {})[k] = v.toString('utf8'); }
    else if (type === 'quantities') {
      const [k, v] = mapEntry(f);
      let q = '';
      for (const e of fields(v)) if (e.no === 1) q = str(e);
      (out[name] ??= {})[k] = q;
    } else if (type === 'intOrString') {
      let kind = 0n, intVal = 0n, strVal = '';
      for (const e of fields(bytesOf(f))) e.no === 1 ? (kind = e.value as bigint) : e.no === 2 ? (intVal = e.value as bigint) : e.no === 3 ? (strVal = str(e)) : undefined;
      out[name] = kind === 1n ? strVal : Number(BigInt.asIntN(32, intVal));
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
const typed = (m: Message, apiVersion: string, kind: string) => (b: Buffer): KObj => ({ apiVersion, kind, ...decodeMessage(b, m, '') });

/** The kinds kubectl's typed clients create here: `kubectl create secret|configmap|namespace|deployment|job|cronjob|service|pdb|…`. */
const DECODERS: Record<string, (b: Buffer) => KObj> = {
  'v1/Secret': secret,
  'v1/ConfigMap': configMap,
  'v1/Namespace': namespace,
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
