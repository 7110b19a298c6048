/**
 * Workloads (apps/v1 Deployment and ReplicaSet, batch/v1 Job) and the garbage collector,
 * driven by the real kubectl: first against a control plane alone (pods stay Pending, which is
 * all the API-level checks need), then on a real node with a real agent, where readiness counts
 * (a rolling update sampled for Ready pods, a Job sampled for running pods).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestControlPlane, registerNode, waitFor, type TestCP } from './helpers/control-plane.js';
import { useCluster, type TestCluster } from './helpers/cluster.js';
import * as https from 'node:https';
import * as fs from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { eventually } from './helpers/node.js';
import { latestScheduled, matches, parseSchedule } from '../control-plane/kinds/cron.js';

type KObj = Record<string, any>;

const deployment = (name: string, o: { replicas?: number; image?: string; strategy?: string; labels?: string; extraSpec?: string; grace?: number; command?: string } = {}) => `apiVersion: apps/v1
kind: Deployment
metadata: {name: ${name}}
spec:
  replicas: ${o.replicas ?? 3}
  selector: {matchLabels: {app: ${name}}}
${o.strategy ?? ''}${o.extraSpec ?? ''}  template:
    metadata: {labels: {app: ${o.labels ?? name}}}
    spec:
      terminationGracePeriodSeconds: ${o.grace ?? 30}
      containers:
      - name: main
        image: ${o.image ?? 'busybox'}
        command: [sh, -c, '${o.command ?? 'sleep 3600'}']
`;

// ---------------------------------------------------------------------------------- API level

/** A Job of one busybox container running `command` once per pod (restartPolicy Never); `spec` adds lines under spec. */
const jobYaml = (name: string, command: string, spec = '') => `apiVersion: batch/v1
kind: Job
metadata: {name: ${name}}
spec:
${spec}  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: busybox
        command: [sh, -c, '${command}']
`;

const api = suite('workloads: the API and controllers with the real kubectl');
let t: TestCP;
api.before(async () => { t = await startTestControlPlane(); });
api.after(async () => { await t?.close(); });

const k = (args: string[], input?: string) => t.k(args, input);
const getJson = async (args: string[]) => JSON.parse(await k([...args, '-o', 'json'])) as KObj;
const podsOf = async (selector: string) => ((await getJson(['get', 'pods', '-l', selector])).items as KObj[]).filter((p) => !p.metadata.deletionTimestamp);

api('discovery lists the workload kinds; kubectl scale finds their Scale subresource', async () => {
  const res = await k(['api-resources']);
  assert.match(res, /^deployments\s+deploy\s+apps\/v1\s+true\s+Deployment$/m);
  assert.match(res, /^replicasets\s+rs\s+apps\/v1\s+true\s+ReplicaSet$/m);
  assert.match(res, /^jobs\s+batch\/v1\s+true\s+Job$/m);
  const apps = JSON.parse(await k(['get', '--raw', '/apis/apps/v1']));
  const scale = apps.resources.find((r: KObj) => r.name === 'deployments/scale');
  assert.equal([scale.group, scale.version, scale.kind], ['autoscaling', 'v1', 'Scale']);
});

api('a Deployment scales 3 → 5 → 2 through its ReplicaSet; names, owners, labels, columns and events as kube', async () => {
  assert.match(await k(['apply', '-f', '-'], deployment('web')), 'deployment.apps/web created');
  const d = await getJson(['get', 'deploy', 'web']);
  assert.equal(d.spec.strategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } });
  assert.is(d.spec.revisionHistoryLimit, 10);
  assert.is(d.spec.progressDeadlineSeconds, 600);
  const pods = await waitFor('3 pods', async () => { const p = await podsOf('app=web'); return p.length === 3 && p; });
  const rs = (await getJson(['get', 'rs', '-l', 'app=web'])).items as KObj[];
  assert.is(rs.length, 1);
  const hash = rs[0]!.metadata.labels['pod-template-hash'];
  assert.is(rs[0]!.metadata.name, `web-${hash}`);
  assert.is(rs[0]!.metadata.annotations['deployment.kubernetes.io/revision'], '1');
  assert.equal(rs[0]!.metadata.ownerReferences, [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid: d.metadata.uid, controller: true, blockOwnerDeletion: true }]);
  for (const p of pods) {
    assert.match(p.metadata.name, new RegExp(`^web-${hash}-[bcdfghjklmnpqrstvwxz2456789]{5}$`));
    assert.is(p.metadata.labels['pod-template-hash'], hash);
    assert.is(p.metadata.ownerReferences[0].uid, rs[0]!.metadata.uid);
    assert.is(p.metadata.ownerReferences[0].controller, true);
  }
  assert.match(await k(['scale', 'deploy/web', '--replicas=5']), 'deployment.apps/web scaled');
  await waitFor('5 pods', async () => (await podsOf('app=web')).length === 5);
  assert.match(await k(['scale', 'deploy/web', '--replicas=2']), 'deployment.apps/web scaled');
  await waitFor('2 pods', async () => (await podsOf('app=web')).length === 2);
  const deploys = await waitFor('the status to follow', async () => { const out = await k(['get', 'deploy', 'web']); return /web\s+0\/2\s+2\s+0\s+\d+s/.test(out) && out; });
  assert.match(deploys, /^NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE$/m);
  const rsTable = await k(['get', 'rs', '-o', 'wide']);
  assert.match(rsTable, /^NAME\s+DESIRED\s+CURRENT\s+READY\s+AGE\s+CONTAINERS\s+IMAGES\s+SELECTOR$/m);
  assert.match(rsTable, new RegExp(`web-${hash}\\s+2\\s+2\\s+0\\s+\\S+\\s+main\\s+busybox\\s+app=web,pod-template-hash=${hash}`));
  const scale = JSON.parse(await k(['get', '--raw', '/apis/apps/v1/namespaces/default/deployments/web/scale']));
  assert.equal([scale.kind, scale.apiVersion, scale.spec.replicas, scale.status.selector], ['Scale', 'autoscaling/v1', 2, 'app=web']);
  const events = await k(['get', 'events', '--field-selector', 'involvedObject.name=web']);
  assert.match(events, new RegExp(`ScalingReplicaSet\\s+deployment/web\\s+Scaled up replica set web-${hash} from 0 to 3`));
  assert.match(events, new RegExp(`Scaled up replica set web-${hash} from 3 to 5`));
  assert.match(events, new RegExp(`Scaled down replica set web-${hash} from 5 to 2`));
  const rsEvents = await k(['get', 'events', '--field-selector', `involvedObject.name=web-${hash}`]);
  assert.match(rsEvents, /SuccessfulCreate\s+replicaset\/web-\S+\s+Created pod: web-/);
  assert.match(rsEvents, /SuccessfulDelete\s+replicaset\/web-\S+\s+Deleted pod: web-/);
});

api('kubectl apply of a multi-document manifest creates every object; applied twice it is unchanged', async () => {
  const manifest = `${deployment('multi-a', { replicas: 1 })}---\n${deployment('multi-b', { replicas: 1 })}---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: multi-j}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n`;
  const out = await k(['apply', '-f', '-'], manifest);
  assert.match(out, 'deployment.apps/multi-a created\ndeployment.apps/multi-b created\njob.batch/multi-j created');
  await waitFor('the pods', async () => (await podsOf('app in (multi-a,multi-b)')).length === 2);
  const again = await k(['apply', '-f', '-'], manifest);
  assert.match(again, 'deployment.apps/multi-a unchanged\ndeployment.apps/multi-b unchanged\njob.batch/multi-j unchanged');
  assert.match(await k(['delete', '-f', '-'], manifest), 'job.batch "multi-j" deleted');
  await waitFor('everything gone', async () => (await podsOf('app in (multi-a,multi-b)')).length === 0 && (await podsOf('job-name=multi-j')).length === 0);
});

api('invalid Deployments are refused as kube-apiserver refuses them', async () => {
  const bad = async (yaml: string) => { const r = await t.kubectl(['apply', '-f', '-'], yaml); assert.is.not(r.exitCode, 0); return r.stderr; };
  assert.match(await bad(deployment('mismatch', { labels: 'other' })), 'spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: `selector` does not match template `labels`');
  assert.match(await bad(deployment('neg', { replicas: -1 })), 'spec.replicas: Invalid value: -1: must be greater than or equal to 0');
  assert.match(await bad(deployment('re', { strategy: '  strategy: {type: Recreate, rollingUpdate: {maxSurge: 1}}\n' })), "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'");
  assert.match(await bad(deployment('zero', { strategy: '  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}\n' })), 'may not be 0 when `maxSurge` is 0');
  assert.match(await bad(deployment('nosel').replace('  selector: {matchLabels: {app: nosel}}\n', '')), 'spec.selector: Required value');
  const scaleNeg = await t.kubectl(['scale', 'deploy/web', '--replicas=-3']);
  assert.is.not(scaleNeg.exitCode, 0);
  await k(['apply', '-f', '-'], deployment('immut'));
  const sel = await t.kubectl(['patch', 'deploy', 'immut', '--type=merge', '-p', '{"spec":{"selector":{"matchLabels":{"app":"x"}},"template":{"metadata":{"labels":{"app":"x"}}}}}']);
  assert.match(sel.stderr, 'field is immutable');
  await k(['delete', 'deploy', 'immut']);
});

