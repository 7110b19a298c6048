/**
 * What the tests of `up --nodes N` clusters share: kubectl against the
 * cluster's admin kubeconfig, and the teardown that runs `down` and then makes
 * sure nothing of the cluster outlives it (sandboxes, netns, the node bridge,
 * processes), removing and naming whatever did.
 */
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { isAlive } from '../../sandbox/proc.js';
import { getSandbox, stopSandbox } from '../../sandbox/sandbox.js';
import { CLI } from './node.js';
import { run, type Run } from './cluster.js';

/**
 * kubectl with the admin kubeconfig of the cluster in dataDir(); k throws with kubectl's stderr when it fails;
 * rollout waits for a Deployment's rollout and, when it times out, throws with what the cluster shows of it
 * (the Deployment, its ReplicaSets and pods with their conditions, the recent events).
 */
export function clusterKubectl(dataDir: () => string): {
  kubectl(args: string[], input?: string): Promise<Run>;
  k(args: string[], input?: string): Promise<string>;
  rollout(deployment: string, timeoutSeconds: number): Promise<void>;
} {
  const kubectl = (args: string[], input?: string): Promise<Run> => run('kubectl', args, { KUBECONFIG: path.join(dataDir(), 'kubeconfig') }, input);
  const k = async (args: string[], input?: string): Promise<string> => {
    const r = await kubectl(args, input);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr}`);
    return r.stdout;
  };
  return {
    kubectl,
    k,
    async rollout(deployment, timeoutSeconds) {
      const r = await kubectl(['rollout', 'status', `deployment/${deployment}`, `--timeout=${timeoutSeconds}s`]);
      if (r.code === 0) return;
      const show = async (args: string[]) => { const s = await kubectl(args); return `$ kubectl ${args.join(' ')}\n${s.stdout}${s.stderr}`; };
      const selector = (JSON.parse((await kubectl(['get', 'deployment', deployment, '-o', 'json'])).stdout || '{}').spec?.selector?.matchLabels ?? {}) as Record<string, string>;
      const labels = Object.entries(selector).map(([key, v]) => `${key}=${v}`).join(',');
      const shown = await Promise.all([
        show(['get', 'deployment', deployment, '-o', 'jsonpath={.metadata.generation} {.status}']),
        show(['get', 'replicasets,pods', '-o', 'wide', ...(labels ? ['-l', labels] : [])]),
        show(['get', 'pods', '-o', 'jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.conditions} {.status.containerStatuses}{"\\n"}{end}', ...(labels ? ['-l', labels] : [])]),
        show(['get', 'nodes', '-o', 'jsonpath={range .items[*]}{.metadata.name} {.spec.taints} {.status.conditions[?(@.type=="Ready")]}{"\\n"}{end}']),
        show(['get', 'events', '-A', '--sort-by=.lastTimestamp']),
      ]);
      throw new Error(`kubectl rollout status deployment/${deployment} did not finish in ${timeoutSeconds} s: ${r.stderr.trim()}\n${shown.join('\n')}`);
    },
  };
}

/**
 * `down` (when up.json is there), then every sandbox, netns, the bridge and the processes named are
 * checked: what is left is removed and the teardown fails naming it. The PIDs are read before `down`.
 */
export async function tearDownMultiNode(o: { dataDir: string; sandboxPrefix: string; nodes: string[]; nodeBridge: string; processes: Array<[string, number | undefined]> }): Promise<void> {
  const down: Run = existsSync(path.join(o.dataDir, 'up.json')) ? await run(process.execPath, [CLI, 'down', '--data-dir', o.dataDir]) : { code: 0, stdout: '', stderr: '' };
  const leftovers: string[] = [];
  for (const [what, pid] of o.processes) {
    if (pid && (await isAlive(pid))) { leftovers.push(`${what} pid ${pid}`); process.kill(pid, 'SIGKILL'); }
  }
  for (const n of o.nodes) {
    const sandbox = `${o.sandboxPrefix}-${n}`;
    if (await getSandbox(sandbox)) { leftovers.push(`sandbox ${sandbox}`); await stopSandbox(sandbox); }
    if (existsSync(`/run/netns/${sandbox}`)) { leftovers.push(`netns ${sandbox}`); await run('ip', ['netns', 'del', sandbox]); }
  }
  if (existsSync(`/sys/class/net/${o.nodeBridge}`)) { leftovers.push(`bridge ${o.nodeBridge}`); await run('ip', ['link', 'del', o.nodeBridge]); }
  await fs.rm(o.dataDir, { recursive: true, force: true });
  if (down.code !== 0 || leftovers.length) throw new Error(`stevedore down failed (exit ${down.code}: ${down.stderr.trim()}); left behind: ${leftovers.join(', ') || 'nothing'}`);
}
