import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Variant } from 'dbus-next';
import { replaceFile, tempSiblingOf } from '../common/fsutil.js';
import { execa } from 'execa';
import { ContainerConfigError, errnoCode, UserError } from '../common/errors.js';
import { nativeHelperPath } from '../common/native.js';
import { processStartTime } from '../common/proc.js';
import { prop, type UnitProperty } from '../common/systemd.js';
import { ALL_CAPS, appSecurity, capMask } from './app-security.js';
import { ENTER_SPEC_FILE, enterSpecFromFields } from './enter-spec.js';
import { execStart, podEtcBinds } from './common.js';
import { unitDeviceProperties } from './devices.js';
import { cgroupProcsFiles, withCgroupJoin } from './namespaces.js';
import { allowedSyscalls, runtimeDefaultSeccomp } from './seccomp.js';
import { compiledSeccomp } from './seccomp-bpf.js';
import { appMountSource, podPaths, type AppManifest, type AppUnitPlan, type EnterCommand, type PreparedPod, type RuntimePodManifest, type Stage1 } from './contract.js';

/**
 * fly: no namespaces of its own. systemd chroots the app into its rootfs with
 * RootDirectory= and gives it /proc, /sys and /dev (MountAPIVFS=), so the app
 * shares the node's pid, network, ipc and uts namespaces — rkt's fly, for
 * node agents that must see the host.
 */
export class FlyStage1 implements Stage1 {
  readonly name = 'fly' as const;

  /**
   * systemd's User=, Group= and SupplementaryGroups= look ids up in the node's
   * user database and refuse to start the unit when one is missing, so a fly
   * app can only take ids the node knows (the namespaces stage1 takes any).
   * Refused here, naming the id, rather than failing at every start.
   */
  async prepare(pod: PreparedPod): Promise<void> {
    for (const [i, app] of pod.manifest.apps.entries()) {
      const sec = appSecurity(app);
      if (app.console && !sec.privileged && sec.seccomp.type === 'Localhost') {
        // The console holder starts the app through stevedore-enter, which loads only a precompiled program.
        throw new ContainerConfigError(`container "${app.name}" (spec.containers[${i}]): ${app.console.tty ? 'tty' : 'stdin'}: true with a Localhost seccomp profile is not available on the fly stage1 (its app is started by the console holder, which loads only the RuntimeDefault program)`,
          'use seccompProfile RuntimeDefault or Unconfined, drop stdin/tty, or run the pod with the namespaces stage1');
      }
      const checks: Array<['passwd' | 'group', number, string]> = [];
      if (app.user.uid !== 0) checks.push(['passwd', app.user.uid, 'runAsUser']);
      if (app.user.gid !== 0) checks.push(['group', app.user.gid, 'runAsGroup']);
      for (const gid of appSecurity(app).supplementalGroups) if (gid !== 0 && gid !== app.user.gid) checks.push(['group', gid, 'supplementalGroups/fsGroup']);
      for (const [db, id, field] of checks) {
        const found = await execa('getent', [db, String(id)], { reject: false });
        if (found.exitCode !== 0) {
          throw new ContainerConfigError(`container "${app.name}" (spec.containers[${i}]): ${field} ${id} is not a ${db === 'passwd' ? 'user' : 'group'} of this node, and the fly stage1 can only run apps as ids the node knows (systemd looks them up)`,
            `add ${db === 'passwd' ? 'the user' : 'the group'} on the node, use an id the node has, or run the pod with the namespaces stage1`);
        }
      }
    }
  }

