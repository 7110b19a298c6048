/**
 * Node sandbox lifecycle: boot a real systemd as PID 1 of private namespaces
 * (see boot.sh and types.ts), find it again, run commands in it, tear it down
 * without leaving processes, cgroups, mounts or files on the host.
 */
import { spawn } from 'node:child_process';
import { openSync, closeSync, constants as fsConstants } from 'node:fs';
import * as fs from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { UserError, InvalidInput, errnoCode } from '../common/errors.js';
import { atomicWrite, atomicWriteJson, readJsonIfExists, readdirOrEmpty } from '../common/fsutil.js';
import { createLogger } from '../common/log.js';
import type { SandboxInfo, SandboxStartOptions } from './types.js';
import { ownCgroupDirs, createCgroups, removeCgroupTree } from './cgroups.js';
import { readProc, isAlive, childrenOf, nsPids, killQuietly, sleep, waitGone } from './proc.js';
import { readSystemState } from './bus.js';
import { createSandboxNetwork, hostVethOf, netnsFile, removeSandboxNetwork, validateNetwork } from './network.js';

export type { SandboxInfo, SandboxStartOptions } from './types.js';

export const DEFAULT_SANDBOX_NAME = 'default';
export const DEFAULT_STATE_ROOT = '/run/stevedore/sandboxes';
const DEFAULT_BOOT_TIMEOUT_MS = 30_000;
const CGROUP_PREFIX = 'stevedore-sandbox-';
// Compiled code runs from dist/sandbox/; the script is shipped as source.
const BOOT_SCRIPT = fileURLToPath(new URL('../../sandbox/boot.sh', import.meta.url));
// The name becomes the hostname and part of a path and of a cgroup name.
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9-]{0,62}$/;
const PATH_ENV = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const log = createLogger('sandbox');

/** info.json: the public SandboxInfo plus what stop needs to recognise our processes. */
interface SandboxRecord extends SandboxInfo {
  /** /proc starttime of pid and launcherPid: guards against killing a recycled PID. */
  pidStartTime: string;
  launcherStartTime: string;
}

export interface ExecOptions {
  /** 'inherit' (default) behaves like `docker exec`; 'pipe' captures stdout and stderr. */
  stdio?: 'inherit' | 'pipe';
  /** Added to a minimal environment (PATH, HOME, TERM, LANG), not to the caller's. */
  env?: Record<string, string>;
  /** Working directory inside; falls back to / when it does not exist there. Default: the caller's. */
  cwd?: string;
  stateRoot?: string;
}

export interface ExecResult {
  /** The command's exit code, or 128 + signal number if it was killed by a signal. */
  exitCode: number;
  stdout?: string;
  stderr?: string;
}

function validateName(name: string): string {
  if (!NAME_RE.test(name)) {
    throw new InvalidInput(`invalid sandbox name ${JSON.stringify(name)}`, 'use 1-63 letters, digits and dashes, starting with a letter or digit');
  }
  return name;
}

function stateDirOf(name: string, stateRoot: string): string {
  return path.join(path.resolve(stateRoot), validateName(name));
}

async function readRecord(stateDir: string): Promise<SandboxRecord | undefined> {
  try {
    return await readJsonIfExists<SandboxRecord>(path.join(stateDir, 'info.json'));
  } catch (err) {
    // A torn or foreign info.json means nothing is known to be running.
    log.warn({ err, stateDir }, 'unreadable info.json');
    return undefined;
  }
}

function publicInfo(r: SandboxRecord): SandboxInfo {
  const { pidStartTime: _p, launcherStartTime: _l, ...info } = r;
  return info;
}

/** The PID still is the process we started (not a recycled PID), alive, and has the expected comm. */
async function isOurProcess(pid: number, startTime: string, comm?: string): Promise<boolean> {
  const p = await readProc(pid);
  return p !== undefined && p.startTime === startTime && p.state !== 'Z' && (comm === undefined || p.comm === comm);
}

export async function getSandbox(name = DEFAULT_SANDBOX_NAME, stateRoot = DEFAULT_STATE_ROOT): Promise<SandboxInfo | undefined> {
  const record = await readRecord(stateDirOf(name, stateRoot));
  if (!record || !(await isOurProcess(record.pid, record.pidStartTime, 'systemd'))) return undefined;
  return publicInfo(record);
}

/** Running sandboxes under stateRoot (leftovers of dead ones are not listed; stop cleans them). */
export async function listSandboxes(stateRoot = DEFAULT_STATE_ROOT): Promise<SandboxInfo[]> {
  const names = await readdirOrEmpty(stateRoot);
  const out: SandboxInfo[] = [];
  for (const name of names.filter((n) => NAME_RE.test(n)).sort()) {
    const info = await getSandbox(name, stateRoot);
    if (info) out.push(info);
  }
  return out;
}

