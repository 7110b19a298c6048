/**
 * The dashboard's pages, routed by the location's hash. Each page builds its
 * frame once (headings, forms) and re-renders only its live sections when
 * a watch reports a change, so typing in a form is never interrupted.
 */
import { h, table, link, badge, pairs, age, type Child } from './dom.js';
import { whoami, get, act, streamLines, LiveList, type KObj, type Whoami } from './api.js';
import {
  podStatus, podTone, podReady, podRestarts, requestedStage1, isolationOf, unitOf, cpuText, bytesText, readyCondition, volumeSource,
  DEFAULT_STAGE1_LABEL, KVM_ACCEL_LABEL,
} from './format.js';

const main = document.getElementById('main')!;
const statusBar = document.getElementById('status')!;
let me: Whoami;
let teardown: (() => void)[] = [];

const enc = encodeURIComponent;
const podHref = (ns: string, name: string) => `#/pod/${enc(ns)}/${enc(name)}`;
const nodeHref = (name: string) => `#/node/${enc(name)}`;
const WORKLOAD_KINDS = { deployments: 'Deployment', statefulsets: 'StatefulSet', daemonsets: 'DaemonSet', jobs: 'Job' } as const;
type WorkloadResource = keyof typeof WORKLOAD_KINDS;
const groupOf = (r: WorkloadResource) => (r === 'jobs' ? 'batch/v1' : 'apps/v1');

function showError(err: Error): void {
  statusBar.replaceChildren(h('span', { class: 'error', role: 'alert' }, err.message));
}
function showInfo(text: string): void {
  statusBar.replaceChildren(h('span', { class: 'info', role: 'status' }, text));
}

function live(listPath: string, query: Record<string, string>, render: () => void): LiveList {
  const l = new LiveList(listPath, query, render, showError);
  teardown.push(() => l.stop());
  return l;
}

/** A button that runs an action and reports its outcome in the status bar. */
function actionButton(label: string, run: () => Promise<string>, attrs: Record<string, string> = {}): HTMLButtonElement {
  const b = h('button', { type: 'button', ...attrs }, label);
  b.addEventListener('click', () => {
    b.disabled = true;
    run().then(showInfo, showError).finally(() => { b.disabled = false; });
  });
  return b;
}

/** Delete asks twice in the page itself (no browser dialog). */
function deleteButton(what: string, run: () => Promise<string>): HTMLElement {
  const confirmB = actionButton(`Really delete ${what}`, run, { class: 'danger', 'data-action': 'confirm-delete' });
  confirmB.hidden = true;
  const first = h('button', { type: 'button', class: 'danger', 'data-action': 'delete' }, `Delete ${what}`);
  first.addEventListener('click', () => { confirmB.hidden = false; });
  return h('span', {}, first, ' ', confirmB);
}

const section = (title: string, ...body: Child[]) => h('section', {}, h('h2', {}, title), ...body);
const box = (id: string) => h('div', { id });

function stage1Cell(pod: KObj): Child {
  const asked = requestedStage1(pod);
  return asked ? badge(asked, asked === 'fly' ? 'warn' : 'ok') : badge('node default', 'muted');
}

function podRows(pods: KObj[], withNamespace = true): Child[][] {
  return pods.map((p) => {
    const s = podStatus(p);
    const row: Child[] = [link(podHref(p.metadata.namespace ?? 'default', p.metadata.name), p.metadata.name), badge(s, podTone(s)), podReady(p), podRestarts(p),
      p.spec?.nodeName ? link(nodeHref(p.spec.nodeName), p.spec.nodeName) : h('span', { class: 'muted' }, 'unscheduled'), stage1Cell(p), age(p.metadata.creationTimestamp)];
    return withNamespace ? [p.metadata.namespace ?? '', ...row] : row;
  });
}
const POD_HEADERS = ['Name', 'Status', 'Ready', 'Restarts', 'Node', 'Stage1', 'Age'];

// ---- overview ------------------------------------------------------------

