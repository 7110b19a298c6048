/**
 * Fail closed on Pod fields (runtime-api/pod-fields.ts, runtime-api/pod-spec.ts):
 * every field of the Kubernetes models is classified, docs/pod-fields.md is the
 * code's table, every refused field is refused with its path, and what an API
 * server fills in by default is accepted. Pure logic: plain unit tests; the
 * agent reporting CreateContainerConfigError for a real pod is in
 * test/security-admission.test.ts.
 */
import * as fs from 'node:fs/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as k8s from '@kubernetes/client-node';
import { defaultPod } from '../control-plane/kinds/pods.js';
import { validatePod } from '../runtime-api/pod-spec.js';
import { DOC_BEGIN, DOC_END, POD_FIELD_TABLES, renderFieldTables, type TableId } from '../runtime-api/pod-fields.js';

interface ModelClass { attributeTypeMap: Array<{ name: string; baseName: string; type: string }> }
const models = k8s as unknown as Record<string, ModelClass>;

/** Each table and the client library's model of the same Kubernetes type (v1.32+). */
const MODEL_OF: Record<TableId, string> = {
  podSpec: 'V1PodSpec', container: 'V1Container', resources: 'V1ResourceRequirements', envVar: 'V1EnvVar',
  containerPort: 'V1ContainerPort', securityContext: 'V1SecurityContext', podSecurityContext: 'V1PodSecurityContext',
  capabilities: 'V1Capabilities', seccompProfile: 'V1SeccompProfile', sysctl: 'V1Sysctl', dnsConfig: 'V1PodDNSConfig',
  dnsConfigOption: 'V1PodDNSConfigOption', hostAlias: 'V1HostAlias', localObjectReference: 'V1LocalObjectReference', podOS: 'V1PodOS',
  envVarSource: 'V1EnvVarSource', objectFieldSelector: 'V1ObjectFieldSelector', resourceFieldSelector: 'V1ResourceFieldSelector',
  keySelector: 'V1ConfigMapKeySelector', envFromSource: 'V1EnvFromSource', envSourceRef: 'V1ConfigMapEnvSource',
  volume: 'V1Volume', emptyDirVolumeSource: 'V1EmptyDirVolumeSource', hostPathVolumeSource: 'V1HostPathVolumeSource',
  pvcVolumeSource: 'V1PersistentVolumeClaimVolumeSource', flexVolumeSource: 'V1FlexVolumeSource', volumeMount: 'V1VolumeMount',
  configMapVolumeSource: 'V1ConfigMapVolumeSource', secretVolumeSource: 'V1SecretVolumeSource', keyToPath: 'V1KeyToPath',
  downwardAPIVolumeSource: 'V1DownwardAPIVolumeSource', downwardAPIVolumeFile: 'V1DownwardAPIVolumeFile', projectedVolumeSource: 'V1ProjectedVolumeSource',
  volumeProjection: 'V1VolumeProjection', configMapProjection: 'V1ConfigMapProjection', secretProjection: 'V1SecretProjection', downwardAPIProjection: 'V1DownwardAPIProjection',
  serviceAccountTokenProjection: 'V1ServiceAccountTokenProjection',
  probe: 'V1Probe', lifecycle: 'V1Lifecycle', lifecycleHandler: 'V1LifecycleHandler',
};

/** Where an object of each table sits in the sample pod below. */
const AT: Partial<Record<TableId, string>> = {
  podSpec: 'spec', container: 'spec.containers[0]', securityContext: 'spec.containers[0].securityContext',
  podSecurityContext: 'spec.securityContext', resources: 'spec.containers[0].resources', envVar: 'spec.containers[0].env[0]',
  volume: 'spec.volumes[0]', volumeMount: 'spec.containers[0].volumeMounts[0]',
};

const basePod = () => ({ metadata: { name: 'p', namespace: 'default' }, spec: { containers: [{ name: 'c', image: 'busybox', env: [{ name: 'A', value: 'a' }], resources: {}, securityContext: {}, volumeMounts: [{ name: 'v', mountPath: '/v' }] }], securityContext: {}, volumes: [{ name: 'v', emptyDir: {} }] } as Record<string, unknown> });

