import type { ImageFilterMsg, KeyValue, PodFilterMsg, EventFilterMsg } from './proto.js';
import { POD_STATES, EVENT_TYPES } from './proto.js';
import { invalid } from './errors.js';

/** Limits on what one request may carry; anything beyond is INVALID_ARGUMENT, never work. */
export const LIMITS = {
  filters: 100,
  /** values across all filters of one request */
  values: 1000,
  stringLength: 1024,
};

const POD_REF = /^[0-9a-f-]{1,36}$/;
const POD_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** App names are DNS labels (runtime-api/pod-spec.ts checks them at prepare time). */
const APP_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** A pod id: a UUID or a prefix of one (lowercase hex and dashes only: nothing that could walk a path). */
export function checkPodRef(id: unknown, what = 'pod id'): string {
  if (typeof id !== 'string' || id === '') throw invalid(`${what} is required`);
  if (!POD_REF.test(id)) throw invalid(`${what} ${JSON.stringify(id.slice(0, 80))} is not a pod UUID or UUID prefix`);
  return id;
}

export const isFullPodUuid = (s: string) => POD_UUID.test(s);

export function checkAppName(name: unknown): string {
  if (typeof name !== 'string' || name.length > 63 || !APP_NAME.test(name)) throw invalid(`app name ${JSON.stringify(String(name).slice(0, 80))} is not a valid app name`);
  return name;
}

/**
 * An image id: `sha256:<hex>`, the full 64 digits or a unique prefix of at
 * least 6 (the `sha256:` may be left off a prefix). Returns the hex part.
 */
export function checkImageRef(id: unknown): string {
  if (typeof id !== 'string' || id === '') throw invalid('image id is required');
  const m = /^(?:sha256:)?([0-9a-f]{6,64})$/.exec(id);
  if (!m) throw invalid(`image id ${JSON.stringify(id.slice(0, 80))} is not sha256:<hex>`);
  return m[1]!;
}

class Budget {
  private used = 0;
  take(n: number, what: string): void {
    this.used += n;
    if (this.used > LIMITS.values) throw invalid(`too many filter values (more than ${LIMITS.values}; ${what})`);
  }
}

function strings(b: Budget, list: unknown, what: string): string[] {
  const arr = Array.isArray(list) ? list : [];
  b.take(arr.length, what);
  for (const s of arr) {
    if (typeof s !== 'string') throw invalid(`${what}: expected strings`);
    if (s.length > LIMITS.stringLength) throw invalid(`${what}: a value is longer than ${LIMITS.stringLength} characters`);
  }
  return arr as string[];
}

function keyValues(b: Budget, list: unknown, what: string): KeyValue[] {
  const arr = (Array.isArray(list) ? list : []) as KeyValue[];
  b.take(arr.length, what);
  for (const kv of arr) {
    if ((kv.Key ?? '').length > LIMITS.stringLength || (kv.value ?? '').length > LIMITS.stringLength) throw invalid(`${what}: a key or value is longer than ${LIMITS.stringLength} characters`);
  }
  return arr;
}

function enumNames<T extends string>(b: Budget, list: unknown, names: readonly T[], what: string): T[] {
  const arr = Array.isArray(list) ? list : [];
  b.take(arr.length, what);
  return arr.map((v) => {
    const name = typeof v === 'number' ? names[v] : v;
    if (typeof name !== 'string' || !names.includes(name as T)) throw invalid(`${what}: unknown value ${JSON.stringify(v)}`);
    return name as T;
  });
}

function checkFilterCount(filters: unknown[]): void {
  if (filters.length > LIMITS.filters) throw invalid(`too many filters (${filters.length} > ${LIMITS.filters})`);
}

export function checkPodFilters(filters: PodFilterMsg[] | undefined): PodFilterMsg[] {
  const list = filters ?? [];
  checkFilterCount(list);
  const b = new Budget();
  return list.map((f) => ({
    ids: strings(b, f.ids, 'ids'),
    states: enumNames(b, f.states, POD_STATES, 'states'),
    app_names: strings(b, f.app_names, 'app_names'),
    image_ids: strings(b, f.image_ids, 'image_ids'),
    network_names: strings(b, f.network_names, 'network_names'),
    annotations: keyValues(b, f.annotations, 'annotations'),
    cgroups: strings(b, f.cgroups, 'cgroups'),
    pod_sub_cgroups: strings(b, f.pod_sub_cgroups, 'pod_sub_cgroups'),
  }));
}

export function int64(v: unknown, what: string): number {
  const n = Number(v ?? 0);
  if (!Number.isFinite(n) || !Number.isInteger(n) || n < 0) throw invalid(`${what} must be a non-negative integer`);
  return n;
}

export function checkImageFilters(filters: ImageFilterMsg[] | undefined): ImageFilterMsg[] {
  const list = filters ?? [];
  checkFilterCount(list);
  const b = new Budget();
  return list.map((f) => ({
    ids: strings(b, f.ids, 'ids'),
    prefixes: strings(b, f.prefixes, 'prefixes'),
    base_names: strings(b, f.base_names, 'base_names'),
    keywords: strings(b, f.keywords, 'keywords'),
    labels: keyValues(b, f.labels, 'labels'),
    imported_after: String(int64(f.imported_after, 'imported_after')),
    imported_before: String(int64(f.imported_before, 'imported_before')),
    annotations: keyValues(b, f.annotations, 'annotations'),
    full_names: strings(b, f.full_names, 'full_names'),
  }));
}

export function checkEventFilter(f: EventFilterMsg | null | undefined): EventFilterMsg {
  const b = new Budget();
  return {
    types: enumNames(b, f?.types, EVENT_TYPES, 'types'),
    ids: strings(b, f?.ids, 'ids'),
    names: strings(b, f?.names, 'names'),
    since_time: String(int64(f?.since_time, 'since_time')),
    until_time: String(int64(f?.until_time, 'until_time')),
  };
}
