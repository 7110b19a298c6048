import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { unitNames } from '../stage1/contract.js';
import { buildHostileImage, type HostileKind } from './helpers/images.js';
import { eventually, podStatus, useNode, type PodJson, type TestNode } from './helpers/node.js';

const crash = suite('runtime: a killed CLI and bad input leave a consistent node');
const getNode = useNode(crash);

// With volumes that are mounts of the pod (a tmpfs, a subPath bind): an interrupted run must undo them too.
const POD = `
metadata: {name: crashy}
spec:
  volumes:
  - {name: mem, emptyDir: {medium: Memory, sizeLimit: 4Mi}}
  - {name: disk, emptyDir: {}}
  containers:
  - name: one
    image: busybox
    command: [sh, -c, 'echo up; sleep 600']
    volumeMounts: [{name: mem, mountPath: /mem}, {name: disk, mountPath: /sub, subPath: a/b}]
  - name: two
    image: busybox
    command: [sh, -c, 'sleep 600']
`;

/** Every pod is fully running or fully gone: no half-made dirs, no stray units, no stray mounts. */
async function assertConsistent(node: TestNode): Promise<PodJson[]> {
  const pods = JSON.parse(await node.ok(['pod', 'list', '-o', 'json'])) as PodJson[];
  for (const p of pods) {
    assert.ok(['running', 'exited'].includes(p.state), `pod ${p.uuid} is ${p.state}`);
    if (p.state === 'running') assert.ok(p.apps.every((a) => a.state === 'running'), `all apps of ${p.uuid} run: ${JSON.stringify(p.apps)}`);
  }
  const known = new Set(pods.map((p) => p.uuid));
  for (const unit of await node.units()) {
    const owner = unitNames.parse(unit)?.uuid;
    assert.ok(owner && known.has(owner), `unit ${unit} belongs to no pod`);
  }
  for (const m of await node.mounts()) {
    assert.ok([...known].some((u) => m.includes(`/pods/run/${u}/`)), `mount ${m} belongs to no running pod`);
  }
  for (const state of ['embryo', 'prepare', 'prepared', 'exited-garbage', 'garbage']) {
    assert.equal(await fs.readdir(path.join(node.dataDir, 'pods', state)), [], `pods/${state} is empty`);
  }
  return pods;
}

async function removeAll(node: TestNode): Promise<void> {
  const pods = JSON.parse(await node.ok(['pod', 'list', '-o', 'json'])) as PodJson[];
  if (pods.length) await node.ok(['pod', 'rm', '--force', ...pods.map((p) => p.uuid)]);
}

const CRASH_POINTS = ['run:embryo', 'run:prepared-dir', 'run:stage1-prepared', 'run:launching', 'run:moved-to-prepared', 'run:moved-to-run', 'run:slice-started', 'run:launched'];

for (const stage1 of ['namespaces', 'fly']) {
  crash(`${stage1}: pod run killed at each step: the next command finds no trace of it`, async () => {
    const node = getNode();
    const file = await node.manifest('crashy.yaml', POD);
    for (const point of CRASH_POINTS) {
      const r = await node.cli(['pod', 'run', '-f', file, '--stage1', stage1], { STEVEDORE_CRASH_AT: point });
      assert.is(r.exitCode, 137, `killed at ${point}: ${r.stderr}`);
      const pods = await assertConsistent(node);
      assert.is(pods.length, 0, `an interrupted launch (${point}) is undone, not half-kept`);
    }
    const ok = (await node.ok(['pod', 'run', '-f', file, '--stage1', stage1])).trim();
    assert.is((await podStatus(node, ok)).state, 'running', 'the node still runs pods afterwards');
    await removeAll(node);
  });
}

crash('pod run killed at random instants: always all-or-nothing', async () => {
  const node = getNode();
  const file = await node.manifest('crashy.yaml', POD);
  const cli = `${process.execPath} ${path.resolve('bin/stevedore.js')} --dir ${node.dataDir}`;
  for (const delayMs of [40, 120, 250, 400, 550, 700, 900, 1200]) {
    const r = await node.sh(`${cli} pod run -f ${file} >/dev/null 2>&1 & pid=$!; sleep ${delayMs / 1000}; kill -9 $pid 2>/dev/null; wait $pid; exit 0`);
    assert.is(r.exitCode, 0);
    await assertConsistent(node);
  }
  await removeAll(node);
  await assertConsistent(node);
});

crash('pod rm killed after marking the pod: the next command finishes the removal', async () => {
  const node = getNode();
  const uuid = (await node.ok(['pod', 'run', '-f', await node.manifest('crashy.yaml', POD)])).trim();
  const r = await node.cli(['pod', 'rm', '--force', uuid], { STEVEDORE_CRASH_AT: 'rm:marked' });
  assert.is(r.exitCode, 137);
  assert.equal(await assertConsistent(node), []);
});

crash('gc stops units whose pod directory is gone', async () => {
  const node = getNode();
  const uuid = (await node.ok(['pod', 'run', '-f', await node.manifest('crashy.yaml', POD)])).trim();
  // Simulate a pod directory lost behind the runtime's back (disk wiped, manual rm).
  const dir = path.join(node.dataDir, 'pods', 'run', uuid);
  await node.sh(`umount ${dir}/apps/*/rootfs ${dir}/stage1/ns/* ${dir}/volume-subpaths/*/* ${dir}/volumes/mem; rm -rf ${dir}`);
  const out = await node.ok(['gc']);
  assert.match(out, /stopped orphaned unit stevedore-/);
  assert.equal(await node.units(), []);
});

