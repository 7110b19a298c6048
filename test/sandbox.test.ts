import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readdirSync, readFileSync, writeFileSync, rmSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import dbus from 'dbus-next';
import { execInSandbox, getSandbox, listSandboxes, startSandbox, stopSandbox } from '../sandbox/sandbox.js';
import type { SandboxInfo } from '../sandbox/types.js';
import { UserError } from '../common/errors.js';
import { TEST_STATE_ROOT, uniqueSandboxName, withSandbox, type TestSandbox } from './helpers/sandbox.js';

const marker = `/tmp/stevedore-sandbox-test-marker-${process.pid}`;
let sb: TestSandbox;
let info: SandboxInfo;
// Host-wide sysctls systemd raises at startup; the sandbox must leave them alone.
const hostSysctls = ['/proc/sys/fs/file-max', '/proc/sys/net/unix/max_dgram_qlen'];
const readSysctls = () => hostSysctls.map((f) => readFileSync(f, 'utf8').trim());
let sysctlsBefore: string[];

interface PropertiesIface extends dbus.ClientInterface {
  Get(iface: string, prop: string): Promise<dbus.Variant>;
}
interface ManagerIface extends dbus.ClientInterface {
  Subscribe(): Promise<void>;
  StartTransientUnit(name: string, mode: string, props: [string, dbus.Variant][], aux: unknown[]): Promise<string>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function withBus<T>(busAddress: string, fn: (bus: dbus.MessageBus) => Promise<T>): Promise<T> {
  const bus = dbus.sessionBus({ busAddress });
  bus.on('error', () => {});
  return fn(bus).finally(() => bus.disconnect());
}

async function systemState(busAddress: string): Promise<string> {
  return withBus(busAddress, async (bus) => {
    const obj = await bus.getProxyObject('org.freedesktop.systemd1', '/org/freedesktop/systemd1');
    const props = obj.getInterface<PropertiesIface>('org.freedesktop.DBus.Properties');
    return String((await props.Get('org.freedesktop.systemd1.Manager', 'SystemState')).value);
  });
}

/** Every directory under /sys/fs/cgroup whose name starts with prefix (any depth, every hierarchy). */
function cgroupDirsNamed(prefix: string, dir = '/sys/fs/cgroup'): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries
    .filter((e) => e.isDirectory())
    .flatMap((e) => {
      const p = path.join(dir, e.name);
      return [...(e.name.startsWith(prefix) ? [p] : []), ...cgroupDirsNamed(prefix, p)];
    });
}

/** Everything stop promises to remove; returns what is left, empty when clean. */
function leftovers(i: SandboxInfo): string[] {
  const left: string[] = [];
  if (existsSync(`/proc/${i.pid}`)) left.push(`process ${i.pid}`);
  if (existsSync(`/proc/${i.launcherPid}`) && !readFileSync(`/proc/${i.launcherPid}/stat`, 'utf8').includes(') Z ')) left.push(`launcher ${i.launcherPid}`);
  left.push(...cgroupDirsNamed(`stevedore-sandbox-${i.name}-`));
  if (existsSync(i.stateDir)) left.push(i.stateDir);
  left.push(...readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(i.stateDir)));
  return left;
}

test.before(async () => {
  writeFileSync(marker, 'keep me\n');
  sysctlsBefore = readSysctls();
  sb = await withSandbox();
  info = sb.info;
});

test.after(async () => {
  await sb?.stop();
  rmSync(marker, { force: true });
});

test('boots: systemd is PID 1 of the sandbox and getSandbox finds it', async () => {
  assert.ok(info.pid > 1);
  assert.is(readFileSync(`/proc/${info.pid}/comm`, 'utf8').trim(), 'systemd');
  const status = readFileSync(`/proc/${info.pid}/status`, 'utf8');
  assert.match(status, /^NSpid:\s+\d+\s+1$/m, 'PID 1 in its own pid namespace');
  const found = await getSandbox(info.name, sb.stateRoot);
  assert.equal(found, info);
  assert.ok(existsSync(path.join(info.stateDir, 'dbus', 'system_bus_socket')));
  assert.is(readFileSync(path.join(info.stateDir, 'pid'), 'utf8').trim(), String(info.pid));
});

