import { getHeapStatistics } from 'node:v8';
import type { PodSync } from './pod-sync.js';

/**
 * The agent's /metrics (Prometheus text format 0.0.4), the kubelet's
 * counterpart: process memory as the kernel and V8 see it — so an operator
 * can tell a leak (heap used grows) from allocator slack (RSS grows, heap
 * does not) — and the sync loop's counters.
 */
export function agentMetrics(sync: PodSync): string {
  const mem = process.memoryUsage();
  const heap = getHeapStatistics();
  const cpu = process.cpuUsage();
  const lines: string[] = [];
  const metric = (name: string, type: 'gauge' | 'counter', help: string, value: number) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`);
  };
  metric('process_resident_memory_bytes', 'gauge', 'Resident set size.', mem.rss);
  metric('process_cpu_seconds_total', 'counter', 'User and system CPU time spent.', (cpu.user + cpu.system) / 1e6);
  metric('nodejs_heap_size_total_bytes', 'gauge', 'V8 heap reserved.', mem.heapTotal);
  metric('nodejs_heap_size_used_bytes', 'gauge', 'V8 heap in use.', mem.heapUsed);
  metric('nodejs_external_memory_bytes', 'gauge', 'Memory of C++ objects bound to JavaScript objects.', mem.external);
  metric('nodejs_array_buffers_bytes', 'gauge', 'Memory of ArrayBuffers and Buffers.', mem.arrayBuffers);
  metric('nodejs_heap_malloced_bytes', 'gauge', 'Memory V8 allocated with malloc.', heap.malloced_memory);
  metric('stevedore_agent_desired_pods', 'gauge', 'Pods bound to this node, as the watch last saw them.', sync.desiredPods().length);
  metric('stevedore_agent_sync_passes_total', 'counter', 'Sync passes completed.', sync.passes);
  metric('stevedore_agent_sync_pass_seconds_total', 'counter', 'Wall time spent in sync passes.', sync.passSeconds);
  return lines.join('\n') + '\n';
}
