/**
 * Runs INSIDE the node sandbox (started by bench/cluster.ts with execInSandbox):
 * opens the node's runtime the way the agent does and times what every agent
 * sync pass starts with — `listPods()` over all pods on the node — so the
 * report can say what one pass costs at N pods. Prints one JSON line.
 *
 *   node dist/bench/cluster-probe.js <node data dir> [rounds]
 */
import { RktRuntime } from '../runtime-rkt/runtime.js';
import { summarize, nowMs } from './stats.js';

const [dataDir, roundsArg] = process.argv.slice(2);
if (!dataDir) throw new Error('usage: cluster-probe.js <node data dir> [rounds]');
const rounds = Number(roundsArg ?? 20);
const rt = await RktRuntime.open({ dataDir });
try {
  await rt.systemd();
  await rt.listPods(); // warm: D-Bus connection, module caches
  const wall: number[] = [];
  const cpu: number[] = [];
  let pods = 0;
  let apps = 0;
  for (let i = 0; i < rounds; i++) {
    const c0 = process.cpuUsage();
    const t0 = nowMs();
    const list = await rt.listPods();
    wall.push(nowMs() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
    pods = list.length;
    apps = list.reduce((n, p) => n + p.apps.length, 0);
  }
  process.stdout.write(`${JSON.stringify({ pods, apps, rounds, wallMs: summarize(wall), cpuMs: summarize(cpu) })}\n`);
} finally {
  await rt.close();
}