/** The object at a path like spec.containers[0].env[0] in a pod. */
function objectAt(pod: Record<string, unknown>, path: string): Record<string, unknown> {
  let at: unknown = pod;
  for (const part of path.split('.')) {
    const m = /^(\w+)(?:\[(\d+)\])?$/.exec(part)!;
    at = (at as Record<string, unknown>)[m[1]!];
    if (m[2] !== undefined) at = (at as unknown[])[Number(m[2])];
  }
  return at as Record<string, unknown>;
}

function problems(pod: unknown, strict = false): string {
  try {
    validatePod(pod, { strict });
    return '';
  } catch (err) {
    return (err as Error).message;
  }
}

test('every field of the Kubernetes models is in the table, and the table holds nothing else', () => {
  for (const [id, model] of Object.entries(MODEL_OF) as Array<[TableId, string]>) {
    const cls = models[model];
    assert.ok(cls, `@kubernetes/client-node has ${model}`);
    const apiFields = cls!.attributeTypeMap.map((a) => a.baseName).sort();
    assert.equal(Object.keys(POD_FIELD_TABLES[id].fields).sort(), apiFields, `${POD_FIELD_TABLES[id].title} (${model})`);
  }
  // Every table is reachable from the PodSpec, so each field is checked where it appears.
  const reached = new Set<TableId>(['podSpec']);
  for (const id of reached) for (const f of Object.values(POD_FIELD_TABLES[id].fields)) if (f.table) reached.add(f.table);
  assert.equal([...reached].sort(), Object.keys(POD_FIELD_TABLES).sort());
});

test('docs/pod-fields.md holds exactly the code\'s table', async () => {
  const doc = await fs.readFile(new URL('../../docs/pod-fields.md', import.meta.url), 'utf8');
  const start = doc.indexOf(DOC_BEGIN);
  const end = doc.indexOf(DOC_END);
  assert.ok(start >= 0 && end > start, 'the markers are in the doc');
  assert.fixture(doc.slice(start + DOC_BEGIN.length + 1, end), renderFieldTables(), 'the doc is out of step with runtime-api/pod-fields.ts: run `node scripts/pod-fields-doc.mjs` after a build');
});

/** A value of the model's type that asks for something (never an accepted default). */
function askingValue(type: string, accepted: ((v: unknown) => boolean) | undefined): unknown {
  const candidates: unknown[] = type === 'boolean' ? [true, false]
    : type === 'number' ? [7]
      : type === 'string' ? ['Something']
        : type.startsWith('Array<') ? [[{ name: 'x' }], ['x']]
          : [{ type: 'Localhost', localhostProfile: 'x', name: 'x' }];
  return candidates.find((v) => !accepted?.(v));
}

test('every refused field, set to something, is refused with its path, in both modes', () => {
  let count = 0;
  for (const [id, path] of Object.entries(AT) as Array<[TableId, string]>) {
    const types = new Map(models[MODEL_OF[id]]!.attributeTypeMap.map((a) => [a.baseName, a.type]));
    for (const [name, field] of Object.entries(POD_FIELD_TABLES[id].fields)) {
      if (field.class !== 'refused') continue;
      const pod = basePod();
      const value = askingValue(types.get(name)!, field.accepts?.test);
      objectAt(pod, path)[name] = value;
      for (const strict of [false, true]) {
        const msg = problems(pod, strict);
        const fieldPath = `${path}.${name}`.replace(/[.[\]]/g, (c) => `\\${c}`);
        assert.match(msg, new RegExp(`${fieldPath}: not supported by this node`), `${path}.${name}=${JSON.stringify(value)} (strict ${strict}): ${msg || 'accepted'}`);
        if (field.issue) assert.match(msg, new RegExp(`\\(issue ${field.issue} brings it\\)`));
      }
      count++;
    }
  }
  assert.ok(count >= 20, `${count} refused fields checked`);
  // Lists of containers point at the container that asks.
  const two = basePod();
  (two.spec as { containers: unknown[] }).containers.push({ name: 'd', image: 'busybox', resizePolicy: [{ resourceName: 'cpu', restartPolicy: 'RestartContainer' }] });
  assert.match(problems(two), /^invalid pod manifest:\n {2}spec\.containers\[1\]\.resizePolicy: not supported by this node: in-place resize/);
});

