/**
 * `stevedore cluster-autoscaler`: cluster-autoscaler for a cluster of
 * `stevedore up --nodes N --max-nodes M`. It runs on the host, as a process
 * of its own that `up` starts (detached, logging to
 * <data dir>/cluster-autoscaler.log, its PID in cluster-autoscaler.pid) and
 * `down` stops: adding and removing a node means making or taking apart a
 * node sandbox, which only this host's CLI code (up-nodes.ts) can do; the
 * control plane runs no host-side effects and must not gain root-level
 * powers over the host for that.
 *
 * Every scan interval: list Nodes, Pods and PodDisruptionBudgets through the
 * API (the admin credentials `up` wrote), decide (cluster-autoscaler-logic.ts),
 * then act: TriggeredScaleUp / NotTriggerScaleUp events on pods and new nodes
 * (`node add`); or the ToBeDeletedByClusterAutoscaler taint, evictions through
 * the Eviction API (PDBs hold) and `node remove`; and the
 * kube-system/cluster-autoscaler-status ConfigMap.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as https from 'node:https';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { UserError } from '../common/errors.js';
import { readJsonIfExists } from '../common/fsutil.js';
import type { KObj } from '../control-plane/store.js';
import { TO_BE_DELETED_TAINT, nextNodeName, planScaleDown, planScaleUp, type AutoscalerOptions, type NodeGroup, type UnneededState } from './cluster-autoscaler-logic.js';
import type { MultiNodeState } from './up-nodes.js';

export const NODE_GROUP = 'stevedore-nodes';
const COMPONENT = 'cluster-autoscaler';
const STATUS_CONFIGMAP = 'cluster-autoscaler-status';
/** How long evictions are retried (a PDB answering 429) before the scale-down is given up (cluster-autoscaler's max-pod-eviction-time). */
const EVICTION_TIMEOUT_MS = 2 * 60_000;

export interface AutoscalerRun extends AutoscalerOptions { dataDir: string; min: number; max: number; scanIntervalMs: number }

interface Api { get(p: string): Promise<KObj>; send(method: string, p: string, body: unknown, type?: string): Promise<[number, KObj]> }

function apiClient(port: number, ca: string, token: string): Api {
  const call = (method: string, p: string, body?: unknown, type = 'application/json') => new Promise<[number, KObj]>((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(`https://127.0.0.1:${port}${p}`, {
      method, ca, timeout: 10_000,
      headers: { Authorization: `Bearer ${token}`, Accept: 'application/json', ...(data ? { 'Content-Type': type, 'Content-Length': Buffer.byteLength(data) } : {}) },
    }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => { try { resolve([res.statusCode ?? 0, JSON.parse(text)]); } catch { resolve([res.statusCode ?? 0, { message: text }]); } });
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(`${method} ${p}: timeout`)));
    req.end(data);
  });
  return {
    async get(p) {
      const [code, obj] = await call('GET', p);
      if (code !== 200) throw new Error(`GET ${p}: ${code} ${obj.message ?? ''}`);
      return obj;
    },
    send: call,
  };
}

const log = (msg: string) => process.stdout.write(`${new Date().toISOString()} ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The autoscaler's loop; resolves only on SIGTERM/SIGINT. */
export async function runClusterAutoscaler(o: AutoscalerRun): Promise<void> {
  if (!Number.isInteger(o.min) || !Number.isInteger(o.max) || o.min < 0 || o.max < Math.max(1, o.min)) throw new UserError(`--min-nodes ${o.min} / --max-nodes ${o.max} do not make a node group`, { hint: 'need 0 <= min <= max and max >= 1' });
  const statePath = path.join(o.dataDir, 'up.json');
  const first = await readJsonIfExists<MultiNodeState>(statePath);
  if (!first?.nodes) throw new UserError(`no cluster of \`stevedore up --nodes\` in ${o.dataDir}`, { hint: 'the cluster autoscaler works on `up --nodes N --max-nodes M` clusters; pass their --data-dir' });
  const ca = await fs.readFile(path.join(o.dataDir, 'control-plane', 'pki', 'ca.crt'), 'utf8');
  const token = (await fs.readFile(path.join(o.dataDir, 'control-plane', 'admin.token'), 'utf8')).trim();
  const api = apiClient(first.port, ca, token);
  const scaler = new Autoscaler(api, o);
  let stopping = false;
  const stop = () => { stopping = true; };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  log(`cluster-autoscaler: node group ${NODE_GROUP} min ${o.min} max ${o.max}, scan every ${o.scanIntervalMs / 1000} s, scale-down after ${o.unneededMs / 1000} s under ${o.utilizationThreshold}`);
  while (!stopping) {
    const started = Date.now();
    try {
      const state = await readJsonIfExists<MultiNodeState>(statePath);
      if (!state?.nodes) { log('up.json is gone: the cluster is down; exiting'); return; }
      await scaler.pass(state, () => stopping);
    } catch (err) {
      log(`pass failed: ${(err as Error).message}`);
    }
    for (let left = o.scanIntervalMs - (Date.now() - started); left > 0 && !stopping; left -= 200) await sleep(Math.min(200, left));
  }
  log('cluster-autoscaler: stopped');
}