/**
 * Stops the sandbox and removes everything it owns. Idempotent: a missing or
 * already dead sandbox only has its leftovers (cgroups, state dir) removed.
 */
export async function stopSandbox(name = DEFAULT_SANDBOX_NAME, stateRoot = DEFAULT_STATE_ROOT): Promise<void> {
  const stateDir = stateDirOf(name, stateRoot);
  const record = await readRecord(stateDir);
  if (record) {
    await killSandboxProcesses(record);
    for (const dir of record.cgroupDirs ?? []) {
      // Never walk (and kill inside) a cgroup that is not one of ours, whatever info.json says.
      if (!path.basename(dir).startsWith(`${CGROUP_PREFIX}${record.name}-`)) continue;
      await removeCgroupTree(dir);
    }
    if (record.network) await removeSandboxNetwork(record.network);
  }
  await fs.rm(stateDir, { recursive: true, force: true });
  log.info({ sandbox: name, stateDir }, 'sandbox stopped');
}

async function killSandboxProcesses(record: SandboxRecord): Promise<void> {
  // SIGKILL to PID 1 of the namespace takes every process inside with it.
  // Kill it before unshare, so that unshare (not the host's init, which may
  // reap late) reaps it and then exits by itself.
  const launcher = (await isOurProcess(record.launcherPid, record.launcherStartTime)) ? [record.launcherPid] : [];
  const inits = (await isOurProcess(record.pid, record.pidStartTime)) ? [record.pid] : [];
  // A boot that failed before recording pid: its init is still the launcher's child.
  if (inits.length === 0 && launcher.length > 0) inits.push(...(await innerInitsOf(record.launcherPid)));
  for (const pid of inits) killQuietly(pid);
  await waitGone(inits, 10_000);
  // unshare --kill-child: killing it also takes down an init we could not see.
  const grace = inits.length > 0 ? 500 : 0; // unshare exits by itself once its child is gone
  if (launcher.length > 0 && (await waitGone(launcher, grace)).length > 0) killQuietly(record.launcherPid);
  const left = await waitGone([...inits, ...launcher], 10_000);
  if (left.length > 0) throw new Error(`sandbox ${record.name}: processes ${left.join(', ')} survived SIGKILL for 10 s`);
}

/** mkdir of the state dir is the claim on the name: two starts cannot both win it. */
async function claimStateDir(name: string, stateRoot: string): Promise<string> {
  const stateDir = stateDirOf(name, stateRoot);
  await fs.mkdir(path.dirname(stateDir), { recursive: true, mode: 0o755 });
  try {
    await fs.mkdir(stateDir, { mode: 0o755 });
    return stateDir;
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') throw err;
  }
  const record = await readRecord(stateDir);
  const busy =
    (await getSandbox(name, stateRoot)) !== undefined ||
    (record !== undefined && (await isOurProcess(record.launcherPid, record.launcherStartTime)));
  if (busy) {
    throw new UserError(`sandbox ${name} is already running (or booting)`, {
      hint: `stop it first: stevedore sandbox stop ${name}, or pick another name`,
    });
  }
  log.info({ sandbox: name, stateDir }, 'removing leftovers of a dead sandbox');
  await stopSandbox(name, stateRoot);
  await fs.mkdir(stateDir, { mode: 0o755 });
  return stateDir;
}

export async function startSandbox(opts: SandboxStartOptions = {}): Promise<SandboxInfo> {
  const name = validateName(opts.name ?? DEFAULT_SANDBOX_NAME);
  const stateRoot = path.resolve(opts.stateRoot ?? DEFAULT_STATE_ROOT);
  const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS);
  const stateDir = await claimStateDir(name, stateRoot);
  try {
    const record = await prepareStateDir(name, stateDir, opts);
    await bootInto(record, deadline);
    log.info({ sandbox: name, pid: record.pid, ms: Date.now() - record.startedAt }, 'sandbox running');
    return publicInfo(record);
  } catch (err) {
    const tail = await bootLogTail(stateDir);
    // For post-mortems: leave the half-booted sandbox (processes, journal) in place.
    const keep = process.env.STEVEDORE_SANDBOX_KEEP_FAILED === '1';
    if (!keep) await stopSandbox(name, stateRoot).catch((e) => log.error({ err: e, sandbox: name }, 'cleanup after failed boot failed'));
    throw new UserError(`sandbox ${name} did not boot: ${(err as Error).message}`, {
      cause: err,
      hint:
        `last lines of ${path.join(stateDir, 'boot.log')} ` +
        (keep ? '(kept: STEVEDORE_SANDBOX_KEEP_FAILED=1; stop the sandbox when done)' : '(removed with the sandbox; set STEVEDORE_SANDBOX_KEEP_FAILED=1 to keep it)') +
        `:\n${tail || '(empty)'}\n` +
        `Check that you are root, that unshare/nsenter (util-linux) and /lib/systemd/systemd exist, and ` +
        `that cgroups are mounted under /sys/fs/cgroup. To watch a boot by hand see sandbox/README.md.`,
    });
  }
}

