/**
 * Shape checks of the container fields the agent acts on (probes, lifecycle
 * hooks) and of a container's restartPolicy, with the API server's rules and
 * messages. Fail closed: a handler field this node does not know is an error
 * naming it, never dropped. The classification of the fields themselves is
 * in pod-fields.ts (tables probe, lifecycle, lifecycleHandler).
 */
import { refusedFields } from './pod-fields.js';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const IANA_SVC_NAME = /^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

/** Known keys of each action object; anything else is refused with its path. */
const ACTION_KEYS: Record<string, readonly string[]> = {
  exec: ['command'],
  httpGet: ['path', 'port', 'host', 'scheme', 'httpHeaders'],
  tcpSocket: ['port', 'host'],
  grpc: ['port', 'service'],
  sleep: ['seconds'],
};

function checkPort(v: unknown, path: string, byName: boolean, errors: string[]): void {
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 1 || v > 65535) errors.push(`${path}: Invalid value: ${v}: must be between 1 and 65535, inclusive`);
  } else if (byName && typeof v === 'string') {
    // An IntOrString: digits are a number, anything else names a container port.
    if (/^\d+$/.test(v)) checkPort(Number(v), path, false, errors);
    else if (v.length > 15 || !IANA_SVC_NAME.test(v)) errors.push(`${path}: Invalid value: ${JSON.stringify(v)}: must be a port number or an IANA service name (at most 15 lower case letters, digits and '-')`);
  } else errors.push(`${path}: Required value: a port ${byName ? 'number or name' : 'number'}`);
}

