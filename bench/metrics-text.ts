/**
 * Reading the control plane's /metrics (Prometheus text) as the scale bench needs it:
 * apiserver_request_duration_seconds buckets grouped by labels, the difference of two
 * scrapes, quantiles as PromQL's histogram_quantile computes them, and call counts.
 */

/** Cumulative bucket counts by verb (summed over resources and scopes), for one scrape. */
export type VerbHistograms = Map<string, Map<number, number>>;

/** Parse the histogram's buckets from Prometheus text, grouped by `keyOf` its labels (pure: unit-tested). */
export function parseDurationBuckets(text: string, keyOf: (labels: Record<string, string>) => string | undefined): VerbHistograms {
  const out: VerbHistograms = new Map();
  for (const line of text.split('\n')) {
    const m = /^apiserver_request_duration_seconds_bucket\{(.*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of m[1]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    const key = keyOf(labels);
    if (key === undefined) continue;
    const le = labels.le === '+Inf' ? Infinity : Number(labels.le);
    const buckets = out.get(key) ?? new Map<number, number>();
    buckets.set(le, (buckets.get(le) ?? 0) + Number(m[2]));
    out.set(key, buckets);
  }
  return out;
}

/** after − before, bucket by bucket. */
export function diffHistograms(after: VerbHistograms, before: VerbHistograms): VerbHistograms {
  const out: VerbHistograms = new Map();
  for (const [k, buckets] of after) {
    const prev = before.get(k);
    out.set(k, new Map([...buckets].map(([le, n]) => [le, n - (prev?.get(le) ?? 0)])));
  }
  return out;
}

/** Prometheus' histogram_quantile: linear inside the bucket the rank falls in; the highest finite bound past it. */
export function histogramQuantile(q: number, buckets: Map<number, number>): number {
  const sorted = [...buckets].sort((a, b) => a[0] - b[0]);
  const total = sorted.at(-1)?.[1] ?? 0;
  if (total === 0) return NaN;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of sorted) {
    if (count >= rank) {
      if (le === Infinity) return prevLe;
      return prevLe + (le - prevLe) * ((rank - prevCount) / Math.max(count - prevCount, 1e-9));
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

/** apiserver_request_total by "VERB resource[/subresource] code", after − before (pure). */
export function callCounts(after: string, before: string): Array<[string, number]> {
  const read = (text: string) => {
    const out = new Map<string, number>();
    for (const line of text.split('\n')) {
      const m = /^apiserver_request_total\{(.*)\} (\S+)$/.exec(line);
      if (!m) continue;
      const l: Record<string, string> = {};
      for (const x of m[1]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) l[x[1]!] = x[2]!;
      if (!l.resource) continue;
      const key = `${l.verb} ${l.resource}${l.subresource ? `/${l.subresource}` : ''} ${l.code}`;
      out.set(key, (out.get(key) ?? 0) + Number(m[2]));
    }
    return out;
  };
  const b = read(before);
  return [...read(after)].map(([k, v]): [string, number] => [k, v - (b.get(k) ?? 0)]).filter(([, v]) => v > 0).sort((x, y) => y[1] - x[1]);
}