test('host sysctls are untouched by the boot, yet writable from inside', async () => {
  assert.equal(readSysctls(), sysctlsBefore);
  const r = await execInSandbox(info.name, ['sh', '-c', 'cat /proc/sys/net/unix/max_dgram_qlen > /proc/sys/net/unix/max_dgram_qlen'], { stateRoot: sb.stateRoot, stdio: 'pipe' });
  assert.is(r.exitCode, 0, r.stderr);
});

test('SystemState read over D-Bus from the host is running', async () => {
  assert.is(await systemState(info.busAddress), 'running');
});

test('a transient unit started over D-Bus logs to the journal the host can read', async () => {
  const word = `hello-${randomBytes(4).toString('hex')}`;
  const unit = `stv-test-${randomBytes(4).toString('hex')}.service`;
  const jobResult = await withBus(info.busAddress, async (bus) => {
    const obj = await bus.getProxyObject('org.freedesktop.systemd1', '/org/freedesktop/systemd1');
    const manager = obj.getInterface<ManagerIface>('org.freedesktop.systemd1.Manager');
    await manager.Subscribe();
    const done = new Promise<string>((resolve) => {
      manager.on('JobRemoved', (_id: number, _job: string, name: string, result: string) => {
        if (name === unit) resolve(result);
      });
    });
    await manager.StartTransientUnit(unit, 'replace', [
      ['Description', new dbus.Variant('s', 'sandbox test unit')],
      ['ExecStart', new dbus.Variant('a(sasb)', [['/bin/sh', ['/bin/sh', '-c', `echo ${word}`], false]])],
    ], []);
    return done;
  });
  assert.is(jobResult, 'done');
  let out = '';
  for (let i = 0; i < 100 && !out.includes(word); i++) {
    const r = await execa('journalctl', ['-D', info.journalDir, '-o', 'cat', `_SYSTEMD_UNIT=${unit}`], { reject: false });
    out = r.stdout;
    if (!out.includes(word)) await sleep(50);
  }
  assert.ok(out.split('\n').includes(word), `journal of ${unit} should hold ${word}, got: ${JSON.stringify(out)}`);
  assert.ok(existsSync(path.join(info.journalDir, info.machineId)), 'journal files under <journalDir>/<machine-id>/');
});

test('execInSandbox passes exit codes through, including signals', async () => {
  assert.is((await execInSandbox(info.name, ['sh', '-c', 'exit 7'], { stateRoot: sb.stateRoot, stdio: 'pipe' })).exitCode, 7);
  assert.is((await execInSandbox(info.name, ['true'], { stateRoot: sb.stateRoot, stdio: 'pipe' })).exitCode, 0);
  assert.is((await execInSandbox(info.name, ['sh', '-c', 'kill -TERM $$'], { stateRoot: sb.stateRoot, stdio: 'pipe' })).exitCode, 128 + 15);
  const r = await execInSandbox(info.name, ['sh', '-c', 'echo out; echo err >&2; exit 3'], { stateRoot: sb.stateRoot, stdio: 'pipe' });
  assert.equal(r, { exitCode: 3, stdout: 'out\n', stderr: 'err\n' });
});

test('inside: PID 1 is systemd, hostname is the sandbox name, the tools talk to the sandbox', async () => {
  const run = (cmd: string) => execInSandbox(info.name, ['sh', '-c', cmd], { stateRoot: sb.stateRoot, stdio: 'pipe' });
  assert.is((await run('cat /proc/1/comm')).stdout, 'systemd\n');
  assert.is((await run('hostname')).stdout, `${info.name}\n`);
  assert.is((await run('cat /etc/machine-id')).stdout, `${info.machineId}\n`);
  assert.is((await run('systemctl is-system-running')).stdout, 'running\n');
  const bus = await run('busctl --no-pager get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager SystemState');
  assert.is(bus.stdout, 's "running"\n', bus.stderr);
  const env = await execInSandbox(info.name, ['sh', '-c', 'echo "${DBUS_SYSTEM_BUS_ADDRESS:-unset}"; pwd'], { stateRoot: sb.stateRoot, stdio: 'pipe', cwd: '/nonexistent-stevedore' });
  assert.is(env.stdout, 'unset\n/\n', 'no host D-Bus address leaks in; a cwd missing inside falls back to /');
  const withEnv = await execInSandbox(info.name, ['sh', '-c', 'echo "$FOO"; pwd'], { stateRoot: sb.stateRoot, stdio: 'pipe', env: { FOO: 'bar' }, cwd: '/usr' });
  assert.is(withEnv.stdout, 'bar\n/usr\n');
});

