/**
 * A docker pod on the pod network: the same CNI code and network as rkt's
 * pods (cni/), run against the infra container's network namespace
 * (/proc/<pid>/ns/net). The attachment is recorded in the pod's directory
 * before ADD, so a crash half way is undone by the next DEL.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { UserError } from '../common/errors.js';
import { loopbackUpInNetns } from '../common/netns-dial.js';
import { atomicWriteJson, readJsonIfExists } from '../common/fsutil.js';
import { CniNetwork, podIP, podIPs, type PortMapping } from '../cni/index.js';
import type { Pod, PodNetworkOptions } from './types.js';

export interface DockerPodNetworkRecord {
  network: string;
  cacheDir: string;
  binDirs?: string[];
  ifName: string;
  /** primary first; empty until ADD finished */
  ips: string[];
}

const IF_NAME = 'eth0';
export const networkRecordFile = (podDir: string) => path.join(podDir, 'network.json');

function portMappings(pod: Pod): PortMapping[] {
  return pod.spec.containers.flatMap((c) => (c.ports ?? []).filter((p) => p.hostPort).map((p) => ({
    hostPort: p.hostPort!, containerPort: p.containerPort, protocol: p.protocol ?? 'TCP', ...(p.hostIP ? { hostIP: p.hostIP } : {}),
  })));
}

/**
 * Bring loopback up in a pod's network namespace. The infra container is
 * created with networking disabled (the engine makes no network sandbox for
 * it: runc's new namespace, with `lo` down), so this is the one step of the
 * engine's `none` network the pod still needs: 127.0.0.1 shared by its apps.
 */
export async function loopbackUp(netnsPath: string): Promise<void> {
  await loopbackUpInNetns(netnsPath).catch((err: Error) => {
    throw new UserError(`bringing loopback up in the pod's network namespace ${netnsPath} failed: ${err.message}`, {
      hint: 'the agent needs CAP_SYS_ADMIN and CAP_NET_ADMIN to enter the namespace and set lo up; is the infra container still running?',
    });
  });
}

export async function attachDockerPod(opts: PodNetworkOptions, podDir: string, uuid: string, pod: Pod, netnsPath: string): Promise<DockerPodNetworkRecord> {
  const network = await CniNetwork.load({ confDir: opts.confDir, binDirs: opts.binDirs, cacheDir: opts.cacheDir, networkName: opts.networkName });
  const record: DockerPodNetworkRecord = { network: network.name, cacheDir: network.cacheDir, binDirs: [...network.binDirs], ifName: IF_NAME, ips: [] };
  await atomicWriteJson(networkRecordFile(podDir), record);
  const md = pod.metadata;
  const result = await network.add({
    containerId: uuid, netnsPath, ifName: IF_NAME, podNamespace: md.namespace ?? 'default', podName: md.name, podUid: md.uid, portMappings: portMappings(pod),
  });
  const primary = podIP(result);
  record.ips = [...new Set([...(primary ? [primary] : []), ...podIPs(result)])];
  await atomicWriteJson(networkRecordFile(podDir), record);
  return record;
}

/** DEL from the recorded network's cache entry; idempotent (nothing recorded or cached: nothing to undo). */
export async function detachDockerPod(podDir: string, uuid: string, netnsPath?: string): Promise<void> {
  const record = await readJsonIfExists<DockerPodNetworkRecord>(networkRecordFile(podDir)).catch(() => undefined);
  if (!record) return;
  const probe = CniNetwork.fromConfig({ cniVersion: '1.0.0', name: record.network, plugins: [] }, { binDirs: record.binDirs, cacheDir: record.cacheDir });
  const entry = await probe.cached(uuid, record.ifName);
  if (entry) {
    const network = CniNetwork.fromConfig(entry.config, { binDirs: record.binDirs, cacheDir: record.cacheDir });
    // Never the path the cache recorded: ADD may have entered the namespace through a descriptor this process held
    // meanwhile (early-netns.ts), a path that names whatever that descriptor number holds now. No namespace: DEL without one.
    await network.del({ containerId: uuid, ifName: record.ifName, netnsPath: netnsPath ?? '' });
  }
  await fs.rm(networkRecordFile(podDir), { force: true });
}

export async function podIPsOf(podDir: string): Promise<string[]> {
  const record = await readJsonIfExists<DockerPodNetworkRecord>(networkRecordFile(podDir)).catch(() => undefined);
  return record?.ips ?? [];
}

/** After an ADD through a held namespace: the cache names the infra's own path, as an ADD after the start does. */
export async function recordDockerPodNetns(podDir: string, uuid: string, netnsPath: string): Promise<void> {
  const record = await readJsonIfExists<DockerPodNetworkRecord>(networkRecordFile(podDir)).catch(() => undefined);
  if (!record) return;
  const network = CniNetwork.fromConfig({ cniVersion: '1.0.0', name: record.network, plugins: [] }, { binDirs: record.binDirs, cacheDir: record.cacheDir });
  await network.recordNetnsPath(uuid, record.ifName, netnsPath);
}
