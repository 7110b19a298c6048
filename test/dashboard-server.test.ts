/**
 * The dashboard server's gatekeeping without a browser or a node, against a
 * real control plane: one-time and expiring login tokens, guessed cookies,
 * the security headers on every answer, CSRF and Origin on writes and
 * WebSockets, what is forwarded, and that authorization is the control
 * plane's (a dashboard given a node's kubeconfig can do only what that node
 * may). The browser test (dashboard.test.ts) covers the pages.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import WebSocket from 'ws';
import { startDashboard, type Dashboard } from '../dashboard/server.js';
import { readKubeconfig } from '../dashboard/kubeconfig.js';
import { UserError } from '../common/errors.js';
import { run } from './helpers/cluster.js';
import { REPO } from './helpers/node.js';
import { rejects } from './helpers/assert.js';
import { registerNode, startTestControlPlane, type TestCP } from './helpers/control-plane.js';

const t = suite('dashboard server: login, cookie, CSRF, Origin, headers, forwarding as the kubeconfig\'s user');
let cp: TestCP;
let dash: Dashboard;

t.before(async () => {
  const build = await run(process.execPath, [path.join(REPO, 'node_modules/typescript/bin/tsc'), '-p', path.join(REPO, 'dashboard/web/tsconfig.json')]);
  if (build.code !== 0) throw new Error(`building the dashboard front end failed:\n${build.stdout}${build.stderr}`);
  cp = await startTestControlPlane();
  await registerNode(cp, 'n1');
  await registerNode(cp, 'n2');
  dash = await startDashboard({ kubeconfigPath: cp.kubeconfig, logLevel: 'silent', loginTokenTtlMs: 300 });
});

t.after(async () => {
  await dash?.close();
  await cp?.close();
});

async function signIn(d: Dashboard): Promise<{ cookie: string; csrf: string }> {
  const r = await fetch(d.newLoginUrl(), { redirect: 'manual' });
  assert.is(r.status, 303);
  const cookie = r.headers.get('set-cookie')!.split(';')[0]!;
  const me = await (await fetch(`${d.url}/dashboard-api/whoami`, { headers: { cookie } })).json();
  return { cookie, csrf: me.csrfToken };
}

t('login tokens: one use, a wrong one spends nothing else, an old one has expired', async () => {
  const good = dash.newLoginUrl();
  const wrong = await fetch(`${dash.url}/login?token=${'A'.repeat(43)}`, { redirect: 'manual' });
  assert.is(wrong.status, 401);
  assert.is(wrong.headers.get('set-cookie'), null);
  const first = await fetch(good, { redirect: 'manual' });
  assert.is(first.status, 303);
  assert.match(first.headers.get('set-cookie')!, /^stevedore_dashboard_\d+=[\w-]{43}; Path=\/; HttpOnly; SameSite=Strict$/);
  assert.is((await fetch(good, { redirect: 'manual' })).status, 401);
  const old = dash.newLoginUrl();
  await new Promise((r) => setTimeout(r, 400));
  assert.is((await fetch(old, { redirect: 'manual' })).status, 401);
});

t('without the right cookie nothing but /login answers; every answer has the security headers', async () => {
  const { cookie } = await signIn(dash);
  const guessed = cookie.replace(/=.*/, `=${'B'.repeat(43)}`);
  for (const headers of [{} as Record<string, string>, { cookie: guessed }, { cookie: `other=${cookie.split('=')[1]}` }]) {
    for (const at of ['/', '/app/app.js', '/vendor/xterm/xterm.mjs', '/dashboard-api/whoami', '/k8s/api/v1/pods']) {
      const r = await fetch(`${dash.url}${at}`, { headers });
      assert.is(r.status, 401, `${at} ${JSON.stringify(headers)}`);
      assert.match(r.headers.get('content-security-policy')!, /^default-src 'self'; script-src 'self'; style-src 'self';/);
    }
  }
  const page = await fetch(`${dash.url}/`, { headers: { cookie } });
  assert.is(page.status, 200);
  assert.is(page.headers.get('x-content-type-options'), 'nosniff');
  assert.is(page.headers.get('x-frame-options'), 'DENY');
  assert.is(page.headers.get('referrer-policy'), 'no-referrer');
  assert.not.match(await page.text(), /<script>|\son[a-z]+=/, 'no inline script in the page');
  const term = await fetch(`${dash.url}/terminal.html`, { headers: { cookie } });
  assert.match(term.headers.get('content-security-policy')!, /script-src 'self'; style-src 'self' 'unsafe-inline';/);
  const xterm = await fetch(`${dash.url}/vendor/xterm/xterm.mjs`, { headers: { cookie } });
  assert.is(xterm.headers.get('content-type'), 'text/javascript; charset=utf-8');
  for (const at of ['/k8s/healthz', '/k8s/../admin.token', '/static/../server.js', '/app/nope.js']) {
    assert.is((await fetch(`${dash.url}${at}`, { headers: { cookie } })).status, 404, at);
  }
});

