import { hpaTargets } from './kinds/hpa.js';
import { budgetCell } from './kinds/disruption.js';
import type { KObj } from './store.js';
import { selectorString } from './kinds/workloads.js';
import { accessModesShort, DEFAULT_CLASS_ANNOTATION } from './kinds/storage.js';
import { bindingColumns } from './kinds/rbac.js';

/** meta.k8s.io/v1 Table output with the columns kube-apiserver's printers use. */
export interface Column { name: string; type: string; format?: string; description: string; priority: number }

const col = (name: string, priority = 0, type = 'string', format = ''): Column => ({ name, type, format, description: name, priority });
const NAME = { name: 'Name', type: 'string', format: 'name', description: 'Name must be unique within a namespace.', priority: 0 };
const AGE = col('Age');

/** Like k8s.io/apimachinery duration.HumanDuration. */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 0) return '0s';
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(s / 3600);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  if (h < 24 * 8) return h % 24 === 0 ? `${Math.floor(h / 24)}d` : `${Math.floor(h / 24)}d${h % 24}h`;
  if (h < 24 * 365 * 2) return `${Math.floor(h / 24)}d`;
  return `${Math.floor(h / 24 / 365)}y`;
}

export function since(ts: string | undefined): string {
  if (!ts) return '<unknown>';
  const t = Date.parse(ts);
  return Number.isNaN(t) ? '<unknown>' : humanDuration(Date.now() - t);
}

/** The STATUS and READY/RESTARTS columns, computed like kubectl's printPod. */
export function podStatusColumns(pod: KObj): { ready: string; status: string; restarts: string } {
  const st = pod.status ?? {};
  const containers: any[] = pod.spec?.containers ?? [];
  let reason: string = st.reason || st.phase || 'Pending';
  let restarts = 0, readyContainers = 0, lastRestart = 0;
  let initializing = false;
  const inits: any[] = st.initContainerStatuses ?? [];
  const sidecarNames = new Set((pod.spec?.initContainers ?? []).filter((c: any) => c.restartPolicy === 'Always').map((c: any) => c.name));
  inits.forEach((c, i) => {
    restarts += c.restartCount ?? 0;
    if (c.state?.terminated?.exitCode === 0) return;
    // A started sidecar (restartable init container) lets initialization go on, as kubectl prints it.
    if (sidecarNames.has(c.name) && c.started) return;
    if (initializing) return;
    if (c.state?.terminated) {
      reason = c.state.terminated.reason ? `Init:${c.state.terminated.reason}` : c.state.terminated.signal ? `Init:Signal:${c.state.terminated.signal}` : `Init:ExitCode:${c.state.terminated.exitCode}`;
      initializing = true;
    } else if (c.state?.waiting?.reason && c.state.waiting.reason !== 'PodInitializing') {
      reason = `Init:${c.state.waiting.reason}`;
      initializing = true;
    } else {
      reason = `Init:${i}/${(pod.spec?.initContainers ?? []).length}`;
      initializing = true;
    }
  });
  if (!initializing) {
    restarts = 0;
    let hasRunning = false;
    const cs: any[] = st.containerStatuses ?? [];
    for (let i = cs.length - 1; i >= 0; i--) {
      const c = cs[i];
      restarts += c.restartCount ?? 0;
      const lt = c.lastState?.terminated?.finishedAt;
      if (lt) lastRestart = Math.max(lastRestart, Date.parse(lt) || 0);
      if (c.state?.waiting?.reason) reason = c.state.waiting.reason;
      else if (c.state?.terminated?.reason) reason = c.state.terminated.reason;
      else if (c.state?.terminated) reason = c.state.terminated.signal ? `Signal:${c.state.terminated.signal}` : `ExitCode:${c.state.terminated.exitCode}`;
      else if (c.ready && c.state?.running) { hasRunning = true; readyContainers++; }
    }
    if (reason === 'Completed' && hasRunning) {
      reason = (st.conditions ?? []).some((c: any) => c.type === 'Ready' && c.status === 'True') ? 'Running' : 'NotReady';
    }
  }
  if (pod.metadata?.deletionTimestamp && st.reason === 'NodeLost') reason = 'Unknown';
  else if (pod.metadata?.deletionTimestamp && st.phase !== 'Succeeded' && st.phase !== 'Failed') reason = 'Terminating';
  const restartsCell = lastRestart ? `${restarts} (${humanDuration(Date.now() - lastRestart)} ago)` : String(restarts);
  // Sidecars count in READY, as kubectl counts them.
  const sidecarsReady = inits.filter((c) => sidecarNames.has(c.name) && c.started && c.ready).length;
  return { ready: `${readyContainers + sidecarsReady}/${containers.length + sidecarNames.size}`, status: reason, restarts: restartsCell };
}