  async appUnit(pod: PreparedPod, app: AppManifest): Promise<AppUnitPlan> {
    if (app.console) return this.consoleAppUnit(pod, app);
    const filterExec = await precompiledFilterExec(app);
    const properties = [
      execStart(filterExec?.argv ?? app.argv),
      prop.str('RootDirectory', podPaths(pod.dir).rootfs(app.name)),
      prop.bool('MountAPIVFS', true),
      // Only the app is chrooted: stage0's ExecStopPost exit recorder must run on the node.
      prop.bool('RootDirectoryStartOnly', true),
      prop.str('WorkingDirectory', app.workingDir),
      prop.binds('BindReadOnlyPaths', [...podEtcBinds(pod), ...volumeBinds(pod, app, true), ...(filterExec ? [filterExec.bind] : [])]),
    ];
    // The env in a root-only file, not Environment=: unit properties are readable by every local user
    // (`systemctl show`), and the env may hold values from Secrets.
    const envFile = appEnvFile(pod, app);
    // Written again at every launch, right before the unit that reads it: no fsync (replaceFile).
    await replaceFile(envFile, envFileText(app), 0o600);
    properties.push(['EnvironmentFiles', new Variant('a(sb)', [[envFile, false]])]);
    // Volumes: systemd binds them below RootDirectory= (destinations are inside the app's root) before the chroot.
    const writable = volumeBinds(pod, app, false);
    if (writable.length) properties.push(prop.binds('BindPaths', writable));
    // Numeric ids: a name would be looked up in the node's passwd, not the image's.
    if (app.user.uid !== 0) properties.push(prop.str('User', String(app.user.uid)));
    if (app.user.gid !== 0) properties.push(prop.str('Group', String(app.user.gid)));
    properties.push(...flySecurityProperties(pod.manifest, app, podPaths(pod.dir).rootfs(app.name), { filterLoadedByHelper: filterExec !== undefined }));
    // What every exec into the app (kubectl exec, probes, hooks) enters with (stevedore-enter): the same restrictions, from the
    // same settings. Root-only (it holds the env), rewritten at every launch; none when they cannot all be given: exec is refused.
    await this.writeExecSpec(pod, app);
    return { properties, stopPost: [], started: { path: '/bin/sh', argv: ['/bin/sh', '-c', APP_EXECED_SCRIPT, 'stevedore-started'] } };
  }

  /**
   * An app with stdin or a terminal (`stdin: true`, `tty: true`): the unit's main process is the console
   * holder (stage1/console-holder.py, as on the namespaces stage1: same attach socket and frames), root
   * and not chrooted, so it can hold the terminal or the stdin pipe, listen on the pod directory's
   * attach socket and write the app's output to the journal. The app is its child, started through
   * `stevedore-enter --start` with an enter spec written from the very values a plain fly app's unit
   * hands systemd (flyEnterSpec: ids and groups as systemd resolves them, every capability set,
   * no_new_privs, the RuntimeDefault program, cwd, env) and `root=<rootfs>`: the helper chroots there
   * and takes on those restrictions before it execs the app, as it does for every fly exec.
   *
   * The unit keeps the mount namespace a plain fly app gets, with the node paths systemd would have
   * used below RootDirectory=: the pod's /etc files and the volumes bound into the rootfs, the node's
   * /proc, /sys and /dev there (MountAPIVFS=), a fresh tmpfs at its /run, ReadOnlyPaths= on the rootfs
   * for readOnlyRootFilesystem. Its cgroup, device rules and limits are the unit's, as for any app.
   */
  private async consoleAppUnit(pod: PreparedPod, app: AppManifest): Promise<AppUnitPlan> {
    const paths = podPaths(pod.dir);
    const rootfs = paths.rootfs(app.name);
    const helper = nativeHelperPath('stevedore-enter');
    if (!helper) throw new UserError(`cannot start container "${app.name}": stdin/tty on the fly stage1 needs the stevedore-enter helper, which is not built`, { hint: 'build the native helpers (npx node-gyp rebuild --directory native) and retry' });
    const startSpec = await flyEnterSpec(app, { rootDir: rootfs });
    if (startSpec === undefined) {
      throw new UserError(`cannot start container "${app.name}": its restrictions cannot all be written down for the console holder (the RuntimeDefault seccomp program could not be compiled, or an id is unknown to the node)`,
        { hint: 'see the node\'s log; run the pod with the namespaces stage1, or without stdin/tty' });
    }
    const startSpecFile = path.join(paths.app(app.name), CONSOLE_START_SPEC_FILE);
    await replaceFile(startSpecFile, startSpec, 0o600);
    await this.writeExecSpec(pod, app);
    const inRoot = (destination: string) => path.join(rootfs, destination);
    const under = (binds: Array<{ source: string; destination: string }>) => binds.map((b) => ({ source: b.source, destination: inRoot(b.destination) }));
    const sec = appSecurity(app);
    const filterExec = await precompiledFilterExec(app);
    // systemd's RootDirectory= set-up leaves an empty /var in a plain app's root when the image has none: the same here.
    await fs.mkdir(inRoot('/var'), { mode: 0o755 }).catch(() => undefined);
    const argv = [
      PYTHON, CONSOLE_HOLDER, '--socket', paths.attachSocket(app.name),
      ...(app.console!.tty ? ['--tty', '--make-terminal'] : []),
      ...(app.console!.stdin ? ['--stdin'] : []), ...(app.console!.stdinOnce ? ['--stdin-once'] : []),
      '--', helper, '--start', startSpecFile, ...app.argv,
    ];
    const properties: UnitProperty[] = [
      execStart(argv),
      // MountAPIVFS= without RootDirectory=: the node's API file systems at the same places in the rootfs.
      ['BindPaths', new Variant('a(ssbt)', [
        ['/proc', inRoot('/proc'), false, 0n], ['/dev', inRoot('/dev'), false, MS_REC], ['/sys', inRoot('/sys'), false, MS_REC],
        ...under(volumeBinds(pod, app, false)).map((b) => [b.source, b.destination, false, 0n]),
      ])],
      // The seccomp helper's directory too, though the app's start does not use it: its /run looks as a plain app's.
      prop.binds('BindReadOnlyPaths', under([...podEtcBinds(pod), ...volumeBinds(pod, app, true), ...(filterExec ? [filterExec.bind] : [])])),
      // What MountAPIVFS= mounts at /run: an empty tmpfs.
      ['TemporaryFileSystem', new Variant('a(ss)', [[inRoot('/run'), 'mode=755,nosuid,dev,relatime']])],
      ...unitDeviceProperties(pod.manifest, sec.privileged),
    ];
    // With no_new_privs systemd mounts everything in the unit's namespace nosuid: so for the holder's unit, whose app gets
    // no_new_privs anyway (stevedore-enter sets it), and never for an app that must not have it (the holder's would be inherited).
    if (!sec.privileged && sec.noNewPrivileges) properties.push(prop.bool('NoNewPrivileges', true));
    if (!sec.privileged && sec.readOnlyRootFilesystem) properties.push(prop.strs('ReadOnlyPaths', [rootfs]));
    return { properties, stopPost: [], started: { path: '/bin/sh', argv: ['/bin/sh', '-c', CONSOLE_APP_EXECED_SCRIPT, 'stevedore-started', rootfs] } };
  }