class Autoscaler {
  private readonly unneeded: UnneededState = { since: new Map() };
  private lastScaleUpAt = 0;
  /** pod uid → the last message it got, so an event is not repeated every pass (cluster-autoscaler throttles them too). */
  private readonly told = new Map<string, string>();
  private scaleUp = { status: 'NoActivity', since: new Date().toISOString() };
  private health = { status: 'Healthy', since: new Date().toISOString() };

  constructor(private readonly api: Api, private readonly o: AutoscalerRun) {}

  async pass(state: MultiNodeState, stopping: () => boolean): Promise<void> {
    const [nodes, pods, pdbs] = await Promise.all([
      this.api.get('/api/v1/nodes').then((l) => l.items as KObj[]),
      this.api.get('/api/v1/pods').then((l) => l.items as KObj[]),
      this.api.get('/apis/policy/v1/poddisruptionbudgets').then((l) => l.items as KObj[]),
    ]);
    const group: NodeGroup = { name: NODE_GROUP, min: this.o.min, max: this.o.max, members: state.nodes.map((n) => n.name) };
    const members = new Set(group.members);
    const ready = (n: KObj) => (n.status?.conditions ?? []).some((c: KObj) => c.type === 'Ready' && c.status === 'True');
    const template = nodes.find((n) => members.has(n.metadata.name) && ready(n));
    const up = planScaleUp(nodes, pods, group, template);
    for (const v of up.triggered) await this.tell(v.pod, 'TriggeredScaleUp', v.message);
    for (const v of up.notTriggered) await this.tell(v.pod, 'NotTriggerScaleUp', v.message);
    for (const uid of [...this.told.keys()]) if (!pods.some((p) => p.metadata.uid === uid && !p.spec?.nodeName)) this.told.delete(uid);
    const down = up.add ? { candidates: [] } as ReturnType<typeof planScaleDown> : planScaleDown(nodes, pods, pdbs, group, this.unneeded, Date.now(), this.lastScaleUpAt, this.o);
    await this.writeStatus(nodes, group, up.add, down.candidates.filter((c) => !c.blocked).length);
    if (up.add && !stopping()) {
      await this.addNodes(state, up.add);
    } else if (down.remove && !stopping()) {
      await this.removeNode(state, nodes.find((n) => n.metadata.name === down.remove!.node)!, down.remove.pods);
    }
  }

  private async tell(pod: KObj, reason: string, message: string): Promise<void> {
    if (this.told.get(pod.metadata.uid) === message) return;
    this.told.set(pod.metadata.uid, message);
    await this.event(pod, 'Normal', reason, message);
  }