api('kubectl create deployment and create job (protobuf bodies) work', async () => {
  assert.match(await k(['create', 'deployment', 'made', '--image=busybox', '--replicas=2', '--port=8080', '--', 'sleep', '1000']), 'deployment.apps/made created');
  const d = await getJson(['get', 'deploy', 'made']);
  assert.is(d.spec.replicas, 2);
  assert.equal(d.spec.selector, { matchLabels: { app: 'made' } });
  assert.equal(d.spec.template.spec.containers[0].command, ['sleep', '1000']);
  assert.equal(d.spec.template.spec.containers[0].ports, [{ containerPort: 8080, protocol: 'TCP' }]);
  await waitFor('2 pods of made', async () => (await podsOf('app=made')).length === 2);
  assert.match(await k(['create', 'job', 'once', '--image=busybox', '--', 'true']), 'job.batch/once created');
  const job = await getJson(['get', 'job', 'once']);
  assert.is(job.spec.template.spec.restartPolicy, 'Never');
  assert.is(job.spec.selector.matchLabels['batch.kubernetes.io/controller-uid'], job.metadata.uid);
  const pods = await waitFor('the job pod', async () => { const p = await podsOf(`job-name=once`); return p.length === 1 && p; });
  assert.is(pods[0]!.metadata.labels['controller-uid'], job.metadata.uid);
  assert.match(await k(['get', 'jobs']), /^once\s+Running\s+0\/1\s+\d+s\s+\d+s$/m);
  const always = await t.kubectl(['apply', '-f', '-'], 'apiVersion: batch/v1\nkind: Job\nmetadata: {name: bad}\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: busybox}]\n');
  assert.match(always.stderr, 'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"');
  await k(['delete', 'deploy', 'made']);
  await k(['delete', 'job', 'once']);
  await waitFor('the job pod to go (kubectl deletes in the background)', async () => (await podsOf('job-name=once')).length === 0);
});

api('kubectl create poddisruptionbudget (a protobuf body) works', async () => {
  assert.match(await k(['create', 'pdb', 'pb-min', '--selector=app=pb', '--min-available=50%']), 'poddisruptionbudget.policy/pb-min created');
  assert.match(await k(['create', 'pdb', 'pb-max', '--selector=app=pb', '--max-unavailable=1']), 'poddisruptionbudget.policy/pb-max created');
  const min = await getJson(['get', 'pdb', 'pb-min']);
  assert.equal([min.spec.minAvailable, min.spec.maxUnavailable, min.spec.selector], ['50%', undefined, { matchLabels: { app: 'pb' } }]);
  assert.is((await getJson(['get', 'pdb', 'pb-max'])).spec.maxUnavailable, 1);
  await k(['delete', 'pdb', 'pb-min', 'pb-max']);
});

api('rollout: a new template makes a new ReplicaSet; history, undo and restart', async () => {
  await k(['apply', '-f', '-'], deployment('roll', { replicas: 2 }));
  await waitFor('2 pods', async () => (await podsOf('app=roll')).length === 2);
  await k(['set', 'image', 'deploy/roll', 'main=busybox:1.36']);
  // pods never become Ready here, so the rollout stops at maxSurge: one new pod beside the old ones
  const rss = await waitFor('two ReplicaSets', async () => { const l = (await getJson(['get', 'rs', '-l', 'app=roll'])).items as KObj[]; return l.length === 2 && l; });
  const byRev = (l: KObj[], rev: string) => l.find((rs) => rs.metadata.annotations['deployment.kubernetes.io/revision'] === rev)!;
  assert.is(byRev(rss, '2').spec.template.spec.containers[0].image, 'busybox:1.36');
  assert.is(byRev(rss, '2').spec.replicas, 1, 'maxSurge 25% of 2 rounds up to 1');
  assert.is(byRev(rss, '1').spec.replicas, 2, 'maxUnavailable 25% of 2 rounds down to 0: nothing old goes before a new pod is available');
  const status = await t.kubectl(['rollout', 'status', 'deploy/roll', '--timeout=2s']);
  assert.match(status.stdout, 'Waiting for deployment "roll" rollout to finish: 1 out of 2 new replicas have been updated...');
  assert.match(await k(['rollout', 'history', 'deploy/roll']), /REVISION\s+CHANGE-CAUSE\n1\s+<none>\n2\s+<none>/);
  assert.match(await k(['rollout', 'undo', 'deploy/roll']), 'deployment.apps/roll rolled back');
  await waitFor('revision 1 to become revision 3', async () => {
    const d = await getJson(['get', 'deploy', 'roll']);
    return d.spec.template.spec.containers[0].image === 'busybox' && d.metadata.annotations['deployment.kubernetes.io/revision'] === '3';
  });
  const after = (await getJson(['get', 'rs', '-l', 'app=roll'])).items as KObj[];
  assert.is(after.length, 2, 'undo reuses the old ReplicaSet');
  assert.is(byRev(after, '3').metadata.name, byRev(rss, '1').metadata.name);
  // as in kube: with maxUnavailable 0 and nothing available, the surge pod of revision 2 stays until revision 3 is available
  assert.is((await getJson(['get', 'rs', byRev(rss, '2').metadata.name])).spec.replicas, 1);
  assert.match(await k(['rollout', 'restart', 'deploy/roll']), 'deployment.apps/roll restarted');
  const restarted = await getJson(['get', 'deploy', 'roll']);
  assert.ok(restarted.spec.template.metadata.annotations['kubectl.kubernetes.io/restartedAt']);
  await waitFor('a third ReplicaSet', async () => ((await getJson(['get', 'rs', '-l', 'app=roll'])).items as KObj[]).length === 3);
  await k(['delete', 'deploy', 'roll']);
});

api('progressDeadlineSeconds: a rollout that makes no progress is reported as timed out', async () => {
  await k(['apply', '-f', '-'], deployment('stuck', { replicas: 1, extraSpec: '  progressDeadlineSeconds: 2\n' }));
  const d = await waitFor('Progressing=False', async () => {
    const x = await getJson(['get', 'deploy', 'stuck']);
    return (x.status.conditions ?? []).some((c: KObj) => c.type === 'Progressing' && c.status === 'False') && x;
  }, 15_000);
  const prog = d.status.conditions.find((c: KObj) => c.type === 'Progressing');
  assert.is(prog.reason, 'ProgressDeadlineExceeded');
  assert.match(prog.message, /^ReplicaSet "stuck-\w+" has timed out progressing\.$/);
  const status = await t.kubectl(['rollout', 'status', 'deploy/stuck', '--timeout=5s']);
  assert.is.not(status.exitCode, 0);
  assert.match(status.stderr, 'deployment "stuck" exceeded its progress deadline');
  await k(['delete', 'deploy', 'stuck']);
});