/** What a failing command must not change. */
async function snapshot(node: TestNode): Promise<string> {
  const dirs = await Promise.all(['embryo', 'prepare', 'prepared', 'run', 'exited-garbage', 'garbage'].map((s) => fs.readdir(path.join(node.dataDir, 'pods', s))));
  return JSON.stringify({ dirs, units: await node.units(), mounts: await node.mounts(), images: await node.ok(['image', 'list', '-o', 'json']) });
}

crash('bad manifests and unknown images: a clear error and nothing changes', async () => {
  const node = getNode();
  const before = await snapshot(node);
  const cases: Array<[string, string, number, RegExp]> = [
    ['invalid YAML', 'metadata: {name: x\nspec: [', 2, /not valid YAML/],
    ['unknown field', 'metadata: {name: x}\nspec:\n  containers:\n  - {name: a, image: busybox, comand: [sh]}', 2, /spec\.containers\[0\]\.comand: unknown field/],
    ['no containers', 'metadata: {name: x}\nspec: {containers: []}', 2, /spec\.containers: Required value/],
    ['bad name', 'metadata: {name: Not_Valid}\nspec:\n  containers:\n  - {name: a, image: busybox}', 2, /metadata\.name: Invalid value/],
    ['bad quantity', 'metadata: {name: x}\nspec:\n  containers:\n  - {name: a, image: busybox, resources: {limits: {memory: lots}}}', 2, /not a valid quantity/],
    ['two documents', 'metadata: {name: x}\n---\nmetadata: {name: y}', 2, /exactly one document/],
    ['not a pod', 'kind: Service\nmetadata: {name: x}\nspec: {containers: [{name: a, image: busybox}]}', 2, /kind: expected "Pod"/],
    ['unknown image', 'metadata: {name: x}\nspec:\n  containers:\n  - {name: a, image: nosuch/image:1.0}', 1, /image "nosuch\/image:1.0" of container "a" is not in the image store/],
    ['missing executable', 'metadata: {name: x}\nspec:\n  containers:\n  - {name: a, image: busybox, command: [/no/such/binary]}', 1, /executable "\/no\/such\/binary" not found in image busybox/],
  ];
  for (const [what, yaml, code, message] of cases) {
    const r = await node.cli(['pod', 'run', '-f', await node.manifest('bad.yaml', yaml)]);
    assert.is(r.exitCode, code, `${what}: exit code (stderr: ${r.stderr})`);
    assert.match(r.stderr, message, `${what}: message`);
    assert.match(r.stderr, /^error: /, `${what}: no stack trace`);
    assert.not.match(r.stderr, /\n\s+at /, `${what}: no stack trace`);
  }
  const missing = await node.cli(['pod', 'run', '-f', '/nonexistent.yaml']);
  assert.is(missing.exitCode, 2);
  assert.match(missing.stderr, /cannot read pod manifest/);
  assert.is(await snapshot(node), before);
});

crash('an image with a hostile layer is refused and nothing outside the store is written', async () => {
  const node = getNode();
  const before = await snapshot(node);
  const outside = await fs.mkdtemp('/var/tmp/stevedore-victim-');
  try {
    await fs.writeFile(path.join(outside, 'victim'), 'original\n');
    for (const kind of ['dotdot', 'abs-symlink', 'symlink-parent', 'hardlink-escape', 'device'] as HostileKind[]) {
      const layout = path.join(node.dataDir, 'manifests', `hostile-${kind}`);
      const { entry } = await buildHostileImage(layout, kind, outside);
      const r = await node.cli(['image', 'import', layout]);
      assert.is.not(r.exitCode, 0, `${kind} refused`);
      assert.ok(r.stderr.includes(entry), `${kind}: the error names the entry ${entry}: ${r.stderr}`);
      assert.equal((await fs.readdir(outside)).sort(), ['victim'], `${kind}: nothing written outside`);
      assert.is(await fs.readFile(path.join(outside, 'victim'), 'utf8'), 'original\n');
      assert.is((await fs.stat(path.join(outside, 'victim'))).nlink, 1, `${kind}: no hardlink to the victim`);
      const run = await node.cli(['pod', 'run', '-f', await node.manifest('h.yaml', `metadata: {name: h}\nspec:\n  containers:\n  - {name: a, image: localhost/hostile-${kind}:latest}`)]);
      assert.match(run.stderr, /is not in the image store/, `${kind}: no image to run`);
    }
    assert.is(await snapshot(node), before);
  } finally {
    await fs.rm(outside, { recursive: true, force: true });
  }
});

crash('pod commands on unknown pods say so', async () => {
  const node = getNode();
  for (const args of [['pod', 'status', 'deadbeef'], ['pod', 'stop', 'deadbeef'], ['pod', 'rm', 'deadbeef'], ['pod', 'logs', 'deadbeef']]) {
    const r = await node.cli(args);
    assert.is(r.exitCode, 1, args.join(' '));
    assert.match(r.stderr, /no pod with UUID deadbeef/);
  }
  const bad = await node.cli(['pod', 'status', '../../etc']);
  assert.is(bad.exitCode, 2);
  assert.match(bad.stderr, /is not a pod UUID/);
  const running = (await node.ok(['pod', 'run', '-f', await node.manifest('crashy.yaml', POD)])).trim();
  const busy = await node.cli(['pod', 'rm', running]);
  assert.is(busy.exitCode, 1);
  assert.match(busy.stderr, /is running/);
  await eventually('running', async () => ((await podStatus(node, running)).state === 'running' ? true : undefined));
  await removeAll(node);
});

crash.run();
