/**
 * Runs inside a node sandbox (execInSandbox) and drives the runtime
 * in-process, as the agent does: creates or removes many pods with bounded
 * concurrency, so a test can churn 50 networked pods without paying a CLI
 * process per pod. Prints one JSON document on stdout.
 *
 *   node pod-churn.js run <request.json>   → [{ name, uuid, ips }]
 *   node pod-churn.js rm  <request.json>   → { removed: n }
 *
 * request.json: { dataDir, network: PodNetworkOptions, concurrency, pods?: Pod[], uuids?: string[] }
 */
import * as fs from 'node:fs/promises';
import { RktRuntime } from '../../runtime-rkt/runtime.js';
import type { Pod } from '../../runtime-api/pod-spec.js';
import type { PodNetworkOptions } from '../../runtime-rkt/network.js';

export interface ChurnRequest {
  dataDir: string;
  network: PodNetworkOptions;
  concurrency: number;
  pods?: Pod[];
  uuids?: string[];
}

export interface ChurnPod { name: string; uuid: string; ips: string[] }

/** Run `fn` over `items`, at most `limit` at a time; results in input order. */
export async function bounded<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

async function main(): Promise<void> {
  const [phase, file] = process.argv.slice(2);
  const req = JSON.parse(await fs.readFile(file!, 'utf8')) as ChurnRequest;
  const rt = await RktRuntime.open({ dataDir: req.dataDir, network: req.network });
  try {
    if (phase === 'run') {
      const uuids = await bounded(req.pods ?? [], req.concurrency, (pod) => rt.runPod(pod, { stage1: 'namespaces' }));
      const statuses = new Map((await rt.listPods()).map((s) => [s.uuid, s]));
      const pods: ChurnPod[] = uuids.map((uuid, i) => ({ name: req.pods![i]!.metadata.name, uuid, ips: statuses.get(uuid)?.podIPs ?? [] }));
      process.stdout.write(JSON.stringify(pods));
    } else if (phase === 'rm') {
      await bounded(req.uuids ?? [], req.concurrency, (uuid) => rt.removePod(uuid, { force: true }));
      process.stdout.write(JSON.stringify({ removed: req.uuids?.length ?? 0 }));
    } else {
      throw new Error(`pod-churn: unknown phase ${phase}`);
    }
  } finally {
    await rt.close();
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main().catch((err) => {
    process.stderr.write(`pod-churn: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
