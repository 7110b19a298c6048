/**
 * v1 ConfigMap as kube-apiserver validates it: keys are config keys, a key is
 * in `data` or `binaryData` but not both, `binaryData` values are base64
 * (else 400, as the apiserver's decoder answers), 1 MiB in all, and
 * `immutable: true` freezes both maps and itself.
 */
import { ApiError, type Cause } from '../resources.js';
import type { KObj } from '../store.js';

const MAX_CONFIGMAP_BYTES = 1 << 20;
const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function decodeError(detail: string): ApiError {
  return new ApiError(400, 'BadRequest', `ConfigMap in version "v1" cannot be handled as a ConfigMap: ${detail}`);
}

/** Type errors of the body are decode errors (400), as Go's JSON decoder reports them. */
export function normaliseConfigMap(obj: KObj): void {
  for (const field of ['data', 'binaryData'] as const) {
    const m = obj[field];
    if (m === undefined || m === null) {
      delete obj[field];
      continue;
    }
    if (!isMap(m)) throw decodeError(`${field} must be a map of strings`);
    for (const [k, v] of Object.entries(m)) {
      if (typeof v !== 'string') throw decodeError(`${field}[${k}] must be a string`);
      if (field === 'binaryData') {
        const clean = v.replace(/[\r\n]/g, '');
        if (!BASE64.test(clean)) throw decodeError(`binaryData[${k}] is not valid base64`);
        m[k] = clean;
      }
    }
    if (Object.keys(m).length === 0) delete obj[field];
  }
}

/** ValidateConfigMap: keys, no key twice, total size. */
export function validateConfigMap(obj: KObj, causes: Cause[]): void {
  const data: Record<string, string> = obj.data ?? {};
  const binary: Record<string, string> = obj.binaryData ?? {};
  let total = 0;
  const checkKey = (field: string, k: string) => {
    if (k.length > 253 || !CONFIG_KEY.test(k)) {
      causes.push({ field: `${field}[${k}]`, reason: 'FieldValueInvalid', message: `Invalid value: "${k}": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')` });
    }
  };
  for (const [k, v] of Object.entries(data)) {
    checkKey('data', k);
    total += k.length + Buffer.byteLength(v, 'utf8');
  }
  for (const [k, v] of Object.entries(binary)) {
    checkKey('binaryData', k);
    if (k in data) causes.push({ field: `binaryData[${k}]`, reason: 'FieldValueInvalid', message: `Invalid value: "${k}": duplicate of key present in data` });
    total += k.length + Buffer.byteLength(v, 'base64');
  }
  if (total > MAX_CONFIGMAP_BYTES) causes.push({ field: '', reason: 'FieldValueTooLong', message: `Too long: must have at most ${MAX_CONFIGMAP_BYTES} bytes` });
}

/** ValidateConfigMapUpdate: an immutable ConfigMap keeps its data and stays immutable. */
export function configMapUpdateCauses(cur: KObj, next: KObj): Cause[] {
  if (cur.immutable !== true) return [];
  const causes: Cause[] = [];
  if (next.immutable !== true) causes.push({ field: 'immutable', reason: 'FieldValueForbidden', message: 'Forbidden: field is immutable when `immutable` is set' });
  for (const field of ['data', 'binaryData']) {
    if (JSON.stringify(cur[field] ?? {}) !== JSON.stringify(next[field] ?? {})) causes.push({ field, reason: 'FieldValueForbidden', message: 'Forbidden: field is immutable when `immutable` is set' });
  }
  return causes;
}
