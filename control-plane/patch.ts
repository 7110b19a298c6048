/** JSON merge patch (RFC 7386), strategic merge patch (the Kubernetes subset kubectl sends) and JSON patch (RFC 6902). */

export class PatchError extends Error {}

const isObj = (v: unknown): v is Record<string, any> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Keys that would reach Object.prototype (or a constructor) instead of the
 * object: `doc["__proto__"] = v` sets the prototype of every object that
 * shares it. No Kubernetes field has these names, so a patch naming one is
 * refused outright rather than filtered.
 */
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
function checkKey(key: string, where: string): void {
  if (FORBIDDEN_KEYS.has(key)) throw new PatchError(`${where}: the field name "${key}" is not allowed in a patch`);
}
const has = (o: object, key: string) => Object.prototype.hasOwnProperty.call(o, key);
const clone = <T>(v: T): T => (v === undefined ? v : JSON.parse(JSON.stringify(v)));

export function mergePatch(target: unknown, patch: unknown): any {
  if (!isObj(patch)) return clone(patch);
  const out: Record<string, any> = isObj(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    checkKey(k, 'merge patch');
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/**
 * Patch strategies by field path (list indexes left out), as the Go types declare them
 * with patchStrategy/patchMergeKey. `key` lists merge element-wise by that key; `set` lists of
 * scalars merge as a union; anything else is replaced atomically.
 */
export type MergeKeys = Record<string, { key: string } | 'set'>;

const CONTAINER_KEYS = (p: string): MergeKeys => ({
  [`${p}.env`]: { key: 'name' },
  [`${p}.ports`]: { key: 'containerPort' },
  [`${p}.volumeMounts`]: { key: 'mountPath' },
  [`${p}.volumeDevices`]: { key: 'devicePath' },
});

export const POD_MERGE_KEYS: MergeKeys = {
  'metadata.finalizers': 'set',
  'metadata.ownerReferences': { key: 'uid' },
  'spec.containers': { key: 'name' },
  'spec.initContainers': { key: 'name' },
  'spec.ephemeralContainers': { key: 'name' },
  'spec.volumes': { key: 'name' },
  'spec.imagePullSecrets': { key: 'name' },
  'spec.hostAliases': { key: 'ip' },
  'spec.schedulingGates': { key: 'name' },
  'spec.resourceClaims': { key: 'name' },
  ...CONTAINER_KEYS('spec.containers'),
  ...CONTAINER_KEYS('spec.initContainers'),
  'status.conditions': { key: 'type' },
  'status.podIPs': { key: 'ip' },
};

/** A workload (ReplicaSet, Deployment, Job): its pod template merges as a pod spec does. */
export const WORKLOAD_MERGE_KEYS: MergeKeys = {
  ...metaMergeKeys(),
  ...Object.fromEntries(Object.entries(POD_MERGE_KEYS).filter(([k]) => k.startsWith('spec.')).map(([k, v]) => [`spec.template.${k}`, v])),
  'spec.template.metadata.finalizers': 'set',
  'status.conditions': { key: 'type' },
};

/** A CronJob: its job template's pod template merges as a pod spec does. */
export const CRONJOB_MERGE_KEYS: MergeKeys = {
  ...metaMergeKeys(),
  ...Object.fromEntries(Object.entries(POD_MERGE_KEYS).filter(([k]) => k.startsWith('spec.')).map(([k, v]) => [`spec.jobTemplate.spec.template.${k}`, v])),
};

export const NODE_MERGE_KEYS: MergeKeys = {
  'metadata.finalizers': 'set',
  'spec.podCIDRs': 'set',
  'status.conditions': { key: 'type' },
  'status.addresses': { key: 'type' },
};

export const META_MERGE_KEYS: MergeKeys = metaMergeKeys();
/** v1 Service: ports merge by port number (ServiceSpec's patchMergeKey). */
export const SERVICE_MERGE_KEYS: MergeKeys = { ...metaMergeKeys(), 'spec.ports': { key: 'port' }, 'status.conditions': { key: 'type' } };
function metaMergeKeys(): MergeKeys { return { 'metadata.finalizers': 'set', 'metadata.ownerReferences': { key: 'uid' } }; }

export function strategicMergePatch(target: unknown, patch: unknown, keys: MergeKeys, at = ''): any {
  if (!isObj(patch)) return clone(patch);
  if (patch.$patch === 'replace') {
    const { $patch: _drop, ...rest } = patch;
    return stripDirectives(rest);
  }
  if (patch.$patch === 'delete') return undefined;
  const out: Record<string, any> = isObj(target) ? { ...target } : {};
  const retain = patch.$retainKeys as string[] | undefined;
  for (const [k, v] of Object.entries(patch)) {
    checkKey(k.replace(/^\$(deleteFromPrimitiveList|setElementOrder)\//, ''), `strategic merge patch${at ? ` at ${at}` : ''}`);
    if (k === '$retainKeys' || k === '$patch' || k.startsWith('$setElementOrder/')) continue;
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      const field = k.slice('$deleteFromPrimitiveList/'.length);
      if (Array.isArray(out[field]) && Array.isArray(v)) out[field] = out[field].filter((x: unknown) => !v.includes(x as never));
      continue;
    }
    const p = at ? `${at}.${k}` : k;
    if (v === null) {
      delete out[k];
      continue;
    }
    const strategy = keys[p];
    if (Array.isArray(v) && strategy) {
      out[k] = mergeList(Array.isArray(out[k]) ? out[k] : [], v, strategy, keys, p, patch[`$setElementOrder/${k}`]);
    } else if (isObj(v)) {
      const merged = strategicMergePatch(out[k], v, keys, p);
      if (merged === undefined) delete out[k];
      else out[k] = merged;
    } else {
      out[k] = clone(v);
    }
  }
  if (retain) for (const k of Object.keys(out)) if (!retain.includes(k)) delete out[k];
  return out;
}

function stripDirectives(v: any): any {
  if (Array.isArray(v)) return v.map(stripDirectives);
  if (!isObj(v)) return v;
  const out: Record<string, any> = {};
  for (const [k, x] of Object.entries(v)) if (!k.startsWith('$')) out[k] = stripDirectives(x);
  return out;
}

function mergeList(cur: any[], patch: any[], strategy: { key: string } | 'set', keys: MergeKeys, p: string, order: unknown): any[] {
  if (strategy === 'set') {
    const out = [...cur];
    for (const x of patch) if (!out.some((y) => JSON.stringify(y) === JSON.stringify(x))) out.push(clone(x));
    return out;
  }
  const key = strategy.key;
  if (patch.some((e) => isObj(e) && e.$patch === 'replace')) return stripDirectives(patch.filter((e) => !(isObj(e) && e.$patch === 'replace')));
  const out = cur.map((e) => clone(e));
  for (const e of patch) {
    if (!isObj(e)) throw new PatchError(`${p}: list elements must be objects with a "${key}" field`);
    if (e[key] === undefined) throw new PatchError(`${p}: map: ${JSON.stringify(e)} does not contain declared merge key: ${key}`);
    const i = out.findIndex((x) => isObj(x) && x[key] === e[key]);
    if (e.$patch === 'delete') {
      if (i >= 0) out.splice(i, 1);
      continue;
    }
    if (i >= 0) out[i] = strategicMergePatch(out[i], e, keys, p);
    else out.push(strategicMergePatch({}, e, keys, p));
  }
  if (Array.isArray(order)) {
    const rank = (x: any) => {
      const r = order.findIndex((o: any) => isObj(o) && o[key] === x?.[key]);
      return r < 0 ? Number.MAX_SAFE_INTEGER : r;
    };
    out.sort((a, b) => rank(a) - rank(b));
  }
  return out;
}

function decodePointer(ptr: string): string[] {
  if (ptr === '') return [];
  if (!ptr.startsWith('/')) throw new PatchError(`invalid JSON pointer "${ptr}"`);
  const parts = ptr.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  for (const part of parts) checkKey(part, `JSON pointer "${ptr}"`);
  return parts;
}

function parentOf(doc: any, parts: string[], op: string): { parent: any; last: string } {
  let cur = doc;
  for (const part of parts.slice(0, -1)) {
    if (cur === null || typeof cur !== 'object' || !has(cur, part)) throw new PatchError(`${op} operation does not apply: doc is missing path: /${parts.join('/')}`);
    cur = cur[part];
  }
  return { parent: cur, last: parts[parts.length - 1]! };
}

export function jsonPatch(doc: unknown, ops: unknown): any {
  if (!Array.isArray(ops)) throw new PatchError('a JSON patch must be a list of operations');
  let root: any = clone(doc);
  const get = (ptr: string, op: string): any => {
    let cur = root;
    for (const part of decodePointer(ptr)) {
      if (cur === null || typeof cur !== 'object' || !has(cur, part)) throw new PatchError(`${op} operation does not apply: doc is missing path: ${ptr}`);
      cur = cur[part];
    }
    return cur;
  };
  const remove = (ptr: string, op: string) => {
    const { parent, last } = parentOf(root, decodePointer(ptr), op);
    if (Array.isArray(parent)) {
      const i = Number(last);
      if (!(i >= 0 && i < parent.length)) throw new PatchError(`${op} operation does not apply: doc is missing path: ${ptr}`);
      parent.splice(i, 1);
    } else if (parent && typeof parent === 'object' && has(parent, last)) delete parent[last];
    else throw new PatchError(`${op} operation does not apply: doc is missing path: ${ptr}`);
  };
  const add = (ptr: string, value: any, op: string) => {
    const parts = decodePointer(ptr);
    if (parts.length === 0) {
      root = clone(value);
      return;
    }
    const { parent, last } = parentOf(root, parts, op);
    if (Array.isArray(parent)) {
      const i = last === '-' ? parent.length : Number(last);
      if (!(i >= 0 && i <= parent.length)) throw new PatchError(`${op} operation does not apply: index out of range: ${ptr}`);
      parent.splice(i, 0, clone(value));
    } else if (parent && typeof parent === 'object') parent[last] = clone(value);
    else throw new PatchError(`${op} operation does not apply: doc is missing path: ${ptr}`);
  };
  for (const o of ops as any[]) {
    if (!isObj(o) || typeof o.op !== 'string' || typeof o.path !== 'string') throw new PatchError('each JSON patch operation needs "op" and "path"');
    switch (o.op) {
      case 'add': add(o.path, o.value, 'add'); break;
      case 'remove': remove(o.path, 'remove'); break;
      case 'replace': get(o.path, 'replace'); if (o.path === '') root = clone(o.value); else { remove(o.path, 'replace'); add(o.path, o.value, 'replace'); } break;
      case 'move': { const v = get(o.from, 'move'); remove(o.from, 'move'); add(o.path, v, 'move'); break; }
      case 'copy': add(o.path, get(o.from, 'copy'), 'copy'); break;
      case 'test': if (JSON.stringify(get(o.path, 'test')) !== JSON.stringify(o.value)) throw new PatchError(`testing value ${o.path} failed`); break;
      default: throw new PatchError(`unexpected kind of JSON patch operation: ${o.op}`);
    }
  }
  return root;
}
