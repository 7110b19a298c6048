/**
 * Env sources and (with the runtime's hostPath support) configMap, secret,
 * downwardAPI and projected volumes, on a real node with the real kubectl:
 * ConfigMap and Secret values in env and envFrom (with a prefix), the
 * downward API's status.podIP equal to the pod's IP, `$(VAR)` expansion, a
 * missing key holding the pod in CreateContainerConfigError until it exists.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { useCluster } from './helpers/cluster.js';
import { eventually } from './helpers/node.js';

type KObj = Record<string, any>;

const s = suite('env sources and volumes from ConfigMaps, Secrets and the downward API, on a real node');
const getCluster = useCluster(s);

const podJson = async (name: string) => JSON.parse(await getCluster().k(['get', 'pod', name, '-o', 'json'])) as KObj;

/** The pod's log once it holds `marker` (the container prints and then sleeps). */
async function logsWith(name: string, marker: string, timeoutMs = 90_000): Promise<string> {
  return eventually(`${name} logs ${marker}`, async () => {
    const r = await getCluster().kubectl(['logs', name]);
    return r.code === 0 && r.stdout.includes(marker) ? r.stdout : undefined;
  }, timeoutMs);
}

const envOf = (log: string) => new Map(log.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]));

s('env from a ConfigMap, a Secret, envFrom with a prefix and the downward API (status.podIP is the pod\'s IP), expanded as the kubelet does', async () => {
  const c = getCluster();
  await c.k(['create', 'configmap', 'app-config', '--from-literal=mode=fast', '--from-literal=level=3']);
  await c.k(['create', 'secret', 'generic', 'app-secret', '--from-literal=password=s3cr$t', '--from-literal=user=admin', '--from-literal=9lives=x']);
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: env-pod, labels: {app: envtest}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'env | sort; echo ARGV=$0; echo END; sleep 3600', '$(GREETING)']
    resources: {limits: {memory: 64Mi}}
    envFrom:
    - configMapRef: {name: app-config}
      prefix: CFG_
    - secretRef: {name: app-secret}
    env:
    - {name: MODE, valueFrom: {configMapKeyRef: {name: app-config, key: mode}}}
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: app-secret, key: password}}}
    - {name: OPTIONAL, valueFrom: {configMapKeyRef: {name: app-config, key: nope, optional: true}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: APP_LABEL, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: HOST_IP, valueFrom: {fieldRef: {fieldPath: status.hostIP}}}
    - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: GREETING, value: 'hello $(POD_NAME) at $(POD_IP) ($(MODE), $$(MODE), $(UNDEFINED))'}
