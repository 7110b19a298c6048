/**
 * Volumes on the real node (runtime-rkt/volumes.ts, stage1 binds): emptyDir
 * on disk and in memory, hostPath with its type checks, readOnly, subPath and
 * subPathExpr, fsGroup, and the refusals (a wrong hostPath type, a subPath
 * with `..` or a symlink out of its volume), under namespaces and fly.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { eventually, podStatus, useNode, type TestNode } from './helpers/node.js';

const volumes = suite('volumes: emptyDir, hostPath, subPath on every stage1');
const getNode = useNode(volumes);

/** Run a pod to completion and return each container's output. */
async function runToEnd(node: TestNode, name: string, stage1: string, yaml: string): Promise<{ uuid: string; logs: Record<string, string> }> {
  const file = await node.manifest(`${name}.yaml`, yaml);
  const uuid = (await node.ok(['pod', 'run', '-f', file, '--stage1', stage1])).trim();
  const s = await eventually(`${name} to finish`, async () => {
    const st = await podStatus(node, uuid);
    return st.state === 'exited' ? st : undefined;
  });
  const logs: Record<string, string> = {};
  for (const a of s.apps) logs[a.name] = await node.ok(['pod', 'logs', uuid, '-c', a.name]);
  for (const a of s.apps) assert.is(a.exitCode, 0, `${a.name} exited 0: ${logs[a.name]}`);
  return { uuid, logs };
}

/** A directory on the node for hostPath volumes (the sandbox shares the host's filesystem). */
async function hostDir(node: TestNode, name: string): Promise<string> {
  const dir = path.join(node.dataDir, 'host', name);
  await fs.mkdir(dir, { recursive: true });
  return dir;
}