api('garbage collection: background removes ReplicaSets and pods, orphan leaves them, foreground waits for them', async () => {
  // background (kubectl's default)
  await k(['apply', '-f', '-'], deployment('bg', { replicas: 2 }));
  await waitFor('2 pods', async () => (await podsOf('app=bg')).length === 2);
  assert.match(await k(['delete', 'deploy', 'bg']), 'deployment.apps "bg" deleted');
  await waitFor('ReplicaSets and pods gone', async () => ((await getJson(['get', 'rs', '-l', 'app=bg'])).items.length === 0 && (await podsOf('app=bg')).length === 0));
  // orphan
  await k(['apply', '-f', '-'], deployment('orph', { replicas: 2 }));
  await waitFor('2 pods', async () => (await podsOf('app=orph')).length === 2);
  await k(['delete', 'deploy', 'orph', '--cascade=orphan']);
  const kept = (await getJson(['get', 'rs', '-l', 'app=orph'])).items as KObj[];
  assert.is(kept.length, 1, 'the ReplicaSet stays');
  assert.is(kept[0]!.metadata.ownerReferences, undefined, 'and no longer names the Deployment');
  assert.is((await podsOf('app=orph')).length, 2, 'its pods stay too');
  await new Promise((r) => setTimeout(r, 1500));
  assert.is((await podsOf('app=orph')).length, 2, 'and keep running under their ReplicaSet');
  // applied again, the Deployment adopts the orphaned ReplicaSet (same template) instead of starting new pods
  const podNames = (await podsOf('app=orph')).map((p) => p.metadata.name).sort();
  await k(['apply', '-f', '-'], deployment('orph', { replicas: 2 }));
  const again = await getJson(['get', 'deploy', 'orph']);
  await waitFor('the ReplicaSet adopted', async () => ((await getJson(['get', 'rs', kept[0]!.metadata.name])).metadata.ownerReferences ?? [])[0]?.uid === again.metadata.uid);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal((await podsOf('app=orph')).map((p) => p.metadata.name).sort(), podNames, 'the same pods, none added');
  assert.is((await getJson(['get', 'rs', '-l', 'app=orph'])).items.length, 1);
  await k(['delete', 'deploy', 'orph']);
  await waitFor('the ReplicaSet and its pods gone', async () => (await podsOf('app=orph')).length === 0 && (await getJson(['get', 'rs', '-l', 'app=orph'])).items.length === 0);
  // foreground: the owner waits, with deletionTimestamp, until its blocking dependents are gone
  await k(['apply', '-f', '-'], deployment('fg', { replicas: 2 }));
  const [held] = await waitFor('2 pods', async () => { const p = await podsOf('app=fg'); return p.length === 2 && p; });
  await k(['patch', 'pod', held!.metadata.name, '--type=merge', '-p', '{"metadata":{"finalizers":["example.com/hold"]}}']);
  await k(['delete', 'deploy', 'fg', '--cascade=foreground', '--wait=false']);
  const waiting = await waitFor('the pod held by its finalizer', async () => {
    const d = await getJson(['get', 'deploy', 'fg']);
    const pod = await getJson(['get', 'pod', held!.metadata.name]);
    return pod.metadata.deletionTimestamp && (await getJson(['get', 'pods', '-l', 'app=fg'])).items.length === 1 && d;
  });
  assert.ok(waiting.metadata.deletionTimestamp);
  assert.equal(waiting.metadata.finalizers, ['foregroundDeletion']);
  await new Promise((r) => setTimeout(r, 1000));
  assert.ok((await t.kubectl(['get', 'deploy', 'fg'])).exitCode === 0, 'the Deployment waits for its ReplicaSet, which waits for the pod');
  await k(['patch', 'pod', held!.metadata.name, '--type=json', '-p', '[{"op":"remove","path":"/metadata/finalizers"}]']);
  await waitFor('the Deployment gone', async () => (await t.kubectl(['get', 'deploy', 'fg'])).exitCode !== 0);
  assert.is((await getJson(['get', 'rs', '-l', 'app=fg'])).items.length, 0);
});

api('finalizers hold any object: deletionTimestamp until the last one is removed', async () => {
  await k(['create', 'secret', 'generic', 'held', '--from-literal=a=b']);
  await k(['patch', 'secret', 'held', '--type=merge', '-p', '{"metadata":{"finalizers":["example.com/a","example.com/b"]}}']);
  await k(['delete', 'secret', 'held', '--wait=false']);
  const s = await getJson(['get', 'secret', 'held']);
  assert.ok(s.metadata.deletionTimestamp);
  await k(['patch', 'secret', 'held', '--type=json', '-p', '[{"op":"remove","path":"/metadata/finalizers/0"}]']);
  assert.is((await t.kubectl(['get', 'secret', 'held'])).exitCode, 0, 'one finalizer left');
  await k(['patch', 'secret', 'held', '--type=json', '-p', '[{"op":"remove","path":"/metadata/finalizers/0"}]']);
  assert.match((await t.kubectl(['get', 'secret', 'held'])).stderr, 'NotFound');
  const bad = await t.api('DELETE', '/api/v1/namespaces/default/secrets/nothing?propagationPolicy=Sideways');
  assert.is(bad.status, 422);
  assert.match(bad.body.message, 'propagationPolicy: Unsupported value: "Sideways"');
});

/** Plays the kubelet for pods no node runs: each new pod of `selector` ends with the phase `outcome` gives it. */
async function finishPods(selector: string, outcome: (pod: KObj) => 'Succeeded' | 'Failed', sample?: (active: KObj[]) => void): Promise<() => Promise<void>> {
  let running = true;
  const loop = (async () => {
    while (running) {
      const pods = (await t.api('GET', `/api/v1/namespaces/default/pods?labelSelector=${encodeURIComponent(selector)}`)).body.items as KObj[];
      const active = pods.filter((p) => !p.metadata.deletionTimestamp && !['Succeeded', 'Failed'].includes(p.status?.phase));
      sample?.(active);
      for (const p of active) {
        await t.api('PATCH', `/api/v1/namespaces/default/pods/${p.metadata.name}/status`, { status: { phase: outcome(p) } }, { contentType: 'application/merge-patch+json' });
      }
      await new Promise((r) => setTimeout(r, 150));
    }
  })();
  return async () => { running = false; await loop; };
}

const INDEX = 'batch.kubernetes.io/job-completion-index';

api('an Indexed Job: a pod per index named <job>-<index>-…, the index in annotation, label, JOB_COMPLETION_INDEX and hostname; a failed index runs again', async () => {
  await k(['apply', '-f', '-'], `apiVersion: v1\nkind: Service\nmetadata: {name: idx}\nspec:\n  clusterIP: None\n  selector: {job-name: idx}\n  ports: [{port: 80}]\n`);
  const manifest = jobYaml('idx', 'echo $JOB_COMPLETION_INDEX', '  completionMode: Indexed\n  completions: 5\n  parallelism: 2\n').replace('      restartPolicy: Never\n', '      restartPolicy: Never\n      subdomain: idx\n');
  assert.match(await k(['apply', '-f', '-'], manifest), 'job.batch/idx created');
  let most = 0;
  const failedOnce = new Set<string>();
  const stop = await finishPods('job-name=idx', (p) => {
    // index 1 fails the first time
    if (p.metadata.annotations[INDEX] === '1' && !failedOnce.has('1')) { failedOnce.add('1'); return 'Failed'; }
    return 'Succeeded';
  }, (active) => { most = Math.max(most, active.length); });
  try {
    const waited = await t.kubectl(['wait', '--for=condition=complete', 'job/idx', '--timeout=30s']);
    assert.is(waited.exitCode, 0, waited.stderr);
  } finally {
    await stop();
  }
  assert.ok(most <= 2, `at most parallelism (2) pods at once, saw ${most}`);
  const job = await getJson(['get', 'job', 'idx']);
  assert.is(job.spec.completionMode, 'Indexed');
  assert.is(job.status.completedIndexes, '0-4');
  assert.is(job.status.succeeded, 5);
  assert.is(job.status.failed, 1);
  assert.match(await k(['get', 'job', 'idx']), /^idx\s+Complete\s+5\/5\s/m);
  const pods = (await getJson(['get', 'pods', '-l', 'job-name=idx'])).items as KObj[];
  assert.is(pods.length, 6, 'five indexes, one of them run twice');
  for (const p of pods) {
    const i = p.metadata.annotations[INDEX];
    assert.match(p.metadata.name, new RegExp(`^idx-${i}-[bcdfghjklmnpqrstvwxz2456789]{5}$`));
    assert.is(p.metadata.labels[INDEX], i);
    assert.is(p.spec.hostname, `idx-${i}`);
    assert.is(p.spec.subdomain, 'idx');
    assert.equal(p.spec.containers[0].env, [{ name: 'JOB_COMPLETION_INDEX', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: `metadata.annotations['${INDEX}']` } } }]);
  }
  assert.equal(pods.filter((p) => p.status.phase === 'Failed').map((p) => p.metadata.annotations[INDEX]), ['1']);
  assert.equal(pods.filter((p) => p.status.phase === 'Succeeded').map((p) => p.metadata.annotations[INDEX]).sort(), ['0', '1', '2', '3', '4']);
  assert.ok(!job.spec.template.spec.containers[0].env, 'the Job\'s own template is left as it was');
  await k(['delete', 'job', 'idx']);
  await k(['delete', 'svc', 'idx']);
});

