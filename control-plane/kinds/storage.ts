/**
 * v1 PersistentVolume and PersistentVolumeClaim, storage.k8s.io/v1
 * StorageClass, as kube-apiserver validates and defaults them (the subset
 * this cluster uses: hostPath and local PVs, the `local-path` class).
 * Binding and provisioning are the controller's
 * (controllers/persistent-volume.ts).
 */
import { memoryBytes } from '../../common/quantity.js';
import type { Cause } from '../resources.js';
import type { KObj } from '../store.js';
import type { KindStrategy } from './strategy.js';

export const ACCESS_MODES = ['ReadWriteOnce', 'ReadOnlyMany', 'ReadWriteMany', 'ReadWriteOncePod'];
export const DEFAULT_CLASS_ANNOTATION = 'storageclass.kubernetes.io/is-default-class';
/** The provisioner of node-local directory volumes (the `local-path` model of kind and k3s). */
export const LOCAL_PATH_PROVISIONER = 'stevedore.io/local-path';
export const LOCAL_PATH_CLASS = 'local-path';

/** The class `seed()` creates: the cluster's default, provisioning a directory on the pod's node. */
export const LOCAL_PATH_STORAGE_CLASS: KObj = {
  metadata: { name: LOCAL_PATH_CLASS, annotations: { [DEFAULT_CLASS_ANNOTATION]: 'true' } },
  provisioner: LOCAL_PATH_PROVISIONER,
  reclaimPolicy: 'Delete',
  // The PV is a directory of one node: it must be the node the first pod is scheduled to.
  volumeBindingMode: 'WaitForFirstConsumer',
};

const PV_SOURCES = ['hostPath', 'local', 'nfs', 'csi', 'iscsi', 'fc', 'rbd', 'cephfs', 'cinder', 'flexVolume', 'gcePersistentDisk', 'awsElasticBlockStore', 'azureDisk', 'azureFile', 'glusterfs', 'vsphereVolume', 'quobyte', 'portworxVolume', 'scaleIO', 'storageos', 'photonPersistentDisk', 'flocker'];

function checkAccessModes(modes: unknown, field: string, causes: Cause[]): void {
  if (!Array.isArray(modes) || modes.length === 0) {
    causes.push({ field, reason: 'FieldValueRequired', message: 'Required value: at least 1 access mode is required' });
    return;
  }
  for (const m of modes) {
    if (!ACCESS_MODES.includes(m)) causes.push({ field, reason: 'FieldValueNotSupported', message: `Unsupported value: "${m}": supported values: ${ACCESS_MODES.map((x) => `"${x}"`).join(', ')}` });
  }
  if (modes.includes('ReadWriteOncePod') && modes.length > 1) causes.push({ field, reason: 'FieldValueForbidden', message: 'Forbidden: may not use ReadWriteOncePod with other access modes' });
}

function checkStorage(value: unknown, field: string, causes: Cause[]): void {
  if (value === undefined || value === null || value === '') {
    causes.push({ field, reason: 'FieldValueRequired', message: 'Required value' });
    return;
  }
  try {
    if (memoryBytes(value as string | number, field) <= 0) causes.push({ field, reason: 'FieldValueInvalid', message: `Invalid value: "${value}": must be greater than zero` });
  } catch {
    causes.push({ field, reason: 'FieldValueInvalid', message: `Invalid value: "${value}": must be a valid quantity` });
  }
}

function checkVolumeMode(mode: unknown, field: string, causes: Cause[]): void {
  if (mode !== undefined && mode !== 'Filesystem' && mode !== 'Block') causes.push({ field, reason: 'FieldValueNotSupported', message: `Unsupported value: "${mode}": supported values: "Block", "Filesystem"` });
}

