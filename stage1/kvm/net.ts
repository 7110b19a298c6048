import * as fs from 'node:fs/promises';
import { execa } from 'execa';
import { UserError, errnoCode } from '../../common/errors.js';
import { fsops } from '../../common/fsops.js';

/** The pod network as the guest takes it over: CNI's eth0 in the pod netns, seen through a tap. */
export interface VmNet {
  tap: string;
  /** eth0's MAC: the guest's NIC uses it, so the bridge, ARP caches and CNI's view stay right. */
  mac: string;
  mtu: number;
  /** CIDRs, as CNI put them on eth0 */
  addrs: string[];
  gateway?: string;
}

const TAP = 'tap0';

async function inNetns(netns: string, argv: string[]): Promise<string> {
  const r = await execa('nsenter', [`--net=${netns}`, '--', ...argv], { reject: false });
  if (r.exitCode !== 0) throw new UserError(`in the pod's network namespace, \`${argv.join(' ')}\` failed: ${r.stderr.trim()}`, { hint: 'is iproute2 installed, and the tun, sch_ingress, cls_u32 and act_mirred kernel modules available?' });
  return r.stdout;
}

/** /dev/net/tun, made if this node's /dev lacks it (a container or sandbox with a minimal /dev). */
async function ensureTunDevice(): Promise<void> {
  try {
    await fs.access('/dev/net/tun');
  } catch {
    await fs.mkdir('/dev/net', { recursive: true });
    try {
      fsops.mknod('/dev/net/tun', fsops.S_IFCHR | 0o666, fsops.makedev(10, 200));
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
    }
  }
}

/**
 * Hand the pod's CNI interface to the VM: a tap device next to eth0 in the
 * pod's netns and tc mirred redirects both ways (every frame eth0 receives
 * goes out of the tap to the guest, and back), so the guest has the pod's IP
 * and MAC, and pod IPs, hostPorts and pod-to-pod traffic work as for
 * container pods. Undefined when CNI attached nothing (no eth0). Everything
 * lives in the netns and goes with it.
 */
export async function attachVmNetwork(netns: string): Promise<VmNet | undefined> {
  const links = JSON.parse(await inNetns(netns, ['ip', '-j', 'link', 'show'])) as Array<{ ifname: string; address: string; mtu: number }>;
  const eth0 = links.find((l) => l.ifname === 'eth0');
  if (!eth0) return undefined;
  const addrInfo = JSON.parse(await inNetns(netns, ['ip', '-j', '-4', 'addr', 'show', 'dev', 'eth0'])) as Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>;
  const addrs = addrInfo.flatMap((a) => a.addr_info.map((i) => `${i.local}/${i.prefixlen}`));
  const routes = JSON.parse(await inNetns(netns, ['ip', '-j', '-4', 'route', 'show', 'default'])) as Array<{ gateway?: string }>;
  await ensureTunDevice();
  if (!links.some((l) => l.ifname === TAP)) {
    // Owned by root: qemu (root, without CAP_NET_ADMIN in its sandbox) may then attach to it.
    await inNetns(netns, ['ip', 'tuntap', 'add', 'dev', TAP, 'mode', 'tap', 'user', '0']);
    await inNetns(netns, ['ip', 'link', 'set', 'dev', TAP, 'mtu', String(eth0.mtu), 'up']);
    for (const [from, to] of [['eth0', TAP], [TAP, 'eth0']] as const) {
      await inNetns(netns, ['tc', 'qdisc', 'add', 'dev', from, 'ingress']);
      await inNetns(netns, ['tc', 'filter', 'add', 'dev', from, 'parent', 'ffff:', 'protocol', 'all', 'u32', 'match', 'u8', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', to]);
    }
  }
  return { tap: TAP, mac: eth0.address, mtu: eth0.mtu, addrs, gateway: routes[0]?.gateway };
}