test('probes, lifecycle hooks and init containers: shapes checked with the API server\'s rules, unknown handler fields refused', () => {
  const pod = basePod();
  const spec = pod.spec as { containers: Array<Record<string, unknown>>; initContainers?: Array<Record<string, unknown>> };
  Object.assign(spec.containers[0]!, {
    ports: [{ name: 'http', containerPort: 8080 }],
    readinessProbe: { httpGet: { path: '/healthz', port: 'http', scheme: 'HTTPS', httpHeaders: [{ name: 'X-A', value: 'b' }] }, periodSeconds: 2, successThreshold: 2 },
    livenessProbe: { tcpSocket: { port: 8080 }, initialDelaySeconds: 0, failureThreshold: 1, terminationGracePeriodSeconds: 5 },
    startupProbe: { grpc: { port: 9090, service: 'x' } },
    lifecycle: { postStart: { exec: { command: ['touch', '/x'] } }, preStop: { sleep: { seconds: 1 } } },
  });
  spec.initContainers = [{ name: 'setup', image: 'busybox' }, { name: 'side', image: 'busybox', restartPolicy: 'Always', readinessProbe: { exec: { command: ['true'] } } }];
  assert.is(problems(pod, true), '');

  const bad = basePod();
  const bspec = bad.spec as typeof spec;
  Object.assign(bspec.containers[0]!, {
    restartPolicy: 'Always',
    readinessProbe: { exec: { command: ['true'] }, tcpSocket: { port: 1 }, periodSeconds: 0 },
    livenessProbe: { httpGet: { port: 'Not_A_Name', bogus: 1 }, successThreshold: 2 },
    startupProbe: {},
    lifecycle: { preStop: { tcpSocket: { port: 80 } }, postStart: { exec: { command: [] } } },
  });
  bspec.initContainers = [{ name: 'c', image: 'busybox' }, { name: 'i', image: 'busybox', livenessProbe: { exec: { command: ['true'] } }, restartPolicy: 'OnFailure' }];
  const msg = problems(bad);
  for (const expected of [
    'spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers',
    'spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type',
    'spec.containers[0].readinessProbe.periodSeconds: Invalid value: 0',
    'spec.containers[0].livenessProbe.httpGet.port: Invalid value: "Not_A_Name"',
    'spec.containers[0].livenessProbe.httpGet.bogus: unknown field "bogus"',
    'spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1',
    'spec.containers[0].startupProbe: Required value: must specify a handler type',
    'spec.containers[0].lifecycle.preStop.tcpSocket: not supported by this node',
    'spec.containers[0].lifecycle.postStart.exec.command: Required value',
    'spec.containers[0].name: Duplicate value: "c" (an init container has it)',
    'spec.initContainers[1].restartPolicy: Unsupported value: "OnFailure"',
    'spec.initContainers[1].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always',
  ]) assert.ok(msg.includes(expected), `${expected}\nin:\n${msg}`);
});

test('unset, empty and the API\'s defaults of refused fields ask for nothing', () => {
  const pod = basePod();
  Object.assign(pod.spec as object, {
    volumes: [], initContainers: [], ephemeralContainers: null, readinessGates: [], hostPID: false, hostIPC: false, hostUsers: true,
    setHostnameAsFQDN: false, shareProcessNamespace: false, resourceClaims: [], resources: {}, activeDeadlineSeconds: null,
    securityContext: { supplementalGroupsPolicy: 'Merge', appArmorProfile: { type: 'Unconfined' }, seLinuxOptions: {}, windowsOptions: {} },
  });
  Object.assign((pod.spec as { containers: object[] }).containers[0]!, {
    terminationMessagePath: '/dev/termination-log', terminationMessagePolicy: 'File', stdin: false, stdinOnce: false, tty: false,
    volumeMounts: [], volumeDevices: [], envFrom: [], lifecycle: {}, resizePolicy: [{ resourceName: 'cpu', restartPolicy: 'NotRequired' }],
    securityContext: { procMount: 'Default', appArmorProfile: { type: 'Unconfined' } },
  });
  assert.is(problems(pod), '');
  assert.is(problems(pod, true), '');
});

