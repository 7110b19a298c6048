/**
 * The web dashboard in a real browser: Debian's chromium, headless, driven by
 * playwright-core (no browser download), against a real one-node cluster
 * (`stevedore up`) and the real kubectl, with `stevedore dashboard` run as
 * the command it is. Login with the one-time token (and its refusal the
 * second time), no page or API without the cookie, no action without the
 * CSRF token, the demo pod with its stage1 and units, its logs growing live,
 * scale / restart / delete from the UI seen by kubectl, an XSS annotation
 * shown as text with no script run, an exec terminal, and 250 pods listed in
 * under a second. Screenshots of the main views go to docs/dashboard/
 * (with STEVEDORE_UPDATE_SCREENSHOTS=1).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import WebSocket from 'ws';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { run, useCluster } from './helpers/cluster.js';
import { CLI, REPO, eventually } from './helpers/node.js';

const t = suite('dashboard: stevedore dashboard in chromium against a real cluster');
const getCluster = useCluster(t);

/**
 * The screenshots are always taken; they replace docs/dashboard/*.png only with
 * STEVEDORE_UPDATE_SCREENSHOTS=1, so a test run leaves the repository as it was.
 */
const UPDATE_SCREENSHOTS = process.env.STEVEDORE_UPDATE_SCREENSHOTS === '1';
let SCREENSHOTS = path.join(REPO, 'docs', 'dashboard');
let tempShots: string | undefined;
const XSS = '<img src=x onerror=alert(1)>';
/** Pods that must not run: a node selector no node has keeps them Pending. */
const NOWHERE = { 'stevedore.io/test': 'nowhere' };

interface State { dashboard: ChildProcess; url: string; loginUrl: string; browser: Browser; context: BrowserContext; page: Page; dialogs: string[]; cspViolations: string[] }
let state: State | undefined;
/** Kept apart from `state`, so that a `before` that fails half-way still leaves nothing running. */
let dashboardProcess: ChildProcess | undefined;
let launchedBrowser: Browser | undefined;
const s = () => {
  if (!state) throw new Error('dashboard not started');
  return state;
};

