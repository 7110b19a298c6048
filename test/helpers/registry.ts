/**
 * A real registry for tests: Debian's `docker-registry` (CNCF distribution
 * 2.8) on 127.0.0.1:<free port>, filesystem storage in a temp dir, started by
 * the test and stopped by its PID. Optional htpasswd (bcrypt) or token auth
 * (a token server run here, signing RS256 JWTs with an openssl-made cert the
 * registry trusts through `rootcertbundle`). Images are pushed with skopeo.
 * A fault-injecting HTTP proxy can sit in front of a registry.
 */
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { createSign, randomBytes } from 'node:crypto';

const run = promisify(execFile);

export { freePort } from './cluster.js';
import { freePort } from './cluster.js';

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.setTimeout(2000, () => req.destroy(new Error('timeout')));
  });
}

export type RegistryAuth =
  | { kind: 'htpasswd'; user: string; password: string }
  | { kind: 'token'; realm: string; service: string; issuer: string; certFile: string };

export interface TestRegistry {
  /** `127.0.0.1:PORT` */
  host: string;
  dir: string;
  pid: number;
  stop(): Promise<void>;
}

export async function startRegistry(workDir: string, auth?: RegistryAuth): Promise<TestRegistry> {
  const dir = await fs.mkdtemp(path.join(workDir, 'registry-'));
  const port = await freePort();
  let authYaml = '';
  if (auth?.kind === 'htpasswd') {
    const { stdout } = await run('htpasswd', ['-Bbn', auth.user, auth.password]);
    await fs.writeFile(path.join(dir, 'htpasswd'), stdout.trim() + '\n');
    authYaml = `auth:\n  htpasswd:\n    realm: stevedore-test\n    path: ${path.join(dir, 'htpasswd')}\n`;
  } else if (auth?.kind === 'token') {
    authYaml = `auth:\n  token:\n    realm: ${auth.realm}\n    service: ${auth.service}\n    issuer: ${auth.issuer}\n    rootcertbundle: ${auth.certFile}\n`;
  }
  const config = `version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${path.join(dir, 'data')}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${port}
  secret: ${randomBytes(16).toString('hex')}
${authYaml}`;
  await fs.writeFile(path.join(dir, 'config.yml'), config);
  const child: ChildProcess = spawn('docker-registry', ['serve', path.join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const host = `127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited (${child.exitCode}): ${stderr}`);
    try {
      const res = await get(`http://${host}/v2/`);
      if (res.status === 200 || res.status === 401) break;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`docker-registry did not answer on ${host}: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    host,
    dir,
    pid: child.pid!,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        process.kill(child.pid!, 'SIGTERM');
        const t = setTimeout(() => child.exitCode === null && process.kill(child.pid!, 'SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
    },
  };
}

/** `skopeo copy` an OCI layout (`oci:DIR[:TAG]`) into the registry. */
export async function skopeoPush(src: string, dest: string, opts: { format?: 'v2s2' | 'oci'; creds?: string; all?: boolean } = {}): Promise<void> {
  const args = ['--insecure-policy', 'copy', '--quiet', '--dest-tls-verify=false'];
  if (opts.format) args.push('--format', opts.format);
  if (opts.creds) args.push('--dest-creds', opts.creds);
  if (opts.all) args.push('--all');
  args.push(src, `docker://${dest}`);
  await run('skopeo', args, { timeout: 120_000 });
}

// ---- token server ----------------------------------------------------------

export interface TokenServer {
  /** `http://127.0.0.1:PORT/token` */
  realm: string;
  certFile: string;
  service: string;
  issuer: string;
  /** Token requests seen: `user|anonymous scope`. */
  requests: string[];
  stop(): Promise<void>;
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

/** A Docker-style token server: Basic-authenticated users get the actions they ask for; anonymous gets none. */
export async function startTokenServer(workDir: string, users: Record<string, string>): Promise<TokenServer> {
  const dir = await fs.mkdtemp(path.join(workDir, 'token-'));
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=stevedore-test-token']);
  const keyPem = await fs.readFile(keyFile, 'utf8');
  const certPem = await fs.readFile(certFile, 'utf8');
  const certDer = certPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  const service = 'stevedore-test-registry';
  const issuer = 'stevedore-test-issuer';
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const authz = req.headers.authorization ?? '';
    let user: string | undefined;
    if (authz.startsWith('Basic ')) {
      const [u, ...p] = Buffer.from(authz.slice(6), 'base64').toString().split(':');
      if (u === undefined || users[u] !== p.join(':')) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'invalid username or password' }] }));
        return;
      }
      user = u;
    }
    const scopes = url.searchParams.getAll('scope');
    requests.push(`${user ?? 'anonymous'} ${scopes.join(' ')}`);
    const access = user
      ? scopes.flatMap((s) => {
          const m = /^repository:([^:]+):(.+)$/.exec(s);
          return m ? [{ type: 'repository', name: m[1], actions: m[2]!.split(',') }] : [];
        })
      : [];
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'RS256', typ: 'JWT', x5c: [certDer] };
    const claims = { iss: issuer, sub: user ?? '', aud: service, exp: now + 300, nbf: now - 10, iat: now - 10, jti: randomBytes(8).toString('hex'), access };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = createSign('RSA-SHA256').update(signingInput).sign(keyPem);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: `${signingInput}.${b64url(sig)}`, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    certFile,
    service,
    issuer,
    requests,
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}

// ---- fault-injecting proxy -------------------------------------------------