for (const stage1 of ['namespaces', 'fly']) {
  volumes(`${stage1}: an emptyDir shared by two containers; readOnly refuses writes; subPath and subPathExpr; a hostPath`, async () => {
    const node = getNode();
    const host = await hostDir(node, `shared-${stage1}`);
    await fs.writeFile(path.join(host, 'from-node.txt'), 'node data\n');
    await fs.mkdir(path.join(host, 'team-a'));
    await fs.writeFile(path.join(host, 'team-a', 'only.txt'), 'team a\n');
    const { uuid, logs } = await runToEnd(node, `ed-${stage1}`, stage1, `
metadata: {name: ed-${stage1}}
spec:
  restartPolicy: Never
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: node, hostPath: {path: ${host}, type: Directory}}
  containers:
  - name: writer
    image: busybox
    command: [sh, -c, 'echo hello-from-writer > /scratch/note; mkdir -p /scratch/deep/er; echo sub > /scratch/deep/er/file; echo wrote']
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  - name: reader
    image: busybox
    env: [{name: TEAM, value: team-a}]
    command: [sh, -c, 'until [ -f /in/note ]; do sleep 0.1; done; cat /in/note;
      if (echo x > /in/forbidden) 2>&1; then echo WRITABLE; else echo read-only-ok; fi;
      ls /team; cat /node/from-node.txt; cat /expr/only.txt; echo made > /made/here; ls -ld /made | cut -c1-10']
    volumeMounts:
    - {name: scratch, mountPath: /in, readOnly: true}
    - {name: node, mountPath: /node, readOnly: true}
    - {name: node, mountPath: /team, subPath: team-a}
    - {name: node, mountPath: /expr, subPathExpr: $(TEAM)}
    - {name: scratch, mountPath: /made, subPath: new/dir}
`);
    assert.is(logs.writer, 'wrote\n');
    assert.is(logs.reader, 'hello-from-writer\n/bin/sh: can\'t create /in/forbidden: Read-only file system\nread-only-ok\nonly.txt\nnode data\nteam a\ndrwxrwxrwx\n');
    // The subPath that did not exist was made inside the emptyDir (0777, as the volume), and the write landed there.
    const podDir = (await node.sh(`ls -d ${node.dataDir}/pods/*/${uuid}`)).stdout.trim();
    assert.is(await fs.readFile(path.join(podDir, 'volumes', 'scratch', 'new', 'dir', 'here'), 'utf8'), 'made\n');
    await node.ok(['pod', 'rm', uuid]);
    assert.equal((await node.mounts()).filter((m) => m.includes(uuid)), [], 'subPath binds unmounted');
    assert.is(await fs.readFile(path.join(host, 'team-a', 'only.txt'), 'utf8'), 'team a\n', 'removing the pod leaves the hostPath alone');
  });

  volumes(`${stage1}: a Memory emptyDir is a tmpfs of sizeLimit, removed with the pod; fsGroup owns emptyDirs`, async () => {
    const node = getNode();
    const { uuid, logs } = await runToEnd(node, `mem-${stage1}`, stage1, `
metadata: {name: mem-${stage1}}
spec:
  restartPolicy: Never
  securityContext: {fsGroup: ${stage1 === 'fly' ? 0 : 2000}}
  volumes:
  - {name: cache, emptyDir: {medium: Memory, sizeLimit: 8Mi}}
  - {name: disk, emptyDir: {}}
  containers:
  - name: app
    image: busybox
    securityContext: {readOnlyRootFilesystem: true}
    command: [sh, -c, 'grep " /cache " /proc/mounts | cut -d" " -f3,4; stat -c "%a %g" /cache /disk;
      if dd if=/dev/zero of=/cache/big bs=1M count=9 2>/dev/null; then echo NO-LIMIT; else echo full-at-limit; fi;
      touch /disk/ok && echo volume-writable; touch /rootfs-file 2>/dev/null || echo root-read-only']
    volumeMounts: [{name: cache, mountPath: /cache}, {name: disk, mountPath: /disk}]
`);
    const [mount, cacheStat, diskStat, limit, volumeWritable, rootReadOnly] = logs.app!.trim().split('\n');
    assert.equal([volumeWritable, rootReadOnly], ['volume-writable', 'root-read-only'], 'a volume stays writable under a read-only root filesystem');
    assert.match(mount!, /^tmpfs rw,.*size=8192k/);
    const group = stage1 === 'fly' ? 0 : 2000;
    assert.is(cacheStat, `2777 ${group}`, 'setgid, group fsGroup');
    assert.is(diskStat, `2777 ${group}`);
    assert.is(limit, 'full-at-limit');
    assert.ok((await node.mounts()).some((m) => m.includes(uuid) && m.endsWith('/volumes/cache')), 'the tmpfs lives while the pod does');
    await node.ok(['pod', 'rm', uuid]);
    assert.equal((await node.mounts()).filter((m) => m.includes(uuid)), [], 'the tmpfs went with the pod');
  });
}

volumes('kvm: the same volumes reach the guest through its 9p share (emptyDir shared by two containers, readOnly, subPath, hostPath, a bounded Memory emptyDir)', async () => {
  const node = getNode();
  const host = await hostDir(node, 'kvm');
  await fs.mkdir(path.join(host, 'sub'));
  await fs.writeFile(path.join(host, 'sub', 'in-sub.txt'), 'sub data\n');
  const { uuid, logs } = await runToEnd(node, 'vm-vols', 'kvm', `
metadata: {name: vm-vols}
spec:
  restartPolicy: Never
  volumes:
  - {name: scratch, emptyDir: {}}
  - {name: cache, emptyDir: {medium: Memory, sizeLimit: 4Mi}}
  - {name: node, hostPath: {path: ${host}, type: Directory}}
  containers:
  - name: writer
    image: busybox
    command: [sh, -c, 'echo from-the-vm > /scratch/note; echo back-to-node > /node/written-by-vm; echo wrote']
    volumeMounts: [{name: scratch, mountPath: /scratch}, {name: node, mountPath: /node}]
  - name: reader
    image: busybox
    command: [sh, -c, 'until [ -f /in/note ]; do sleep 0.1; done; cat /in/note;
      if (echo x > /in/forbidden) 2>/dev/null; then echo WRITABLE; else echo read-only-ok; fi;
      ls /sub; if dd if=/dev/zero of=/cache/big bs=1M count=5 conv=fsync 2>/dev/null; then echo NO-LIMIT; else echo full-at-limit; fi']
    volumeMounts:
    - {name: scratch, mountPath: /in, readOnly: true}
    - {name: node, mountPath: /sub, subPath: sub, readOnly: true}
    - {name: cache, mountPath: /cache}
`);
  assert.is(logs.writer, 'wrote\n');
  assert.is(logs.reader, 'from-the-vm\nread-only-ok\nin-sub.txt\nfull-at-limit\n');
  assert.is(await fs.readFile(path.join(host, 'written-by-vm'), 'utf8'), 'back-to-node\n', 'the guest wrote through to the node');
  await node.ok(['pod', 'rm', uuid]);
  assert.equal((await node.mounts()).filter((m) => m.includes(uuid)), [], 'share binds, subPath binds and the tmpfs are gone');
  assert.is(await fs.readFile(path.join(host, 'sub', 'in-sub.txt'), 'utf8'), 'sub data\n', 'removing the pod leaves the hostPath alone');
});

