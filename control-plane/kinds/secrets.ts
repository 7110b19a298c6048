/**
 * v1 Secret as kube-apiserver treats it: `stringData` folded into base64
 * `data` on write, `data` values must be base64 (else 400, as the apiserver's
 * decoder answers), `type` defaults to Opaque and is immutable, keys are
 * config keys, 1 MiB total, the typed secrets' required keys (docker config
 * JSON, basic-auth, ssh, tls, service-account-token) and `immutable: true`.
 * Error messages never echo secret values.
 */
import { ApiError, type Cause } from '../resources.js';
import type { KObj } from '../store.js';

export const SECRET_TYPES = {
  opaque: 'Opaque',
  dockercfg: 'kubernetes.io/dockercfg',
  dockerConfigJson: 'kubernetes.io/dockerconfigjson',
  basicAuth: 'kubernetes.io/basic-auth',
  sshAuth: 'kubernetes.io/ssh-auth',
  tls: 'kubernetes.io/tls',
  serviceAccountToken: 'kubernetes.io/service-account-token',
} as const;

const MAX_SECRET_BYTES = 1 << 20;
const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const REDACTED = '<secret contents redacted>';

/** Offset of the first byte Go's base64.StdEncoding would refuse (for the apiserver's message). */
function badBase64Offset(s: string): number {
  const clean = s.replace(/[\r\n]/g, '');
  const i = clean.search(/[^A-Za-z0-9+/=]/);
  if (i >= 0) return i;
  const pad = clean.indexOf('=');
  if (pad >= 0 && pad < clean.length - 2) return pad;
  return clean.length - (clean.length % 4); // an incomplete last quantum
}

/**
 * Normalise a Secret body before validation (create and every update):
 * base64-check `data` (400 BadRequest), fold `stringData` in (write-only,
 * never stored), default `type` to Opaque.
 */
export function normaliseSecret(obj: KObj): void {
  const data = obj.data ?? {};
  if (typeof data !== 'object' || Array.isArray(data)) throw decodeError('data must be a map of base64 strings');
  for (const [k, v] of Object.entries(data)) {
    if (typeof v !== 'string') throw decodeError(`data[${k}] must be a base64 string`);
    const clean = v.replace(/[\r\n]/g, '');
    if (!BASE64.test(clean)) throw decodeError(`illegal base64 data at input byte ${badBase64Offset(v)}`);
    data[k] = clean;
  }
  const stringData = obj.stringData;
  if (stringData !== undefined && stringData !== null) {
    if (typeof stringData !== 'object' || Array.isArray(stringData)) throw decodeError('stringData must be a map of strings');
    for (const [k, v] of Object.entries(stringData)) {
      if (typeof v !== 'string') throw decodeError(`stringData[${k}] must be a string`);
      data[k] = Buffer.from(v, 'utf8').toString('base64');
    }
  }
  delete obj.stringData;
  if (Object.keys(data).length > 0) obj.data = data;
  else delete obj.data;
  if (obj.type === undefined || obj.type === '') obj.type = SECRET_TYPES.opaque;
}

function decodeError(detail: string): ApiError {
  return new ApiError(400, 'BadRequest', `Secret in version "v1" cannot be handled as a Secret: ${detail}`);
}

const decoded = (obj: KObj, key: string): Buffer | undefined => (typeof obj.data?.[key] === 'string' ? Buffer.from(obj.data[key], 'base64') : undefined);

function requireKey(obj: KObj, key: string, causes: Cause[]): Buffer | undefined {
  const v = decoded(obj, key);
  if (v === undefined) causes.push({ field: `data[${key}]`, reason: 'FieldValueRequired', message: 'Required value' });
  return v;
}

function requireJson(obj: KObj, key: string, causes: Cause[]): void {
  const v = requireKey(obj, key, causes);
  if (v === undefined) return;
  let parsed: unknown;
  try {
    parsed = JSON.parse(v.toString('utf8'));
  } catch {
    // JSON.parse's message quotes the input: say only that it is not JSON.
    parsed = undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    causes.push({ field: `data[${key}]`, reason: 'FieldValueInvalid', message: `Invalid value: "${REDACTED}": must be a JSON object (a docker config)` });
  }
}

/** ValidateSecret: keys, total size, per-type required keys. */
export function validateSecret(obj: KObj, causes: Cause[]): void {
  let total = 0;
  for (const [k, v] of Object.entries<string>(obj.data ?? {})) {
    if (k.length > 253 || !CONFIG_KEY.test(k)) {
      causes.push({ field: `data[${k}]`, reason: 'FieldValueInvalid', message: `Invalid value: "${k}": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')` });
    }
    total += Buffer.byteLength(v, 'base64');
  }
  if (total > MAX_SECRET_BYTES) causes.push({ field: 'data', reason: 'FieldValueTooLong', message: `Too long: must have at most ${MAX_SECRET_BYTES} bytes` });
  if (typeof obj.type !== 'string') causes.push({ field: 'type', reason: 'FieldValueInvalid', message: 'Invalid value: must be a string' });
  switch (obj.type) {
    case SECRET_TYPES.dockercfg: requireJson(obj, '.dockercfg', causes); break;
    case SECRET_TYPES.dockerConfigJson: requireJson(obj, '.dockerconfigjson', causes); break;
    case SECRET_TYPES.basicAuth:
      if (decoded(obj, 'username') === undefined && decoded(obj, 'password') === undefined) {
        causes.push({ field: 'data[username]', reason: 'FieldValueRequired', message: 'Required value' });
      }
      break;
    case SECRET_TYPES.sshAuth: requireKey(obj, 'ssh-privatekey', causes); break;
    case SECRET_TYPES.tls: requireKey(obj, 'tls.crt', causes); requireKey(obj, 'tls.key', causes); break;
    case SECRET_TYPES.serviceAccountToken:
      if (!obj.metadata?.annotations?.['kubernetes.io/service-account.name']) {
        causes.push({ field: 'metadata.annotations[kubernetes.io/service-account.name]', reason: 'FieldValueRequired', message: 'Required value' });
      }
      break;
    default: break;
  }
}

/** ValidateSecretUpdate: type never changes; an immutable secret keeps its data and stays immutable. */
export function secretUpdateCauses(cur: KObj, next: KObj): Cause[] {
  const causes: Cause[] = [];
  if ((cur.type ?? SECRET_TYPES.opaque) !== next.type) causes.push({ field: 'type', reason: 'FieldValueInvalid', message: `Invalid value: "${next.type}": field is immutable` });
  if (cur.immutable === true) {
    if (next.immutable !== true) causes.push({ field: 'immutable', reason: 'FieldValueForbidden', message: 'Forbidden: field is immutable when `immutable` is set' });
    if (JSON.stringify(cur.data ?? {}) !== JSON.stringify(next.data ?? {})) causes.push({ field: 'data', reason: 'FieldValueForbidden', message: 'Forbidden: field is immutable when `immutable` is set' });
  }
  return causes;
}
