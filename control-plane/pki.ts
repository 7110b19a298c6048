import { execa } from 'execa';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { UserError, errnoCode } from '../common/errors.js';
import { exists } from '../common/fsutil.js';

export interface Credentials {
  caCertPem: string;
  serverCertPem: string;
  serverKeyPem: string;
  adminToken: string;
  /** The control plane's client certificate for node APIs (CN kube-apiserver-kubelet-client). */
  kubeletClientCertPem: string;
  kubeletClientKeyPem: string;
}

/** The identity the control plane presents to node APIs; agents accept only this CN by default. */
export const KUBELET_CLIENT_CN = 'kube-apiserver-kubelet-client';
/** Group and user-name prefix of node identities, as kube-apiserver's Node authorizer expects them. */
export const NODES_GROUP = 'system:nodes';
export const NODE_USER_PREFIX = 'system:node:';
/** Credentials earlier versions wrote; they grant nothing now and are removed at start. */
const RETIRED_TOKEN_FILES = ['node.token', 'kubelet-client.token'];

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await execa('openssl', args, { cwd });
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') throw new UserError('the openssl command is not installed', { hint: 'install it (apt-get install openssl) and start the control plane again', cause: err });
    const stderr = (err as { stderr?: string }).stderr ?? String(err);
    throw new UserError(`openssl ${args[0]} failed while creating the control plane certificates: ${stderr.trim()}`, { hint: `remove ${cwd}/pki and try again`, cause: err });
  }
}

/** Every local IPv4/IPv6 address, so agents in other network namespaces can reach the API by IP. */
function localAddresses(): string[] {
  const out = new Set<string>(['127.0.0.1']);
  for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) out.add(a.address.replace(/%.*$/, ''));
  return [...out];
}

async function token(file: string): Promise<string> {
  if (await exists(file)) return (await fs.readFile(file, 'utf8')).trim();
  const t = randomBytes(32).toString('base64url');
  await fs.writeFile(file, t + '\n', { mode: 0o600, flag: 'wx' });
  return t;
}

/**
 * Load the CA, serving certificate and tokens from dataDir, creating whatever is missing
 * (first start). Keys and tokens are 0600.
 */
export async function ensureCredentials(dataDir: string, hosts: string[]): Promise<Credentials> {
  const pki = path.join(dataDir, 'pki');
  await fs.mkdir(pki, { recursive: true, mode: 0o700 });
  const ca = path.join(pki, 'ca.crt');
  const caKey = path.join(pki, 'ca.key');
  const crt = path.join(pki, 'apiserver.crt');
  const key = path.join(pki, 'apiserver.key');
  if (!(await exists(ca)) || !(await exists(caKey))) {
    await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '3650', '-subj', '/CN=stevedore-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature'], pki);
    await fs.rm(crt, { force: true });
  }
  if (!(await exists(crt)) || !(await exists(key))) {
    const ips = new Set(localAddresses());
    const dns = new Set(['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', os.hostname()]);
    for (const h of hosts) (/^[\d.]+$|:/.test(h) ? ips : dns).add(h);
    const san = [...[...dns].map((d) => `DNS:${d}`), ...[...ips].map((i) => `IP:${i}`)].join(',');
    await fs.writeFile(path.join(pki, 'apiserver.ext'), `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`);
    await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'apiserver.key', '-out', 'apiserver.csr', '-subj', '/CN=kube-apiserver'], pki);
    await openssl(['x509', '-req', '-in', 'apiserver.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'apiserver.crt', '-days', '3650', '-extfile', 'apiserver.ext'], pki);
  }
  const kubeletClient = { cert: path.join(pki, 'apiserver-kubelet-client.crt'), key: path.join(pki, 'apiserver-kubelet-client.key') };
  if (!(await exists(kubeletClient.cert)) || !(await exists(kubeletClient.key))) {
    // No system:masters: this certificate is for node APIs only and has no rights at the API server.
    await issueCertificate(pki, { cn: KUBELET_CLIENT_CN, usage: 'clientAuth' }, kubeletClient);
  }
  for (const f of [caKey, key, kubeletClient.key]) await fs.chmod(f, 0o600);
  for (const f of RETIRED_TOKEN_FILES) await fs.rm(path.join(dataDir, f), { force: true });
  return {
    caCertPem: await fs.readFile(ca, 'utf8'),
    serverCertPem: await fs.readFile(crt, 'utf8'),
    serverKeyPem: await fs.readFile(key, 'utf8'),
    adminToken: await token(path.join(dataDir, 'admin.token')),
    kubeletClientCertPem: await fs.readFile(kubeletClient.cert, 'utf8'),
    kubeletClientKeyPem: await fs.readFile(kubeletClient.key, 'utf8'),
  };
}

export interface CertificateRequest {
  cn: string;
  /** Organisations: kube-apiserver reads them as the user's groups. */
  groups?: string[];
  usage: 'clientAuth' | 'serverAuth';
  /** Subject alternative names of a serving certificate: IPs and DNS names. */
  sans?: string[];
  days?: number;
}

