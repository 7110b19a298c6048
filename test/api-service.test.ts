/**
 * The api-service against a real node sandbox: pods run inside it (under the
 * fly and namespaces stage1s) by the CLI, the api-service runs on the host as
 * its own process and reads the data directory, the sandbox's D-Bus and its
 * journal; a grpc-js client built from api-service/v1alpha.proto asks.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { execInSandbox } from '../sandbox/sandbox.js';
import { withSandbox, type TestSandbox } from './helpers/sandbox.js';
import { apiClient, spawnApiService, type ApiClient, type ApiServiceProcess, type ApiStream } from './helpers/api-client.js';
import { eventually as waitFor } from './helpers/assert.js';

const CLI = path.resolve(new URL('../../bin/stevedore.js', import.meta.url).pathname);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let sb: TestSandbox;
let dataDir: string;
let svc: ApiServiceProcess;
let api: ApiClient;
let allEvents: ApiStream;
let busyboxId = '';
const pods: string[] = [];
const P: Record<string, string> = {};

async function inside(argv: string[]): Promise<string> {
  const r = await execInSandbox(sb.info.name, argv, { stateRoot: sb.stateRoot, stdio: 'pipe' });
  if (r.exitCode !== 0) throw new Error(`${argv.join(' ')} exited ${r.exitCode}: ${r.stderr}`);
  return r.stdout ?? '';
}
const cli = (...args: string[]) => inside([process.execPath, CLI, '--dir', dataDir, ...args]);

interface AppSpec { name: string; sh: string }
async function runPod(name: string, stage1: 'fly' | 'namespaces', apps: AppSpec[], extra: { annotations?: Record<string, string>; restartPolicy?: string } = {}): Promise<string> {
  const manifest = {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace: 'apitest', ...(extra.annotations ? { annotations: extra.annotations } : {}) },
    spec: {
      restartPolicy: extra.restartPolicy ?? 'Never', terminationGracePeriodSeconds: 1,
      containers: apps.map((a) => ({ name: a.name, image: 'localhost/busybox:latest', command: ['/bin/sh', '-c', a.sh] })),
    },
  };
  const file = path.join(dataDir, '..', `${name}.json`);
  fs.writeFileSync(file, JSON.stringify(manifest));
  // Concurrent runs must not trip over each other (reconcile skips pods that move while it looks).
  const uuid = (await cli('pod', 'run', '-f', file, '--stage1', stage1)).trim();
  assert.match(uuid, /^[0-9a-f-]{36}$/);
  pods.push(uuid);
  return uuid;
}

const ids = (r: { pods: Array<{ id: string }> }) => r.pods.map((p) => p.id).sort();
const listIds = async (filters: unknown[]) => ids(await api.call('ListPods', { filters }));
const sorted = (xs: string[]) => [...xs].sort();

test.before(async () => {
  sb = await withSandbox();
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'stevedore-apitest-'));
  dataDir = path.join(base, 'data');
  busyboxId = (await cli('image', 'import-demo')).split(' ')[0]!;
  svc = await spawnApiService(['--dir', dataDir, '--dbus-address', sb.info.busAddress, '--journal-dir', sb.info.journalDir, '--rescan-ms', '500']);
  api = apiClient(svc.address);
  allEvents = api.stream('ListenEvents', { filter: {} });
  await allEvents.ready;
  P.a = await runPod('alpha', 'fly', [{ name: 'web', sh: 'echo web-hello; echo web-second; exec sleep 3600' }, { name: 'once', sh: 'echo once-bye; exit 3' }]);
  P.b = await runPod('beta', 'namespaces', [{ name: 'sleeper', sh: 'exec sleep 3600' }], { annotations: { team: 'storage' } });
  P.c = await runPod('gamma', 'namespaces', [{ name: 'quick', sh: 'echo done; exit 0' }]);
  P.l = await runPod('talker', 'fly', [{ name: 'talk', sh: 'i=0; while true; do echo "line-$i"; i=$((i+1)); sleep 0.2; done' }]);
});

test.after(async () => {
  const step = async (what: string, fn: () => unknown) => {
    try { await fn(); } catch (err) { console.error(`cleanup: ${what} failed:`, err); }
  };
  await step('close the client', () => { allEvents?.call.cancel(); api?.close(); });
  await step('stop the api-service', () => svc?.stop());
  // Some tests remove their pods themselves: "no pod" is the expected answer then.
  for (const uuid of pods) {
    await step(`pod rm ${uuid}`, () => cli('pod', 'rm', '--force', uuid).catch((err) => { if (!/no pod with UUID/.test(String(err))) throw err; }));
  }
  await step('stop the sandbox', () => sb?.stop());
  await step('remove the data dir', () => dataDir && fs.rmSync(path.dirname(dataDir), { recursive: true, force: true }));
});

test('GetInfo and grpc health answer', async () => {
  const info = (await api.call('GetInfo')).info;
  assert.is(info.api_version, '1.0.0-alpha');
  assert.is(info.global_flags.dir, dataDir);
  assert.equal(await api.call('Health.Check', { service: '' }), { status: 'SERVING' });
  assert.equal(await api.call('Health.Check', { service: 'v1alpha.PublicAPI' }), { status: 'SERVING' });
  await api.call('Health.Check', { service: 'nope' }).then(() => assert.unreachable('unknown service'), (e) => assert.is(e.code, grpc.status.NOT_FOUND));
});

test('ListPods: every pod, states from disk and systemd, apps only with detail', async () => {
  const c = await waitFor('gamma to exit', async () => {
    const r = await api.call('ListPods', { filters: [{ ids: [P.c] }] });
    return r.pods[0]?.state === 'POD_STATE_EXITED' && r.pods[0];
  });
  assert.is(c.apps.length, 0, 'no apps without detail');
  assert.is(c.manifest.length, 0, 'no manifest without detail');
  const all = await api.call('ListPods', { detail: true });
  assert.equal(ids(all), sorted([P.a!, P.b!, P.c!, P.l!]));
  const a = all.pods.find((p: any) => p.id === P.a);
  assert.is(a.state, 'POD_STATE_RUNNING');
  assert.equal(a.apps.map((x: any) => x.name).sort(), ['once', 'web']);
  assert.is(a.apps[0].image.id, busyboxId);
  assert.is(JSON.parse(a.manifest.toString()).uuid, P.a);
});

test('ListPods: each filter kind, AND within a filter, OR across filters', async () => {
  const a = (await api.call('InspectPod', { id: P.a })).pod;
  assert.equal(await listIds([{ ids: [P.a] }]), [P.a]);
  assert.equal(await listIds([{ ids: [P.a!.slice(0, 8), P.b] }]), sorted([P.a!, P.b!]), 'ids: any, prefixes allowed');
  assert.equal(await listIds([{ states: ['POD_STATE_RUNNING'] }]), sorted([P.a!, P.b!, P.l!]));
  assert.equal(await listIds([{ states: ['POD_STATE_EXITED', 'POD_STATE_PREPARED'] }]), [P.c]);
  assert.equal(await listIds([{ app_names: ['web', 'once'] }]), [P.a], 'app_names: all');
  assert.equal(await listIds([{ app_names: ['web', 'sleeper'] }]), [], 'app_names: all, not any');
  assert.equal(await listIds([{ image_ids: [busyboxId] }]), sorted([P.a!, P.b!, P.c!, P.l!]));
  assert.equal(await listIds([{ image_ids: [busyboxId, 'sha256:' + '0'.repeat(64)] }]), []);
  assert.equal(await listIds([{ network_names: ['host'] }]), sorted([P.a!, P.l!]), 'fly pods are on the host network');
  assert.equal(await listIds([{ network_names: ['loopback'] }]), [P.b], 'a running namespaces pod has its own loopback');
  assert.equal(await listIds([{ annotations: [{ Key: 'team', value: 'storage' }] }]), [P.b]);
  assert.equal(await listIds([{ annotations: [{ Key: 'team', value: 'storage' }, { Key: 'stevedore.io/pod-name', value: 'alpha' }] }]), [], 'annotations: all');
  assert.equal(await listIds([{ cgroups: [a.cgroup] }]), [P.a]);
  const hex = P.a!.replace(/-/g, '');
  assert.equal(await listIds([{ pod_sub_cgroups: [`${a.cgroup}/stevedore-${hex}-web.service`] }]), [P.a]);
  assert.equal(await listIds([{ pod_sub_cgroups: [`${a.cgroup}x/foo`] }]), [], 'sub cgroup match is on path boundaries');
  assert.equal(await listIds([{ ids: [P.a] }, { annotations: [{ Key: 'team', value: 'storage' }] }, { states: ['POD_STATE_EXITED'] }]), sorted([P.a!, P.b!, P.c!]), 'ORed');
  assert.equal(await listIds([{ ids: [P.a], states: ['POD_STATE_EXITED'] }]), [], 'ANDed');
});

test('InspectPod: apps with state and exit code, cgroup, pid, ns timestamps', async () => {
  const pod = await waitFor('alpha once to exit', async () => {
    const p = (await api.call('InspectPod', { id: P.a!.slice(0, 13) })).pod;
    return p.apps.find((x: any) => x.name === 'once')?.state === 'APP_STATE_EXITED' && p;
  });
  assert.is(pod.id, P.a);
  const web = pod.apps.find((x: any) => x.name === 'web');
  const once = pod.apps.find((x: any) => x.name === 'once');
  assert.is(web.state, 'APP_STATE_RUNNING');
  assert.is(once.state, 'APP_STATE_EXITED');
  assert.is(once.exit_code, 3);
  assert.is(web.image.id, busyboxId);
  assert.is(web.image.name, 'localhost/busybox');
  const hex = P.a!.replace(/-/g, '');
  assert.is(pod.cgroup, `/stevedore.slice/stevedore-${hex}.slice`);
  assert.ok(pod.pid > 0);
  const procCgroup = await inside(['cat', `/proc/${pod.pid}/cgroup`]);
  assert.ok(procCgroup.includes(`${pod.cgroup}/stevedore-${hex}-web.service`), `the app's process lives in the pod cgroup: ${procCgroup}`);
  assert.match(pod.created_at, /^\d{19}$/);
  const created = BigInt(pod.created_at);
  const started = BigInt(pod.started_at);
  assert.ok(started >= created && started - created < 120_000_000_000n, 'started after created (ns)');
  assert.ok(Math.abs(Number(created / 1_000_000n) - Date.now()) < 600_000, 'ns since epoch');
  assert.is(pod.gc_marked_at, '0');
  assert.equal(pod.networks.map((n: any) => n.name), ['host']);
  const exited = (await api.call('InspectPod', { id: P.c })).pod;
  assert.is(exited.state, 'POD_STATE_EXITED');
  assert.is(exited.apps[0].exit_code, 0);
  assert.is(exited.apps[0].state, 'APP_STATE_EXITED');
  assert.equal(exited.networks, [], 'networks only while running');
});

test('ListImages / InspectImage: each filter kind', async () => {
  const list = async (filters: unknown[]) => (await api.call('ListImages', { filters })).images.map((i: any) => i.id);
  const [img] = (await api.call('ListImages', {})).images;
  assert.is(img.id, busyboxId);
  assert.is(img.name, 'localhost/busybox');
  assert.is(img.version, 'latest');
  assert.is(img.manifest.length, 0);
  assert.ok(Number(img.size) > 0);
  const importedS = Number(img.import_timestamp);
  assert.ok(Math.abs(importedS - Date.now() / 1000) < 3600);
  const detail = (await api.call('ListImages', { detail: true })).images[0];
  assert.ok(JSON.parse(detail.manifest.toString()).layers, 'detail carries the image manifest');
  const hex = busyboxId.slice(7);
  const none: string[] = [];
  assert.equal(await list([{ ids: [busyboxId] }]), [busyboxId]);
  assert.equal(await list([{ ids: [busyboxId.slice(0, 20)] }]), none, 'ids are exact');
  assert.equal(await list([{ prefixes: [busyboxId.slice(0, 16)] }]), [busyboxId]);
  assert.equal(await list([{ prefixes: ['sha256:ffff' + hex.slice(4, 10)] }]), hex.startsWith('ffff') ? [busyboxId] : none);
  assert.equal(await list([{ base_names: ['busybox'] }]), [busyboxId]);
  assert.equal(await list([{ base_names: ['busy'] }]), none, 'base_names are exact');
  assert.equal(await list([{ keywords: ['host/busy'] }]), [busyboxId]);
  assert.equal(await list([{ keywords: ['nginx'] }]), none);
  assert.equal(await list([{ full_names: ['localhost/busybox:latest'] }]), [busyboxId]);
  assert.equal(await list([{ full_names: ['localhost/busybox'] }]), [busyboxId]);
  assert.equal(await list([{ full_names: ['docker.io/library/busybox'] }]), none);
  assert.equal(await list([{ imported_after: String(importedS - 10) }]), [busyboxId]);
  assert.equal(await list([{ imported_after: String(importedS) }]), none);
  assert.equal(await list([{ imported_before: String(importedS + 10) }]), [busyboxId]);
  assert.equal(await list([{ imported_before: String(importedS) }]), none);
  const labels = img.labels as Array<{ Key: string; value: string }>;
  if (labels.length) assert.equal(await list([{ labels: [labels[0]] }]), [busyboxId]);
  assert.equal(await list([{ labels: [{ Key: 'no-such-label', value: 'x' }] }]), none);
  assert.equal(await list([{ annotations: [{ Key: 'no-such-annotation', value: 'x' }] }]), none);
  assert.equal(await list([{ keywords: ['nginx'] }, { base_names: ['busybox'] }]), [busyboxId], 'ORed');
  assert.equal(await list([{ keywords: ['nginx'], base_names: ['busybox'] }]), none, 'ANDed');
  const inspected = (await api.call('InspectImage', { id: busyboxId })).image;
  assert.is(inspected.id, busyboxId);
  assert.ok(inspected.manifest.length > 0);
  assert.is((await api.call('InspectImage', { id: `sha256:${hex.slice(0, 12)}` })).image.id, busyboxId, 'unique prefix');
});

test('GetLogs: last N lines, per app, follow', async () => {
  const logs = async (req: Record<string, unknown>) => {
    const s = api.stream('GetLogs', req);
    const st = await s.done;
    assert.is(st.code, grpc.status.OK, (st as grpc.ServiceError).details);
    return s.messages.flatMap((m) => m.lines as string[]);
  };
  await waitFor('talker to log 10 lines', async () => (await logs({ pod_id: P.l })).length >= 10);
  const last5 = await logs({ pod_id: P.l, lines: 5 });
  assert.is(last5.length, 5);
  const re = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) MESSAGE=line-(\d+)$/;
  for (const l of last5) assert.match(l, re);
  const nums = last5.map((l) => Number(re.exec(l)![2]));
  for (let i = 1; i < nums.length; i++) assert.is(nums[i], nums[i - 1]! + 1, 'consecutive, oldest first');
  const alpha = await waitFor('alpha logs', async () => { const l = await logs({ pod_id: P.a }); return l.length >= 3 && l; });
  assert.equal(alpha.map((l) => l.replace(/^\S+ MESSAGE=/, '')).sort(), ['once-bye', 'web-hello', 'web-second']);
  const web = await logs({ pod_id: P.a, app_name: 'web' });
  assert.equal(web.map((l) => l.replace(/^\S+ MESSAGE=/, '')), ['web-hello', 'web-second']);
  const once = await logs({ pod_id: P.a, app_name: 'once', lines: 1 });
  assert.equal(once.map((l) => l.replace(/^\S+ MESSAGE=/, '')), ['once-bye']);
  // follow: lines newer than the last one already seen arrive on the open stream
  const before = Math.max(...nums);
  const follow = api.stream('GetLogs', { pod_id: P.l, lines: 1, follow: true });
  await follow.until((ms) => ms.flatMap((m) => m.lines).some((l: string) => Number(re.exec(l)?.[2]) >= before + 5), 20_000);
  follow.call.cancel();
  const since = Math.floor(Date.now() / 1000) + 3600;
  assert.equal(await logs({ pod_id: P.l, since_time: String(since) }), [], 'since_time in the future: nothing');
});

test('garbage requests get proper status codes, and the service survives them', async () => {
  const code = (p: Promise<unknown>) => p.then(() => 'OK', (e) => e.code);
  const { INVALID_ARGUMENT: INV, NOT_FOUND: NF } = grpc.status;
  assert.is(await code(api.call('InspectPod', { id: '' })), INV);
  assert.is(await code(api.call('InspectPod', { id: '../../../etc/passwd' })), INV);
  assert.is(await code(api.call('InspectPod', { id: 'run/' + P.a })), INV);
  assert.is(await code(api.call('InspectPod', { id: 'x'.repeat(100000) })), INV);
  assert.is(await code(api.call('InspectPod', { id: '00000000-0000-0000-0000-000000000000' })), NF);
  assert.is(await code(api.call('InspectImage', { id: '../records/x' })), INV);
  assert.is(await code(api.call('InspectImage', { id: 'sha256:' + 'a'.repeat(64) })), NF);
  assert.is(await code(api.call('InspectImage', { id: 'sha512:' + 'a'.repeat(128) })), INV);
  assert.is(await code(api.call('ListPods', { filters: [{ ids: Array.from({ length: 1001 }, (_, i) => String(i)) }] })), INV);
  assert.is(await code(api.call('ListPods', { filters: Array.from({ length: 600 }, () => ({ ids: ['a', 'b'] })) })), INV);
  assert.is(await code(api.call('ListPods', { filters: [{ states: [42] }] })), INV);
  assert.is(await code(api.call('ListImages', { filters: [{ keywords: Array.from({ length: 2000 }, () => 'k') }] })), INV);
  const logsCode = async (req: unknown) => ((await api.stream('GetLogs', req).done) as grpc.ServiceError).code;
  assert.is(await logsCode({ pod_id: '' }), INV);
  assert.is(await logsCode({ pod_id: '../x' }), INV);
  assert.is(await logsCode({ pod_id: P.a, app_name: '../../etc' }), INV);
  assert.is(await logsCode({ pod_id: P.a, app_name: 'nope' }), NF);
  assert.is(await logsCode({ pod_id: '11111111-2222-3333-4444-555555555555' }), grpc.status.OK, 'a full UUID of a removed pod reads what the journal still has');
  assert.is(await logsCode({ pod_id: 'abcdef' }), NF);
  const ev = api.stream('ListenEvents', { filter: { types: Array.from({ length: 1200 }, () => 1) } });
  assert.is(((await ev.done) as grpc.ServiceError).code, INV);
  assert.is((await api.call('GetInfo')).info.api_version, '1.0.0-alpha', 'still serving');
});

type Ev = { type: string; id: string; from: string; time: string; data: Array<{ Key: string; value: string }> };
const POD_SEQUENCE = ['EVENT_TYPE_POD_PREPARED', 'EVENT_TYPE_POD_STARTED', 'EVENT_TYPE_APP_STARTED', 'EVENT_TYPE_APP_EXITED', 'EVENT_TYPE_POD_EXITED', 'EVENT_TYPE_POD_GARBAGE_COLLECTED'];

test('ListenEvents: every event of pods started and stopped concurrently, once each, in order per pod', async () => {
  const t0 = Math.floor(Date.now() / 1000);
  const N = 20; // the number: 20 pods started and stopped concurrently
  const uuids = await Promise.all(Array.from({ length: N }, (_, i) =>
    runPod(`ev-${i}`, i % 2 ? 'fly' : 'namespaces', [{ name: 'main', sh: i % 3 === 0 ? 'exit 0' : 'exec sleep 3600' }])));
  await sleep(1000);
  await Promise.all(uuids.map((u) => cli('pod', 'rm', '--force', u)));
  const events = () => allEvents.messages.flatMap((m) => m.events as Ev[]);
  const ofPod = (u: string) => events().filter((e) => e.id === u);
  await allEvents.until(() => uuids.every((u) => ofPod(u).some((e) => e.type === 'EVENT_TYPE_POD_GARBAGE_COLLECTED')), 30_000);
  await sleep(1500); // two rescans: anything duplicated would show now
  for (const [i, u] of uuids.entries()) {
    const seq = ofPod(u).map((e) => e.type);
    assert.equal(seq, POD_SEQUENCE, `pod ${i} ${u}: ${seq.join(' ')}`);
    for (const e of ofPod(u)) {
      assert.is(e.from, e.type.startsWith('EVENT_TYPE_APP') ? 'main' : `ev-${i}`);
      assert.ok(Number(e.time) >= t0 - 1 && Number(e.time) <= Date.now() / 1000 + 1, `${e.type} time ${e.time}`);
    }
    const times = ofPod(u).map((e) => Number(e.time));
    for (let k = 1; k < times.length; k++) assert.ok(times[k]! >= times[k - 1]!, `times in order: ${times.join(',')}`);
    if (i % 3 === 0) assert.ok(ofPod(u).find((e) => e.type === 'EVENT_TYPE_APP_EXITED')!.data.some((d) => d.Key === 'exit_code' && d.value === '0'));
  }
  // the earlier pods' events are there too, in order, with exit codes
  const alphaSeq = ofPod(P.a!).filter((e) => e.type !== 'EVENT_TYPE_APP_STARTED' && e.type !== 'EVENT_TYPE_APP_EXITED').map((e) => e.type);
  assert.equal(alphaSeq, ['EVENT_TYPE_POD_PREPARED', 'EVENT_TYPE_POD_STARTED']);
  const onceExit = ofPod(P.a!).find((e) => e.type === 'EVENT_TYPE_APP_EXITED' && e.from === 'once');
  assert.ok(onceExit?.data.some((d) => d.Key === 'exit_code' && d.value === '3'));
  // since/until and filters: replay from the service's memory, then close at until_time
  const until = Math.floor(Date.now() / 1000) + 2;
  const replay = api.stream('ListenEvents', { filter: { since_time: String(t0), until_time: String(until), ids: [uuids[0]], types: ['EVENT_TYPE_POD_STARTED', 'EVENT_TYPE_POD_EXITED'] } });
  const st = await replay.done;
  assert.is(st.code, grpc.status.OK);
  assert.equal(replay.messages.flatMap((m) => m.events.map((e: Ev) => e.type)), ['EVENT_TYPE_POD_STARTED', 'EVENT_TYPE_POD_EXITED']);
  assert.ok(Date.now() / 1000 >= until, 'closed at until_time');
  const future = api.stream('ListenEvents', { filter: { since_time: String(Math.floor(Date.now() / 1000) + 3600), until_time: String(Math.floor(Date.now() / 1000) + 1) } });
  await future.done;
  assert.equal(future.messages, [], 'a future since_time yields nothing until then');
});

test('kill -9 of the api-service: pods do not notice, a new one sees them', async () => {
  const other = await spawnApiService(['--dir', dataDir, '--dbus-address', sb.info.busAddress, '--journal-dir', sb.info.journalDir]);
  const c2 = apiClient(other.address);
  try {
    assert.is((await c2.call('InspectPod', { id: P.b })).pod.state, 'POD_STATE_RUNNING');
    process.kill(other.pid, 'SIGKILL');
    await other.stop();
    await sleep(300);
    const pod = (await api.call('InspectPod', { id: P.b })).pod;
    assert.is(pod.state, 'POD_STATE_RUNNING');
    assert.is(pod.apps[0].state, 'APP_STATE_RUNNING');
  } finally {
    c2.close();
    await other.stop();
  }
});

test.run();