`);
  const log = await logsWith('env-pod', 'END');
  const env = envOf(log);
  const pod = await podJson('env-pod');
  assert.ok(pod.status.podIP, 'the pod has an IP');
  assert.is(env.get('POD_IP'), pod.status.podIP, 'status.podIP in env is the pod\'s IP');
  assert.is(env.get('MODE'), 'fast');
  assert.is(env.get('PASSWORD'), 's3cr$t', 'a Secret\'s value, never expanded');
  assert.is(env.get('CFG_mode'), 'fast');
  assert.is(env.get('CFG_level'), '3');
  assert.is(env.get('user'), 'admin');
  assert.is(env.get('password'), 's3cr$t');
  assert.not.ok(env.has('OPTIONAL'), 'an optional missing key leaves the variable unset');
  assert.not.ok(env.has('9lives'), 'an invalid name from envFrom is skipped');
  assert.is(env.get('POD_NAME'), 'env-pod');
  assert.is(env.get('POD_NS'), 'default');
  assert.is(env.get('APP_LABEL'), 'envtest');
  assert.is(env.get('NODE'), c.nodeName);
  assert.is(env.get('HOST_IP'), pod.status.hostIP);
  assert.is(env.get('MEM_MI'), '64');
  assert.is(env.get('GREETING'), `hello env-pod at ${pod.status.podIP} (fast, $(MODE), $(UNDEFINED))`);
  assert.is(env.get('ARGV'), env.get('GREETING'), 'args are expanded with the container\'s env');
  const events = await c.k(['get', 'events', '--field-selector', 'involvedObject.name=env-pod', '-o', 'json']);
  const warning = (JSON.parse(events).items as KObj[]).find((e) => e.reason === 'InvalidEnvironmentVariableNames');
  assert.ok(warning, 'the kubelet\'s event about skipped names');
  assert.is(warning.message, 'Keys [9lives] from the EnvFrom secret default/app-secret were skipped since they are considered invalid environment variable names.');
  assert.not.ok(events.includes('s3cr$t'), 'no secret value in events');
  // What the node keeps on disk for others (pod.json: the api-service's group reads and serves it) has no Secret value.
  const onDisk = await c.node(['sh', '-c', `cat ${c.dataDir}/node/pods/run/*/pod.json | grep -c 's3cr'; stat -c %a ${c.dataDir}/node/pods/run/*/apps/main/config.json`]);
  assert.equal(onDisk.stdout.trim().split('\n'), ['0', '600'], `pod.json without the secret, the bundle 0600: ${onDisk.stdout}${onDisk.stderr}`);
  const journal = await c.node(['journalctl', '-u', 'stevedore-agent', '--no-pager', '-o', 'cat']);
  assert.not.ok(journal.stdout.includes('s3cr$t'), 'no secret value in the agent\'s log');
  await c.k(['delete', 'pod', 'env-pod', '--grace-period=1']);
});

s('a missing ConfigMap key holds the container in CreateContainerConfigError naming it; the pod starts once the key exists', async () => {
  const c = getCluster();
  await c.k(['create', 'configmap', 'late-config', '--from-literal=other=1']);
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: late-pod}
spec:
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo "WANTED=$WANTED"; sleep 3600']
    env:
    - {name: WANTED, valueFrom: {configMapKeyRef: {name: late-config, key: wanted}}}
`);
  const waiting = await eventually('CreateContainerConfigError', async () => {
    const w = (await podJson('late-pod')).status?.containerStatuses?.[0]?.state?.waiting;
    return w?.reason === 'CreateContainerConfigError' ? w : undefined;
  }, 60_000);
  assert.is(waiting.message, "couldn't find key wanted in ConfigMap default/late-config");
  const table = await c.k(['get', 'pod', 'late-pod']);
  assert.match(table, /late-pod\s+0\/1\s+CreateContainerConfigError/);
  await c.k(['patch', 'configmap', 'late-config', '--type=merge', '-p', '{"data":{"wanted":"here"}}']);
  const started = Date.now();
  await eventually('late-pod Running', async () => (await podJson('late-pod')).status?.phase === 'Running' || undefined, 60_000);
  assert.ok(Date.now() - started < 30_000, `started ${Date.now() - started} ms after the key appeared`);
  assert.match(await logsWith('late-pod', 'WANTED='), /WANTED=here/);
  await c.k(['delete', 'pod', 'late-pod', '--grace-period=1']);
});