const isIp = (h: string) => /^[\d.]+$/.test(h) || h.includes(':');

/** openssl's -subj syntax escapes '/', '+', '=' and '\\' inside values. */
const subjValue = (v: string) => v.replace(/[\\/+=]/g, (c) => `\\${c}`);

/**
 * Sign a new key pair with the cluster CA in pkiDir (EC P-256: fast to make, which matters
 * when every node gets two). Serial numbers are random so concurrent issuers cannot collide.
 */
export async function issueCertificate(pkiDir: string, req: CertificateRequest, out: { cert: string; key: string }): Promise<void> {
  if (!(await exists(path.join(pkiDir, 'ca.crt'))) || !(await exists(path.join(pkiDir, 'ca.key')))) {
    throw new UserError(`no cluster CA in ${pkiDir}`, { hint: 'start the control plane once with this --data-dir (it creates the CA), then issue credentials' });
  }
  const work = await fs.mkdtemp(path.join(pkiDir, '.issue-'));
  try {
    const subj = `/CN=${subjValue(req.cn)}${(req.groups ?? []).map((g) => `/O=${subjValue(g)}`).join('')}`;
    const ext = ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', `extendedKeyUsage=${req.usage}`];
    if (req.sans?.length) ext.push(`subjectAltName=${req.sans.map((h) => (isIp(h) ? `IP:${h}` : `DNS:${h}`)).join(',')}`);
    await fs.writeFile(path.join(work, 'cert.ext'), ext.join('\n') + '\n');
    await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'cert.key', '-out', 'cert.csr', '-subj', subj], work);
    await openssl(['x509', '-req', '-in', 'cert.csr', '-CA', '../ca.crt', '-CAkey', '../ca.key', '-set_serial', `0x${randomBytes(16).toString('hex')}`, '-out', 'cert.crt', '-days', String(req.days ?? 3650), '-extfile', 'cert.ext'], work);
    await fs.mkdir(path.dirname(out.cert), { recursive: true, mode: 0o700 });
    await fs.mkdir(path.dirname(out.key), { recursive: true, mode: 0o700 });
    await fs.copyFile(path.join(work, 'cert.key'), `${out.key}.tmp`);
    await fs.chmod(`${out.key}.tmp`, 0o600);
    await fs.rename(`${out.key}.tmp`, out.key);
    await fs.copyFile(path.join(work, 'cert.crt'), out.cert);
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

export interface NodeCredentials {
  caCertPem: string;
  /** Client certificate: CN system:node:NAME, O system:nodes. */
  clientCertPem: string;
  clientKeyPem: string;
  /** Serving certificate of the node API: SANs = the node's addresses and name. */
  servingCertPem: string;
  servingKeyPem: string;
}

const NODE_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/**
 * A node's identity from the cluster CA in the control plane's data dir: what kubeadm join and
 * the kubelet's TLS bootstrap end with (a client certificate for the API server and a serving
 * certificate for the node API).
 */
