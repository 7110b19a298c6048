/**
 * The control plane as clients we did not write use it (issue 22): list
 * pagination with consistent snapshots, resourceVersion semantics, and the
 * official Python client (Debian's python3-kubernetes) listing and watching.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import * as https from 'node:https';
import { startTestControlPlane, type TestCP } from './helpers/control-plane.js';

let t: TestCP;
const admin = () => ({ token: t.cp.adminToken });
const pod = (name: string) => ({
  apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default', labels: { app: 'pager' } },
  spec: { containers: [{ name: 'main', image: 'localhost/busybox:latest', command: ['sleep', '1000'] }] },
});
const names = (body: { items: Array<{ metadata: { name: string } }> }) => body.items.map((p) => p.metadata.name);

test.before(async () => {
  t = await startTestControlPlane();
  for (let i = 1; i <= 5; i++) assert.is((await t.api('POST', '/api/v1/namespaces/default/pods', pod(`p${i}`), admin())).status, 201);
});
test.after(async () => {
  await t?.close();
});

test('limit/continue pages one consistent snapshot, whatever changes between pages', async () => {
  const first = await t.api('GET', '/api/v1/namespaces/default/pods?limit=2', undefined, admin());
  assert.is(first.status, 200, first.text);
  assert.equal(names(first.body), ['p1', 'p2']);
  assert.is(first.body.metadata.remainingItemCount, 3);
  const token = first.body.metadata.continue as string;
  assert.ok(token);
  // Between pages: one pod deleted, one added, one changed.
  assert.is((await t.api('DELETE', '/api/v1/namespaces/default/pods/p4?gracePeriodSeconds=0', undefined, admin())).status, 200);
  assert.is((await t.api('POST', '/api/v1/namespaces/default/pods', pod('p0'), admin())).status, 201);
  assert.is((await t.api('PATCH', '/api/v1/namespaces/default/pods/p3', { metadata: { labels: { changed: 'yes' } } }, { ...admin(), contentType: 'application/merge-patch+json' })).status, 200);
  const second = await t.api('GET', `/api/v1/namespaces/default/pods?limit=2&continue=${token}`, undefined, admin());
  assert.equal(names(second.body), ['p3', 'p4']);
  assert.is(second.body.items[0].metadata.labels.changed, undefined, 'p3 as it was at the first page');
  assert.is(second.body.metadata.resourceVersion, first.body.metadata.resourceVersion);
  const third = await t.api('GET', `/api/v1/namespaces/default/pods?limit=2&continue=${second.body.metadata.continue}`, undefined, admin());
  assert.equal(names(third.body), ['p5']);
  assert.is(third.body.metadata.continue, undefined);
  // The live list has the changes.
  assert.equal(names((await t.api('GET', '/api/v1/namespaces/default/pods', undefined, admin())).body), ['p0', 'p1', 'p2', 'p3', 'p5']);
  // kubectl pages with --chunk-size and sees everything.
  const chunked = await t.kubectl(['get', 'pods', '--chunk-size=2', '-o', 'name']);
  assert.is(chunked.exitCode, 0, chunked.stderr);
  assert.is(chunked.stdout.trim().split('\n').length, 5);
});

test('a bad continue token is 400, an expired one 410 Expired; resourceVersionMatch=Exact lists the past', async () => {
  const before = await t.api('GET', '/api/v1/namespaces/default/pods?limit=1', undefined, admin());
  const rv = Number(before.body.metadata.resourceVersion);
  assert.is((await t.api('POST', '/api/v1/namespaces/default/pods', pod('p9'), admin())).status, 201);
  const exact = await t.api('GET', `/api/v1/namespaces/default/pods?resourceVersion=${rv}&resourceVersionMatch=Exact`, undefined, admin());
  assert.is(exact.status, 200, exact.text);
  assert.not.ok(names(exact.body).includes('p9'));
  assert.is((await t.api('GET', '/api/v1/namespaces/default/pods?limit=1&continue=garbage', undefined, admin())).status, 400);
  assert.is((await t.api('GET', '/api/v1/namespaces/default/pods?resourceVersionMatch=Sometimes&resourceVersion=1', undefined, admin())).status, 400);
  t.cp.store.compact(t.cp.store.currentRv);
  const expired = await t.api('GET', `/api/v1/namespaces/default/pods?limit=1&continue=${before.body.metadata.continue}`, undefined, admin());
  assert.is(expired.status, 410, expired.text);
  assert.is(expired.body.reason, 'Expired');
});

test('the official Python client lists and watches (watch=True is a watch)', async () => {
  const script = `
import sys, threading
from kubernetes import client, config, watch
config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
print("list", len(v1.list_namespaced_pod("default").items))
w = watch.Watch()
seen = []
for ev in w.stream(v1.list_namespaced_pod, "default", timeout_seconds=3):
    seen.append(ev["type"] + ":" + ev["object"].metadata.name)
    if len(seen) >= 3:
        w.stop()
print("watch", " ".join(seen))
`;
  const r = await execa('/usr/bin/python3', ['-c', script, t.kubeconfig], { reject: false, timeout: 60_000, env: { HOME: t.dataDir } });
  assert.is(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /^list \d+$/m);
  assert.match(r.stdout, /^watch ADDED:p\d ADDED:p\d ADDED:p\d$/m);
});

function watchLines(query: string): Promise<{ status: number; lines: any[] }> {
  return new Promise((resolve, reject) => {
    const req = https.request(new URL(`/api/v1/namespaces/default/pods?watch=true&${query}`, t.cp.url), { ca: t.cp.caCertPem, headers: { Authorization: `Bearer ${t.cp.adminToken}` } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, lines: text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('sendInitialEvents streams the list, then the initial-events-end bookmark', async () => {
  const w = await watchLines('sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1');
  assert.is(w.status, 200);
  const bookmark = w.lines.findIndex((l) => l.type === 'BOOKMARK');
  assert.ok(bookmark > 0, 'a bookmark after the ADDED events');
  assert.ok(w.lines.slice(0, bookmark).every((l) => l.type === 'ADDED'));
  assert.is(w.lines[bookmark].object.metadata.annotations['k8s.io/initial-events-end'], 'true');
  const bad = await watchLines('sendInitialEvents=true&timeoutSeconds=1');
  assert.is(bad.status, 422);
  assert.match(bad.lines[0].message, /resourceVersionMatch/);
});

test.run();
