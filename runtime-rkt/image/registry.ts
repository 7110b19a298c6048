/**
 * A client for the OCI distribution API (registry v2), over node:http(s):
 *  - ping `/v2/` once per registry to learn its auth challenge;
 *  - anonymous, Basic, and Bearer-token auth (the WWW-Authenticate
 *    `Bearer realm=…,service=…,scope=…` flow Docker Hub uses), tokens cached
 *    per scope until they expire;
 *  - manifests fetched with every OCI and Docker v2 manifest and index/list
 *    type in Accept (registries refuse or down-convert otherwise), size-capped,
 *    digest-verified (against the reference's digest and the registry's
 *    Docker-Content-Digest);
 *  - blobs streamed to a file and hashed on the way (memory flat in blob
 *    size); an interrupted download resumes with `Range` (or restarts when
 *    the server ignores it), 5xx and network errors are retried with backoff;
 *  - plain HTTP only for loopback registries and hosts the operator lists as
 *    insecure (those also get TLS without certificate checks, tried first);
 *  - errors carry the registry's own `errors[].message`.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import * as fs from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { UserError } from '../../common/errors.js';
import { lookupCredentials, type RegistryCredentials, type RegistryKeyring } from '../../runtime-api/registry-auth.js';
import { isLoopbackHost, type ImageReference } from '../../runtime-api/image-reference.js';
import { MT, WANT_PLATFORM, type Descriptor } from './plan.js';
import { StreamSha256 } from './sha256.js';

export const MANIFEST_ACCEPT = [MT.ociManifest, MT.dockerManifest, MT.ociIndex, MT.dockerList];
export const DEFAULT_MAX_MANIFEST_BYTES = 4 << 20;
const MAX_ERROR_BODY = 64 << 10;
const MAX_TOKEN_BODY = 1 << 20;
const MAX_REDIRECTS = 5;

export interface RegistryClientOptions {
  /** Credentials by registry host (or host/path prefix). */
  credentials?: RegistryKeyring;
  /** Hosts (`host[:port]`) that may be reached over plain HTTP or TLS without verification. Loopback always may. */
  insecureRegistries?: string[];
  /** Manifests and indexes larger than this are refused. Default 4 MiB. */
  maxManifestBytes?: number;
  /** Attempts per request for network errors, 5xx, 429 and truncated bodies. Default 4. */
  attempts?: number;
  /** First retry delay, doubled each time. Default 500 ms. */
  retryDelayMs?: number;
  /** Socket idle timeout. Default 60 s. */
  timeoutMs?: number;
  userAgent?: string;
}

/** A registry said no, or could not be reached. `message` is ready for a pod's status. */
export class RegistryError extends UserError {
  readonly status: number | undefined;
  /** The registry's error code (`MANIFEST_UNKNOWN`, `UNAUTHORIZED`, `DENIED`…), if it sent one. */
  readonly code: string | undefined;
  /** The registry's own message(s), joined. */
  readonly registryMessage: string | undefined;
  /** Worth another attempt (network error, 5xx, 429, truncated body). */
  readonly retryable: boolean;
  constructor(message: string, opts: { status?: number; code?: string; registryMessage?: string; retryable?: boolean; hint?: string; cause?: unknown } = {}) {
    super(message, { hint: opts.hint, cause: opts.cause, exitCode: 1 });
    this.name = 'RegistryError';
    this.status = opts.status;
    this.code = opts.code;
    this.registryMessage = opts.registryMessage;
    this.retryable = opts.retryable ?? false;
  }
}

export interface FetchedManifest {
  digest: string;
  mediaType: string;
  body: Buffer;
  json: ManifestJson;
}

