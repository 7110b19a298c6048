/**
 * runtime-rkt's PodStatusCache: what a pod's status is computed from, and
 * when it is reused. Pure logic over real files on disk (a synthetic pod
 * directory) and a stand-in for systemd's replies (the unit listing and
 * three properties), which is all readPodStatus asks of D-Bus; the real
 * systemd paths run in runtime-pods, stage1-kvm and cluster-e2e.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { SystemdClient, UnitListEntry } from '../common/systemd.js';
import { PodStatusCache, readPodStatus } from '../runtime-rkt/pod-status.js';
import { FileLock } from '../common/fsutil.js';
import { unitNames } from '../stage1/contract.js';
import { makeSyntheticDataDir } from './helpers/api-client.js';

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'stevedore-status-cache-'));
const made = makeSyntheticDataDir(base, { pods: 1, appsPerPod: 1, images: 1 });
const pod = made.pods[0]!;
const loc = { uuid: pod.uuid, state: 'run' as const, dir: path.join(base, 'pods', 'run', pod.uuid) };
const unit = unitNames.app(pod.uuid, 'app0');
let gets = 0;
let mainPid = 42;
const systemd = {
  async unitPropertyValues(name: string, iface: string, names: string[]) {
    assert.is(name, unit);
    assert.is(iface, 'Service');
    assert.equal(names, ['MainPID', 'NRestarts', 'ExecMainStartTimestamp']);
    gets++;
    return { MainPID: mainPid, NRestarts: 1, ExecMainStartTimestamp: 1_700_000_000_000_000 };
  },
} as unknown as SystemdClient;
const units = (activeState: string, subState: string) => new Map<string, UnitListEntry>([[unit, { name: unit, description: '', loadState: 'loaded', activeState, subState, path: '' }]]);
const cache = new PodStatusCache();
// File times are coarse: the cache trusts a folder only once it has not changed for a second.
const settle = () => new Promise((r) => setTimeout(r, 1100));

test.after(() => fs.rmSync(base, { recursive: true, force: true }));

test('a unit still starting (Type=notify before READY=1) reads as waiting, not running', async () => {
  await settle();
  const s = await readPodStatus(systemd, loc, units('activating', 'start'), cache);
  assert.is(s.state, 'running');
  assert.is(s.apps[0]!.state, 'waiting');
  assert.is(s.apps[0]!.reason, 'ContainerCreating');
  assert.is(gets, 1);
});

test('unchanged files and unit state: the very same status object, no D-Bus call', async () => {
  const a = await readPodStatus(systemd, loc, units('activating', 'start'), cache);
  const b = await readPodStatus(systemd, loc, units('activating', 'start'), cache);
  assert.ok(a === b);
  assert.is(gets, 1);
});

test('a unit state change refetches the live properties and gives a new status', async () => {
  const before = await readPodStatus(systemd, loc, units('activating', 'start'), cache);
  const s = await readPodStatus(systemd, loc, units('active', 'running'), cache);
  assert.ok(s !== before);
  assert.is(s.apps[0]!.state, 'running');
  assert.is(s.apps[0]!.mainPid, 42);
  assert.is(s.apps[0]!.restartCount, 1);
  assert.is(gets, 2);
  assert.ok(await readPodStatus(systemd, loc, units('active', 'running'), cache) === s);
  assert.is(gets, 2);
});

test('a new exit record (a restart) refetches even when the unit state looks the same', async () => {
  const before = await readPodStatus(systemd, loc, units('active', 'running'), cache);
  mainPid = 43;
  const exits = path.join(loc.dir, 'apps', 'app0', 'exits');
  const at = BigInt(Date.now()) * 1_000_000n;
  fs.writeFileSync(path.join(exits, `${at}.json`), JSON.stringify({ at: Number(at), invocation: 'y', result: 'exit-code', code: 'exited', status: '1', oomKills: 0 }));
  const s = await readPodStatus(systemd, loc, units('active', 'running'), cache);
  assert.ok(s !== before);
  assert.is(s.apps[0]!.mainPid, 43);
  assert.is(s.apps[0]!.lastTermination?.exitCode, 1);
  assert.is(gets, 3);
});

test('an active unit of a pod whose launcher is still at work (launching marker, pod locked) reads as ContainerCreating: its process may still wait at the network gate', async () => {
  const marker = path.join(loc.dir, 'launching');
  fs.writeFileSync(marker, '');
  const lock = FileLock.tryAcquire(loc.dir)!;
  try {
    const s = await readPodStatus(systemd, loc, units('active', 'running'), cache);
    assert.is(s.apps[0]!.state, 'waiting');
    assert.is(s.apps[0]!.reason, 'ContainerCreating');
  } finally {
    lock.release();
  }
  // The launcher is gone (the lock is free): the unit's state counts again, marker or not.
  assert.is((await readPodStatus(systemd, loc, units('active', 'running'), cache)).apps[0]!.state, 'running');
  fs.rmSync(marker);
});

test('without systemd: status from disk alone, and retain() forgets pods that moved', async () => {
  const s = await readPodStatus(undefined, loc, undefined, cache);
  assert.is(s.apps[0]!.state, 'exited');
  cache.retain([]);
  const again = await readPodStatus(undefined, loc, undefined, cache);
  assert.ok(again !== s, 'forgotten: computed anew');
  assert.equal(again, s);
});

test.run();