function overview(): void {
  const nodesBox = box('nodes');
  const podsBox = box('pod-summary');
  const metricsNote = h('p', { class: 'muted' });
  main.append(h('h1', {}, 'Cluster'), h('p', { class: 'muted' }, `API ${me.server}, acting as ${me.user}`),
    section('Nodes', nodesBox, metricsNote), section('Pods', podsBox));
  let usage = new Map<string, { cpu?: string; memory?: string }>();
  const render = () => {
    const podsPerNode = new Map<string, number>();
    for (const p of pods.items.values()) if (p.spec?.nodeName) podsPerNode.set(p.spec.nodeName, (podsPerNode.get(p.spec.nodeName) ?? 0) + 1);
    nodesBox.replaceChildren(table(['Name', 'Ready', 'CPU', 'Memory', 'CPU used', 'Memory used', 'Pods', 'Runtime', 'Default stage1', 'kvm-accel'], nodes.list.map((n) => {
      const ready = readyCondition(n);
      const u = usage.get(n.metadata.name);
      return [link(nodeHref(n.metadata.name), n.metadata.name), badge(ready === 'True' ? 'Ready' : `Ready: ${ready}`, ready === 'True' ? 'ok' : 'bad'),
        cpuText(n.status?.capacity?.cpu), bytesText(n.status?.capacity?.memory), u ? cpuText(u.cpu) : '–', u ? bytesText(u.memory) : '–',
        `${podsPerNode.get(n.metadata.name) ?? 0} / ${n.status?.capacity?.pods ?? '?'}`, n.status?.nodeInfo?.containerRuntimeVersion ?? '',
        n.metadata.labels?.[DEFAULT_STAGE1_LABEL] ?? '', n.metadata.labels?.[KVM_ACCEL_LABEL] ?? h('span', { class: 'muted' }, 'not reported')];
    }), 'nodes'));
    const phases = new Map<string, number>();
    for (const p of pods.items.values()) { const s = podStatus(p); phases.set(s, (phases.get(s) ?? 0) + 1); }
    podsBox.replaceChildren(h('p', {}, `Pods: ${pods.items.size} `, ...[...phases].flatMap(([s, n]) => [badge(`${s} ${n}`, podTone(s)), ' ']), link('#/workloads', 'see them by workload')));
  };
  const nodes = live('/api/v1/nodes', {}, render);
  const pods = live('/api/v1/pods', {}, render);
  // Usage cannot be watched (metrics.k8s.io is computed): it is read every 15 s, the agents' sampling pace.
  const readUsage = async () => {
    try {
      const m = await get<{ items: KObj[] }>('/apis/metrics.k8s.io/v1beta1/nodes');
      usage = new Map(m.items.map((i) => [i.metadata.name, i.usage ?? {}]));
      metricsNote.textContent = 'Usage from metrics.k8s.io, read every 15 s.';
    } catch (err) {
      metricsNote.textContent = `Usage not available: ${(err as Error).message}`;
    }
    render();
  };
  void readUsage();
  const timer = setInterval(readUsage, 15_000);
  teardown.push(() => clearInterval(timer));
}

// ---- workloads -----------------------------------------------------------

function workloadRef(o: KObj): string | undefined {
  const owner = o.metadata.ownerReferences?.find((r) => r.controller) ?? o.metadata.ownerReferences?.[0];
  return owner?.uid;
}