  /** The enter spec every exec into the app uses (root=target); none when its restrictions cannot all be written down: exec is refused. */
  private async writeExecSpec(pod: PreparedPod, app: AppManifest): Promise<void> {
    const enterSpec = await flyEnterSpec(app);
    const enterSpecFile = path.join(podPaths(pod.dir).app(app.name), ENTER_SPEC_FILE);
    if (enterSpec !== undefined) await replaceFile(enterSpecFile, enterSpec, 0o600);
    else await fs.rm(enterSpecFile, { force: true });
  }

  /**
   * Every exec (kubectl exec with or without a terminal, probes, hooks) enters through the static
   * stevedore-enter helper with the app's enter spec: its mount namespace and chroot, cwd, env,
   * ids, groups, every capability set, no_new_privs and seccomp program, as containerd gives an
   * exec the container's process security; and in the app's cgroups (its unit's device rules and
   * limits). Fly shares the node's pid namespace, so the helper execs the command itself (no fork):
   * a terminal's signals reach the command as they would. The environment comes from the root-only
   * spec, never from argv, which every local user can read in /proc. No spec or no helper: refused,
   * never entered unconfined.
   */
  enterArgv(pod: PreparedPod, app: AppManifest, mainPid: number, command: string[]): string[] {
    return withCgroupJoin(this.enterCommand(pod, app, mainPid, command));
  }

