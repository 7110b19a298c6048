/**
 * Attacks on the control plane's request handling that must fail (issue 13):
 * patches that walk into Object.prototype, watch floods, unbounded Events.
 * Each runs against a real control plane process-in-test with the real kubectl
 * where kubectl can express the attack.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as https from 'node:https';
import { startTestControlPlane, waitFor, type ClientCert, type TestCP } from './helpers/control-plane.js';
import { durationSeconds } from '../control-plane/main.js';

let t: TestCP;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const admin = () => ({ token: t.cp.adminToken });
const pod = (name: string) => ({
  apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' },
  spec: { containers: [{ name: 'main', image: 'localhost/busybox:latest', command: ['sleep', '1000'] }] },
});

test.before(async () => {
  t = await startTestControlPlane({
    eventTtlSeconds: 3,
    maxEventsPerNamespace: 5,
    watchLimits: { maxPerClient: 3, maxTotal: 5, maxTimeoutSeconds: 2 },
  });
});
test.after(async () => {
  await t?.close();
});

test('a JSON patch into __proto__ is refused with 422 and poisons nothing', async () => {
  for (const name of ['victim', 'mk']) assert.is((await t.api('POST', '/api/v1/namespaces/default/pods', pod(name), admin())).status, 201);
  const r = await t.kubectl(['patch', 'pod', 'mk', '--type=json', '-p', '[{"op":"add","path":"/__proto__/deletionTimestamp","value":"2020-01-01T00:00:00Z"}]']);
  assert.is.not(r.exitCode, 0);
  assert.match(r.stderr, /__proto__.*not allowed/);
  for (const path of ['/metadata/constructor/prototype/x', '/prototype']) {
    const direct = await t.api('PATCH', '/api/v1/namespaces/default/pods/mk', [{ op: 'add', path, value: 1 }], { ...admin(), contentType: 'application/json-patch+json' });
    assert.is(direct.status, 422, direct.text);
  }
  // Merge patches and strategic merge patches: a "__proto__" key in the body (JSON.parse makes it an own key).
  for (const contentType of ['application/merge-patch+json', 'application/strategic-merge-patch+json']) {
    const body = '{"metadata":{"__proto__":{"deletionTimestamp":"2020-01-01T00:00:00Z"}}}';
    const merged = await t.api('PATCH', '/api/v1/namespaces/default/pods/mk', body, { ...admin(), contentType });
    assert.is(merged.status, 422, `${contentType}: ${merged.text}`);
  }
  // The server keeps answering and no pod turned Terminating.
  const list = await t.kubectl(['get', 'pods', '-o', 'json']);
  assert.is(list.exitCode, 0, list.stderr);
  for (const p of JSON.parse(list.stdout).items) assert.is(p.metadata.deletionTimestamp, undefined, p.metadata.name);
  assert.is(({} as Record<string, unknown>).deletionTimestamp, undefined);
  // A JSON patch op on an inherited name ("toString" exists on every object's prototype) is "missing path", not a hit.
  const inherited = await t.api('PATCH', '/api/v1/namespaces/default/pods/mk', [{ op: 'remove', path: '/metadata/toString' }], { ...admin(), contentType: 'application/json-patch+json' });
  assert.is(inherited.status, 422);
  assert.match(inherited.body.message, /missing path/);
});

/** Open a watch and keep it; resolves with the response once headers arrive. */
function openWatch(query: string, who: string | ClientCert): Promise<{ status: number; ended: Promise<number>; close: () => void; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const auth = typeof who === 'string' ? { headers: { Authorization: `Bearer ${who}` } } : { cert: who.cert, key: who.key };
    const req = https.request(new URL(`/api/v1/pods?watch=1&${query}`, t.cp.url), { ca: t.cp.caCertPem, agent: false, ...auth }, (res) => {
      const ended = new Promise<number>((done) => { res.on('end', () => done(Date.now() - started)); res.on('close', () => done(Date.now() - started)); });
      res.resume();
      resolve({ status: res.statusCode ?? 0, ended, close: () => req.destroy(), headers: res.headers });
    });
    req.on('error', reject);
    req.end();
  });
}

test('watches are bounded per client and in total, and timeoutSeconds is capped', async () => {
  const mine = await Promise.all([1, 2, 3].map(() => openWatch('', t.cp.adminToken)));
  for (const w of mine) assert.is(w.status, 200);
  const fourth = await openWatch('', t.cp.adminToken);
  assert.is(fourth.status, 429);
  assert.is(fourth.headers['retry-after'], '1');
  // Another user (a node's certificate) still gets watches, up to the total.
  const node = await t.nodeCert('node-a');
  const other = await Promise.all([1, 2].map(() => openWatch('', node)));
  for (const w of other) assert.is(w.status, 200);
  assert.is((await openWatch('', node)).status, 429);
  for (const w of [...mine, ...other]) w.close();
  await sleep(200);
  // A closed watch frees its slot; an asked-for hour ends at the cap (2 s here).
  const long = await openWatch('timeoutSeconds=3600', t.cp.adminToken);
  assert.is(long.status, 200);
  const lasted = await long.ended;
  assert.ok(lasted >= 1500 && lasted < 5000, `the watch lasted ${lasted} ms`);
  const bad = await t.api('GET', '/api/v1/pods?watch=true&timeoutSeconds=-1', undefined, admin());
  assert.is(bad.status, 400);
});

test('?watch=True (Go ParseBool spelling, as the Python client sends) is a watch', async () => {
  const w = await openWatch('', t.cp.adminToken);
  w.close();
  const r = await new Promise<string>((resolve, reject) => {
    const req = https.request(new URL('/api/v1/pods?watch=True&timeoutSeconds=1', t.cp.url), { ca: t.cp.caCertPem, headers: { Authorization: `Bearer ${t.cp.adminToken}` } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end();
  });
  assert.match(r, /^\{"type":"ADDED"/);
});

test('Events expire after the TTL and are capped per namespace, oldest first', async () => {
  const event = (name: string) => ({
    apiVersion: 'v1', kind: 'Event', metadata: { name, namespace: 'default' },
    involvedObject: { kind: 'Pod', namespace: 'default', name: 'mk' }, reason: 'Test', message: name, type: 'Normal',
  });
  for (let i = 0; i < 8; i++) assert.is((await t.api('POST', '/api/v1/namespaces/default/events', event(`flood-${i}`), admin())).status, 201);
  const names = async () => ((await t.api('GET', '/api/v1/namespaces/default/events', undefined, admin())).body.items as Array<{ metadata: { name: string } }>).map((e) => e.metadata.name).filter((n) => n.startsWith('flood-')).sort();
  await waitFor('the namespace to be trimmed to 5 events', async () => (await names()).length === 5, 5000);
  assert.equal(await names(), ['flood-3', 'flood-4', 'flood-5', 'flood-6', 'flood-7']);
  await waitFor('the events to expire', async () => (await names()).length === 0, 10_000);
  // Another namespace is unaffected by the cap of the first, and the store still takes events.
  assert.is((await t.api('POST', '/api/v1/namespaces/kube-system/events', { ...event('after'), metadata: { name: 'after', namespace: 'kube-system' } }, admin())).status, 201);
});

test('limit flags read Go-style durations and refuse anything else', () => {
  assert.is(durationSeconds('1h', '--event-ttl'), 3600);
  assert.is(durationSeconds('30m', '--event-ttl'), 1800);
  assert.is(durationSeconds('90', '--event-ttl'), 90);
  for (const bad of ['', '0s', 'soon', '-5']) assert.throws(() => durationSeconds(bad, '--event-ttl'), /--event-ttl .*is not a duration/);
});

test.run();
