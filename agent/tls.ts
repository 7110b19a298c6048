import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { execa } from 'execa';
import { UserError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { AgentConfig } from './config.js';

/**
 * A self-signed serving certificate for the node API, made once with openssl and kept in the data
 * dir: what the kubelet does without --tls-cert-file. The control plane trusts only its CA, so
 * with this one `kubectl logs` fails (with a message saying so) until the node gets a real one.
 */
export async function selfSignedNodeCertificate(dir: string, nodeName: string, nodeIP: string): Promise<{ cert: string; key: string }> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const cert = path.join(dir, 'node-api.crt');
  const key = path.join(dir, 'node-api.key');
  const have = await Promise.all([cert, key].map((f) => fs.access(f).then(() => true, () => false)));
  if (!have.every(Boolean)) {
    const result = await execa('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '3650',
      '-subj', `/CN=${nodeName}`, '-addext', `subjectAltName=DNS:${nodeName},DNS:localhost,IP:${nodeIP},IP:127.0.0.1`], { reject: false });
    if (result.exitCode !== 0) throw new UserError(`cannot create the node API certificate: ${result.stderr || result.message}`, { hint: 'is openssl installed (apt-get install openssl)?' });
    await fs.chmod(key, 0o600);
  }
  return { cert: await fs.readFile(cert, 'utf8'), key: await fs.readFile(key, 'utf8') };
}

async function readPem(file: string, flag: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new UserError(`cannot read ${flag} ${file}: ${(err as Error).message}`, { hint: 'issue the node\'s certificates with `stevedore control-plane node-credentials` and pass the files it wrote', cause: err });
  }
}

/** The node API's serving pair and client CA, from the kubelet-style flags. */
export async function nodeApiTls(cfg: AgentConfig, log: Logger): Promise<{ tls: { cert: string; key: string }; clientCa: string | undefined }> {
  let tls: { cert: string; key: string };
  if (cfg.tlsCertFile && cfg.tlsPrivateKeyFile) {
    tls = { cert: await readPem(cfg.tlsCertFile, '--tls-cert-file'), key: await readPem(cfg.tlsPrivateKeyFile, '--tls-private-key-file') };
  } else {
    log.warn('no --tls-cert-file: the node API uses a self-signed certificate, which the control plane refuses (kubectl logs will not work)');
    tls = await selfSignedNodeCertificate(path.join(cfg.dataDir, 'agent'), cfg.nodeName, cfg.nodeIP);
  }
  const clientCa = cfg.clientCaFile ? await readPem(cfg.clientCaFile, '--client-ca-file') : undefined;
  if (!clientCa) log.warn('no --client-ca-file: the node API refuses every request but /healthz (kubectl logs will not work)');
  return { tls, clientCa };
}