api('backoffLimitPerIndex gives up one index (failedIndexes) while the others complete; Indexed fields are validated as kube-apiserver', async () => {
  await k(['apply', '-f', '-'], jobYaml('perindex', 'true', '  completionMode: Indexed\n  completions: 4\n  parallelism: 4\n  backoffLimitPerIndex: 1\n'));
  const stop = await finishPods('job-name=perindex', (p) => (p.metadata.annotations[INDEX] === '2' ? 'Failed' : 'Succeeded'));
  try {
    const waited = await t.kubectl(['wait', '--for=condition=failed', 'job/perindex', '--timeout=30s']);
    assert.is(waited.exitCode, 0, waited.stderr);
  } finally {
    await stop();
  }
  const job = await getJson(['get', 'job', 'perindex']);
  assert.is(job.spec.backoffLimit, 2147483647, 'the Job-wide limit is off with a per-index one');
  assert.is(job.status.completedIndexes, '0,1,3');
  assert.is(job.status.failedIndexes, '2');
  assert.is(job.status.failed, 2, 'index 2 ran twice: backoffLimitPerIndex 1');
  assert.is(job.status.conditions.find((c: KObj) => c.type === 'Failed').reason, 'FailedIndexes');
  const twos = ((await getJson(['get', 'pods', '-l', 'job-name=perindex'])).items as KObj[]).filter((p) => p.metadata.annotations[INDEX] === '2');
  assert.equal(twos.map((p) => p.metadata.annotations['batch.kubernetes.io/job-index-failure-count']).sort(), ['0', '1']);
  await k(['delete', 'job', 'perindex']);

  const refused = async (name: string, spec: string) => {
    const r = await t.kubectl(['apply', '-f', '-'], jobYaml(name, 'true', spec));
    assert.is.not(r.exitCode, 0);
    return r.stderr;
  };
  assert.match(await refused('noc', '  completionMode: Indexed\n  parallelism: 2\n'), 'spec.completions: Required value: when completion mode is Indexed');
  assert.match(await refused('nonidx', '  backoffLimitPerIndex: 1\n'), 'spec.backoffLimitPerIndex: Forbidden: requires indexed completion mode');
  assert.match(await refused('maxf', '  completionMode: Indexed\n  completions: 2\n  maxFailedIndexes: 1\n'), 'spec.maxFailedIndexes: Forbidden: cannot set maxFailedIndexes when backoffLimitPerIndex is not set');
  assert.match(await refused('mode', '  completionMode: Sideways\n'), 'spec.completionMode: Unsupported value: "Sideways": supported values: "NonIndexed", "Indexed"');
});

api('cron schedules: fields, ranges, steps, names, macros; day of month or day of week', () => {
  const at = (iso: string) => new Date(iso);
  const s = parseSchedule('*/15 9-17 * * mon-fri');
  assert.ok(matches(s, at('2026-12-04T09:45:00Z'), 'UTC'), 'a Friday, 09:45');
  assert.not.ok(matches(s, at('2026-12-05T09:45:00Z'), 'UTC'), 'a Saturday');
  assert.not.ok(matches(s, at('2026-12-04T09:50:00Z'), 'UTC'));
  assert.ok(matches(parseSchedule('0 0 13 * 5'), at('2026-02-13T00:00:00Z'), 'UTC'), 'the 13th');
  assert.ok(matches(parseSchedule('0 0 13 * 5'), at('2026-12-04T00:00:00Z'), 'UTC'), 'or a Friday');
  assert.ok(matches(parseSchedule('@daily'), at('2026-12-04T00:00:00Z'), 'UTC'));
  assert.ok(matches(parseSchedule('30 8 * * *'), at('2026-12-04T07:30:00Z'), 'Europe/Paris'), 'time zones');
  assert.is(latestScheduled(parseSchedule('0 * * * *'), Date.parse('2026-12-04T09:10:00Z'), Date.parse('2026-12-04T11:59:00Z'), 'UTC'), Date.parse('2026-12-04T11:00:00Z'), 'the latest missed time');
  assert.is(latestScheduled(parseSchedule('0 * * * *'), Date.parse('2026-12-04T11:00:00Z'), Date.parse('2026-12-04T11:59:00Z'), 'UTC'), undefined);
  assert.throws(() => parseSchedule('* * * *'), /expected exactly 5 fields/);
  assert.throws(() => parseSchedule('*/0 * * * *'), /step/);
});

api('a CronJob fires on schedule, makes Jobs named by the minute, honours Forbid; kubectl create job --from=cronjob works', async () => {
  const created = Date.now();
  assert.match(await k(['create', 'cronjob', 'tick', '--image=busybox', '--schedule=* * * * *', '--', 'sleep', '1']), 'cronjob.batch/tick created');
  assert.match(await k(['get', 'cj']), /^NAME\s+SCHEDULE\s+TIMEZONE\s+SUSPEND\s+ACTIVE\s+LAST SCHEDULE\s+AGE\ntick\s+\* \* \* \* \*\s+<none>\s+False\s+0\s+<none>\s+\d+s$/m);
  const bad = await t.kubectl(['create', 'cronjob', 'bad', '--image=busybox', '--schedule=61 * * * *']);
  assert.match(bad.stderr, 'spec.schedule: Invalid value: "61 * * * *"');
  assert.match(await k(['create', 'job', 'by-hand', '--from=cronjob/tick']), 'job.batch/by-hand created');
  const manual = await getJson(['get', 'job', 'by-hand']);
  assert.is(manual.metadata.annotations['cronjob.kubernetes.io/instantiate'], 'manual');
  assert.is(manual.metadata.ownerReferences[0].kind, 'CronJob');
  await k(['delete', 'job', 'by-hand']);
  // Forbid, with a schedule that was due while "the controller was down": the latest missed minute starts one Job
  await k(['apply', '-f', '-'], 'apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: hourly}\nspec:\n  schedule: "*/2 * * * *"\n  concurrencyPolicy: Forbid\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{name: c, image: busybox}]\n');
  const longAgo = (ms: number) => new Date(Date.now() - ms).toISOString().replace(/\.\d+Z$/, 'Z');
  const patchStatus = (status: KObj) => t.api('PATCH', '/apis/batch/v1/namespaces/default/cronjobs/hourly/status', { status }, { contentType: 'application/merge-patch+json' });
  assert.is((await patchStatus({ lastScheduleTime: longAgo(10 * 60_000) })).status, 200);
  const jobs = await waitFor('one Job for the missed time', async () => { const l = (await getJson(['get', 'jobs'])).items.filter((j: KObj) => j.metadata.name.startsWith('hourly-')); return l.length === 1 && l; });
  const minutes = Number(jobs[0].metadata.name.slice('hourly-'.length));
  assert.is(minutes % 2, 0, 'named by its scheduled minute');
  assert.is(jobs[0].metadata.annotations['batch.kubernetes.io/cronjob-scheduled-timestamp'], new Date(minutes * 60_000).toISOString().replace(/\.\d+Z$/, 'Z'));
  assert.is((await getJson(['get', 'cj', 'hourly'])).status.active[0].name, jobs[0].metadata.name);
  assert.is((await patchStatus({ lastScheduleTime: longAgo(10 * 60_000) })).status, 200);
  await waitFor('Forbid to say why nothing started', async () => /JobAlreadyActive\s+cronjob\/hourly\s+Not starting job because prior execution is running and concurrency policy is Forbid/.test(await k(['get', 'events', '--field-selector', 'involvedObject.name=hourly'])));
  assert.is((await getJson(['get', 'jobs'])).items.filter((j: KObj) => j.metadata.name.startsWith('hourly-')).length, 1);
  await k(['delete', 'cj', 'hourly']);
  await waitFor('its Job gone with it', async () => (await getJson(['get', 'jobs'])).items.every((j: KObj) => !j.metadata.name.startsWith('hourly-')));
  // and the real thing: `* * * * *` fires at the next minute
  const next = Math.floor(created / 60_000) * 60_000 + 60_000;
  const fired = await waitFor('the scheduled Job', async () => (await getJson(['get', 'jobs'])).items.find((j: KObj) => j.metadata.name.startsWith('tick-')), Math.max(0, next - Date.now()) + 15_000);
  assert.is(fired.metadata.name, `tick-${next / 60_000}`);
  assert.match(await k(['get', 'events', '--field-selector', 'involvedObject.name=tick']), new RegExp(`SuccessfulCreate\\s+cronjob/tick\\s+Created job tick-${next / 60_000}`));
  await k(['delete', 'cj', 'tick']);
});

/**
 * A stand-in kubelet for readiness (this suite has no real node; the suite below has one), with each node's
 * own certificate: bound pods turn Running and Ready, pods being deleted are confirmed with grace 0.
 */
async function standInKubelet(nodes: string[], readyWhen: (pod: KObj) => boolean = () => true): Promise<() => Promise<void>> {
  const certs = await Promise.all(nodes.map((n) => t.nodeCert(n)));
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const [i, node] of nodes.entries()) {
        const cert = certs[i]!;
        for (const p of (await t.api('GET', `/api/v1/pods?fieldSelector=spec.nodeName%3D${node}`, undefined, { cert })).body.items as KObj[]) {
          const path = `/api/v1/namespaces/${p.metadata.namespace}/pods/${p.metadata.name}`;
          if (p.metadata.deletionTimestamp) await t.api('DELETE', path, { gracePeriodSeconds: 0 }, { cert });
          else if (p.status.phase === 'Pending' && readyWhen(p)) {
            const ts = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
            await t.api('PATCH', `${path}/status`, { status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: ts }] } }, { cert, contentType: 'application/merge-patch+json' });
          }
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return async () => { running = false; await loop; };
}

