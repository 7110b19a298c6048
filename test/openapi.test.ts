/**
 * OpenAPI v3 documents built from @kubernetes/client-node's models: `kubectl explain` with the
 * real kubectl, for kinds of several groups, and the documents' shape (API only, no node).
 * The OpenAPI v2 document converted from them: `kubectl explain --output plaintext-openapiv2`,
 * kubectl's client-side validation (a `kind: List`), gnostic protobuf decoded back to the JSON,
 * content negotiation, ETag/304 (kubectl's HTTP cache), who may read it, the Python client.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs/promises';
import * as https from 'node:https';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { execa } from 'execa';
import { parse as parseYaml } from 'yaml';
import { KUBECTL, startTestControlPlane, type TestCP } from './helpers/control-plane.js';
import { RESOURCES } from '../control-plane/resources.js';
import { openApiV2Type, OPENAPI_V2_PROTOBUF, OPENAPI_V2_PROTOBUF_OLD } from '../control-plane/openapi-v2.js';

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


// ---------------------------------------------------------------- OpenAPI v2

/** A GET with the admin token and the headers given; the raw reply (gunzipped when it came gzipped). */
function rawGet(urlPath: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer; wireLength: number }> {
  return new Promise((resolve, reject) => {
    const req = https.request(new URL(urlPath, t.cp.url), { method, ca: t.cp.caCertPem, agent: false, headers: { Authorization: `Bearer ${t.cp.adminToken}`, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const wire = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res.headers['content-encoding'] === 'gzip' ? gunzipSync(wire) : wire, wireLength: wire.length });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * gnostic's Document message (as protobufjs's toObject gives it) back to Swagger 2.0 JSON: the
 * inverse of the server's mapping, written independently here so that a field the server puts
 * in the wrong place, or leaves out, makes the documents differ.
 */
const snakeToCamel = (k: string) => k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
function fromGnostic(m: KObj): KObj {
  const out: KObj = {};
  for (const [k, v] of Object.entries(m)) {
    if (k === 'vendor_extension') for (const e of v) out[e.name] = parseYaml(e.value.yaml);
    else if (k === '_ref') out.$ref = v;
    else if (k === 'type' && typeof v === 'object') out.type = v.value.length === 1 ? v.value[0] : v.value;
    else if (k === 'items') out.items = fromGnostic(v.schema[0]);
    else if (k === 'additional_properties' && 'boolean' in v) out.additionalProperties = v.boolean;
    else if (k === 'additional_properties' && 'schema' in v) out.additionalProperties = fromGnostic(v.schema);
    else if (k === 'properties' || k === 'definitions') out[k] = Object.fromEntries(v.additional_properties.map((n: KObj) => [n.name, fromGnostic(n.value)]));
    else if (k === 'paths') Object.assign(out, { paths: Object.fromEntries(v.path.map((n: KObj) => [n.name, fromGnostic(n.value)])) });
    else if (k === 'parameters') out.parameters = v.map((p: KObj) => fromGnostic(Object.values<KObj>(p.parameter.non_body_parameter ?? p.parameter)[0]!));
    else if (k === 'responses') out.responses = Object.fromEntries(v.response_code.map((n: KObj) => [n.name, fromGnostic(n.value.response)]));
    else if (k === 'all_of') out.allOf = v.map(fromGnostic);
    else if (k === 'default' || k === 'example') out[k] = parseYaml(v.yaml);
    else if (k === 'enum') out.enum = v.map((a: KObj) => parseYaml(a.yaml));
    else if (v && typeof v === 'object' && !Array.isArray(v)) out[snakeToCamel(k)] = fromGnostic(v);
    else out[snakeToCamel(k)] = v;
  }
  return out;
}

test('OpenAPI v2: kubectl explain --output plaintext-openapiv2 reads fields of every group, as kube-apiserver prints them', async () => {
  const replicas = await t.k(['explain', '--output', 'plaintext-openapiv2', 'deployment.spec.replicas']);
  assert.match(replicas, /KIND:\s+Deployment\nVERSION:\s+apps\/v1/);
  assert.match(replicas, /FIELD:\s+replicas <integer>/);
  assert.match(replicas.replace(/\s+/g, ' '), 'Number of desired pods. This is a pointer to distinguish between explicit zero and not specified. Defaults to 1.');
  const rolling = await t.k(['explain', '--output', 'plaintext-openapiv2', 'deployment.spec.strategy.rollingUpdate']);
  assert.match(rolling, /maxSurge\s+<string>/, 'IntOrString is a string with format int-or-string, as in kube-apiserver\'s v2 document');
  const image = await t.k(['explain', '--output', 'plaintext-openapiv2', 'pods.spec.containers.image']);
  assert.match(image, /KIND:\s+Pod\nVERSION:\s+v1/);
  assert.match(image, /FIELD:\s+image <string>/);
  const spec = await t.k(['explain', '--output', 'plaintext-openapiv2', 'cronjob.spec']);
  assert.match(spec, /jobTemplate\s+<Object> -required-/);
  const recursive = await t.k(['explain', '--output', 'plaintext-openapiv2', 'statefulset.spec', '--recursive']);
  assert.match(recursive, /\n\s+volumeClaimTemplates\s+<\[\]Object>/);
  const hpa = await t.k(['explain', '--output', 'plaintext-openapiv2', 'hpa.spec.maxReplicas']);
  assert.match(hpa, /VERSION:\s+autoscaling\/v2/);
  const unknown = await t.kubectl(['explain', '--output', 'plaintext-openapiv2', 'deployment.spec.nonsense']);
  assert.is.not(unknown.exitCode, 0);
  assert.match(unknown.stderr, /field "nonsense" does not exist/);
});

const deploymentList = (fields: string, image = 'busybox') => `apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: listed, namespace: default}
  spec:
    ${fields}
    selector: {matchLabels: {app: listed}}
    template:
      metadata: {labels: {app: listed}}
      spec: {containers: [{name: main, image: ${image}, ports: [{containerPort: 80}]}]}
`;

test('OpenAPI v2: kubectl validates a kind: List on the client (--validate=strict) against it; apply still patches with its built-in types', async () => {
  // The items of a List are validated by kubectl itself, with the v2 schemas (the server cannot
  // be asked to validate a List): a misspelt field and a wrong type are refused before any request.
  const typo = await t.kubectl(['apply', '--validate=strict', '-f', '-'], deploymentList('replcas: 2'));
  assert.is.not(typo.exitCode, 0);
  assert.match(typo.stderr, 'ValidationError(Deployment.spec): unknown field "replcas" in io.k8s.api.apps.v1.DeploymentSpec');
  const wrongType = await t.kubectl(['apply', '-f', '-'], deploymentList('replicas: "two"'));
  assert.is.not(wrongType.exitCode, 0);
  assert.match(wrongType.stderr, 'invalid type for io.k8s.api.apps.v1.DeploymentSpec.replicas: got "string", expected "integer"');
  assert.is((await t.kubectl(['get', 'deployment', 'listed'])).exitCode, 1, 'nothing was created');
  // --validate=warn leaves it to the server, which warns.
  const warned = await t.kubectl(['apply', '--validate=warn', '--dry-run=server', '-f', '-'], deploymentList('replcas: 2'));
  assert.is(warned.exitCode, 0, warned.stderr);
  assert.match(warned.stderr, 'unknown field "spec.replcas"');
  // The valid List applies (before /openapi/v2 was served, every List failed validation with a 404).
  assert.match(await t.k(['apply', '-f', '-'], deploymentList('replicas: 0')), 'deployment.apps/listed created');
  // A second apply patches. The v2 PATCH operations list no `consumes`, so kubectl computes the
  // strategic merge patch from its built-in types (with the containers' merge key), not from
  // these schemas, which lack the patch strategies.
  const again = await t.kubectl(['apply', '-f', '-', '-v=8'], deploymentList('replicas: 0', 'busybox:1.36'));
  assert.is(again.exitCode, 0, again.stderr);
  assert.match(again.stderr, /Content-Type: application\/strategic-merge-patch\+json/);
  // (kubectl logs the body JSON-quoted)
  assert.match(again.stderr.replaceAll('\\"', '"'), '"$setElementOrder/containers":[{"name":"main"}]');
  assert.is(JSON.parse(await t.k(['get', 'deployment', 'listed', '-o', 'json'])).spec.template.spec.containers[0].image, 'busybox:1.36');
  await t.k(['delete', 'deployment', 'listed']);
});

test('OpenAPI v2: the document is the v3 schemas in Swagger 2.0, and the gnostic protobuf decodes back to the same JSON', async () => {
  const json = await rawGet('/openapi/v2', { Accept: 'application/json' });
  assert.is(json.status, 200);
  assert.is(json.headers['content-type'], 'application/json');
  const doc = JSON.parse(json.body.toString('utf8'));
  assert.is(doc.swagger, '2.0');
  const defs = doc.definitions as Record<string, KObj>;
  // The same schemas as the v3 documents, with v2 references.
  const v3 = (await t.api('GET', (await t.api('GET', '/openapi/v3')).body.paths['apis/apps/v1'].serverRelativeURL)).body.components.schemas;
  assert.is(defs['io.k8s.api.apps.v1.DeploymentSpec']!.properties.replicas.description, v3['io.k8s.api.apps.v1.DeploymentSpec'].properties.replicas.description);
  assert.equal(defs['io.k8s.api.apps.v1.DeploymentSpec']!.properties.selector, { $ref: '#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector' });
  assert.equal(defs['io.k8s.api.apps.v1.Deployment']!['x-kubernetes-group-version-kind'], [{ group: 'apps', kind: 'Deployment', version: 'v1' }]);
  assert.equal(defs['io.k8s.api.apps.v1.RollingUpdateDeployment']!.properties.maxSurge.type, 'string');
  assert.is(defs['io.k8s.api.apps.v1.RollingUpdateDeployment']!.properties.maxSurge.format, 'int-or-string');
  assert.not.match(json.body.toString('utf8'), '#/components/');
  for (const ref of json.body.toString('utf8').matchAll(/#\/definitions\/([\w.-]+)/g)) assert.ok(defs[ref[1]!], `${ref[1]} is defined`);
  const kinds = new Set(Object.values(defs).flatMap((s) => s['x-kubernetes-group-version-kind'] ?? []).map((g: KObj) => `${g.group}/${g.version}/${g.kind}`));
  assert.equal(RESOURCES.filter((r) => !r.virtual).map((r) => `${r.group}/${r.version}/${r.kind}`).filter((k) => !kinds.has(k)), [], 'every served kind');
  // PATCH declares fieldValidation (kubectl's fallback check that the server validates) and no consumes.
  const patch = doc.paths['/apis/apps/v1/namespaces/{namespace}/deployments/{name}'].patch;
  assert.equal(patch['x-kubernetes-group-version-kind'], { group: 'apps', version: 'v1', kind: 'Deployment' });
  assert.equal(patch.parameters.find((p: KObj) => p.name === 'fieldValidation'), { name: 'fieldValidation', in: 'query', type: 'string', uniqueItems: true });
  assert.is(patch.consumes, undefined);

  // The protobuf client-go asks for, under its old name: answered under the current one, same ETag.
  const pb = await rawGet('/openapi/v2', { Accept: OPENAPI_V2_PROTOBUF_OLD });
  assert.is(pb.status, 200);
  assert.is(pb.headers['content-type'], OPENAPI_V2_PROTOBUF);
  assert.is(pb.headers.etag, json.headers.etag);
  assert.match(String(json.headers.etag), /^"[0-9A-F]{128}"$/);
  assert.match(String(pb.headers.vary), 'Accept');
  const Document = openApiV2Type('Document');
  const decoded = Document.toObject(Document.decode(pb.body), { longs: Number, defaults: false, oneofs: false });
  assert.equal(fromGnostic(decoded), doc);
  // No unknown fields: what was decoded encodes to the very bytes served.
  assert.ok(Buffer.from(Document.encode(Document.fromObject(decoded)).finish()).equals(pb.body));
});

test('OpenAPI v2: content negotiation, ETag and 304, gzip, HEAD, as kube-apiserver answers them', async () => {
  const json = await rawGet('/openapi/v2', { Accept: 'application/json' });
  const etag = String(json.headers.etag);
  // No Accept or */*: JSON; the current protobuf name; quality decides; a type wildcard.
  assert.is((await rawGet('/openapi/v2')).headers['content-type'], 'application/json');
  assert.is((await rawGet('/openapi/v2', { Accept: '*/*' })).headers['content-type'], 'application/json');
  assert.is((await rawGet('/openapi/v2', { Accept: OPENAPI_V2_PROTOBUF })).headers['content-type'], OPENAPI_V2_PROTOBUF);
  assert.is((await rawGet('/openapi/v2', { Accept: `application/json;q=0.5, ${OPENAPI_V2_PROTOBUF}` })).headers['content-type'], OPENAPI_V2_PROTOBUF);
  assert.is((await rawGet('/openapi/v2', { Accept: `${OPENAPI_V2_PROTOBUF};q=0.9, application/json` })).headers['content-type'], 'application/json');
  assert.is((await rawGet('/openapi/v2', { Accept: 'text/plain, application/*' })).headers['content-type'], 'application/json');
  const refused = await rawGet('/openapi/v2', { Accept: 'text/html' });
  assert.is(refused.status, 406);
  assert.match(refused.body.toString('utf8'), 'application/com.github.proto-openapi.spec.v2.v1.0+protobuf');
  // Conditional requests: the ETag (also W/ and in a list) gives 304 with no body, another one 200.
  for (const inm of [etag, `W/${etag}`, `"nope", ${etag}`, '*']) {
    const r = await rawGet('/openapi/v2', { Accept: OPENAPI_V2_PROTOBUF, 'If-None-Match': inm });
    assert.is(r.status, 304, inm);
    assert.is(r.body.length, 0);
    assert.is(r.headers.etag, etag);
  }
  assert.is((await rawGet('/openapi/v2', { 'If-None-Match': '"nope"' })).status, 200);
  assert.is((await rawGet('/openapi/v2', { 'If-Modified-Since': String(json.headers['last-modified']) })).status, 304);
  assert.is((await rawGet('/openapi/v2', { 'If-Modified-Since': 'Thu, 01 Jan 2015 00:00:00 GMT' })).status, 200);
  // gzip when asked for (kube-openapi's handler sits behind a gzip handler).
  const gz = await rawGet('/openapi/v2', { Accept: 'application/json', 'Accept-Encoding': 'gzip' });
  assert.is(gz.headers['content-encoding'], 'gzip');
  assert.ok(gz.body.equals(json.body));
  assert.ok(gz.wireLength < json.body.length / 3, `gzip: ${gz.wireLength} of ${json.body.length} bytes`);
  const head = await rawGet('/openapi/v2', { Accept: 'application/json' }, 'HEAD');
  assert.is(head.status, 200);
  assert.is(head.body.length, 0);
  assert.is(Number(head.headers['content-length']), json.body.length);
  // The v3 documents carry an ETag too: their hash, which the root lists.
  const root = (await t.api('GET', '/openapi/v3')).body;
  const url = root.paths['apis/batch/v1'].serverRelativeURL as string;
  const v3 = await rawGet(url, { Accept: 'application/json' });
  assert.is(v3.headers.etag, `"${new URL(url, t.cp.url).searchParams.get('hash')}"`);
  assert.is((await rawGet(url, { 'If-None-Match': String(v3.headers.etag) })).status, 304);
});

test('OpenAPI v2: kubectl revalidates its cached copy with the ETag', async () => {
  // kubectl keeps HTTP responses in ~/.kube/cache/http and revalidates them (no-cache): the second
  // explain gets a 304 and reads the document from its cache.
  const cacheDir = path.join(t.dataDir, 'kubectl-cache');
  const explain = () => t.kubectl(['explain', '--output', 'plaintext-openapiv2', 'job.spec.parallelism', '--cache-dir', cacheDir, '-v=8']);
  const first = await explain();
  assert.is(first.exitCode, 0, first.stderr);
  const second = await explain();
  assert.is(second.exitCode, 0, second.stderr);
  assert.match(second.stdout, /FIELD:\s+parallelism <integer>/);
  const v2Block = (stderr: string) => stderr.split(/\n(?=\S+\s+\d+ round_trippers\.go:\d+\] (?:GET|POST|PUT|PATCH|DELETE) )/).find((b) => /GET \S+\/openapi\/v2/.test(b)) ?? '';
  assert.not.match(v2Block(first.stderr), 'X-From-Cache');
  assert.match(v2Block(second.stderr), /X-From-Cache: 1/);
});

test('OpenAPI v2: read by whoever may read /openapi/v3 (system:discovery), and by the Python client', async () => {
  // A ServiceAccount bound to nothing, a node and the admin may read both; a bad token may not.
  const token = (await t.k(['create', 'token', 'default', '-n', 'default'])).trim();
  const nodeCert = await t.nodeCert('openapi-node');
  for (const who of [{ token }, { cert: nodeCert }, {}]) {
    for (const p of ['/openapi/v2', '/openapi/v3']) assert.is((await t.api('GET', p, undefined, who)).status, 200, `${p} ${Object.keys(who)}`);
  }
  assert.is((await t.api('GET', '/openapi/v2', undefined, { token: 'not-a-token' })).status, 401);
  const cfg = (await fs.readFile(t.kubeconfig, 'utf8')).replace(/token: \S+/, `token: ${token}`);
  const saConfig = path.join(t.dataDir, 'sa.kubeconfig');
  await fs.writeFile(saConfig, cfg, { mode: 0o600 });
  const explained = await execa(KUBECTL, ['explain', '--output', 'plaintext-openapiv2', 'pod.spec.restartPolicy'], { env: { KUBECONFIG: saConfig, HOME: t.dataDir }, reject: false });
  assert.is(explained.exitCode, 0, explained.stderr);
  assert.match(explained.stdout, /FIELD:\s+restartPolicy <string>/);
  // The official Python client has no OpenAPI method of its own; its generic call_api fetches the JSON.
  const script = `
import json, sys
from kubernetes import client, config
config.load_kube_config(sys.argv[1])
r = client.ApiClient().call_api('/openapi/v2', 'GET', header_params={'Accept': 'application/json'}, auth_settings=['BearerToken'], _preload_content=False, _return_http_data_only=True)
doc = json.loads(r.data)
print(doc['swagger'], doc['definitions']['io.k8s.api.batch.v1.Job']['x-kubernetes-group-version-kind'][0]['kind'])
`;
  const py = await execa('/usr/bin/python3', ['-c', script, t.kubeconfig], { reject: false, timeout: 60_000, env: { HOME: t.dataDir } });
  assert.is(py.exitCode, 0, py.stderr);
  assert.is(py.stdout.trim(), '2.0 Job');
});

test.run();
