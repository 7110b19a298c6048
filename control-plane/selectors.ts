import type { KObj } from './store.js';

export class SelectorError extends Error {}

type Req = { key: string; op: 'eq' | 'ne' | 'in' | 'notin' | 'exists' | 'notexists'; values: string[] };

/** Split on commas that are not inside parentheses (`env in (a,b),tier!=x`). */
function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0, cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) { out.push(cur); cur = ''; } else cur += ch;
  }
  if (cur.trim()) out.push(cur);
  return out.map((x) => x.trim()).filter(Boolean);
}

export function parseLabelSelector(raw: string | null | undefined): Req[] {
  if (!raw) return [];
  return splitTop(raw).map((term) => {
    let m = /^([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(term);
    if (m) return { key: m[1]!, op: m[2] as 'in' | 'notin', values: m[3]!.split(',').map((v) => v.trim()).filter(Boolean) };
    m = /^([^\s!=]+)\s*(==|=|!=)\s*(\S*)$/.exec(term);
    if (m) return { key: m[1]!, op: m[2] === '!=' ? 'ne' : 'eq', values: [m[3]!] };
    m = /^!\s*([^\s!=]+)$/.exec(term);
    if (m) return { key: m[1]!, op: 'notexists', values: [] };
    m = /^([^\s!=(),]+)$/.exec(term);
    if (m) return { key: m[1]!, op: 'exists', values: [] };
    throw new SelectorError(`unable to parse requirement: found '${term}', expected: key, !key, key=value, key!=value, key in (...), key notin (...)`);
  });
}

function matchReq(get: (k: string) => string | undefined, r: Req): boolean {
  const v = get(r.key);
  switch (r.op) {
    case 'eq': return v === r.values[0];
    case 'ne': return v !== r.values[0];
    case 'in': return v !== undefined && r.values.includes(v);
    case 'notin': return v === undefined || !r.values.includes(v);
    case 'exists': return v !== undefined;
    case 'notexists': return v === undefined;
  }
}

export function matchLabels(obj: KObj, reqs: Req[]): boolean {
  const labels: Record<string, string> = obj.metadata?.labels ?? {};
  return reqs.every((r) => matchReq((k) => labels[k], r));
}

/** Field selectors supported per kind (what kube-apiserver allows for these resources). */
const FIELDS: Record<string, Record<string, (o: KObj) => string | undefined>> = {
  common: { 'metadata.name': (o) => o.metadata?.name, 'metadata.namespace': (o) => o.metadata?.namespace ?? '' },
  pods: {
    'spec.nodeName': (o) => o.spec?.nodeName ?? '', 'status.phase': (o) => o.status?.phase ?? '',
    'spec.restartPolicy': (o) => o.spec?.restartPolicy, 'spec.schedulerName': (o) => o.spec?.schedulerName,
    'spec.serviceAccountName': (o) => o.spec?.serviceAccountName ?? '', 'status.podIP': (o) => o.status?.podIP ?? '',
    'status.nominatedNodeName': (o) => o.status?.nominatedNodeName ?? '', 'spec.hostNetwork': (o) => String(!!o.spec?.hostNetwork),
  },
  nodes: { 'spec.unschedulable': (o) => String(!!o.spec?.unschedulable) },
  secrets: { type: (o) => o.type ?? '' },
  services: { 'spec.clusterIP': (o) => o.spec?.clusterIP ?? '', 'spec.type': (o) => o.spec?.type ?? '' },
  replicasets: { 'status.replicas': (o) => String(o.status?.replicas ?? 0) },
  jobs: { 'status.successful': (o) => String(o.status?.succeeded ?? 0) },
  namespaces: { 'status.phase': (o) => o.status?.phase ?? '' },
  events: {
    'involvedObject.kind': (o) => o.involvedObject?.kind ?? '', 'involvedObject.namespace': (o) => o.involvedObject?.namespace ?? '',
    'involvedObject.name': (o) => o.involvedObject?.name ?? '', 'involvedObject.uid': (o) => o.involvedObject?.uid ?? '',
    'involvedObject.apiVersion': (o) => o.involvedObject?.apiVersion ?? '', 'involvedObject.resourceVersion': (o) => o.involvedObject?.resourceVersion ?? '',
    'involvedObject.fieldPath': (o) => o.involvedObject?.fieldPath ?? '', reason: (o) => o.reason ?? '', type: (o) => o.type ?? '',
    source: (o) => o.source?.component ?? '', reportingComponent: (o) => o.reportingComponent ?? '',
  },
};

export type FieldSelector = { get: (o: KObj) => string | undefined; op: 'eq' | 'ne'; value: string }[];

export function parseFieldSelector(raw: string | null | undefined, resource: string, kind: string): FieldSelector {
  if (!raw) return [];
  return raw.split(',').map((t) => t.trim()).filter(Boolean).map((term) => {
    const m = /^([^=!]+)(==|=|!=)(.*)$/.exec(term);
    if (!m) throw new SelectorError(`invalid selector: '${raw}'; can't understand '${term}'`);
    const key = m[1]!.trim();
    const get = FIELDS.common![key] ?? FIELDS[resource]?.[key];
    if (!get) throw new SelectorError(`field label not supported: ${key}`, { cause: kind });
    return { get, op: m[2] === '!=' ? 'ne' : 'eq', value: m[3]!.trim() };
  });
}

export function matchFields(obj: KObj, sel: FieldSelector): boolean {
  return sel.every((r) => ((r.get(obj) ?? '') === r.value) === (r.op === 'eq'));
}
