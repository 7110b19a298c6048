/**
 * Server-side apply and field ownership (metadata.managedFields), as kube-apiserver's
 * structured-merge-diff does it for the kinds this control plane serves:
 *
 * - a field set is a set of paths; a path is a list of elements `f:<field>`, `k:<list-map key
 *   as JSON>` (an element of a list merged by keys) and `v:<value as JSON>` (an element of a set
 *   list); everything else (scalars, other lists, empty objects) is a leaf;
 * - an Apply merges the applied configuration into the live object (objects field by field, keyed
 *   lists element by element, everything else replaced), reports a conflict for each field it
 *   changes that another manager owns (unless forced, which takes the field away), and removes the
 *   fields it applied before and applies no more when nobody else owns them;
 * - an Update (create, PUT, PATCH) gives its manager the fields it changed and takes them from
 *   every other manager, without conflicts.
 *
 * The list-map keys are the OpenAPI `x-kubernetes-list-map-keys` of the Go types (which differ from
 * the strategic-merge keys in patch.ts for container and service ports: those are keyed by port and
 * protocol).
 */
import type { KObj } from './store.js';

export type FieldPath = string[];
type ListKind = { keys: string[] } | 'set';

const isObj = (v: unknown): v is KObj => typeof v === 'object' && v !== null && !Array.isArray(v);
const clone = <T>(v: T): T => (v === undefined ? v : JSON.parse(JSON.stringify(v)));
/** Path elements joined with a separator no field name holds. */
const SEP = '\u0001';
const keyOf = (p: FieldPath) => p.join(SEP);
const pathOf = (k: string): FieldPath => (k === '' ? [] : k.split(SEP));

const POD_SPEC_LISTS: Record<string, ListKind> = {
  containers: { keys: ['name'] },
  initContainers: { keys: ['name'] },
  ephemeralContainers: { keys: ['name'] },
  volumes: { keys: ['name'] },
  imagePullSecrets: { keys: ['name'] },
  hostAliases: { keys: ['ip'] },
  schedulingGates: { keys: ['name'] },
  resourceClaims: { keys: ['name'] },
  topologySpreadConstraints: { keys: ['topologyKey', 'whenUnsatisfiable'] },
  'containers.ports': { keys: ['containerPort', 'protocol'] },
  'containers.env': { keys: ['name'] },
  'containers.volumeMounts': { keys: ['mountPath'] },
  'containers.volumeDevices': { keys: ['devicePath'] },
  'containers.resizePolicy': { keys: ['resourceName'] },
  'initContainers.ports': { keys: ['containerPort', 'protocol'] },
  'initContainers.env': { keys: ['name'] },
  'initContainers.volumeMounts': { keys: ['mountPath'] },
  'initContainers.volumeDevices': { keys: ['devicePath'] },
};

/** Field path (field names only, dot-joined) → how the list there merges. */
const LISTS: Record<string, ListKind> = (() => {
  const out: Record<string, ListKind> = {
    'metadata.finalizers': 'set',
    'metadata.ownerReferences': { keys: ['uid'] },
    'spec.ports': { keys: ['port', 'protocol'] }, // Service
    'status.conditions': { keys: ['type'] },
    'status.addresses': { keys: ['type'] },
    'spec.podCIDRs': 'set',
  };
  for (const prefix of ['spec', 'spec.template.spec', 'spec.jobTemplate.spec.template.spec']) {
    for (const [k, v] of Object.entries(POD_SPEC_LISTS)) out[`${prefix}.${k}`] = v;
  }
  out['spec.template.metadata.finalizers'] = 'set';
  return out;
})();

/** Key fields kube-apiserver defaults before it compares list-map keys (ports without a protocol are TCP). */
const KEY_DEFAULTS: Record<string, unknown> = { protocol: 'TCP' };

const fieldNames = (p: FieldPath) => p.filter((e) => e.startsWith('f:')).map((e) => e.slice(2)).join('.');
const listKindAt = (p: FieldPath) => LISTS[fieldNames(p)];

