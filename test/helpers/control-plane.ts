import * as fs from 'node:fs/promises';
import * as https from 'node:https';
import * as path from 'node:path';
import { execa } from 'execa';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../../control-plane/server.js';

export const KUBECTL = '/usr/bin/kubectl';

export interface TestCP {
  cp: ControlPlane;
  dataDir: string;
  kubeconfig: string;
  kubectl(args: string[], input?: string): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  /** A request as a node agent makes it (node token unless another is given). */
  api(method: string, urlPath: string, body?: unknown, opts?: { token?: string; contentType?: string }): Promise<{ status: number; body: any; text: string }>;
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function startTestControlPlane(extra: Partial<ControlPlaneOptions> = {}): Promise<TestCP> {
  const dataDir = await fs.mkdtemp('/var/tmp/stevedore-cp-test-');
  const kubeconfig = path.join(dataDir, 'kubeconfig');
  const opts: ControlPlaneOptions = { dataDir, port: 0, kubeconfigPath: kubeconfig, logLevel: 'silent', ...extra };
  const t: TestCP = {
    cp: await startControlPlane(opts),
    dataDir,
    kubeconfig,
    async kubectl(args, input) {
      const r = await execa(KUBECTL, args, { env: { KUBECONFIG: kubeconfig, HOME: dataDir }, reject: false, input, timeout: 60_000 });
      return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
    },
    api(method, urlPath, body, o = {}) {
      return new Promise((resolve, reject) => {
        const u = new URL(urlPath, t.cp.url);
        const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
        const req = https.request(u, { method, ca: t.cp.caCertPem, headers: { Authorization: `Bearer ${o.token ?? t.cp.nodeToken}`, Accept: 'application/json', ...(data !== undefined ? { 'Content-Type': o.contentType ?? 'application/json', 'Content-Length': String(Buffer.byteLength(data)) } : {}) } }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d) => (text += d));
          res.on('end', () => {
            let parsed: any;
            try { parsed = JSON.parse(text); } catch { parsed = undefined; }
            resolve({ status: res.statusCode ?? 0, body: parsed, text });
          });
        });
        req.on('error', reject);
        req.end(data);
      });
    },
    async restart() {
      await t.cp.close();
      const port = Number(new URL(t.cp.url).port);
      t.cp = await startControlPlane({ ...opts, port });
    },
    async close() {
      await t.cp.close();
      await fs.rm(dataDir, { recursive: true, force: true });
    },
  };
  return t;
}

/** Register a simulated node the way an agent does: Node (Ready, addresses, allocatable) + Lease. */
export async function registerNode(t: TestCP, name: string, o: { cpu?: string; memory?: string; labels?: Record<string, string>; kubeletPort?: number; ip?: string } = {}): Promise<void> {
  const ts = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const node = {
    apiVersion: 'v1', kind: 'Node',
    metadata: { name, labels: { 'kubernetes.io/hostname': name, ...(o.labels ?? {}) } },
    status: {
      capacity: { cpu: o.cpu ?? '2', memory: o.memory ?? '4Gi', pods: '110' },
      allocatable: { cpu: o.cpu ?? '2', memory: o.memory ?? '4Gi', pods: '110' },
      conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'stevedore agent is posting ready status', lastHeartbeatTime: ts, lastTransitionTime: ts }],
      addresses: [{ type: 'InternalIP', address: o.ip ?? '127.0.0.1' }, { type: 'Hostname', address: name }],
      daemonEndpoints: { kubeletEndpoint: { Port: o.kubeletPort ?? 10250 } },
      nodeInfo: { kubeletVersion: 'v1.32.0-stevedore', containerRuntimeVersion: 'rkt://1.30.0', osImage: 'Debian', kernelVersion: '6.1', architecture: 'amd64', operatingSystem: 'linux', machineID: '', systemUUID: '', bootID: '', kubeProxyVersion: '' },
    },
  };
  const r = await t.api('POST', '/api/v1/nodes', node);
  if (r.status !== 201) throw new Error(`registering node ${name}: ${r.status} ${r.text}`);
  const lease = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace: 'kube-node-lease' }, spec: { holderIdentity: name, leaseDurationSeconds: 40, renewTime: new Date().toISOString().replace('Z', '000Z') } };
  const l = await t.api('POST', '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases', lease);
  if (l.status !== 201) throw new Error(`creating lease for ${name}: ${l.status} ${l.text}`);
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
