/**
 * The pod's /etc/resolv.conf for runtime-docker: cni/podfiles.ts's, from the
 * pod spec (the environment is runtime-api/pod-env.ts's, as rkt's).
 */
import { podResolvConfText, type ClusterDnsConfig } from '../cni/index.js';
import type { Pod } from './types.js';

export type { ClusterDnsConfig } from '../cni/index.js';

export const resolvConfText = (pod: Pod, clusterDns?: ClusterDnsConfig): Promise<string> =>
  podResolvConfText({ dnsPolicy: pod.spec.dnsPolicy, dnsConfig: pod.spec.dnsConfig, namespace: pod.metadata.namespace ?? 'default', hostNetwork: pod.spec.hostNetwork === true }, clusterDns);