export type Fault =
  | { kind: 'none' }
  /** Flip a byte in this blob's body (same length). */
  | { kind: 'bad-digest'; digest: string }
  /** Send the full Content-Length but only half the body, then drop the connection; `times` how often (default always). */
  | { kind: 'truncate'; digest: string; times?: number; done?: number; ignoreRange?: boolean }
  /** Answer manifest GETs with a body of this many bytes. */
  | { kind: 'big-manifest'; bytes: number }
  /** Answer GETs of this blob with 500 and a registry-style JSON error. */
  | { kind: 'fail500'; digest: string };

export interface FaultProxy {
  host: string;
  fault: Fault;
  /** Requests seen, `METHOD path [range]`. */
  log: string[];
  stop(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const proxy: FaultProxy = { host: '', fault: { kind: 'none' }, log: [], stop: async () => {} };
  const server = http.createServer((req, res) => {
    const p = req.url ?? '/';
    proxy.log.push(`${req.method} ${p}${req.headers.range ? ` ${req.headers.range}` : ''}`);
    const f = proxy.fault;
    if (f.kind === 'big-manifest' && req.method === 'GET' && /\/manifests\//.test(p)) {
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': String(f.bytes) });
      res.end(Buffer.alloc(f.bytes, 0x20));
      return;
    }
    if (f.kind === 'fail500' && p.endsWith(`/blobs/${f.digest}`)) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNKNOWN', message: 'storage backend exploded (injected)' }] }));
      return;
    }
    const headers = { ...req.headers, host: target };
    // A server that ignores Range answers 200 with the whole blob: the client must start over.
    if (f.kind === 'truncate' && f.ignoreRange && p.endsWith(`/blobs/${f.digest}`)) delete headers.range;
    const up = http.request({ host: '127.0.0.1', port: Number(target.split(':')[1]), method: req.method, path: p, headers }, (upRes) => {
      const isBlob = (d: string) => p.endsWith(`/blobs/${d}`) && req.method === 'GET' && (upRes.statusCode === 200 || upRes.statusCode === 206);
      if (f.kind === 'bad-digest' && isBlob(f.digest)) {
        const chunks: Buffer[] = [];
        upRes.on('data', (c: Buffer) => chunks.push(c));
        upRes.on('end', () => {
          const body = Buffer.concat(chunks);
          const i = Math.floor(body.length / 2);
          body[i] = body[i]! ^ 0xff;
          res.writeHead(200, upRes.headers);
          res.end(body);
        });
        return;
      }
      if (f.kind === 'truncate' && isBlob(f.digest) && (f.times === undefined || (f.done ?? 0) < f.times)) {
        f.done = (f.done ?? 0) + 1;
        const chunks: Buffer[] = [];
        upRes.on('data', (c: Buffer) => chunks.push(c));
        upRes.on('end', () => {
          const body = Buffer.concat(chunks);
          res.writeHead(200, upRes.headers);
          // End with a FIN, not destroy()'s RST: an RST makes the client's kernel
          // drop what it has not read yet, and on a busy machine that can be all of it.
          res.write(body.subarray(0, Math.floor(body.length / 2)), () => res.socket?.end());
        });
        return;
      }
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  proxy.host = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  proxy.stop = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return proxy;
}

// ---- pushing by hand (the distribution API, for content skopeo would not push) ----

function send(method: string, url: string, headers: Record<string, string>, body: Buffer | string | undefined): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    if (body === undefined) req.end();
    else if (typeof body === 'string' || Buffer.isBuffer(body)) req.end(body);
  });
}

/** Upload a blob (bytes, or a file streamed from disk) with a monolithic upload; returns its digest and size. */
export async function pushBlob(host: string, repo: string, data: Buffer | { file: string }): Promise<{ digest: string; size: number }> {
  const { createHash } = await import('node:crypto');
  const { createReadStream } = await import('node:fs');
  let digest: string;
  let size: number;
  if (Buffer.isBuffer(data)) {
    digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    size = data.length;
  } else {
    const h = createHash('sha256');
    for await (const c of createReadStream(data.file)) h.update(c as Buffer);
    digest = `sha256:${h.digest('hex')}`;
    size = (await fs.stat(data.file)).size;
  }
  const start = await send('POST', `http://${host}/v2/${repo}/blobs/uploads/`, { 'content-length': '0' }, undefined);
  if (start.status !== 202 || !start.headers.location) throw new Error(`starting an upload to ${host}/${repo}: HTTP ${start.status} ${start.body}`);
  const loc = new URL(start.headers.location, `http://${host}`);
  loc.searchParams.set('digest', digest);
  const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request(loc, { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) } }, (r) => {
      let text = '';
      r.on('data', (d) => (text += d));
      r.on('end', () => resolve({ status: r.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    if (Buffer.isBuffer(data)) req.end(data);
    else createReadStream(data.file).pipe(req);
  });
  if (res.status !== 201) throw new Error(`uploading ${digest} to ${host}/${repo}: HTTP ${res.status} ${res.body}`);
  return { digest, size };
}

/** PUT a manifest exactly as given (the registry checks the blobs it names exist). */
export async function pushManifest(host: string, repo: string, tag: string, manifest: object, mediaType: string): Promise<string> {
  const body = JSON.stringify(manifest);
  const res = await send('PUT', `http://${host}/v2/${repo}/manifests/${tag}`, { 'content-type': mediaType, 'content-length': String(Buffer.byteLength(body)) }, body);
  if (res.status !== 201) throw new Error(`pushing manifest ${host}/${repo}:${tag}: HTTP ${res.status} ${res.body}`);
  return String(res.headers['docker-content-digest']);
}