function workloads(): void {
  const boxes = Object.fromEntries(Object.keys(WORKLOAD_KINDS).map((r) => [r, box(`list-${r}`)])) as unknown as Record<WorkloadResource, HTMLElement>;
  const filter = h('input', { type: 'search', placeholder: 'filter pods by name or namespace', id: 'pod-filter' });
  const podsBox = box('pods');
  main.append(h('h1', {}, 'Workloads'),
    ...Object.entries(WORKLOAD_KINDS).map(([r, kind]) => section(`${kind}s`, boxes[r as WorkloadResource])),
    section('Pods', filter, podsBox));
  const render = () => {
    // pod → its ReplicaSet → the Deployment; other kinds own their pods directly.
    const rsOwner = new Map<string, string>();
    for (const rs of replicaSets.items.values()) { const o = workloadRef(rs); if (rs.metadata.uid && o) rsOwner.set(rs.metadata.uid, o); }
    const podsOf = new Map<string, KObj[]>();
    for (const p of pods.items.values()) {
      let owner = workloadRef(p);
      if (owner && rsOwner.has(owner)) owner = rsOwner.get(owner);
      if (owner) podsOf.set(owner, [...(podsOf.get(owner) ?? []), p]);
    }
    for (const [r, l] of Object.entries(lists) as [WorkloadResource, LiveList][]) {
      if (!l.loaded) continue;
      if (!l.items.size) { boxes[r].replaceChildren(h('p', { class: 'muted' }, 'none')); continue; }
      boxes[r].replaceChildren(table(['Namespace', 'Name', 'Ready', 'Pods', 'Age'], l.list.map((w) => {
        const mine = (podsOf.get(w.metadata.uid ?? '') ?? []).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
        const shown = mine.slice(0, 8);
        return [w.metadata.namespace ?? '', link(`#/workload/${r}/${enc(w.metadata.namespace ?? '')}/${enc(w.metadata.name)}`, w.metadata.name), workloadReady(r, w),
          h('span', { class: 'pod-chips' }, ...shown.flatMap((p) => [link(podHref(p.metadata.namespace ?? '', p.metadata.name), p.metadata.name), ' ']), mine.length > shown.length ? `+${mine.length - shown.length} more` : ''),
          age(w.metadata.creationTimestamp)];
      })));
    }
    renderPods();
  };
  const renderPods = () => {
    const f = filter.value.trim();
    const shown = pods.list.filter((p) => !f || p.metadata.name.includes(f) || (p.metadata.namespace ?? '').includes(f));
    podsBox.replaceChildren(table(['Namespace', ...POD_HEADERS], podRows(shown), 'pods'));
  };
  filter.addEventListener('input', renderPods);
  const lists = Object.fromEntries(Object.keys(WORKLOAD_KINDS).map((r) => [r, live(`/apis/${groupOf(r as WorkloadResource)}/${r}`, {}, render)])) as Record<WorkloadResource, LiveList>;
  const replicaSets = live('/apis/apps/v1/replicasets', {}, render);
  const pods = live('/api/v1/pods', {}, render);
}

function workloadReady(r: WorkloadResource, w: KObj): string {
  const s = w.status ?? {};
  switch (r) {
    case 'daemonsets': return `${s.numberReady ?? 0}/${s.desiredNumberScheduled ?? 0}`;
    case 'jobs': return `${s.succeeded ?? 0}/${w.spec?.completions ?? 1} succeeded${s.active ? `, ${s.active} active` : ''}`;
    default: return `${s.readyReplicas ?? 0}/${w.spec?.replicas ?? 0}`;
  }
}