t('writes need the CSRF token and our Origin; WebSockets need our Origin (and exec the token)', async () => {
  const { cookie, csrf } = await signIn(dash);
  await cp.k(['run', 'victim', '--image=busybox', '--restart=Never']);
  const del = (headers: Record<string, string>) => fetch(`${dash.url}/k8s/api/v1/namespaces/default/pods/victim`, { method: 'DELETE', headers: { cookie, ...headers } });
  assert.is((await del({})).status, 403);
  assert.is((await del({ 'x-stevedore-csrf': 'guess' })).status, 403);
  assert.is((await del({ 'x-stevedore-csrf': csrf, origin: 'http://127.0.0.1:1' })).status, 403);
  assert.is((await cp.kubectl(['get', 'pod', 'victim'])).exitCode, 0);
  assert.is((await del({ 'x-stevedore-csrf': csrf, origin: dash.url })).status, 200);
  const ws = (p: string, origin: string) => new Promise<number>((resolve) => {
    const s = new WebSocket(`${dash.url.replace('http', 'ws')}${p}`, ['v5.channel.k8s.io'], { headers: { cookie, origin } });
    s.on('unexpected-response', (_q, r) => resolve(r.statusCode ?? 0));
    s.on('open', () => { s.close(); resolve(101); });
    s.on('error', () => resolve(-1));
  });
  const stream = `/dashboard-api/stream?path=${encodeURIComponent('/api/v1/pods?watch=true')}`;
  assert.is(await ws(stream, 'http://127.0.0.1:1'), 403);
  assert.is(await ws(stream, dash.url), 101);
  assert.is(await ws('/k8s/api/v1/namespaces/default/pods/x/exec?command=sh', dash.url), 403, 'exec without the CSRF token');
  assert.is(await ws(`/k8s/api/v1/namespaces/default/pods/x/attach?csrf=${csrf}`, dash.url), 404, 'only exec');
});

t('a stream carries the control plane\'s status, then its body', async () => {
  const { cookie } = await signIn(dash);
  const messages = await new Promise<string[]>((resolve, reject) => {
    const got: string[] = [];
    const s = new WebSocket(`${dash.url.replace('http', 'ws')}/dashboard-api/stream?path=${encodeURIComponent('/api/v1/namespaces/default/pods/nope')}`, { headers: { cookie, origin: dash.url } });
    s.on('message', (m) => got.push(String(m)));
    s.on('close', () => resolve(got));
    s.on('error', reject);
  });
  assert.equal(JSON.parse(messages[0]!), { status: 404 });
  assert.match(messages.slice(1).join(''), /pods \\?"nope\\?" not found/);
});

t('authorization is the control plane\'s: a dashboard with a node\'s kubeconfig may do only what that node may', async () => {
  const creds = await cp.nodeCredentials('n1');
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const file = path.join(cp.dataDir, 'n1.kubeconfig');
  await fs.writeFile(file, `apiVersion: v1\nkind: Config\ncurrent-context: n1\nclusters: [{name: c, cluster: {server: "${cp.cp.url}", certificate-authority-data: ${b64(creds.caCertPem)}}}]\n` +
    `users: [{name: n1, user: {client-certificate-data: ${b64(creds.clientCertPem)}, client-key-data: ${b64(creds.clientKeyPem)}}}]\ncontexts: [{name: n1, context: {cluster: c, user: n1}}]\n`, { mode: 0o600 });
  const nodeDash = await startDashboard({ kubeconfigPath: file, logLevel: 'silent' });
  try {
    assert.is(nodeDash.user, 'n1');
    const { cookie, csrf } = await signIn(nodeDash);
    const secrets = await fetch(`${nodeDash.url}/k8s/api/v1/namespaces/default/secrets`, { headers: { cookie } });
    assert.is(secrets.status, 403);
    assert.match((await secrets.json()).message, /User "system:node:n1" cannot list resource "secrets"/);
    await cp.k(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'on-n2', namespace: 'default' }, spec: { nodeName: 'n2', containers: [{ name: 'c', image: 'busybox' }] } }));
    const del = await fetch(`${nodeDash.url}/k8s/api/v1/namespaces/default/pods/on-n2`, { method: 'DELETE', headers: { cookie, 'x-stevedore-csrf': csrf } });
    assert.is(del.status, 403);
    assert.is((await fetch(`${nodeDash.url}/k8s/api/v1/nodes`, { headers: { cookie } })).status, 200, 'what a node may read, it reads');
  } finally {
    await nodeDash.close();
  }
});

t('kubeconfigs it cannot act with are refused with what to do', async () => {
  const missing = await rejects(readKubeconfig('/nonexistent/kubeconfig'), /cannot read the kubeconfig/, UserError);
  assert.match(missing.hint!, /stevedore up/);
  const file = path.join(cp.dataDir, 'exec.kubeconfig');
  await fs.writeFile(file, `apiVersion: v1\ncurrent-context: x\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]\nusers: [{name: u, user: {exec: {command: aws}}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n`);
  await rejects(readKubeconfig(file), /neither a token nor a client certificate for user "u"/, UserError);
});

t.run();