function nodeStatus(node: KObj): string {
  const ready = (node.status?.conditions ?? []).find((c: any) => c.type === 'Ready');
  // kubectl's node printer: any Ready status but True reads NotReady (Unknown included); no Ready condition at all reads Unknown.
  const parts = [ready ? (ready.status === 'True' ? 'Ready' : 'NotReady') : 'Unknown'];
  if (node.spec?.unschedulable) parts.push('SchedulingDisabled');
  return parts.join(',');
}

function nodeRoles(node: KObj): string {
  const roles = new Set<string>();
  for (const [k, v] of Object.entries<string>(node.metadata?.labels ?? {})) {
    if (k.startsWith('node-role.kubernetes.io/')) roles.add(k.slice('node-role.kubernetes.io/'.length));
    else if (k === 'kubernetes.io/role' && v) roles.add(v);
  }
  return roles.size ? [...roles].sort().join(',') : '<none>';
}

const addr = (node: KObj, type: string) => (node.status?.addresses ?? []).find((a: any) => a.type === type)?.address ?? '<none>';

function eventObject(e: KObj): string {
  return `${String(e.involvedObject?.kind ?? '').toLowerCase()}/${e.involvedObject?.name ?? ''}`;
}

/** The CONTAINERS, IMAGES and SELECTOR columns (wide) of a workload. */
const workloadWide = [col('Containers', 1), col('Images', 1), col('Selector', 1)];
function workloadWideCells(o: KObj): string[] {
  const cs: KObj[] = o.spec?.template?.spec?.containers ?? [];
  return [cs.map((c) => c.name).join(','), cs.map((c) => c.image).join(','), selectorString(o.spec?.selector) || '<none>'];
}

const hasCondition = (o: KObj, type: string) => (o.status?.conditions ?? []).some((c: KObj) => c.type === type && c.status === 'True');

function jobStatus(j: KObj): string {
  if (hasCondition(j, 'Failed')) return 'Failed';
  if (hasCondition(j, 'Complete')) return 'Complete';
  if (j.metadata?.deletionTimestamp) return 'Terminating';
  if (hasCondition(j, 'Suspended')) return 'Suspended';
  if (hasCondition(j, 'FailureTarget')) return 'FailureTarget';
  if (hasCondition(j, 'SuccessCriteriaMet')) return 'SuccessCriteriaMet';
  return 'Running';
}

function jobCompletions(j: KObj): string {
  const succeeded = j.status?.succeeded ?? 0;
  if (typeof j.spec?.completions === 'number') return `${succeeded}/${j.spec.completions}`;
  const p = j.spec?.parallelism ?? 0;
  return p > 1 ? `${succeeded}/1 of ${p}` : `${succeeded}/1`;
}

function jobDuration(j: KObj): string {
  const start = Date.parse(j.status?.startTime ?? '');
  if (Number.isNaN(start)) return '';
  const end = Date.parse(j.status?.completionTime ?? '');
  return humanDuration((Number.isNaN(end) ? Date.now() : end) - start);
}

