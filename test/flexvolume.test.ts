/**
 * FlexVolume on a real node: the example driver (agent/flexvolume-drivers,
 * an ext4 image loop-mounted) installed in the agent's plugin dir, a pod that
 * writes into it, the unmount when the pod is gone (mount and loop device
 * released), the data still in the image for the next pod; a missing driver
 * and a driver's failure are CreateContainerConfigError with their message.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { useCluster, type TestCluster } from './helpers/cluster.js';
import { eventually, REPO } from './helpers/node.js';

type KObj = Record<string, any>;
const flex = suite('flexVolume: the exec driver interface on a real node');
const getCluster = useCluster(flex);

const DRIVER = path.join(REPO, 'agent', 'flexvolume-drivers', 'stevedore~loop-ext4', 'loop-ext4');

const pod = (name: string, command: string, volume: string) => `apiVersion: v1
kind: Pod
metadata: {name: ${name}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: [sh, -c, '${command}']
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, flexVolume: ${volume}}]
`;

async function phase(c: TestCluster, name: string): Promise<string> {
  return (await c.k(['get', 'pod', name, '-o', 'jsonpath={.status.phase}'])).trim();
}

async function waiting(c: TestCluster, name: string): Promise<{ reason: string; message: string }> {
  return eventually(`${name} waiting`, async () => {
    const p = JSON.parse(await c.k(['get', 'pod', name, '-o', 'json'])) as KObj;
    const w = p.status?.containerStatuses?.[0]?.state?.waiting;
    return w?.reason === 'CreateContainerConfigError' ? w : undefined;
  }, 60_000);
}

flex('the loop-ext4 driver mounts an image for a pod, unmounts it when the pod is gone, and the data stays in the image', async () => {
  const c = getCluster();
  const plugins = path.join(c.dataDir, 'node', 'volume-plugins', 'stevedore~loop-ext4');
  await fs.mkdir(plugins, { recursive: true });
  await fs.copyFile(DRIVER, path.join(plugins, 'loop-ext4'));
  await fs.chmod(path.join(plugins, 'loop-ext4'), 0o755);
  const image = path.join(c.dataDir, 'flex', 'disk.img');
  const volume = `{driver: stevedore/loop-ext4, fsType: ext4, options: {image: ${image}, size: 16M}}`;
  await c.k(['apply', '-f', '-'], pod('flex-writer', 'grep " /data " /proc/mounts | cut -d" " -f3; echo kept > /data/file; echo done', volume));
  await eventually('the writer to finish', async () => (await phase(c, 'flex-writer')) === 'Succeeded', 90_000);
  assert.is(await c.k(['logs', 'flex-writer']), 'ext4\ndone\n');
  const uid = (await c.k(['get', 'pod', 'flex-writer', '-o', 'jsonpath={.metadata.uid}'])).trim();
  const mountDir = path.join(c.dataDir, 'node', 'flexvolumes', uid, 'stevedore~loop-ext4', 'data');
  const mounted = await c.node(['findmnt', '-n', '-o', 'FSTYPE', mountDir]);
  assert.is(mounted.stdout.trim(), 'ext4', `the volume is mounted on the node while its pod exists: ${mounted.stderr}`);
  await c.k(['delete', 'pod', 'flex-writer', '--wait=true']);
  await eventually('the unmount', async () => (await c.node(['findmnt', mountDir])).code !== 0, 30_000);
  await eventually('the mount directory to go', async () => fs.access(mountDir).then(() => false, () => true));
  const loops = await c.node(['losetup', '-a']);
  assert.not.match(loops.stdout, new RegExp(image.replace(/[.]/g, '\\.')), 'the loop device went with the mount');
  await c.k(['apply', '-f', '-'], pod('flex-reader', 'cat /data/file', volume));
  await eventually('the reader to finish', async () => (await phase(c, 'flex-reader')) === 'Succeeded', 90_000);
  assert.is(await c.k(['logs', 'flex-reader']), 'kept\n');
  await c.k(['delete', 'pod', 'flex-reader', '--wait=true']);
  await eventually('the second unmount', async () => !(await c.node(['losetup', '-a'])).stdout.includes(image), 30_000);
});

flex('a missing driver and a driver\'s own failure are CreateContainerConfigError with their message', async () => {
  const c = getCluster();
  await c.k(['apply', '-f', '-'], pod('flex-nodriver', 'true', '{driver: acme/nope}'));
  const none = await waiting(c, 'flex-nodriver');
  assert.match(none.message, /MountVolume\.SetUp failed for volume "data" \(spec\.volumes\[0\], flexVolume acme\/nope\): no FlexVolume driver at \S+\/volume-plugins\/acme~nope\/nope/);
  await c.k(['apply', '-f', '-'], pod('flex-bad', 'true', '{driver: stevedore/loop-ext4, options: {image: relative.img}}'));
  const bad = await waiting(c, 'flex-bad');
  assert.match(bad.message, /MountVolume\.SetUp failed for volume "data".*: option image must be an absolute path on the node \(got "relative\.img"\)/);
  await c.k(['delete', 'pod', 'flex-nodriver', 'flex-bad', '--wait=true']);
});

flex.run();
