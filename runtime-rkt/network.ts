import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { UserError } from '../common/errors.js';
import { exists, readJsonIfExists, replaceFileSync } from '../common/fsutil.js';
import {
  CniNetwork, configFiles, podHostsFile, podIP, podIPs, podResolvConfText, releaseStaleAttachments, releaseStaleLeases,
  type ClusterDnsConfig, type PortMapping, type ReleasedLease,
} from '../cni/index.js';
import { podPaths, type PreparedPod } from '../stage1/contract.js';
import type { Pod } from '../runtime-api/pod-spec.js';
import type { PodNetworkOptions } from '../runtime-api/network.js';
export type { ClusterDnsConfig } from '../cni/index.js';
export type { PodNetworkOptions } from '../runtime-api/network.js';

/**
 * `<pod>/network.json`: written *before* CNI ADD (ips empty) and again after
 * it, so whoever takes the pod apart knows which network and cache to DEL
 * from, whatever the runtime's options are by then.
 */
export interface PodNetworkRecord {
  network: string;
  cacheDir: string;
  binDirs?: string[];
  ifName: string;
  /** primary first; empty until ADD finished */
  ips: string[];
}

export interface PodNetworkStatus { name: string; ifName: string; ips: string[] }

const IF_NAME = 'eth0';

/** Pods that get a CNI network: their own network namespace (namespaces and kvm stage1s, not hostNetwork). */
export function needsPodNetwork(pod: Pod, stage1: string): boolean {
  return (stage1 === 'namespaces' || stage1 === 'kvm') && pod.spec.hostNetwork !== true;
}

/** The bare CLI networks pods only when the conf dir holds a network config. */
export async function hasNetworkConfig(confDir: string): Promise<boolean> {
  return (await configFiles(confDir).catch(() => [])).length > 0;
}

export function loadNetwork(opts: PodNetworkOptions): Promise<CniNetwork> {
  return CniNetwork.load({ confDir: opts.confDir, binDirs: opts.binDirs, cacheDir: opts.cacheDir, networkName: opts.networkName });
}

function portMappings(pod: Pod): PortMapping[] {
  return pod.spec.containers.flatMap((c) => (c.ports ?? []).filter((p) => p.hostPort).map((p) => ({
    hostPort: p.hostPort!, containerPort: p.containerPort, protocol: p.protocol ?? 'TCP', ...(p.hostIP ? { hostIP: p.hostIP } : {}),
  })));
}

export const netnsPath = (podDir: string) => path.join(podPaths(podDir).stage1, 'ns', 'net');

/**
 * Attach a prepared pod (its netns exists, no app runs yet) to the network and
 * write its /etc/hosts and /etc/resolv.conf. ADD rolls itself back when it
 * fails; anything a crash leaves is DELeted by detachPod from the record.
 */
export async function attachPod(network: CniNetwork, pod: PreparedPod): Promise<PodNetworkRecord> {
  const record = await recordAttachment(network, pod.dir);
  await addToNetwork(network, record, pod.manifest.uuid, pod.manifest.pod, { path: netnsPath(pod.dir) });
  await writeAttachment(pod, record);
  return record;
}

/**
 * attachPod's first step: the record without IPs, before ADD, so that a crash from here on is DELeted.
 * Replaced atomically, not fsynced: after a power loss the CNI cache entry ADD syncs before its first plugin
 * is the record GC DELs from (cni/README.md), whatever became of this one.
 */
export async function recordAttachment(network: CniNetwork, podDir: string): Promise<PodNetworkRecord> {
  const record: PodNetworkRecord = { network: network.name, cacheDir: network.cacheDir, binDirs: [...network.binDirs], ifName: IF_NAME, ips: [] };
  replaceFileSync(podPaths(podDir).network, JSON.stringify(record, null, 2) + '\n');
  return record;
}

/**
 * attachPod's second step: CNI ADD, the IPs into `record` (not written). `netns.path` may be valid
 * only during the ADD (a descriptor the caller holds while the pod directory moves); the CNI cache
 * then records `netns.cachedPath`.
 */
export async function addToNetwork(network: CniNetwork, record: PodNetworkRecord, uuid: string, pod: Pod, netns: { path: string; cachedPath?: string }): Promise<void> {
  const md = pod.metadata;
  const result = await network.add({
    containerId: uuid, netnsPath: netns.path, ...(netns.cachedPath ? { cachedNetnsPath: netns.cachedPath } : {}), ifName: IF_NAME,
    podNamespace: md.namespace ?? 'default', podName: md.name, podUid: md.uid, portMappings: portMappings(pod),
  });
  const primary = podIP(result);
  record.ips = [...new Set([...(primary ? [primary] : []), ...podIPs(result)])];
}

