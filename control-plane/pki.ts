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
  nodeToken: string;
  kubeletClientToken: string;
}

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
  for (const f of [caKey, key]) await fs.chmod(f, 0o600);
  return {
    caCertPem: await fs.readFile(ca, 'utf8'),
    serverCertPem: await fs.readFile(crt, 'utf8'),
    serverKeyPem: await fs.readFile(key, 'utf8'),
    adminToken: await token(path.join(dataDir, 'admin.token')),
    nodeToken: await token(path.join(dataDir, 'node.token')),
    kubeletClientToken: await token(path.join(dataDir, 'kubelet-client.token')),
  };
}

/** A kubeconfig for `url` authenticated with `tokenValue` (YAML is a superset of JSON; kubectl reads this). */
export function kubeconfigText(url: string, caCertPem: string, tokenValue: string, user = 'admin'): string {
  const ca = Buffer.from(caCertPem).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: stevedore',
    '  cluster:',
    `    server: ${url}`,
    `    certificate-authority-data: ${ca}`,
    'users:',
    `- name: ${user}`,
    '  user:',
    `    token: ${tokenValue}`,
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
