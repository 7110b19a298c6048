/**
 * Every field of a Kubernetes (v1.32) PodSpec, Container, SecurityContext and
 * PodSecurityContext, and what this node does with it. One table, read by
 * `validatePod` (runtime-api/pod-spec.ts) and rendered into docs/pod-fields.md
 * (a unit test keeps the two the same), so the node fails closed: a field is
 *   - honoured: the node acts on it (manifest.ts checks its type and shape);
 *   - refused: the node does not implement it, so any value that asks for
 *     something (anything but unset, empty, or the API server's default) is
 *     refused with the field's path, never dropped without a word;
 *   - ignored by design: it is someone else's job (the scheduler's, the API
 *     server's) or means nothing on this node; the reason is in the table.
 * A field that is in no table is unknown: refused as well.
 */

export type FieldClass = 'honoured' | 'refused' | 'ignored';

export interface Accepts {
  /** The accepted values in words, for messages and the docs. */
  text: string;
  test: (value: unknown) => boolean;
}

export interface Field {
  class: FieldClass;
  /** honoured: what the node does with it; refused: what is missing; ignored: why that is right. */
  why: string;
  /** refused fields: the issue that brings the feature, when one does. */
  issue?: number;
  /** refused fields: values accepted besides unset/empty, because they ask for nothing (API defaults). */
  accepts?: Accepts;
  /** honoured objects (or lists of objects): the table that classifies their own fields. */
  table?: TableId;
}

export type TableId =
  | 'podSpec' | 'container' | 'resources' | 'envVar' | 'containerPort' | 'securityContext' | 'podSecurityContext'
  | 'capabilities' | 'seccompProfile' | 'sysctl' | 'dnsConfig' | 'dnsConfigOption' | 'hostAlias' | 'localObjectReference' | 'podOS'
  | 'envVarSource' | 'objectFieldSelector' | 'resourceFieldSelector' | 'keySelector' | 'envFromSource' | 'envSourceRef'
  | 'volume' | 'emptyDirVolumeSource' | 'hostPathVolumeSource' | 'pvcVolumeSource' | 'flexVolumeSource' | 'volumeMount'
  | 'configMapVolumeSource' | 'secretVolumeSource' | 'keyToPath' | 'downwardAPIVolumeSource' | 'downwardAPIVolumeFile'
  | 'projectedVolumeSource' | 'volumeProjection' | 'configMapProjection' | 'secretProjection' | 'downwardAPIProjection'
  | 'serviceAccountTokenProjection'
  | 'probe' | 'lifecycle' | 'lifecycleHandler';

export interface FieldTable {
  title: string;
  /** Where the table's object appears in a Pod (`[]`: every item of a list). */
  paths: string[];
  fields: Record<string, Field>;
}

const honour = (why: string, table?: TableId): Field => ({ class: 'honoured', why, ...(table ? { table } : {}) });
const ignore = (why: string): Field => ({ class: 'ignored', why });
const refuse = (why: string, opts: { issue?: number; accepts?: Accepts } = {}): Field => ({ class: 'refused', why, ...opts });
const only = (...values: unknown[]): Accepts => ({
  text: values.map((v) => JSON.stringify(v)).join(' or '),
  test: (v) => values.some((x) => JSON.stringify(x) === JSON.stringify(v)),
});

/** Unset, null, [] and {} ask for nothing, whatever the field. */
export function asksForNothing(value: unknown): boolean {
  if (value === undefined || value === null) return true;
  if (Array.isArray(value)) return value.length === 0;
  if (typeof value === 'object') return Object.keys(value as object).length === 0;
  return false;
}

const SCHEDULER = 'the scheduler\'s: it chose this node before the pod got here';
const NO_VOLUME_PLUGIN = 'this node has no plugin for this volume type (it mounts emptyDir, hostPath and local PersistentVolumes)';
const PROBE = (what: string) => `run by the agent's prober (exec in the container, or HTTP/TCP/gRPC to the pod IP); ${what}`;

