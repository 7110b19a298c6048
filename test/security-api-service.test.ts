/**
 * The api-service as installed (`stevedore api-service install --now`, the
 * real unit) in a node sandbox: it runs as its own unprivileged user, reads
 * pods, exit codes and logs through its groups, serves them on a unix
 * socket only root and the `stevedore` group may connect to, and cannot read
 * what the node keeps root-only in the data directory. The sandbox has a
 * private /etc (sandbox/boot.sh), so the user and group the install creates
 * never reach the host's user database.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { execInSandbox } from '../sandbox/sandbox.js';
import { withSandbox, type TestSandbox } from './helpers/sandbox.js';
import { apiClient, type ApiClient } from './helpers/api-client.js';
import { eventually as waitFor } from './helpers/assert.js';

const CLI = path.resolve(new URL('../../bin/stevedore.js', import.meta.url).pathname);
const UNIT = 'stevedore-api-service.service';
const SOCKET = '/run/stevedore-api/api.sock';
const NOBODY = 65534;

let sb: TestSandbox;
let base = '';
let dataDir = '';
let api: ApiClient | undefined;
let installed = false;
let gid = 0;
const pods: string[] = [];

async function inside(argv: string[], okCodes = [0]): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await execInSandbox(sb.info.name, argv, { stateRoot: sb.stateRoot, stdio: 'pipe' });
  if (!okCodes.includes(r.exitCode)) throw new Error(`${argv.join(' ')} exited ${r.exitCode}: ${r.stderr}`);
  return { code: r.exitCode, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}
const cli = async (...args: string[]) => (await inside([process.execPath, CLI, '--dir', dataDir, ...args])).stdout;
const mainPid = async () => Number((await inside(['systemctl', 'show', '-p', 'MainPID', '--value', UNIT])).stdout.trim());
/** The sandbox's /run as the host sees it: through its PID 1's root. */
const hostPathOfSocket = () => `/proc/${sb.info.pid}/root${SOCKET}`;

/** A tiny client run inside the sandbox as `creds` (setpriv arguments): prints "connected" or the errno code. */
const CONNECT_PROBE = `const s=require('net').connect(process.argv[1]);s.on('connect',()=>{console.log('connected');s.destroy()});s.on('error',e=>console.log(e.code))`;
async function connectAs(creds: string[]): Promise<string> {
  return (await inside(['setpriv', ...creds, '--', process.execPath, '-e', CONNECT_PROBE, SOCKET])).stdout.trim();
}

test.before(async () => {
  sb = await withSandbox();
  // Not under /tmp: the unit's PrivateTmp= stays on, as for /var/lib/stevedore.
  base = fs.mkdtempSync('/var/lib/stevedore-apisec-');
  fs.chmodSync(base, 0o755);
  dataDir = path.join(base, 'data');
  await cli('image', 'import-demo');
  // A root-only secret where the node keeps its own (agent/: the node API's TLS key).
  fs.mkdirSync(path.join(dataDir, 'agent'), { mode: 0o700 });
  fs.writeFileSync(path.join(dataDir, 'agent', 'secret.key'), 'do not read\n', { mode: 0o600 });
  // A pod that exists before the install: the install opens it to the group too.
  const early = path.join(base, 'early.json');
  fs.writeFileSync(early, JSON.stringify({
    apiVersion: 'v1', kind: 'Pod', metadata: { name: 'early', namespace: 'apisec' },
    spec: { restartPolicy: 'Never', terminationGracePeriodSeconds: 1, containers: [{ name: 'sleeper', image: 'localhost/busybox:latest', command: ['/bin/sh', '-c', 'exec sleep 3600'] }] },
  }));
  pods.push((await cli('pod', 'run', '-f', early, '--stage1', 'namespaces')).trim());
  installed = true;
  await cli('api-service', 'install', '--now');
  gid = Number((await inside(['getent', 'group', 'stevedore'])).stdout.split(':')[2]);
  await waitFor('the api-service socket', async () => fs.existsSync(hostPathOfSocket()));
  api = apiClient(`unix:${hostPathOfSocket()}`);
});

