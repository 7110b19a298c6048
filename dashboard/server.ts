/**
 * The dashboard's own small loopback server (dashboard/README.md says why it
 * is not part of the control plane). It serves the compiled front end and
 * xterm.js from the package, and forwards the browser's Kubernetes API calls
 * to the control plane with the kubeconfig's credentials, so every read and
 * every action is authenticated and authorized by the control plane exactly
 * as the same request from kubectl with that kubeconfig would be.
 *
 * Who may use it: whoever opens the one-time login address the command
 * prints. The token becomes an HttpOnly, SameSite=Strict cookie; nothing but
 * /login answers without it. Writes also need the login's CSRF token in a
 * header and a same-origin Origin, because every port of 127.0.0.1 is the
 * same *site* to a browser (SameSite alone does not stop a page served by
 * another local program).
 */
import * as http from 'node:http';
import * as https from 'node:https';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import WebSocket, { WebSocketServer } from 'ws';
import { UserError } from '../common/errors.js';
import { createLogger } from '../common/log.js';
import { readKubeconfig } from './kubeconfig.js';

export interface DashboardOptions {
  /** The kubeconfig whose current context the dashboard acts as (`stevedore up` writes `.stevedore/kubeconfig`). */
  kubeconfigPath: string;
  /** Loopback only by default; the dashboard speaks plain HTTP, as `kubectl proxy` and Jupyter do on loopback. */
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** How long an unused login token stays valid (default 1 hour). */
  loginTokenTtlMs?: number;
  logLevel?: string;
}

export interface Dashboard {
  /** http://HOST:PORT */
  url: string;
  /** The user of the kubeconfig every request is made as. */
  user: string;
  /** A fresh one-time login address (the token works once). */
  newLoginUrl(): string;
  close(): Promise<void>;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** dist/dashboard → the repository (or package) root. */
const ROOT = path.resolve(HERE, '..', '..');
const WEB_JS_DIR = path.join(HERE, 'web');
const WEB_STATIC_DIR = path.join(ROOT, 'dashboard', 'web', 'static');
const XTERM_FILES: Record<string, string> = {
  '/vendor/xterm/xterm.mjs': path.join(ROOT, 'node_modules/@xterm/xterm/lib/xterm.mjs'),
  '/vendor/xterm/xterm.css': path.join(ROOT, 'node_modules/@xterm/xterm/css/xterm.css'),
  '/vendor/xterm/addon-fit.mjs': path.join(ROOT, 'node_modules/@xterm/addon-fit/lib/addon-fit.mjs'),
};

const COOKIE_PREFIX = 'stevedore_dashboard_';
export const CSRF_HEADER = 'x-stevedore-csrf';
/** Scripts only from this origin, no inline script, no eval; nothing may frame the dashboard. */
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
/** The terminal page only: xterm.js's DOM renderer writes <style> elements, so styles (never scripts) may be inline there. */
const TERMINAL_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'");
const MIME: Record<string, string> = { '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.html': 'text/html; charset=utf-8', '.map': 'application/json' };
/** Request headers passed to the control plane; the browser's cookies never are. */
const FORWARDED_REQUEST_HEADERS = ['accept', 'content-type', 'content-length'];
const FORWARDED_RESPONSE_HEADERS = ['content-type', 'warning', 'retry-after'];
const EXEC_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];

interface SignedIn { csrfToken: string; since: number }

const sameSecret = (a: string, b: string) => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