async function prepareStateDir(name: string, stateDir: string, opts: SandboxStartOptions): Promise<SandboxRecord> {
  const machineId = randomBytes(16).toString('hex');
  const record: SandboxRecord = {
    name,
    pid: 0,
    stateDir,
    busAddress: `unix:path=${path.join(stateDir, 'dbus', 'system_bus_socket')}`,
    journalDir: path.join(stateDir, 'journal'),
    machineId,
    startedAt: Date.now(),
    cgroupDirs: [],
    launcherPid: 0,
    pidStartTime: '',
    launcherStartTime: '',
  };
  for (const sub of ['dbus', 'journal', 'run']) await fs.mkdir(path.join(stateDir, sub), { mode: 0o755 });
  await atomicWrite(path.join(stateDir, 'machine-id'), `${machineId}\n`, 0o444);
  await atomicWrite(path.join(stateDir, 'hostname'), `${name}\n`);
  // Recorded before creating anything, so that stop can clean a half-done start.
  const cgroupName = `${CGROUP_PREFIX}${name}-${randomBytes(4).toString('hex')}`;
  const parents = await ownCgroupDirs();
  record.cgroupDirs = parents.map((p) => path.join(p, cgroupName));
  // The netns is named after the sandbox; recorded before it exists, so that stop removes a half-made one.
  if (opts.network) record.network = { ...validateNetwork(opts.network), netns: name, hostVeth: hostVethOf(name) };
  await atomicWriteJson(path.join(stateDir, 'info.json'), record);
  await createCgroups(parents, cgroupName);
  if (opts.network) record.network = await createSandboxNetwork(name, opts.network);
  return record;
}

async function bootInto(record: SandboxRecord, deadline: number): Promise<void> {
  const launcherPid = spawnLauncher(record);
  record.launcherPid = launcherPid;
  record.launcherStartTime = (await readProc(launcherPid))?.startTime ?? '';
  await atomicWriteJson(path.join(record.stateDir, 'info.json'), record);

  record.pid = await findInnerPid(launcherPid, deadline);
  record.pidStartTime = (await readProc(record.pid))?.startTime ?? '';
  await atomicWrite(path.join(record.stateDir, 'pid'), `${record.pid}\n`);
  await atomicWriteJson(path.join(record.stateDir, 'info.json'), record);

  await waitRunning(record, deadline);
  await unlockProcSys(record);
}

/**
 * Undoes boot.sh's read-only /proc/sys now that systemd's startup writes are
 * behind us. Lazy: systemd keeps files under it open, and those may stay read-only.
 */
async function unlockProcSys(record: SandboxRecord): Promise<void> {
  const r = await execa('nsenter', ['-t', String(record.pid), '-m', '-p', '--', 'umount', '--lazy', '/proc/sys'], { reject: false, env: { PATH: PATH_ENV } });
  if (r.failed) log.warn({ sandbox: record.name, stderr: r.stderr }, '/proc/sys stays read-only inside the sandbox');
}

