import * as http from 'node:http';

/** Latency buckets (seconds), Prometheus-style: fine where the goals are (tens of ms). */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

interface RpcSeries { codes: Map<string, number>; buckets: number[]; count: number; sum: number }

/**
 * Request counts (by RPC and gRPC status code) and latency histograms of
 * unary RPCs, streams opened, and the process's memory — served as
 * Prometheus text by `stevedore api-service --metrics HOST:PORT`.
 */
export class ApiMetrics {
  private readonly rpcs = new Map<string, RpcSeries>();
  private streamsOpen = 0;
  private readonly streamsStarted = new Map<string, number>();

  observe(rpc: string, code: string, seconds: number): void {
    let s = this.rpcs.get(rpc);
    if (!s) this.rpcs.set(rpc, s = { codes: new Map(), buckets: BUCKETS.map(() => 0), count: 0, sum: 0 });
    s.codes.set(code, (s.codes.get(code) ?? 0) + 1);
    BUCKETS.forEach((b, i) => { if (seconds <= b) s.buckets[i]!++; });
    s.count++;
    s.sum += seconds;
  }

  streamStarted(rpc: string): () => void {
    this.streamsOpen++;
    this.streamsStarted.set(rpc, (this.streamsStarted.get(rpc) ?? 0) + 1);
    let ended = false;
    return () => { if (!ended) { ended = true; this.streamsOpen--; } };
  }

  render(): string {
    const L: string[] = [];
    L.push('# HELP stevedore_api_requests_total Unary RPCs answered, by gRPC status code.', '# TYPE stevedore_api_requests_total counter');
    for (const [rpc, s] of this.rpcs) for (const [code, n] of s.codes) L.push(`stevedore_api_requests_total{rpc="${rpc}",code="${code}"} ${n}`);
    L.push('# HELP stevedore_api_request_duration_seconds Unary RPC latency, from handler start to reply.', '# TYPE stevedore_api_request_duration_seconds histogram');
    for (const [rpc, s] of this.rpcs) {
      BUCKETS.forEach((b, i) => L.push(`stevedore_api_request_duration_seconds_bucket{rpc="${rpc}",le="${b}"} ${s.buckets[i]}`));
      L.push(`stevedore_api_request_duration_seconds_bucket{rpc="${rpc}",le="+Inf"} ${s.count}`);
      L.push(`stevedore_api_request_duration_seconds_sum{rpc="${rpc}"} ${s.sum}`, `stevedore_api_request_duration_seconds_count{rpc="${rpc}"} ${s.count}`);
    }
    L.push('# HELP stevedore_api_streams_started_total Streaming RPCs started.', '# TYPE stevedore_api_streams_started_total counter');
    for (const [rpc, n] of this.streamsStarted) L.push(`stevedore_api_streams_started_total{rpc="${rpc}"} ${n}`);
    L.push('# HELP stevedore_api_streams_open Streaming RPCs open now.', '# TYPE stevedore_api_streams_open gauge', `stevedore_api_streams_open ${this.streamsOpen}`);
    const mem = process.memoryUsage();
    L.push('# HELP process_resident_memory_bytes Resident set size.', '# TYPE process_resident_memory_bytes gauge', `process_resident_memory_bytes ${mem.rss}`);
    L.push('# HELP nodejs_heap_size_used_bytes V8 heap in use.', '# TYPE nodejs_heap_size_used_bytes gauge', `nodejs_heap_size_used_bytes ${mem.heapUsed}`);
    return L.join('\n') + '\n';
  }
}

/** Serve `metrics` on host:port (GET /metrics only); resolves with the bound address. */
export async function serveMetrics(metrics: ApiMetrics, listen: { host: string; port: number }): Promise<{ server: http.Server; address: string }> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4' }).end(metrics.render());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => { server.off('error', reject); resolve(); });
  });
  const a = server.address() as { address: string; port: number };
  return { server, address: `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}` };
}
