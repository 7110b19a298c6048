/**
 * `stevedore hollow-nodes --count N --server URL --control-plane-dir D`: one
 * process hosting N hollow nodes (hollow-1…hollow-N), as kubemark's hollow
 * kubelets. Each is the real agent (agent/startAgent: registration, Lease,
 * pod sync, status, events, node API) over the hollow runtime
 * (runtime-hollow/), which only pretends to run pods; each has a node
 * identity of its own from the cluster CA, as `up --nodes` gives real nodes
 * (control-plane/pki.ts issueNodeCredentials), so the Node authorizer treats
 * every one as the node it is.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { InvalidInput, UserError } from '../common/errors.js';
import { parseDuration } from '../common/format.js';
import { createLogger } from '../common/log.js';
import { issueNodeCredentials, nodeCredentialFiles, writeNodeCredentials } from '../control-plane/pki.js';
import type { RunningAgent } from '../agent/agent.js';

export interface HollowNodesOptions {
  count: number;
  /** The control plane URL the nodes' kubeconfigs point at. */
  server: string;
  /** The control plane's data dir: its pki/ holds the cluster CA the nodes' certificates come from. */
  controlPlaneDir: string;
  /** Each node's files (credentials, the agent's data dir) under <dataDir>/hollow-i. */
  dataDir: string;
  namePrefix: string;
  /** hollow-i serves its node API on 127.0.0.1:(base + i). */
  nodeApiPortBase: number;
  startDelayMs: number;
  heartbeatSeconds?: number;
  syncPeriodSeconds?: number;
}

const MAX_HOLLOW_NODES = 1000;

/** Names and node API ports of the hollow nodes (pure: unit-tested). */
export function planHollowNodes(o: Pick<HollowNodesOptions, 'count' | 'namePrefix' | 'nodeApiPortBase'>): Array<{ name: string; port: number }> {
  if (!Number.isInteger(o.count) || o.count < 1 || o.count > MAX_HOLLOW_NODES) throw new InvalidInput(`--count ${o.count} is not a number of nodes`, `use 1-${MAX_HOLLOW_NODES}`);
  if (!/^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$/.test(o.namePrefix)) throw new InvalidInput(`--name-prefix ${JSON.stringify(o.namePrefix)} cannot start a node name`, 'use lower-case letters, digits and dashes, e.g. hollow');
  if (!Number.isInteger(o.nodeApiPortBase) || o.nodeApiPortBase < 1024 || o.nodeApiPortBase + o.count > 65535) {
    throw new InvalidInput(`--node-api-port-base ${o.nodeApiPortBase} leaves no room for ${o.count} node API ports`, 'node i listens on base+i: pick a base from 1024 to 65535 minus the count');
  }
  return Array.from({ length: o.count }, (_, i) => ({ name: `${o.namePrefix}-${i + 1}`, port: o.nodeApiPortBase + i + 1 }));
}

/** Run `fn` over `items`, at most `limit` at once (openssl is a process per certificate). */
async function eachLimited<T>(items: T[], limit: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

export async function hollowNodes(o: HollowNodesOptions): Promise<void> {
  const plan = planHollowNodes(o);
  try {
    new URL(o.server);
  } catch {
    throw new InvalidInput(`--server ${o.server} is not a URL`, 'pass the control plane URL, e.g. https://127.0.0.1:6443');
  }
  const caKey = path.join(o.controlPlaneDir, 'pki', 'ca.key');
  if (!(await fs.access(caKey).then(() => true, () => false))) {
    throw new UserError(`no cluster CA key at ${caKey}`, { hint: '--control-plane-dir is the control plane\'s --data-dir (with `stevedore up`, <data dir>/control-plane): the nodes\' certificates are issued from its CA' });
  }
  const startDelay = o.startDelayMs;
  const log = createLogger('hollow-nodes', process.env.STEVEDORE_LOG_LEVEL ?? 'warn');
  // Loaded here: the agent's modules (and the hollow runtime) only for this command.
  const [{ startAgent }, { loadAgentConfig }, { hollowRuntimeFactory }] = await Promise.all([
    import('../agent/agent.js'), import('../agent/config.js'), import('../runtime-hollow/index.js'),
  ]);
  const runtimes = { hollow: hollowRuntimeFactory(startDelay) };

  // 1. Identities: a client certificate (system:node:NAME) and a node API serving pair per node, kept for the next start.
  const t0 = Date.now();
  await eachLimited(plan, 4, async (n) => {
    const files = nodeCredentialFiles(path.join(o.dataDir, n.name, 'pki'));
    const have = await fs.access(files.kubeconfig).then(() => true, () => false);
    if (!have) await writeNodeCredentials(await issueNodeCredentials(o.controlPlaneDir, n.name, ['127.0.0.1']), o.server, files, n.name);
  });
  process.stdout.write(`${plan.length} hollow node identities ready (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);

  // 2. The agents, side by side in this process; each has its own clients, runtime, sync loop and node API.
  const agents: RunningAgent[] = [];
  let stopping = false;
  const stopAll = async () => {
    stopping = true;
    await Promise.all(agents.map((a) => a.stop().catch((err) => log.warn({ node: a.nodeName, err: String(err) }, 'hollow node did not stop cleanly'))));
  };
  const signalled = new Promise<void>((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => resolve());
  });
  const starting = eachLimited(plan, 10, async (n) => {
    if (stopping) return;
    const files = nodeCredentialFiles(path.join(o.dataDir, n.name, 'pki'));
    const cfg = await loadAgentConfig({
      containerRuntime: 'hollow', kubeconfig: files.kubeconfig, nodeName: n.name, dataDir: path.join(o.dataDir, n.name, 'data'),
      nodeIP: '127.0.0.1', port: n.port, tlsCertFile: files.servingCert, tlsPrivateKeyFile: files.servingKey, clientCaFile: files.caCert,
      // No nftables, DNS server or routes: a hollow node has no network of its own to program.
      proxyMode: 'none', podCidrFromNode: true,
      ...(o.heartbeatSeconds !== undefined ? { heartbeatSeconds: o.heartbeatSeconds } : {}),
      ...(o.syncPeriodSeconds !== undefined ? { syncPeriodSeconds: o.syncPeriodSeconds } : {}),
    });
    agents.push(await startAgent(cfg, runtimes, { log }));
  });
  try {
    await starting;
  } catch (err) {
    // One node that cannot start (its node API port taken…) fails the whole command: the others are stopped
    // rather than left running half a fleet, and the process ends even if a connection lingers.
    await stopAll();
    setTimeout(() => process.exit(process.exitCode ?? 1), 2000).unref();
    throw err;
  }
  process.stdout.write(`${agents.length} hollow nodes running (${plan[0]!.name}…${plan.at(-1)!.name}); stop with SIGTERM or Ctrl-C\n`);
  await signalled;
  await stopAll();
  process.stdout.write(`${agents.length} hollow nodes stopped (their Nodes turn NotReady after the control plane's --node-monitor-grace-period)\n`);
  process.exit(0);
}

/** --start-delay as ms (a duration: 50ms, 1s, 0). */
export function parseStartDelay(text: string): number {
  let ms: number;
  try { ms = parseDuration(text); } catch { ms = NaN; }
  if (!Number.isFinite(ms) || ms < 0) throw new InvalidInput(`--start-delay ${text} is not a duration`, 'e.g. 50ms, 1s or 0');
  return ms;
}