t.before(async () => {
  const c = getCluster();
  if (!UPDATE_SCREENSHOTS) SCREENSHOTS = tempShots = await fs.mkdtemp('/var/tmp/stevedore-dashboard-shots-');
  // The front end's own build (lib DOM): what scripts/setup.sh runs after the main one.
  const build = await run(process.execPath, [path.join(REPO, 'node_modules/typescript/bin/tsc'), '-p', path.join(REPO, 'dashboard/web/tsconfig.json')]);
  if (build.code !== 0) throw new Error(`building the dashboard front end failed:\n${build.stdout}${build.stderr}`);
  const dashboard = spawn(process.execPath, [CLI, 'dashboard', '--kubeconfig', c.kubeconfig, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  dashboardProcess = dashboard;
  let out = '';
  dashboard.stdout!.on('data', (d) => (out += d));
  dashboard.stderr!.on('data', (d) => (out += d));
  const loginUrl = await eventually('the login address on stdout', async () => /(http:\/\/127\.0\.0\.1:\d+\/login\?token=[\w-]+)/.exec(out)?.[1], 20_000);
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  launchedBrowser = browser;
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  const dialogs: string[] = [];
  const cspViolations: string[] = [];
  context.on('page', (p) => watchPage(p, dialogs, cspViolations));
  watchPage(page, dialogs, cspViolations);
  state = { dashboard, url: new URL(loginUrl).origin, loginUrl, browser, context, page, dialogs, cspViolations };
});

function watchPage(p: Page, dialogs: string[], cspViolations: string[]): void {
  p.on('dialog', (d) => { dialogs.push(d.message()); void d.dismiss(); });
  p.on('console', (m) => { if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text()); });
}

t.after(async () => {
  if (tempShots) await fs.rm(tempShots, { recursive: true, force: true });
  await launchedBrowser?.close();
  const d = dashboardProcess;
  if (d && d.exitCode === null && d.signalCode === null) {
    const exited = new Promise((r) => d.once('exit', r));
    d.kill('SIGTERM');
    await exited;
  }
});

const text = (p: Page, selector: string) => p.locator(selector).innerText();
const shot = (p: Page, name: string, fullPage = false) => p.screenshot({ path: path.join(SCREENSHOTS, name), fullPage });

t('the one-time address signs in once; nothing answers without the cookie', async () => {
  const { page, loginUrl, url, browser } = s();
  await fs.mkdir(SCREENSHOTS, { recursive: true });
  const resp = await page.goto(loginUrl);
  assert.is(resp?.status(), 200);
  assert.is(new URL(page.url()).pathname, '/', 'the token leaves the address bar');
  const cookies = await s().context.cookies();
  assert.is(cookies.length, 1);
  assert.ok(cookies[0]!.httpOnly, 'HttpOnly');
  assert.is(cookies[0]!.sameSite, 'Strict');
  assert.match(resp!.headers()['content-security-policy'] ?? '', /default-src 'self'; script-src 'self'/);
  await page.getByRole('link', { name: 'e2e-node' }).waitFor();

  // Another browser: the same address is spent, and without the cookie every page and API is refused.
  const stranger = await browser.newContext();
  try {
    const p = await stranger.newPage();
    const again = await p.goto(loginUrl);
    assert.is(again?.status(), 401);
    assert.match(await p.locator('body').innerText(), /already used/);
    for (const at of ['/', '/index.html', '/terminal.html', '/app/app.js', '/dashboard-api/whoami', '/k8s/api/v1/pods', '/k8s/api/v1/namespaces/default/pods/demo/log']) {
      const r = await stranger.request.get(`${url}${at}`);
      assert.is(r.status(), 401, at);
    }
    assert.is((await stranger.request.delete(`${url}/k8s/api/v1/namespaces/default/pods/demo`)).status(), 401);
    assert.is((await stranger.cookies()).length, 0);
  } finally {
    await stranger.close();
  }
});

t('overview: the node with Ready, capacity, runtime and stage1 labels', async () => {
  const c = getCluster();
  const { page } = s();
  await page.goto(`${s().url}/#/`);
  const row = page.locator('table.nodes tbody tr', { hasText: c.nodeName });
  await row.waitFor();
  const cells = await row.locator('td').allInnerTexts();
  assert.is(cells[1], 'Ready');
  assert.match(cells[7]!, /^rkt:\/\//, 'containerRuntimeVersion');
  assert.is(cells[8], 'namespaces', 'the node\'s default stage1 label');
  await page.getByText(/Pods: \d+/).waitFor();
  await shot(page, 'overview.png');
});

t('the demo pod: its stage1 and units, and its logs growing live', async () => {
  const c = getCluster();
  const { page } = s();
  await c.k(['wait', '--for=condition=Ready', 'pod/demo', '--timeout=120s']);
  await page.goto(`${s().url}/#/pod/default/demo`);
  await page.locator('#pod-stage1', { hasText: 'namespaces' }).waitFor();
  assert.match(await text(page, '#pod-stage1'), /node's default/);
  const containers = await text(page, 'table.containers');
  assert.match(containers, /greeter[\s\S]*stevedore-[0-9a-f]{32}-greeter\.service/);
  assert.match(containers, /clock[\s\S]*stevedore-[0-9a-f]{32}-clock\.service/);
  const lines = page.locator('#log-lines .log-line');
  await lines.filter({ hasText: 'hello from stevedore' }).first().waitFor({ timeout: 20_000 });
  const before = await lines.count();
  const last = Number(/\((\d+)\)/.exec(await lines.last().innerText())?.[1]);
  // The greeter prints every 5 s: a line the page did not have when it loaded must arrive on the followed stream.
  await page.locator('#log-lines .log-line', { hasText: `hello from stevedore (${last + 1})` }).waitFor({ timeout: 15_000 });
  assert.ok((await lines.count()) > before);
  await shot(page, 'pod.png', true);
  // Per container: the clock's lines are dates, none of the greeter's.
  await page.selectOption('#log-container', 'clock');
  await page.waitForFunction(() => {
    const l = [...document.querySelectorAll('#log-lines .log-line')];
    return l.length > 0 && l.every((e) => !e.textContent!.includes('hello from'));
  });
});

t('node page: its pods and stage1', async () => {
  const c = getCluster();
  const { page } = s();
  await page.goto(`${s().url}/#/node/${c.nodeName}`);
  await page.locator('#node-pods table.pods', { hasText: 'demo' }).waitFor();
  assert.match(await page.locator('#node-stage1').textContent() ?? '', /Default stage1namespaces/);
  assert.match(await page.locator('#node-stage1').textContent() ?? '', /Stage1 policyforbids no stage1; host access \(fly, hostNetwork, hostPID, hostIPC, privileged, hostPath\) for namespaces kube-system/, 'the node\'s policy, from its agent\'s annotation');
  await shot(page, 'node.png');
});

t('scale a Deployment and restart its rollout from the UI; kubectl sees both', async () => {
  const c = getCluster();
  const { page } = s();
  await c.k(['apply', '-f', '-'], JSON.stringify({
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'default' },
    spec: { replicas: 1, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { nodeSelector: NOWHERE, containers: [{ name: 'c', image: 'busybox' }] } } },
  }));
  await page.goto(`${s().url}/#/workload/deployments/default/web`);
  await page.locator('#workload-pods tbody tr').first().waitFor();
  await page.fill('#scale-replicas', '3');
  await page.click('#scale-button');
  await page.getByText('Deployment default/web scaled to 3').waitFor();
  assert.is(await c.k(['get', 'deployment', 'web', '-o', 'jsonpath={.spec.replicas}']), '3');
  // The page follows the watch: three pods appear without a reload.
  await eventually('three pods listed', async () => (await page.locator('#workload-pods tbody tr').count()) === 3, 20_000);
  assert.match(await text(page, '#workload-ready'), /0\/3/);
  await page.click('#restart-button');
  await page.getByText('Deployment default/web restarted').waitFor();
  assert.match(await c.k(['get', 'deployment', 'web', '-o', 'jsonpath={.spec.template.metadata.annotations}']), /kubectl\.kubernetes\.io\/restartedAt/);
  // A bad count is refused in the page, not sent.
  await page.fill('#scale-replicas', '-1');
  await page.click('#scale-button');
  await page.getByText(/is not a replica count/).waitFor();
  assert.is(await c.k(['get', 'deployment', 'web', '-o', 'jsonpath={.spec.replicas}']), '3');
  await page.goto(`${s().url}/#/workloads`);
  await page.locator('#list-deployments', { hasText: 'web' }).waitFor();
  await shot(page, 'workloads.png');
});

t('a hostile annotation is shown as text and runs nothing; actions need the CSRF token', async () => {
  const c = getCluster();
  const { page, url, dialogs } = s();
  await c.k(['apply', '-f', '-'], JSON.stringify({
    apiVersion: 'v1', kind: 'Pod', metadata: { name: 'xss', namespace: 'default', annotations: { note: XSS }, labels: { 'evil': 'x' } },
    spec: { nodeSelector: NOWHERE, containers: [{ name: 'c', image: 'busybox' }] },
  }));
  await page.goto(`${url}/#/pod/default/xss`);
  await page.locator('#pod-annotations', { hasText: XSS }).waitFor();
  assert.is(await page.locator('#pod-annotations img').count(), 0, 'no element was made from the annotation');
  await page.goto(`${url}/#/workloads`);
  await page.locator('table.pods', { hasText: 'xss' }).waitFor();
  await page.waitForTimeout(500);
  assert.equal(dialogs, [], 'no script ran');
  assert.is(await page.evaluate(() => document.querySelectorAll('img').length), 0);

  // From the signed-in page itself: a write without the token is refused, with it the control plane answers.
  const noToken = await page.evaluate(async () => (await fetch('/k8s/api/v1/namespaces/default/pods/xss', { method: 'DELETE' })).status);
  assert.is(noToken, 403);
  const wrongToken = await page.evaluate(async () => (await fetch('/k8s/api/v1/namespaces/default/pods/xss', { method: 'DELETE', headers: { 'X-Stevedore-Csrf': 'guess' } })).status);
  assert.is(wrongToken, 403);
  assert.is((await c.kubectl(['get', 'pod', 'xss'])).code, 0, 'the pod is still there');
  // With the right token but from another origin (another program's page on 127.0.0.1 is the same site): refused.
  const token = await page.evaluate(async () => (await (await fetch('/dashboard-api/whoami')).json()).csrfToken as string);
  const cookie = (await s().context.cookies())[0]!;
  const foreign = await fetch(`${url}/k8s/api/v1/namespaces/default/pods/xss`, { method: 'DELETE', headers: { cookie: `${cookie.name}=${cookie.value}`, 'x-stevedore-csrf': token, origin: 'http://127.0.0.1:1' } });
  assert.is(foreign.status, 403);
  // Nor may such a page read through a WebSocket (not bound by CORS): the stream bridge checks the Origin too.
  const wsStatus = await new Promise<number>((resolve) => {
    const ws = new WebSocket(`${url.replace('http', 'ws')}/dashboard-api/stream?path=${encodeURIComponent('/api/v1/pods')}`, { headers: { cookie: `${cookie.name}=${cookie.value}`, origin: 'http://127.0.0.1:1' } });
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.on('open', () => { ws.close(); resolve(101); });
    ws.on('error', () => resolve(-1));
  });
  assert.is(wsStatus, 403);
  // Delete from the UI (two clicks, no browser dialog).
  await page.goto(`${url}/#/pod/default/xss`);
  await page.click('[data-action=delete]');
  await page.click('[data-action=confirm-delete]');
  await page.getByText('pod default/xss deleted').waitFor();
  await eventually('xss gone', async () => (await c.kubectl(['get', 'pod', 'xss'])).code !== 0, 20_000);
  assert.equal(dialogs, []);
});

t('exec terminal (xterm.js) in the demo pod', async () => {
  const { page, context, url } = s();
  await page.goto(`${url}/#/pod/default/demo`);
  await page.selectOption('#exec-container', 'greeter');
  const [term] = await Promise.all([context.waitForEvent('page'), page.click('#exec-button')]);
  await term.locator('.xterm-rows').waitFor();
  // The shell's prompt (xterm draws spaces as no-break spaces, rows without newlines).
  await term.waitForFunction(() => /[#$]/.test(document.querySelector('.xterm-rows')?.textContent ?? ''), undefined, { timeout: 20_000 });
  await term.keyboard.type('echo dash-$((6*7))\n');
  await term.locator('.xterm-rows', { hasText: 'dash-42' }).waitFor({ timeout: 10_000 });
  await term.screenshot({ path: path.join(SCREENSHOTS, 'terminal.png') });
  await term.keyboard.type('exit\n');
  await term.locator('.xterm-rows', { hasText: /exited|closed/ }).waitFor({ timeout: 10_000 });
  await term.close();
});

t('250 pods: the workloads page lists them all in under a second', async () => {
  const c = getCluster();
  const { page, url } = s();
  await c.k(['create', 'namespace', 'load']);
  const items = Array.from({ length: 250 }, (_, i) => ({
    apiVersion: 'v1', kind: 'Pod', metadata: { name: `load-${String(i).padStart(3, '0')}`, namespace: 'load', labels: { app: 'load' } },
    // Bound to a node that does not exist: nothing runs them.
    spec: { nodeName: 'ghost-node', containers: [{ name: 'c', image: 'busybox' }] },
  }));
  await c.k(['create', '-f', '-'], items.map((i) => JSON.stringify(i)).join('\n'));
  await page.goto(`${url}/#/`);
  await page.getByText(/Pods: \d+/).waitFor();
  const timings: number[] = [];
  for (let i = 0; i < 3; i++) {
    const started = Date.now();
    await page.goto(`${url}/#/workloads`, { waitUntil: 'commit' });
    await page.reload({ waitUntil: 'commit' });
    await page.waitForFunction(() => document.querySelectorAll('table.pods tbody tr').length >= 250 + 1);
    timings.push(Date.now() - started);
  }
  timings.sort((a, b) => a - b);
  console.log(`  workloads page with ${await page.locator('table.pods tbody tr').count()} pods: ${timings.join(', ')} ms`);
  assert.ok(timings[1]! < 1000, `median load ${timings[1]} ms`);
  // The node page of the node they are bound to lists them all as fast.
  const nodeStarted = Date.now();
  await page.goto(`${url}/#/node/ghost-node`, { waitUntil: 'commit' });
  await page.reload({ waitUntil: 'commit' });
  await page.waitForFunction(() => document.querySelectorAll('#node-pods table.pods tbody tr').length === 250);
  const nodeMs = Date.now() - nodeStarted;
  console.log(`  node page with 250 pods: ${nodeMs} ms`);
  assert.ok(nodeMs < 1000, `node page load ${nodeMs} ms`);
  assert.match(await text(page, '#node-details'), /node ghost-node is not registered/);
  // The overview's screenshot again, now with many pods and (once the node has two samples) its usage.
  await page.goto(`${url}/#/`);
  await page.waitForFunction(() => !/^–$/.test(document.querySelectorAll('table.nodes tbody td')[4]?.textContent ?? '–'), undefined, { timeout: 30_000 }).catch(() => undefined);
  await shot(page, 'overview.png');
  await page.goto(`${url}/#/workloads`);
  await page.waitForFunction(() => document.querySelectorAll('table.pods tbody tr').length >= 250 + 1);
  // The live list follows: a pod deleted by kubectl leaves the page without a reload.
  await c.k(['delete', 'pod', '-n', 'load', 'load-000', '--wait=false']);
  await page.locator('table.pods tbody tr', { hasText: 'load-000' }).waitFor({ state: 'detached', timeout: 10_000 });
  await c.k(['delete', 'namespace', 'load', '--wait=false']);
});

t('no Content-Security-Policy violation on any page', async () => {
  assert.equal(s().cspViolations, []);
});

t.run();
