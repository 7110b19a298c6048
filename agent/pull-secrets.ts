/**
 * A pod's `spec.imagePullSecrets`, read from the API server and turned into
 * a registry keyring, as the kubelet does: secrets of type
 * `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`) and
 * `kubernetes.io/dockercfg` (`.dockercfg`), in the pod's order (earlier
 * secrets win for the same registry). A secret that is missing, of another
 * type or unreadable is skipped with a reason (the pull then goes on without
 * it, and the registry's refusal is what the pod's status shows). Nothing
 * here logs or returns secret contents.
 */
import type { V1Pod, V1Secret } from '@kubernetes/client-node';
import { keyringFromPullSecrets, type RegistryKeyring } from '../runtime-api/registry-auth.js';
import { apiStatus, type KubeClients } from './kube.js';

export const DOCKER_CONFIG_KEYS: Record<string, string> = {
  'kubernetes.io/dockerconfigjson': '.dockerconfigjson',
  'kubernetes.io/dockercfg': '.dockercfg',
};

export interface PullSecretsResult {
  keyring: RegistryKeyring;
  /** `name: why` for every listed secret that could not be used. */
  problems: string[];
}

/** The docker config a secret carries, or why it carries none. */
export function dockerConfigOf(secret: V1Secret): { config: string } | { problem: string } {
  const key = DOCKER_CONFIG_KEYS[secret.type ?? ''];
  if (!key) return { problem: `type ${secret.type ?? 'Opaque'} is not kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg` };
  const b64 = secret.data?.[key];
  if (!b64) return { problem: `it has no ${key}` };
  return { config: Buffer.from(b64, 'base64').toString('utf8') };
}

export async function pullSecretsKeyring(kube: Pick<KubeClients, 'core'>, pod: V1Pod): Promise<PullSecretsResult> {
  const namespace = pod.metadata?.namespace ?? 'default';
  const configs: string[] = [];
  const problems: string[] = [];
  for (const ref of pod.spec?.imagePullSecrets ?? []) {
    const name = ref?.name;
    if (!name) continue;
    let secret: V1Secret;
    try {
      secret = await kube.core.readNamespacedSecret({ name, namespace });
    } catch (err) {
      problems.push(apiStatus(err) === 404 ? `${name}: not found in namespace ${namespace}` : `${name}: cannot be read (${apiStatus(err) ?? String(err).slice(0, 200)})`);
      continue;
    }
    const got = dockerConfigOf(secret);
    if ('problem' in got) {
      problems.push(`${name}: ${got.problem}`);
      continue;
    }
    // Parse each alone, so one malformed secret does not spoil the others.
    try {
      keyringFromPullSecrets([got.config]);
      configs.push(got.config);
    } catch (err) {
      problems.push(`${name}: ${(err as Error).message.replace('imagePullSecrets[0]', 'its docker config')}`);
    }
  }
  return { keyring: keyringFromPullSecrets(configs), problems };
}
