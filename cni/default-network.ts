import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { tempSiblingOf } from '../common/fsutil.js';
import { configFiles } from './config.js';
import { CniConfigError, type CniNetworkConfig } from './types.js';
import { HOST_LOCAL_DEFAULT_DATA_DIR } from './leases.js';

export const DEFAULT_NETWORK_NAME = 'stevedore';
export const DEFAULT_BRIDGE = 'stevedore0';
export const DEFAULT_NETWORK_FILE = '10-stevedore.conflist';

export interface DefaultNetworkOptions {
  /** the node's pod CIDR, e.g. 10.244.1.0/24 (IPv4 or IPv6) */
  podCidr: string;
  /** Linux bridge name (max 15 chars), default stevedore0 */
  bridge?: string;
  /** network name, default stevedore */
  name?: string;
  /** host-local lease directory (leases go to <ipamDataDir>/<name>/), default /var/lib/cni/networks */
  ipamDataDir?: string;
}

function checkCidr(cidr: string): void {
  const m = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(cidr);
  const v4 = m && /^\d{1,3}(\.\d{1,3}){3}$/.test(m[1]!) && m[1]!.split('.').every((o) => Number(o) <= 255) && Number(m[2]) <= 30;
  const v6 = m && m[1]!.includes(':') && Number(m[2]) <= 126;
  if (!v4 && !v6) throw new CniConfigError(`pod CIDR ${JSON.stringify(cidr)} is not an IPv4 (/30 or larger) or IPv6 CIDR`);
}

/** The default network's conflist: bridge (gateway, no masquerade, hairpin) with host-local IPAM, then portmap. */
export function defaultNetworkConfig(opts: DefaultNetworkOptions): CniNetworkConfig {
  checkCidr(opts.podCidr);
  const bridge = opts.bridge ?? DEFAULT_BRIDGE;
  if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(bridge)) throw new CniConfigError(`bridge name ${JSON.stringify(bridge)} is not a valid interface name (max 15 characters)`);
  const v6 = opts.podCidr.includes(':');
  return {
    cniVersion: '1.0.0',
    name: opts.name ?? DEFAULT_NETWORK_NAME,
    plugins: [
      {
        type: 'bridge',
        bridge,
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: opts.podCidr }]],
          routes: [{ dst: v6 ? '::/0' : '0.0.0.0/0' }],
          dataDir: opts.ipamDataDir ?? HOST_LOCAL_DEFAULT_DATA_DIR,
        },
      },
      { type: 'portmap', capabilities: { portMappings: true }, snat: true },
    ],
  };
}

/**
 * Write the default network into confDir, but only if the directory holds no
 * network config yet (an operator's config always wins). Atomic: readers see
 * no file or the whole file. Returns the file and whether it was written.
 */
export async function ensureDefaultNetwork(confDir: string, opts: DefaultNetworkOptions): Promise<{ written: boolean; file: string }> {
  const config = defaultNetworkConfig(opts);
  const existing = await configFiles(confDir);
  if (existing.length > 0) return { written: false, file: existing[0]! };
  await fs.mkdir(confDir, { recursive: true });
  const file = path.join(confDir, DEFAULT_NETWORK_FILE);
  const tmp = tempSiblingOf(file);
  const h = await fs.open(tmp, 'wx', 0o644);
  try {
    await h.writeFile(JSON.stringify(config, null, 2) + '\n');
    await h.sync();
  } finally {
    await h.close();
  }
  try {
    // link() fails if another writer got there first: never clobber.
    await fs.link(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return { written: false, file };
  } finally {
    await fs.rm(tmp, { force: true });
  }
  return { written: true, file };
}