test('a pod as kubectl sends it and an API server defaults it is accepted', () => {
  const pod = {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: 'web', namespace: 'default', uid: 'u', resourceVersion: '1', creationTimestamp: '2026-01-01T00:00:00Z', labels: { app: 'web' },
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' }, managedFields: [{ manager: 'kubectl' }] },
    spec: {
      containers: [{ name: 'web', image: 'busybox:1.36', command: ['httpd', '-f'], ports: [{ containerPort: 80, name: 'http' }], resources: { limits: { cpu: '100m', memory: '32Mi' }, requests: { cpu: '50m', memory: '16Mi', 'ephemeral-storage': '1Gi' } } }],
      nodeName: 'n1', nodeSelector: { 'kubernetes.io/os': 'linux' }, os: { name: 'linux' },
    },
  } as Record<string, unknown>;
  // Our control plane's defaults…
  defaultPod(pod as never);
  // …and kube-apiserver's that ours does not add (service account admission with automount off, procMount, pod priority).
  Object.assign(pod.spec as object, { serviceAccountName: 'default', serviceAccount: 'default', automountServiceAccountToken: false, priorityClassName: 'normal', enableServiceLinks: true, hostNetwork: false });
  const c = (pod.spec as { containers: Array<Record<string, unknown>> }).containers[0]!;
  assert.is(c.terminationMessagePath, '/dev/termination-log', 'the control plane filled the defaults');
  c.securityContext = { procMount: 'Default' };
  assert.is(problems(pod), '');
});

test('honoured securityContext fields: types and shapes are checked, every problem named', () => {
  const pod = basePod();
  (pod.spec as Record<string, unknown>).securityContext = {
    runAsUser: -1, runAsGroup: 1.5, runAsNonRoot: 'yes', fsGroup: 'staff', supplementalGroups: [1, 'x'],
    sysctls: [{ name: 'net.ipv4.ip_local_port_range', value: '1024 65535' }, { name: '', value: 1 }], seccompProfile: { type: 'Localhost' },
  };
  (pod.spec as { containers: Array<Record<string, unknown>> }).containers[0]!.securityContext = {
    privileged: 'true', readOnlyRootFilesystem: 1, capabilities: { add: 'NET_ADMIN', drop: ['ALL'], keep: [] }, seccompProfile: { type: 'Bogus' },
  };
  const msg = problems(pod);
  for (const expected of [
    'spec.securityContext.runAsUser: Invalid value: -1: must be an integer between 0 and 2147483647',
    'spec.securityContext.runAsGroup: Invalid value: 1.5',
    'spec.securityContext.runAsNonRoot: expected boolean, got string',
    'spec.securityContext.fsGroup: Invalid value: "staff"',
    'spec.securityContext.supplementalGroups[1]: Invalid value: "x"',
    'spec.securityContext.sysctls[1].name: Required value',
    'spec.securityContext.sysctls[1].value: expected string, got number',
    'spec.securityContext.seccompProfile.localhostProfile: Required value: must be set when seccomp type is Localhost',
    'spec.containers[0].securityContext.privileged: expected boolean, got string',
    'spec.containers[0].securityContext.readOnlyRootFilesystem: expected boolean, got number',
    'spec.containers[0].securityContext.capabilities.add: expected array, got string',
    'spec.containers[0].securityContext.capabilities.keep: unknown field "keep"',
    'spec.containers[0].securityContext.seccompProfile.type: unsupported value "Bogus"',
  ]) assert.ok(msg.includes(expected), `${expected}\nin:\n${msg}`);
  assert.not.ok(msg.includes('ip_local_port_range'), 'sysctl names are the prepare step\'s (safe set), not the validator\'s');

  const good = basePod();
  (good.spec as Record<string, unknown>).securityContext = { runAsUser: 1000, runAsGroup: 1000, runAsNonRoot: true, fsGroup: 2000, supplementalGroups: [3000], sysctls: [{ name: 'net.ipv4.ping_group_range', value: '0 0' }], seccompProfile: { type: 'RuntimeDefault' } };
  (good.spec as { containers: Array<Record<string, unknown>> }).containers[0]!.securityContext = {
    runAsUser: 0, runAsNonRoot: false, privileged: false, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false,
    capabilities: { add: ['NET_BIND_SERVICE'], drop: ['ALL'] }, seccompProfile: { type: 'Localhost', localhostProfile: 'profiles/audit.json' },
  };
  assert.is(problems(good, true), '');
  // The API server's own rules on no_new_privs.
  const contradiction = basePod();
  (contradiction.spec as { containers: Array<Record<string, unknown>> }).containers[0]!.securityContext = { privileged: true, allowPrivilegeEscalation: false };
  assert.match(problems(contradiction), /cannot set allowPrivilegeEscalation to false and privileged to true/);
  (contradiction.spec as { containers: Array<Record<string, unknown>> }).containers[0]!.securityContext = { allowPrivilegeEscalation: false, capabilities: { add: ['SYS_ADMIN'] } };
  assert.match(problems(contradiction), /cannot set allowPrivilegeEscalation to false and capabilities\.Add CAP_SYS_ADMIN/);
  (contradiction.spec as { containers: Array<Record<string, unknown>> }).containers[0]!.securityContext = { seccompProfile: { type: 'RuntimeDefault', localhostProfile: 'x' } };
  assert.match(problems(contradiction), /seccompProfile\.localhostProfile: Invalid value: can only be set when seccomp type is Localhost/);
});

