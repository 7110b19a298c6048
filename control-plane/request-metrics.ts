/**
 * The API server's own request metrics, as kube-apiserver exports them on
 * /metrics (Prometheus text format): apiserver_request_total by verb, group,
 * version, resource, subresource, scope and code, and the
 * apiserver_request_duration_seconds histogram (kube-apiserver's buckets) for
 * every request that is not long-running. WATCH, log follows and the stream
 * subresources (exec, attach, portforward, proxy) stay out of the histogram,
 * as the API call latency SLO leaves them out: their duration is how long
 * the client keeps them open.
 */

/** kube-apiserver's buckets for apiserver_request_duration_seconds (k8s.io/apiserver/pkg/endpoints/metrics). */
export const REQUEST_DURATION_BUCKETS = [0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60] as const;

const LONG_RUNNING_SUBRESOURCES = new Set(['exec', 'attach', 'portforward', 'proxy']);

/** What kube-apiserver's RequestInfo says about a request, in the metric's label values. */
export interface RequestLabels {
  /** LIST, GET, WATCH, POST, PUT, PATCH, APPLY, DELETE, DELETECOLLECTION; for other paths the HTTP method. */
  verb: string;
  group: string;
  version: string;
  resource: string;
  subresource: string;
  /** resource (one object), namespace, cluster; '' outside the resource paths. */
  scope: string;
  /** Watches, follows and streams: not in the latency histogram. */
  longRunning: boolean;
}

/** Labels of one request from its method and URL (pure: unit-tested). Non-resource paths (/api, /openapi/v3…) get resource ''. */
export function requestLabels(method: string, url: URL, contentType = ''): RequestLabels {
  const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const q = url.searchParams;
  const watchParam = ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(q.get('watch') ?? '');
  const none: RequestLabels = { verb: method.toUpperCase(), group: '', version: '', resource: '', subresource: '', scope: '', longRunning: false };
  let group: string, version: string, rest: string[];
  if (parts[0] === 'api' && parts[1] === 'v1') [group, version, rest] = ['', 'v1', parts.slice(2)];
  else if (parts[0] === 'apis' && parts.length >= 3) [group, version, rest] = [parts[1]!, parts[2]!, parts.slice(3)];
  else return none;
  let watch = watchParam;
  if (rest[0] === 'watch') { watch = true; rest = rest.slice(1); }
  if (rest.length === 0) return { ...none, group, version };
  let namespace = '';
  if (rest[0] === 'namespaces' && rest.length >= 3 && !(rest.length === 3 && ['status', 'finalize'].includes(rest[2]!))) {
    namespace = rest[1]!;
    rest = rest.slice(2);
  }
  const [resource = '', name, subresource = ''] = rest;
  const scope = name !== undefined ? 'resource' : namespace ? 'namespace' : 'cluster';
  const m = method.toUpperCase();
  let verb: string;
  if (m === 'GET' || m === 'HEAD') verb = watch ? 'WATCH' : name !== undefined ? 'GET' : 'LIST';
  else if (m === 'PATCH') verb = /application\/apply-patch/.test(contentType) ? 'APPLY' : 'PATCH';
  else if (m === 'DELETE') verb = name !== undefined ? 'DELETE' : 'DELETECOLLECTION';
  else verb = m;
  const follow = subresource === 'log' && ['1', 'true', 'True', 'TRUE', 't', 'T'].includes(q.get('follow') ?? '');
  const longRunning = verb === 'WATCH' || follow || LONG_RUNNING_SUBRESOURCES.has(subresource);
  return { verb, group, version, resource, subresource, scope, longRunning };
}

interface Histogram { counts: number[]; sum: number; count: number }

const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

/** The counters and histograms, keyed by their label sets. */
export class RequestMetrics {
  private readonly totals = new Map<string, number>();
  private readonly durations = new Map<string, Histogram>();

  /** One finished request. */
  observe(labels: RequestLabels, code: number, seconds: number): void {
    const base = `verb="${esc(labels.verb)}",dry_run="",group="${esc(labels.group)}",version="${esc(labels.version)}",resource="${esc(labels.resource)}",subresource="${esc(labels.subresource)}",scope="${labels.scope}",component="apiserver"`;
    const totalKey = `${base},code="${code}"`;
    this.totals.set(totalKey, (this.totals.get(totalKey) ?? 0) + 1);
    if (labels.longRunning) return;
    let h = this.durations.get(base);
    if (!h) { h = { counts: REQUEST_DURATION_BUCKETS.map(() => 0), sum: 0, count: 0 }; this.durations.set(base, h); }
    for (let i = 0; i < REQUEST_DURATION_BUCKETS.length; i++) if (seconds <= REQUEST_DURATION_BUCKETS[i]!) h.counts[i]!++;
    h.sum += seconds;
    h.count++;
  }

  /** Prometheus text exposition format 0.0.4. */
  render(): string {
    const out: string[] = [
      '# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.',
      '# TYPE apiserver_request_total counter',
    ];
    for (const [k, v] of this.totals) out.push(`apiserver_request_total{${k}} ${v}`);
    out.push('# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.',
      '# TYPE apiserver_request_duration_seconds histogram');
    for (const [k, h] of this.durations) {
      REQUEST_DURATION_BUCKETS.forEach((le, i) => out.push(`apiserver_request_duration_seconds_bucket{${k},le="${le}"} ${h.counts[i]}`));
      out.push(`apiserver_request_duration_seconds_bucket{${k},le="+Inf"} ${h.count}`);
      out.push(`apiserver_request_duration_seconds_sum{${k}} ${h.sum}`);
      out.push(`apiserver_request_duration_seconds_count{${k}} ${h.count}`);
    }
    return out.join('\n') + '\n';
  }
}