test.after(async () => {
  const step = async (what: string, fn: () => unknown) => {
    try { await fn(); } catch (err) { console.error(`cleanup: ${what} failed:`, err); }
  };
  await step('close the client', () => api?.close());
  for (const uuid of pods) await step(`pod rm ${uuid}`, () => cli('pod', 'rm', '--force', uuid));
  if (installed) await step('remove the unit', () => inside(['sh', '-c', `systemctl disable --now ${UNIT}; rm -f /etc/systemd/system/${UNIT}; systemctl daemon-reload`]));
  await step('stop the sandbox', () => sb?.stop());
  await step('remove the data dir', () => base && fs.rmSync(base, { recursive: true, force: true }));
});

test('the installed api-service runs as stevedore-api, not root, with the stevedore and systemd-journal groups and no capabilities', async () => {
  const pid = await mainPid();
  assert.ok(pid > 0, 'the unit has a main process');
  // MainPID is a PID of the sandbox's pid namespace: read it there.
  const status = (await inside(['cat', `/proc/${pid}/status`])).stdout;
  const uid = Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
  assert.is.not(uid, 0, 'not uid 0');
  assert.match(status, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'), 'real, effective, saved and fs uid all the service user');
  assert.match(status, new RegExp(`^Gid:\\s+${gid}\\s+${gid}\\s+${gid}\\s+${gid}$`, 'm'), 'primary group stevedore');
  const journalGid = Number((await inside(['getent', 'group', 'systemd-journal'])).stdout.split(':')[2]);
  assert.equal(/^Groups:\s*(.*)$/m.exec(status)![1]!.trim().split(/\s+/).map(Number).sort(), [gid, journalGid].sort());
  assert.match(status, /^CapEff:\s+0+$/m);
  assert.match(status, /^CapBnd:\s+0+$/m);
  assert.match(status, /^NoNewPrivs:\s+1$/m);
  assert.match(status, /^Seccomp:\s+2$/m, 'a system call filter');
  assert.is((await inside(['getent', 'passwd', String(uid)])).stdout.split(':')[0], 'stevedore-api');
  // The host's user database is untouched: the sandbox's /etc is its own.
  assert.not.match(fs.readFileSync('/etc/passwd', 'utf8'), /^stevedore-api:/m);
});

test('the socket is 0660, owned by the service user and group stevedore', () => {
  const st = fs.statSync(hostPathOfSocket());
  assert.ok(st.isSocket());
  assert.is((st.mode & 0o7777).toString(8), '660');
  assert.is(st.gid, gid);
  assert.is.not(st.uid, 0);
});

test('unprivileged: a uid outside the group cannot connect (EACCES); the same uid in the group can', async () => {
  assert.is(await connectAs([`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups']), 'EACCES');
  // The socket's own mode, not only its folder's (0750): with the folder opened to others it still refuses them.
  await inside(['chmod', 'o+x', path.dirname(SOCKET)]);
  try {
    assert.is(await connectAs([`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups']), 'EACCES', 'refused by the socket\'s 0660');
  } finally {
    await inside(['chmod', 'o-x', path.dirname(SOCKET)]);
  }
  assert.is(await connectAs([`--reuid=${NOBODY}`, `--regid=${NOBODY}`, `--groups=${gid}`]), 'connected', 'adding a user to the group grants access');
});

test('through the socket it lists pods, reads exit codes, an app\'s logs (also followed) and events', async () => {
  const events = api!.stream('ListenEvents', { filter: {} });
  await events.ready;
  const file = path.join(base, 'talker.json');
  fs.writeFileSync(file, JSON.stringify({
    apiVersion: 'v1', kind: 'Pod', metadata: { name: 'talker', namespace: 'apisec' },
    spec: {
      restartPolicy: 'Never', terminationGracePeriodSeconds: 1,
      containers: [
        { name: 'says', image: 'localhost/busybox:latest', command: ['/bin/sh', '-c', 'echo secret-free-hello; exit 3'] },
        { name: 'waits', image: 'localhost/busybox:latest', command: ['/bin/sh', '-c', 'exec sleep 3600'] },
      ],
    },
  }));
  const uuid = (await cli('pod', 'run', '-f', file, '--stage1', 'namespaces')).trim();
  pods.push(uuid);
  const listed = await waitFor('both pods listed', async () => {
    const r = await api!.call('ListPods', { detail: true });
    return r.pods.length === 2 && r.pods;
  });
  assert.equal(listed.map((p: any) => p.id).sort(), [...pods].sort());
  const talker = listed.find((p: any) => p.id === uuid);
  assert.is(talker.state, 'POD_STATE_RUNNING', 'unit state over D-Bus as an unprivileged client');
  assert.ok(JSON.parse(Buffer.from(talker.manifest).toString('utf8')).pod.metadata.name === 'talker', 'pod.json readable');
  const says = await waitFor('the app to exit', async () => {
    const app = (await api!.call('InspectPod', { id: uuid })).pod.apps.find((a: any) => a.name === 'says');
    return app?.state === 'APP_STATE_EXITED' && app;
  });
  assert.is(says.exit_code, 3, 'exit record readable');
  const lines = await waitFor('the app\'s log line', async () => {
    const s = api!.stream('GetLogs', { pod_id: uuid, app_name: 'says' });
    const st = await s.done;
    assert.is(st.code, grpc.status.OK, (st as grpc.ServiceError).details);
    const got = s.messages.flatMap((m) => m.lines as string[]);
    return got.length > 0 && got;
  });
  assert.equal(lines.map((l: string) => l.replace(/^\S+ MESSAGE=/, '')), ['secret-free-hello'], 'the journal, through systemd-journal');
  // Watching folders (inotify) and the journal (journalctl --follow) work under the unit's system call filter.
  await events.until((ms) => ms.flatMap((m) => m.events).some((e: any) => e.id === uuid && e.type === 'EVENT_TYPE_APP_EXITED' && e.from === 'says'), 20_000);
  events.call.cancel();
  const follow = api!.stream('GetLogs', { pod_id: uuid, app_name: 'says', follow: true });
  await follow.until((ms) => ms.flatMap((m) => m.lines).length > 0, 20_000);
  follow.call.cancel();
});

test('a pod created before the install and pods created after are folders of group stevedore, closed to others', () => {
  for (const uuid of pods) {
    const dir = path.join(dataDir, 'pods', 'run', uuid);
    const st = fs.statSync(dir);
    assert.is(st.gid, gid, `${uuid}'s folder has the group`);
    assert.is((st.mode & 0o7777).toString(8), '750');
  }
  const run = fs.statSync(path.join(dataDir, 'pods', 'run'));
  assert.is((run.mode & 0o7777).toString(8), '2750');
  assert.is((fs.statSync(path.join(dataDir, 'images', 'layers')).mode & 0o777).toString(8), '700', 'extracted layers stay root-only');
});

test('the service\'s identity cannot read a root-only file in the data dir, nor write the data dir', async () => {
  const status = (await inside(['cat', `/proc/${await mainPid()}/status`])).stdout;
  const uid = /^Uid:\s+(\d+)/m.exec(status)![1]!;
  const groups = /^Groups:\s*(.*)$/m.exec(status)![1]!.trim().split(/\s+/).join(',');
  const as = ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, `--groups=${groups}`, '--'];
  const secret = await inside([...as, 'cat', path.join(dataDir, 'agent', 'secret.key')], [0, 1]);
  assert.is(secret.code, 1);
  assert.match(secret.stderr, /Permission denied/);
  assert.is((await inside([...as, 'cat', path.join(dataDir, 'pods', 'run', pods[0]!, 'pod.json')])).code, 0, 'what it must read, it reads');
  const write = await inside([...as, 'sh', '-c', `echo x > ${path.join(dataDir, 'pods', 'run', 'intruder')}`], [0, 1, 2]);
  assert.is.not(write.code, 0);
  assert.not.ok(fs.existsSync(path.join(dataDir, 'pods', 'run', 'intruder')));
});

test('an unprivileged user outside the group cannot read pod manifests from the data dir either', async () => {
  const r = await inside(['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', 'cat', path.join(dataDir, 'pods', 'run', pods[0]!, 'pod.json')], [0, 1]);
  assert.is(r.code, 1);
  assert.match(r.stderr, /Permission denied/);
});

test.run();
