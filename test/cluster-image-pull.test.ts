/**
 * Pods from registry images, end to end: real docker-registry instances on
 * 127.0.0.1 (plain, htpasswd, behind a token server), images pushed with
 * skopeo, `kubectl apply` of pods naming them, the agent pulling (with the
 * pod's imagePullSecrets, created with `kubectl create secret docker-registry`
 * or as a kubernetes.io/dockercfg secret) and running them in the node
 * sandbox. Each image carries its own Env (IMAGE_KIND, PICKED_ARCH), so the
 * pod's log line proves the container ran the pulled image's config.
 */
import * as path from 'node:path';
import * as fs from 'node:fs/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { useCluster, type TestCluster } from './helpers/cluster.js';
import { eventually } from './helpers/node.js';
import { buildBusyboxImage } from '../runtime-rkt/image/demo-image.js';
import { tempDir, buildVariantImage, buildMultiArchImage } from './helpers/images.js';
import { startRegistry, startTokenServer, skopeoPush, type TestRegistry, type TokenServer } from './helpers/registry.js';

const t = suite('cluster: pods from registry images (tag, digest, OCI, Docker v2, index, basic auth, token auth, imagePullSecrets)');
let work: string;
let plain: TestRegistry;
let basic: TestRegistry;
let tokenReg: TestRegistry;
let tokens: TokenServer;
let digestRef: string;