function workloadPage(r: WorkloadResource, ns: string, name: string): void {
  const base = `/apis/${groupOf(r)}/namespaces/${enc(ns)}/${r}`;
  const summary = box('workload-summary');
  const podsBox = box('workload-pods');
  const actions = h('div', { class: 'actions' });
  if (r === 'deployments' || r === 'statefulsets') {
    const replicas = h('input', { type: 'number', min: '0', id: 'scale-replicas', 'aria-label': 'replicas' });
    actions.append(h('label', {}, 'Replicas ', replicas), ' ', actionButton('Scale', async () => {
      const n = Number(replicas.value);
      if (replicas.value === '' || !Number.isInteger(n) || n < 0) throw new Error(`scale: "${replicas.value}" is not a replica count (a whole number ≥ 0)`);
      await act('PATCH', `${base}/${enc(name)}/scale`, { spec: { replicas: n } });
      return `${WORKLOAD_KINDS[r]} ${ns}/${name} scaled to ${n}`;
    }, { id: 'scale-button' }), ' ');
  }
  if (r !== 'jobs') {
    actions.append(actionButton('Restart rollout', async () => {
      // What `kubectl rollout restart` patches.
      await act('PATCH', `${base}/${enc(name)}`, { spec: { template: { metadata: { annotations: { 'kubectl.kubernetes.io/restartedAt': new Date().toISOString() } } } } }, 'application/strategic-merge-patch+json');
      return `${WORKLOAD_KINDS[r]} ${ns}/${name} restarted`;
    }, { id: 'restart-button' }));
  }
  main.append(h('h1', {}, `${WORKLOAD_KINDS[r]} ${ns}/${name}`), actions, summary, section('Pods', podsBox));
  let podList: LiveList | undefined;
  const render = () => {
    const w = self.items.values().next().value as KObj | undefined;
    if (!w) { summary.replaceChildren(h('p', { class: 'muted' }, self.loaded ? `${WORKLOAD_KINDS[r]} ${ns}/${name} does not exist (any more)` : 'loading…')); return; }
    summary.replaceChildren(
      h('p', {}, 'Ready ', h('strong', { id: 'workload-ready' }, workloadReady(r, w)), `, created ${age(w.metadata.creationTimestamp)} ago`),
      section('Conditions', table(['Type', 'Status', 'Reason', 'Message'], (w.status?.conditions ?? []).map((c: any) => [c.type, c.status, c.reason ?? '', c.message ?? '']))),
      section('Labels', pairs(w.metadata.labels)), section('Annotations', pairs(w.metadata.annotations)));
    const matchLabels = w.spec?.selector?.matchLabels as Record<string, string> | undefined;
    if (!podList && matchLabels) {
      const selector = Object.entries(matchLabels).map(([k, v]) => `${k}=${v}`).join(',');
      podList = live(`/api/v1/namespaces/${enc(ns)}/pods`, { labelSelector: selector }, () => podsBox.replaceChildren(table(POD_HEADERS, podRows(podList!.list, false), 'pods')));
    }
  };
  const self = live(base, { fieldSelector: `metadata.name=${name}` }, render);
}

// ---- pod -----------------------------------------------------------------