api('Recreate stops every old pod before a new one starts; pause holds a rollout, resume lets it go; nodes get no rights to workloads', async () => {
  await registerNode(t, 'fake-node');
  const cert = await t.nodeCert('fake-node');
  const stopKubelet = await standInKubelet(['fake-node']);
  try {
    const denied = await t.api('GET', '/apis/apps/v1/namespaces/default/deployments', undefined, { cert });
    assert.is(denied.status, 403);
    assert.match(denied.body.message, 'User "system:node:fake-node" cannot list resource "deployments" in API group "apps"');
    assert.is((await t.api('POST', '/apis/batch/v1/namespaces/default/jobs', { metadata: { name: 'x' } }, { cert })).status, 403);

    await k(['apply', '-f', '-'], deployment('rec', { replicas: 2, strategy: '  strategy: {type: Recreate}\n' }));
    const first = await t.kubectl(['rollout', 'status', 'deploy/rec', '--timeout=30s']);
    assert.is(first.exitCode, 0, first.stderr);
    const oldHash = (await podsOf('app=rec'))[0]!.metadata.labels['pod-template-hash'];
    let overlap = 0, samples = 0, sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const pods = (await t.api('GET', '/api/v1/namespaces/default/pods?labelSelector=app%3Drec')).body.items as KObj[];
        const old = pods.filter((p) => p.metadata.labels['pod-template-hash'] === oldHash).length;
        const fresh = pods.length - old;
        if (old && fresh) overlap++;
        samples++;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await k(['set', 'image', 'deploy/rec', 'main=busybox:1.36']);
    const done = await t.kubectl(['rollout', 'status', 'deploy/rec', '--timeout=30s']);
    sampling = false;
    await sampler;
    assert.is(done.exitCode, 0, done.stderr);
    assert.ok(samples > 5);
    assert.is(overlap, 0, 'old and new pods never existed together');
    assert.ok((await podsOf('app=rec')).every((p) => p.metadata.labels['pod-template-hash'] !== oldHash));

    assert.match(await k(['rollout', 'pause', 'deploy/rec']), 'deployment.apps/rec paused');
    await k(['set', 'image', 'deploy/rec', 'main=busybox:1.37']);
    await new Promise((r) => setTimeout(r, 1500));
    assert.is((await getJson(['get', 'rs', '-l', 'app=rec'])).items.length, 2, 'no new ReplicaSet while paused');
    assert.match(await k(['rollout', 'resume', 'deploy/rec']), 'deployment.apps/rec resumed');
    const resumed = await t.kubectl(['rollout', 'status', 'deploy/rec', '--timeout=30s']);
    assert.is(resumed.exitCode, 0, resumed.stderr);
    assert.is((await getJson(['get', 'rs', '-l', 'app=rec'])).items.length, 3);
    const d = await getJson(['get', 'deploy', 'rec']);
    assert.is(d.status.conditions.find((c: KObj) => c.type === 'Available').status, 'True');
    assert.is(d.status.conditions.find((c: KObj) => c.type === 'Progressing').reason, 'NewReplicaSetAvailable');
    await k(['delete', 'deploy', 'rec']);
    await waitFor('the pods gone', async () => (await podsOf('app=rec')).length === 0);
  } finally {
    await stopKubelet();
  }
});

api('a DaemonSet runs one pod per eligible node and rolls a new template node by node', async () => {
  await registerNode(t, 'fake-node', {}).catch(() => undefined); // registered by the test above
  await registerNode(t, 'fake-ssd', { labels: { disk: 'ssd' } });
  const stopKubelet = await standInKubelet(['fake-node', 'fake-ssd']);
  const ds = (name: string, image: string, nodeSelector = '') => `apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: ${name}}\nspec:\n  selector: {matchLabels: {app: ${name}}}\n  template:\n    metadata: {labels: {app: ${name}}}\n    spec:\n${nodeSelector ? `      nodeSelector: {${nodeSelector}}\n` : ''}      containers: [{name: c, image: ${image}}]\n`;
  try {
    await k(['apply', '-f', '-'], ds('agent', 'busybox'));
    const pods = await waitFor('one pod per node', async () => { const p = await podsOf('app=agent'); return p.length === 2 && p; });
    assert.equal(pods.map((p) => p.spec.nodeName).sort(), ['fake-node', 'fake-ssd']);
    await k(['apply', '-f', '-'], ds('ssd-only', 'busybox', 'disk: ssd'));
    const ssd = await waitFor('a pod on the ssd node only', async () => { const p = await podsOf('app=ssd-only'); return p.length === 1 && p; });
    assert.is(ssd[0]!.spec.nodeName, 'fake-ssd');
    await waitFor('the DaemonSet Ready', async () => /^agent\s+2\s+2\s+2\s+2\s+2\s+<none>\s+\d+s$/m.test(await k(['get', 'ds'])));
    assert.match(await k(['get', 'ds']), /^NAME\s+DESIRED\s+CURRENT\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+NODE SELECTOR\s+AGE\n/);
    assert.match(await k(['get', 'ds', 'ssd-only']), /^ssd-only\s+1\s+1\s+1\s+1\s+1\s+disk=ssd\s+\d+s$/m);
    // a new template: at most maxUnavailable (1) node without an available pod at any moment
    let worst = 0, sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const live = ((await t.api('GET', '/api/v1/namespaces/default/pods?labelSelector=app%3Dagent')).body.items as KObj[]).filter((p) => !p.metadata.deletionTimestamp && p.status.phase === 'Running');
        worst = Math.max(worst, 2 - new Set(live.map((p) => p.spec.nodeName)).size);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await k(['apply', '-f', '-'], ds('agent', 'busybox:1.36'));
    const status = await t.kubectl(['rollout', 'status', 'ds/agent', '--timeout=30s']);
    sampling = false;
    await sampler;
    assert.is(status.exitCode, 0, status.stderr);
    assert.match(status.stdout, 'daemon set "agent" successfully rolled out');
    const rolled = await waitFor('both pods replaced', async () => { const p = await podsOf('app=agent'); return p.length === 2 && p.every((x) => x.spec.containers[0].image === 'busybox:1.36') && p; });
    assert.equal(rolled.map((p) => p.spec.nodeName).sort(), ['fake-node', 'fake-ssd']);
    assert.ok(worst <= 1, `at most one node without a running pod, saw ${worst}`);
    await k(['delete', 'ds', 'agent', 'ssd-only']);
    await waitFor('the pods gone', async () => (await podsOf('app in (agent,ssd-only)')).length === 0);
  } finally {
    await stopKubelet();
  }
});