t.before(async () => {
  work = await tempDir('cluster-pull');
  const bb = path.join(work, 'busybox');
  await buildBusyboxImage(bb);
  const variant = async (kind: string) => {
    const dir = path.join(work, kind);
    await buildVariantImage(bb, dir, { name: `localhost/${kind}:latest`, label: kind, env: [`IMAGE_KIND=${kind}`] });
    return `oci:${dir}`;
  };
  plain = await startRegistry(work);
  await skopeoPush(await variant('oci-tag'), `${plain.host}/demo/oci:1.0`);
  await skopeoPush(await variant('oci-digest'), `${plain.host}/demo/bydigest:1.0`);
  await skopeoPush(await variant('docker-v2'), `${plain.host}/demo/dockerv2:1.0`, { format: 'v2s2' });
  await buildMultiArchImage(bb, path.join(work, 'multi'), 'localhost/multi:latest');
  await skopeoPush(`oci:${path.join(work, 'multi')}`, `${plain.host}/demo/multi:1.0`, { all: true });
  // The digest the registry serves for bydigest:1.0 (what a user copies from `skopeo inspect`).
  const res = await fetch(`http://${plain.host}/v2/demo/bydigest/manifests/1.0`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  digestRef = `${plain.host}/demo/bydigest@${res.headers.get('docker-content-digest')}`;
  assert.match(digestRef, /@sha256:[0-9a-f]{64}$/);

  basic = await startRegistry(work, { kind: 'htpasswd', user: 'alice', password: 's3cret' });
  await skopeoPush(await variant('basic-auth'), `${basic.host}/private/app:1.0`, { creds: 'alice:s3cret' });
  tokens = await startTokenServer(work, { bob: 'hunter2' });
  tokenReg = await startRegistry(work, { kind: 'token', realm: tokens.realm, service: tokens.service, issuer: tokens.issuer, certFile: tokens.certFile });
  await skopeoPush(await variant('token-auth'), `${tokenReg.host}/team/app:1.0`, { creds: 'bob:hunter2' });
});

const getCluster = useCluster(t);

t.after(async () => {
  await plain?.stop();
  await basic?.stop();
  await tokenReg?.stop();
  await tokens?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

interface PodJson {
  status: { phase: string; containerStatuses?: Array<{ ready: boolean; imageID: string; state: { waiting?: { reason: string; message?: string } } }> };
}

async function pod(c: TestCluster, name: string): Promise<PodJson | undefined> {
  const r = await c.kubectl(['get', 'pod', name, '-o', 'json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as PodJson) : undefined;
}

const podYaml = (name: string, image: string, secrets: string[] = []) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  terminationGracePeriodSeconds: 1
${secrets.length ? `  imagePullSecrets:\n${secrets.map((s) => `  - name: ${s}\n`).join('')}` : ''}  containers:
  - name: main
    image: "${image}"
    command: [sh, -c, 'echo "ran $IMAGE_KIND arch=$PICKED_ARCH"; exec sleep 600']
`;

/** Running, ready, and its log shows the image's own Env. */
async function runsWith(c: TestCluster, name: string, line: RegExp): Promise<void> {
  await eventually(`${name} Running`, async () => {
    const p = await pod(c, name);
    const w = p?.status.containerStatuses?.[0]?.state.waiting;
    if (w && /ErrImagePull|ImagePullBackOff|CreateContainer/.test(w.reason)) throw new Error(`${name}: ${w.reason}: ${w.message}`);
    return p?.status.phase === 'Running' && p.status.containerStatuses?.[0]?.ready ? p : undefined;
  }, 90_000);
  const logs = await eventually(`${name} log line`, async () => {
    const l = await c.kubectl(['logs', name]);
    return l.code === 0 && line.test(l.stdout) ? l.stdout : undefined;
  });
  assert.match(logs, line);
  const events = await c.k(['get', 'events', '--field-selector', `involvedObject.name=${name}`]);
  assert.match(events, /Successfully pulled image/, `${name} was pulled, not found on the node`);
}

async function waitingReason(c: TestCluster, name: string): Promise<{ reason: string; message?: string }> {
  return eventually(`${name} ErrImagePull`, async () => {
    const w = (await pod(c, name))?.status.containerStatuses?.[0]?.state.waiting;
    return w && /ErrImagePull|ImagePullBackOff/.test(w.reason) ? w : undefined;
  }, 60_000);
}

t('anonymous pulls: OCI by tag, by digest, Docker v2, multi-arch index (the amd64 entry runs)', async () => {
  const c = getCluster();
  const pods = {
    'oci-tag': `${plain.host}/demo/oci:1.0`,
    'oci-digest': digestRef,
    'docker-v2': `${plain.host}/demo/dockerv2:1.0`,
    multi: `${plain.host}/demo/multi:1.0`,
  };
  await c.k(['apply', '-f', '-'], Object.entries(pods).map(([n, img]) => podYaml(n, img)).join('---\n'));
  await runsWith(c, 'oci-tag', /^ran oci-tag arch=\n/);
  await runsWith(c, 'oci-digest', /^ran oci-digest arch=\n/);
  await runsWith(c, 'docker-v2', /^ran docker-v2 arch=\n/);
  await runsWith(c, 'multi', /^ran  arch=amd64\n/);
  const images = await c.stevedore(['image', 'ls']);
  assert.is(images.code, 0, images.stderr);
  for (const name of ['demo/oci:1.0', 'demo/dockerv2:1.0', 'demo/multi:1.0']) assert.ok(images.stdout.includes(`${plain.host}/${name}`), `${name} in the node's store:\n${images.stdout}`);
});

t('imagePullSecrets: htpasswd registry via kubectl create secret docker-registry; token registry via a dockercfg secret', async () => {
  const c = getCluster();
  const created = await c.k(['create', 'secret', 'docker-registry', 'basic-cred', `--docker-server=${basic.host}`, '--docker-username=alice', '--docker-password=s3cret']);
  assert.match(created, 'secret/basic-cred created');
  const dockercfg = Buffer.from(JSON.stringify({ [`http://${tokenReg.host}`]: { auth: Buffer.from('bob:hunter2').toString('base64') } })).toString('base64');
  await c.k(['apply', '-f', '-'], `apiVersion: v1\nkind: Secret\nmetadata: {name: token-cred}\ntype: kubernetes.io/dockercfg\ndata: {.dockercfg: ${dockercfg}}\n`);
  tokens.requests.length = 0;
  await c.k(['apply', '-f', '-'], [
    podYaml('basic-auth', `${basic.host}/private/app:1.0`, ['basic-cred']),
    // The first secret has nothing for the token registry; the second does.
    podYaml('token-auth', `${tokenReg.host}/team/app:1.0`, ['basic-cred', 'token-cred']),
  ].join('---\n'));
  await runsWith(c, 'basic-auth', /^ran basic-auth arch=\n/);
  await runsWith(c, 'token-auth', /^ran token-auth arch=\n/);
  assert.ok(tokens.requests.includes('bob repository:team/app:pull'), tokens.requests.join('\n'));
});

t('no secret, a wrong password, a missing secret: ErrImagePull with the registry\'s message; creating the secret lets the pull succeed', async () => {
  const c = getCluster();
  await c.k(['create', 'secret', 'docker-registry', 'wrong-cred', `--docker-server=${basic.host}`, '--docker-username=alice', '--docker-password=not-the-password']);
  // A distinct tag each, so no pod finds the image already on the node.
  await skopeoPush(`oci:${path.join(work, 'basic-auth')}`, `${basic.host}/private/app:2.0`, { creds: 'alice:s3cret' });
  const image = `${basic.host}/private/app:2.0`;
  await c.k(['apply', '-f', '-'], [
    podYaml('no-secret', image),
    podYaml('wrong-secret', image, ['wrong-cred']),
    podYaml('late-secret', image, ['late-cred']),
  ].join('---\n'));
  for (const name of ['no-secret', 'wrong-secret', 'late-secret']) {
    const w = await waitingReason(c, name);
    assert.match(w.message ?? '', new RegExp(`Failed to pull image "${image.replace(/\./g, '\\.')}": .*authentication required.*\\(UNAUTHORIZED\\) \\[HTTP 401 from ${basic.host.replace(/\./g, '\\.')}\\]`), `${name}: ${w.message}`);
    assert.not.match(w.message ?? '', /not-the-password|s3cret/);
  }
  const described = await c.k(['describe', 'pod', 'late-secret']);
  assert.match(described, /FailedToRetrieveImagePullSecret.*late-cred: not found in namespace default/s);
  assert.match(await c.k(['get', 'pod', 'no-secret']), /no-secret\s+0\/1\s+(ErrImagePull|ImagePullBackOff)/);
  // The agent's journal never holds the password.
  const journal = await c.node(['journalctl', '-u', 'stevedore-agent', '--no-pager', '-o', 'cat']);
  assert.not.match(journal.stdout, /not-the-password|s3cret|hunter2/);
  // Fix it: the pod backs off and retries, now with the secret.
  await c.k(['create', 'secret', 'docker-registry', 'late-cred', `--docker-server=${basic.host}`, '--docker-username=alice', '--docker-password=s3cret']);
  await runsWith(c, 'late-secret', /^ran basic-auth arch=\n/);
  const still = await waitingReason(c, 'wrong-secret');
  assert.match(still.reason, /ErrImagePull|ImagePullBackOff/);
});

t.run();