function podPage(ns: string, name: string): void {
  const apiPath = `/api/v1/namespaces/${enc(ns)}/pods/${enc(name)}`;
  const details = box('pod-details');
  const eventsBox = box('pod-events');
  const logContainer = h('select', { id: 'log-container', 'aria-label': 'container' });
  const follow = h('input', { type: 'checkbox', id: 'log-follow', checked: true });
  const logLines = h('div', { id: 'log-lines', class: 'log' });
  const execContainer = h('select', { id: 'exec-container', 'aria-label': 'container to exec in' });
  const actions = h('div', { class: 'actions' },
    deleteButton('pod', async () => { await act('DELETE', apiPath); return `pod ${ns}/${name} deleted`; }), ' ',
    h('label', {}, 'Terminal in ', execContainer), ' ',
    h('button', { type: 'button', id: 'exec-button', onclick: () => window.open(`/terminal.html#${enc(ns)}/${enc(name)}/${enc(execContainer.value)}`, '_blank', 'noopener') }, 'Open terminal'));
  main.append(h('h1', {}, `Pod ${ns}/${name}`), actions, details, section('Events', eventsBox),
    section('Logs', h('div', { class: 'log-controls' }, h('label', {}, 'Container ', logContainer), ' ', h('label', {}, follow, ' follow')), logLines));

  let logAbort: AbortController | undefined;
  const startLogs = () => {
    logAbort?.abort();
    const abort = (logAbort = new AbortController());
    logLines.replaceChildren();
    const q = new URLSearchParams({ container: logContainer.value, tailLines: '500', ...(follow.checked ? { follow: 'true' } : {}) });
    void streamLines(`${apiPath}/log?${q}`, abort.signal, (line) => {
      const atBottom = logLines.scrollTop + logLines.clientHeight >= logLines.scrollHeight - 4;
      logLines.append(h('div', { class: 'log-line' }, line));
      while (logLines.childElementCount > 5000) logLines.firstElementChild!.remove();
      if (atBottom) logLines.scrollTop = logLines.scrollHeight;
    }).catch((err: Error) => { if (!abort.signal.aborted) logLines.append(h('div', { class: 'log-line error' }, err.message)); });
  };
  teardown.push(() => logAbort?.abort());
  logContainer.addEventListener('change', startLogs);
  follow.addEventListener('change', startLogs);

  const nodes = new Map<string, KObj | null>();
  const nodeOf = (nodeName: string): KObj | undefined => {
    if (!nodes.has(nodeName)) {
      nodes.set(nodeName, null);
      get(`/api/v1/nodes/${enc(nodeName)}`).then((n) => { nodes.set(nodeName, n); render(); }, () => undefined);
    }
    return nodes.get(nodeName) ?? undefined;
  };

  const render = () => {
    const pod = self.items.values().next().value as KObj | undefined;
    if (!pod) { details.replaceChildren(h('p', { class: 'muted' }, self.loaded ? `pod ${ns}/${name} does not exist (any more)` : 'loading…')); return; }
    const containers: any[] = pod.spec?.containers ?? [];
    if (!logContainer.options.length) {
      for (const c of containers) { logContainer.append(h('option', { value: c.name }, c.name)); execContainer.append(h('option', { value: c.name }, c.name)); }
      if (containers.length) startLogs();
    }
    const node = pod.spec?.nodeName ? nodeOf(pod.spec.nodeName) : undefined;
    const asked = requestedStage1(pod);
    const nodeDefault = node?.metadata.labels?.[DEFAULT_STAGE1_LABEL];
    const stage1 = asked ?? nodeDefault;
    const accel = node?.metadata.labels?.[KVM_ACCEL_LABEL];
    const statuses = new Map<string, any>((pod.status?.containerStatuses ?? []).map((c: any) => [c.name, c]));
    const used = new Map<string, { cpu?: string; memory?: string }>((podUsage?.containers ?? []).map((c: any) => [c.name, c.usage ?? {}]));
    const s = podStatus(pod);
    details.replaceChildren(
      h('div', { class: 'facts' },
        fact('Status', badge(s, podTone(s))), fact('Node', pod.spec?.nodeName ? link(nodeHref(pod.spec.nodeName), pod.spec.nodeName) : 'unscheduled'),
        fact('Pod IP', pod.status?.podIP ?? ''), fact('QoS', pod.status?.qosClass ?? ''), fact('Restarts', podRestarts(pod)), fact('Age', age(pod.metadata.creationTimestamp))),
      section('Stage1 and isolation', h('div', { id: 'pod-stage1', class: 'facts' },
        fact('Stage1', stage1 ? h('strong', {}, stage1) : h('span', { class: 'muted' }, 'the node\'s default (node not known yet)')),
        fact('Chosen by', asked ? (pod.metadata.annotations?.['rkt.alpha.kubernetes.io/stage1-name-override'] ? 'the rkt.alpha.kubernetes.io/stage1-name-override annotation' : `runtimeClassName ${pod.spec.runtimeClassName}`) : `the node's default (label ${DEFAULT_STAGE1_LABEL})`),
        fact('Isolation', stage1 ? isolationOf(stage1, accel) : ''),
        ...(stage1 === 'kvm' ? [fact('kvm-accel', accel ?? 'not reported by the node')] : []))),
      section('Containers', table(['Name', 'Image', 'State', 'Ready', 'Restarts', 'CPU / memory used', 'systemd unit'], containers.map((c) => {
        const st = statuses.get(c.name);
        const state = st?.state ? Object.keys(st.state)[0] ?? '' : 'not started';
        const why = st?.state?.waiting?.reason ?? st?.state?.terminated?.reason ?? '';
        const u = used.get(c.name);
        return [c.name, c.image ?? '', `${state}${why ? ` (${why})` : ''}`, st?.ready ? 'yes' : 'no', st?.restartCount ?? 0, u ? `${cpuText(u.cpu)} / ${bytesText(u.memory)}` : '–', unitOf(st?.containerID) ?? h('span', { class: 'muted' }, 'none yet')];
      }), 'containers')),
      section('Conditions', table(['Type', 'Status', 'Reason', 'Last transition'], (pod.status?.conditions ?? []).map((c: any) => [c.type, c.status, c.reason ?? '', c.lastTransitionTime ?? '']))),
      section('Volumes', table(['Name', 'Source', 'Details'], (pod.spec?.volumes ?? []).map((v: any) => [v.name, ...volumeSource(v)]))),
      section('Labels', pairs(pod.metadata.labels)),
      section('Annotations', h('div', { id: 'pod-annotations' }, pairs(pod.metadata.annotations))));
  };
  const self = live(`/api/v1/namespaces/${enc(ns)}/pods`, { fieldSelector: `metadata.name=${name}` }, render);
  // PodMetrics, read every 15 s as the overview reads node usage; absent until the node has two samples.
  let podUsage: KObj | undefined;
  const readUsage = () => get(`/apis/metrics.k8s.io/v1beta1/namespaces/${enc(ns)}/pods/${enc(name)}`).then((m) => { podUsage = m; render(); }, () => undefined);
  void readUsage();
  const timer = setInterval(readUsage, 15_000);
  teardown.push(() => clearInterval(timer));
  const events = live(`/api/v1/namespaces/${enc(ns)}/events`, { fieldSelector: `involvedObject.name=${name},involvedObject.kind=Pod` }, () => {
    const list = events.list.sort((a, b) => String(a.lastTimestamp ?? a.eventTime ?? '').localeCompare(String(b.lastTimestamp ?? b.eventTime ?? '')));
    eventsBox.replaceChildren(list.length ? table(['Type', 'Reason', 'Age', 'From', 'Message'], list.map((e) => [badge(e.type ?? '', e.type === 'Warning' ? 'bad' : 'muted'), e.reason ?? '', age(e.lastTimestamp ?? e.eventTime ?? e.metadata.creationTimestamp), e.source?.component ?? e.reportingComponent ?? '', e.message ?? '']), 'events') : h('p', { class: 'muted' }, 'none'));
  });
}