export const persistentVolumeStrategy: KindStrategy = {
  statusSubresource: true,
  prepareForCreate(pv) {
    pv.status = { phase: 'Pending' };
    pv.spec ??= {};
    pv.spec.persistentVolumeReclaimPolicy ??= 'Retain';
    pv.spec.volumeMode ??= 'Filesystem';
  },
  prepareForUpdate(pv) {
    pv.spec ??= {};
    pv.spec.persistentVolumeReclaimPolicy ??= 'Retain';
    pv.spec.volumeMode ??= 'Filesystem';
  },
  validate(pv, causes) {
    const spec = pv.spec ?? {};
    checkAccessModes(spec.accessModes, 'spec.accessModes', causes);
    checkStorage(spec.capacity?.storage, 'spec.capacity[storage]', causes);
    checkVolumeMode(spec.volumeMode, 'spec.volumeMode', causes);
    const sources = PV_SOURCES.filter((s) => spec[s] !== undefined && spec[s] !== null);
    if (sources.length === 0) causes.push({ field: 'spec', reason: 'FieldValueRequired', message: 'Required value: must specify a volume type' });
    if (sources.length > 1) causes.push({ field: 'spec', reason: 'FieldValueForbidden', message: `Forbidden: may not specify more than 1 volume type (found ${sources.join(', ')})` });
    for (const s of ['hostPath', 'local'] as const) {
      const p = spec[s]?.path;
      if (spec[s] && (typeof p !== 'string' || !p.startsWith('/'))) causes.push({ field: `spec.${s}.path`, reason: 'FieldValueInvalid', message: `Invalid value: ${JSON.stringify(p)}: must be an absolute path` });
      else if (spec[s] && p.split('/').includes('..')) causes.push({ field: `spec.${s}.path`, reason: 'FieldValueInvalid', message: `Invalid value: "${p}": must not contain '..'` });
    }
    if (spec.local && !spec.nodeAffinity) causes.push({ field: 'spec.nodeAffinity', reason: 'FieldValueRequired', message: 'Required value: Local volume requires node affinity' });
    const policy = spec.persistentVolumeReclaimPolicy;
    if (!['Retain', 'Delete', 'Recycle'].includes(policy)) causes.push({ field: 'spec.persistentVolumeReclaimPolicy', reason: 'FieldValueNotSupported', message: `Unsupported value: "${policy}": supported values: "Delete", "Recycle", "Retain"` });
  },
  validateUpdate(pv, cur, causes) {
    // The source and the node it lives on never change (kube: "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation").
    for (const s of PV_SOURCES) {
      if (JSON.stringify(pv.spec?.[s]) !== JSON.stringify(cur.spec?.[s])) {
        causes.push({ field: 'spec.persistentvolumesource', reason: 'FieldValueForbidden', message: 'Forbidden: spec.persistentvolumesource is immutable after creation' });
        break;
      }
    }
    if (cur.spec?.nodeAffinity && JSON.stringify(pv.spec?.nodeAffinity) !== JSON.stringify(cur.spec.nodeAffinity)) causes.push({ field: 'spec.nodeAffinity', reason: 'FieldValueForbidden', message: 'Forbidden: field is immutable once set' });
  },
};

/** Kept on a claim while a pod uses it (kube's StorageObjectInUseProtection admission + controller). */
export const PVC_PROTECTION = 'kubernetes.io/pvc-protection';

