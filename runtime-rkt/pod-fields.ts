/**
 * Every field of a Kubernetes (v1.32) PodSpec, Container, SecurityContext and
 * PodSecurityContext, and what this node does with it. One table, read by
 * `validatePod` (runtime-rkt/manifest.ts) and rendered into docs/pod-fields.md
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
  | 'capabilities' | 'seccompProfile' | 'sysctl' | 'dnsConfig' | 'dnsConfigOption' | 'hostAlias' | 'localObjectReference' | 'podOS';

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
const PROBES = 'no probes are run; the container would count as healthy and ready without being checked';

export const POD_FIELD_TABLES: Record<TableId, FieldTable> = {
  podSpec: {
    title: 'PodSpec',
    paths: ['spec'],
    fields: {
      activeDeadlineSeconds: refuse('the node does not stop pods at a deadline', { issue: 14 }),
      affinity: ignore(SCHEDULER),
      automountServiceAccountToken: ignore('the node mounts no service account token (no volumes yet); nothing is mounted whatever its value'),
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
      initContainers: refuse('init containers are not run', { issue: 14 }),
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
      serviceAccount: ignore('the deprecated alias of serviceAccountName'),
      serviceAccountName: ignore('the node mounts no token and serves no identity to pods yet, so the account grants the pod nothing'),
      setHostnameAsFQDN: refuse('the pod\'s hostname is always the short name', { accepts: only(false) }),
      shareProcessNamespace: refuse('the apps of a pod do not share one PID namespace yet', { accepts: only(false) }),
      subdomain: honour('the pod\'s FQDN in /etc/hosts'),
      terminationGracePeriodSeconds: honour('SIGTERM, then SIGKILL after that many seconds'),
      tolerations: ignore('the scheduler\'s and the control plane\'s (taint eviction); the node never evicts on taints'),
      topologySpreadConstraints: ignore(SCHEDULER),
      volumes: refuse('no volume plugin is implemented; the pod would start without its data', { issue: 14 }),
    },
  },
  container: {
    title: 'Container',
    paths: ['spec.containers[]'],
    fields: {
      args: honour('replaces the image\'s Cmd'),
      command: honour('replaces the image\'s Entrypoint'),
      env: honour('the app\'s environment, over the image\'s', 'envVar'),
      envFrom: refuse('environment from ConfigMaps and Secrets is not read', { issue: 14 }),
      image: honour('pulled per imagePullPolicy, run as the app\'s root filesystem'),
      imagePullPolicy: honour('Always, IfNotPresent, Never, with Kubernetes\' defaults'),
      lifecycle: refuse('postStart and preStop hooks are not run', { issue: 14 }),
      livenessProbe: refuse(PROBES, { issue: 14 }),
      name: honour('the app\'s name and unit name'),
      ports: honour('informational, except hostPort (CNI portmap)', 'containerPort'),
      readinessProbe: refuse(PROBES, { issue: 14 }),
      resizePolicy: refuse('in-place resize is not implemented', {
        accepts: { text: 'entries with restartPolicy "NotRequired" (the API default)', test: (v) => Array.isArray(v) && v.every((e) => (e as { restartPolicy?: unknown })?.restartPolicy === 'NotRequired') },
      }),
      resources: honour('cpu and memory: the app unit\'s CPUQuota/CPUWeight and MemoryMax', 'resources'),
      restartPolicy: refuse('per-container restart policies (sidecar init containers) are not implemented', { issue: 14 }),
      securityContext: honour('enforced by every stage1 (user, groups, capabilities, seccomp, no_new_privs, read-only root, privileged)', 'securityContext'),
      startupProbe: refuse(PROBES, { issue: 14 }),
      stdin: honour('a stdin pipe held for `kubectl attach` (namespaces stage1; fly and kvm refuse it at prepare)'),
      stdinOnce: honour('the container\'s stdin is closed when the first attached client detaches'),
      terminationMessagePath: refuse('termination messages are not read', { issue: 14, accepts: only('/dev/termination-log') }),
      terminationMessagePolicy: refuse('termination messages are not read', { issue: 14, accepts: only('File') }),
      tty: honour('a terminal for the app, held for `kubectl attach -t` (namespaces stage1; fly and kvm refuse it at prepare)'),
      volumeDevices: refuse('no block volumes', { issue: 14 }),
      volumeMounts: refuse('no volume plugin is implemented; the container would start without its data', { issue: 14 }),
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
      value: honour('its value'),
      valueFrom: refuse('values from the downward API, ConfigMaps and Secrets are not read; set value instead', { issue: 14 }),
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
      fsGroup: honour('an extra group of every process (no volumes yet, so no ownership changes)'),
      fsGroupChangePolicy: refuse('volume ownership changes are not implemented (no volumes yet)', { issue: 14 }),
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
    paths: ['spec.imagePullSecrets[]'],
    fields: {
      name: honour('a Secret of the pod\'s namespace'),
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
export const DOC_BEGIN = '<!-- pod-fields:begin (generated from runtime-rkt/pod-fields.ts by scripts/pod-fields-doc.mjs) -->';
export const DOC_END = '<!-- pod-fields:end -->';