volumes('hostPath types are checked as the kubelet checks them; the wrong type fails the pod naming it, and leaves nothing', async () => {
  const node = getNode();
  const host = await hostDir(node, 'types');
  await fs.writeFile(path.join(host, 'a-file'), 'x');
  const run = (type: string, p: string) => node.manifest(`hp-${type.replace(/"/g, '')}.yaml`, `
metadata: {name: hp}
spec:
  restartPolicy: Never
  volumes: [{name: v, hostPath: {path: ${p}, type: ${type}}}]
  containers:
  - {name: app, image: busybox, command: ['true'], volumeMounts: [{name: v, mountPath: /v}]}
`).then((file) => node.cli(['pod', 'run', '-f', file]));
  const cases: Array<[string, string, RegExp | undefined]> = [
    ['Directory', path.join(host, 'a-file'), /is not a directory/],
    ['Directory', path.join(host, 'missing'), /is not a directory/],
    ['File', host, /is not a file/],
    ['Socket', path.join(host, 'a-file'), /is not a socket file/],
    ['CharDevice', path.join(host, 'a-file'), /is not a character device/],
    ['BlockDevice', '/dev/null', /is not a block device/],
    ['CharDevice', '/dev/null', undefined],
    ['DirectoryOrCreate', path.join(host, 'made', 'deep'), undefined],
    ['FileOrCreate', path.join(host, 'made-file'), undefined],
    ['File', path.join(host, 'made-file'), undefined],
    ['""', path.join(host, 'made-untyped', 'dir'), undefined],
  ];
  for (const [type, p, error] of cases) {
    const r = await run(type, p);
    if (error) {
      assert.is(r.exitCode, 2, `${type} ${p}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`MountVolume\\.SetUp failed for volume "v" : hostPath type check failed: ${p.replace(/[.]/g, '\\.')} ${error.source}`));
    } else {
      assert.is(r.exitCode, 0, `${type} ${p}: ${r.stderr}`);
      await node.ok(['pod', 'rm', '--force', r.stdout.trim()]);
    }
  }
  assert.ok((await fs.stat(path.join(host, 'made', 'deep'))).isDirectory(), 'DirectoryOrCreate made it');
  assert.ok((await fs.stat(path.join(host, 'made-file'))).isFile(), 'FileOrCreate made it');
  assert.ok((await fs.stat(path.join(host, 'made-untyped', 'dir'))).isDirectory(), 'no type: a missing path becomes a directory (containerd\'s rule)');
  assert.equal((JSON.parse(await node.ok(['pod', 'list', '-o', 'json'])) as Array<{ name: string }>).filter((p) => p.name === 'hp'), [], 'refused pods were discarded');
});

volumes('subPath: `..` and a symlink out of the volume are refused; a symlink inside it is followed', async () => {
  const node = getNode();
  const host = await hostDir(node, 'links');
  const secret = await hostDir(node, 'outside');
  await fs.writeFile(path.join(secret, 'key'), 'node secret\n');
  await fs.symlink(secret, path.join(host, 'escape'));
  await fs.symlink('../../outside', path.join(host, 'relative-escape'));
  await fs.mkdir(path.join(host, 'real'));
  await fs.writeFile(path.join(host, 'real', 'ok'), 'inside\n');
  await fs.symlink('real', path.join(host, 'inside-link'));
  const pod = (sub: string, key = 'subPath') => `
metadata: {name: sp}
spec:
  restartPolicy: Never
  volumes: [{name: v, hostPath: {path: ${host}, type: Directory}}]
  containers:
  - name: app
    image: busybox
    env: [{name: UP, value: '..'}]
    command: [sh, -c, 'cat /v/ok || ls /v']
    volumeMounts: [{name: v, mountPath: /v, ${key}: '${sub}'}]
`;
  const dotdot = await node.cli(['pod', 'run', '-f', await node.manifest('dotdot.yaml', pod('../outside'))]);
  assert.is(dotdot.exitCode, 2);
  assert.match(dotdot.stderr, /spec\.containers\[0\]\.volumeMounts\[0\]\.subPath: Invalid value: "\.\.\/outside": must not contain '\.\.'/);
  const expr = await node.cli(['pod', 'run', '-f', await node.manifest('expr.yaml', pod('$(UP)/outside', 'subPathExpr'))]);
  assert.is(expr.exitCode, 2);
  assert.match(expr.stderr, /subPathExpr: "\$\(UP\)\/outside" expands to "\.\.\/outside", which must not contain '\.\.'/);
  for (const link of ['escape', 'relative-escape', 'escape/key']) {
    const r = await node.cli(['pod', 'run', '-f', await node.manifest(`esc-${link.replace('/', '-')}.yaml`, pod(link))]);
    assert.is(r.exitCode, 2, `${link}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`subPath of volume "v": "${link}" leads out of the volume`));
  }
  const { logs, uuid } = await runToEnd(node, 'inside', 'namespaces', pod('inside-link'));
  assert.is(logs.app, 'inside\n');
  await node.ok(['pod', 'rm', uuid]);
  assert.equal((JSON.parse(await node.ok(['pod', 'list', '-o', 'json'])) as Array<{ name: string }>).filter((p) => p.name === 'sp'), []);
  assert.equal((await node.mounts()).filter((m) => m.includes('volume-subpaths')), [], 'no subPath bind left by the refused pods');
});