api('ControllerRevisions: a StatefulSet and a DaemonSet keep one per template; rollout history, undo and revisionHistoryLimit as kube', async () => {
  for (const n of ['fake-node', 'fake-ssd']) await registerNode(t, n).catch(() => undefined); // or by the tests above
  const stopKubelet = await standInKubelet(['fake-node', 'fake-ssd']);
  const sts = (image: string, extra = '') => `apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: hist}\nspec:\n  serviceName: hist\n  replicas: 1\n${extra}  selector: {matchLabels: {app: hist}}\n  template:\n    metadata: {labels: {app: hist}}\n    spec: {containers: [{name: c, image: ${image}}]}\n`;
  const revisionsOf = async (app: string) => ((await getJson(['get', 'controllerrevisions', '-l', `app=${app}`])).items as KObj[]).sort((a, b) => a.revision - b.revision);
  try {
    await k(['apply', '-f', '-'], sts('busybox:1.35'));
    assert.is((await t.kubectl(['rollout', 'status', 'sts/hist', '--timeout=30s'])).exitCode, 0);
    await k(['apply', '-f', '-'], sts('busybox:1.36'));
    assert.is((await t.kubectl(['rollout', 'status', 'sts/hist', '--timeout=30s'])).exitCode, 0);
    const set = await getJson(['get', 'sts', 'hist']);
    const revs = await revisionsOf('hist');
    assert.equal(revs.map((r) => r.revision), [1, 2]);
    for (const r of revs) {
      const hash = r.metadata.labels['controller.kubernetes.io/hash'];
      assert.is(r.metadata.name, `hist-${hash}`);
      assert.equal(r.metadata.ownerReferences, [{ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'hist', uid: set.metadata.uid, controller: true, blockOwnerDeletion: true }]);
      assert.is(r.data.spec.template.$patch, 'replace');
    }
    assert.is(revs[1]!.data.spec.template.spec.containers[0].image, 'busybox:1.36');
    assert.is(set.status.updateRevision, revs[1]!.metadata.name);
    assert.is(set.status.currentRevision, revs[1]!.metadata.name);
    const pod = (await podsOf('app=hist'))[0]!;
    assert.is(pod.metadata.labels['controller-revision-hash'], revs[1]!.metadata.name);
    assert.match(await k(['get', 'controllerrevisions']), new RegExp(`^NAME\\s+CONTROLLER\\s+REVISION\\s+AGE\\n(.*\\n)*${revs[0]!.metadata.name}\\s+statefulset.apps/hist\\s+1\\s+\\d+s`, 'm'));
    assert.match(await k(['rollout', 'history', 'sts/hist']), /REVISION\s+CHANGE-CAUSE\n1\s+<none>\n2\s+<none>/);
    assert.match(await k(['rollout', 'history', 'sts/hist', '--revision=1']), /Image:\s+busybox:1\.35/);
    // undo: the set's template back to revision 1, which becomes revision 3 (no copy), and the pod follows
    assert.match(await k(['rollout', 'undo', 'sts/hist']), 'statefulset.apps/hist rolled back');
    assert.is((await getJson(['get', 'sts', 'hist'])).spec.template.spec.containers[0].image, 'busybox:1.35');
    await waitFor('revision 1 renumbered 3', async () => { const r = await revisionsOf('hist'); return r.length === 2 && r[1]!.metadata.name === revs[0]!.metadata.name && r[1]!.revision === 3; });
    assert.is((await t.kubectl(['rollout', 'status', 'sts/hist', '--timeout=30s'])).exitCode, 0);
    await waitFor('the pod of the old template again', async () => (await podsOf('app=hist')).some((p) => p.spec.containers[0].image === 'busybox:1.35' && p.metadata.labels['controller-revision-hash'] === revs[0]!.metadata.name));
    assert.match(await k(['rollout', 'history', 'sts/hist']), /REVISION\s+CHANGE-CAUSE\n2\s+<none>\n3\s+<none>/);
    assert.match(await k(['rollout', 'undo', 'sts/hist', '--to-revision=3']), 'statefulset.apps/hist skipped rollback (current template already matches revision 3)');
    // revisionHistoryLimit 1: the newest and one more; what is older goes
    await k(['apply', '-f', '-'], sts('busybox:1.37', '  revisionHistoryLimit: 1\n'));
    assert.is((await t.kubectl(['rollout', 'status', 'sts/hist', '--timeout=30s'])).exitCode, 0);
    await waitFor('two revisions left', async () => (await revisionsOf('hist')).map((r) => r.revision).join() === '3,4');
    // --cascade=orphan leaves pods and revisions; the set made again adopts both and replaces no pod
    const before = (await podsOf('app=hist'))[0]!;
    await k(['delete', 'sts', 'hist', '--cascade=orphan']);
    await k(['apply', '-f', '-'], sts('busybox:1.37', '  revisionHistoryLimit: 1\n'));
    const again = await getJson(['get', 'sts', 'hist']);
    await waitFor('the revisions adopted', async () => { const r = await revisionsOf('hist'); return r.length === 2 && r.every((x) => x.metadata.ownerReferences?.[0]?.uid === again.metadata.uid); });
    await waitFor('the status written', async () => (await getJson(['get', 'sts', 'hist'])).status?.updateRevision === before.metadata.labels['controller-revision-hash']);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await podsOf('app=hist')).map((p) => p.metadata.uid), [before.metadata.uid], 'the same pod, adopted, not replaced');

    // a DaemonSet: the hash alone in its pods' label and in the revision's
    const ds = (image: string) => `apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: dhist}\nspec:\n  selector: {matchLabels: {app: dhist}}\n  template:\n    metadata: {labels: {app: dhist}}\n    spec: {containers: [{name: c, image: ${image}}]}\n`;
    await k(['apply', '-f', '-'], ds('busybox:1.35'));
    assert.is((await t.kubectl(['rollout', 'status', 'ds/dhist', '--timeout=30s'])).exitCode, 0);
    await k(['apply', '-f', '-'], ds('busybox:1.36'));
    assert.is((await t.kubectl(['rollout', 'status', 'ds/dhist', '--timeout=30s'])).exitCode, 0);
    const dRevs = await revisionsOf('dhist');
    assert.equal(dRevs.map((r) => r.revision), [1, 2]);
    const dHash = dRevs[1]!.metadata.labels['controller-revision-hash'];
    assert.is(dRevs[1]!.metadata.name, `dhist-${dHash}`);
    await waitFor('both pods of revision 2', async () => { const p = await podsOf('app=dhist'); return p.length === 2 && p.every((x) => x.metadata.labels['controller-revision-hash'] === dHash); });
    assert.match(await k(['rollout', 'history', 'ds/dhist']), /REVISION\s+CHANGE-CAUSE\n1\s+<none>\n2\s+<none>/);
    assert.match(await k(['rollout', 'undo', 'ds/dhist']), 'daemonset.apps/dhist rolled back');
    assert.is((await t.kubectl(['rollout', 'status', 'ds/dhist', '--timeout=30s'])).exitCode, 0);
    await waitFor('both pods of the first template', async () => { const p = await podsOf('app=dhist'); return p.length === 2 && p.every((x) => x.spec.containers[0].image === 'busybox:1.35'); });
    await k(['delete', 'sts', 'hist']);
    await k(['delete', 'ds', 'dhist']);
    await waitFor('the revisions gone with their owners', async () => (await revisionsOf('hist')).length === 0 && (await revisionsOf('dhist')).length === 0);
  } finally {
    await stopKubelet();
  }
});