/**
 * attachPod's last step, into the pod's directory as it is now: the record with the IPs, and /etc/hosts naming them.
 * Replaced atomically but not fsynced (on the start path of every app, ~2 ms each), and synchronously
 * (replaceFileSync): both describe a network namespace that does not outlive the node's boot, and the record
 * written before ADD (recordAttachment) is all a removal after a crash needs to find the CNI cache.
 */
export async function writeAttachment(pod: PreparedPod, record: PodNetworkRecord): Promise<void> {
  const spec = pod.manifest.pod;
  replaceFileSync(podPaths(pod.dir).network, JSON.stringify(record, null, 2) + '\n');
  replaceFileSync(podPaths(pod.dir).etc('hosts'), podHostsFile({
    hostname: pod.manifest.hostname, subdomain: spec.spec.subdomain, namespace: spec.metadata.namespace ?? 'default',
    podIPs: record.ips, hostAliases: spec.spec.hostAliases,
  }));
}

/** A pod's resolv.conf: cni/podfiles.ts's, from the pod spec. */
export const podResolvConfTextFor = (pod: Pod, clusterDns?: ClusterDnsConfig): Promise<string> =>
  podResolvConfText({ dnsPolicy: pod.spec.dnsPolicy, dnsConfig: pod.spec.dnsConfig, namespace: pod.metadata.namespace ?? 'default', hostNetwork: pod.spec.hostNetwork === true }, clusterDns);

/**
 * DEL the pod from the network it was attached to, from its record and the
 * CNI cache (the cache holds the exact config ADD ran). Idempotent: nothing
 * recorded or nothing cached means nothing to undo. Call before stage1
 * cleanup unmounts the netns, so the veth is removed explicitly.
 */
export async function detachPod(podDir: string, uuid: string): Promise<void> {
  const record = await readJsonIfExists<PodNetworkRecord>(podPaths(podDir).network).catch(() => undefined);
  if (!record) return;
  const probe = CniNetwork.fromConfig({ cniVersion: '1.0.0', name: record.network, plugins: [] }, { binDirs: record.binDirs, cacheDir: record.cacheDir });
  const entry = await probe.cached(uuid, record.ifName);
  if (entry) {
    const network = CniNetwork.fromConfig(entry.config, { binDirs: record.binDirs, cacheDir: record.cacheDir });
    const ns = netnsPath(podDir);
    await network.del({ containerId: uuid, ifName: record.ifName, ...((await exists(ns)) ? { netnsPath: ns } : {}) });
  } else {
    // ADD never got as far as its cache entry (no plugin ran): only a killed writer's temporary file can be there.
    await probe.forget(uuid, record.ifName);
  }
  await fs.rm(podPaths(podDir).network, { force: true });
}


/** A pod's networks from its network.json text (as a PodFileCache holds it). */
export function podNetworkFrom(raw: string | undefined): PodNetworkStatus[] | undefined {
  if (!raw) return undefined;
  try {
    const record = JSON.parse(raw) as PodNetworkRecord;
    return record.ips?.length ? [{ name: record.network, ifName: record.ifName, ips: record.ips }] : undefined;
  } catch {
    return undefined;
  }
}

/**
 * IP-leak GC: every lease and cached attachment of a pod that neither exists
 * nor is being created goes. Cached attachments are DELeted from their own
 * cache entries first, so this works even while the conf dir is broken or
 * after the network was renamed; leases without a cache entry need the
 * current config (to know where host-local keeps them). Errors are thrown
 * after both steps ran.
 */
export async function releaseLeases(opts: PodNetworkOptions, liveUuids: Set<string>, graceMs?: number): Promise<ReleasedLease[]> {
  const released: ReleasedLease[] = [];
  const errors: string[] = [];
  await releaseStaleAttachments(opts.cacheDir, liveUuids, { binDirs: opts.binDirs, graceMs })
    .then((r) => released.push(...r), (err: Error) => errors.push(err.message));
  if (await hasNetworkConfig(opts.confDir)) {
    await loadNetwork(opts).then((network) => releaseStaleLeases(network, liveUuids, { graceMs }))
      .then((r) => released.push(...r), (err: Error) => errors.push(err.message));
  }
  if (errors.length) {
    const done = released.map((r) => `${r.containerId} ${r.ips.join(',')}`).join('; ');
    throw new UserError(`IP-leak GC: ${errors.join('; ')}${done ? ` (released meanwhile: ${done})` : ''}`, { hint: 'fix the CNI config or plugins; the next gc retries' });
  }
  return released;
}