export const POD_FIELD_TABLES: Record<TableId, FieldTable> = {
  podSpec: {
    title: 'PodSpec',
    paths: ['spec'],
    fields: {
      activeDeadlineSeconds: honour('the agent stops the pod that long after its startTime: Failed, DeadlineExceeded'),
      affinity: ignore(SCHEDULER),
      automountServiceAccountToken: ignore('no token volume is added to pods automatically (no ServiceAccount admission plugin); only a projected serviceAccountToken volume the pod declares holds a token'),
      containers: honour('run as the pod\'s apps, one systemd unit each', 'container'),
      dnsConfig: honour('written into the pod\'s resolv.conf', 'dnsConfig'),
      dnsPolicy: honour('ClusterFirst, ClusterFirstWithHostNet, Default, None: the pod\'s resolv.conf'),
      enableServiceLinks: ignore('there are no Services yet (issue 17), so there are no service environment variables to add'),
      ephemeralContainers: refuse('ephemeral (debug) containers are not run', { issue: 15 }),
      hostAliases: honour('added to the pod\'s /etc/hosts', 'hostAlias'),
      hostIPC: refuse('no stage1 shares the node\'s IPC namespace yet (the stage1 policy gates it too: `allowHostAccess`)', { accepts: only(false) }),
      hostNetwork: honour('the node\'s network namespace; only where the node\'s stage1 policy opens `hostNetwork`'),
      hostPID: refuse('no stage1 shares the node\'s PID namespace yet (the stage1 policy gates it too: `allowHostAccess`)', { accepts: only(false) }),
      hostUsers: refuse('user namespaces are not implemented yet: pods run in the node\'s user namespace', { accepts: only(true) }),
      hostname: honour('the pod\'s hostname and /etc/hosts entry'),
      imagePullSecrets: honour('credentials for the pod\'s image pulls', 'localObjectReference'),
      initContainers: honour('run in order before the containers, each to completion (gated by its unit\'s ExecCondition), restarted per restartPolicy; restartPolicy Always makes a sidecar', 'container'),
      nodeName: honour('the agent runs only pods bound to its node'),
      nodeSelector: ignore(SCHEDULER),
      os: honour('only `linux` (this node\'s OS), as the kubelet admits pods', 'podOS'),
      overhead: ignore('set by RuntimeClass admission for the scheduler\'s accounting; the node sizes no pod cgroup from it'),
      preemptionPolicy: ignore(SCHEDULER),
      priority: ignore('the scheduler\'s (preemption); the node evicts no pods under pressure, so it never ranks them'),
      priorityClassName: ignore('resolved into `priority` by the API server; see priority'),
      readinessGates: refuse('pod readiness is not computed from extra conditions; the pod would count as ready without them', { issue: 14 }),
      resourceClaims: refuse('dynamic resource allocation (DRA) is not implemented: the claimed devices would be missing'),
      resources: refuse('pod-level resources (limits for the whole pod) are not enforced yet; set them per container'),
      restartPolicy: honour('Always, OnFailure, Never: systemd\'s Restart= on every app unit'),
      runtimeClassName: honour('a RuntimeClass whose handler is a stage1 (fly, namespaces, kvm), under the node\'s stage1 policy'),
      schedulerName: ignore(SCHEDULER),
      schedulingGates: ignore(SCHEDULER),
      securityContext: honour('defaults for every container, and the pod-wide fields', 'podSecurityContext'),
      serviceAccount: honour('the deprecated alias of serviceAccountName'),
      serviceAccountName: honour('the ServiceAccount whose tokens projected serviceAccountToken volumes hold (default `default`)'),
      setHostnameAsFQDN: refuse('the pod\'s hostname is always the short name', { accepts: only(false) }),
      shareProcessNamespace: refuse('the apps of a pod do not share one PID namespace yet', { accepts: only(false) }),
      subdomain: honour('the pod\'s FQDN in /etc/hosts'),
      terminationGracePeriodSeconds: honour('SIGTERM, then SIGKILL after that many seconds'),
      tolerations: ignore('the scheduler\'s and the control plane\'s (taint eviction); the node never evicts on taints'),
      topologySpreadConstraints: ignore(SCHEDULER),
      volumes: honour('the pod\'s volumes, prepared on the node and bound into the apps that mount them', 'volume'),
    },
  },
  container: {
    title: 'Container',
    paths: ['spec.containers[]', 'spec.initContainers[]'],
    fields: {
      args: honour('replaces the image\'s Cmd'),
      command: honour('replaces the image\'s Entrypoint'),
      env: honour('the app\'s environment, over the image\'s', 'envVar'),
      envFrom: honour('every key of a ConfigMap or Secret (read by the agent when the container starts), env on top; keys that are not valid variable names are skipped with an InvalidEnvironmentVariableNames event', 'envFromSource'),
      image: honour('pulled per imagePullPolicy, run as the app\'s root filesystem'),
      imagePullPolicy: honour('Always, IfNotPresent, Never, with Kubernetes\' defaults'),
      lifecycle: honour('postStart after each start, preStop before a stop, within the grace period (run by the agent)', 'lifecycle'),
      livenessProbe: honour(PROBE('failureThreshold failures kill the container, which restarts per restartPolicy'), 'probe'),
      name: honour('the app\'s name and unit name'),
      ports: honour('informational, except hostPort (CNI portmap)', 'containerPort'),
      readinessProbe: honour(PROBE('drives the container\'s ready, and the pod\'s Ready and ContainersReady conditions'), 'probe'),
      resizePolicy: refuse('in-place resize is not implemented', {
        accepts: { text: 'entries with restartPolicy "NotRequired" (the API default)', test: (v) => Array.isArray(v) && v.every((e) => (e as { restartPolicy?: unknown })?.restartPolicy === 'NotRequired') },
      }),
      resources: honour('cpu and memory: the app unit\'s CPUQuota/CPUWeight and MemoryMax', 'resources'),
      restartPolicy: honour('init containers only: Always makes a sidecar (started in order, restarted always, stopped after the containers)'),
      securityContext: honour('enforced by every stage1 (user, groups, capabilities, seccomp, no_new_privs, read-only root, privileged)', 'securityContext'),
      startupProbe: honour(PROBE('holds liveness and readiness probes back until it succeeds; failureThreshold failures kill the container'), 'probe'),
      stdin: honour('a stdin pipe held for `kubectl attach` (namespaces and fly stage1s on the node, kvm in the guest with its holder on the node)'),
      stdinOnce: honour('the container\'s stdin is closed when the first attached client detaches'),
      terminationMessagePath: honour('namespaces stage1: a file bound writable there; after each run the exit recorder keeps its first 4 KiB (the terminated state\'s message) and empties it; fly and kvm read no message (only the default path is accepted there)'),
      terminationMessagePolicy: honour('File, or FallbackToLogsOnError: an error exit with no message takes the last 80 lines (2 KiB) of its log'),
      tty: honour('a terminal for the app, held for `kubectl attach -t` (namespaces and fly stage1s; kvm: made in the guest)'),
      volumeDevices: refuse('no block volumes', { issue: 14 }),
      volumeMounts: honour('bind mounts of the pod\'s volumes into the container, on every stage1', 'volumeMount'),
      workingDir: honour('the app\'s working directory'),
    },
  },
  resources: {
    title: 'ResourceRequirements',
    paths: ['spec.containers[].resources'],
    fields: {
      claims: refuse('dynamic resource allocation (DRA) is not implemented: the claimed devices would be missing'),
      limits: honour('cpu (CPUQuota) and memory (MemoryMax, at least 4Mi); any other resource is refused: this node has no device plugins, hugepages or local-storage eviction'),
      requests: honour('cpu (CPUWeight) and memory; ephemeral-storage is the scheduler\'s; any other resource is refused'),
    },
  },
  envVar: {
    title: 'EnvVar',
    paths: ['spec.containers[].env[]'],
    fields: {
      name: honour('the variable\'s name (Kubernetes\' character set)'),
      value: honour('its value, with `$(VAR)` references to variables defined before it expanded as the kubelet does (`$$` escapes)'),
      valueFrom: honour('the downward API, a container\'s resources, a ConfigMap or Secret key (read by the agent when the container starts; status.podIP by the runtime once the pod network is up)', 'envVarSource'),
    },
  },
  envVarSource: {
    title: 'EnvVarSource',
    paths: ['spec.containers[].env[].valueFrom'],
    fields: {
      configMapKeyRef: honour('a key of a ConfigMap of the pod\'s namespace; missing and not optional: CreateContainerConfigError until it exists', 'keySelector'),
      fieldRef: honour('metadata.name/namespace/uid, metadata.labels[\'k\']/annotations[\'k\'], spec.nodeName, spec.serviceAccountName, status.hostIP(s), status.podIP(s)', 'objectFieldSelector'),
      resourceFieldRef: honour('limits/requests of cpu, memory or ephemeral-storage divided by divisor and rounded up; unset limits are the node\'s allocatable', 'resourceFieldSelector'),
      secretKeyRef: honour('a key of a Secret of the pod\'s namespace; missing and not optional: CreateContainerConfigError until it exists', 'keySelector'),
    },
  },
  objectFieldSelector: {
    title: 'ObjectFieldSelector',
    paths: ['spec.containers[].env[].valueFrom.fieldRef', 'spec.volumes[].downwardAPI.items[].fieldRef', 'spec.volumes[].projected.sources[].downwardAPI.items[].fieldRef'],
    fields: {
      apiVersion: honour('only v1'),
      fieldPath: honour('the pod field to read'),
    },
  },
  resourceFieldSelector: {
    title: 'ResourceFieldSelector',
    paths: ['spec.containers[].env[].valueFrom.resourceFieldRef', 'spec.volumes[].downwardAPI.items[].resourceFieldRef', 'spec.volumes[].projected.sources[].downwardAPI.items[].resourceFieldRef'],
    fields: {
      containerName: honour('whose resources (default: this container)'),
      divisor: honour('the unit of the value (default 1)'),
      resource: honour('limits.cpu, limits.memory, limits.ephemeral-storage, requests.cpu, requests.memory, requests.ephemeral-storage'),
    },
  },
  keySelector: {
    title: 'ConfigMapKeySelector, SecretKeySelector',
    paths: ['spec.containers[].env[].valueFrom.configMapKeyRef', 'spec.containers[].env[].valueFrom.secretKeyRef'],
    fields: {
      key: honour('the key'),
      name: honour('the object, in the pod\'s namespace'),
      optional: honour('a missing object or key leaves the variable unset instead of failing the container'),
    },
  },
  envFromSource: {
    title: 'EnvFromSource',
    paths: ['spec.containers[].envFrom[]'],
    fields: {
      configMapRef: honour('every key of a ConfigMap', 'envSourceRef'),
      prefix: honour('prepended to every key'),
      secretRef: honour('every key of a Secret', 'envSourceRef'),
    },
  },
  envSourceRef: {
    title: 'ConfigMapEnvSource, SecretEnvSource',
    paths: ['spec.containers[].envFrom[].configMapRef', 'spec.containers[].envFrom[].secretRef'],
    fields: {
      name: honour('the object, in the pod\'s namespace'),
      optional: honour('a missing object adds nothing instead of failing the container'),
    },
  },
  containerPort: {
    title: 'ContainerPort',
    paths: ['spec.containers[].ports[]'],
    fields: {
      containerPort: honour('1–65535; the target of hostPort'),
      hostIP: honour('the node address a hostPort listens on'),
      hostPort: honour('forwarded from the node by CNI portmap'),
      name: honour('informational'),
      protocol: honour('TCP, UDP or SCTP'),
    },
  },
  securityContext: {
    title: 'SecurityContext (container)',
    paths: ['spec.containers[].securityContext'],
    fields: {
      allowPrivilegeEscalation: honour('no_new_privs unless true (or privileged)'),
      appArmorProfile: refuse('this node applies no AppArmor profiles (as the kubelet, it refuses what it cannot enforce)', { accepts: only({ type: 'Unconfined' }) }),
      capabilities: honour('add/drop on the runtime\'s default set', 'capabilities'),
      privileged: honour('all capabilities and devices, no seccomp; only where the node\'s stage1 policy opens `privileged`'),
      procMount: refuse('an unmasked /proc is not implemented', { accepts: only('Default') }),
      readOnlyRootFilesystem: honour('the app\'s root filesystem mounted read-only'),
      runAsGroup: honour('the process\'s gid (over the pod\'s)'),
      runAsNonRoot: honour('refuse to start a container that would run as uid 0'),
      runAsUser: honour('the process\'s uid (over the pod\'s and the image\'s)'),
      seLinuxOptions: refuse('this node applies no SELinux labels'),
      seccompProfile: honour('RuntimeDefault, Unconfined or Localhost (over the pod\'s)', 'seccompProfile'),
      windowsOptions: refuse('Windows only; this node runs Linux pods'),
    },
  },
  podSecurityContext: {
    title: 'PodSecurityContext',
    paths: ['spec.securityContext'],
    fields: {
      appArmorProfile: refuse('this node applies no AppArmor profiles (as the kubelet, it refuses what it cannot enforce)', { accepts: only({ type: 'Unconfined' }) }),
      fsGroup: honour('an extra group of every process, and the group owner (setgid, group-writable) of every emptyDir volume, as the kubelet does'),
      fsGroupChangePolicy: honour('Always or OnRootMismatch: both give the same result here, since only new (empty) emptyDir volumes have their ownership set'),
      runAsGroup: honour('every container\'s gid unless the container sets its own'),
      runAsNonRoot: honour('every container\'s unless the container sets its own'),
      runAsUser: honour('every container\'s uid unless the container sets its own'),
      seLinuxChangePolicy: refuse('this node applies no SELinux labels'),
      seLinuxOptions: refuse('this node applies no SELinux labels'),
      seccompProfile: honour('every container\'s unless the container sets its own', 'seccompProfile'),
      supplementalGroups: honour('extra groups of every process'),
      supplementalGroupsPolicy: refuse('only the Merge policy (the default) is implemented', { accepts: only('Merge') }),
      sysctls: honour('namespaced sysctls of the safe set', 'sysctl'),
      windowsOptions: refuse('Windows only; this node runs Linux pods'),
    },
  },
  capabilities: {
    title: 'Capabilities',
    paths: ['spec.containers[].securityContext.capabilities'],
    fields: {
      add: honour('capability names (with or without CAP_, or ALL)'),
      drop: honour('capability names (with or without CAP_, or ALL)'),
    },
  },
  seccompProfile: {
    title: 'SeccompProfile',
    paths: ['spec.securityContext.seccompProfile', 'spec.containers[].securityContext.seccompProfile'],
    fields: {
      localhostProfile: honour('the profile\'s path on the node (type Localhost only)'),
      type: honour('RuntimeDefault, Unconfined, Localhost'),
    },
  },
  sysctl: {
    title: 'Sysctl',
    paths: ['spec.securityContext.sysctls[]'],
    fields: {
      name: honour('a namespaced sysctl of the safe set'),
      value: honour('its value'),
    },
  },
  dnsConfig: {
    title: 'PodDNSConfig',
    paths: ['spec.dnsConfig'],
    fields: {
      nameservers: honour('added to resolv.conf'),
      options: honour('added to resolv.conf', 'dnsConfigOption'),
      searches: honour('added to resolv.conf'),
    },
  },
  dnsConfigOption: {
    title: 'PodDNSConfigOption',
    paths: ['spec.dnsConfig.options[]'],
    fields: {
      name: honour('the option'),
      value: honour('its value'),
    },
  },
  hostAlias: {
    title: 'HostAlias',
    paths: ['spec.hostAliases[]'],
    fields: {
      hostnames: honour('names for ip in /etc/hosts'),
      ip: honour('the address'),
    },
  },
  localObjectReference: {
    title: 'LocalObjectReference',
    paths: ['spec.imagePullSecrets[]', 'spec.volumes[].flexVolume.secretRef'],
    fields: {
      name: honour('a Secret of the pod\'s namespace'),
    },
  },
  volume: {
    title: 'Volume',
    paths: ['spec.volumes[]'],
    fields: {
      name: honour('the volume\'s name (a DNS label, unique in the pod), which volumeMounts refer to'),
      emptyDir: honour('a directory of the pod, on the node\'s disk or a tmpfs (medium: Memory), removed with the pod', 'emptyDirVolumeSource'),
      hostPath: honour('a path of the node, checked by type as the kubelet checks it; only where the node\'s stage1 policy opens `hostPath` (it is root-equivalent access to the node)', 'hostPathVolumeSource'),
      persistentVolumeClaim: honour('the agent binds the claim\'s PersistentVolume (a node-local directory) into the pod; `stevedore pod run` has no API to read claims, so it refuses them', 'pvcVolumeSource'),
      configMap: honour('a ConfigMap\'s keys as files, written by the agent under its data dir (the `..data` swap, as the kubelet writes them), mounted read-only, updated in place when the object changes', 'configMapVolumeSource'),
      secret: honour('a Secret\'s keys as files on a tmpfs, written by the agent under its data dir (the `..data` swap, as the kubelet writes them), mounted read-only, updated in place when the object changes', 'secretVolumeSource'),
      downwardAPI: honour('pod fields and container resources as files, written by the agent under its data dir (the `..data` swap, as the kubelet writes them), mounted read-only, updated in place when the object changes (labels, annotations)', 'downwardAPIVolumeSource'),
      projected: honour('ConfigMaps, Secrets and downward API fields in one directory (on a tmpfs when it holds Secrets), written by the agent under its data dir (the `..data` swap, as the kubelet writes them), mounted read-only, updated in place when the object changes', 'projectedVolumeSource'),
      flexVolume: honour('the agent runs the FlexVolume driver (init, mount, unmount under its --volume-plugin-dir) and binds the mounted directory into the pod; `stevedore pod run` runs no drivers, so it refuses them', 'flexVolumeSource'),
      awsElasticBlockStore: refuse(NO_VOLUME_PLUGIN),
      azureDisk: refuse(NO_VOLUME_PLUGIN),
      azureFile: refuse(NO_VOLUME_PLUGIN),
      cephfs: refuse(NO_VOLUME_PLUGIN),
      cinder: refuse(NO_VOLUME_PLUGIN),
      csi: refuse('no CSI drivers are run on this node'),
      ephemeral: refuse('generic ephemeral volumes (a claim per pod) are not created'),
      fc: refuse(NO_VOLUME_PLUGIN),
      flocker: refuse(NO_VOLUME_PLUGIN),
      gcePersistentDisk: refuse(NO_VOLUME_PLUGIN),
      gitRepo: refuse('gitRepo volumes are deprecated and unsafe (they run git on the node); use an init container that clones into an emptyDir'),
      glusterfs: refuse(NO_VOLUME_PLUGIN),
      image: refuse('image volumes are not implemented'),
      iscsi: refuse(NO_VOLUME_PLUGIN),
      nfs: refuse(NO_VOLUME_PLUGIN),
      photonPersistentDisk: refuse(NO_VOLUME_PLUGIN),
      portworxVolume: refuse(NO_VOLUME_PLUGIN),
      quobyte: refuse(NO_VOLUME_PLUGIN),
      rbd: refuse(NO_VOLUME_PLUGIN),
      scaleIO: refuse(NO_VOLUME_PLUGIN),
      storageos: refuse(NO_VOLUME_PLUGIN),
      vsphereVolume: refuse(NO_VOLUME_PLUGIN),
    },
  },
  configMapVolumeSource: {
    title: 'ConfigMapVolumeSource',
    paths: ['spec.volumes[].configMap'],
    fields: {
      defaultMode: honour('the files\' mode (default 0644)'),
      items: honour('only these keys, at these paths; a listed key that is missing fails the volume unless optional', 'keyToPath'),
      name: honour('a ConfigMap of the pod\'s namespace; missing and not optional: the pod waits in ContainerCreating (FailedMount) until it exists'),
      optional: honour('a missing ConfigMap gives an empty volume'),
    },
  },
  secretVolumeSource: {
    title: 'SecretVolumeSource',
    paths: ['spec.volumes[].secret'],
    fields: {
      defaultMode: honour('the files\' mode (default 0644)'),
      items: honour('only these keys, at these paths; a listed key that is missing fails the volume unless optional', 'keyToPath'),
      optional: honour('a missing Secret gives an empty volume'),
      secretName: honour('a Secret of the pod\'s namespace; missing and not optional: the pod waits in ContainerCreating (FailedMount) until it exists'),
    },
  },
  keyToPath: {
    title: 'KeyToPath',
    paths: ['spec.volumes[].configMap.items[]', 'spec.volumes[].secret.items[]', 'spec.volumes[].projected.sources[].configMap.items[]', 'spec.volumes[].projected.sources[].secret.items[]'],
    fields: {
      key: honour('the key'),
      mode: honour('this file\'s mode (over defaultMode)'),
      path: honour('the file\'s relative path in the volume (no `..`)'),
    },
  },
  downwardAPIVolumeSource: {
    title: 'DownwardAPIVolumeSource',
    paths: ['spec.volumes[].downwardAPI'],
    fields: {
      defaultMode: honour('the files\' mode (default 0644)'),
      items: honour('one file per field', 'downwardAPIVolumeFile'),
    },
  },
  downwardAPIVolumeFile: {
    title: 'DownwardAPIVolumeFile',
    paths: ['spec.volumes[].downwardAPI.items[]', 'spec.volumes[].projected.sources[].downwardAPI.items[]'],
    fields: {
      fieldRef: honour('metadata.name/namespace/uid, metadata.labels and metadata.annotations (whole, as sorted key="value" lines, or one [\'k\'])', 'objectFieldSelector'),
      mode: honour('this file\'s mode (over defaultMode)'),
      path: honour('the file\'s relative path in the volume (no `..`)'),
      resourceFieldRef: honour('a container\'s limits/requests (containerName required), as in env', 'resourceFieldSelector'),
    },
  },
  projectedVolumeSource: {
    title: 'ProjectedVolumeSource',
    paths: ['spec.volumes[].projected'],
    fields: {
      defaultMode: honour('the files\' mode (default 0644)'),
      sources: honour('merged into one directory, in order', 'volumeProjection'),
    },
  },
  volumeProjection: {
    title: 'VolumeProjection',
    paths: ['spec.volumes[].projected.sources[]'],
    fields: {
      clusterTrustBundle: refuse('ClusterTrustBundles do not exist in this cluster'),
      configMap: honour('as a configMap volume', 'configMapProjection'),
      downwardAPI: honour('as a downwardAPI volume', 'downwardAPIProjection'),
      secret: honour('as a secret volume', 'secretProjection'),
      serviceAccountToken: honour('a token of the pod\'s ServiceAccount bound to the pod (TokenRequest), renewed when 80 % of its life has passed', 'serviceAccountTokenProjection'),
    },
  },
  serviceAccountTokenProjection: {
    title: 'ServiceAccountTokenProjection',
    paths: ['spec.volumes[].projected.sources[].serviceAccountToken'],
    fields: {
      audience: honour('the token\'s audience (default: the API server\'s)'),
      expirationSeconds: honour('how long each token lives (default 3600, at least 600)'),
      path: honour('the token file, relative to the volume'),
    },
  },
  configMapProjection: {
    title: 'ConfigMapProjection',
    paths: ['spec.volumes[].projected.sources[].configMap'],
    fields: {
      items: honour('only these keys, at these paths; a listed key that is missing fails the volume unless optional', 'keyToPath'),
      name: honour('a ConfigMap of the pod\'s namespace'),
      optional: honour('a missing ConfigMap adds nothing'),
    },
  },
  secretProjection: {
    title: 'SecretProjection',
    paths: ['spec.volumes[].projected.sources[].secret'],
    fields: {
      items: honour('only these keys, at these paths; a listed key that is missing fails the volume unless optional', 'keyToPath'),
      name: honour('a Secret of the pod\'s namespace'),
      optional: honour('a missing Secret adds nothing'),
    },
  },
  downwardAPIProjection: {
    title: 'DownwardAPIProjection',
    paths: ['spec.volumes[].projected.sources[].downwardAPI'],
    fields: {
      items: honour('one file per field', 'downwardAPIVolumeFile'),
    },
  },
  emptyDirVolumeSource: {
    title: 'EmptyDirVolumeSource',
    paths: ['spec.volumes[].emptyDir'],
    fields: {
      medium: honour('"" (the node\'s disk, under the pod\'s directory) or Memory (a tmpfs); HugePages media are refused'),
      sizeLimit: honour('Memory: the tmpfs\'s size (without it: the sum of the containers\' memory limits when they all have one, else the tmpfs default); disk: refused, since the node does not evict on disk use'),
    },
  },
  hostPathVolumeSource: {
    title: 'HostPathVolumeSource',
    paths: ['spec.volumes[].hostPath'],
    fields: {
      path: honour('an absolute path of the node, without `..`'),
      type: honour('"", DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice: checked before the pod starts, with the kubelet\'s messages ("": no check, a missing path is made a directory as containerd makes it)'),
    },
  },
  pvcVolumeSource: {
    title: 'PersistentVolumeClaimVolumeSource',
    paths: ['spec.volumes[].persistentVolumeClaim'],
    fields: {
      claimName: honour('a PersistentVolumeClaim of the pod\'s namespace, bound to a PersistentVolume this node can reach'),
      readOnly: honour('every mount of the volume is read-only'),
    },
  },
  flexVolumeSource: {
    title: 'FlexVolumeSource',
    paths: ['spec.volumes[].flexVolume'],
    fields: {
      driver: honour('vendor/driver: the executable <plugin dir>/vendor~driver/driver; drivers that need attach/detach are refused'),
      fsType: honour('passed to the driver as kubernetes.io/fsType'),
      options: honour('passed to the driver in its JSON options'),
      readOnly: honour('passed as kubernetes.io/readwrite=ro, and every mount of the volume is read-only'),
      secretRef: honour('a Secret of the pod\'s namespace whose keys go to the driver as kubernetes.io/secret/<key> (base64)', 'localObjectReference'),
    },
  },
  volumeMount: {
    title: 'VolumeMount',
    paths: ['spec.containers[].volumeMounts[]'],
    fields: {
      name: honour('a volume of the pod'),
      mountPath: honour('an absolute path in the container, unique in the container'),
      readOnly: honour('the bind mount is read-only'),
      recursiveReadOnly: refuse('recursive read-only mounts are not implemented', { accepts: only('Disabled') }),
      subPath: honour('a path inside the volume (relative, no `..`), created when missing; a symlink leading out of the volume is refused (CVE-2017-1002101)'),
      subPathExpr: honour('subPath with $(VAR) expanded from the container\'s env, then checked as subPath is'),
      mountPropagation: honour('None only (the default): HostToContainer and Bidirectional are refused by name'),
    },
  },
  probe: {
    title: 'Probe',
    paths: ['spec.containers[].livenessProbe', 'spec.containers[].readinessProbe', 'spec.containers[].startupProbe', 'spec.initContainers[].startupProbe (sidecars)'],
    fields: {
      exec: honour('the command run in the container (the stage1\'s enter path, no shell added); exit 0 is success'),
      failureThreshold: honour('failures in a row that make the probe fail (default 3)'),
      grpc: honour('the gRPC health protocol (grpc.health.v1.Health/Check) to the pod IP; SERVING is success'),
      httpGet: honour('GET to the pod IP (or host), scheme, headers, path, port by number or name; 200–399 is success'),
      initialDelaySeconds: honour('seconds after the container started before the first probe'),
      periodSeconds: honour('seconds between probes (default 10)'),
      successThreshold: honour('successes in a row that make the probe pass (default 1; liveness and startup: 1)'),
      tcpSocket: honour('a TCP connect to the pod IP (or host); a connection is success'),
      terminationGracePeriodSeconds: honour('liveness and startup: the grace period of the kill a failure causes'),
      timeoutSeconds: honour('seconds before a probe counts as failed (default 1)'),
    },
  },
  lifecycle: {
    title: 'Lifecycle',
    paths: ['spec.containers[].lifecycle'],
    fields: {
      postStart: honour('run right after each start of the container; a failure kills it (FailedPostStartHook)', 'lifecycleHandler'),
      preStop: honour('run before the container is stopped, its time counted in the grace period', 'lifecycleHandler'),
      stopSignal: refuse('containers are stopped with SIGTERM (systemd\'s default)', { accepts: only('SIGTERM') }),
    },
  },
  lifecycleHandler: {
    title: 'LifecycleHandler',
    paths: ['spec.containers[].lifecycle.postStart', 'spec.containers[].lifecycle.preStop'],
    fields: {
      exec: honour('the command run in the container'),
      httpGet: honour('GET to the pod IP (or host), as the probe\'s'),
      sleep: honour('wait that many seconds'),
      tcpSocket: refuse('deprecated by Kubernetes, and the kubelet does not run it either'),
    },
  },
  podOS: {
    title: 'PodOS',
    paths: ['spec.os'],
    fields: {
      name: honour('must be `linux`'),
    },
  },
};