const fact = (label: string, value: Child) => h('div', { class: 'fact' }, h('span', { class: 'label' }, label), h('span', { class: 'value' }, value));

// ---- node ----------------------------------------------------------------

const STAGE1_POLICY_ANNOTATION = 'stevedore.io/stage1-policy';

/** The node's stage1 policy (its agent's annotation) in words: what is forbidden, required where, and who has host access. */
function policyText(raw: string | undefined): string {
  if (!raw) return 'not reported (an older agent); pods it refuses get Stage1NotAllowed or HostAccessNotAllowed events';
  try {
    const p = JSON.parse(raw) as { forbid?: string[]; require?: Array<{ stage1: string; namespaces?: string[]; matchLabels?: Record<string, string> }>; allowHostAccess?: Array<{ allow: string[]; namespaces?: string[]; matchLabels?: Record<string, string> }> };
    const who = (r: { namespaces?: string[]; matchLabels?: Record<string, string> }) => [r.namespaces?.length ? `namespaces ${r.namespaces.join(', ')}` : '', r.matchLabels ? `labels ${Object.entries(r.matchLabels).map(([k, v]) => `${k}=${v}`).join(',')}` : ''].filter(Boolean).join(' and ') || 'every pod';
    const parts = [
      p.forbid?.length ? `forbids ${p.forbid.join(', ')}` : 'forbids no stage1',
      ...(p.require ?? []).map((r) => `at least ${r.stage1} for ${who(r)}`),
      ...(p.allowHostAccess ?? []).map((r) => `host access (${r.allow.join(', ')}) for ${who(r)}`),
    ];
    if (!p.allowHostAccess?.length) parts.push('no host access for any pod');
    return parts.join('; ');
  } catch {
    return 'unreadable annotation';
  }
}