export async function issueNodeCredentials(controlPlaneDataDir: string, nodeName: string, nodeAddresses: string[]): Promise<NodeCredentials> {
  if (!NODE_NAME.test(nodeName)) throw new UserError(`node name "${nodeName}" is not a valid DNS subdomain`, { hint: 'use lower-case letters, digits, "-" and "."' });
  if (!nodeAddresses.length) throw new UserError(`no address for node ${nodeName}`, { hint: 'pass the address the control plane reaches the node API at (--node-ip)' });
  const pki = path.join(path.resolve(controlPlaneDataDir), 'pki');
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'stevedore-node-creds-'));
  try {
    const client = { cert: path.join(work, 'client.crt'), key: path.join(work, 'client.key') };
    const serving = { cert: path.join(work, 'serving.crt'), key: path.join(work, 'serving.key') };
    await issueCertificate(pki, { cn: `${NODE_USER_PREFIX}${nodeName}`, groups: [NODES_GROUP], usage: 'clientAuth' }, client);
    await issueCertificate(pki, { cn: `${NODE_USER_PREFIX}${nodeName}`, groups: [NODES_GROUP], usage: 'serverAuth', sans: [...new Set([...nodeAddresses, nodeName])] }, serving);
    const read = (f: string) => fs.readFile(f, 'utf8');
    return { caCertPem: await read(path.join(pki, 'ca.crt')), clientCertPem: await read(client.cert), clientKeyPem: await read(client.key), servingCertPem: await read(serving.cert), servingKeyPem: await read(serving.key) };
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

/** Where writeNodeCredentials puts each file under its output directory. */
export const nodeCredentialFiles = (outDir: string) => ({
  kubeconfig: path.join(outDir, 'kubeconfig'),
  caCert: path.join(outDir, 'ca.crt'),
  servingCert: path.join(outDir, 'kubelet.crt'),
  servingKey: path.join(outDir, 'kubelet.key'),
});

/** Write a node's kubeconfig (client certificate embedded), the CA and the node API's serving pair (keys 0600). */
export async function writeNodeCredentials(creds: NodeCredentials, serverUrl: string, files: { kubeconfig: string; caCert: string; servingCert: string; servingKey: string }, nodeName: string, controlPlanes?: string[]): Promise<void> {
  await writeKubeconfig(files.kubeconfig, clientCertKubeconfigText(serverUrl, creds.caCertPem, creds.clientCertPem, creds.clientKeyPem, `${NODE_USER_PREFIX}${nodeName}`, controlPlanes));
  for (const [file, text, mode] of [[files.caCert, creds.caCertPem, 0o644], [files.servingCert, creds.servingCertPem, 0o644], [files.servingKey, creds.servingKeyPem, 0o600]] as const) {
    await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.tmp-${process.pid}`;
    await fs.writeFile(tmp, text, { mode });
    await fs.rename(tmp, file);
  }
}

/** A kubeconfig that authenticates with an embedded client certificate and key. */
export function clientCertKubeconfigText(url: string, caCertPem: string, certPem: string, keyPem: string, user: string, controlPlanes?: string[]): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  return kubeconfigLines(url, caCertPem, user, [`    client-certificate-data: ${b64(certPem)}`, `    client-key-data: ${b64(keyPem)}`], controlPlanes);
}

/**
 * The kubeconfig cluster extension that lists every control plane's URL (`up --control-planes N`):
 * the agent's API client dials them in order when one does not answer (agent/kube.ts); kubectl
 * ignores it (a kubeconfig extension, as minikube writes its own).
 */
export const CONTROL_PLANES_EXTENSION = 'stevedore.io/control-planes';

/** A kubeconfig for `url` authenticated with `tokenValue` (YAML is a superset of JSON; kubectl reads this). */
export function kubeconfigText(url: string, caCertPem: string, tokenValue: string, user = 'admin', controlPlanes?: string[]): string {
  return kubeconfigLines(url, caCertPem, user, [`    token: ${tokenValue}`], controlPlanes);
}

function kubeconfigLines(url: string, caCertPem: string, user: string, credentialLines: string[], controlPlanes?: string[]): string {
  const ca = Buffer.from(caCertPem).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: stevedore',
    '  cluster:',
    `    server: ${url}`,
    `    certificate-authority-data: ${ca}`,
    ...(controlPlanes?.length ? ['    extensions:', `    - name: ${CONTROL_PLANES_EXTENSION}`, '      extension:', `        servers: ${JSON.stringify(controlPlanes)}`] : []),
    'users:',
    `- name: ${user}`,
    '  user:',
    ...credentialLines,
    'contexts:',
    '- name: stevedore',
    '  context:',
    '    cluster: stevedore',
    `    user: ${user}`,
    '    namespace: default',
    'current-context: stevedore',
    '',
  ].join('\n');
}

export async function writeKubeconfig(file: string, text: string): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await fs.writeFile(tmp, text, { mode: 0o600 });
  await fs.rename(tmp, file);
}

/**
 * A user's kubeconfig (`stevedore kubeconfig --user NAME --group G…`): a client certificate from
 * the cluster CA (CN = NAME, O = each group, extended key usage clientAuth), for the server and CA
 * of the admin kubeconfig at `adminKubeconfigPath`. `pkiDir` holds the CA (`ca.crt`, `ca.key`).
 * Nothing is written: the caller prints it.
 */
export async function userKubeconfig(pkiDir: string, adminKubeconfigPath: string, user: string, groups: string[], days = 365): Promise<string> {
  if (!user.trim()) throw new UserError('the user name is empty', { hint: 'pass --user NAME (the certificate\'s CN: the name RBAC bindings refer to)' });
  if (user.startsWith(NODE_USER_PREFIX)) throw new UserError(`"${user}" is a node's name`, { hint: 'issue node identities with `stevedore control-plane node-credentials`' });
  let server = '';
  try {
    const { parse } = await import('yaml');
    const cfg = parse(await fs.readFile(adminKubeconfigPath, 'utf8'));
    server = String(cfg?.clusters?.[0]?.cluster?.server ?? '');
  } catch (err) {
    throw new UserError(`cannot read the cluster's kubeconfig ${adminKubeconfigPath}: ${(err as Error).message}`, { hint: 'start the cluster first (stevedore up) or pass the --data-dir it uses', cause: err });
  }
  if (!server) throw new UserError(`${adminKubeconfigPath} names no server`, { hint: 'start the control plane again: it rewrites its kubeconfig' });
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'stevedore-user-'));
  try {
    const files = { cert: path.join(work, 'user.crt'), key: path.join(work, 'user.key') };
    await issueCertificate(pkiDir, { cn: user, groups, usage: 'clientAuth', days }, files);
    const [caCertPem, certPem, keyPem] = await Promise.all([fs.readFile(path.join(pkiDir, 'ca.crt'), 'utf8'), fs.readFile(files.cert, 'utf8'), fs.readFile(files.key, 'utf8')]);
    return clientCertKubeconfigText(server, caCertPem, certPem, keyPem, user);
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}