/** The message for a refused field at `path`. */
export function refusal(path: string, field: Field): string {
  const accepted = field.accepts ? `; only ${field.accepts.text} is accepted` : '';
  if (field.issue) return `${path}: not supported by this node yet: ${field.why} (issue ${field.issue} brings it)${accepted}`;
  return `${path}: not supported by this node: ${field.why}${accepted}`;
}

/** Problems with an object's fields under one table: unknown fields, and refused ones that ask for something. */
export function refusedFields(obj: Record<string, unknown>, path: string, table: TableId): string[] {
  const fields = POD_FIELD_TABLES[table].fields;
  const problems: string[] = [];
  for (const [key, value] of Object.entries(obj)) {
    const at = `${path}.${key}`;
    const field = Object.hasOwn(fields, key) ? fields[key] : undefined;
    if (!field) problems.push(`${at}: unknown field "${key}" (this node does not know it, so it cannot honour it)`);
    else if (field.class === 'refused' && !asksForNothing(value) && !field.accepts?.test(value)) problems.push(refusal(at, field));
  }
  return problems;
}

const CLASS_WORDS: Record<FieldClass, string> = { honoured: 'honoured', refused: 'refused', ignored: 'ignored by design' };

/** The tables as Markdown, exactly as docs/pod-fields.md holds them between its markers. */
export function renderFieldTables(): string {
  const out: string[] = [];
  for (const table of Object.values(POD_FIELD_TABLES)) {
    out.push(`### ${table.title}`, '', `At ${table.paths.map((p) => `\`${p}\``).join(', ')}.`, '', '| field | class | what the node does / why |', '|---|---|---|');
    for (const [name, f] of Object.entries(table.fields)) {
      const extra = [
        f.issue ? `Issue ${f.issue} brings it.` : '',
        f.accepts ? `Accepted: unset or ${f.accepts.text}.` : '',
        f.table ? `Fields: ${POD_FIELD_TABLES[f.table].title}.` : '',
      ].filter(Boolean).join(' ');
      out.push(`| \`${name}\` | ${CLASS_WORDS[f.class]} | ${f.why.replace(/\|/g, '\\|')}.${extra ? ` ${extra}` : ''} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

/** docs/pod-fields.md holds renderFieldTables() between these lines (scripts/pod-fields-doc.mjs writes it). */
export const DOC_BEGIN = '<!-- pod-fields:begin (generated from runtime-api/pod-fields.ts by scripts/pod-fields-doc.mjs) -->';
export const DOC_END = '<!-- pod-fields:end -->';