  private async event(obj: KObj, type: 'Normal' | 'Warning', reason: string, message: string): Promise<void> {
    const ns = obj.metadata.namespace || 'default';
    const t = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const body = {
      apiVersion: 'v1', kind: 'Event',
      metadata: { name: `${obj.metadata.name}.${Date.now().toString(16)}${randomBytes(2).toString('hex')}`, namespace: ns },
      involvedObject: { kind: obj.kind ?? (obj.metadata.namespace ? 'Pod' : 'Node'), namespace: obj.metadata.namespace, name: obj.metadata.name, uid: obj.metadata.uid, apiVersion: 'v1', resourceVersion: obj.metadata.resourceVersion },
      reason, message, type, source: { component: COMPONENT }, firstTimestamp: t, lastTimestamp: t, count: 1, reportingComponent: COMPONENT, reportingInstance: '',
    };
    const [code, res] = await this.api.send('POST', `/api/v1/namespaces/${ns}/events`, body).catch((err) => [0, { message: String(err) }] as [number, KObj]);
    if (code !== 201 && code !== 200) log(`event ${reason} on ${obj.metadata.name} not recorded: ${code} ${res.message ?? ''}`);
    log(`${reason} ${obj.metadata.namespace ? `${obj.metadata.namespace}/` : ''}${obj.metadata.name}: ${message}`);
  }

  private async addNodes(state: MultiNodeState, count: number): Promise<void> {
    const names: string[] = [];
    for (let i = 0; i < count; i++) names.push(nextNodeName([...state.nodes.map((n) => n.name), ...names]));
    this.scaleUp = { status: 'InProgress', since: new Date().toISOString() };
    this.lastScaleUpAt = Date.now();
    log(`scale-up: ${NODE_GROUP} ${state.nodes.length}->${state.nodes.length + count}: adding ${names.join(', ')}`);
    const { addNodeToCluster } = await import('./up-nodes.js');
    const results = await Promise.allSettled(names.map((name) => addNodeToCluster(this.o.dataDir, state, name)));
    results.forEach((r, i) => log(r.status === 'fulfilled' ? `node ${names[i]} added and Ready` : `adding node ${names[i]} failed: ${(r.reason as Error).message}`));
    this.lastScaleUpAt = Date.now();
    this.scaleUp = { status: 'NoActivity', since: new Date().toISOString() };
    this.health = results.some((r) => r.status === 'rejected') ? { status: 'Unhealthy', since: new Date().toISOString() } : this.health;
  }

  private async removeNode(state: MultiNodeState, node: KObj, pods: KObj[]): Promise<void> {
    const name = node.metadata.name;
    log(`scale-down: removing ${name} (${pods.length} pods to move)`);
    const taints = [...(node.spec?.taints ?? []).filter((t: KObj) => t.key !== TO_BE_DELETED_TAINT), { key: TO_BE_DELETED_TAINT, value: String(Math.floor(Date.now() / 1000)), effect: 'NoSchedule' }];
    const [tc, tres] = await this.api.send('PATCH', `/api/v1/nodes/${name}`, { spec: { taints } }, 'application/merge-patch+json');
    if (tc !== 200) { log(`cannot taint ${name}: ${tc} ${tres.message ?? ''}`); return; }
    await this.event(node, 'Normal', 'ScaleDown', 'marked the node as toBeDeleted/unschedulable');
    const failed = await this.evictAll(pods);
    if (failed) {
      const [, fresh] = await this.api.send('GET', `/api/v1/nodes/${name}`, undefined);
      const kept = (fresh.spec?.taints ?? []).filter((t: KObj) => t.key !== TO_BE_DELETED_TAINT);
      await this.api.send('PATCH', `/api/v1/nodes/${name}`, { spec: { taints: kept.length ? kept : null } }, 'application/merge-patch+json');
      await this.event(node, 'Warning', 'ScaleDownFailed', `failed to drain the node, aborting ScaleDown: ${failed}`);
      this.unneeded.since.delete(name);
      return;
    }
    const { removeNodeFromCluster } = await import('./up-nodes.js');
    try {
      await removeNodeFromCluster(this.o.dataDir, state, name);
      await this.event(node, 'Normal', 'ScaleDown', 'node removed by cluster autoscaler');
      log(`node ${name} removed`);
    } catch (err) {
      await this.event(node, 'Warning', 'ScaleDownFailed', `failed to delete the node: ${(err as Error).message}`);
    }
    this.unneeded.since.delete(name);
  }

