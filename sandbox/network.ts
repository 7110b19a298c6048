/**
 * A node sandbox's own network namespace: `/run/netns/<name>` with loopback
 * up, `eth0` (the sandbox's address, default route via the bridge's address)
 * and its veth peer on a bridge of the host. This is how several nodes of one
 * cluster live on one machine, each with an address of its own, the way kind
 * puts each node container on a docker bridge.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import { execa } from 'execa';
import { InvalidInput, UserError } from '../common/errors.js';
import type { SandboxNetwork, SandboxNetworkInfo } from './types.js';

const PATH_ENV = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const IPV4_RE = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;

export const netnsFile = (netns: string) => `/run/netns/${netns}`;

/** The host end of a sandbox's veth: interface names are limited to 15 characters, sandbox names are not. */
export function hostVethOf(sandboxName: string): string {
  return `stvd-${createHash('sha256').update(sandboxName).digest('hex').slice(0, 8)}`;
}

export function validateNetwork(net: SandboxNetwork): Required<SandboxNetwork> {
  const prefixLength = net.prefixLength ?? 24;
  if (!IFNAME_RE.test(net.bridge)) throw new InvalidInput(`invalid bridge name ${JSON.stringify(net.bridge)}`, 'use 1-15 letters, digits, dots, dashes or underscores');
  for (const [what, ip] of [['address', net.address], ['gateway', net.gateway]] as const) {
    if (!IPV4_RE.test(ip)) throw new InvalidInput(`invalid sandbox network ${what} ${JSON.stringify(ip)}`, 'give an IPv4 address such as 10.250.0.11');
  }
  if (!Number.isInteger(prefixLength) || prefixLength < 8 || prefixLength > 30) throw new InvalidInput(`invalid prefix length ${prefixLength}`, 'use 8-30 (default 24)');
  if (net.address === net.gateway) throw new InvalidInput(`the sandbox address ${net.address} is the gateway's`, 'give the sandbox an address of its own on the bridge\'s subnet');
  return { bridge: net.bridge, address: net.address, gateway: net.gateway, prefixLength };
}

async function ip(args: string[], okIf?: RegExp): Promise<void> {
  const r = await execa('ip', args, { reject: false, env: { PATH: PATH_ENV } });
  if (r.exitCode === 0 || (okIf && okIf.test(r.stderr))) return;
  throw new UserError(`\`ip ${args.join(' ')}\` failed: ${r.stderr.trim()}`, { hint: 'is iproute2 installed and are you root? Leftovers go with `stevedore sandbox stop NAME`' });
}

/** The host bridge with the gateway address, up; made if missing (a control plane may need to listen on it before any node exists). */
export async function ensureBridge(bridge: string, gateway: string, prefixLength = 24): Promise<void> {
  validateNetwork({ bridge, gateway, address: '0.0.0.0', prefixLength });
  // Several nodes may start at once: a bridge or address that appeared meanwhile is fine.
  await ip(['link', 'add', bridge, 'type', 'bridge'], /File exists/);
  await ip(['addr', 'add', `${gateway}/${prefixLength}`, 'dev', bridge], /File exists|already assigned/);
  await ip(['link', 'set', bridge, 'up']);
}

/** Deletes the bridge when no veth is on it any more. */
export async function removeBridgeIfUnused(bridge: string): Promise<void> {
  const ports = await fs.readdir(`/sys/class/net/${bridge}/brif`).catch(() => undefined);
  if (ports && ports.length === 0) await ip(['link', 'del', bridge], /Cannot find device/);
}

/** Creates the bridge (if missing) with the gateway address, the netns and the veth pair. */
export async function createSandboxNetwork(name: string, net: SandboxNetwork): Promise<SandboxNetworkInfo> {
  const n = validateNetwork(net);
  const info: SandboxNetworkInfo = { ...n, netns: name, hostVeth: hostVethOf(name) };
  await ensureBridge(n.bridge, n.gateway, n.prefixLength);
  await ip(['netns', 'add', info.netns]);
  await ip(['link', 'add', info.hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', info.netns]);
  await ip(['link', 'set', info.hostVeth, 'master', n.bridge, 'up']);
  await ip(['-n', info.netns, 'link', 'set', 'lo', 'up']);
  await ip(['-n', info.netns, 'addr', 'add', `${n.address}/${n.prefixLength}`, 'dev', 'eth0']);
  await ip(['-n', info.netns, 'link', 'set', 'eth0', 'up']);
  await ip(['-n', info.netns, 'route', 'add', 'default', 'via', n.gateway]);
  // Pods behind the node's own CNI bridge are routed through eth0: the node forwards.
  const fwd = await execa('nsenter', [`--net=${netnsFile(info.netns)}`, '--', 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'], { reject: false, env: { PATH: PATH_ENV } });
  if (fwd.exitCode !== 0) throw new UserError(`cannot turn on IPv4 forwarding in netns ${info.netns}: ${fwd.stderr.trim()}`);
  return info;
}

/**
 * Removes the netns (which takes eth0, the pods' bridge and the node's nft
 * tables with it), the host veth if it survived, and the bridge once no
 * sandbox is on it any more. Idempotent.
 */
export async function removeSandboxNetwork(info: SandboxNetworkInfo): Promise<void> {
  await ip(['link', 'del', info.hostVeth], /Cannot find device/);
  await ip(['netns', 'del', info.netns], /No such file|Cannot remove namespace file/);
  await removeBridgeIfUnused(info.bridge);
}