function nodePage(name: string): void {
  const details = box('node-details');
  const podsBox = box('node-pods');
  main.append(h('h1', {}, `Node ${name}`), details, section('Pods on this node', podsBox));
  let usage: { cpu?: string; memory?: string } | undefined;
  const render = () => {
    const n = self.items.values().next().value as KObj | undefined;
    if (!n) { details.replaceChildren(h('p', { class: 'muted' }, self.loaded ? `node ${name} is not registered` : 'loading…')); return; }
    const info = n.status?.nodeInfo ?? {};
    details.replaceChildren(
      h('div', { class: 'facts' }, fact('Ready', readyCondition(n)), fact('Runtime', info.containerRuntimeVersion ?? ''), fact('Kubelet', info.kubeletVersion ?? ''),
        fact('OS', `${info.osImage ?? ''} (${info.kernelVersion ?? ''}, ${info.architecture ?? ''})`),
        fact('CPU', `${cpuText(n.status?.capacity?.cpu)}${usage ? `, ${cpuText(usage.cpu)} used` : ''}`), fact('Memory', `${bytesText(n.status?.capacity?.memory)}${usage ? `, ${bytesText(usage.memory)} used` : ''}`),
        fact('Addresses', (n.status?.addresses ?? []).map((a: any) => `${a.type} ${a.address}`).join(', ')), fact('Pod CIDR', n.spec?.podCIDR ?? '')),
      section('Stage1', h('div', { id: 'node-stage1', class: 'facts' },
        fact('Default stage1', n.metadata.labels?.[DEFAULT_STAGE1_LABEL] ?? 'not reported'),
        fact('kvm-accel', n.metadata.labels?.[KVM_ACCEL_LABEL] ?? 'not reported (no kvm stage1 assets, or an older agent)'),
        fact('Stage1 policy', policyText(n.metadata.annotations?.[STAGE1_POLICY_ANNOTATION])))),
      section('Conditions', table(['Type', 'Status', 'Reason', 'Message'], (n.status?.conditions ?? []).map((c: any) => [c.type, c.status, c.reason ?? '', c.message ?? '']))),
      section('Labels', pairs(n.metadata.labels)), section('Annotations', pairs(n.metadata.annotations)));
  };
  const self = live('/api/v1/nodes', { fieldSelector: `metadata.name=${name}` }, render);
  const pods = live('/api/v1/pods', { fieldSelector: `spec.nodeName=${name}` }, () => podsBox.replaceChildren(table(['Namespace', ...POD_HEADERS], podRows(pods.list), 'pods')));
  const readUsage = () => get(`/apis/metrics.k8s.io/v1beta1/nodes/${enc(name)}`).then((m) => { usage = m.usage; render(); }, () => undefined);
  void readUsage();
  const timer = setInterval(readUsage, 15_000);
  teardown.push(() => clearInterval(timer));
}

// ---- routing -------------------------------------------------------------

function route(): void {
  for (const stop of teardown) stop();
  teardown = [];
  statusBar.replaceChildren();
  main.replaceChildren();
  const parts = (location.hash.replace(/^#\/?/, '') || '').split('/').filter(Boolean).map(decodeURIComponent);
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.getAttribute('href') === `#/${parts[0] ?? ''}`);
  const [page, a, b, c] = parts;
  if (!page) return overview();
  if (page === 'workloads' && !a) return workloads();
  if (page === 'workload' && a && a in WORKLOAD_KINDS && b && c) return workloadPage(a as WorkloadResource, b, c);
  if (page === 'pod' && a && b) return podPage(a, b);
  if (page === 'node' && a) return nodePage(a);
  main.append(h('h1', {}, 'Not found'), h('p', {}, `There is no page ${location.hash}.`), link('#/', 'Back to the cluster'));
}

async function start(): Promise<void> {
  try {
    me = await whoami();
  } catch (err) {
    showError(err as Error);
    return;
  }
  document.getElementById('who')!.textContent = `${me.user} @ ${me.server}`;
  window.addEventListener('hashchange', route);
  route();
}

void start();