volumes('mountPropagation other than None, and volumes the runtime cannot prepare itself, are refused by name', async () => {
  const node = getNode();
  const r = await node.cli(['pod', 'run', '-f', await node.manifest('prop.yaml', `
metadata: {name: prop}
spec:
  volumes: [{name: v, emptyDir: {}}, {name: n, nfs: {server: example.org, path: /}}]
  containers:
  - {name: app, image: busybox, volumeMounts: [{name: v, mountPath: /v, mountPropagation: Bidirectional}, {name: nope, mountPath: /n}]}
`)]);
  assert.is(r.exitCode, 2);
  assert.match(r.stderr, /volumeMounts\[0\]\.mountPropagation: not supported by this node: Bidirectional propagation is not implemented/);
  assert.match(r.stderr, /volumeMounts\[1\]\.name: Not found: "nope"/);
  assert.match(r.stderr, /spec\.volumes\[1\]\.nfs: not supported by this node: this node has no plugin for this volume type/);
  const pvc = await node.cli(['pod', 'run', '-f', await node.manifest('pvc.yaml', `
metadata: {name: pvc}
spec:
  volumes: [{name: v, persistentVolumeClaim: {claimName: data}}]
  containers: [{name: app, image: busybox, volumeMounts: [{name: v, mountPath: /v}]}]
`)]);
  assert.is(pvc.exitCode, 2);
  assert.match(pvc.stderr, /volume "v" \(spec\.volumes\[0\]\): a persistentVolumeClaim volume is prepared by the node agent/);
});

volumes.run();
