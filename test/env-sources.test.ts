/**
 * Env sources, pure logic: the kubelet's `$(VAR)` expansion, the agent's
 * resolution of ConfigMap/Secret/downward-API/resource values (against an
 * in-memory object reader), and the runtime's final env. The same features
 * against a real cluster are in test/env-volumes.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { V1ConfigMap, V1Pod, V1Secret } from '@kubernetes/client-node';
import { escapeVars, expandVars } from '../common/var-expansion.js';
import { resolveEnv, type EnvContext } from '../agent/env.js';
import { fieldValue, formatMap, resourceValue } from '../agent/downward-api.js';
import type { PodObjects } from '../agent/pod-objects.js';
import { REDACTED, secretTaint } from '../runtime-rkt/env.js';
import { checkRuntimeEnv, podEnv, unresolvedEnvSources } from '../runtime-api/pod-env.js';
import type { RuntimePodManifest } from '../stage1/contract.js';
import { argvFor, manifestForDisk } from '../runtime-rkt/prepare.js';
import { validatePod, type ContainerSpec, type Pod } from '../runtime-api/pod-spec.js';
import type { ImageRecord } from '../runtime-rkt/image/types.js';

const vars: Record<string, string> = { A: 'a', EMPTY: '', 'X.Y': 'xy' };
const lookup = (n: string) => vars[n];

test('expansion: the kubelet\'s rules, case by case', () => {
  const cases: Array<[string, string]> = [
    ['$(A)', 'a'], ['x$(A)y', 'xay'], ['$(A)$(A)', 'aa'], ['$(EMPTY)', ''], ['$(X.Y)', 'xy'],
    ['$(UNDEFINED)', '$(UNDEFINED)'], ['$$(A)', '$(A)'], ['$$$(A)', '$a'], ['$$$$(A)', '$$(A)'],
    ['$A', '$A'], ['$', '$'], ['a$', 'a$'], ['$(A', '$(A'], ['$(', '$('], ['$()', '$()'], ['$)', '$)'],
    ['$(A)$', 'a$'], ['plain', 'plain'], ['', ''], ['$(A )', '$(A )'], ['$($(A))', '$($(A))'], ['$(A)$(', 'a$('],
  ];
  for (const [input, want] of cases) assert.is(expandVars(input, lookup), want, input);
});

test('escaped values come out of expansion unchanged, whatever they hold', () => {
  for (const v of ['', '$', '$$', '$(A)', '$$(A)', 'a$b$(c', '$(A)$', 'price: $5', '$(', '))$((']) {
    assert.is(expandVars(escapeVars(v), lookup), v, v);
  }
});

const image = { config: { Entrypoint: ['/entry', '$(A)'], Cmd: ['$(A)'] } } as unknown as ImageRecord;

test('runtime: env expands against earlier variables only; command and args against all; the image\'s never', () => {
  const c: ContainerSpec = {
    name: 'c', image: 'i',
    env: [
      { name: 'LATER_REF', value: '$(B)' }, { name: 'B', value: 'b' }, { name: 'C', value: '$(B)-$(B)' },
      { name: 'IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }, { name: 'IPS', valueFrom: { fieldRef: { fieldPath: 'status.podIPs' } } },
      { name: 'URL', value: 'http://$(IP):80' }, { name: 'ESC', value: '$$(B)' }, { name: 'NONE' },
    ],
    command: ['/bin/echo', '$(C)', '$(LATER_REF)'], args: ['$(URL)', '$(NOPE)'],
  };
  const env = podEnv(c, ['10.88.0.5', 'fd00::5']);
  assert.equal([...env], [['LATER_REF', '$(B)'], ['B', 'b'], ['C', 'b-b'], ['IP', '10.88.0.5'], ['IPS', '10.88.0.5,fd00::5'], ['URL', 'http://10.88.0.5:80'], ['ESC', '$(B)'], ['NONE', '']]);
  assert.equal(argvFor(c, image, env), ['/bin/echo', 'b-b', '$(B)', 'http://10.88.0.5:80', '$(NOPE)']);
  assert.equal(argvFor({ name: 'c', image: 'i', env: [{ name: 'A', value: 'x' }] }, image), ['/entry', '$(A)', '$(A)'], 'the image\'s Entrypoint and Cmd are left alone');
  assert.is(podEnv(c, []).get('IP'), '', 'no pod network: an empty pod IP, as the kubelet gives');
});

test('runtime: sources only an agent can resolve are refused, naming them', () => {
  const pod: Pod = { metadata: { name: 'p' }, spec: { containers: [{ name: 'c', image: 'i', envFrom: [{ configMapRef: { name: 'cm' } }], env: [
    { name: 'A', valueFrom: { configMapKeyRef: { name: 'cm', key: 'k' } } }, { name: 'B', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
    { name: 'C', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
  ] }] } };
  const problems = unresolvedEnvSources(pod);
  assert.is(problems.length, 3);
  assert.match(problems[0]!, /^spec\.containers\[0\]\.envFrom: /);
  assert.match(problems[1]!, /^spec\.containers\[0\]\.env\[0\]\.valueFrom\.configMapKeyRef: resolved by the agent/);
  assert.match(problems[2]!, /^spec\.containers\[0\]\.env\[2\]\.valueFrom\.fieldRef metadata\.name: /);
  assert.throws(() => checkRuntimeEnv(pod), /CreateContainerConfigError|envFrom/);
});

const cm = (name: string, data: Record<string, string>): V1ConfigMap => ({ metadata: { name }, data });
const secret = (name: string, data: Record<string, string>): V1Secret => ({ metadata: { name }, data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])) });

function objects(cms: V1ConfigMap[], secrets: V1Secret[] = []): PodObjects & { reads: string[] } {
  const reads: string[] = [];
  return {
    namespace: 'ns', reads,
    async configMap(name) { reads.push(`cm/${name}`); return cms.find((c) => c.metadata?.name === name); },
    async secret(name) { reads.push(`secret/${name}`); return secrets.find((s) => s.metadata?.name === name); },
  };
}

const node = { cpuMillis: 4000, memoryBytes: 8 * 2 ** 30, ephemeralStorageBytes: 100e9 };
const ctx: EnvContext = { hostIP: '192.0.2.1', podIPFromRuntime: true, node };
const pod = (container: object, extra: object = {}): V1Pod => ({
  metadata: { name: 'web-1', namespace: 'ns', uid: 'u-1', labels: { app: 'web', 'tier.io/x': 'front' }, annotations: { note: 'a "b"' } },
  spec: { nodeName: 'node-1', serviceAccountName: 'sa', containers: [{ name: 'c', image: 'i', ...container }], ...extra },
});

test('agent: envFrom (prefix, invalid names skipped and reported), then env on top; read values escaped', async () => {
  const p = pod({
    envFrom: [{ configMapRef: { name: 'cfg' }, prefix: 'CFG_' }, { secretRef: { name: 's' } }, { configMapRef: { name: 'absent', optional: true } }],
    env: [{ name: 'CFG_MODE', value: 'override-$(CFG_LEVEL)' }, { name: 'X', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'level' } } }],
  });
  const got = await resolveEnv(p, p.spec!.containers[0]!, objects([cm('cfg', { mode: 'fast', level: '$3', 'bad key': 'x', '1st': 'y' })], [secret('s', { PASSWORD: 'p$(w)', '-ok': 'z' })]), ctx);
  assert.equal(got.env, [
    { name: 'CFG_1st', value: 'y' }, { name: 'CFG_level', value: '$$3' }, { name: 'CFG_mode', value: 'fast' },
    { name: '-ok', value: 'z', fromSecret: true }, { name: 'PASSWORD', value: 'p$$(w)', fromSecret: true },
    { name: 'CFG_MODE', value: 'override-$(CFG_LEVEL)' }, { name: 'X', value: '$$3' },
  ]);
  assert.equal(got.warnings, ['Keys [CFG_bad key] from the EnvFrom configMap ns/cfg were skipped since they are considered invalid environment variable names.']);
  // What the container finally sees: read values exactly as stored, literal values expanded.
  const env = podEnv({ name: 'c', image: 'i', env: got.env }, []);
  assert.is(env.get('PASSWORD'), 'p$(w)');
  assert.is(env.get('X'), '$3');
  assert.is(env.get('CFG_MODE'), 'override-$(CFG_LEVEL)', 'CFG_LEVEL is not defined (keys keep their case)');
});

test('Secret data stays out of pod.json: read values, what expands them, and the args that name them', () => {
  const c: ContainerSpec = {
    name: 'c', image: 'i',
    env: [
      { name: 'PW', value: 's3cr$$t', fromSecret: true }, { name: 'URL', value: 'https://u:$(PW)@host' }, { name: 'PLAIN', value: 'x' },
      { name: 'PW2', value: 'p', fromSecret: true }, { name: 'PW2', value: 'overridden' },
    ],
    command: ['/bin/tool', '--password=$(PW)', '$(PLAIN)'], args: ['$(URL)', 'ok'],
  };
  const taint = secretTaint(c);
  assert.equal([...taint.names], ['PW', 'URL'], 'a later plain definition clears the taint');
  assert.equal(taint.command, [false, true, false]);
  assert.equal(taint.args, [true, false]);
  const own = podEnv(c, []);
  const manifest = {
    version: 1, uuid: 'u', stage1: 'namespaces', createdAt: 0, hostname: 'h', restartPolicy: 'Always', terminationGracePeriodSeconds: 30,
    pod: { metadata: { name: 'p' }, spec: { containers: [c] } },
    apps: [{ name: 'c', image: { id: 'x', name: 'i' }, argv: argvFor(c, image, own), env: [...own], workingDir: '/', user: { uid: 0, gid: 0 }, security: {}, limits: {}, requests: {} }],
  } as unknown as RuntimePodManifest;
  const disk = manifestForDisk(manifest);
  assert.equal(disk.apps[0]!.argv, ['/bin/tool', REDACTED, 'x', REDACTED, 'ok']);
  assert.equal(disk.apps[0]!.env, [['PW', REDACTED], ['URL', REDACTED], ['PLAIN', 'x'], ['PW2', 'overridden']]);
  assert.is(disk.pod.spec.containers[0]!.env![0]!.value, REDACTED);
  assert.not.ok(JSON.stringify(disk).includes('s3cr'), 'no trace of the value');
  assert.equal(manifest.apps[0]!.env[0], ['PW', 's3cr$t'], 'the manifest in memory (what the stage1s get) is untouched');
  assert.is(manifestForDisk({ ...manifest, pod: { metadata: { name: 'p' }, spec: { containers: [{ name: 'c', image: 'i', env: [{ name: 'A', value: 'a' }] }] } } }).apps, manifest.apps, 'nothing secret: written as it is');
});

test('agent: missing objects and keys fail with the kubelet\'s words, unless optional', async () => {
  const fail = async (env: object[], envFrom: object[] = []) => {
    const p = pod({ env, envFrom });
    try {
      await resolveEnv(p, p.spec!.containers[0]!, objects([cm('cfg', { a: '1' })], [secret('s', { b: '2' })]), ctx);
      return 'resolved';
    } catch (err) {
      return `${(err as Error).name}: ${(err as Error).message}`;
    }
  };
  assert.is(await fail([{ name: 'A', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'missing' } } }]), 'ContainerConfigError: couldn\'t find key missing in ConfigMap ns/cfg');
  assert.is(await fail([{ name: 'A', valueFrom: { configMapKeyRef: { name: 'nope', key: 'a' } } }]), 'ContainerConfigError: configmap "nope" not found');
  assert.is(await fail([{ name: 'A', valueFrom: { secretKeyRef: { name: 's', key: 'missing' } } }]), 'ContainerConfigError: couldn\'t find key missing in Secret ns/s');
  assert.is(await fail([{ name: 'A', valueFrom: { secretKeyRef: { name: 'nope', key: 'b' } } }]), 'ContainerConfigError: secret "nope" not found');
  assert.is(await fail([], [{ secretRef: { name: 'nope' } }]), 'ContainerConfigError: secret "nope" not found');
  assert.is(await fail([], [{ configMapRef: { name: 'nope' } }]), 'ContainerConfigError: configmap "nope" not found');
  assert.is(await fail([
    { name: 'A', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'missing', optional: true } } },
    { name: 'B', valueFrom: { secretKeyRef: { name: 'nope', key: 'b', optional: true } } },
  ], [{ secretRef: { name: 'nope', optional: true } }]), 'resolved');
  const p = pod({ env: [{ name: 'A', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'missing', optional: true } } }] });
  assert.equal((await resolveEnv(p, p.spec!.containers[0]!, objects([cm('cfg', {})]), ctx)).env, [], 'an optional missing key leaves the variable unset');
});

test('agent: downward API fields; status.podIP left to the runtime unless the pod is on the node\'s network', async () => {
  const fields = ['metadata.name', 'metadata.namespace', 'metadata.uid', "metadata.labels['app']", "metadata.labels['tier.io/x']", "metadata.annotations['note']", "metadata.labels['none']", 'spec.nodeName', 'spec.serviceAccountName', 'status.hostIP', 'status.hostIPs', 'status.podIP', 'status.podIPs'];
  const p = pod({ env: fields.map((fieldPath, i) => ({ name: `F${i}`, valueFrom: { fieldRef: { fieldPath } } })) });
  const got = await resolveEnv(p, p.spec!.containers[0]!, objects([]), ctx);
  assert.equal(got.env.map((e) => e.value ?? e.valueFrom), ['web-1', 'ns', 'u-1', 'web', 'front', 'a "b"', '', 'node-1', 'sa', '192.0.2.1', '192.0.2.1',
    { fieldRef: { fieldPath: 'status.podIP' } }, { fieldRef: { fieldPath: 'status.podIPs' } }]);
  const host = await resolveEnv(p, p.spec!.containers[0]!, objects([]), { ...ctx, podIPFromRuntime: false, podIPs: ['192.0.2.1'] });
  assert.equal(host.env.slice(-2).map((e) => e.value), ['192.0.2.1', '192.0.2.1']);
  assert.is(fieldValue(p, 'metadata.labels', ctx), 'app="web"\ntier.io/x="front"');
  assert.is(formatMap({ b: 'x\ny', a: '' }), 'a=""\nb="x\\ny"');
});

test('agent: resourceFieldRef divides and rounds up; unset limits are the node\'s allocatable', () => {
  const p = pod({ resources: { limits: { cpu: '250m', memory: '64Mi' }, requests: { cpu: '100m' } } }, {});
  p.spec!.containers.push({ name: 'bare', image: 'i' });
  const v = (container: string, resource: string, divisor?: string) => resourceValue(p, container, resource, divisor, node);
  assert.is(v('c', 'limits.cpu'), '1', '250m in cores, rounded up');
  assert.is(v('c', 'limits.cpu', '1m'), '250');
  assert.is(v('c', 'requests.cpu', '1m'), '100');
  assert.is(v('c', 'limits.memory'), String(64 * 2 ** 20));
  assert.is(v('c', 'limits.memory', '1Mi'), '64');
  assert.is(v('c', 'limits.memory', '1G'), '1', '67 MB in G, rounded up');
  assert.is(v('c', 'requests.memory', '1Mi'), '64', 'an unset request is the limit (API server defaulting)');
  assert.is(v('bare', 'limits.cpu'), '4', 'no limit: the node\'s allocatable');
  assert.is(v('bare', 'limits.memory', '1Gi'), '8');
  assert.is(v('bare', 'requests.cpu'), '0');
  assert.throws(() => v('ghost', 'limits.cpu'), /container "ghost" is not in the pod/);
});

test('validation: env sources are checked for shape, every problem named', () => {
  const bad = { metadata: { name: 'p' }, spec: { containers: [{ name: 'c', image: 'i', env: [
    { name: 'A', value: 'x', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    { name: 'B', valueFrom: {} },
    { name: 'C', valueFrom: { fieldRef: { fieldPath: 'spec.containers' } } },
    { name: 'D', valueFrom: { configMapKeyRef: { name: 'cm' } } },
    { name: 'E', valueFrom: { resourceFieldRef: { resource: 'limits.gpu', divisor: 'x' } } },
    { name: 'F', valueFrom: { secretKeyRef: { name: 's', key: 'bad/key' }, fieldRef: { fieldPath: 'metadata.uid', apiVersion: 'v2' } } },
  ], envFrom: [{ prefix: '1X', configMapRef: { name: 'a' }, secretRef: { name: 'b' } }, { configMapRef: {} }] }] } };
  let msg = '';
  try { validatePod(bad, { strict: false }); } catch (err) { msg = (err as Error).message; }
  for (const expected of [
    'env[0].valueFrom: Invalid value: may not be specified when `value` is not empty',
    'env[1].valueFrom: Invalid value: must specify one of',
    'env[2].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.containers"',
    'env[3].valueFrom.configMapKeyRef.key: Required value',
    'env[4].valueFrom.resourceFieldRef.resource: Unsupported value: "limits.gpu"',
    'env[4].valueFrom.resourceFieldRef.divisor: "x" is not a valid quantity',
    'env[5].valueFrom: Invalid value: must specify one of',
    'env[5].valueFrom.secretKeyRef.key: Invalid value: "bad/key"',
    'env[5].valueFrom.fieldRef.apiVersion: Unsupported value: "v2"',
    'envFrom[0].prefix: Invalid value: "1X"',
    'envFrom[0]: Invalid value: must specify one of: `configMapRef` or `secretRef`',
    'envFrom[1].configMapRef.name: Required value',
  ]) assert.ok(msg.includes(expected), `${expected}\nin:\n${msg}`);
  const good = { metadata: { name: 'p' }, spec: { containers: [{ name: 'c', image: 'i', env: [
    { name: 'A', valueFrom: { fieldRef: { fieldPath: "metadata.annotations['x/y']", apiVersion: 'v1' } } },
    { name: 'B', valueFrom: { resourceFieldRef: { resource: 'limits.memory', divisor: '1Mi', containerName: 'c' } } },
    { name: 'C', valueFrom: { secretKeyRef: { name: 's', key: '.k-1_', optional: true } } },
  ], envFrom: [{ prefix: 'P_', secretRef: { name: 's', optional: false } }] }] } };
  validatePod(good, { strict: true });
});

test.run();
