import type { Logger } from '../../common/log.js';
import { nodeSelectorMatches } from './scheduling.js';
import { memoryBytes } from '../../common/quantity.js';
import type { KObj, Store } from '../store.js';
import { defaultStorageClass, LOCAL_PATH_PROVISIONER, PVC_PROTECTION } from '../kinds/storage.js';
import { KindController, POD_BURST_BATCH_MS, type ApiClient } from './client.js';
import type { EventRecorder } from './events.js';

const COMPONENT = 'persistentvolume-controller';
/** Set by the scheduler on a WaitForFirstConsumer claim: the node of its first pod. */
export const SELECTED_NODE = 'volume.kubernetes.io/selected-node';
/** A node tells where its local-path volumes live (agent/node.ts); this is the default. */
export const LOCAL_PATH_ROOT_ANNOTATION = 'stevedore.io/local-path-root';
export const DEFAULT_LOCAL_PATH_ROOT = '/var/lib/stevedore/local-path';
const PROVISIONED_BY = 'pv.kubernetes.io/provisioned-by';
/** Where local-path's helper pods run (the `up` policy opens hostPath to it), and with what. */
const HELPER_NAMESPACE = 'kube-system';
const HELPER_IMAGE = 'busybox';

const storageOf = (q: unknown): number => {
  try { return memoryBytes(q as string | number, 'storage'); } catch { return 0; }
};

/** Whether a node's labels satisfy a PV's required node affinity (terms ORed, expressions ANDed). */
export function nodeAffinityMatches(pv: KObj, node: KObj): boolean {
  return nodeSelectorMatches(pv.spec?.nodeAffinity?.required?.nodeSelectorTerms, node);
}

/** The claims a pod's volumes name, with the volume that names each. */
export function podClaims(pod: KObj): string[] {
  return (pod.spec?.volumes ?? []).map((v: KObj) => v?.persistentVolumeClaim?.claimName).filter((n: unknown): n is string => typeof n === 'string' && n !== '');
}

/**
 * The scheduler's VolumeBinding filter for one node: why the pod's claims
 * rule it out, or undefined. A bound claim's volume must accept the node; an
 * unbound WaitForFirstConsumer claim accepts any node (it is provisioned
 * where the pod goes); an unbound Immediate claim blocks the pod.
 */
export function volumeBindingReason(store: Store, pod: KObj, node: KObj): string | undefined {
  for (const name of podClaims(pod)) {
    const claim = store.get('persistentvolumeclaims', pod.metadata.namespace, name);
    if (!claim) return `persistentvolumeclaim "${name}" not found`;
    if (claim.metadata.deletionTimestamp) return `persistentvolumeclaim "${name}" is being deleted`;
    if (claim.spec?.volumeName) {
      const pv = store.get('persistentvolumes', '', claim.spec.volumeName);
      if (!pv) return `persistentvolume "${claim.spec.volumeName}" not found`;
      if (!nodeAffinityMatches(pv, node)) return 'node(s) had volume node affinity conflict';
      continue;
    }
    const selected = claim.metadata.annotations?.[SELECTED_NODE];
    if (selected && selected !== node.metadata.name) return 'node(s) did not have enough free storage';
    const cls = store.get('storageclasses', '', claim.spec?.storageClassName ?? '');
    if (cls?.volumeBindingMode !== 'WaitForFirstConsumer') return 'pod has unbound immediate PersistentVolumeClaims';
  }
  return undefined;
}

/**
 * The scheduler's PreBind: claims of the pod still waiting for their first
 * consumer get the chosen node (the provisioner makes their volume there).
 * True when every claim is bound, so the pod may be bound now; false: wait
 * for the binder (the claim's change wakes the scheduler again).
 */
