import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { execa } from 'execa';
import { UserError } from '../common/errors.js';

/** A self-signed serving certificate for the node API, made once with openssl and kept in the data dir. */
export async function nodeCertificate(dir: string, nodeName: string, nodeIP: string): Promise<{ cert: string; key: string }> {
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