function itemKey(item: unknown, kind: ListKind): string | undefined {
  if (kind === 'set') return `v:${JSON.stringify(item)}`;
  if (!isObj(item)) return undefined;
  const k: KObj = {};
  for (const name of [...kind.keys].sort()) {
    const v = item[name] ?? KEY_DEFAULTS[name];
    if (v === undefined) return undefined;
    k[name] = v;
  }
  return `k:${JSON.stringify(k)}`;
}

/**
 * Fields whose ownership is not tracked: identity and server-owned metadata, and for the main
 * resource of a kind with a status subresource, status.
 */
const UNTRACKED_META = ['name', 'namespace', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'managedFields', 'selfLink'];
export function trackedPart(obj: KObj, scope: 'main' | 'status', statusSubresource: boolean): KObj {
  if (scope === 'status') return isObj(obj.status) ? { status: obj.status } : {};
  const { apiVersion: _a, kind: _k, metadata, status, ...rest } = obj;
  const out: KObj = { ...rest };
  if (!statusSubresource && status !== undefined) out.status = status;
  if (isObj(metadata)) {
    const m: KObj = {};
    for (const [k, v] of Object.entries(metadata)) if (!UNTRACKED_META.includes(k)) m[k] = v;
    if (Object.keys(m).length) out.metadata = m;
  }
  return out;
}

/** Every path of an object: its leaves, and its keyed/set list elements. */
export function fieldsOf(obj: unknown, at: FieldPath = [], out = new Set<string>()): Set<string> {
  if (!isObj(obj)) return out;
  for (const [k, v] of Object.entries(obj)) {
    const p = [...at, `f:${k}`];
    const lk = Array.isArray(v) ? listKindAt(p) : undefined;
    if (isObj(v) && Object.keys(v).length) fieldsOf(v, p, out);
    else if (Array.isArray(v) && lk && v.every((item) => itemKey(item, lk) !== undefined)) {
      for (const item of v) {
        const ip = [...p, itemKey(item, lk)!];
        out.add(keyOf(ip));
        if (lk !== 'set') fieldsOf(item, ip, out);
      }
    } else out.add(keyOf(p));
  }
  return out;
}

/** The value at a path, or undefined when the object has nothing there. */
export function valueAt(obj: unknown, path: FieldPath): unknown {
  let cur: unknown = obj;
  let at: FieldPath = [];
  for (const e of path) {
    if (e.startsWith('f:')) {
      if (!isObj(cur)) return undefined;
      cur = cur[e.slice(2)];
    } else {
      if (!Array.isArray(cur)) return undefined;
      const lk = listKindAt(at);
      if (!lk) return undefined;
      cur = cur.find((item) => itemKey(item, lk) === e);
    }
    at = [...at, e];
    if (cur === undefined) return undefined;
  }
  return cur;
}

/** Remove what a path names (a field, or a list element). */
function removeAt(obj: KObj, path: FieldPath): void {
  const parentPath = path.slice(0, -1);
  const last = path[path.length - 1]!;
  const parent = valueAt(obj, parentPath);
  if (last.startsWith('f:')) {
    if (isObj(parent)) delete parent[last.slice(2)];
  } else if (Array.isArray(parent)) {
    const lk = listKindAt(parentPath);
    const i = lk ? parent.findIndex((item) => itemKey(item, lk) === last) : -1;
    if (i >= 0) parent.splice(i, 1);
  }
}

/** The applied configuration merged into the live object. */
export function mergeApplied(live: unknown, applied: unknown, at: FieldPath = []): unknown {
  if (isObj(applied) && isObj(live)) {
    const out: KObj = { ...live };
    for (const [k, v] of Object.entries(applied)) {
      if (v === null) { delete out[k]; continue; }
      out[k] = mergeApplied(out[k], v, [...at, `f:${k}`]);
    }
    return out;
  }
  if (Array.isArray(applied) && Array.isArray(live)) {
    const lk = listKindAt(at);
    if (!lk || !applied.every((i) => itemKey(i, lk) !== undefined) || !live.every((i) => itemKey(i, lk) !== undefined)) return clone(applied);
    const out = live.map((i) => clone(i));
    for (const item of applied) {
      const key = itemKey(item, lk)!;
      const i = out.findIndex((x) => itemKey(x, lk) === key);
      if (i < 0) out.push(clone(item));
      else if (lk !== 'set') out[i] = mergeApplied(out[i], item, [...at, key]);
    }
    return out;
  }
  return clone(applied);
}

