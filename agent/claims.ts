import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { V1PersistentVolume, V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { ContainerConfigError } from '../common/errors.js';
import type { HostPathType, Pod } from '../runtime-api/pod-spec.js';
import { apiStatus, type KubeClients } from './kube.js';

/** The provisioner of node-local directory volumes (control-plane/kinds/storage.ts). */
const LOCAL_PATH_PROVISIONER = 'stevedore.io/local-path';
/** Where this node's local-path volumes live; the agent announces it on its Node (agent/node.ts). */
export const LOCAL_PATH_ROOT_ANNOTATION = 'stevedore.io/local-path-root';
export const localPathRoot = (dataDir: string) => path.join(dataDir, 'local-path');

/** Whether a volume's required node affinity admits this node (the hostname label and the name are all a node offers here). */
function affinityAdmits(pv: V1PersistentVolume, nodeName: string): boolean {
  const terms = pv.spec?.nodeAffinity?.required?.nodeSelectorTerms ?? [];
  if (!terms.length) return true;
  const labels: Record<string, string> = { 'kubernetes.io/hostname': nodeName };
  return terms.some((t) => ((t.matchExpressions ?? []).length + (t.matchFields ?? []).length > 0) && (t.matchExpressions ?? []).every((e) => {
    const v = labels[e.key];
    if (e.operator === 'In') return v !== undefined && (e.values ?? []).includes(v);
    if (e.operator === 'NotIn') return v === undefined || !(e.values ?? []).includes(v);
    if (e.operator === 'Exists') return v !== undefined;
    if (e.operator === 'DoesNotExist') return v === undefined;
    return false;
  }) && (t.matchFields ?? []).every((f) => f.key === 'metadata.name' && (f.operator === 'In') === (f.values ?? []).includes(nodeName)));
}

/**
 * The kubelet's part of persistentVolumeClaim volumes, for node-local
 * volumes: each claim must be Bound; its PersistentVolume (hostPath or local)
 * must be on this node; the volume becomes a hostPath of that directory in
 * the runtime's pod (rkt's `host` volume), and `readOnly` on the claim makes
 * every mount of it read-only. A local-path volume's directory is made here,
 * 0777 as the provisioner of kind and k3s makes it. These hostPaths are the
 * agent's own: the node's hostPath gate (stage1-policy.ts) reads the pod as
 * the API server holds it, where they are claims.
 * A problem is a ContainerConfigError naming the volume and the claim.
 */
export async function resolveClaimVolumes(kube: KubeClients, nodeName: string, pod: Pod): Promise<Pod> {
  const volumes = pod.spec.volumes ?? [];
  if (!volumes.some((v) => v.persistentVolumeClaim)) return pod;
  const ns = pod.metadata.namespace ?? 'default';
  const out = structuredClone(pod);
  for (const [i, v] of volumes.entries()) {
    const ref = v.persistentVolumeClaim;
    if (!ref) continue;
    const where = `volume "${v.name}" (spec.volumes[${i}])`;
    let claim: V1PersistentVolumeClaim;
    try {
      claim = await kube.core.readNamespacedPersistentVolumeClaim({ name: ref.claimName, namespace: ns });
    } catch (err) {
      if (apiStatus(err) === 404) throw new ContainerConfigError(`${where}: persistentvolumeclaim "${ref.claimName}" not found`, `create the claim in namespace ${ns}`);
      throw err;
    }
    if (claim.status?.phase !== 'Bound' || !claim.spec?.volumeName) {
      throw new ContainerConfigError(`${where}: persistentvolumeclaim "${ref.claimName}" is not bound (phase ${claim.status?.phase ?? 'Pending'})`, `kubectl describe pvc ${ref.claimName} shows why; the pod starts once it is bound`);
    }
    let pv: V1PersistentVolume;
    try {
      pv = await kube.core.readPersistentVolume({ name: claim.spec.volumeName });
    } catch (err) {
      if (apiStatus(err) === 404) throw new ContainerConfigError(`${where}: persistentvolume "${claim.spec.volumeName}" of claim "${ref.claimName}" not found`);
      throw err;
    }
    const source = pv.spec?.hostPath ?? pv.spec?.local;
    if (!source?.path) {
      throw new ContainerConfigError(`${where}: persistentvolume "${pv.metadata?.name}" is not a hostPath or local volume, and this node mounts no other kind`, 'use the local-path StorageClass (the default) or a hostPath/local PersistentVolume');
    }
    if (!affinityAdmits(pv, nodeName)) {
      throw new ContainerConfigError(`${where}: persistentvolume "${pv.metadata?.name}" has node affinity that excludes node ${nodeName}`, 'the scheduler places pods where their volumes are; a pod bound to a node by hand must name the volume\'s node');
    }
    let type: HostPathType = pv.spec?.hostPath ? (pv.spec.hostPath.type ?? '') as HostPathType : 'Directory';
    if (pv.metadata?.annotations?.['pv.kubernetes.io/provisioned-by'] === LOCAL_PATH_PROVISIONER) {
      await fs.mkdir(source.path, { recursive: true });
      await fs.chmod(source.path, 0o777);
      type = 'Directory';
    }
    const readOnly = ref.readOnly === true;
    out.spec.volumes![i] = { name: v.name, hostPath: { path: source.path, type } };
    if (readOnly) {
      for (const c of [...out.spec.initContainers ?? [], ...out.spec.containers]) for (const m of c.volumeMounts ?? []) if (m.name === v.name) m.readOnly = true;
    }
  }
  return out;
}