  enterCommand(pod: PreparedPod, app: AppManifest, mainPid: number, command: string[]): EnterCommand {
    const helper = nativeHelperPath('stevedore-enter');
    const specFile = path.join(podPaths(pod.dir).app(app.name), ENTER_SPEC_FILE);
    if (!helper) throw new UserError(`cannot run a command in container "${app.name}": the stevedore-enter helper is not built, and a fly exec is never run without the app's restrictions`, { hint: 'build the native helpers (npx node-gyp rebuild --directory native) and retry' });
    if (!existsSync(specFile)) {
      throw new UserError(`cannot run a command in container "${app.name}": it has no enter spec (its restrictions could not all be written down for the helper at launch: a Localhost seccomp profile, the RuntimeDefault program not compiled, or a launch by an older release)`,
        { hint: 'restart the container (delete the pod) so the spec is written at its launch; see stage1/README.md, fly exec' });
    }
    // With a console the unit's main process is the holder (on the node's root): the app is its child.
    const target = app.console ? consoleAppPid(mainPid, podPaths(pod.dir).rootfs(app.name)) : mainPid;
    const startTime = target ? processStartTime(target) : undefined;
    if (!target || !startTime) throw new UserError(`container "${app.name}" is not running (its process is gone or not started yet)`, { hint: 'retry once it runs again' });
    return { argv: [helper, specFile, String(target), startTime, ...command], cgroupProcs: cgroupProcsFiles(mainPid) };
  }

  async cleanup(): Promise<void> {}
}

function volumeBinds(pod: PreparedPod, app: AppManifest, readOnly: boolean): Array<{ source: string; destination: string }> {
  return (app.mounts ?? []).filter((m) => m.readOnly === readOnly).map((m) => ({ source: appMountSource(pod.dir, m), destination: m.destination }));
}

// dist/stage1/fly.js -> <repo>/stage1/console-holder.py
const CONSOLE_HOLDER = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../stage1/console-holder.py');
const PYTHON = '/usr/bin/python3';
/** Beside enter.spec: the console holder's enter spec for the app's start (root=<rootfs>). */
export const CONSOLE_START_SPEC_FILE = 'console-start.spec';
const MS_REC = 16384n;

/**
 * The app process of a console holder (the holder's one child), once it has exec'd the app: its
 * executable is a file of the app's rootfs (before, it is the node's python, then the node's
 * stevedore-enter). undefined when there is none (yet).
 */
export function consoleAppPid(holderPid: number, rootfs: string): number | undefined {
  for (const name of childPids(holderPid)) {
    let exe = '';
    try {
      exe = readlinkSync(`/proc/${name}/exe`);
    } catch { /* gone */ }
    if (exe.startsWith(`${rootfs}/`)) return Number(name);
  }
  return undefined;
}

/**
 * The children of a single-threaded process: the kernel's list (/proc/PID/task/PID/children, one
 * read) where it has one, else a scan of /proc for processes whose parent it is (a probe runs this).
 */
function childPids(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') return [];
  }
  return readdirSync('/proc').filter((name) => {
    if (!/^\d+$/.test(name)) return false;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
    } catch {
      return false;
    }
  });
}

/** APP_EXECED_SCRIPT for a console holder's unit: once the holder's child runs a file of the rootfs ($1), or the holder is gone. */
const CONSOLE_APP_EXECED_SCRIPT = `
i=0
while [ "$i" -lt 1000 ]; do
  kill -0 "$MAINPID" 2>/dev/null || exit 0
  for child in $(pgrep -P "$MAINPID"); do
    case "$(readlink "/proc/$child/exe" 2>/dev/null)" in
      "$1"/*) exit 0 ;;
    esac
  done
  i=$((i + 1))
  sleep 0.01
done
`;

/**
 * Returns once the unit's main process has exec'd the app: its exe is no longer systemd's (forked,
 * not yet exec'd) nor the seccomp helper's; or once it is gone; at most ~10 s. $MAINPID is systemd's.
 */
const APP_EXECED_SCRIPT = `
i=0
while [ "$i" -lt 1000 ]; do
  kill -0 "$MAINPID" 2>/dev/null || exit 0
  case "$(readlink "/proc/$MAINPID/exe" 2>/dev/null)" in
    ''|*/systemd|*/seccomp-exec) ;;
    *) exit 0 ;;
  esac
  i=$((i + 1))
  sleep 0.01
done
`;

/**
 * The app's restrictions as the enter spec (stage1/enter-spec.ts) from the values fly hands
 * systemd (flySecurityProperties, User=, Group=, SupplementaryGroups=, RootDirectory=,
 * WorkingDirectory=, the env file), as systemd applies them: undefined when they cannot all be
 * written down (then exec is refused).
 */
