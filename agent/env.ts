import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { ContainerConfigError } from '../common/errors.js';
import { escapeVars } from '../common/var-expansion.js';
import { ENV_NAME, type EnvVar } from '../runtime-api/pod-spec.js';
import { fieldValue, resourceValue, type DownwardContext, type NodeAllocatable } from './downward-api.js';
import { notFoundMessage, secretData, type PodObjects } from './pod-objects.js';

export interface EnvContext extends DownwardContext {
  node: NodeAllocatable;
  /** The pod gets its own network: status.podIP/podIPs are left for the runtime to fill once the network is up. */
  podIPFromRuntime: boolean;
}

export interface ResolvedEnv {
  env: EnvVar[];
  /** Kubelet's InvalidEnvironmentVariableNames warnings (envFrom keys skipped). */
  warnings: string[];
}

const POD_IP_FIELDS = new Set(['status.podIP', 'status.podIPs']);

/**
 * A container's environment as the runtime takes it, resolved as the
 * kubelet's makeEnvironmentVariables does: envFrom sources first (every key,
 * with the prefix; names that are not valid variable names are skipped with a
 * warning), then env on top. Values read from ConfigMaps, Secrets and the
 * downward API are never `$(VAR)`-expanded by the kubelet, so they are passed
 * with `$` escaped; the runtime expands literal values, command and args
 * (runtime-rkt/env.ts). A missing object or key that is not optional throws
 * ContainerConfigError with the kubelet's words. Values are never logged;
 * those from Secrets are marked `fromSecret`, so the runtime keeps them out of
 * what it writes to disk for others to read.
 */
export async function resolveEnv(pod: V1Pod, c: V1Container, objects: PodObjects, ctx: EnvContext): Promise<ResolvedEnv> {
  const ns = objects.namespace;
  const env: EnvVar[] = [];
  const warnings: string[] = [];
  const literal = (name: string, value: string, fromSecret = false) => env.push({ name, value: escapeVars(value), ...(fromSecret ? { fromSecret } : {}) });
  for (const from of c.envFrom ?? []) {
    const prefix = from.prefix ?? '';
    let entries: Array<[string, string]>;
    let what: string;
    let fromSecret = false;
    if (from.configMapRef) {
      const { name = '', optional } = from.configMapRef;
      const cm = await objects.configMap(name);
      if (!cm) {
        if (optional) continue;
        throw new ContainerConfigError(notFoundMessage('configmap', name));
      }
      entries = Object.entries(cm.data ?? {});
      what = `configMap ${ns}/${name}`;
    } else if (from.secretRef) {
      const { name = '', optional } = from.secretRef;
      const secret = await objects.secret(name);
      if (!secret) {
        if (optional) continue;
        throw new ContainerConfigError(notFoundMessage('secret', name));
      }
      entries = [...secretData(secret)].map(([k, v]) => [k, v.toString('utf8')]);
      what = `secret ${ns}/${name}`;
      fromSecret = true;
    } else continue;
    const invalid: string[] = [];
    for (const [key, value] of entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const name = prefix + key;
      if (!ENV_NAME.test(name)) { invalid.push(name); continue; }
      literal(name, value, fromSecret);
    }
    if (invalid.length) warnings.push(`Keys [${invalid.sort().join(', ')}] from the EnvFrom ${what} were skipped since they are considered invalid environment variable names.`);
  }
  for (const e of c.env ?? []) {
    const from = e.valueFrom;
    if (e.value || !from) { env.push({ name: e.name, value: e.value ?? '' }); continue; }
    if (from.fieldRef) {
      const fieldPath = from.fieldRef.fieldPath;
      if (POD_IP_FIELDS.has(fieldPath) && ctx.podIPFromRuntime) env.push({ name: e.name, valueFrom: { fieldRef: { fieldPath } } });
      else literal(e.name, fieldValue(pod, fieldPath, ctx));
    } else if (from.resourceFieldRef) {
      const r = from.resourceFieldRef;
      literal(e.name, resourceValue(pod, r.containerName || c.name, r.resource, r.divisor as string | number | undefined, ctx.node));
    } else if (from.configMapKeyRef) {
      const { name = '', key, optional } = from.configMapKeyRef;
      const cm = await objects.configMap(name);
      if (!cm) {
        if (optional) continue;
        throw new ContainerConfigError(notFoundMessage('configmap', name));
      }
      const value = cm.data?.[key];
      if (value === undefined) {
        if (optional) continue;
        throw new ContainerConfigError(`couldn't find key ${key} in ConfigMap ${ns}/${name}`);
      }
      literal(e.name, value);
    } else if (from.secretKeyRef) {
      const { name = '', key, optional } = from.secretKeyRef;
      const secret = await objects.secret(name);
      if (!secret) {
        if (optional) continue;
        throw new ContainerConfigError(notFoundMessage('secret', name));
      }
      const value = secretData(secret).get(key);
      if (value === undefined) {
        if (optional) continue;
        throw new ContainerConfigError(`couldn't find key ${key} in Secret ${ns}/${name}`);
      }
      literal(e.name, value.toString('utf8'), true);
    }
  }
  return { env, warnings };
}
