/**
 * OpenAPI v3 documents built from @kubernetes/client-node's models: `kubectl explain` with the
 * real kubectl, for kinds of several groups, and the documents' shape (API only, no node).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestControlPlane, type TestCP } from './helpers/control-plane.js';
import { RESOURCES } from '../control-plane/resources.js';

type KObj = Record<string, any>;
let t: TestCP;
test.before(async () => { t = await startTestControlPlane(); });
test.after(async () => { await t?.close(); });

test('kubectl explain reads the schemas: a field, its type and description, nested and of other groups', async () => {
  const replicas = await t.k(['explain', 'deployment.spec.replicas']);
  assert.match(replicas, /GROUP:\s+apps\nKIND:\s+Deployment\nVERSION:\s+v1/);
  assert.match(replicas, /FIELD: replicas <integer>/);
  assert.match(replicas.replace(/\s+/g, ' '), 'DESCRIPTION: Number of desired pods. This is a pointer to distinguish between explicit zero and not specified. Defaults to 1.');
  const spec = await t.k(['explain', 'deployment.spec']);
  assert.match(spec, /FIELD: spec <DeploymentSpec>/);
  assert.match(spec, /selector\s+<LabelSelector> -required-/);
  assert.match(spec, /template\s+<PodTemplateSpec> -required-/);
  assert.match(spec, /strategy\s+<DeploymentStrategy>/);
  const containers = await t.k(['explain', 'pods.spec.containers.image']);
  assert.match(containers, /KIND:\s+Pod\nVERSION:\s+v1/);
  assert.match(containers, /FIELD: image <string>/);
  const job = await t.k(['explain', 'job.spec.completionMode']);
  assert.match(job, /GROUP:\s+batch/);
  assert.match(job, /FIELD: completionMode <string>/);
  const ports = await t.k(['explain', 'statefulset.spec.template.spec.containers.ports']);
  assert.match(ports, /FIELD: ports <\[\]ContainerPort>/);
  assert.match(ports, /containerPort\s+<integer> -required-\n\s+Number of port to expose on the pod's IP address\./);
  const hpa = await t.k(['explain', 'hpa.spec.maxReplicas']);
  assert.match(hpa, /GROUP:\s+autoscaling\nKIND:\s+HorizontalPodAutoscaler\nVERSION:\s+v2/);
  const cr = await t.k(['explain', 'controllerrevisions']);
  assert.match(cr, /revision\s+<integer> -required-\n\s+Revision indicates the revision of the state represented by Data\./);
  const recursive = await t.k(['explain', 'cronjob.spec', '--recursive']);
  assert.match(recursive, /jobTemplate\s+<JobTemplateSpec> -required-/);
  assert.match(recursive, /\n\s+backoffLimitPerIndex\s+<integer>/);
  const unknown = await t.kubectl(['explain', 'deployment.spec.nonsense']);
  assert.is.not(unknown.exitCode, 0);
  assert.match(unknown.stderr, /field "nonsense" does not exist/);
});

test('documents: one per served group-version, content-hashed, with only the served kinds and the types they use', async () => {
  const root = (await t.api('GET', '/openapi/v3')).body;
  const apps = root.paths['apis/apps/v1'].serverRelativeURL as string;
  assert.match(apps, /^\/openapi\/v3\/apis\/apps\/v1\?hash=[0-9A-F]{128}$/);
  const doc = (await t.api('GET', apps)).body;
  const schemas = doc.components.schemas as Record<string, KObj>;
  const kinds = Object.values(schemas).flatMap((s) => s['x-kubernetes-group-version-kind'] ?? []).map((g: KObj) => `${g.group}/${g.version}/${g.kind}`).sort();
  assert.equal(kinds.filter((k) => k.startsWith('apps/')), ['apps/v1/ControllerRevision', 'apps/v1/DaemonSet', 'apps/v1/Deployment', 'apps/v1/ReplicaSet', 'apps/v1/StatefulSet']);
  assert.ok(schemas['io.k8s.api.core.v1.PodSpec'], 'the core types the kinds use');
  assert.ok(schemas['io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta']);
  // client-node's models carry no description for fields that refer to another type
  assert.equal(schemas['io.k8s.api.apps.v1.DeploymentSpec']!.properties.selector, { allOf: [{ $ref: '#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector' }] });
  assert.equal(schemas['io.k8s.api.apps.v1.DeploymentSpec']!.required, ['selector', 'template']);
  assert.is(schemas['io.k8s.api.apps.v1.RollingUpdateDeployment']!.properties.maxSurge['x-kubernetes-int-or-string'], true);
  assert.not.ok(Object.keys(schemas).some((n) => n.includes('.networking.') || n.endsWith('.Ingress')), 'no kinds this server does not serve');
  for (const ref of JSON.stringify(doc).matchAll(/#\/components\/schemas\/([\w.-]+)/g)) assert.ok(schemas[ref[1]!], `${ref[1]} is in the document`);
  // the fieldValidation marker that makes kubectl leave validation to the server is still there
  const patch = doc.paths['/apis/apps/v1/namespaces/{namespace}/deployments/{name}'].patch;
  assert.ok(patch.parameters.some((p: KObj) => p.name === 'fieldValidation'));
  assert.is(patch.requestBody, undefined);
  assert.is((await t.api('GET', root.paths['api/v1'].serverRelativeURL)).body.components.schemas['io.k8s.api.core.v1.Pod']['x-kubernetes-group-version-kind'][0].kind, 'Pod');
  // every kind served has its schema in its group-version's document
  const described = new Set<string>();
  for (const { serverRelativeURL } of Object.values<KObj>(root.paths)) {
    for (const s of Object.values<KObj>((await t.api('GET', serverRelativeURL)).body.components.schemas)) {
      for (const g of s['x-kubernetes-group-version-kind'] ?? []) described.add(`${g.group}/${g.version}/${g.kind}`);
    }
  }
  assert.equal(RESOURCES.filter((r) => !r.virtual).map((r) => `${r.group}/${r.version}/${r.kind}`).filter((k) => !described.has(k)), []);
});

test.run();