export async function flyEnterSpec(app: AppManifest, opts: { rootDir?: string } = {}): Promise<string | undefined> {
  const sec = appSecurity(app);
  let seccomp = '';
  if (!sec.privileged && sec.seccomp.type === 'RuntimeDefault') {
    // The program the seccomp-exec helper loads for the app. An app left to systemd's SystemCallFilter=
    // (no no_new_privs) gets the same RuntimeDefault profile, here in its complete OCI form (argument rules included).
    const bpf = await compiledSeccomp(runtimeDefaultSeccomp(sec.capabilities));
    if (!bpf) return undefined;
    seccomp = bpf;
  } else if (!sec.privileged && sec.seccomp.type !== 'Unconfined') {
    return undefined;
  }
  const ids = await systemdIds(app.user.uid, app.user.gid, sec.supplementalGroups);
  if (!ids) return undefined;
  // Privileged: systemd leaves the app the node's whole bounding set, the one stage0 runs with too (a sandbox may lack some).
  const bounding = sec.privileged ? capMask(ALL_CAPS) & ownBoundingSet() : capMask(sec.capabilities);
  // systemd execs the app as its uid: root keeps the bounding set permitted and effective, another uid none (no ambient, as containerd).
  const held = app.user.uid === 0 ? bounding : 0n;
  return enterSpecFromFields({
    uid: app.user.uid, gid: ids.gid, groups: ids.groups,
    caps: { bounding, effective: held, permitted: held, inheritable: 0n, ambient: 0n },
    noNewPrivileges: !sec.privileged && sec.noNewPrivileges,
    seccomp, ...(opts.rootDir ? { rootDir: opts.rootDir, rootOfTarget: false } : { rootOfTarget: true }), cwd: app.workingDir, env: app.env,
  });
}

/** This process's capability bounding set, from /proc/self/status. */
function ownBoundingSet(): bigint {
  const hex = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  return hex ? BigInt(`0x${hex}`) : 0n;
}

/**
 * The gid and groups systemd gives the app: User= (a uid other than 0) takes its primary group from
 * the node's passwd when Group= is unset, and then the node's groups of that user (initgroups) come
 * first, SupplementaryGroups= after; as root only SupplementaryGroups=.
 */
async function systemdIds(uid: number, gid: number, supplemental: number[]): Promise<{ gid: number; groups: number[] } | undefined> {
  if (uid === 0) return { gid, groups: [...new Set(supplemental)] };
  const node = await nodeGroupsOf(uid, gid);
  if (!node) return undefined;
  // systemd keeps a group once (initgroups' and SupplementaryGroups= often share the primary one).
  return { gid: node[0]!, groups: [...new Set([...node.slice(1), ...supplemental])] };
}

/** By `uid:gid`: the node's answer and the user database's mtimes it was read at (a changed /etc/group is read again). */
const nodeGroupsCache = new Map<string, { stamp: string; ids: number[] }>();

/** [gid, ...getgrouplist(user, gid)] as systemd's User= resolves them through NSS (a python3 process: ~20 ms, so cached). */
async function nodeGroupsOf(uid: number, gid: number): Promise<number[] | undefined> {
  const stamp = (await Promise.all(['/etc/passwd', '/etc/group'].map((f) => fs.stat(f).then((s) => `${s.mtimeMs}/${s.ino}`, () => '-')))).join(' ');
  const key = `${uid}:${gid}`;
  const cached = nodeGroupsCache.get(key);
  if (cached?.stamp === stamp) return cached.ids;
  const script = 'import os, pwd, sys\nu = pwd.getpwuid(int(sys.argv[1]))\ng = int(sys.argv[2]) or u.pw_gid\nprint(g, *(os.getgrouplist(u.pw_name, g) if g else []))';
  const r = await execa('python3', ['-c', script, String(uid), String(gid)], { reject: false });
  const ids = r.exitCode === 0 ? r.stdout.trim().split(/\s+/).map(Number) : [];
  if (!ids.length || ids.some((n) => !Number.isInteger(n) || n < 0)) return undefined;
  if (nodeGroupsCache.size > 1024) nodeGroupsCache.clear();
  nodeGroupsCache.set(key, { stamp, ids });
  return ids;
}

const appEnvFile = (pod: PreparedPod, app: AppManifest) => path.join(podPaths(pod.dir).app(app.name), 'env');