export const persistentVolumeClaimStrategy: KindStrategy = {
  statusSubresource: true,
  prepareForCreate(pvc) {
    pvc.status = { phase: 'Pending' };
    const finalizers: string[] = pvc.metadata.finalizers ?? [];
    if (!finalizers.includes(PVC_PROTECTION)) pvc.metadata.finalizers = [...finalizers, PVC_PROTECTION];
    pvc.spec ??= {};
    pvc.spec.volumeMode ??= 'Filesystem';
  },
  prepareForUpdate(pvc) {
    pvc.spec ??= {};
    pvc.spec.volumeMode ??= 'Filesystem';
  },
  validate(pvc, causes) {
    const spec = pvc.spec ?? {};
    checkAccessModes(spec.accessModes, 'spec.accessModes', causes);
    checkStorage(spec.resources?.requests?.storage, 'spec.resources[storage]', causes);
    checkVolumeMode(spec.volumeMode, 'spec.volumeMode', causes);
    if (spec.volumeMode === 'Block') causes.push({ field: 'spec.volumeMode', reason: 'FieldValueNotSupported', message: 'Unsupported value: "Block": this cluster provisions and mounts Filesystem volumes only' });
  },
  validateUpdate(pvc, cur, causes) {
    // kube: the spec is immutable but for resources.requests (expansion); the binder sets volumeName
    // once, and a claim without a class gets the default one (retroactive default StorageClass assignment).
    const strip = (s: KObj = {}) => ({ ...s, resources: undefined, volumeName: undefined, storageClassName: undefined });
    const classSet = (cur.spec?.storageClassName ?? null) !== null;
    if (JSON.stringify(strip(pvc.spec)) !== JSON.stringify(strip(cur.spec))
      || (cur.spec?.volumeName && pvc.spec?.volumeName !== cur.spec.volumeName)
      || (classSet && pvc.spec?.storageClassName !== cur.spec.storageClassName)) {
      causes.push({ field: 'spec', reason: 'FieldValueForbidden', message: 'Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims' });
    }
  },
};

export const storageClassStrategy: KindStrategy = {
  prepareForCreate(sc) {
    sc.reclaimPolicy ??= 'Delete';
    sc.volumeBindingMode ??= 'Immediate';
  },
  validate(sc, causes) {
    if (!sc.provisioner) causes.push({ field: 'provisioner', reason: 'FieldValueRequired', message: 'Required value' });
    if (!['Delete', 'Retain'].includes(sc.reclaimPolicy)) causes.push({ field: 'reclaimPolicy', reason: 'FieldValueNotSupported', message: `Unsupported value: "${sc.reclaimPolicy}": supported values: "Delete", "Retain"` });
    if (!['Immediate', 'WaitForFirstConsumer'].includes(sc.volumeBindingMode)) causes.push({ field: 'volumeBindingMode', reason: 'FieldValueNotSupported', message: `Unsupported value: "${sc.volumeBindingMode}": supported values: "Immediate", "WaitForFirstConsumer"` });
  },
  validateUpdate(sc, cur, causes) {
    for (const f of ['provisioner', 'parameters', 'reclaimPolicy', 'volumeBindingMode']) {
      if (JSON.stringify(sc[f]) !== JSON.stringify(cur[f])) causes.push({ field: f, reason: 'FieldValueForbidden', message: 'Forbidden: updates to ' + f + ' are forbidden.' });
    }
  },
};

/** The default class (DefaultStorageClass admission): the newest one annotated as default. */
export function defaultStorageClass(classes: readonly KObj[]): KObj | undefined {
  return classes.filter((c) => c.metadata.annotations?.[DEFAULT_CLASS_ANNOTATION] === 'true')
    .sort((a, b) => String(b.metadata.creationTimestamp).localeCompare(String(a.metadata.creationTimestamp)))[0];
}

/**
 * kube-apiserver's DefaultStorageClass admission: a claim created without a class (the field
 * unset; "" asks for none) gets the default one at once, so it reads as the class's from its first
 * GET. Claims made while there was no default get it later from the PV controller (retroactive).
 */
export function admitDefaultStorageClass(pvc: KObj, classes: readonly KObj[]): void {
  if (pvc.spec?.storageClassName !== undefined && pvc.spec?.storageClassName !== null) return;
  const def = defaultStorageClass(classes);
  if (def) pvc.spec = { ...pvc.spec, storageClassName: def.metadata.name };
}

/** Access modes as kubectl prints them (RWO, ROX, RWX, RWOP). */
export function accessModesShort(modes: string[] | undefined): string {
  const short: Record<string, string> = { ReadWriteOnce: 'RWO', ReadOnlyMany: 'ROX', ReadWriteMany: 'RWX', ReadWriteOncePod: 'RWOP' };
  return (modes ?? []).map((m) => short[m] ?? m).join(',');
}