/** Starts boot.sh detached (own session, output to boot.log): the sandbox outlives the caller. */
function spawnLauncher(record: SandboxRecord): number {
  const logFd = openSync(path.join(record.stateDir, 'boot.log'), fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND, 0o644);
  try {
    // With a netns of its own, boot.sh (and so unshare and systemd) runs in it: nsenter execs, no fork,
    // so the launcher's PID stays the parent of the sandbox's PID 1.
    const argv = record.network ? ['/usr/bin/nsenter', `--net=${netnsFile(record.network.netns)}`, '--', '/bin/bash', BOOT_SCRIPT, 'outer'] : ['/bin/bash', BOOT_SCRIPT, 'outer'];
    const child = spawn(argv[0]!, argv.slice(1), {
      detached: true,
      cwd: '/',
      stdio: ['ignore', logFd, logFd],
      env: {
        PATH: PATH_ENV,
        STEVEDORE_SANDBOX_NAME: record.name,
        STEVEDORE_SANDBOX_STATE: record.stateDir,
        STEVEDORE_SANDBOX_CGROUP_PROCS: record.cgroupDirs.map((d) => path.join(d, 'cgroup.procs')).join('\n'),
      },
    });
    child.on('error', (err) => log.error({ err }, 'boot.sh could not be started'));
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start ${argv.join(' ')}`);
    return child.pid;
  } finally {
    closeSync(logFd);
  }
}

/** The sandbox's PID 1 is the child of unshare whose innermost pid is 1. */
async function innerInitsOf(launcherPid: number): Promise<number[]> {
  const inits: number[] = [];
  for (const child of await childrenOf(launcherPid)) {
    const ids = await nsPids(child);
    if (ids.length >= 2 && ids[ids.length - 1] === 1) inits.push(child);
  }
  return inits;
}

async function findInnerPid(launcherPid: number, deadline: number): Promise<number> {
  for (;;) {
    const [init] = await innerInitsOf(launcherPid);
    if (init !== undefined) return init;
    if (!(await isAlive(launcherPid))) throw new Error('boot.sh exited before the namespaces were created');
    if (Date.now() > deadline) throw new Error('timed out waiting for unshare to start the sandbox init');
    await sleep(5);
  }
}

async function waitRunning(record: SandboxRecord, deadline: number): Promise<void> {
  const socket = path.join(record.stateDir, 'dbus', 'system_bus_socket');
  let last = 'no system bus socket yet';
  for (;;) {
    if (!(await isAlive(record.pid))) throw new Error(`the sandbox init (pid ${record.pid}) exited during boot (last state: ${last})`);
    if (await fs.stat(socket).then(() => true, () => false)) {
      try {
        last = `SystemState=${await readSystemState(record.busAddress, Math.max(100, Math.min(2000, deadline - Date.now())))}`;
        if (last === 'SystemState=running') return;
        if (last === 'SystemState=degraded') {
          log.warn({ sandbox: record.name }, 'sandbox systemd is degraded: a unit failed (journalctl -D <journalDir> -p err)');
          return;
        }
        if (/maintenance|stopping|offline/.test(last)) throw new Error(`systemd reached ${last}`);
      } catch (err) {
        if (/systemd reached/.test((err as Error).message)) throw err;
        last = `D-Bus: ${(err as Error).message}`;
      }
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for systemd to reach running (last: ${last})`);
    await sleep(10);
  }
}

async function bootLogTail(stateDir: string, lines = 30): Promise<string> {
  const text = await fs.readFile(path.join(stateDir, 'boot.log'), 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/**
 * Runs argv inside the sandbox's mount, pid, uts and cgroup namespaces, the
 * process placed in the sandbox's cgroups, so that busctl, journalctl,
 * systemctl and D-Bus clients see the sandbox's systemd.
 */
export async function execInSandbox(name: string, argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  if (argv.length === 0) throw new InvalidInput('execInSandbox: empty command');
  const info = await getSandbox(name, opts.stateRoot ?? DEFAULT_STATE_ROOT);
  if (!info) throw new UserError(`sandbox ${name} is not running`, { hint: `start it: stevedore sandbox start ${name}` });
  const procsFiles = info.cgroupDirs.map((d) => path.join(d, 'cgroup.procs'));
  const cmd = [
    // Join the sandbox's cgroups first (best effort), then enter; nsenter forks for the pid namespace.
    '/bin/sh', '-c', 'while [ "$1" != -- ]; do echo $$ 2>/dev/null >"$1" || :; shift; done; shift; exec "$@"', 'join-cgroups',
    ...procsFiles, '--',
    // -n only with a netns of its own: otherwise the sandbox shares the host's anyway.
    'nsenter', '-t', String(info.pid), '-m', '-p', '-u', '-C', ...(info.network ? ['-n'] : []), '--',
    '/bin/sh', '-c', 'cd -- "$1" 2>/dev/null || cd /; shift; exec "$@"', 'stevedore-exec', opts.cwd ?? process.cwd(),
    ...argv,
  ];
  const pipe = opts.stdio === 'pipe';
  const result = await execa(cmd[0]!, cmd.slice(1), {
    reject: false,
    extendEnv: false,
    env: { ...baseExecEnv(), ...opts.env },
    stdio: pipe ? ['ignore', 'pipe', 'pipe'] : 'inherit',
    stripFinalNewline: false,
  });
  const exitCode = result.exitCode ?? (result.signal ? 128 + (osConstants.signals[result.signal] ?? 0) : undefined);
  if (exitCode === undefined) throw new Error(`could not run ${argv.join(' ')} in sandbox ${name}: ${result.message}`);
  return pipe ? { exitCode, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '') } : { exitCode };
}

/** Like `docker exec`: a small fixed environment, not the caller's (no host D-Bus addresses leak in). */
function baseExecEnv(): Record<string, string> {
  const env: Record<string, string> = { PATH: PATH_ENV, HOME: '/root' };
  for (const key of ['TERM', 'LANG', 'LC_ALL']) {
    const value = process.env[key];
    if (value) env[key] = value;
  }
  return env;
}
