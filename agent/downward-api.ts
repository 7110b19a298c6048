import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { ContainerConfigError } from '../common/errors.js';
import { parseQuantity } from '../common/quantity.js';

/** What the node has to give, for resourceFieldRef limits a container does not set (the kubelet uses node allocatable). */
export interface NodeAllocatable { cpuMillis: number; memoryBytes: number; ephemeralStorageBytes: number }

/** What only the node knows about the pod: its host IP (and the pod IP, for pods on the node's network). */
export interface DownwardContext { hostIP: string; podIPs?: string[] }

/** `metadata.labels['k']` → ['labels', 'k'] (the kubelet's SplitMaybeSubscriptedPath). */
function subscripted(fieldPath: string): { map: 'labels' | 'annotations'; key: string } | undefined {
  const m = /^metadata\.(labels|annotations)\['(.*)'\]$/.exec(fieldPath);
  return m ? { map: m[1] as 'labels' | 'annotations', key: m[2]! } : undefined;
}

/** A map as the downward API writes it into a volume file: sorted `key="value"` lines (Go's %q quoting), no final newline. */
export function formatMap(m: Record<string, string> | undefined): string {
  return Object.keys(m ?? {}).sort().map((k) => `${k}=${JSON.stringify(m![k])}`).join('\n');
}

/**
 * The value of a downward-API field path (validated by validatePod: env and
 * volumes each allow their own set). status.podIP/podIPs need `ctx.podIPs`.
 */
export function fieldValue(pod: V1Pod, fieldPath: string, ctx: DownwardContext): string {
  const md = pod.metadata ?? {};
  const sub = subscripted(fieldPath);
  if (sub) return md[sub.map]?.[sub.key] ?? '';
  switch (fieldPath) {
    case 'metadata.name': return md.name ?? '';
    case 'metadata.namespace': return md.namespace ?? 'default';
    case 'metadata.uid': return md.uid ?? '';
    case 'metadata.labels': return formatMap(md.labels);
    case 'metadata.annotations': return formatMap(md.annotations);
    case 'spec.nodeName': return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName': return pod.spec?.serviceAccountName ?? '';
    case 'status.hostIP': return ctx.hostIP;
    case 'status.hostIPs': return ctx.hostIP;
    case 'status.podIP': return ctx.podIPs?.[0] ?? '';
    case 'status.podIPs': return (ctx.podIPs ?? []).join(',');
    default: throw new ContainerConfigError(`unsupported fieldPath: ${fieldPath}`);
  }
}

/**
 * `resourceFieldRef`: the container's limit or request divided by the
 * divisor and rounded up, as the kubelet computes it (cpu in millicores:
 * ceil(milli / divisor's milli)); a limit the container does not set is the
 * node's allocatable; a request it does not set is its limit (the API
 * server's defaulting), else 0.
 */
export function resourceValue(pod: V1Pod, containerName: string, resource: string, divisor: string | number | undefined, node: NodeAllocatable): string {
  const c: V1Container | undefined = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].find((x) => x.name === containerName);
  if (!c) throw new ContainerConfigError(`resourceFieldRef: container "${containerName}" is not in the pod`);
  const [section, name] = resource.split(/\.(.*)/s) as ['limits' | 'requests', string];
  const limits = c.resources?.limits ?? {};
  const requests = c.resources?.requests ?? {};
  const raw = section === 'limits' ? limits[name] : requests[name] ?? limits[name];
  const where = `resourceFieldRef ${resource} of container "${containerName}"`;
  const div = parseQuantity(divisor ?? '1', `${where}: divisor`);
  if (name === 'cpu') {
    const millis = raw !== undefined ? Math.ceil(parseQuantity(raw, where) * 1000 - 1e-9) : section === 'limits' ? node.cpuMillis : 0;
    return String(Math.ceil(millis / Math.ceil(div * 1000 - 1e-9)));
  }
  const bytes = raw !== undefined ? Math.ceil(parseQuantity(raw, where) - 1e-9) : section === 'limits' ? (name === 'memory' ? node.memoryBytes : node.ephemeralStorageBytes) : 0;
  return String(Math.ceil(bytes / div));
}