test('only journald and D-Bus run inside (the host default target was not booted)', async () => {
  const r = await execInSandbox(info.name, ['systemctl', 'list-units', '--no-legend', '--plain', '--state=running', '--type=service'], { stateRoot: sb.stateRoot, stdio: 'pipe' });
  const services = (r.stdout ?? '').split('\n').filter(Boolean).map((l) => l.split(/\s+/)[0]).sort();
  assert.equal(services, ['dbus.service', 'systemd-journald.service']);
});

test('listSandboxes lists it; a second sandbox runs beside it', async () => {
  const other = await withSandbox();
  try {
    assert.is.not(other.info.pid, info.pid);
    assert.is.not(other.info.machineId, info.machineId);
    assert.is(await systemState(other.info.busAddress), 'running');
    assert.is(await systemState(info.busAddress), 'running');
    const names = (await listSandboxes(TEST_STATE_ROOT)).map((s) => s.name);
    assert.ok(names.includes(info.name) && names.includes(other.info.name), `listed: ${names.join(', ')}`);
    const host = await execInSandbox(other.info.name, ['hostname'], { stateRoot: other.stateRoot, stdio: 'pipe' });
    assert.is(host.stdout, `${other.info.name}\n`);
  } finally {
    await other.stop();
  }
  assert.equal(leftovers(other.info), []);
  assert.is(await systemState(info.busAddress), 'running', 'stopping one sandbox leaves the other alone');
});

test('starting a name that is already running is refused', async () => {
  try {
    await startSandbox({ name: info.name, stateRoot: sb.stateRoot });
    assert.unreachable('second start should fail');
  } catch (err) {
    assert.instance(err, UserError);
    assert.match((err as Error).message, /already running/);
  }
  assert.is(await systemState(info.busAddress), 'running');
});

test('stop removes processes, cgroups, state dir and mounts; the host /tmp survives', async () => {
  assert.ok(cgroupDirsNamed(`stevedore-sandbox-${info.name}-`).length >= 2, 'cgroups exist while running');
  await sb.stop();
  assert.equal(leftovers(info), []);
  assert.is(await getSandbox(info.name, sb.stateRoot), undefined);
  assert.is(readFileSync(marker, 'utf8'), 'keep me\n', 'host /tmp marker survives boot and stop');
});

test('stop is idempotent and cleans up after a sandbox killed behind its back', async () => {
  await stopSandbox(info.name, sb.stateRoot);
  await stopSandbox(uniqueSandboxName('never'), TEST_STATE_ROOT);
  const victim = await withSandbox();
  process.kill(victim.info.pid, 'SIGKILL');
  for (let i = 0; i < 200 && (await getSandbox(victim.info.name, victim.stateRoot)); i++) await sleep(10);
  assert.is(await getSandbox(victim.info.name, victim.stateRoot), undefined, 'a dead sandbox is not reported');
  await victim.stop();
  await victim.stop();
  assert.equal(leftovers(victim.info), []);
});

test('a boot that times out throws a UserError with the boot log and leaves nothing', async () => {
  const name = uniqueSandboxName('timeout');
  delete process.env.STEVEDORE_SANDBOX_KEEP_FAILED;
  mkdirSync(TEST_STATE_ROOT, { recursive: true });
  try {
    await startSandbox({ name, stateRoot: TEST_STATE_ROOT, timeoutMs: 1 });
    await stopSandbox(name, TEST_STATE_ROOT);
    assert.unreachable('a 1 ms boot cannot succeed');
  } catch (err) {
    assert.instance(err, UserError);
    assert.match((err as UserError).hint ?? '', /boot\.log/);
  }
  assert.equal(cgroupDirsNamed(`stevedore-sandbox-${name}-`), []);
  assert.not.ok(existsSync(path.join(TEST_STATE_ROOT, name)));
});

test.run();