export interface ManifestJson {
  schemaVersion?: number;
  mediaType?: string;
  config?: Descriptor;
  layers?: Descriptor[];
  manifests?: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ResolvedImage {
  ref: ImageReference;
  /** The image manifest (platform-specific). */
  manifest: FetchedManifest;
  /** The index/list the reference pointed at, when it was multi-arch. */
  index?: FetchedManifest;
}

type Challenge =
  | { scheme: 'none' }
  | { scheme: 'basic' }
  | { scheme: 'bearer'; realm: string; service: string | undefined };

interface HostState {
  base: string; // http://host or https://host
  insecureTls: boolean;
  challenge: Challenge;
  tokens: Map<string, { token: string; expires: number }>;
}

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
  /** Who answered: after redirects, the last hop (blob storage, say), not the registry. */
  url: URL;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Nobody is there (refused, no such host, no route): retrying within one pull
 * only delays the answer; the pod-level back-off (ImagePullBackOff) retries.
 */
function isUnreachable(err: unknown): boolean {
  return ['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH'].includes((err as { code?: string }).code ?? '');
}

function isTlsMismatch(err: unknown): boolean {
  const code = (err as { code?: string }).code ?? '';
  const msg = (err as Error).message ?? '';
  return code === 'EPROTO' || code.startsWith('ERR_SSL') || code === 'ECONNRESET' || /wrong version number|ssl/i.test(msg);
}

/** Parse `Bearer realm="…",service="…",scope="…"` / `Basic realm="…"`. */
export function parseChallenge(header: string | string[] | undefined): { scheme: string; params: Record<string, string> } | undefined {
  const h = Array.isArray(header) ? header.find((v) => /^bearer/i.test(v)) ?? header[0] : header;
  if (!h) return undefined;
  const m = /^\s*(\S+)\s*(.*)$/.exec(h);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (let p = re.exec(m[2] ?? ''); p; p = re.exec(m[2] ?? '')) params[p[1]!.toLowerCase()] = (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1');
  return { scheme: m[1]!.toLowerCase(), params };
}

async function readCapped(res: http.IncomingMessage, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > max) {
      res.destroy();
      break;
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

/** The registry's JSON `errors[]` (code, message) from an error response, else a trimmed text body. */
async function registryErrorDetail(res: RawResponse): Promise<{ code?: string; message?: string }> {
  let text = '';
  try {
    text = (await readCapped(res.body, MAX_ERROR_BODY)).toString('utf8');
  } catch {
    return {};
  }
  try {
    const j = JSON.parse(text) as { errors?: Array<{ code?: string; message?: string; detail?: unknown }>; error?: string; details?: string };
    if (Array.isArray(j.errors) && j.errors.length > 0) {
      const first = j.errors[0]!;
      const message = j.errors.map((e) => e.message ?? e.code ?? '').filter(Boolean).join('; ');
      return { ...(first.code ? { code: first.code } : {}), ...(message ? { message } : {}) };
    }
    if (typeof j.error === 'string') return { message: j.details ? `${j.error}: ${j.details}` : j.error };
  } catch {
    /* not JSON */
  }
  const trimmed = text.replace(/\s+/g, ' ').trim().slice(0, 300);
  return trimmed ? { message: trimmed } : {};
}

export class RegistryClient {
  private readonly opts: Required<Omit<RegistryClientOptions, 'credentials' | 'insecureRegistries'>> & { credentials: RegistryKeyring; insecure: Set<string> };
  private readonly hosts = new Map<string, Promise<HostState>>();
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  private readonly httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 8 });
  private readonly insecureHttpsAgent = new https.Agent({ keepAlive: true, maxSockets: 8, rejectUnauthorized: false });

  constructor(opts: RegistryClientOptions = {}) {
    this.opts = {
      credentials: opts.credentials ?? {},
      insecure: new Set((opts.insecureRegistries ?? []).map((h) => h.trim().replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '').toLowerCase())),
      maxManifestBytes: opts.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES,
      attempts: Math.max(1, opts.attempts ?? 4),
      retryDelayMs: opts.retryDelayMs ?? 500,
      timeoutMs: opts.timeoutMs ?? 60_000,
      userAgent: opts.userAgent ?? 'stevedore/0.1',
    };
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
    this.insecureHttpsAgent.destroy();
  }

  private isInsecure(host: string): boolean {
    return isLoopbackHost(host) || this.opts.insecure.has(host.toLowerCase());
  }

  // ---- low-level HTTP --------------------------------------------------------