/**
 * systemd's EnvironmentFile= syntax (and a POSIX shell's: `. file` reads it the same): one `KEY="value"` per variable, the value
 * double-quoted with \\, ", $ and ` escaped, so it arrives byte for byte
 * (newlines included, and never expanded).
 */
export function envFileText(app: AppManifest): string {
  return app.env.map(([k, v]) => `${k}="${v.replace(/[\\"$`]/g, (c) => `\\${c}`)}"\n`).join('');
}

/**
 * Where the fly exec directory appears inside the app's root: on the empty
 * tmpfs that systemd mounts at /run there (MountAPIVFS= with RootDirectory=),
 * so the image's files are not touched.
 */
export const FLY_EXEC_IN_ROOT = '/run/.stevedore';
/**
 * The node's side of it: the seccomp-exec helper and the compiled programs,
 * nothing else (bound read-only into every fly app that loads its filter
 * through the helper, so it holds nothing secret: the programs are the
 * public RuntimeDefault profile compiled). Root-owned, written only by
 * stage0 (a new file is renamed into place, so an app that starts meanwhile
 * sees the old file or the new one, never half of one); a per-boot cache
 * like seccomp-bpf.ts's, on /run.
 */
export const FLY_EXEC_DIR = '/run/stevedore/fly-exec';

let helperCopied: Promise<boolean> | undefined;
/** Program files already written by this process, by program (base64). */
const programFiles = new Map<string, Promise<string | undefined>>();
const PROGRAM_FILES_MAX = 32;

/**
 * Makes FLY_EXEC_DIR/NAME hold exactly these bytes with this mode (whatever
 * the umask: the app's uid must be able to read it), renamed into place
 * when it does not already.
 */
async function publish(name: string, bytes: Buffer, mode: number): Promise<void> {
  const file = path.join(FLY_EXEC_DIR, name);
  const existing = await fs.readFile(file).catch(() => undefined);
  if (existing?.equals(bytes) && ((await fs.stat(file)).mode & 0o7777) === mode) return;
  const tmp = tempSiblingOf(file);
  try {
    await fs.writeFile(tmp, bytes, { flag: 'wx', mode: 0o600 });
    await fs.chmod(tmp, mode);
    await fs.rename(tmp, file);
  } finally {
    await fs.rm(tmp, { force: true });
  }
}

/**
 * The helper, copied into FLY_EXEC_DIR once per process (the bind's source must hold only what the app may see);
 * after a failure the next start tries again (meanwhile apps get systemd's filter).
 */
function copyHelper(helper: string): Promise<boolean> {
  helperCopied ??= (async () => {
    await fs.mkdir(FLY_EXEC_DIR, { recursive: true, mode: 0o755 });
    await fs.chmod(FLY_EXEC_DIR, 0o755);
    await publish('seccomp-exec', await fs.readFile(helper), 0o755);
    return true;
  })().catch(() => {
    helperCopied = undefined;
    return false;
  });
  return helperCopied;
}

/**
 * The program as a file in FLY_EXEC_DIR, named by its hash; its path inside
 * the app's root, or undefined when it cannot be written (the app then gets
 * systemd's filter). The app's uid reads it (the helper runs after systemd
 * set the ids), so it is world-readable: it is not secret.
 */
function programFile(bpf: string): Promise<string | undefined> {
  let pending = programFiles.get(bpf);
  if (!pending) {
    const bytes = Buffer.from(bpf, 'base64');
    const name = `${createHash('sha256').update(bytes).digest('hex')}.bpf`;
    pending = publish(name, bytes, 0o644).then(() => path.posix.join(FLY_EXEC_IN_ROOT, name)).catch(() => {
      programFiles.delete(bpf);
      return undefined;
    });
    if (programFiles.size >= PROGRAM_FILES_MAX) programFiles.delete(programFiles.keys().next().value!);
    programFiles.set(bpf, pending);
  }
  return pending;
}