function securityHeaders(csp = CSP): Record<string, string> {
  return { 'Content-Security-Policy': csp, 'X-Content-Type-Options': 'nosniff', 'X-Frame-Options': 'DENY', 'Referrer-Policy': 'no-referrer', 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Resource-Policy': 'same-origin' };
}

function sendJson(res: http.ServerResponse, code: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(code, { ...securityHeaders(), 'Content-Type': 'application/json', 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(data) });
  res.end(data);
}

/** A page with no script: what a browser without the cookie, or with a used token, sees. */
function sendPlainPage(res: http.ServerResponse, code: number, title: string, text: string): void {
  const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title><link rel="stylesheet" href="/static/dashboard.css"></head><body><main class="plain"><h1>${esc(title)}</h1><p>${esc(text)}</p></main></body></html>`;
  res.writeHead(code, { ...securityHeaders(), 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(html);
}

/** k8s Status objects, so the front end shows every error the same way. */
const status = (code: number, reason: string, message: string) => ({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code, reason, message });

async function loadAssets(): Promise<Map<string, { body: Buffer; type: string }>> {
  const assets = new Map<string, { body: Buffer; type: string }>();
  const add = async (urlPath: string, file: string) => assets.set(urlPath, { body: await fs.readFile(file), type: MIME[path.extname(file)] ?? 'application/octet-stream' });
  let jsFiles: string[];
  try {
    jsFiles = (await fs.readdir(WEB_JS_DIR, { recursive: true })).filter((f) => /\.js(\.map)?$/.test(f));
  } catch {
    jsFiles = [];
  }
  if (!jsFiles.includes('app.js')) {
    throw new UserError(`the dashboard's front end is not built (no ${path.join(WEB_JS_DIR, 'app.js')})`, { hint: 'build it with `npx tsc -p dashboard/web/tsconfig.json` (scripts/setup.sh does)' });
  }
  for (const f of jsFiles) await add(`/app/${f.split(path.sep).join('/')}`, path.join(WEB_JS_DIR, f));
  for (const f of await fs.readdir(WEB_STATIC_DIR)) await add(`/static/${f}`, path.join(WEB_STATIC_DIR, f));
  for (const [urlPath, file] of Object.entries(XTERM_FILES)) {
    await add(urlPath, file).catch((err) => { throw new UserError(`xterm.js is missing from node_modules (${file}): ${(err as Error).message}`, { hint: 'run `npm ci`' }); });
  }
  return assets;
}