  /** Evicts every pod through the Eviction API, retrying those a budget holds; resolves to why it gave up, or undefined once all are gone. */
  private async evictAll(pods: KObj[]): Promise<string | undefined> {
    const deadline = Date.now() + EVICTION_TIMEOUT_MS;
    let left = [...pods];
    let lastError = '';
    const told = new Set<string>();
    while (left.length) {
      const still: KObj[] = [];
      for (const p of left) {
        const ns = p.metadata.namespace;
        const [code, res] = await this.api.send('POST', `/api/v1/namespaces/${ns}/pods/${p.metadata.name}/eviction`, { apiVersion: 'policy/v1', kind: 'Eviction', metadata: { name: p.metadata.name, namespace: ns } });
        if (code === 201 || code === 200 || code === 404) {
          if (!told.has(p.metadata.uid) && code !== 404) await this.event(p, 'Normal', 'ScaleDown', 'deleting pod for node scale down');
          told.add(p.metadata.uid);
          continue;
        }
        lastError = `pod ${ns}/${p.metadata.name}: ${code} ${res.message ?? ''}`;
        still.push(p);
      }
      left = still;
      if (!left.length) break;
      if (Date.now() > deadline) return `cannot evict ${left.length} pod(s) in ${EVICTION_TIMEOUT_MS / 1000} s; last: ${lastError}`;
      await sleep(2000);
    }
    // Evicted: wait until they are gone (their graceful termination), as the drain does.
    for (const p of pods) {
      for (;;) {
        const [code, cur] = await this.api.send('GET', `/api/v1/namespaces/${p.metadata.namespace}/pods/${p.metadata.name}`, undefined);
        if (code === 404 || cur.metadata?.uid !== p.metadata.uid) break;
        if (Date.now() > deadline + EVICTION_TIMEOUT_MS) return `pod ${p.metadata.namespace}/${p.metadata.name} did not go after eviction`;
        await sleep(500);
      }
    }
    return undefined;
  }

  /** kube-system/cluster-autoscaler-status, in the shape cluster-autoscaler writes (a YAML `status`). */
  private async writeStatus(nodes: KObj[], group: NodeGroup, adding: number, candidates: number): Promise<void> {
    const t = new Date().toISOString();
    const members = new Set(group.members);
    const ready = (n: KObj) => (n.status?.conditions ?? []).some((c: KObj) => c.type === 'Ready' && c.status === 'True');
    const counts = (ns: KObj[]) => ({ registered: { total: ns.length, ready: ns.filter(ready).length, notStarted: ns.filter((n) => !ready(n)).length }, longUnregistered: 0, unregistered: Math.max(0, group.members.length - ns.filter((n) => members.has(n.metadata.name)).length) });
    const groupNodes = nodes.filter((n) => members.has(n.metadata.name));
    const scaleUp = adding ? { status: 'InProgress', since: t } : this.scaleUp;
    const scaleDown = { status: candidates ? 'CandidatesPresent' : 'NoCandidates', candidates, lastProbeTime: t };
    const status = {
      time: t,
      autoscalerStatus: 'Running',
      clusterWide: {
        health: { status: this.health.status, nodeCounts: counts(nodes), lastProbeTime: t, lastTransitionTime: this.health.since },
        scaleUp: { status: scaleUp.status, lastProbeTime: t, lastTransitionTime: scaleUp.since },
        scaleDown,
      },
      nodeGroups: [{
        name: group.name,
        health: { status: this.health.status, nodeCounts: counts(groupNodes), cloudProviderTarget: group.members.length + adding, minSize: group.min, maxSize: group.max, lastProbeTime: t, lastTransitionTime: this.health.since },
        scaleUp: { status: scaleUp.status, lastProbeTime: t, lastTransitionTime: scaleUp.since },
        scaleDown,
      }],
    };
    const body = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: STATUS_CONFIGMAP, namespace: 'kube-system', annotations: { 'cluster-autoscaler.kubernetes.io/last-updated': t } }, data: { status: stringify(status) } };
    const [code] = await this.api.send('PUT', `/api/v1/namespaces/kube-system/configmaps/${STATUS_CONFIGMAP}`, body);
    if (code === 404) await this.api.send('POST', '/api/v1/namespaces/kube-system/configmaps', body);
  }
}