/** kubectl's EXTERNAL-IP column of a Service. */
function serviceExternalIp(s: KObj): string {
  const spec = s.spec ?? {};
  const external: string[] = spec.externalIPs ?? [];
  switch (spec.type) {
    case 'ClusterIP':
    case 'NodePort':
      return external.length ? external.join(',') : '<none>';
    case 'LoadBalancer': {
      const ingress: string[] = (s.status?.loadBalancer?.ingress ?? []).map((i: KObj) => i.ip || i.hostname).filter(Boolean);
      const all = [...ingress, ...external];
      return all.length ? all.join(',') : '<pending>';
    }
    case 'ExternalName':
      return spec.externalName ?? '<none>';
    default:
      return '<unknown>';
  }
}

function servicePorts(s: KObj): string {
  const ports: KObj[] = s.spec?.ports ?? [];
  if (!ports.length) return '<none>';
  return ports.map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`).join(',');
}

/** kubectl's formatEndpoints: at most 3 "ip:port" entries, then "+ N more...". */
function endpointsCell(ep: KObj): string {
  const all: string[] = [];
  for (const sub of ep.subsets ?? []) {
    const ports: KObj[] = sub.ports?.length ? sub.ports : [{}];
    for (const a of sub.addresses ?? []) for (const p of ports) all.push(p.port ? `${a.ip}:${p.port}` : a.ip);
  }
  if (!all.length) return '<none>';
  return all.length > 3 ? `${all.slice(0, 3).join(',')} + ${all.length - 3} more...` : all.join(',');
}

function sliceEndpointsCell(sl: KObj): string {
  const addrs: string[] = (sl.endpoints ?? []).flatMap((e: KObj) => e.addresses ?? []);
  if (!addrs.length) return '<unset>';
  return addrs.length > 3 ? `${addrs.slice(0, 3).join(',')} + ${addrs.length - 3} more...` : addrs.join(',');
}

const PRINTERS: Record<string, { columns: Column[]; cells: (o: KObj) => unknown[] }> = {
  pods: {
    columns: [NAME, col('Ready'), col('Status'), col('Restarts'), AGE, col('IP', 1), col('Node', 1), col('Nominated Node', 1), col('Readiness Gates', 1)],
    cells: (p) => {
      const s = podStatusColumns(p);
      const gates: any[] = p.spec?.readinessGates ?? [];
      const gatesCell = gates.length ? `${gates.filter((g) => (p.status?.conditions ?? []).some((c: any) => c.type === g.conditionType && c.status === 'True')).length}/${gates.length}` : '<none>';
      return [p.metadata.name, s.ready, s.status, s.restarts, since(p.metadata.creationTimestamp), p.status?.podIP || '<none>', p.spec?.nodeName || '<none>', p.status?.nominatedNodeName || '<none>', gatesCell];
    },
  },
  nodes: {
    columns: [NAME, col('Status'), col('Roles'), AGE, col('Version'), col('Internal-IP', 1), col('External-IP', 1), col('OS-Image', 1), col('Kernel-Version', 1), col('Container-Runtime', 1)],
    cells: (n) => {
      const info = n.status?.nodeInfo ?? {};
      return [n.metadata.name, nodeStatus(n), nodeRoles(n), since(n.metadata.creationTimestamp), info.kubeletVersion ?? '', addr(n, 'InternalIP'), addr(n, 'ExternalIP'), info.osImage || '<unknown>', info.kernelVersion || '<unknown>', info.containerRuntimeVersion || '<unknown>'];
    },
  },
  namespaces: {
    columns: [NAME, col('Status'), AGE],
    cells: (n) => [n.metadata.name, n.status?.phase ?? 'Active', since(n.metadata.creationTimestamp)],
  },
  events: {
    columns: [col('Last Seen'), col('Type'), col('Reason'), col('Object'), col('Subobject', 1), col('Source', 1), col('Message'), col('First Seen', 1), col('Count', 1), { ...NAME, priority: 1 }],
    cells: (e) => {
      const last = e.lastTimestamp || e.eventTime || e.metadata.creationTimestamp;
      const first = e.firstTimestamp || e.eventTime || e.metadata.creationTimestamp;
      const src = [e.source?.component ?? e.reportingComponent ?? '', e.source?.host ?? ''].filter(Boolean).join(', ');
      return [since(last), e.type ?? '', e.reason ?? '', eventObject(e), e.involvedObject?.fieldPath ?? '', src, (e.message ?? '').trim(), since(first), e.count ?? 1, e.metadata.name];
    },
  },
  leases: {
    columns: [NAME, col('Holder'), AGE],
    cells: (l) => [l.metadata.name, l.spec?.holderIdentity ?? '', since(l.metadata.creationTimestamp)],
  },
  secrets: {
    columns: [NAME, col('Type'), col('Data', 0, 'integer'), AGE],
    cells: (o) => [o.metadata.name, o.type ?? 'Opaque', Object.keys(o.data ?? {}).length, since(o.metadata.creationTimestamp)],
  },
  configmaps: {
    columns: [NAME, col('Data', 0, 'integer'), AGE],
    cells: (o) => [o.metadata.name, Object.keys(o.data ?? {}).length + Object.keys(o.binaryData ?? {}).length, since(o.metadata.creationTimestamp)],
  },
  deployments: {
    columns: [NAME, col('Ready'), col('Up-to-date', 0, 'integer'), col('Available', 0, 'integer'), AGE, ...workloadWide],
    cells: (d) => [d.metadata.name, `${d.status?.readyReplicas ?? 0}/${d.spec?.replicas ?? 0}`, d.status?.updatedReplicas ?? 0, d.status?.availableReplicas ?? 0, since(d.metadata.creationTimestamp), ...workloadWideCells(d)],
  },
  replicasets: {
    columns: [NAME, col('Desired', 0, 'integer'), col('Current', 0, 'integer'), col('Ready', 0, 'integer'), AGE, ...workloadWide],
    cells: (r) => [r.metadata.name, r.spec?.replicas ?? 0, r.status?.replicas ?? 0, r.status?.readyReplicas ?? 0, since(r.metadata.creationTimestamp), ...workloadWideCells(r)],
  },
  jobs: {
    columns: [NAME, col('Status'), col('Completions'), col('Duration'), AGE, ...workloadWide],
    cells: (j) => [j.metadata.name, jobStatus(j), jobCompletions(j), jobDuration(j), since(j.metadata.creationTimestamp), ...workloadWideCells(j)],
  },
  poddisruptionbudgets: {
    columns: [NAME, col('Min Available'), col('Max Unavailable'), col('Allowed Disruptions', 0, 'integer'), AGE],
    cells: (b) => [b.metadata.name, budgetCell(b.spec?.minAvailable), budgetCell(b.spec?.maxUnavailable), b.status?.disruptionsAllowed ?? 0, since(b.metadata.creationTimestamp)],
  },
  horizontalpodautoscalers: {
    columns: [NAME, col('Reference'), col('Targets'), col('MinPods', 0, 'integer'), col('MaxPods', 0, 'integer'), col('Replicas', 0, 'integer'), AGE],
    cells: (h) => [h.metadata.name, `${h.spec?.scaleTargetRef?.kind}/${h.spec?.scaleTargetRef?.name}`, hpaTargets(h), h.spec?.minReplicas ?? 1, h.spec?.maxReplicas ?? 0, h.status?.currentReplicas ?? 0, since(h.metadata.creationTimestamp)],
  },
  statefulsets: {
    columns: [NAME, col('Ready'), AGE, col('Containers', 1), col('Images', 1)],
    cells: (s) => [s.metadata.name, `${s.status?.readyReplicas ?? 0}/${s.spec?.replicas ?? 0}`, since(s.metadata.creationTimestamp), ...workloadWideCells(s).slice(0, 2)],
  },
  controllerrevisions: {
    columns: [NAME, col('Controller'), col('Revision', 0, 'integer'), AGE],
    cells: (r) => {
      const owner = (r.metadata.ownerReferences ?? []).find((o: KObj) => o.controller);
      const group = owner ? String(owner.apiVersion).split('/').slice(0, -1).join('/') : '';
      return [r.metadata.name, owner ? `${String(owner.kind).toLowerCase()}${group ? `.${group}` : ''}/${owner.name}` : '<none>', r.revision ?? 0, since(r.metadata.creationTimestamp)];
    },
  },
  daemonsets: {
    columns: [NAME, col('Desired', 0, 'integer'), col('Current', 0, 'integer'), col('Ready', 0, 'integer'), col('Up-to-date', 0, 'integer'), col('Available', 0, 'integer'), col('Node Selector'), AGE, ...workloadWide],
    cells: (d) => {
      const st = d.status ?? {};
      const sel = Object.entries<string>(d.spec?.template?.spec?.nodeSelector ?? {}).map(([k, v]) => `${k}=${v}`).join(',') || '<none>';
      return [d.metadata.name, st.desiredNumberScheduled ?? 0, st.currentNumberScheduled ?? 0, st.numberReady ?? 0, st.updatedNumberScheduled ?? 0, st.numberAvailable ?? 0, sel, since(d.metadata.creationTimestamp), ...workloadWideCells(d)];
    },
  },
  cronjobs: {
    columns: [NAME, col('Schedule'), col('Timezone'), col('Suspend', 0, 'boolean'), col('Active', 0, 'integer'), col('Last Schedule'), AGE, col('Containers', 1), col('Images', 1), col('Selector', 1)],
    cells: (c) => {
      const cs: KObj[] = c.spec?.jobTemplate?.spec?.template?.spec?.containers ?? [];
      return [c.metadata.name, c.spec?.schedule ?? '', c.spec?.timeZone ?? '<none>', c.spec?.suspend ? 'True' : 'False', (c.status?.active ?? []).length,
        c.status?.lastScheduleTime ? since(c.status.lastScheduleTime) : '<none>', since(c.metadata.creationTimestamp),
        cs.map((x) => x.name).join(','), cs.map((x) => x.image).join(','), selectorString(c.spec?.jobTemplate?.spec?.selector) || '<none>'];
    },
  },
  // kube-apiserver's printers (pkg/printers/internalversion): VOLUMEATTRIBUTESCLASS since 1.29.
  persistentvolumes: {
    columns: [NAME, col('Capacity'), col('Access Modes'), col('Reclaim Policy'), col('Status'), col('Claim'), col('StorageClass'), col('VolumeAttributesClass'), col('Reason'), AGE, col('VolumeMode', 1)],
    cells: (pv) => {
      const ref = pv.spec?.claimRef;
      return [pv.metadata.name, pv.spec?.capacity?.storage ?? '', accessModesShort(pv.spec?.accessModes), pv.spec?.persistentVolumeReclaimPolicy ?? '', pv.metadata.deletionTimestamp ? 'Terminating' : pv.status?.phase ?? '',
        ref ? `${ref.namespace}/${ref.name}` : '', pv.spec?.storageClassName ?? '', pv.spec?.volumeAttributesClassName || '<unset>', pv.status?.reason ?? '', since(pv.metadata.creationTimestamp), pv.spec?.volumeMode ?? 'Filesystem'];
    },
  },
  persistentvolumeclaims: {
    columns: [NAME, col('Status'), col('Volume'), col('Capacity'), col('Access Modes'), col('StorageClass'), col('VolumeAttributesClass'), AGE, col('VolumeMode', 1)],
    cells: (c) => {
      const bound = c.status?.phase === 'Bound';
      return [c.metadata.name, c.metadata.deletionTimestamp ? 'Terminating' : c.status?.phase ?? 'Pending', c.spec?.volumeName ?? '', bound ? c.status?.capacity?.storage ?? '' : '', bound ? accessModesShort(c.status?.accessModes) : '',
        c.spec?.storageClassName ?? '', c.spec?.volumeAttributesClassName || '<unset>', since(c.metadata.creationTimestamp), c.spec?.volumeMode ?? 'Filesystem'];
    },
  },
  storageclasses: {
    columns: [NAME, col('Provisioner'), col('ReclaimPolicy'), col('VolumeBindingMode'), col('AllowVolumeExpansion'), AGE],
    cells: (sc) => [sc.metadata.annotations?.[DEFAULT_CLASS_ANNOTATION] === 'true' ? `${sc.metadata.name} (default)` : sc.metadata.name, sc.provisioner ?? '', sc.reclaimPolicy ?? 'Delete',
      sc.volumeBindingMode ?? 'Immediate', sc.allowVolumeExpansion === true ? 'true' : 'false', since(sc.metadata.creationTimestamp)],
  },
  services: {
    columns: [NAME, col('Type'), col('Cluster-IP'), col('External-IP'), col('Port(s)'), AGE, col('Selector', 1)],
    cells: (s) => [s.metadata.name, s.spec?.type ?? 'ClusterIP', s.spec?.type === 'ExternalName' ? '<none>' : s.spec?.clusterIP || '<none>', serviceExternalIp(s), servicePorts(s),
      since(s.metadata.creationTimestamp), Object.entries<string>(s.spec?.selector ?? {}).map(([k, v]) => `${k}=${v}`).sort().join(',') || '<none>'],
  },
  endpoints: {
    columns: [NAME, col('Endpoints'), AGE],
    cells: (e) => [e.metadata.name, endpointsCell(e), since(e.metadata.creationTimestamp)],
  },
  endpointslices: {
    columns: [NAME, col('AddressType'), col('Ports'), col('Endpoints'), AGE],
    cells: (sl) => [sl.metadata.name, sl.addressType ?? '', (sl.ports ?? []).map((p: KObj) => (p.port === undefined || p.port === null ? '<unset>' : String(p.port))).join(',') || '<unset>', sliceEndpointsCell(sl), since(sl.metadata.creationTimestamp)],
  },
  // kube-apiserver's printers: roles show when they were made, bindings their role and (wide) their subjects.
  roles: { columns: [NAME, col('Created At', 0, 'date')], cells: (r) => [r.metadata.name, r.metadata.creationTimestamp] },
  clusterroles: { columns: [NAME, col('Created At', 0, 'date')], cells: (r) => [r.metadata.name, r.metadata.creationTimestamp] },
  rolebindings: { columns: [NAME, col('Role'), AGE, col('Users', 1), col('Groups', 1), col('ServiceAccounts', 1)], cells: bindingCells },
  clusterrolebindings: { columns: [NAME, col('Role'), AGE, col('Users', 1), col('Groups', 1), col('ServiceAccounts', 1)], cells: bindingCells },
  serviceaccounts: {
    columns: [NAME, col('Secrets', 0, 'integer'), AGE],
    cells: (sa) => [sa.metadata.name, (sa.secrets ?? []).length, since(sa.metadata.creationTimestamp)],
  },
  runtimeclasses: {
    columns: [NAME, col('Handler'), AGE],
    cells: (r) => [r.metadata.name, r.handler ?? '', since(r.metadata.creationTimestamp)],
  },
};

function bindingCells(b: KObj): unknown[] {
  const c = bindingColumns(b);
  return [b.metadata.name, c.role, since(b.metadata.creationTimestamp), c.users, c.groups, c.serviceAccounts];
}

export type IncludeObject = 'None' | 'Metadata' | 'Object';

function rowObject(o: KObj, include: IncludeObject): KObj | undefined {
  if (include === 'None') return undefined;
  if (include === 'Object') return o;
  return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata };
}

export function toTable(resource: string, items: KObj[], resourceVersion: string, include: IncludeObject, withColumns = true): KObj {
  const p = PRINTERS[resource] ?? { columns: [NAME, { ...AGE, name: 'Created At', type: 'date' }], cells: (o: KObj) => [o.metadata.name, o.metadata.creationTimestamp] };
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion },
    columnDefinitions: withColumns ? p.columns : null,
    rows: items.map((o) => {
      const row: KObj = { cells: p.cells(o) };
      const obj = rowObject(o, include);
      if (obj) row.object = obj;
      return row;
    }),
  };
}
