import type { V1ConfigMap, V1Secret } from '@kubernetes/client-node';
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
