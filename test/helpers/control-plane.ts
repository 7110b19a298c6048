import * as fs from 'node:fs/promises';
import * as https from 'node:https';
import * as path from 'node:path';
import { execa } from 'execa';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../../control-plane/server.js';
import { issueNodeCredentials, type NodeCredentials } from '../../control-plane/pki.js';

/** A TLS client identity for TestCP.api: a certificate and its key (PEM). */
export interface ClientCert { cert: string; key: string }

export const KUBECTL = '/usr/bin/kubectl';

export interface TestCP {
  cp: ControlPlane;
  dataDir: string;
  kubeconfig: string;
  kubectl(args: string[], input?: string): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  /** kubectl that must succeed; its stdout. */
  k(args: string[], input?: string): Promise<string>;
  /** A request with the admin token, or another token, or as the holder of a client certificate (then no token is sent). */
  api(method: string, urlPath: string, body?: unknown, opts?: { token?: string; cert?: ClientCert; contentType?: string }): Promise<{ status: number; body: any; text: string }>;
  /** Issue node NAME's credentials from this control plane's CA (cached per name). */
  nodeCredentials(name: string, addresses?: string[]): Promise<NodeCredentials>;
  /** Node NAME's client certificate, for `api(…, { cert })`. */
  nodeCert(name: string): Promise<ClientCert>;
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function startTestControlPlane(extra: Partial<ControlPlaneOptions> = {}): Promise<TestCP> {
  const dataDir = await fs.mkdtemp('/var/tmp/stevedore-cp-test-');
  const kubeconfig = path.join(dataDir, 'kubeconfig');
  // STEVEDORE_TEST_ETCD=http://127.0.0.1:PORT runs the same tests on etcd (each control plane under a prefix of its own).
  const onEtcd = process.env.STEVEDORE_TEST_ETCD ? { store: `etcd:${process.env.STEVEDORE_TEST_ETCD}`, etcdPrefix: `/${path.basename(dataDir)}` } : {};
  const opts: ControlPlaneOptions = { dataDir, port: 0, kubeconfigPath: kubeconfig, logLevel: 'silent', ...onEtcd, ...extra };
  const issued = new Map<string, Promise<NodeCredentials>>();
  const t: TestCP = {
    cp: await startControlPlane(opts),
    dataDir,
    kubeconfig,
    async kubectl(args, input) {
      const r = await execa(KUBECTL, args, { env: { KUBECONFIG: kubeconfig, HOME: dataDir }, reject: false, input, timeout: 60_000 });
      return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
    },
    async k(args, input) {
      const r = await t.kubectl(args, input);
      if (r.exitCode !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr}`);
      return r.stdout;
    },
    api(method, urlPath, body, o = {}) {
      return new Promise((resolve, reject) => {
        const u = new URL(urlPath, t.cp.url);
        const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
        const auth: Record<string, string> = o.cert ? {} : { Authorization: `Bearer ${o.token ?? t.cp.adminToken}` };
        const req = https.request(u, { method, ca: t.cp.caCertPem, ...(o.cert ? { cert: o.cert.cert, key: o.cert.key } : {}), agent: false, headers: { ...auth, Accept: 'application/json', ...(data !== undefined ? { 'Content-Type': o.contentType ?? 'application/json', 'Content-Length': String(Buffer.byteLength(data)) } : {}) } }, (res) => {
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
    nodeCredentials(name, addresses = ['127.0.0.1']) {
      const key = `${name} ${addresses.join(',')}`;
      if (!issued.has(key)) issued.set(key, issueNodeCredentials(dataDir, name, addresses));
      return issued.get(key)!;
    },
    async nodeCert(name) {
      const c = await t.nodeCredentials(name);
      return { cert: c.clientCertPem, key: c.clientKeyPem };
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

/** Register a simulated node the way an agent does, with the node's own certificate: Node (Ready, addresses, allocatable) + Lease. */
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
  const cert = await t.nodeCert(name);
  const r = await t.api('POST', '/api/v1/nodes', node, { cert });
  if (r.status !== 201) throw new Error(`registering node ${name}: ${r.status} ${r.text}`);
  const lease = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace: 'kube-node-lease' }, spec: { holderIdentity: name, leaseDurationSeconds: 40, renewTime: new Date().toISOString().replace('Z', '000Z') } };
  const l = await t.api('POST', '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases', lease, { cert });
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
