/**
 * `stevedore up --store etcd` for real: up starts one etcd beside the control
 * plane (data under the cluster's data dir), the control plane keeps its
 * objects there, the node comes up Ready, and `down` stops etcd by its PID and
 * removes its data with the rest.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { isAlive, readProc } from '../sandbox/proc.js';
import { getSandbox, stopSandbox } from '../sandbox/sandbox.js';
import { eventually } from './helpers/assert.js';
import { CLI } from './helpers/node.js';
import { freePort, run, type Run } from './helpers/cluster.js';

const tag = randomBytes(2).toString('hex');
const sandbox = `upetcd${tag}`;
const bridge = `stvdue${tag}`;
let dataDir = '';
let state: { controlPlanePid?: number; etcdPid?: number } = {};

const kubectl = (args: string[]): Promise<Run> => run('kubectl', args, { KUBECONFIG: path.join(dataDir, 'kubeconfig') });

test.before(async () => {
  dataDir = await fs.mkdtemp('/var/tmp/stevedore-up-etcd-');
  const etcdPort = await freePort();
  const up = await run(process.execPath, [CLI, 'up', '--data-dir', dataDir, '--store', 'etcd', '--etcd-port', String(etcdPort), '--port', String(await freePort()),
    '--node-api-port', String(await freePort()), '--dns-port', String(await freePort()), '--sandbox-name', sandbox, '--bridge', bridge,
    '--pod-cidr', `10.${200 + Math.floor(Math.random() * 50)}.0.0/16`, '--service-cidr', `10.${150 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250)}.0/24`, '--node-name', `n${tag}`]);
  state = JSON.parse(await fs.readFile(path.join(dataDir, 'up.json'), 'utf8').catch(() => '{}'));
  if (up.code !== 0) throw new Error(`stevedore up --store etcd failed:\n${up.stderr}\n${up.stdout}`);
});

test.after(async () => {
  const down = existsSync(path.join(dataDir, 'up.json')) ? await run(process.execPath, [CLI, 'down', '--data-dir', dataDir]) : { code: 0, stderr: '' };
  const leftovers: string[] = [];
  if (await getSandbox(sandbox)) { leftovers.push(`sandbox ${sandbox}`); await stopSandbox(sandbox); }
  if (existsSync(`/sys/class/net/${bridge}`)) { leftovers.push(`bridge ${bridge}`); await run('ip', ['link', 'del', bridge]); }
  for (const [what, pid] of [['control plane', state.controlPlanePid], ['etcd', state.etcdPid]] as const) {
    if (pid && (await isAlive(pid))) { leftovers.push(`${what} pid ${pid}`); process.kill(pid, 'SIGKILL'); }
  }
  await fs.rm(dataDir, { recursive: true, force: true });
  if (down.code !== 0 || leftovers.length) throw new Error(`stevedore down failed (exit ${down.code}: ${down.stderr.trim()}); left behind: ${leftovers.join(', ') || 'nothing'}`);
});

test('up --store etcd: etcd beside the control plane holds the cluster; the node is Ready; down stops and removes etcd', async () => {
  assert.ok(state.etcdPid && (await readProc(state.etcdPid))?.comm === 'etcd', 'up.json records the etcd it started');
  const etcdLog = await fs.readFile(path.join(dataDir, 'control-plane', 'control-plane.log'), 'utf8');
  assert.match(etcdLog, /"store":"etcd:http:\/\/127\.0\.0\.1:\d+"/, 'the control plane runs on etcd');
  assert.ok(existsSync(path.join(dataDir, 'etcd', 'data', 'member')), 'etcd\'s data lives under the cluster\'s data dir');
  assert.not.ok(existsSync(path.join(dataDir, 'control-plane', 'state.db')), 'no SQLite database beside it');
  const nodes = await kubectl(['get', 'nodes', '-o', 'json']);
  assert.is(nodes.code, 0, nodes.stderr);
  const node = JSON.parse(nodes.stdout).items[0];
  assert.is(node.metadata.name, `n${tag}`);
  assert.is(node.status.conditions.find((c: { type: string }) => c.type === 'Ready').status, 'True');
  const port = (await fs.readFile(path.join(dataDir, 'control-plane', 'control-plane.log'), 'utf8')).match(/etcd:http:\/\/127\.0\.0\.1:(\d+)/)![1];
  // The agent may still be writing the demo pod's status between the two reads: compare once they agree on a revision.
  const demo = await eventually('the demo pod in etcd at the resourceVersion the API serves', async () => {
    const demo = await kubectl(['get', 'pod', 'demo', '-o', 'json']);
    assert.is(demo.code, 0, demo.stderr);
    const inEtcd = await run('/usr/bin/etcdctl', ['--endpoints', `http://127.0.0.1:${port}`, 'get', '/registry/pods/default/demo', '-w', 'json'], { ETCDCTL_API: '3' });
    const again = await kubectl(['get', 'pod', 'demo', '-o', 'jsonpath={.metadata.resourceVersion}']);
    const served = JSON.parse(demo.stdout).metadata.resourceVersion as string;
    return again.stdout === served && String(JSON.parse(inEtcd.stdout).kvs[0].mod_revision) === served && demo;
  }, 20_000);
  // stop keeps etcd's data; up starts etcd and the control plane on it again: the same objects at the same resourceVersions.
  const stop = await run(process.execPath, [CLI, 'stop', '--data-dir', dataDir]);
  assert.is(stop.code, 0, stop.stderr);
  assert.match(stop.stdout, /stop: control plane, etcd and node sandbox stopped/);
  assert.not.ok(await isAlive(state.etcdPid!), 'etcd stopped');
  const again = await run(process.execPath, [CLI, 'up', '--data-dir', dataDir]);
  state = JSON.parse(await fs.readFile(path.join(dataDir, 'up.json'), 'utf8'));
  assert.is(again.code, 0, again.stderr + again.stdout);
  assert.ok(state.etcdPid && (await readProc(state.etcdPid))?.comm === 'etcd', 'a new etcd on the same data');
  const back = await kubectl(['get', 'pod', 'demo', '-o', 'json']);
  assert.equal([JSON.parse(back.stdout).metadata.uid, JSON.parse(back.stdout).metadata.creationTimestamp], [JSON.parse(demo.stdout).metadata.uid, JSON.parse(demo.stdout).metadata.creationTimestamp]);

  const down = await run(process.execPath, [CLI, 'down', '--data-dir', dataDir]);
  assert.is(down.code, 0, down.stderr);
  assert.match(down.stdout, /down: control plane, etcd, node sandbox/);
  assert.not.ok(await isAlive(state.etcdPid!), 'etcd stopped');
  assert.not.ok(existsSync(dataDir), 'its data removed with the cluster\'s');
});

test.run();
