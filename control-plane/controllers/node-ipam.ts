/**
 * Node IPAM, as kube-controller-manager's range allocator
 * (`--allocate-node-cidrs --cluster-cidr C --node-cidr-mask-size N`): every
 * Node without `spec.podCIDR` gets the first free /N of the cluster CIDR
 * (also in `spec.podCIDRs`). A Node that came with a pod CIDR of its own
 * keeps it, and its range is never handed out again. The allocations live
 * in the Nodes themselves, so a restarted control plane rebuilds the used set
 * from them and hands out the same ranges; a deleted Node's range is free
 * again. When the cluster CIDR is exhausted the Node gets a `CIDRNotAvailable`
 * event and stays without a pod CIDR, as upstream.
 */
import type { Logger } from '../../common/log.js';
import { InvalidInput } from '../../common/errors.js';
import { ApiError } from '../resources.js';
import type { Store } from '../store.js';
import type { EventRecorder } from './events.js';
import { Loop, type ApiClient } from './client.js';

export interface NodeIpamOptions {
  clusterCidr: string;
  /** Prefix length of each node's range (kube-controller-manager's default for IPv4: 24). */
  nodeCidrMaskSize?: number;
}

function parseCidr(cidr: string): { base: number; prefix: number } | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  if (!m) return undefined;
  const octets = m.slice(1, 5).map(Number);
  const prefix = Number(m[5]);
  if (octets.some((o) => o > 255) || prefix > 32) return undefined;
  const addr = ((octets[0]! << 24) >>> 0) + (octets[1]! << 16) + (octets[2]! << 8) + octets[3]!;
  const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
  return { base: (addr & mask) >>> 0, prefix };
}
const format = (n: number, prefix: number) => `${[24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.')}/${prefix}`;

/** Checks the options; throws InvalidInput naming the flag. */
export function validateNodeIpam(o: NodeIpamOptions): Required<NodeIpamOptions> {
  const size = o.nodeCidrMaskSize ?? 24;
  const c = parseCidr(o.clusterCidr);
  if (!c) throw new InvalidInput(`--cluster-cidr ${o.clusterCidr} is not an IPv4 CIDR`, 'e.g. 10.88.0.0/16');
  if (!Number.isInteger(size) || size < c.prefix || size > 30) throw new InvalidInput(`--node-cidr-mask-size ${size} does not fit --cluster-cidr ${o.clusterCidr}`, `use ${c.prefix}-30 (default 24)`);
  return { clusterCidr: o.clusterCidr, nodeCidrMaskSize: size };
}

/** The first /size range of clusterCidr that overlaps none of `used` (pure). */
export function nextFreeCidr(clusterCidr: string, size: number, used: Iterable<string>): string | undefined {
  const c = parseCidr(clusterCidr)!;
  const taken = [...used].map(parseCidr).filter((u): u is { base: number; prefix: number } => u !== undefined);
  const step = 2 ** (32 - size);
  const count = 2 ** (size - c.prefix);
  for (let i = 0; i < count; i++) {
    const start = c.base + i * step;
    const end = start + step - 1;
    const overlaps = taken.some((t) => {
      const tEnd = t.base + 2 ** (32 - t.prefix) - 1;
      return t.base <= end && start <= tEnd;
    });
    if (!overlaps) return format(start, size);
  }
  return undefined;
}

export class NodeIpamController extends Loop {
  private readonly opts: Required<NodeIpamOptions>;
  private readonly exhaustedReported = new Set<string>();

  constructor(store: Store, private readonly log: Logger, private readonly events: EventRecorder, private readonly client: ApiClient, opts: NodeIpamOptions) {
    super(store, ['nodes'], 10_000);
    this.opts = validateNodeIpam(opts);
  }

  protected pass(): void {
    const nodes = this.store.listShared('nodes');
    const used = new Set<string>(nodes.flatMap((n) => (n.spec?.podCIDRs as string[] | undefined) ?? (n.spec?.podCIDR ? [n.spec.podCIDR as string] : [])));
    for (const node of nodes) {
      if (node.spec?.podCIDR || node.metadata.deletionTimestamp) continue;
      const name: string = node.metadata.name;
      const cidr = nextFreeCidr(this.opts.clusterCidr, this.opts.nodeCidrMaskSize, used);
      if (!cidr) {
        if (!this.exhaustedReported.has(name)) {
          this.exhaustedReported.add(name);
          this.events.record(node, 'Normal', 'CIDRNotAvailable', `Node ${name} status is now: CIDRNotAvailable`, 'cidrAllocator');
          this.log.warn({ node: name, clusterCidr: this.opts.clusterCidr }, 'no pod CIDR left for the node');
        }
        continue;
      }
      try {
        this.client.update('nodes', '', { ...node, spec: { ...node.spec, podCIDR: cidr, podCIDRs: [cidr] } });
        used.add(cidr);
        this.exhaustedReported.delete(name);
        this.events.record(node, 'Normal', 'CIDRAssignmentSucceeded', `Node ${name} got pod CIDR ${cidr}`, 'cidrAllocator');
        this.log.info({ node: name, podCIDR: cidr }, 'pod CIDR allocated');
      } catch (err) {
        if (err instanceof ApiError && (err.code === 409 || err.code === 404)) continue;
        this.log.error({ err, node: name }, 'allocating a pod CIDR failed');
      }
    }
  }
}
