/**
 * Node IPAM (control-plane/controllers/node-ipam.ts), on a real control plane
 * with the real kubectl: Nodes registered without a pod CIDR get the first
 * free /24 of the cluster CIDR, a Node's own pod CIDR is kept and never handed
 * out, allocations survive a restart, a deleted Node's range is reused, and an
 * exhausted range gives a CIDRNotAvailable event.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { nextFreeCidr, validateNodeIpam } from '../control-plane/controllers/node-ipam.js';
import { startTestControlPlane, type TestCP } from './helpers/control-plane.js';

let t: TestCP;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test.before(async () => {
  t = await startTestControlPlane({ allocateNodeCidrs: { clusterCidr: '10.77.0.0/22', nodeCidrMaskSize: 24 } });
});
test.after(async () => { await t?.close(); });

const node = (name: string, podCIDR?: string) => ({ apiVersion: 'v1', kind: 'Node', metadata: { name }, spec: podCIDR ? { podCIDR, podCIDRs: [podCIDR] } : {} });
async function podCidrOf(name: string, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const cidr = (await t.k(['get', 'node', name, '-o', 'jsonpath={.spec.podCIDR}'])).trim();
    if (cidr || Date.now() > deadline) return cidr;
    await sleep(200);
  }
}

test('nextFreeCidr and the flags (pure)', () => {
  assert.is(nextFreeCidr('10.88.0.0/16', 24, []), '10.88.0.0/24');
  assert.is(nextFreeCidr('10.88.0.0/16', 24, ['10.88.0.0/24', '10.88.2.0/24']), '10.88.1.0/24');
  assert.is(nextFreeCidr('10.88.0.0/16', 24, ['10.88.0.0/23']), '10.88.2.0/24', 'a wider range of a node covers several');
  assert.is(nextFreeCidr('10.88.0.0/23', 24, ['10.88.0.0/24', '10.88.1.0/24']), undefined);
  assert.is(nextFreeCidr('10.88.0.0/16', 26, ['10.88.0.0/26']), '10.88.0.64/26');
  assert.throws(() => validateNodeIpam({ clusterCidr: '10.88.0.0' }), /--cluster-cidr/);
  assert.throws(() => validateNodeIpam({ clusterCidr: '10.88.0.0/24', nodeCidrMaskSize: 16 }), /--node-cidr-mask-size/);
});

test('Nodes without a pod CIDR get free /24s; one with its own keeps it; kept across a restart; a deleted one\'s is reused; exhaustion is an event', async () => {
  assert.is((await t.api('POST', '/api/v1/nodes', node('own', '10.77.0.0/24'))).status, 201);
  assert.is((await t.api('POST', '/api/v1/nodes', node('a'))).status, 201);
  assert.is(await podCidrOf('a'), '10.77.1.0/24', 'the node\'s own range is not handed out');
  assert.is((await t.api('POST', '/api/v1/nodes', node('b'))).status, 201);
  assert.is(await podCidrOf('b'), '10.77.2.0/24');
  assert.is(await podCidrOf('own'), '10.77.0.0/24');
  const podCIDRs = (await t.k(['get', 'node', 'b', '-o', 'jsonpath={.spec.podCIDRs[0]}'])).trim();
  assert.is(podCIDRs, '10.77.2.0/24');

  await t.restart();
  assert.is(await podCidrOf('a'), '10.77.1.0/24');
  await t.k(['delete', 'node', 'a']);
  assert.is((await t.api('POST', '/api/v1/nodes', node('c'))).status, 201);
  assert.is(await podCidrOf('c'), '10.77.1.0/24', 'a deleted node\'s range is free again, and nothing else is');
  assert.is((await t.api('POST', '/api/v1/nodes', node('d'))).status, 201);
  assert.is(await podCidrOf('d'), '10.77.3.0/24');
  assert.is((await t.api('POST', '/api/v1/nodes', node('e'))).status, 201);
  assert.is(await podCidrOf('e', 2000), '', 'no range left');
  const deadline = Date.now() + 10_000;
  let events = '';
  while (Date.now() < deadline && !events.includes('CIDRNotAvailable')) {
    events = await t.k(['get', 'events', '-A', '--field-selector', 'involvedObject.name=e', '-o', 'jsonpath={.items[*].reason}']);
    await sleep(200);
  }
  assert.match(events, 'CIDRNotAvailable');
});

test.run();