  private rawRequest(url: URL, method: string, headers: Record<string, string>, insecureTls: boolean): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      const isHttps = url.protocol === 'https:';
      if (!isHttps && url.protocol !== 'http:') {
        reject(new RegistryError(`unsupported URL scheme in ${url.href}`));
        return;
      }
      const mod = isHttps ? https : http;
      const agent = isHttps ? (insecureTls ? this.insecureHttpsAgent : this.httpsAgent) : this.httpAgent;
      const req = mod.request(url, { method, headers: { 'user-agent': this.opts.userAgent, ...headers }, agent }, (res) => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res, url });
      });
      req.setTimeout(this.opts.timeoutMs, () => req.destroy(Object.assign(new Error(`no answer from ${url.host} in ${this.opts.timeoutMs} ms`), { code: 'ETIMEDOUT' })));
      req.on('error', reject);
      req.end();
    });
  }

  /**
   * Follow redirects (blob storage backends). Authorization goes to the origin
   * (scheme, host and port) it was made for and nowhere else: it is dropped at
   * the first hop that leaves that origin and never sent again on this chain
   * (as Go's net/http does for Docker and containerd).
   */
  private async requestFollow(url: URL, method: string, headers: Record<string, string>, insecureTls: boolean): Promise<RawResponse> {
    let current = url;
    let hdrs = headers;
    for (let hop = 0; ; hop++) {
      const res = await this.rawRequest(current, method, hdrs, insecureTls && current.host === url.host);
      if (![301, 302, 303, 307, 308].includes(res.status) || !res.headers.location) return res;
      res.body.resume();
      if (hop >= MAX_REDIRECTS) throw new RegistryError(`too many redirects fetching ${url.href}`);
      const next = new URL(res.headers.location, current);
      if (next.protocol === 'http:' && !this.isInsecure(next.host)) {
        throw new RegistryError(`registry redirected ${url.href} to plain-HTTP ${next.host}, which is not an insecure registry`);
      }
      if (next.origin !== url.origin) {
        const { authorization: _drop, ...rest } = hdrs;
        void _drop;
        hdrs = rest;
      }
      current = next;
    }
  }

  // ---- hosts and auth ------------------------------------------------------

  private host(apiHost: string): Promise<HostState> {
    let p = this.hosts.get(apiHost);
    if (!p) {
      p = this.ping(apiHost);
      p.catch(() => this.hosts.delete(apiHost));
      this.hosts.set(apiHost, p);
    }
    return p;
  }

  /** GET /v2/ to learn the scheme (for insecure hosts) and the auth challenge. */
  private async ping(apiHost: string): Promise<HostState> {
    const insecure = this.isInsecure(apiHost);
    const bases = insecure ? [`https://${apiHost}`, `http://${apiHost}`] : [`https://${apiHost}`];
    let lastErr: unknown;
    for (const base of bases) {
      for (let attempt = 1; attempt <= this.opts.attempts; attempt++) {
        let res: RawResponse;
        try {
          res = await this.rawRequest(new URL(`${base}/v2/`), 'GET', {}, insecure);
        } catch (err) {
          lastErr = err;
          if (base.startsWith('https') && insecure && isTlsMismatch(err)) break; // try plain HTTP
          if (isUnreachable(err)) break;
          if (attempt < this.opts.attempts) {
            await sleep(this.opts.retryDelayMs * 2 ** (attempt - 1));
            continue;
          }
          break;
        }
        if (res.status >= 500 && attempt < this.opts.attempts) {
          res.body.resume();
          await sleep(this.opts.retryDelayMs * 2 ** (attempt - 1));
          continue;
        }
        const state: HostState = { base, insecureTls: insecure, challenge: { scheme: 'none' }, tokens: new Map() };
        if (res.status === 401) {
          state.challenge = this.challengeFrom(res.headers['www-authenticate'], apiHost);
          res.body.resume();
          return state;
        }
        if (res.status >= 200 && res.status < 300) {
          res.body.resume();
          return state;
        }
        const detail = await registryErrorDetail(res);
        if (res.status === 404) throw new RegistryError(`${apiHost} is not a container registry (GET /v2/ answered 404)`, { status: 404 });
        throw new RegistryError(`registry ${apiHost} answered ${res.status} to GET /v2/${detail.message ? `: ${detail.message}` : ''}`, { status: res.status, ...detail, ...(detail.message ? { registryMessage: detail.message } : {}) });
      }
    }
    const e = lastErr as { code?: string; message?: string };
    throw new RegistryError(`cannot reach registry ${apiHost}: ${e?.message ?? String(lastErr)}`, {
      retryable: !isUnreachable(lastErr),
      cause: lastErr,
      hint: insecure ? undefined : `if ${apiHost} serves plain HTTP or a self-signed certificate, list it as an insecure registry`,
    });
  }

  private challengeFrom(header: string | string[] | undefined, apiHost: string): Challenge {
    const c = parseChallenge(header);
    if (!c) throw new RegistryError(`registry ${apiHost} wants authentication but sent no WWW-Authenticate challenge`, { status: 401 });
    if (c.scheme === 'basic') return { scheme: 'basic' };
    if (c.scheme === 'bearer') {
      const realm = c.params.realm;
      if (!realm) throw new RegistryError(`registry ${apiHost} sent a Bearer challenge without a realm`, { status: 401 });
      return { scheme: 'bearer', realm, service: c.params.service };
    }
    throw new RegistryError(`registry ${apiHost} wants ${c.scheme} authentication, which is not supported`, { status: 401 });
  }

  private creds(ref: ImageReference): RegistryCredentials | undefined {
    return lookupCredentials(this.opts.credentials, ref.domain, ref.repository);
  }

  private async authHeader(state: HostState, ref: ImageReference, scope: string, fresh: boolean): Promise<Record<string, string>> {
    const creds = this.creds(ref);
    const ch = state.challenge;
    if (ch.scheme === 'none') return {};
    if (ch.scheme === 'basic') {
      return creds ? { authorization: `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}` } : {};
    }
    const cached = state.tokens.get(scope);
    if (!fresh && cached && cached.expires > Date.now()) return { authorization: `Bearer ${cached.token}` };
    const url = new URL(ch.realm);
    if (url.protocol === 'http:' && !this.isInsecure(url.host)) {
      throw new RegistryError(`registry ${ref.apiHost} sends its token realm over plain HTTP (${url.host}), which is not an insecure host`);
    }
    if (ch.service) url.searchParams.set('service', ch.service);
    url.searchParams.set('scope', scope);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (creds) headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
    let res: RawResponse;
    try {
      res = await this.requestFollow(url, 'GET', headers, this.isInsecure(url.host));
    } catch (err) {
      throw new RegistryError(`cannot reach the token service ${url.host} of ${ref.apiHost}: ${(err as Error).message}`, { retryable: true, cause: err });
    }
    if (res.status !== 200) {
      const detail = await registryErrorDetail(res);
      const msg = detail.message ?? `HTTP ${res.status}`;
      throw new RegistryError(`${ref.repo}: token service ${url.host} refused ${creds ? `user ${creds.username}` : 'anonymous access'}: ${msg}`, {
        status: res.status,
        registryMessage: msg,
        code: detail.code ?? (res.status === 401 ? 'UNAUTHORIZED' : undefined),
        retryable: res.status >= 500,
        hint: res.status === 401 ? 'check the registry credentials (imagePullSecrets or the auth file)' : undefined,
      });
    }
    const body = await readCapped(res.body, MAX_TOKEN_BODY);
    let j: { token?: string; access_token?: string; expires_in?: number };
    try {
      j = JSON.parse(body.toString('utf8')) as typeof j;
    } catch {
      throw new RegistryError(`token service ${url.host} answered with something that is not JSON`);
    }
    const token = j.token ?? j.access_token;
    if (!token) throw new RegistryError(`token service ${url.host} answered without a token`);
    const ttl = Math.max(60, typeof j.expires_in === 'number' ? j.expires_in : 60);
    state.tokens.set(scope, { token, expires: Date.now() + (ttl - 10) * 1000 });
    return { authorization: `Bearer ${token}` };
  }

  /**
   * An authenticated request to `/v2/<repo>/<suffix>`. A 401 refreshes the
   * challenge (and token) once; the caller handles every other status.
   */
  async request(ref: ImageReference, suffix: string, method: string, headers: Record<string, string> = {}): Promise<RawResponse> {
    const state = await this.host(ref.apiHost);
    const scope = `repository:${ref.repository}:pull`;
    const url = new URL(`${state.base}/v2/${ref.repository}/${suffix}`);
    let res: RawResponse | undefined;
    for (let round = 0; round < 2; round++) {
      const auth = await this.authHeader(state, ref, scope, round > 0);
      res = await this.requestFollow(url, method, { ...headers, ...auth }, state.insecureTls);
      if (res.status === 401 && res.url.origin !== url.origin) {
        // A redirect target (blob storage) wants authentication. Its challenge is not the registry's:
        // answering it would hand the repository's credentials (or a token for them) to whatever realm
        // it names. Only the registry the reference names may ask for them.
        res.body.resume();
        throw new RegistryError(`pull ${ref.repo}: ${suffix}: ${res.url.host}, where ${ref.apiHost} redirected the request, answered 401 Unauthorized; the registry's credentials are not sent to another host`, {
          status: 401,
          code: 'UNAUTHORIZED',
          hint: `${ref.apiHost} redirects to storage that wants its own authentication, which a registry client cannot give; the registry's storage redirect is misconfigured (or the redirect is hostile)`,
        });
      }
      if (res.status !== 401 || round > 0) break;
      // A first challenge, an expired token, or a repository that wants auth when /v2/ did not.
      state.challenge = this.challengeFrom(res.headers['www-authenticate'], ref.apiHost);
      if (state.challenge.scheme === 'basic' && (!this.creds(ref) || 'authorization' in auth)) break; // nothing better to send
      res.body.resume();
    }
    return res as RawResponse;
  }

  private async failure(ref: ImageReference, what: string, res: RawResponse): Promise<RegistryError> {
    const detail = await registryErrorDetail(res);
    const reg = detail.message ?? `HTTP ${res.status}`;
    const code = detail.code ?? (res.status === 401 ? 'UNAUTHORIZED' : res.status === 404 ? 'NOT_FOUND' : undefined);
    const creds = this.creds(ref);
    let hint: string | undefined;
    if (res.status === 401) hint = creds ? `check the password of ${creds.username} for ${ref.domain}` : `${ref.domain} needs credentials: add them to the auth file or the pod's imagePullSecrets`;
    else if (res.status === 403) hint = `the credentials for ${ref.domain} do not allow pulling ${ref.repository}`;
    else if (res.status === 404) hint = 'check the repository name and tag';
    return new RegistryError(`${what}: ${reg}${detail.code ? ` (${detail.code})` : ''} [HTTP ${res.status} from ${res.url.host}]`, {
      status: res.status,
      ...(code ? { code } : {}),
      registryMessage: reg,
      retryable: res.status >= 500 || res.status === 429 || res.status === 408,
      ...(hint ? { hint } : {}),
    });
  }

  /** Run `fn` with retries for retryable RegistryErrors and network errors. */
  private async withRetries<T>(what: string, fn: (attempt: number) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn(attempt);
      } catch (err) {
        const retryable = err instanceof RegistryError ? err.retryable : !(err instanceof UserError);
        if (!retryable || attempt >= this.opts.attempts) {
          if (err instanceof UserError) throw err;
          throw new RegistryError(`${what}: ${(err as Error).message}`, { retryable: true, cause: err });
        }
        await sleep(this.opts.retryDelayMs * 2 ** (attempt - 1));
      }
    }
  }

  // ---- manifests -------------------------------------------------------------

  /** Fetch a manifest or index by tag or digest, verifying size and digest. */
  async getManifest(ref: ImageReference, reference: string): Promise<FetchedManifest> {
    const what = `pull ${ref.repo}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`;
    const max = this.opts.maxManifestBytes;
    return this.withRetries(what, async () => {
      const res = await this.request(ref, `manifests/${reference}`, 'GET', { accept: MANIFEST_ACCEPT.join(', ') });
      if (res.status !== 200) throw await this.failure(ref, `${what}: manifest`, res);
      const tooBig = (n: number | string) =>
        new RegistryError(`${what}: the manifest is ${n} bytes, more than the ${max}-byte limit`, { hint: 'a manifest this large is not a container image manifest (or the registry is misbehaving)' });
      const length = Number(res.headers['content-length'] ?? NaN);
      if (Number.isFinite(length) && length > max) {
        res.body.destroy();
        throw tooBig(length);
      }
      const hash = createHash('sha256');
      const chunks: Buffer[] = [];
      let n = 0;
      for await (const c of res.body as AsyncIterable<Buffer>) {
        n += c.length;
        if (n > max) {
          res.body.destroy();
          throw tooBig(`more than ${max}`);
        }
        hash.update(c);
        chunks.push(c);
      }
      if (!res.body.complete || (Number.isFinite(length) && n !== length)) {
        throw new RegistryError(`${what}: the manifest was cut off after ${n} bytes`, { retryable: true });
      }
      const body = Buffer.concat(chunks);
      const digest = `sha256:${hash.digest('hex')}`;
      if (reference.startsWith('sha256:') && digest !== reference) {
        throw new RegistryError(`${what}: the registry sent a manifest whose digest is ${digest}`, { hint: 'the registry or something between it and this node altered the manifest' });
      }
      const claimed = res.headers['docker-content-digest'];
      if (typeof claimed === 'string' && claimed.startsWith('sha256:') && claimed !== digest) {
        throw new RegistryError(`${what}: manifest digest mismatch: the registry says ${claimed}, the content hashes to ${digest}`);
      }
      let json: ManifestJson;
      try {
        json = JSON.parse(body.toString('utf8')) as ManifestJson;
      } catch (err) {
        throw new RegistryError(`${what}: the manifest is not valid JSON (${(err as Error).message})`);
      }
      const contentType = String(res.headers['content-type'] ?? '').split(';')[0]!.trim();
      const mediaType = json.mediaType ?? (contentType || (json.manifests ? MT.ociIndex : MT.ociManifest));
      if (/^application\/vnd\.docker\.distribution\.manifest\.v1\+(json|prettyjws)$/.test(mediaType) || json.schemaVersion === 1) {
        throw new RegistryError(`${what}: the registry only offers a Docker schema-1 manifest, which is not supported`, { hint: 'push the image again with a current client' });
      }
      if (![MT.ociManifest, MT.dockerManifest, MT.ociIndex, MT.dockerList].includes(mediaType as (typeof MANIFEST_ACCEPT)[number])) {
        throw new RegistryError(`${what}: unsupported manifest media type ${mediaType}`);
      }
      return { digest, mediaType, body, json };
    });
  }

  /** Resolve a reference to its linux/amd64 image manifest (through an index when multi-arch). */
  async resolve(ref: ImageReference): Promise<ResolvedImage> {
    const top = await this.getManifest(ref, ref.reference);
    if (top.mediaType !== MT.ociIndex && top.mediaType !== MT.dockerList) return { ref, manifest: top };
    const entries = (top.json.manifests ?? []).filter((d) => d && typeof d === 'object');
    const pick = entries.find(
      (d) =>
        d.platform?.os === WANT_PLATFORM.os &&
        d.platform?.architecture === WANT_PLATFORM.architecture &&
        (d.mediaType === undefined || d.mediaType === MT.ociManifest || d.mediaType === MT.dockerManifest),
    );
    if (!pick) {
      const have = entries.map((d) => `${d.platform?.os ?? '?'}/${d.platform?.architecture ?? '?'}${d.platform?.variant ? `/${d.platform.variant}` : ''}`);
      throw new RegistryError(`${ref.repo}:${ref.reference} has no ${WANT_PLATFORM.os}/${WANT_PLATFORM.architecture} image (it has ${have.join(', ') || 'none'})`, {
        hint: 'this runtime only runs linux/amd64 images',
      });
    }
    const manifest = await this.getManifest(ref, pick.digest);
    if (manifest.mediaType === MT.ociIndex || manifest.mediaType === MT.dockerList) {
      throw new RegistryError(`${ref.repo}: index entry ${pick.digest} is itself an index`);
    }
    return { ref, manifest, index: top };
  }

  // ---- blobs -----------------------------------------------------------------

  /**
   * Download a blob to `dest` (created/truncated), hashing as it streams.
   * Interruptions resume with Range from the byte reached (restarting if the
   * server answers 200); the result must match `digest` and, when given, `size`.
   */
  async fetchBlob(ref: ImageReference, desc: { digest: string; size?: number }, dest: string, onBytes?: (total: number) => void, tap?: BlobTap): Promise<{ size: number }> {
    const what = `pull ${ref.repo}: blob ${desc.digest}`;
    const expected = desc.size;
    await fs.writeFile(dest, '', { mode: 0o644 });
    let hash = new StreamSha256();
    let got = 0;
    try {
      await this.withRetries(what, async () => {
        const headers: Record<string, string> = {};
        if (got > 0) headers.range = `bytes=${got}-`;
        const res = await this.request(ref, `blobs/${desc.digest}`, 'GET', headers);
        if (res.status === 206 && got > 0) {
          const cr = /^bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''));
          if (!cr || Number(cr[1]) !== got) {
            res.body.destroy();
            got = 0;
            hash = new StreamSha256();
            await fs.truncate(dest, 0);
            throw new RegistryError(`${what}: the registry resumed at the wrong offset`, { retryable: true });
          }
        } else if (res.status === 200) {
          if (got > 0) {
            // The server ignored Range: start over.
            got = 0;
            hash = new StreamSha256();
            await fs.truncate(dest, 0);
          }
        } else {
          throw await this.failure(ref, what, res);
        }
        const counter = new Transform({
          transform(c: Buffer, _enc, cb) {
            if (expected !== undefined && got + c.length > expected) {
              cb(new RegistryError(`${what}: the registry sent more than the ${expected} bytes the manifest lists`, { hint: 'the registry serves different content than its manifest describes' }));
              return;
            }
            const hashing = hash.update(c);
            const offset = got;
            got += c.length;
            onBytes?.(got);
            // The hasher's and the tap's backpressure (a slower unpacker) hold the download back: memory stays flat.
            const tapped = tap?.(c, offset);
            const waiting = hashing && tapped ? Promise.all([hashing, tapped]) : (hashing ?? tapped);
            if (waiting) waiting.then(() => cb(null, c), (err: unknown) => cb(err as Error));
            else cb(null, c);
          },
        });
        const startAt = got;
        const out = createWriteStream(dest, { flags: 'r+', start: startAt, highWaterMark: 1 << 20 });
        try {
          // Streamed with backpressure: memory stays flat whatever the blob size.
          await pipeline(res.body, counter, out);
        } catch (err) {
          if (!out.closed) await new Promise<void>((r) => out.once('close', () => r()));
          // The registry's own refusals and the tap's (a size cap exceeded, limits.ts) are final, not an interruption.
          if (err instanceof UserError) throw err;
          // Writes still in flight when the pipeline failed are dropped: resume
          // from what really reached the file, re-hashing that prefix.
          const onDisk = (await fs.stat(dest)).size;
          if (onDisk !== got) {
            hash = await hashPrefix(dest, onDisk);
            got = onDisk;
          }
          throw new RegistryError(`${what}: download interrupted after ${got}${expected !== undefined ? ` of ${expected}` : ''} bytes (${(err as Error).message})`, { retryable: true, cause: err });
        }
        if (!res.body.complete || (expected !== undefined && got < expected)) {
          throw new RegistryError(`${what}: the registry closed the connection after ${got}${expected !== undefined ? ` of ${expected}` : ''} bytes (truncated)`, { retryable: true });
        }
      });
    } finally {
      /* nothing held open between attempts */
    }
    const digest = await hash.digest();
    if (digest !== desc.digest) {
      throw new RegistryError(`${what}: content digest mismatch: the registry sent ${got} bytes hashing to ${digest}`, {
        hint: 'the registry (or something between it and this node) serves corrupt content',
      });
    }
    return { size: got };
  }
}

/**
 * Sees every chunk of a blob download with its offset in the blob, before it
 * is written. After a resume or a restart, offsets repeat bytes already seen
 * (the tap skips what it has). A returned promise holds the download until it
 * settles; a rejection fails the download.
 */
export type BlobTap = (chunk: Buffer, offset: number) => Promise<void> | void;

/** sha256 state of a file's first `length` bytes, ready to be continued. */
async function hashPrefix(file: string, length: number): Promise<StreamSha256> {
  const hash = new StreamSha256();
  if (length > 0) for await (const chunk of createReadStream(file, { start: 0, end: length - 1 })) await hash.update(chunk as Buffer);
  return hash;
}
