/**
 * The api-service as an unprivileged user (uid/gid 65534, no groups) on a
 * data directory it may read but not write: it answers, and it cannot
 * change the data directory. No systemd needed: the pods are laid out on
 * disk (test/helpers/api-client.ts makeSyntheticDataDir) and the D-Bus
 * address points nowhere, so state comes from disk alone.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { apiClient, makeSyntheticDataDir, spawnApiService, type ApiClient, type ApiServiceProcess } from './helpers/api-client.js';

const NOBODY = 65534;
let base: string;
let dataDir: string;
let svc: ApiServiceProcess;
let api: ApiClient;
let made: ReturnType<typeof makeSyntheticDataDir>;

const snapshot = (dir: string): string[] => {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const st = fs.lstatSync(p);
      out.push(`${path.relative(dir, p)} ${st.mode} ${st.size} ${st.mtimeMs}`);
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
};

test.before(async () => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'stevedore-apitest-nobody-'));
  fs.chmodSync(base, 0o755);
  dataDir = path.join(base, 'data');
  made = makeSyntheticDataDir(dataDir, { pods: 7, images: 3 });
  // Readable (not writable) by others: how an operator lets an unprivileged api-service in.
  spawnSync('chmod', ['-R', 'go+rX,go-w', dataDir]);
  svc = await spawnApiService(['--dir', dataDir, '--dbus-address', `unix:path=${base}/no-bus`, '--metrics', '127.0.0.1:0'], { asUser: NOBODY });
  api = apiClient(svc.address);
});

test.after(async () => {
  api?.close();
  await svc?.stop();
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

test('it runs as uid/gid 65534 with no supplementary groups', () => {
  // svc.pid is setpriv, which execs node in place: same pid.
  const status = fs.readFileSync(`/proc/${svc.pid}/status`, 'utf8');
  assert.match(status, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
  assert.match(status, /^Gid:\s+65534\s+65534\s+65534\s+65534$/m);
  assert.match(status, /^Groups:\s*$/m);
  assert.match(fs.readFileSync(`/proc/${svc.pid}/cmdline`, 'utf8'), /api-service/);
});

test('it serves pods and images from a readable data dir', async () => {
  const before = snapshot(dataDir);
  const r = await api.call('ListPods', { detail: true });
  assert.equal(r.pods.map((p: any) => p.id).sort(), made.pods.map((p) => p.uuid).sort());
  for (const p of r.pods) assert.is(p.state, 'POD_STATE_EXITED');
  const one = (await api.call('InspectPod', { id: made.pods[2]!.uuid })).pod;
  assert.is(one.apps.length, 2);
  assert.is(one.apps[0].state, 'APP_STATE_EXITED');
  assert.is(one.apps[0].exit_code, 2);
  assert.equal((await api.call('ListImages', {})).images.map((i: any) => i.id).sort(), [...made.imageIds].sort());
  assert.equal((await api.call('ListImages', { filters: [{ labels: [{ Key: 'index', value: '1' }] }] })).images.map((i: any) => i.id), [made.imageIds[1]]);
  assert.equal((await api.call('ListImages', { filters: [{ annotations: [{ Key: 'synthetic', value: 'yes' }] }] })).images.length, 3);
  assert.is((await api.call('Health.Check', { service: '' })).status, 'SERVING');
  assert.equal(snapshot(dataDir), before, 'serving changed nothing in the data dir');
});

test('the same user cannot write into the data dir', () => {
  for (const target of [path.join(dataDir, 'pods', 'run', 'intruder'), path.join(dataDir, 'images', 'records', 'x.json'), path.join(dataDir, 'pods', 'run', made.pods[0]!.uuid, 'started')]) {
    const r = spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', 'sh', '-c', `echo x >> '${target}'`], { encoding: 'utf8' });
    assert.is.not(r.status, 0, `writing ${target} must fail`);
    assert.match(r.stderr, /Permission denied/);
  }
  assert.not.ok(fs.existsSync(path.join(dataDir, 'pods', 'run', 'intruder')));
});

test('an unreadable data dir is PERMISSION_DENIED, not a crash', async () => {
  const locked = path.join(base, 'locked');
  makeSyntheticDataDir(locked, { pods: 1, images: 1 });
  fs.chmodSync(path.join(locked, 'pods', 'run'), 0o700);
  const other = await spawnApiService(['--dir', locked, '--dbus-address', `unix:path=${base}/no-bus`], { asUser: NOBODY });
  const c = apiClient(other.address);
  try {
    await c.call('ListPods', {}).then(() => assert.unreachable('should fail'), (e) => assert.is(e.code, grpc.status.PERMISSION_DENIED));
    assert.is((await c.call('GetInfo')).info.api_version, '1.0.0-alpha', 'still serving');
  } finally {
    c.close();
    await other.stop();
  }
});

test('a unix socket listener works and the socket is removed on stop', async () => {
  const sock = path.join(base, 'api.sock');
  const other = await spawnApiService(['--dir', dataDir, '--socket', sock, '--dbus-address', `unix:path=${base}/no-bus`]);
  const c = apiClient(`unix:${sock}`);
  try {
    assert.is((await c.call('ListPods', {})).pods.length, 7);
  } finally {
    c.close();
    await other.stop();
  }
  assert.not.ok(fs.existsSync(sock));
});

test('--metrics: request counts by code, latency histograms, open streams, memory', async () => {
  const scrape = async () => {
    const res = await fetch(`http://${svc.metricsAddress}/metrics`);
    assert.is(res.status, 200);
    return res.text();
  };
  const count = (text: string, rpc: string, code: string) => Number(new RegExp(`^stevedore_api_requests_total\\{rpc="${rpc}",code="${code}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  const before = await scrape();
  await api.call('ListPods', { detail: true });
  await api.call('ListPods', {});
  await api.call('InspectPod', { id: '../../etc/passwd' }).catch(() => undefined);
  const after = await scrape();
  assert.is(count(after, 'ListPods', 'OK') - count(before, 'ListPods', 'OK'), 2);
  assert.is(count(after, 'InspectPod', 'INVALID_ARGUMENT') - count(before, 'InspectPod', 'INVALID_ARGUMENT'), 1);
  assert.match(after, /^stevedore_api_request_duration_seconds_bucket\{rpc="ListPods",le="\+Inf"\} \d+$/m);
  assert.match(after, /^stevedore_api_request_duration_seconds_count\{rpc="ListPods"\} \d+$/m);
  assert.match(after, /^process_resident_memory_bytes \d+$/m);
  assert.is((await fetch(`http://${svc.metricsAddress}/other`)).status, 404);
});

test.run();