export function prepareClaimsForBinding(store: Store, pod: KObj, nodeName: string): boolean {
  let allBound = true;
  for (const name of podClaims(pod)) {
    const claim = store.get('persistentvolumeclaims', pod.metadata.namespace, name);
    if (!claim || claim.spec?.volumeName) continue;
    allBound = false;
    if (claim.metadata.annotations?.[SELECTED_NODE]) continue;
    const next = structuredClone(claim);
    next.metadata.annotations = { ...next.metadata.annotations, [SELECTED_NODE]: nodeName };
    store.update('persistentvolumeclaims', claim.metadata.namespace, name, next, claim.metadata.resourceVersion);
  }
  return allBound;
}

/**
 * The PersistentVolume controller (kube-controller-manager's binder) and the
 * `local-path` provisioner beside it:
 *   - a claim without a class gets the default class (retroactive default
 *     StorageClass assignment);
 *   - an unbound claim binds to the smallest Available volume of its class
 *     that has its access modes, volume mode and size (and, for a
 *     WaitForFirstConsumer class, accepts the node the scheduler chose);
 *   - with none, a `stevedore.io/local-path` class provisions one once the
 *     scheduler has chosen the node: a hostPath directory under the node's
 *     local-path root (its `stevedore.io/local-path-root` annotation), with
 *     node affinity to it, pre-bound to the claim;
 *   - a volume whose claim is gone is Released, and deleted when its reclaim
 *     policy is Delete (the node keeps the directory: see control-plane/README.md).
 */
export class PersistentVolumeController extends KindController {
  /** Claims told once that they wait (one event, not one per pass). */
  private readonly told = new Map<string, string>();

  constructor(store: Store, log: Logger, private readonly events: EventRecorder, private readonly client: ApiClient) {
    super(store, log, 'persistentvolumeclaims', ['persistentvolumes', 'storageclasses', 'nodes', 'pods'], 5000, POD_BURST_BATCH_MS);
  }

  protected override pass(): void {
    // Volumes first: one made in the same batch as a claim becomes Available before the claim looks
    // (binding skips volumes not yet Available, as kube's does), so the claim gets the smallest fit.
    for (const pv of this.store.list('persistentvolumes')) {
      try {
        this.syncVolume(pv);
      } catch (err) {
        this.log.error({ err, volume: pv.metadata.name }, 'persistent volume sync failed');
      }
    }
    super.pass();
  }

  private tellOnce(claim: KObj, type: 'Normal' | 'Warning', reason: string, message: string, component = COMPONENT): void {
    if (this.told.get(claim.metadata.uid) === reason + message) return;
    this.told.set(claim.metadata.uid, reason + message);
    this.events.record(claim, type, reason, message, component);
  }

  protected sync(claim: KObj): void {
    if (claim.metadata.deletionTimestamp) {
      this.releaseProtection(claim);
      return;
    }
    const ns = claim.metadata.namespace;
    if (claim.spec?.storageClassName === undefined || claim.spec?.storageClassName === null) {
      const def = defaultStorageClass(this.store.list('storageclasses'));
      if (def) {
        this.client.update('persistentvolumeclaims', ns, { ...claim, spec: { ...claim.spec, storageClassName: def.metadata.name } });
        return;
      }
    }
    if (claim.spec?.volumeName) {
      const pv = this.store.get('persistentvolumes', '', claim.spec.volumeName);
      if (!pv) {
        this.setClaimStatus(claim, { phase: 'Lost' });
        this.tellOnce(claim, 'Warning', 'ClaimLost', 'Bound claim has lost its PersistentVolume. Data on the volume is lost!');
        return;
      }
      const ref = pv.spec?.claimRef;
      if (ref && (ref.namespace !== ns || ref.name !== claim.metadata.name || (ref.uid && ref.uid !== claim.metadata.uid))) return; // someone else's
      this.bind(claim, pv);
      return;
    }
    const cls = this.store.get('storageclasses', '', claim.spec?.storageClassName ?? '');
    const wffc = cls?.volumeBindingMode === 'WaitForFirstConsumer';
    const selected = claim.metadata.annotations?.[SELECTED_NODE];
    const node = selected ? this.store.get('nodes', '', selected) : undefined;
    const pv = this.findVolume(claim, wffc ? node : undefined, wffc);
    if (pv) {
      this.bind(claim, pv);
      return;
    }
    if (!claim.spec?.storageClassName) {
      this.tellOnce(claim, 'Normal', 'FailedBinding', 'no persistent volumes available for this claim and no storage class is set');
      return;
    }
    if (!cls) {
      this.tellOnce(claim, 'Warning', 'ProvisioningFailed', `storageclass.storage.k8s.io "${claim.spec.storageClassName}" not found`);
      return;
    }
    if (wffc && !selected) {
      this.tellOnce(claim, 'Normal', 'WaitForFirstConsumer', 'waiting for first consumer to be created before binding');
      return;
    }
    if (cls.provisioner !== LOCAL_PATH_PROVISIONER) {
      this.tellOnce(claim, 'Normal', 'ExternalProvisioning', `Waiting for a volume to be created either by the external provisioner '${cls.provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.`);
      return;
    }
    if (!selected) {
      this.tellOnce(claim, 'Warning', 'ProvisioningFailed', `${LOCAL_PATH_PROVISIONER} makes a directory on one node, so its class needs volumeBindingMode WaitForFirstConsumer (storageclass "${cls.metadata.name}" has ${cls.volumeBindingMode})`);
      return;
    }
    this.provision(claim, cls, selected, node);
  }