test('resources: cpu and memory are enforced, ephemeral-storage requests are the scheduler\'s, anything else is refused', () => {
  const withResources = (resources: unknown) => {
    const pod = basePod();
    (pod.spec as { containers: Array<Record<string, unknown>> }).containers[0]!.resources = resources;
    return problems(pod);
  };
  assert.is(withResources({ limits: { cpu: 1, memory: '64Mi' }, requests: { cpu: '100m', memory: '8Mi', 'ephemeral-storage': '2Gi' } }), '');
  assert.match(withResources({ limits: { 'ephemeral-storage': '1Gi' } }), /resources\.limits\.ephemeral-storage: not supported by this node: local storage limits are not enforced/);
  assert.match(withResources({ limits: { 'nvidia.com/gpu': 1 } }), /resources\.limits\.nvidia\.com\/gpu: not supported by this node: extended resources need a device plugin/);
  assert.match(withResources({ requests: { 'hugepages-2Mi': '2Mi' } }), /resources\.requests\.hugepages-2Mi: not supported by this node: hugepages/);
  assert.match(withResources({ claims: [{ name: 'gpu' }] }), /resources\.claims: not supported by this node: dynamic resource allocation/);
});

test('unknown fields are refused by the agent too; metadata stays lenient there', () => {
  const pod = basePod();
  (pod.spec as Record<string, unknown>).futureField = { on: true };
  (pod.spec as { containers: Array<Record<string, unknown>> }).containers[0]!.securityContext = { futureKnob: 1 };
  const msg = problems(pod);
  assert.match(msg, /spec\.futureField: unknown field "futureField" \(this node does not know it, so it cannot honour it\)/);
  assert.match(msg, /spec\.containers\[0\]\.securityContext\.futureKnob: unknown field/);
  const meta = basePod();
  (meta.metadata as Record<string, unknown>).ownerReferences = [];
  assert.is(problems(meta), '');
  assert.match(problems(meta, true), /metadata\.ownerReferences: unknown field/);
});

test('os other than linux and AppArmor profiles this node cannot apply are refused', () => {
  const pod = basePod();
  (pod.spec as Record<string, unknown>).os = { name: 'windows' };
  assert.match(problems(pod), /spec\.os\.name: not supported by this node: "windows": this node runs linux pods only/);
  const aa = basePod();
  (aa.metadata as Record<string, unknown>).annotations = { 'container.apparmor.security.beta.kubernetes.io/c': 'runtime/default', 'container.apparmor.security.beta.kubernetes.io/d': 'unconfined' };
  const msg = problems(aa);
  assert.match(msg, /metadata\.annotations\[container\.apparmor\.security\.beta\.kubernetes\.io\/c\]: not supported by this node: this node applies no AppArmor profiles/);
  assert.not.match(msg, /kubernetes\.io\/d\]/);
  const field = basePod();
  (field.spec as { containers: Array<Record<string, unknown>> }).containers[0]!.securityContext = { appArmorProfile: { type: 'RuntimeDefault' } };
  assert.match(problems(field), /securityContext\.appArmorProfile: not supported by this node: this node applies no AppArmor profiles .*; only \{"type":"Unconfined"\} is accepted/);
});

test.run();