api('a StatefulSet: stable names in order, each after its predecessor is Ready; scale down from the top; rolling update from the top; Parallel', async () => {
  for (const n of ['fake-node', 'fake-ssd']) await registerNode(t, n).catch(() => undefined); // or by the tests above
  const held = new Set(['db-1']);
  const stopKubelet = await standInKubelet(['fake-node', 'fake-ssd'], (p) => !held.has(p.metadata.name));
  const sts = (name: string, o: { replicas: number; image?: string; extra?: string }) => `apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: ${name}}\nspec:\n  serviceName: ${name}\n  replicas: ${o.replicas}\n${o.extra ?? ''}  selector: {matchLabels: {app: ${name}}}\n  template:\n    metadata: {labels: {app: ${name}}}\n    spec: {containers: [{name: c, image: ${o.image ?? 'busybox'}}]}\n`;
  try {
    await k(['apply', '-f', '-'], sts('db', { replicas: 3 }));
    await waitFor('db-0 and db-1', async () => (await podsOf('app=db')).length === 2);
    await new Promise((r) => setTimeout(r, 1000));
    const first = await podsOf('app=db');
    assert.equal(first.map((p) => p.metadata.name).sort(), ['db-0', 'db-1'], 'db-2 waits for db-1 to be Ready');
    const db0 = first.find((p) => p.metadata.name === 'db-0')!;
    assert.is(db0.spec.hostname, 'db-0');
    assert.is(db0.spec.subdomain, 'db');
    assert.is(db0.metadata.labels['statefulset.kubernetes.io/pod-name'], 'db-0');
    assert.is(db0.metadata.labels['apps.kubernetes.io/pod-index'], '0');
    held.clear();
    const rolled = await t.kubectl(['rollout', 'status', 'sts/db', '--timeout=30s']);
    assert.is(rolled.exitCode, 0, rolled.stderr);
    assert.equal((await podsOf('app=db')).map((p) => p.metadata.name).sort(), ['db-0', 'db-1', 'db-2']);
    assert.match(await k(['get', 'sts']), /^NAME\s+READY\s+AGE\ndb\s+3\/3\s+\d+s$/m);
    // a pod deleted by hand comes back under the same name
    const uid1 = (await podsOf('app=db')).find((p) => p.metadata.name === 'db-1')!.metadata.uid;
    // --wait=false: the stand-in kubelet finishes the deletion within 100 ms and the controller remakes db-1 at once; a
    // kubectl that lists after that sees a db-1 (the new one) and would wait for a deletion that already happened
    await k(['delete', 'pod', 'db-1', '--wait=false']);
    await waitFor('db-1 again', async () => (await podsOf('app=db')).some((p) => p.metadata.name === 'db-1' && p.metadata.uid !== uid1 && p.status.phase === 'Running'));
    // rolling update: highest ordinal first
    const order: string[] = [];
    await k(['apply', '-f', '-'], sts('db', { replicas: 3, image: 'busybox:1.36' }));
    const sampler = (async () => {
      for (let i = 0; i < 600 && order.length < 3; i++) {
        for (const p of await podsOf('app=db')) if (p.spec.containers[0].image === 'busybox:1.36' && !order.includes(p.metadata.name)) order.push(p.metadata.name);
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    const updated = await t.kubectl(['rollout', 'status', 'sts/db', '--timeout=30s']);
    await sampler;
    assert.is(updated.exitCode, 0, updated.stderr);
    // kube-apiserver defaults partition to 0, so kubectl reports a partitioned rollout, as it does against a real cluster
    assert.match(updated.stdout, /partitioned roll out complete: 3 new pods have been updated/);
    assert.equal(order, ['db-2', 'db-1', 'db-0']);
    const status = (await getJson(['get', 'sts', 'db'])).status;
    assert.is(status.currentRevision, status.updateRevision);
    assert.is(status.updatedReplicas, 3);
    // scale down removes the highest ordinals
    await k(['scale', 'sts/db', '--replicas=1']);
    await waitFor('only db-0', async () => { const p = await podsOf('app=db'); return p.length === 1 && p[0]!.metadata.name === 'db-0'; });
    // Parallel: all at once, even while none is Ready
    held.add('par-0').add('par-1').add('par-2');
    await k(['apply', '-f', '-'], sts('par', { replicas: 3, extra: '  podManagementPolicy: Parallel\n' }));
    await waitFor('all three made', async () => (await podsOf('app=par')).length === 3);
    const immutable = await t.kubectl(['patch', 'sts', 'par', '--type=merge', '-p', '{"spec":{"serviceName":"other"}}']);
    assert.is.not(immutable.exitCode, 0);
    assert.match(immutable.stderr, /Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden/);
    // a claim per pod from volumeClaimTemplates, kept when the pod is remade; whenDeleted: Delete takes them with the set
    const claimsSpec = '  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete}\n  volumeClaimTemplates: [{metadata: {name: data}, spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}}]\n';
    await k(['apply', '-f', '-'], sts('claims', { replicas: 2, extra: claimsSpec }));
    const claimed = await waitFor('two pods with claims', async () => { const p = await podsOf('app=claims'); return p.length === 2 && p; });
    for (const p of claimed) {
      const ordinal = p.metadata.name.split('-').pop();
      assert.equal(p.spec.volumes.find((v: KObj) => v.name === 'data').persistentVolumeClaim, { claimName: `data-claims-${ordinal}` });
    }
    const pvcs = await getJson(['get', 'pvc', '-l', 'app=claims']);
    assert.equal(pvcs.items.map((c: KObj) => c.metadata.name).sort(), ['data-claims-0', 'data-claims-1']);
    const pvcUid = pvcs.items[0].metadata.uid;
    const remade = await t.kubectl(['delete', 'pod', 'claims-0', '--wait=false']);
    assert.is(remade.exitCode, 0, remade.stderr);
    await waitFor('claims-0 again with its claim', async () => (await podsOf('app=claims')).some((p) => p.metadata.name === 'claims-0' && p.status.phase === 'Running'));
    assert.is((await getJson(['get', 'pvc', 'data-claims-0'])).metadata.uid, pvcs.items.find((c: KObj) => c.metadata.name === 'data-claims-0').metadata.uid, 'the same claim');
    assert.ok(pvcUid);
    const noName = await t.kubectl(['apply', '-f', '-'], sts('bad-claims', { replicas: 1, extra: '  volumeClaimTemplates: [{metadata: {}, spec: {resources: {requests: {storage: 1Gi}}}}]\n' }));
    assert.is.not(noName.exitCode, 0);
    assert.match(noName.stderr, /spec.volumeClaimTemplates\[0\].metadata.name: Required value/);
    assert.match(noName.stderr, /spec.volumeClaimTemplates\[0\].spec.accessModes: Required value/);
    await k(['delete', 'sts', 'db', 'par', 'claims']);
    await waitFor('the pods gone', async () => (await podsOf('app in (db,par,claims)')).length === 0);
    await waitFor('the claims gone with their set', async () => (await getJson(['get', 'pvc', '-l', 'app=claims'])).items.length === 0);
  } finally {
    await stopKubelet();
  }
});

api('pods are created at kube-controller-manager\'s client pace: a burst of 30, then 20 a second (a 45-replica Parallel StatefulSet)', async () => {
  const sts = { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'paced' }, spec: { replicas: 45, podManagementPolicy: 'Parallel', serviceName: 'paced', selector: { matchLabels: { app: 'paced' } }, template: { metadata: { labels: { app: 'paced' } }, spec: { containers: [{ name: 'c', image: 'busybox' }] } } } };
  const start = performance.now();
  assert.equal((await t.api('POST', '/apis/apps/v1/namespaces/default/statefulsets', sts)).status, 201);
  let count = 0;
  let over: string | undefined;
  while (count < 45 && performance.now() - start < 30_000) {
    const list = await t.api('GET', '/api/v1/namespaces/default/pods?labelSelector=app%3Dpaced');
    const elapsed = performance.now() - start;
    count = list.body.items.length;
    // An upper bound holds whatever the load: a busy machine only creates more slowly.
    if (count > 30 + Math.ceil((20 * elapsed) / 1000) + 1) over ??= `${count} pods after ${Math.round(elapsed)} ms`;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(count, 45, 'every replica was made');
  assert.is(over, undefined, `faster than the pace: ${over}`);
  await k(['delete', 'statefulset', 'paced', '--wait=false']);
});

api.run();

// ---------------------------------------------------------------------------------- real node

const node = suite('workloads on a real node: readiness-driven rollout, a parallel Job');
const getCluster = useCluster(node);

interface Sample { ready: number; total: number }

/**
 * Watch the pods matching a selector straight from the API (every change, not polls), calling
 * `sample` with the live pods after each event. Returns a stop function.
 */
async function watchPods(c: TestCluster, selector: string, sample: (pods: KObj[]) => void): Promise<() => void> {
  const kc = parseYaml(await fs.readFile(c.kubeconfig, 'utf8')) as KObj;
  const server = new URL(kc.clusters[0].cluster.server);
  const ca = Buffer.from(kc.clusters[0].cluster['certificate-authority-data'], 'base64').toString();
  const token = kc.users[0].user.token as string;
  const pods = new Map<string, KObj>();
  const req = https.request({ host: server.hostname, port: server.port, path: `/api/v1/namespaces/default/pods?watch=true&labelSelector=${encodeURIComponent(selector)}`, ca, headers: { Authorization: `Bearer ${token}` } }, (res) => {
    let buf = '';
    res.setEncoding('utf8');
    res.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const ev = JSON.parse(buf.slice(0, nl)) as { type: string; object: KObj };
        buf = buf.slice(nl + 1);
        if (ev.type === 'DELETED') pods.delete(ev.object.metadata.name);
        else if (ev.type === 'ADDED' || ev.type === 'MODIFIED') pods.set(ev.object.metadata.name, ev.object);
        sample([...pods.values()]);
      }
    });
  });
  req.on('error', () => undefined);
  req.end();
  return () => req.destroy();
}

node('a rolling update replaces every pod and never drops below replicas - maxUnavailable Ready', async () => {
  const c: TestCluster = getCluster();
  const strategy = '  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}\n';
  // minReadySeconds slows every step so that the rollout has several moments to watch
  await c.k(['apply', '-f', '-'], deployment('roll', { replicas: 3, strategy, grace: 1, extraSpec: '  minReadySeconds: 2\n' }));
  const first = await c.kubectl(['rollout', 'status', 'deploy/roll', '--timeout=120s']);
  assert.is(first.code, 0, first.stderr);
  assert.match(first.stdout, 'deployment "roll" successfully rolled out');
  const before = JSON.parse(await c.k(['get', 'pods', '-l', 'app=roll', '-o', 'json'])).items.map((p: KObj) => p.metadata.name) as string[];
  assert.is(before.length, 3);
  const samples: Sample[] = [];
  const stopWatch = await watchPods(c, 'app=roll', (pods) => {
    const live = pods.filter((p) => !p.metadata.deletionTimestamp);
    samples.push({ ready: live.filter((p) => (p.status?.conditions ?? []).some((x: KObj) => x.type === 'Ready' && x.status === 'True')).length, total: live.length });
  });
  await eventually('the watch to list the 3 pods', async () => (samples.length >= 3 ? true : undefined));
  const started = Date.now();
  await c.k(['rollout', 'restart', 'deploy/roll']);
  const done = await c.kubectl(['rollout', 'status', 'deploy/roll', '--timeout=150s']);
  stopWatch();
  assert.is(done.code, 0, done.stderr);
  console.log(`    rolling update of 3 pods (minReadySeconds 2): ${((Date.now() - started) / 1000).toFixed(1)} s, ${samples.length} pod events, fewest Ready after the initial list ${Math.min(...samples.slice(3).map((s) => s.ready))}, most pods ${Math.max(...samples.map((s) => s.total))}`);
  assert.ok(samples.length > 12, 'watched the rollout');
  const steady = samples.slice(3); // the first events are the initial list, one pod at a time
  assert.ok(steady.every((s) => s.ready >= 2), `Ready pods dropped below replicas - maxUnavailable = 2: ${JSON.stringify(samples.map((s) => s.ready))}`);
  assert.ok(samples.every((s) => s.total <= 4), `more pods than replicas + maxSurge = 4: ${JSON.stringify(samples.map((s) => s.total))}`);
  const after = await eventually('only new pods, all Ready', async () => {
    const items = (JSON.parse(await c.k(['get', 'pods', '-l', 'app=roll', '-o', 'json'])).items as KObj[]);
    return items.length === 3 && items.every((p) => !before.includes(p.metadata.name)) ? items : undefined;
  }, 60_000);
  assert.is(after.length, 3);
  await c.k(['delete', 'deploy', 'roll']);
  await eventually('the pods gone', async () => (JSON.parse(await c.k(['get', 'pods', '-l', 'app=roll', '-o', 'json'])).items.length === 0 ? true : undefined), 60_000);
});