// ------------------------------------------------------------ managedFields

export interface ManagedEntry {
  manager: string;
  operation: 'Apply' | 'Update';
  apiVersion: string;
  time?: string;
  fieldsType: 'FieldsV1';
  fieldsV1: KObj;
  subresource?: string;
}

/** A set of paths as FieldsV1 (`{"f:spec":{"f:replicas":{}}}`, `".": {}` where an element is owned itself and has children). */
export function toFieldsV1(set: Set<string>): KObj {
  const root: KObj = {};
  const owned = new Set<KObj>();
  for (const k of [...set].sort()) {
    let node = root;
    for (const e of pathOf(k)) node = node[e] ??= {};
    owned.add(node);
  }
  const finish = (node: KObj) => {
    for (const child of Object.values(node)) finish(child);
    if (owned.has(node) && Object.keys(node).length) {
      const entries = Object.entries(node);
      for (const key of Object.keys(node)) delete node[key];
      node['.'] = {};
      for (const [key, v] of entries) node[key] = v;
    }
  };
  finish(root);
  return root;
}

export function fromFieldsV1(f: unknown, at: FieldPath = [], out = new Set<string>()): Set<string> {
  if (!isObj(f)) return out;
  for (const [k, v] of Object.entries(f)) {
    if (k === '.') { out.add(keyOf(at)); continue; }
    const p = [...at, k];
    if (!isObj(v) || Object.keys(v).length === 0) out.add(keyOf(p));
    else fromFieldsV1(v, p, out);
  }
  return out;
}

/** A path as kube-apiserver prints it: `.spec.containers[name="web"].image`. */
export function pathString(k: string): string {
  return pathOf(k).map((e) => {
    if (e.startsWith('f:')) return `.${e.slice(2)}`;
    if (e.startsWith('v:')) return `[=${e.slice(2)}]`;
    const key = JSON.parse(e.slice(2)) as KObj;
    return `[${Object.entries(key).map(([n, v]) => `${n}=${JSON.stringify(v)}`).join(',')}]`;
  }).join('');
}

interface Owner { entry: ManagedEntry; set: Set<string> }

function ownersOf(managed: unknown): Owner[] {
  if (!Array.isArray(managed)) return [];
  return managed.filter(isObj).map((e) => ({ entry: e as ManagedEntry, set: fromFieldsV1(e.fieldsV1) }));
}

function toManaged(owners: Owner[], obj: KObj): ManagedEntry[] | undefined {
  const out: ManagedEntry[] = [];
  for (const o of owners) {
    for (const k of [...o.set]) if (valueAt(obj, pathOf(k)) === undefined) o.set.delete(k);
    if (!o.set.size) continue;
    const fieldsV1 = toFieldsV1(o.set);
    out.push(JSON.stringify(fieldsV1) === JSON.stringify(o.entry.fieldsV1) ? o.entry : { ...o.entry, fieldsV1 });
  }
  return out.length ? out : undefined;
}

const sameEntry = (e: ManagedEntry, manager: string, operation: string, apiVersion: string, subresource?: string) =>
  e.manager === manager && e.operation === operation && e.apiVersion === apiVersion && (e.subresource ?? '') === (subresource ?? '');

const nowTime = () => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

/**
 * managedFields after an Update (create, PUT, PATCH) by `manager`: it owns what it changed (added
 * or modified between `before` and `after`), nobody else does, and fields that are gone are owned
 * by nobody.
 */