/**
 * systemd compiles `SystemCallFilter=` into BPF at every start (~10 ms per
 * fly app start here, the largest part of fly's start). An app with the
 * RuntimeDefault profile and no_new_privs instead gets the very program the
 * namespaces stage1 hands crun (the same OCI profile, compiled once per boot,
 * seccomp-bpf.ts), loaded by a static helper (native/seccomp-exec.c) that
 * then execs the app. The program reaches the helper as a file, not in argv:
 * ~10 KB of base64 in ExecStart= cost ~2 ms per start (D-Bus, the transient
 * unit file systemd writes and parses back, the exec). Without no_new_privs
 * the kernel would not let the helper load a filter (it has no
 * CAP_SYS_ADMIN), so such apps, and any node where the helper, the compiler
 * or FLY_EXEC_DIR is missing, keep systemd's filter.
 */
async function precompiledFilterExec(app: AppManifest): Promise<{ argv: string[]; bind: { source: string; destination: string } } | undefined> {
  const sec = appSecurity(app);
  if (sec.privileged || sec.seccomp.type !== 'RuntimeDefault' || !sec.noNewPrivileges) return undefined;
  const helper = nativeHelperPath('seccomp-exec');
  if (!helper || !await copyHelper(helper)) return undefined;
  const bpf = await compiledSeccomp(runtimeDefaultSeccomp(sec.capabilities));
  const program = bpf && await programFile(bpf);
  if (!program) return undefined;
  return {
    argv: [path.posix.join(FLY_EXEC_IN_ROOT, 'seccomp-exec'), program, app.argv[0]!, ...app.argv],
    bind: { source: FLY_EXEC_DIR, destination: FLY_EXEC_IN_ROOT },
  };
}

const EPERM = 1;
/** Allowed by name here; their arguments are checked by RestrictNamespaces=, RestrictAddressFamilies= and LockPersonality=. */
const ARG_CHECKED_SYSCALLS = ['clone', 'clone3', 'socket', 'personality'];

/**
 * The app's resolved securityContext as systemd's own sandboxing of the unit
 * (fly has no OCI runtime). systemd's seccomp takes syscall names only, so
 * the argument rules of the OCI profile become RestrictNamespaces= (no
 * namespace of any kind: clone/unshare/setns flags, clone3 gets ENOSYS),
 * RestrictAddressFamilies= (no vsock) and LockPersonality=. These apply to
 * the app's process only: stage0's ExecStopPost commands run "privileged".
 */
export function flySecurityProperties(manifest: Pick<RuntimePodManifest, 'stage1' | 'apps'>, app: AppManifest, rootfs: string, opts: { filterLoadedByHelper?: boolean } = {}): UnitProperty[] {
  const sec = appSecurity(app);
  const props: UnitProperty[] = [...unitDeviceProperties(manifest, sec.privileged)];
  if (sec.privileged) return props;
  // Bounding set = the app's capabilities; root keeps them effective, another uid loses them at exec (no ambient, as containerd).
  props.push(['CapabilityBoundingSet', new Variant('t', capMask(sec.capabilities))]);
  props.push(prop.bool('NoNewPrivileges', sec.noNewPrivileges));
  if (sec.supplementalGroups.length) props.push(prop.strs('SupplementaryGroups', sec.supplementalGroups.map(String)));
  // A node path: with RootDirectoryStartOnly= systemd sets up the mount namespace on the node's
  // tree and only then chroots, so "/" here would be the node's root, not the app's.
  if (sec.readOnlyRootFilesystem) props.push(prop.strs('ReadOnlyPaths', [rootfs]));
  // The helper's program is the whole RuntimeDefault profile, argument rules included (clone's
  // namespace flags, clone3, vsock sockets, personality values), for every architecture the node runs.
  if (sec.seccomp.type === 'RuntimeDefault' && !opts.filterLoadedByHelper) {
    props.push(['SystemCallFilter', new Variant('(bas)', [true, [...allowedSyscalls(sec.capabilities), ...ARG_CHECKED_SYSCALLS]])]);
    props.push(prop.i32('SystemCallErrorNumber', EPERM));
    if (!sec.capabilities.includes('CAP_SYS_ADMIN')) props.push(['RestrictNamespaces', new Variant('t', 0n)]);
    props.push(['RestrictAddressFamilies', new Variant('(bas)', [false, ['AF_VSOCK']])]);
    props.push(prop.bool('LockPersonality', true));
    // Native syscalls only: systemd then builds its filters for one architecture instead of
    // three (x86-64, i386, x32), which is most of their cost at every start; 32-bit binaries fail.
    props.push(prop.strs('SystemCallArchitectures', ['native']));
  }
  return props;
}
