import type { V1ConfigMap, V1Pod, V1Secret } from '@kubernetes/client-node';
import { apiStatus, type KubeClients } from './kube.js';

/**
 * The ConfigMaps and Secrets of one pod's namespace, read by name with `get`
 * (the only read the node authorizer allows a node, and only for objects its
 * pods reference). Each object is read once per reader: one reader serves one
 * start of a pod (env and volumes see the same version) or one refresh pass.
 * `undefined`: the object does not exist; other API errors are thrown.
 */
export interface PodObjects {
  readonly namespace: string;
  configMap(name: string): Promise<V1ConfigMap | undefined>;
  secret(name: string): Promise<V1Secret | undefined>;
  /** A token of the pod's ServiceAccount bound to the pod (TokenRequest), reused until 80 % of its life has passed. */
  serviceAccountToken?(pod: V1Pod, audience: string | undefined, expirationSeconds: number): Promise<string>;
}

interface CachedToken { token: string; refreshAtMs: number; expiresAtMs: number }

/**
 * Tokens per API client (one agent), as the kubelet's token manager keeps them: a token is
 * asked for again once 80 % of its life (at most 24 h) has passed, so the file a pod reads is
 * always valid; expired entries are dropped.
 */
const tokenCaches = new WeakMap<object, Map<string, CachedToken>>();

async function cachedToken(kube: Pick<KubeClients, 'core'>, pod: V1Pod, audience: string | undefined, expirationSeconds: number): Promise<string> {
  let cache = tokenCaches.get(kube);
  if (!cache) tokenCaches.set(kube, cache = new Map());
  const namespace = pod.metadata?.namespace ?? 'default';
  const serviceAccount = pod.spec?.serviceAccountName || pod.spec?.serviceAccount || 'default';
  const key = [namespace, serviceAccount, pod.metadata?.uid, audience ?? '', expirationSeconds].join('\u0000');
  const now = Date.now();
  for (const [k, v] of cache) if (v.expiresAtMs <= now) cache.delete(k);
  const hit = cache.get(key);
  if (hit && now < hit.refreshAtMs) return hit.token;
  const tr = await kube.core.createNamespacedServiceAccountToken({
    name: serviceAccount, namespace,
    body: {
      apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest',
      spec: { audiences: audience ? [audience] : [], expirationSeconds, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata?.name, uid: pod.metadata?.uid } },
    },
  });
  const token = tr.status?.token;
  if (!token) throw new Error(`the API server returned no token for service account ${namespace}/${serviceAccount}`);
  const expiresAtMs = tr.status?.expirationTimestamp ? new Date(tr.status.expirationTimestamp).getTime() : now + expirationSeconds * 1000;
  cache.set(key, { token, expiresAtMs, refreshAtMs: now + Math.min(0.8 * (expiresAtMs - now), 24 * 3600 * 1000) });
  return token;
}

export function podObjects(kube: Pick<KubeClients, 'core'>, namespace: string): PodObjects {
  const configMaps = new Map<string, Promise<V1ConfigMap | undefined>>();
  const secrets = new Map<string, Promise<V1Secret | undefined>>();
  const notFound = (err: unknown) => {
    if (apiStatus(err) === 404) return undefined;
    throw err;
  };
  return {
    namespace,
    configMap(name) {
      let got = configMaps.get(name);
      if (!got) configMaps.set(name, got = kube.core.readNamespacedConfigMap({ name, namespace }).catch(notFound));
      return got;
    },
    secret(name) {
      let got = secrets.get(name);
      if (!got) secrets.set(name, got = kube.core.readNamespacedSecret({ name, namespace }).catch(notFound));
      return got;
    },
    serviceAccountToken: (pod, audience, expirationSeconds) => cachedToken(kube, pod, audience, expirationSeconds),
  };
}

/** A Secret's values as bytes (`data` is base64; `stringData` only shows up when a client hands us an unsubmitted object). */
export function secretData(secret: V1Secret): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const [k, v] of Object.entries(secret.data ?? {})) out.set(k, Buffer.from(v, 'base64'));
  for (const [k, v] of Object.entries(secret.stringData ?? {})) if (!out.has(k)) out.set(k, Buffer.from(v, 'utf8'));
  return out;
}

/** The kubelet's "not found" wording (it passes the API server's error through). */
export const notFoundMessage = (kind: 'configmap' | 'secret', name: string) => `${kind} "${name}" not found`;
