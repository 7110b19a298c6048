/**
 * Node sandboxes with a network namespace of their own (sandbox/network.ts):
 * each has eth0 with its address on a host bridge of the test's, its systemd
 * runs in that netns, two of them reach each other and the host's bridge
 * address, and stopping them removes the netns, the veths and (with the last
 * one) the bridge.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { execInSandbox } from '../sandbox/sandbox.js';
import { hostVethOf } from '../sandbox/network.js';
import { TEST_STATE_ROOT, uniqueSandboxName, withSandbox, type TestSandbox } from './helpers/sandbox.js';

const bridge = `stvt${randomBytes(3).toString('hex')}`;
// A subnet of the test's own, out of the way of the default 10.250.0.0/24.
const subnet = `10.251.${Math.floor(Math.random() * 250)}`;
const sandboxes: TestSandbox[] = [];

test.after(async () => {
  for (const sb of sandboxes) await sb.stop();
  await execa('ip', ['link', 'del', bridge], { reject: false });
});

const inside = async (sb: TestSandbox, argv: string[]) => {
  const r = await execInSandbox(sb.info.name, argv, { stdio: 'pipe', stateRoot: TEST_STATE_ROOT });
  return { code: r.exitCode, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
};

test('two sandboxes, each in its own netns on one host bridge, reach each other; stop removes netns, veth and bridge', async () => {
  for (const i of [1, 2]) {
    sandboxes.push(await withSandbox({ name: uniqueSandboxName('net'), network: { bridge, address: `${subnet}.${10 + i}`, gateway: `${subnet}.1` } }));
  }
  const [a, b] = sandboxes as [TestSandbox, TestSandbox];
  assert.equal(a.info.network?.netns, a.info.name);
  assert.ok(existsSync(`/run/netns/${a.info.name}`), 'the netns is named after the sandbox');
  const addr = await inside(a, ['ip', '-4', '-o', 'addr', 'show', 'eth0']);
  assert.match(addr.out, `${subnet}.11/24`);
  const route = await inside(a, ['ip', 'route', 'show', 'default']);
  assert.match(route.out, `default via ${subnet}.1 dev eth0`);
  assert.is((await inside(a, ['sysctl', '-n', 'net.ipv4.ip_forward'])).out.trim(), '1');
  // The sandbox's systemd itself (and so every unit) is in the netns, not only exec'd commands.
  const unitAddr = await inside(a, ['systemd-run', '--wait', '--pipe', '-q', 'ip', '-4', '-o', 'addr', 'show', 'eth0']);
  assert.match(unitAddr.out, `${subnet}.11/24`, unitAddr.out);
  assert.is((await inside(a, ['busybox', 'ping', '-c1', '-W2', `${subnet}.12`])).code, 0, 'sandbox a reaches sandbox b');
  assert.is((await inside(b, ['busybox', 'ping', '-c1', '-W2', `${subnet}.1`])).code, 0, 'sandbox b reaches the host bridge');
  assert.is((await execa('busybox', ['ping', '-c1', '-W2', `${subnet}.11`], { reject: false })).exitCode, 0, 'the host reaches sandbox a');

  await a.stop();
  assert.not.ok(existsSync(`/run/netns/${a.info.name}`), 'netns of a removed');
  assert.not.ok(existsSync(`/sys/class/net/${hostVethOf(a.info.name)}`), 'veth of a removed');
  assert.ok(existsSync(`/sys/class/net/${bridge}`), 'the bridge stays while b is on it');
  await b.stop();
  assert.not.ok(existsSync(`/sys/class/net/${bridge}`), 'the bridge goes with the last sandbox');
});

test.run();
