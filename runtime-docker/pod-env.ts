/**
 * What runtime-docker makes of the pod spec's environment and DNS, by the
 * kubelet's rules: `$(VAR)` expansion of env values (against the variables
 * before them), command and args (against all of them); status.podIP and
 * status.podIPs, the one downward-API value only the runtime knows; the
 * pod's /etc/resolv.conf per dnsPolicy (cni/podfiles does the policy). Every
 * other env source is the agent's to resolve: one still here is refused.
 */
import * as fs from 'node:fs/promises';
import { ContainerConfigError } from '../common/errors.js';
import { expandVars } from '../common/var-expansion.js';
import { podResolvConf } from '../cni/index.js';
import type { ContainerSpec, Pod } from './types.js';

const POD_IP_FIELDS = ['status.podIP', 'status.podIPs'];

/** Refuse env sources only the agent can resolve (ConfigMaps, Secrets, the rest of the downward API, envFrom). */
export function checkResolvedEnv(pod: Pod): void {
  const problems: string[] = [];
  pod.spec.containers.forEach((c, ci) => {
    if (c.envFrom?.length) problems.push(`spec.containers[${ci}].envFrom (the agent turns it into env)`);
    (c.env ?? []).forEach((e, ei) => {
      if (e.valueFrom && !POD_IP_FIELDS.includes(e.valueFrom.fieldRef?.fieldPath ?? '')) problems.push(`spec.containers[${ci}].env[${ei}].valueFrom (${Object.keys(e.valueFrom).join(', ')})`);
    });
  });
  if (problems.length) throw new ContainerConfigError(`unresolved environment sources: ${problems.join('; ')}`, 'run the pod through the agent, which resolves them into values');
}

/** The container's variables in order, expanded; `podIPs` (primary first) fill status.podIP/podIPs. */
export function containerEnv(c: ContainerSpec, podIPs: string[]): Map<string, string> {
  const env = new Map<string, string>();
  const lookup = (name: string) => env.get(name);
  for (const e of c.env ?? []) {
    const field = e.valueFrom?.fieldRef?.fieldPath;
    if (field === 'status.podIP') env.set(e.name, podIPs[0] ?? '');
    else if (field === 'status.podIPs') env.set(e.name, podIPs.join(','));
    else env.set(e.name, e.value ? expandVars(e.value, lookup) : '');
  }
  return env;
}

/** command and args with `$(VAR)` expanded against the container's env (the image's Entrypoint and Cmd never are). */
export function expandedCommand(c: ContainerSpec, env: Map<string, string>): { command?: string[]; args?: string[] } {
  const lookup = (name: string) => env.get(name);
  return {
    ...(c.command ? { command: c.command.map((s) => expandVars(s, lookup)) } : {}),
    ...(c.args ? { args: c.args.map((s) => expandVars(s, lookup)) } : {}),
  };
}

export interface ClusterDnsConfig { servers: string[]; domain: string }

/** The node's resolv.conf as the kubelet picks it: systemd-resolved's stub (127.0.0.53) is useless in a pod's netns. */
async function nodeResolvConf(): Promise<string | undefined> {
  const text = await fs.readFile('/etc/resolv.conf', 'utf8').catch(() => undefined);
  if (text !== undefined && /^\s*nameserver\s+127\.0\.0\.53\b/m.test(text)) return fs.readFile('/run/systemd/resolve/resolv.conf', 'utf8').catch(() => text);
  return text;
}

/** /etc/resolv.conf per dnsPolicy/dnsConfig; without cluster DNS, ClusterFirst means the node's servers (the kubelet's fallback). */
export async function resolvConfText(pod: Pod, clusterDns?: ClusterDnsConfig): Promise<string> {
  return podResolvConf({
    dnsPolicy: pod.spec.dnsPolicy, dnsConfig: pod.spec.dnsConfig, nodeResolvConf: await nodeResolvConf(),
    ...(clusterDns?.servers.length ? { clusterDNS: clusterDns.servers, clusterDomain: clusterDns.domain } : {}),
    namespace: pod.metadata.namespace ?? 'default', hostNetwork: pod.spec.hostNetwork === true,
  }).content;
}
