/**
 * The pod network across nodes, host-gw style (flannel's host-gw backend,
 * kindnet): every node sits on one L2 segment, so a pod on another node is
 * reached by routing that node's pod CIDR (Node spec.podCIDR) via its address
 * (InternalIP). This keeps those routes in the agent's network namespace in
 * step with the Nodes: added when a node appears, replaced when its address
 * changes, removed when it goes. No encapsulation and no NAT: pods see each
 * other's real addresses.
 *
 * Our routes carry a protocol number of their own (`proto 159`), so a
 * restarted agent finds the routes it made earlier and removes stale ones
 * without touching anyone else's.
 */
import { execa } from 'execa';
import type { Logger } from '../common/log.js';
import { UserError } from '../common/errors.js';
import { apiStatus, type KubeClients } from './kube.js';

/** The kernel route protocol marking routes this module owns (any value 5-255 the system does not use; 159 is unassigned). */
export const NODE_ROUTES_PROTO = 159;
const RESYNC_MS = 3000;
const CIDR_RE = /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/;
const IPV4_RE = /^\d{1,3}(\.\d{1,3}){3}$/;

export interface NodeLike {
  metadata?: { name?: string };
  spec?: { podCIDR?: string; podCIDRs?: string[] };
  status?: { addresses?: Array<{ type?: string; address?: string }> };
}

/** podCIDR → gateway for every node but this one that has both an IPv4 pod CIDR and an IPv4 InternalIP. */
export function desiredRoutes(nodes: NodeLike[], self: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const n of nodes) {
    if (n.metadata?.name === self) continue;
    const via = n.status?.addresses?.find((a) => a.type === 'InternalIP' && IPV4_RE.test(a.address ?? ''))?.address;
    if (!via) continue;
    for (const cidr of n.spec?.podCIDRs ?? (n.spec?.podCIDR ? [n.spec.podCIDR] : [])) if (CIDR_RE.test(cidr)) out.set(cidr, via);
  }
  return out;
}

async function ip(args: string[]): Promise<string> {
  const r = await execa('ip', args, { reject: false });
  if (r.exitCode !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Our routes now in this netns: destination → gateway. */
export async function currentRoutes(): Promise<Map<string, string>> {
  const rows = JSON.parse((await ip(['-j', '-4', 'route', 'show', 'proto', String(NODE_ROUTES_PROTO)])) || '[]') as Array<{ dst?: string; gateway?: string }>;
  return new Map(rows.filter((r) => r.dst && r.gateway).map((r) => [r.dst!, r.gateway!]));
}

/** Makes the routes match `want`; returns what it changed. */
export async function syncRoutes(want: Map<string, string>): Promise<{ added: string[]; removed: string[] }> {
  const have = await currentRoutes();
  const added: string[] = [];
  const removed: string[] = [];
  for (const [dst, via] of want) {
    if (have.get(dst) === via) continue;
    await ip(['route', 'replace', dst, 'via', via, 'proto', String(NODE_ROUTES_PROTO)]);
    added.push(`${dst} via ${via}`);
  }
  for (const dst of have.keys()) {
    if (want.has(dst)) continue;
    await ip(['route', 'del', dst, 'proto', String(NODE_ROUTES_PROTO)]);
    removed.push(dst);
  }
  return { added, removed };
}

/**
 * Keeps the routes in step with the Nodes, by a list every few seconds (a
 * cluster's Nodes change rarely; a missed watch event costs at most one period).
 */
export class NodeRoutes {
  constructor(private readonly kube: KubeClients, private readonly nodeName: string, private readonly log: Logger) {}

  async syncOnce(): Promise<void> {
    const list = await this.kube.core.listNode();
    const { added, removed } = await syncRoutes(desiredRoutes(list.items as NodeLike[], this.nodeName));
    if (added.length || removed.length) this.log.info({ added, removed }, 'pod routes to other nodes updated');
  }

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.syncOnce().catch((err) => this.log.warn({ err: String(err) }, 'pod routes to other nodes not synced; retrying (the routes stay as they are)'));
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, RESYNC_MS);
        signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
      });
    }
  }
}

const POD_CIDR_WAIT_MS = 120_000;

/**
 * The kubelet's way in a cluster: the pod CIDR is the Node's spec.podCIDR,
 * which the control plane's node IPAM sets. The Node is created bare when it
 * does not exist yet (registration fills in labels and status later; the spec
 * is left alone), then this waits for the allocation.
 */
export async function podCidrFromNode(kube: KubeClients, nodeName: string, log: Logger): Promise<string> {
  const deadline = Date.now() + POD_CIDR_WAIT_MS;
  let last = '';
  for (;;) {
    try {
      const node = await kube.core.readNode({ name: nodeName }).catch(async (err: unknown) => {
        if (apiStatus(err) !== 404) throw err;
        return kube.core.createNode({ body: { apiVersion: 'v1', kind: 'Node', metadata: { name: nodeName, labels: { 'kubernetes.io/hostname': nodeName } } } });
      });
      const cidr = node.spec?.podCIDR;
      if (cidr && CIDR_RE.test(cidr)) {
        log.info({ node: nodeName, podCIDR: cidr }, 'pod CIDR from the Node');
        return cidr;
      }
      last = 'the Node has no spec.podCIDR yet';
    } catch (err) {
      last = String(err);
    }
    if (Date.now() > deadline) {
      throw new UserError(`no pod CIDR for node ${nodeName} after ${POD_CIDR_WAIT_MS / 1000} s (${last})`, { hint: 'start the control plane with --allocate-node-cidrs --cluster-cidr CIDR, or give the agent --pod-cidr instead of --pod-cidr-from-node' });
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