s('configMap, secret, downwardAPI and projected volumes: files, modes, read-only; a ConfigMap edit and a new label reach the files, a subPath keeps its copy; the files go with the pod', async () => {
  const c = getCluster();
  await c.k(['create', 'configmap', 'vol-config', '--from-literal=greeting=hello', '--from-literal=other=1']);
  await c.k(['create', 'secret', 'generic', 'vol-secret', '--from-literal=password=pa55']);
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: vol-pod, labels: {app: voltest}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    resources: {limits: {memory: 48Mi}}
    command:
    - sh
    - -c
    - |
      echo "FILES=$(ls /etc/cfg | tr '\\n' ' ')"
      echo "SECRET=$(cat /etc/sec/creds/pw) MODE=$(stat -L -c %a /etc/sec/creds/pw)"
      echo "PROJECTED=$(cat /etc/all/g)/$(cat /etc/all/password)/$(cat /etc/all/name)"
      echo "MEM=$(cat /etc/podinfo/mem)"
      if touch /etc/cfg/new 2>/dev/null; then echo WRITABLE=yes; else echo WRITABLE=no; fi
      echo START
      while true; do echo "GREETING=$(cat /etc/cfg/greeting) SUB=$(cat /etc/sub-greeting) LABELS=$(cat /etc/podinfo/labels | tr '\\n' ',')"; sleep 2; done
    volumeMounts:
    - {name: cfg, mountPath: /etc/cfg}
    - {name: cfg, mountPath: /etc/sub-greeting, subPath: greeting}
    - {name: sec, mountPath: /etc/sec}
    - {name: info, mountPath: /etc/podinfo}
    - {name: all, mountPath: /etc/all}
  volumes:
  - {name: cfg, configMap: {name: vol-config}}
  - {name: sec, secret: {secretName: vol-secret, defaultMode: 0400, items: [{key: password, path: creds/pw}]}}
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: mem, resourceFieldRef: {containerName: main, resource: limits.memory, divisor: 1Mi}}
  - name: all
    projected:
      sources:
      - configMap: {name: vol-config, items: [{key: greeting, path: g}]}
      - secret: {name: vol-secret}
      - downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}
`);
  const log = await logsWith('vol-pod', 'GREETING=');
  assert.match(log, /^FILES=greeting other\s*$/m, log);
  assert.match(log, /^SECRET=pa55 MODE=400$/m, log);
  assert.match(log, /^PROJECTED=hello\/pa55\/vol-pod$/m, log);
  assert.match(log, /^MEM=48$/m, log);
  assert.match(log, /^WRITABLE=no$/m, `these volumes are mounted read-only: ${log}`);
  assert.match(log, /GREETING=hello SUB=hello LABELS=app="voltest"$/m, log);

  // On the node: under the agent's data dir, the kubelet's layout; the secret on a tmpfs.
  const uid = (await podJson('vol-pod')).metadata.uid;
  const podDir = `${c.dataDir}/node/agent/pods/${uid}`;
  const secretFs = await c.node(['stat', '-f', '-c', '%T', `${podDir}/volumes/kubernetes.io~secret/sec`]);
  assert.is(secretFs.stdout.trim(), 'tmpfs', 'secret volumes never touch the disk');
  const link = await c.node(['readlink', `${podDir}/volumes/kubernetes.io~configmap/cfg/greeting`]);
  assert.is(link.stdout.trim(), '..data/greeting');

  await c.k(['patch', 'configmap', 'vol-config', '--type=merge', '-p', '{"data":{"greeting":"bonjour"}}']);
  await c.k(['label', 'pod', 'vol-pod', 'extra=yes']);
  const edited = Date.now();
  const after = await logsWith('vol-pod', 'GREETING=bonjour', 60_000);
  assert.ok(Date.now() - edited < 60_000, `the edit reached the file after ${Date.now() - edited} ms`);
  assert.match(after, /GREETING=bonjour SUB=hello/, 'a subPath mount keeps what it had, as in Kubernetes');
  await logsWith('vol-pod', 'LABELS=app="voltest",extra="yes"', 60_000);

  await c.k(['delete', 'pod', 'vol-pod']);
  await eventually('the pod\'s volumes removed from the node', async () => (await c.node(['test', '-e', podDir])).code !== 0 || undefined, 60_000);
  const mounts = await c.node(['cat', '/proc/self/mountinfo']);
  assert.not.ok(mounts.stdout.includes(uid), 'no mount of the pod is left');
});

s('a configMap volume whose ConfigMap is missing: ContainerCreating with FailedMount, and the pod starts once it exists', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: wait-vol}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo "GOT=$(cat /cfg/k)"; sleep 3600']
    volumeMounts: [{name: cfg, mountPath: /cfg}]
  volumes: [{name: cfg, configMap: {name: not-yet}}]
`);
  const event = await eventually('FailedMount', async () => {
    const events = JSON.parse(await c.k(['get', 'events', '--field-selector', 'involvedObject.name=wait-vol', '-o', 'json'])).items as KObj[];
    return events.find((e) => e.reason === 'FailedMount');
  }, 60_000);
  assert.is(event.message, 'MountVolume.SetUp failed for volume "cfg" : configmap "not-yet" not found');
  assert.match(await c.k(['get', 'pod', 'wait-vol']), /wait-vol\s+0\/1\s+ContainerCreating/);
  await c.k(['create', 'configmap', 'not-yet', '--from-literal=k=v']);
  assert.match(await logsWith('wait-vol', 'GOT='), /GOT=v/);
  await c.k(['delete', 'pod', 'wait-vol']);
});