node('a Job with parallelism 2 and completions 4 runs at most 2 pods at once and completes with 4 succeeded', async () => {
  const c: TestCluster = getCluster();
  let most = 0;
  let events = 0;
  const stopWatch = await watchPods(c, 'job-name=batch', (pods) => {
    events++;
    most = Math.max(most, pods.filter((p) => p.status?.phase === 'Running' || p.status?.phase === 'Pending').length);
  });
  await c.k(['apply', '-f', '-'], jobYaml('batch', 'sleep 2', '  parallelism: 2\n  completions: 4\n'));
  const started = Date.now();
  const waited = await c.kubectl(['wait', '--for=condition=complete', 'job/batch', '--timeout=150s']);
  stopWatch();
  assert.is(waited.code, 0, waited.stderr);
  console.log(`    job 4 × sleep 2, parallelism 2: complete in ${((Date.now() - started) / 1000).toFixed(1)} s, ${events} pod events, most pods at once ${most}`);
  assert.ok(most <= 2 && most >= 1, `at most 2 pods at once, saw ${most}`);
  const job = JSON.parse(await c.k(['get', 'job', 'batch', '-o', 'json']));
  assert.is(job.status.succeeded, 4);
  assert.ok(!job.status.active);
  const pods = JSON.parse(await c.k(['get', 'pods', '-l', 'job-name=batch', '-o', 'json'])).items as KObj[];
  assert.is(pods.filter((p) => p.status.phase === 'Succeeded').length, 4);
  assert.match(await c.k(['get', 'job', 'batch']), /batch\s+Complete\s+4\/4\s/);
  await c.k(['delete', 'job', 'batch']);
});

node('a Job whose pod always fails stops at backoffLimit with condition Failed', async () => {
  const c: TestCluster = getCluster();
  await c.k(['apply', '-f', '-'], jobYaml('doomed', 'exit 3', '  backoffLimit: 1\n'));
  const waited = await c.kubectl(['wait', '--for=condition=failed', 'job/doomed', '--timeout=120s']);
  assert.is(waited.code, 0, waited.stderr);
  const job = JSON.parse(await c.k(['get', 'job', 'doomed', '-o', 'json']));
  assert.is(job.status.failed, 2, 'backoffLimit 1: the second failure ends it');
  assert.is(job.status.conditions.find((x: KObj) => x.type === 'Failed').reason, 'BackoffLimitExceeded');
  await new Promise((r) => setTimeout(r, 1500));
  assert.is(JSON.parse(await c.k(['get', 'pods', '-l', 'job-name=doomed', '-o', 'json'])).items.length, 2, 'no pod after the limit');
  assert.match(await c.k(['get', 'job', 'doomed']), /doomed\s+Failed\s+0\/1\s/);
  assert.match(await c.k(['get', 'events', '--field-selector', 'involvedObject.name=doomed']), /BackoffLimitExceeded\s+job\/doomed\s+Job has reached the specified backoff limit/);
  await c.k(['delete', 'job', 'doomed']);
  await eventually('the pods gone', async () => (JSON.parse(await c.k(['get', 'pods', '-l', 'job-name=doomed', '-o', 'json'])).items.length === 0 ? true : undefined), 60_000);
});

node('an Indexed Job on a real node: each container sees its JOB_COMPLETION_INDEX and the hostname <job>-<index>; with a headless Service the indexes find each other by name', async () => {
  const c: TestCluster = getCluster();
  await c.k(['apply', '-f', '-'], 'apiVersion: v1\nkind: Service\nmetadata: {name: ix}\nspec:\n  clusterIP: None\n  selector: {job-name: ix}\n  ports: [{port: 80}]\n');
  // each index looks the other up as ix-<other>.ix (its stable DNS name), then stays a little so the other can find it too
  const script = 'other=$((1 - JOB_COMPLETION_INDEX)); n=0; until nslookup ix-$other.ix.default.svc.cluster.local >/dev/null 2>&1; do n=$((n+1)); [ $n -lt 60 ] || exit 1; sleep 0.5; done; echo index=$JOB_COMPLETION_INDEX host=$(hostname) found=ix-$other; sleep 3; [ "$(hostname)" = "ix-$JOB_COMPLETION_INDEX" ]';
  await c.k(['apply', '-f', '-'], jobYaml('ix', script, '  completionMode: Indexed\n  completions: 2\n  parallelism: 2\n  backoffLimit: 0\n').replace('      restartPolicy: Never\n', '      restartPolicy: Never\n      subdomain: ix\n'));
  const waited = await c.kubectl(['wait', '--for=condition=complete', 'job/ix', '--timeout=120s']);
  assert.is(waited.code, 0, waited.stderr);
  const job = JSON.parse(await c.k(['get', 'job', 'ix', '-o', 'json']));
  assert.is(job.status.completedIndexes, '0,1');
  const pods = JSON.parse(await c.k(['get', 'pods', '-l', 'job-name=ix', '-o', 'json'])).items as KObj[];
  const logs = (await Promise.all(pods.map((p) => c.k(['logs', p.metadata.name])))).map((l) => l.trim()).sort();
  assert.equal(logs, ['index=0 host=ix-0 found=ix-1', 'index=1 host=ix-1 found=ix-0']);
  await c.k(['delete', 'job', 'ix']);
  await c.k(['delete', 'svc', 'ix']);
});

node('kill -9 of the control plane in the middle of a rollout and of a Job: the controllers finish from the stored state', async () => {
  const c: TestCluster = getCluster();
  const strategy = '  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n';
  await c.k(['apply', '-f', '-'], deployment('crash', { replicas: 3, strategy, grace: 1, extraSpec: '  minReadySeconds: 2\n' }));
  const first = await c.kubectl(['rollout', 'status', 'deploy/crash', '--timeout=120s']);
  assert.is(first.code, 0, first.stderr);
  await c.k(['apply', '-f', '-'], jobYaml('crashjob', 'sleep 3', '  parallelism: 2\n  completions: 4\n'));
  await c.k(['rollout', 'restart', 'deploy/crash']);
  // mid-rollout: the new ReplicaSet has a pod, the old one still has some
  await eventually('the rollout under way', async () => {
    const rs = JSON.parse(await c.k(['get', 'rs', '-l', 'app=crash', '-o', 'json'])).items as KObj[];
    return rs.length === 2 && rs.every((x) => x.spec.replicas > 0) ? true : undefined;
  }, 30_000);
  const pid = await c.controlPlanePid();
  process.kill(pid, 'SIGKILL');
  await eventually('the control plane gone', async () => { try { process.kill(pid, 0); return undefined; } catch { return true; } }, 10_000);
  await new Promise((r) => setTimeout(r, 1000));
  await c.restartControlPlane();
  const done = await c.kubectl(['rollout', 'status', 'deploy/crash', '--timeout=120s']);
  assert.is(done.code, 0, done.stderr);
  const rs = JSON.parse(await c.k(['get', 'rs', '-l', 'app=crash', '-o', 'json'])).items as KObj[];
  const newest = rs.find((x) => x.metadata.annotations['deployment.kubernetes.io/revision'] === '2')!;
  const pods = await eventually('3 pods of revision 2 and nothing else', async () => {
    const items = JSON.parse(await c.k(['get', 'pods', '-l', 'app=crash', '-o', 'json'])).items as KObj[];
    return items.length === 3 && items.every((p) => p.metadata.labels['pod-template-hash'] === newest.metadata.labels['pod-template-hash']) ? items : undefined;
  }, 60_000);
  assert.is(pods.length, 3, 'no duplicate pod');
  const waited = await c.kubectl(['wait', '--for=condition=complete', 'job/crashjob', '--timeout=120s']);
  assert.is(waited.code, 0, waited.stderr);
  const job = JSON.parse(await c.k(['get', 'job', 'crashjob', '-o', 'json']));
  assert.is(job.status.succeeded, 4);
  const jobPods = JSON.parse(await c.k(['get', 'pods', '-l', 'job-name=crashjob', '-o', 'json'])).items as KObj[];
  assert.is(jobPods.length, 4, 'no duplicate Job pod');
  assert.ok(jobPods.every((p) => p.status.phase === 'Succeeded'));
  await c.k(['delete', 'deploy', 'crash']);
  await c.k(['delete', 'job', 'crashjob']);
});

node.run();