export function managedAfterUpdate(before: KObj | undefined, after: KObj, manager: string, apiVersion: string, subresource: string | undefined, statusSubresource: boolean): ManagedEntry[] | undefined {
  const scope = subresource === 'status' ? 'status' : 'main';
  const owners = ownersOf(before?.metadata?.managedFields);
  const beforePart = before ? trackedPart(before, scope, statusSubresource) : {};
  const afterPart = trackedPart(after, scope, statusSubresource);
  const changed = new Set<string>();
  for (const k of fieldsOf(afterPart)) {
    const p = pathOf(k);
    const was = valueAt(beforePart, p), is = valueAt(afterPart, p);
    if (was === undefined || (!isListElement(p) && JSON.stringify(was) !== JSON.stringify(is))) changed.add(k);
  }
  let mine = owners.find((o) => sameEntry(o.entry, manager, 'Update', apiVersion, subresource));
  if (changed.size) {
    for (const o of owners) if (o !== mine) for (const k of changed) o.set.delete(k);
    if (!mine) {
      mine = { entry: { manager, operation: 'Update', apiVersion, time: nowTime(), fieldsType: 'FieldsV1', fieldsV1: {}, ...(subresource ? { subresource } : {}) }, set: new Set() };
      owners.push(mine);
    }
    const grew = [...changed].some((k) => !mine!.set.has(k));
    for (const k of changed) mine.set.add(k);
    if (grew) mine.entry = { ...mine.entry, time: nowTime() };
  }
  return toManaged(owners, after);
}

const isListElement = (p: FieldPath) => !p[p.length - 1]!.startsWith('f:');

export interface ApplyConflict { manager: string; path: string }

/** 409 Conflict as kube-apiserver words it (`Apply failed with 1 conflict: conflict with "m" using apps/v1: .spec.replicas`). */
export function conflictStatus(conflicts: ApplyConflict[]): { message: string; causes: KObj[] } {
  const causes = conflicts.map((c) => ({ reason: 'FieldManagerConflict', message: `conflict with ${c.manager}`, field: c.path }));
  if (conflicts.length === 1) return { message: `Apply failed with 1 conflict: conflict with ${conflicts[0]!.manager}: ${conflicts[0]!.path}`, causes };
  const byManager = new Map<string, string[]>();
  for (const c of conflicts) byManager.set(c.manager, [...(byManager.get(c.manager) ?? []), c.path]);
  const lines: string[] = [];
  for (const [m, paths] of [...byManager].sort(([a], [b]) => a.localeCompare(b))) {
    lines.push(`conflicts with ${m}:`);
    for (const p of paths) lines.push(`- ${p}`);
  }
  return { message: `Apply failed with ${conflicts.length} conflicts: ${lines.join('\n')}`, causes };
}

const printManager = (e: ManagedEntry) => (e.operation === 'Update' ? `${JSON.stringify(e.manager)} using ${e.apiVersion}` : JSON.stringify(e.manager));

export interface ApplyResult {
  /** The object to write: the live one with the configuration merged in, fields no longer applied removed, managedFields set. */
  object: KObj;
  conflicts: ApplyConflict[];
}

/**
 * Apply `config` (the client's applied configuration, already checked for kind and name) as
 * `manager` to `live` (undefined: the object does not exist yet, so this creates it).
 */
