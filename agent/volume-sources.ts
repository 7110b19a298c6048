import type { V1KeyToPath, V1Pod, V1Volume } from '@kubernetes/client-node';
import type { Payload } from './atomic-writer.js';
import { fieldValue, resourceValue, type DownwardContext, type NodeAllocatable } from './downward-api.js';
import { notFoundMessage, secretData, type PodObjects } from './pod-objects.js';

/** The volume types the agent materialises on the node (the runtime gets them as hostPath directories). */
export type AgentVolumeKind = 'configMap' | 'secret' | 'downwardAPI' | 'projected';

/** Kubelet's plugin directory names, so a node's layout reads like a kubelet's. */
export const PLUGIN_DIR: Record<AgentVolumeKind, string> = {
  configMap: 'kubernetes.io~configmap',
  secret: 'kubernetes.io~secret',
  downwardAPI: 'kubernetes.io~downward-api',
  projected: 'kubernetes.io~projected',
};

export function agentVolumeKind(v: V1Volume): AgentVolumeKind | undefined {
  if (v.configMap) return 'configMap';
  if (v.secret) return 'secret';
  if (v.downwardAPI) return 'downwardAPI';
  if (v.projected) return 'projected';
  return undefined;
}

/** Whether a volume can hold Secret data (it is kept on a tmpfs, never on disk). */
export const holdsSecrets = (v: V1Volume) => !!v.secret || !!v.projected?.sources?.some((s) => s.secret || s.serviceAccountToken);

/** Why a volume cannot be set up: the pod waits (ContainerCreating, FailedMount event) and is tried again. */
export class VolumeSetupError extends Error {
  constructor(readonly volume: string, readonly detail: string) {
    super(`MountVolume.SetUp failed for volume "${volume}" : ${detail}`);
    this.name = 'VolumeSetupError';
  }
}

const DEFAULT_MODE = 0o644;
/** A projected token's life when the pod does not say (the API's default for expirationSeconds). */
const DEFAULT_TOKEN_SECONDS = 3600;

export interface VolumeContext extends DownwardContext { node: NodeAllocatable }

/**
 * Keys of an object → files: every key when `items` is unset, else only the
 * listed keys at their paths and modes (a listed key that is missing fails,
 * unless the source is optional, as the kubelet's MakePayload does).
 */
function project(payload: Payload, values: Map<string, Buffer>, items: V1KeyToPath[] | undefined, defaultMode: number, optional: boolean, missingKey: (key: string) => string): void {
  if (!items?.length) {
    for (const [key, data] of values) payload.set(key, { data, mode: defaultMode });
    return;
  }
  for (const item of items) {
    const data = values.get(item.key);
    if (data === undefined) {
      if (optional) continue;
      throw new Error(missingKey(item.key));
    }
    payload.set(item.path, { data, mode: item.mode ?? defaultMode });
  }
}

async function configMapValues(objects: PodObjects, name: string, optional: boolean): Promise<Map<string, Buffer> | undefined> {
  const cm = await objects.configMap(name);
  if (!cm) {
    if (optional) return undefined;
    throw new Error(notFoundMessage('configmap', name));
  }
  const values = new Map<string, Buffer>();
  for (const [k, v] of Object.entries(cm.data ?? {})) values.set(k, Buffer.from(v, 'utf8'));
  for (const [k, v] of Object.entries(cm.binaryData ?? {})) values.set(k, Buffer.from(v, 'base64'));
  return values;
}

async function secretValues(objects: PodObjects, name: string, optional: boolean): Promise<Map<string, Buffer> | undefined> {
  const secret = await objects.secret(name);
  if (!secret) {
    if (optional) return undefined;
    throw new Error(notFoundMessage('secret', name));
  }
  return secretData(secret);
}

function downwardItems(payload: Payload, pod: V1Pod, items: Array<{ path: string; mode?: number; fieldRef?: { fieldPath: string }; resourceFieldRef?: { containerName?: string; resource: string; divisor?: unknown } }>, defaultMode: number, ctx: VolumeContext): void {
  for (const item of items) {
    let value = '';
    if (item.fieldRef) value = fieldValue(pod, item.fieldRef.fieldPath, ctx);
    else if (item.resourceFieldRef) {
      const r = item.resourceFieldRef;
      value = resourceValue(pod, r.containerName ?? '', r.resource, r.divisor as string | number | undefined, ctx.node);
    }
    payload.set(item.path, { data: Buffer.from(value, 'utf8'), mode: item.mode ?? defaultMode });
  }
}

/**
 * The files of one configMap, secret, downwardAPI or projected volume, as
 * the kubelet would write them (modes: items[].mode, else defaultMode, else
 * 0644). Throws VolumeSetupError with the kubelet's words. Secret values are
 * only ever in the returned buffers.
 */
export async function volumePayload(pod: V1Pod, v: V1Volume, objects: PodObjects, ctx: VolumeContext): Promise<Payload> {
  const payload: Payload = new Map();
  try {
    if (v.configMap) {
      const src = v.configMap;
      const values = await configMapValues(objects, src.name ?? '', src.optional === true);
      if (values) project(payload, values, src.items, src.defaultMode ?? DEFAULT_MODE, src.optional === true, (k) => `configmap references non-existent config key: ${k}`);
    } else if (v.secret) {
      const src = v.secret;
      const values = await secretValues(objects, src.secretName ?? '', src.optional === true);
      if (values) project(payload, values, src.items, src.defaultMode ?? DEFAULT_MODE, src.optional === true, (k) => `references non-existent secret key: ${k}`);
    } else if (v.downwardAPI) {
      downwardItems(payload, pod, v.downwardAPI.items ?? [], v.downwardAPI.defaultMode ?? DEFAULT_MODE, ctx);
    } else if (v.projected) {
      const defaultMode = v.projected.defaultMode ?? DEFAULT_MODE;
      for (const source of v.projected.sources ?? []) {
        if (source.configMap) {
          const src = source.configMap;
          const values = await configMapValues(objects, src.name ?? '', src.optional === true);
          if (values) project(payload, values, src.items, defaultMode, src.optional === true, (k) => `configmap references non-existent config key: ${k}`);
        } else if (source.secret) {
          const src = source.secret;
          const values = await secretValues(objects, src.name ?? '', src.optional === true);
          if (values) project(payload, values, src.items, defaultMode, src.optional === true, (k) => `references non-existent secret key: ${k}`);
        } else if (source.downwardAPI) {
          downwardItems(payload, pod, source.downwardAPI.items ?? [], defaultMode, ctx);
        } else if (source.serviceAccountToken) {
          const src = source.serviceAccountToken;
          if (!objects.serviceAccountToken) throw new Error('serviceAccountToken projections need the API server (this agent reads pods from files)');
          let token: string;
          try {
            token = await objects.serviceAccountToken(pod, src.audience, src.expirationSeconds ?? DEFAULT_TOKEN_SECONDS);
          } catch (err) {
            throw new Error(`failed to fetch token: ${(err as Error).message}`);
          }
          payload.set(src.path, { data: Buffer.from(token, 'utf8'), mode: defaultMode });
        }
      }
    }
  } catch (err) {
    throw new VolumeSetupError(v.name, (err as Error).message);
  }
  return payload;
}