export async function startDashboard(opts: DashboardOptions): Promise<Dashboard> {
  const log = createLogger('dashboard', opts.logLevel);
  const creds = await readKubeconfig(opts.kubeconfigPath);
  const assets = await loadAssets();
  const host = opts.host ?? '127.0.0.1';
  const tokenTtl = opts.loginTokenTtlMs ?? 3600_000;
  const loginTokens = new Map<string, number>(); // token → expiry (ms)
  const signedIn = new Map<string, SignedIn>(); // cookie value → its CSRF token
  const upstreamAgent = new https.Agent({ keepAlive: true, ca: creds.caPem, cert: creds.clientCertPem, key: creds.clientKeyPem });
  let origin = '';
  let cookieName = '';

  const cookieOf = (req: http.IncomingMessage): SignedIn | undefined => {
    for (const part of (req.headers.cookie ?? '').split(';')) {
      const eq = part.indexOf('=');
      if (eq < 0 || part.slice(0, eq).trim() !== cookieName) continue;
      const value = part.slice(eq + 1).trim();
      for (const [known, who] of signedIn) if (sameSecret(known, value)) return who;
    }
    return undefined;
  };

  const login = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => {
    const token = url.searchParams.get('token') ?? '';
    let valid = false;
    for (const [known, expires] of loginTokens) {
      if (sameSecret(known, token)) {
        loginTokens.delete(known); // one use, valid or not
        valid = expires > Date.now();
      }
    }
    if (!valid) {
      log.warn({ from: req.socket.remoteAddress }, 'a login with an unknown, used or expired token was refused');
      return sendPlainPage(res, 401, 'This login address does not work', 'Its token is unknown, expired or was already used: each address printed by `stevedore dashboard` signs in one browser once. Run `stevedore dashboard` again (or press Enter in its terminal) for a new one.');
    }
    const cookieValue = randomBytes(32).toString('base64url');
    signedIn.set(cookieValue, { csrfToken: randomBytes(32).toString('base64url'), since: Date.now() });
    res.writeHead(303, { ...securityHeaders(), Location: '/', 'Cache-Control': 'no-store', 'Set-Cookie': `${cookieName}=${cookieValue}; Path=/; HttpOnly; SameSite=Strict` });
    res.end();
  };

  /** The browser's Kubernetes API call, made again with the kubeconfig's credentials. */
  const forward = (req: http.IncomingMessage, res: http.ServerResponse, apiPath: string) => {
    const headers: Record<string, string> = {};
    for (const h of FORWARDED_REQUEST_HEADERS) {
      const v = req.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    if (creds.token) headers.authorization = `Bearer ${creds.token}`;
    let finished = false;
    const upstream = https.request(`${creds.server}${apiPath}`, { method: req.method, headers, agent: upstreamAgent }, (up) => {
      up.on('end', () => (finished = true));
      const out: Record<string, string> = { ...securityHeaders(), 'Cache-Control': 'no-store' };
      for (const h of FORWARDED_RESPONSE_HEADERS) {
        const v = up.headers[h];
        if (typeof v === 'string') out[h] = v;
      }
      res.writeHead(up.statusCode ?? 502, out);
      // Watches and followed logs stream: flush each chunk as it comes.
      up.pipe(res);
    });
    upstream.on('error', (err) => {
      if (!res.headersSent) sendJson(res, 502, status(502, 'BadGateway', `the control plane at ${creds.server} did not answer: ${err.message}`));
      else res.destroy();
    });
    // A closed tab ends its watches and log streams at the control plane too (a finished answer's socket goes back to the pool).
    res.on('close', () => { if (!finished) upstream.destroy(); });
    req.pipe(upstream);
  };

  const handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', origin);
    const p = url.pathname;
    if (p === '/login' && req.method === 'GET') return login(req, res, url);
    // The stylesheet of the sign-in error page holds nothing secret.
    if (p === '/static/dashboard.css' && req.method === 'GET') return serveAsset(res, p);
    const who = cookieOf(req);
    if (!who) {
      if (p.startsWith('/k8s/') || p.startsWith('/dashboard-api/')) return sendJson(res, 401, status(401, 'Unauthorized', 'not signed in to the dashboard: open the login address `stevedore dashboard` prints'));
      return sendPlainPage(res, 401, 'Sign in to the Stevedore dashboard', 'Open the login address that `stevedore dashboard` prints (it carries a one-time token).');
    }
    if (p.startsWith('/k8s/')) {
      const apiPath = p.slice('/k8s'.length);
      if (!/^\/(api|apis)(\/|$)|^\/version$/.test(apiPath)) return sendJson(res, 404, status(404, 'NotFound', `only the Kubernetes API (/api, /apis) is forwarded, not ${apiPath}`));
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        const csrf = req.headers[CSRF_HEADER];
        if (typeof csrf !== 'string' || !sameSecret(csrf, who.csrfToken)) return sendJson(res, 403, status(403, 'Forbidden', `a dashboard action needs its CSRF token in the ${CSRF_HEADER} header`));
        if (req.headers.origin !== undefined && req.headers.origin !== origin) return sendJson(res, 403, status(403, 'Forbidden', `a dashboard action must come from the dashboard's own origin ${origin}, not ${req.headers.origin}`));
      }
      return forward(req, res, apiPath + url.search);
    }
    if (req.method !== 'GET') return sendJson(res, 405, status(405, 'MethodNotAllowed', `${req.method} ${p} is not served`));
    if (p === '/dashboard-api/whoami') return sendJson(res, 200, { user: creds.user, server: creds.server, csrfToken: who.csrfToken });
    if (p === '/' || p === '/index.html') return serveAsset(res, '/static/index.html');
    if (p === '/terminal.html') return serveAsset(res, '/static/terminal.html', TERMINAL_CSP);
    return serveAsset(res, p);
  };

  const serveAsset = (res: http.ServerResponse, p: string, csp = CSP) => {
    const asset = assets.get(p);
    if (!asset) return sendJson(res, 404, status(404, 'NotFound', `${p} is not a dashboard page or file`));
    res.writeHead(200, { ...securityHeaders(csp), 'Content-Type': asset.type, 'Cache-Control': 'no-cache', 'Content-Length': asset.body.length });
    res.end(asset.body);
  };

  const streams = new WebSocketServer({ noServer: true });
  /**
   * A streamed GET (a watch, a followed log) carried over a WebSocket: a
   * browser opens at most six HTTP/1.1 connections to one origin, and a page
   * with more live lists than that would stall every other request behind
   * them. The first message is `{"status":N}`, then the body as it comes;
   * the socket closes when the body ends.
   */
  const streamBridge = (req: http.IncomingMessage, socket: Duplex, head: Buffer, url: URL, refuse: (code: number, message: string) => void) => {
    const apiPath = url.searchParams.get('path') ?? '';
    if (!/^\/(api|apis)\//.test(apiPath)) return refuse(404, 'stream: only Kubernetes API paths (/api/…, /apis/…) are streamed');
    streams.handleUpgrade(req, socket, head, (ws) => {
      const headers: Record<string, string> = { accept: 'application/json' };
      if (creds.token) headers.authorization = `Bearer ${creds.token}`;
      let finished = false;
      const upstream = https.get(`${creds.server}${apiPath}`, { headers, agent: upstreamAgent }, (up) => {
        up.on('end', () => (finished = true));
        ws.send(JSON.stringify({ status: up.statusCode ?? 502 }));
        up.setEncoding('utf8');
        up.on('data', (chunk: string) => {
          // A reader slower than the stream (a chatty log) pauses the control plane's side, not the dashboard's memory.
          if (ws.bufferedAmount > 4 * 1024 * 1024) {
            up.pause();
            ws.send(chunk, () => up.resume());
          } else ws.send(chunk);
        });
        up.on('end', () => ws.close(1000));
        up.on('error', () => ws.close(1011));
      });
      upstream.on('error', (err) => {
        if (ws.readyState !== WebSocket.OPEN) return;
        ws.send(JSON.stringify({ status: 502 }));
        ws.send(JSON.stringify(status(502, 'BadGateway', `the control plane at ${creds.server} did not answer: ${err.message}`)));
        ws.close(1000);
      });
      ws.on('close', () => { if (!finished) upstream.destroy(); });
      ws.on('error', () => upstream.destroy());
    });
  };

  /** Streams (below) and the exec terminal: a WebSocket from the page spliced to one the dashboard opens to the control plane's pods/exec. */
  const upgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const refuse = (code: number, message: string) => {
      socket.end(`HTTP/1.1 ${code} ${http.STATUS_CODES[code]}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(message)}\r\nConnection: close\r\n\r\n${message}`);
    };
    const url = new URL(req.url ?? '/', origin);
    const who = cookieOf(req);
    if (!who) return refuse(401, 'not signed in to the dashboard');
    // WebSockets are not bound by CORS: without this check a page of another local program (same site) could read through one.
    if (req.headers.origin !== origin) return refuse(403, `a dashboard WebSocket must come from the dashboard's own origin ${origin}`);
    if (url.pathname === '/dashboard-api/stream') return streamBridge(req, socket, head, url, refuse);
    // Browsers cannot set headers on a WebSocket: the CSRF token comes in the query, and the Origin must be ours.
    const csrf = url.searchParams.get('csrf') ?? '';
    if (!sameSecret(csrf, who.csrfToken)) return refuse(403, 'a terminal must be opened from the dashboard itself (its CSRF token)');
    const apiPath = url.pathname.slice('/k8s'.length);
    if (!url.pathname.startsWith('/k8s/') || !/^\/api\/v1\/namespaces\/[^/]+\/pods\/[^/]+\/exec$/.test(apiPath)) return refuse(404, 'only pods/exec is served over WebSocket');
    url.searchParams.delete('csrf');
    const upstreamUrl = `${creds.server.replace(/^http/, 'ws')}${apiPath}${url.search}`;
    const upstream = new WebSocket(upstreamUrl, EXEC_PROTOCOLS, { ca: creds.caPem, cert: creds.clientCertPem, key: creds.clientKeyPem, headers: creds.token ? { Authorization: `Bearer ${creds.token}` } : {} });
    upstream.on('unexpected-response', (_r, up) => {
      let text = '';
      up.on('data', (d) => (text += d));
      up.on('end', () => {
        let message = text;
        try { message = JSON.parse(text).message ?? text; } catch { /* not a Status */ }
        refuse(up.statusCode === 401 || up.statusCode === 403 ? 403 : 502, `the control plane refused exec (${up.statusCode}): ${message}`);
      });
    });
    upstream.on('error', (err) => { if (socket.writable && !upstreamOpened) refuse(502, `exec at the control plane failed: ${err.message}`); });
    let upstreamOpened = false;
    upstream.on('open', () => {
      upstreamOpened = true;
      const chosen = upstream.protocol;
      const viaProtocols = new WebSocketServer({ noServer: true, handleProtocols: (offered) => (offered.has(chosen) ? chosen : false) });
      viaProtocols.handleUpgrade(req, socket, head, (browser) => {
        browser.on('message', (data, isBinary) => upstream.send(data, { binary: isBinary }));
        upstream.on('message', (data, isBinary) => browser.send(data, { binary: isBinary }));
        browser.on('close', () => upstream.close());
        upstream.on('close', (code) => browser.close(code >= 1000 && code < 1005 ? code : 1000));
        browser.on('error', () => upstream.terminate());
        upstream.on('error', () => browser.terminate());
      });
    });
  };

  const server = http.createServer(handle);
  server.on('upgrade', upgrade);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new UserError(`cannot listen on ${host}:${opts.port ?? 0}: ${err.message}`, { hint: 'choose another --port' })));
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const hostInUrl = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  origin = `http://${hostInUrl}:${address.port}`;
  cookieName = `${COOKIE_PREFIX}${address.port}`;
  log.info({ url: origin, user: creds.user, server: creds.server }, 'dashboard listening');
  return {
    url: origin,
    user: creds.user,
    newLoginUrl() {
      const now = Date.now();
      for (const [t, expires] of loginTokens) if (expires <= now) loginTokens.delete(t);
      const token = randomBytes(32).toString('base64url');
      loginTokens.set(token, now + tokenTtl);
      return `${origin}/login?token=${token}`;
    },
    close: () => new Promise<void>((resolve) => {
      for (const ws of streams.clients) ws.terminate();
      upstreamAgent.destroy();
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

