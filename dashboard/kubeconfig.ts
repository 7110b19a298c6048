import * as fs from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { UserError } from '../common/errors.js';

/** What the dashboard needs of a kubeconfig: where the API is and the credentials kubectl would send. */
export interface ApiCredentials {
  server: string;
  caPem?: string;
  token?: string;
  clientCertPem?: string;
  clientKeyPem?: string;
  user: string;
}

const b64 = (s: string) => Buffer.from(s, 'base64').toString('utf8');

async function dataOrFile(data: unknown, file: unknown): Promise<string | undefined> {
  if (typeof data === 'string' && data) return b64(data);
  if (typeof file === 'string' && file) return fs.readFile(file, 'utf8');
  return undefined;
}

/** The current context's cluster and user, as kubectl resolves them (token or client certificate). */
export async function readKubeconfig(file: string): Promise<ApiCredentials> {
  let doc: any;
  try {
    doc = parseYaml(await fs.readFile(file, 'utf8'));
  } catch (err) {
    throw new UserError(`cannot read the kubeconfig ${file}: ${(err as Error).message}`, { hint: 'run `stevedore up` first, or pass --kubeconfig FILE (the one kubectl uses)' });
  }
  const contextName: string | undefined = doc?.['current-context'];
  const context = (doc?.contexts ?? []).find((c: any) => c?.name === contextName)?.context ?? doc?.contexts?.[0]?.context;
  const cluster = (doc?.clusters ?? []).find((c: any) => c?.name === context?.cluster)?.cluster;
  const userEntry = (doc?.users ?? []).find((u: any) => u?.name === context?.user);
  if (!cluster?.server) throw new UserError(`the kubeconfig ${file} names no cluster server for its current context`, { hint: 'check it with `kubectl config view`' });
  if (!/^https:\/\//.test(String(cluster.server))) throw new UserError(`the kubeconfig ${file} points at ${cluster.server}, not an https:// API server`, { hint: 'the dashboard talks to the control plane over TLS, as kubectl does with it' });
  const user = userEntry?.user ?? {};
  const creds: ApiCredentials = {
    server: String(cluster.server).replace(/\/+$/, ''),
    caPem: await dataOrFile(cluster['certificate-authority-data'], cluster['certificate-authority']),
    token: typeof user.token === 'string' ? user.token : undefined,
    clientCertPem: await dataOrFile(user['client-certificate-data'], user['client-certificate']),
    clientKeyPem: await dataOrFile(user['client-key-data'], user['client-key']),
    user: String(userEntry?.name ?? context?.user ?? 'unknown'),
  };
  if (!creds.token && !(creds.clientCertPem && creds.clientKeyPem)) {
    throw new UserError(`the kubeconfig ${file} has neither a token nor a client certificate for user "${creds.user}"`, { hint: 'the dashboard acts with the credentials kubectl uses; exec plugins and auth providers are not supported' });
  }
  return creds;
}