  /** pvc-protection: a claim being deleted goes once no pod that may still run uses it. */
  private releaseProtection(claim: KObj): void {
    if (!(claim.metadata.finalizers ?? []).includes(PVC_PROTECTION)) return;
    const inUse = this.store.list('pods', claim.metadata.namespace).some((p) => p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed' && podClaims(p).includes(claim.metadata.name));
    if (inUse) return;
    this.client.update('persistentvolumeclaims', claim.metadata.namespace, { ...claim, metadata: { ...claim.metadata, finalizers: claim.metadata.finalizers.filter((f: string) => f !== PVC_PROTECTION) } });
  }

  /** The smallest Available volume that fits the claim (or one pre-bound to it). */
  private findVolume(claim: KObj, node: KObj | undefined, needsNode: boolean): KObj | undefined {
    const want = storageOf(claim.spec?.resources?.requests?.storage);
    const modes: string[] = claim.spec?.accessModes ?? [];
    const labels: Record<string, string> = claim.spec?.selector?.matchLabels ?? {};
    const fits = this.store.list('persistentvolumes').filter((pv) => {
      if (pv.metadata.deletionTimestamp) return false;
      const ref = pv.spec?.claimRef;
      if (ref) return ref.namespace === claim.metadata.namespace && ref.name === claim.metadata.name && (!ref.uid || ref.uid === claim.metadata.uid);
      if ((pv.status?.phase ?? 'Available') !== 'Available') return false;
      if ((pv.spec?.storageClassName ?? '') !== (claim.spec?.storageClassName ?? '')) return false;
      if ((pv.spec?.volumeMode ?? 'Filesystem') !== (claim.spec?.volumeMode ?? 'Filesystem')) return false;
      if (!modes.every((m) => (pv.spec?.accessModes ?? []).includes(m))) return false;
      if (storageOf(pv.spec?.capacity?.storage) < want) return false;
      if (!Object.entries(labels).every(([k, v]) => pv.metadata.labels?.[k] === v)) return false;
      if (needsNode && (!node || !nodeAffinityMatches(pv, node))) return false;
      return true;
    });
    // A volume pre-bound to this claim first, then the smallest that fits.
    return fits.sort((a, b) => Number(!!b.spec?.claimRef) - Number(!!a.spec?.claimRef) || storageOf(a.spec?.capacity?.storage) - storageOf(b.spec?.capacity?.storage))[0];
  }

  private bind(claim: KObj, pv: KObj): void {
    const ns = claim.metadata.namespace;
    let volume = pv;
    const ref = pv.spec?.claimRef;
    if (!ref || !ref.uid) {
      volume = this.client.update('persistentvolumes', '', {
        ...pv,
        metadata: { ...pv.metadata, annotations: { ...pv.metadata.annotations, 'pv.kubernetes.io/bound-by-controller': 'yes' } },
        spec: { ...pv.spec, claimRef: { kind: 'PersistentVolumeClaim', namespace: ns, name: claim.metadata.name, uid: claim.metadata.uid, apiVersion: 'v1', resourceVersion: claim.metadata.resourceVersion } },
      });
    }
    if (volume.status?.phase !== 'Bound') volume = this.client.updateStatus('persistentvolumes', '', { ...volume, status: { phase: 'Bound' } });
    let current = claim;
    if (current.spec?.volumeName !== volume.metadata.name) {
      current = this.client.update('persistentvolumeclaims', ns, {
        ...current,
        metadata: { ...current.metadata, annotations: { ...current.metadata.annotations, 'pv.kubernetes.io/bind-completed': 'yes', 'pv.kubernetes.io/bound-by-controller': 'yes' } },
        spec: { ...current.spec, volumeName: volume.metadata.name },
      });
    }
    this.setClaimStatus(current, { phase: 'Bound', accessModes: volume.spec?.accessModes ?? [], capacity: { storage: volume.spec?.capacity?.storage } });
  }

  private setClaimStatus(claim: KObj, status: KObj): void {
    const cur = this.store.get('persistentvolumeclaims', claim.metadata.namespace, claim.metadata.name);
    if (!cur || cur.metadata.uid !== claim.metadata.uid || JSON.stringify(cur.status ?? {}) === JSON.stringify(status)) return;
    this.client.updateStatus('persistentvolumeclaims', claim.metadata.namespace, { ...cur, status });
  }

  /** local-path: a directory on the chosen node, named for the claim, pre-bound to it. */
  private provision(claim: KObj, cls: KObj, nodeName: string, node: KObj | undefined): void {
    const name = `pvc-${claim.metadata.uid}`;
    if (this.store.get('persistentvolumes', '', name)) return; // made; the next pass binds it
    const root = node?.metadata?.annotations?.[LOCAL_PATH_ROOT_ANNOTATION] ?? DEFAULT_LOCAL_PATH_ROOT;
    const dir = `${root.replace(/\/+$/, '')}/${name}_${claim.metadata.namespace}_${claim.metadata.name}`;
    this.tellOnce(claim, 'Normal', 'Provisioning', `External provisioner is provisioning volume for claim "${claim.metadata.namespace}/${claim.metadata.name}"`, LOCAL_PATH_PROVISIONER);
    this.client.create('persistentvolumes', '', {
      apiVersion: 'v1', kind: 'PersistentVolume',
      metadata: { name, annotations: { [PROVISIONED_BY]: LOCAL_PATH_PROVISIONER, [SELECTED_NODE]: nodeName } },
      spec: {
        capacity: { storage: claim.spec.resources.requests.storage },
        accessModes: claim.spec.accessModes,
        persistentVolumeReclaimPolicy: cls.reclaimPolicy ?? 'Delete',
        storageClassName: cls.metadata.name,
        volumeMode: 'Filesystem',
        hostPath: { path: dir, type: 'DirectoryOrCreate' },
        nodeAffinity: { required: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [node?.metadata?.labels?.['kubernetes.io/hostname'] ?? nodeName] }] }] } },
        claimRef: { kind: 'PersistentVolumeClaim', namespace: claim.metadata.namespace, name: claim.metadata.name, uid: claim.metadata.uid, apiVersion: 'v1', resourceVersion: claim.metadata.resourceVersion },
      },
    });
    this.events.record(claim, 'Normal', 'ProvisioningSucceeded', `Successfully provisioned volume ${name}`, LOCAL_PATH_PROVISIONER);
  }

  /**
   * The Delete reclaim policy. A local-path volume's directory lives on its
   * node, so, as local-path-provisioner does, a helper pod on that node
   * (kube-system, a hostPath of the directory's parent) removes it first;
   * the volume goes once the helper Succeeded, or turns Failed with the
   * helper's reason (e.g. the node's policy does not open hostPath to
   * kube-system). Other volumes have no deleter here: the object goes.
   */
  private reclaimByDeleting(pv: KObj): void {
    const dir: string | undefined = pv.spec?.hostPath?.path;
    const node: string | undefined = pv.metadata.annotations?.[SELECTED_NODE];
    if (pv.metadata.annotations?.[PROVISIONED_BY] !== LOCAL_PATH_PROVISIONER || !dir || !node) {
      this.client.delete('persistentvolumes', '', pv.metadata.name, { uid: pv.metadata.uid });
      return;
    }
    if (pv.status?.phase === 'Failed') return; // told once; an administrator looks at it
    if (pv.status?.phase !== 'Released') this.client.updateStatus('persistentvolumes', '', { ...pv, status: { phase: 'Released' } });
    const name = `helper-pod-delete-${pv.metadata.name}`.slice(0, 253);
    const helper = this.store.get('pods', HELPER_NAMESPACE, name);
    if (!helper) {
      const parent = dir.slice(0, dir.lastIndexOf('/')) || '/';
      const leaf = dir.slice(dir.lastIndexOf('/') + 1);
      this.client.create('pods', HELPER_NAMESPACE, {
        apiVersion: 'v1', kind: 'Pod',
        metadata: { name, labels: { 'stevedore.io/local-path-helper': 'delete' }, annotations: { 'stevedore.io/persistent-volume': pv.metadata.name } },
        spec: {
          nodeName: node,
          restartPolicy: 'Never',
          terminationGracePeriodSeconds: 1,
          containers: [{ name: 'helper', image: HELPER_IMAGE, command: ['rm', '-rf', '--', `/volume-parent/${leaf}`], volumeMounts: [{ name: 'parent', mountPath: '/volume-parent' }] }],
          volumes: [{ name: 'parent', hostPath: { path: parent, type: 'DirectoryOrCreate' } }],
        },
      });
      return;
    }
    if (helper.metadata.deletionTimestamp) return;
    if (helper.status?.phase === 'Succeeded') {
      this.client.delete('persistentvolumes', '', pv.metadata.name, { uid: pv.metadata.uid });
      this.client.delete('pods', HELPER_NAMESPACE, name, { uid: helper.metadata.uid });
      this.log.info({ volume: pv.metadata.name, dir, node }, 'local-path volume deleted (reclaim policy Delete)');
    } else if (helper.status?.phase === 'Failed') {
      const why = helper.status?.message ?? helper.status?.reason ?? 'the helper pod failed';
      this.client.updateStatus('persistentvolumes', '', { ...pv, status: { phase: 'Failed', message: `removing ${dir} on node ${node} failed: ${why}` } });
      this.events.record(pv, 'Warning', 'VolumeFailedDelete', `removing ${dir} on node ${node} failed (pod ${HELPER_NAMESPACE}/${name}): ${why}`, LOCAL_PATH_PROVISIONER);
    }
  }

  /** A volume's phase from its claim: Available, Bound, or Released (then deleted under the Delete policy). */
  private syncVolume(pv: KObj): void {
    if (pv.metadata.deletionTimestamp) return;
    const ref = pv.spec?.claimRef;
    let phase: string;
    if (!ref) phase = 'Available';
    else {
      const claim = this.store.get('persistentvolumeclaims', ref.namespace, ref.name);
      const gone = !claim || (ref.uid && claim.metadata.uid !== ref.uid);
      if (!gone) return; // bind() keeps the phase of a claimed volume
      // A volume pre-bound by an administrator to a claim that does not exist yet waits for it.
      if (!ref.uid) phase = 'Available';
      else if (pv.spec?.persistentVolumeReclaimPolicy === 'Delete') {
        this.reclaimByDeleting(pv);
        return;
      } else phase = 'Released';
    }
    if (pv.status?.phase === phase) return;
    this.client.updateStatus('persistentvolumes', '', { ...pv, status: { phase } });
  }
}