s('a projected serviceAccountToken volume: a token of the pod\'s ServiceAccount, bound to the pod, that the API accepts until the pod is gone', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: token-pod}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo "TOKEN=$(cat /var/run/secrets/tokens/api)"; sleep 3600']
    volumeMounts:
    - {name: tok, mountPath: /var/run/secrets/tokens}
  volumes:
  - name: tok
    projected:
      sources:
      - serviceAccountToken: {path: api, expirationSeconds: 600}
`);
  const log = await logsWith('token-pod', 'TOKEN=', 120_000);
  const token = /TOKEN=(\S+)/.exec(log)?.[1];
  assert.ok(token, log);
  const who = await c.kubectl(['--token', token!, 'auth', 'whoami', '-o', 'json']);
  assert.is(who.code, 0, who.stderr);
  const info = JSON.parse(who.stdout).status.userInfo;
  assert.is(info.username, 'system:serviceaccount:default:default');
  assert.equal(info.extra['authentication.kubernetes.io/pod-name'], ['token-pod']);
  await c.k(['delete', 'pod', 'token-pod']);
  await eventually('the token dies with its pod', async () => (await c.kubectl(['--token', token!, 'auth', 'whoami'])).code !== 0 || undefined, 60_000);
});

s('the same under kvm: status.podIP, a ConfigMap key in env, configMap and secret volumes inside the VM', async () => {
  const c = getCluster();
  await c.k(['create', 'configmap', 'vm-config', '--from-literal=greeting=hej']);
  await c.k(['create', 'secret', 'generic', 'vm-secret', '--from-literal=token=vm-t0k3n']);
  await c.k(['apply', '-f', '-'], `apiVersion: v1
kind: Pod
metadata: {name: vm-env}
spec:
  runtimeClassName: kvm
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo "IP=$POD_IP GREETING=$GREETING FILE=$(cat /cfg/greeting) TOKEN=$(cat /sec/token) ARG=$0"; sleep 3600', '$(POD_IP)']
    env:
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: vm-config, key: greeting}}}
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: sec, mountPath: /sec}
  volumes:
  - {name: cfg, configMap: {name: vm-config}}
  - {name: sec, secret: {secretName: vm-secret}}
`);
  const log = await logsWith('vm-env', 'IP=', 180_000);
  const pod = await podJson('vm-env');
  assert.ok(pod.status.podIP, 'the VM pod has an IP');
  const spec = await c.node(['sh', '-c', `stat -c %a ${c.dataDir}/node/pods/run/${pod.status.containerStatuses[0].containerID.replace(/^rkt:\/\//, '').split(':')[0]}/stage1/kvm/share/guest/app0/config.json`]);
  assert.is(spec.stdout.trim(), '600', `the guest's crun spec (it holds the env) is root's only: ${spec.stdout}${spec.stderr}`);
  assert.match(log, new RegExp(`IP=${pod.status.podIP.replace(/\./g, '\\.')} GREETING=hej FILE=hej TOKEN=vm-t0k3n ARG=${pod.status.podIP.replace(/\./g, '\\.')}$`, 'm'), log);
  await c.k(['delete', 'pod', 'vm-env']);
});

s.run();
