/**
 * Registry credentials: docker-style config.json (`auths.<host>.auth` =
 * base64 `user:pass`, or `username`/`password` fields), the legacy
 * `.dockercfg` shape (host → entry, no `auths`), and Kubernetes
 * imagePullSecrets (whose `.dockerconfigjson` / `.dockercfg` contents are one
 * of those). The result is a keyring keyed by `host` or `host/path-prefix`;
 * lookups take the longest matching key, as the kubelet's keyring does.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { InvalidInput, errnoCode } from '../common/errors.js';
import { DOCKER_HUB_DOMAIN } from './image-reference.js';

export interface RegistryCredentials {
  username: string;
  password: string;
}

/** Keys are `host[:port]` or `host[:port]/path/prefix`; docker.io aliases are folded to `docker.io`. */
export type RegistryKeyring = Record<string, RegistryCredentials>;

interface DockerAuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

/** `https://index.docker.io/v1/` → `docker.io`; `registry.example.com:5000/team` stays. */
export function normaliseAuthKey(key: string): string {
  let k = key.trim().replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '');
  const slash = k.indexOf('/');
  let host = slash >= 0 ? k.slice(0, slash) : k;
  let rest = slash >= 0 ? k.slice(slash) : '';
  const lower = host.toLowerCase();
  if (lower === 'index.docker.io' || lower === 'registry-1.docker.io' || lower === 'registry.hub.docker.com' || lower === 'docker.io') {
    host = DOCKER_HUB_DOMAIN;
    if (rest === '/v1' || rest === '/v2') rest = '';
  }
  k = host + rest;
  return k;
}

function entryCredentials(key: string, e: DockerAuthEntry, where: string): RegistryCredentials | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  if (typeof e.username === 'string' && typeof e.password === 'string' && e.username !== '') return { username: e.username, password: e.password };
  if (typeof e.auth === 'string' && e.auth !== '') {
    const decoded = Buffer.from(e.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) throw new InvalidInput(`${where}: the auth entry for ${key} is not base64 of user:password`);
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  return undefined; // identitytoken-only or credential-helper entries: not supported
}

/** Parse one docker config document (config.json, `.dockerconfigjson` or legacy `.dockercfg` contents). */
export function parseDockerConfig(doc: string | object, where = 'docker config'): RegistryKeyring {
  let obj: unknown = doc;
  if (typeof doc === 'string') {
    try {
      obj = JSON.parse(doc);
    } catch {
      // Not JSON.parse's message: it quotes the input, which holds passwords.
      throw new InvalidInput(`${where} is not valid JSON`);
    }
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new InvalidInput(`${where} is not a JSON object`);
  const record = obj as Record<string, unknown>;
  const auths = (typeof record.auths === 'object' && record.auths !== null ? record.auths : 'auths' in record ? {} : record) as Record<string, DockerAuthEntry>;
  const ring: RegistryKeyring = {};
  for (const [key, entry] of Object.entries(auths)) {
    const creds = entryCredentials(key, entry, where);
    if (creds) ring[normaliseAuthKey(key)] = creds;
  }
  return ring;
}

/**
 * Kubernetes imagePullSecrets: pass each secret's decoded `.dockerconfigjson`
 * (or `.dockercfg`) contents, in the pod's order. Earlier secrets win for the
 * same key, as the kubelet tries them in order.
 */
export function keyringFromPullSecrets(contents: Array<string | object>): RegistryKeyring {
  const ring: RegistryKeyring = {};
  contents.forEach((c, i) => {
    for (const [k, v] of Object.entries(parseDockerConfig(c, `imagePullSecrets[${i}]`))) if (!(k in ring)) ring[k] = v;
  });
  return ring;
}

/** Merge keyrings; earlier ones win. */
export function mergeKeyrings(...rings: Array<RegistryKeyring | undefined>): RegistryKeyring {
  const out: RegistryKeyring = {};
  for (const r of rings) for (const [k, v] of Object.entries(r ?? {})) if (!(normaliseAuthKey(k) in out)) out[normaliseAuthKey(k)] = v;
  return out;
}

/** Credentials for `domain/repository`: the longest key that is the host or a path prefix of it. */
export function lookupCredentials(ring: RegistryKeyring | undefined, domain: string, repository: string): RegistryCredentials | undefined {
  if (!ring) return undefined;
  const full = `${normaliseAuthKey(domain)}/${repository}`;
  let best: { len: number; creds: RegistryCredentials } | undefined;
  for (const [rawKey, creds] of Object.entries(ring)) {
    const key = normaliseAuthKey(rawKey);
    if (full === key || full.startsWith(`${key}/`)) {
      if (!best || key.length > best.len) best = { len: key.length, creds };
    }
  }
  return best?.creds;
}

/**
 * Read a docker-style auth file. Without an explicit path: `$REGISTRY_AUTH_FILE`,
 * then `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`; a missing
 * default file is an empty keyring, a missing explicit one an error.
 */
export async function readAuthFile(file?: string): Promise<RegistryKeyring> {
  const explicit = file ?? process.env.REGISTRY_AUTH_FILE;
  const candidates = explicit
    ? [explicit]
    : [path.join(process.env.DOCKER_CONFIG ?? path.join(os.homedir(), '.docker'), 'config.json')];
  for (const f of candidates) {
    let text: string;
    try {
      text = await fs.readFile(f, 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' && !explicit) continue;
      throw new InvalidInput(`cannot read registry auth file ${f}: ${(err as Error).message}`);
    }
    return parseDockerConfig(text, f);
  }
  return {};
}