function checkAction(kind: string, a: unknown, path: string, errors: string[]): void {
  if (!isObj(a)) { errors.push(`${path}: expected object`); return; }
  for (const key of Object.keys(a)) if (!ACTION_KEYS[kind]!.includes(key)) errors.push(`${path}.${key}: unknown field "${key}" (this node does not know it, so it cannot honour it)`);
  switch (kind) {
    case 'exec':
      if (!Array.isArray(a.command) || a.command.length === 0 || a.command.some((c) => typeof c !== 'string')) errors.push(`${path}.command: Required value: a non-empty list of strings`);
      break;
    case 'httpGet':
      checkPort(a.port, `${path}.port`, true, errors);
      if (a.path !== undefined && typeof a.path !== 'string') errors.push(`${path}.path: expected string`);
      if (a.host !== undefined && typeof a.host !== 'string') errors.push(`${path}.host: expected string`);
      if (a.scheme !== undefined && a.scheme !== 'HTTP' && a.scheme !== 'HTTPS') errors.push(`${path}.scheme: Unsupported value: ${JSON.stringify(a.scheme)}: supported values: "HTTP", "HTTPS"`);
      if (a.httpHeaders !== undefined) {
        if (!Array.isArray(a.httpHeaders)) errors.push(`${path}.httpHeaders: expected array`);
        else a.httpHeaders.forEach((h, i) => {
          if (!isObj(h) || typeof h.name !== 'string' || !/^[-!#$%&'*+.^_`|~0-9A-Za-z]+$/.test(h.name) || typeof h.value !== 'string') errors.push(`${path}.httpHeaders[${i}]: Invalid value: needs a name (an HTTP header name) and a string value`);
        });
      }
      break;
    case 'tcpSocket':
      checkPort(a.port, `${path}.port`, true, errors);
      if (a.host !== undefined && typeof a.host !== 'string') errors.push(`${path}.host: expected string`);
      break;
    case 'grpc':
      checkPort(a.port, `${path}.port`, false, errors);
      if (a.service !== undefined && typeof a.service !== 'string') errors.push(`${path}.service: expected string`);
      break;
    case 'sleep':
      if (!Number.isInteger(a.seconds) || (a.seconds as number) < 0) errors.push(`${path}.seconds: Invalid value: ${JSON.stringify(a.seconds)}: must be a non-negative integer`);
      break;
  }
}

/** Exactly one handler among `kinds` (the API server's "may not specify more than 1 handler type"). */
function checkHandler(h: Obj, path: string, kinds: readonly string[], errors: string[]): void {
  const given = kinds.filter((k) => h[k] !== undefined && h[k] !== null);
  if (given.length === 0) errors.push(`${path}: Required value: must specify a handler type (one of ${kinds.join(', ')})`);
  else if (given.length > 1) errors.push(`${path}.${given[1]}: Forbidden: may not specify more than 1 handler type`);
  for (const k of given) checkAction(k, h[k], `${path}.${k}`, errors);
}

const PROBE_NUMBERS = ['initialDelaySeconds', 'timeoutSeconds', 'periodSeconds', 'successThreshold', 'failureThreshold', 'terminationGracePeriodSeconds'] as const;

function checkProbe(p: unknown, path: string, which: 'livenessProbe' | 'readinessProbe' | 'startupProbe', errors: string[]): void {
  if (!isObj(p)) { errors.push(`${path}: expected object`); return; }
  errors.push(...refusedFields(p, path, 'probe'));
  checkHandler(p, path, ['exec', 'httpGet', 'tcpSocket', 'grpc'], errors);
  for (const key of PROBE_NUMBERS) {
    const v = p[key];
    if (v === undefined || v === null) continue;
    const min = key === 'initialDelaySeconds' || key === 'terminationGracePeriodSeconds' ? 0 : 1;
    if (!Number.isInteger(v) || (v as number) < min) errors.push(`${path}.${key}: Invalid value: ${JSON.stringify(v)}: must be an integer, at least ${min}`);
  }
  // The API server's rules: liveness and startup probes can only succeed once to count.
  if (which !== 'readinessProbe' && p.successThreshold !== undefined && p.successThreshold !== 1) errors.push(`${path}.successThreshold: Invalid value: ${JSON.stringify(p.successThreshold)}: must be 1`);
  if (which === 'readinessProbe' && p.terminationGracePeriodSeconds !== undefined) errors.push(`${path}.terminationGracePeriodSeconds: Invalid value: must not be set for readinessProbes`);
}

/**
 * Problems with a container's probes, lifecycle hooks and restartPolicy.
 * `init`: an init container, where only a sidecar (restartPolicy Always)
 * may have probes and hooks, as the API server says.
 */
export function checkContainerExtras(c: Obj, path: string, init: boolean): string[] {
  const errors: string[] = [];
  const sidecar = init && c.restartPolicy === 'Always';
  if (c.restartPolicy !== undefined) {
    if (!init) errors.push(`${path}.restartPolicy: Forbidden: may not be set for non-init containers`);
    else if (c.restartPolicy !== 'Always') errors.push(`${path}.restartPolicy: Unsupported value: ${JSON.stringify(c.restartPolicy)}: supported values: "Always"`);
  }
  if (c.terminationMessagePath !== undefined && (typeof c.terminationMessagePath !== 'string' || !c.terminationMessagePath.startsWith('/') || c.terminationMessagePath.split('/').includes('..') || c.terminationMessagePath.length > 4096)) {
    errors.push(`${path}.terminationMessagePath: Invalid value: ${JSON.stringify(c.terminationMessagePath)}: must be an absolute path without '..'`);
  }
  if (c.terminationMessagePolicy !== undefined && c.terminationMessagePolicy !== 'File' && c.terminationMessagePolicy !== 'FallbackToLogsOnError') {
    errors.push(`${path}.terminationMessagePolicy: Unsupported value: ${JSON.stringify(c.terminationMessagePolicy)}: supported values: "File", "FallbackToLogsOnError"`);
  }
  for (const which of ['livenessProbe', 'readinessProbe', 'startupProbe'] as const) {
    if (c[which] === undefined || c[which] === null) continue;
    if (init && !sidecar) errors.push(`${path}.${which}: Forbidden: may not be set for init containers without restartPolicy=Always`);
    else checkProbe(c[which], `${path}.${which}`, which, errors);
  }
  if (c.lifecycle !== undefined && c.lifecycle !== null) {
    const lp = `${path}.lifecycle`;
    if (!isObj(c.lifecycle)) errors.push(`${lp}: expected object`);
    else if (init && !sidecar && Object.keys(c.lifecycle).length) errors.push(`${lp}: Forbidden: may not be set for init containers without restartPolicy=Always`);
    else {
      errors.push(...refusedFields(c.lifecycle, lp, 'lifecycle'));
      for (const hook of ['postStart', 'preStop'] as const) {
        const h = c.lifecycle[hook];
        if (h === undefined || h === null) continue;
        if (!isObj(h)) { errors.push(`${lp}.${hook}: expected object`); continue; }
        errors.push(...refusedFields(h, `${lp}.${hook}`, 'lifecycleHandler'));
        checkHandler(h, `${lp}.${hook}`, ['exec', 'httpGet', 'sleep'], errors);
      }
    }
  }
  return errors;
}