export function apply(live: KObj | undefined, config: KObj, manager: string, apiVersion: string, force: boolean, subresource: string | undefined, statusSubresource: boolean): ApplyResult {
  const scope = subresource === 'status' ? 'status' : 'main';
  const owners = ownersOf(live?.metadata?.managedFields);
  const applied = trackedPart(config, scope, statusSubresource);
  const appliedSet = fieldsOf(applied);
  const base = live ? clone(live) : { apiVersion: config.apiVersion, kind: config.kind, metadata: { name: config.metadata?.name, ...(config.metadata?.namespace ? { namespace: config.metadata.namespace } : {}) } };
  const liveAppliedPart = live ? trackedPart(live, scope, statusSubresource) : {};
  const merged = mergeApplied(liveAppliedPart, applied) as KObj;
  const mine = owners.find((o) => sameEntry(o.entry, manager, 'Apply', apiVersion, subresource));
  const conflicts: ApplyConflict[] = [];
  const taken = new Set<string>();
  for (const k of appliedSet) {
    const p = pathOf(k);
    if (isListElement(p)) continue;
    const was = valueAt(liveAppliedPart, p);
    if (was === undefined || JSON.stringify(was) === JSON.stringify(valueAt(merged, p))) continue;
    for (const o of owners) {
      if (o === mine || !o.set.has(k)) continue;
      if (force) taken.add(k);
      else conflicts.push({ manager: printManager(o.entry), path: pathString(k) });
    }
  }
  // Ordered as kube-apiserver lists them: by manager, then by path.
  conflicts.sort((a, b) => (a.manager === b.manager ? (a.path < b.path ? -1 : a.path > b.path ? 1 : 0) : a.manager < b.manager ? -1 : 1));
  if (conflicts.length) return { object: live ?? base, conflicts };
  for (const o of owners) if (o !== mine) for (const k of taken) o.set.delete(k);
  // Fields this manager applied before and applies no more go, unless someone else owns them
  // (or something inside them).
  if (mine) {
    const others = owners.filter((o) => o !== mine);
    const ownedByOthers = (k: string) => others.some((o) => o.set.has(k) || [...o.set].some((x) => x.startsWith(k + SEP)));
    const dropped = [...mine.set].filter((k) => !appliedSet.has(k) && !ownedByOthers(k)).sort((a, b) => b.length - a.length);
    for (const k of dropped) removeAt(merged, pathOf(k));
  }
  const object: KObj = scope === 'status' ? { ...base, status: merged.status } : { ...merged, apiVersion: base.apiVersion, kind: base.kind, metadata: { ...(merged.metadata ?? {}) } };
  if (scope === 'main') {
    for (const k of UNTRACKED_META) if (base.metadata?.[k] !== undefined) object.metadata[k] = base.metadata[k];
    if (statusSubresource && base.status !== undefined) object.status = base.status;
  }
  const entry: ManagedEntry = { manager, operation: 'Apply', apiVersion, time: nowTime(), fieldsType: 'FieldsV1', fieldsV1: {}, ...(subresource ? { subresource } : {}) };
  const sameSet = mine && mine.set.size === appliedSet.size && [...appliedSet].every((k) => mine.set.has(k));
  if (mine) {
    mine.set = new Set(appliedSet);
    if (!sameSet) mine.entry = entry;
  } else owners.push({ entry, set: new Set(appliedSet) });
  object.metadata.managedFields = toManaged(owners, object);
  if (!object.metadata.managedFields) delete object.metadata.managedFields;
  return { object, conflicts };
}

/** kube-apiserver's default manager for a write that names none: the User-Agent up to its first '/'. */
export function managerFromUserAgent(userAgent: string | undefined): string {
  const ua = (userAgent ?? '').split('/')[0]!.trim();
  return ua.slice(0, 128) || 'unknown';
}

/**
 * managedFields of a new object: the creating manager owns every field of it, defaults included
 * (kube-apiserver defaults while it decodes, before the field manager sees the object).
 */
export function managedForCreate(created: KObj, manager: string, apiVersion: string, statusSubresource: boolean): ManagedEntry[] | undefined {
  const set = fieldsOf(trackedPart(created, 'main', statusSubresource));
  if (!set.size) return undefined;
  return [{ manager, operation: 'Update', apiVersion, time: nowTime(), fieldsType: 'FieldsV1', fieldsV1: toFieldsV1(set) }];
}

/**
 * managedFields a client sent in a write: absent or `[]` keep the stored ones (so clients unaware
 * of the field never drop them), `[{}]` clears them, anything else replaces them.
 */
export function sentManagedFields(sent: unknown, stored: unknown): { keep: true } | { replace: ManagedEntry[] | undefined } {
  if (sent === undefined || sent === null || (Array.isArray(sent) && sent.length === 0)) return { keep: true };
  if (JSON.stringify(sent) === JSON.stringify(stored)) return { keep: true };
  if (!Array.isArray(sent)) throw new ManagedFieldsError('metadata.managedFields must be a list of ManagedFieldsEntry');
  if (sent.length === 1 && isObj(sent[0]) && Object.keys(sent[0]).length === 0) return { replace: undefined };
  for (const [i, e] of sent.entries()) {
    if (!isObj(e) || typeof e.manager !== 'string' || !['Apply', 'Update'].includes(e.operation) || (e.fieldsType !== undefined && e.fieldsType !== 'FieldsV1')) {
      throw new ManagedFieldsError(`metadata.managedFields[${i}]: each entry needs a manager, operation Apply or Update and fieldsType FieldsV1`);
    }
  }
  return { replace: sent as ManagedEntry[] };
}

export class ManagedFieldsError extends Error {}
