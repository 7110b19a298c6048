import * as fs from 'node:fs/promises';
import { accessSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { replaceFileSync } from '../common/fsutil.js';
import { cgroupDirsOf } from '../common/cgroups.js';
import { processStartTime } from '../common/proc.js';
import { errnoCode, UserError } from '../common/errors.js';
import { loadAddon, nativeHelperPath } from '../common/native.js';
import { fsops } from '../common/fsops.js';
import { prop } from '../common/systemd.js';
import { podEtcBinds, terminationLogBind } from './common.js';
import { ociSpec } from './oci-spec.js';
import { appSecurity } from './app-security.js';
import { hostDevices, unitDeviceProperties } from './devices.js';
import { readLocalhostSeccomp } from './seccomp.js';
import { precompileSeccomp } from './seccomp-bpf.js';
import { ENTER_SPEC_FILE, enterSpecText } from './enter-spec.js';
import { behindNetworkGate } from './network-gate.js';
import { appMountSource, podPaths, unitNames, type AppManifest, type AppUnitPlan, type EnterCommand, type PreparedPod, type Stage1 } from './contract.js';

// dist/stage1/namespaces.js -> <repo>/stage1/console-holder.py
const CONSOLE_HOLDER = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../stage1/console-holder.py');
const PYTHON = '/usr/bin/python3';

/** Namespaces the apps of one pod share (Kubernetes semantics: one IP, one hostname, shared SysV IPC). */
const POD_NAMESPACES = ['net', 'ipc', 'uts'] as const;
type PodNamespace = (typeof POD_NAMESPACES)[number];
const OCI_NS_TYPE: Record<PodNamespace, string> = { net: 'network', ipc: 'ipc', uts: 'uts' };

interface PodNamespacesAddon {
  /** New ipc and uts (and, withNet, net with loopback up) namespaces bound onto the existing files dir/ipc, dir/uts (dir/net). */
  makePodNamespaces(dir: string, withNet: boolean): Promise<void>;
}
const netnsAddon = () => loadAddon<PodNamespacesAddon>('netns');

export const containerId = (uuid: string, app: string) => unitNames.app(uuid, app).replace(/\.service$/, '');
/** crun's default state root: crun run and exec are given no --root. */
const CRUN_STATE_ROOT = '/run/crun';

/**
 * namespaces (the default): each app runs under an OCI runtime (crun) inside
 * its own systemd service, with its own pid and mount namespaces and the pod's
 * shared net/ipc/uts namespaces. crun runs with --cgroup-manager=disabled so
 * the container stays in the service's cgroup: the unit's limits apply and the
 * journal attributes its output to the unit.
 */
export class NamespacesStage1 implements Stage1 {
  readonly name = 'namespaces' as const;
  readonly networkGate = true as const;
  constructor(private readonly ociRuntime = process.env.STEVEDORE_OCI_RUNTIME ?? '/usr/bin/crun') {}

  private nsFile(pod: PreparedPod, ns: PodNamespace): string {
    return path.join(podPaths(pod.dir).stage1, 'ns', ns);
  }

  private sharedNamespaces(pod: PreparedPod): PodNamespace[] {
    return POD_NAMESPACES.filter((ns) => !(ns === 'net' && pod.manifest.pod.spec.hostNetwork));
  }

  async prepare(pod: PreparedPod): Promise<void> {
    try {
      accessSync(this.ociRuntime);
    } catch {
      throw new UserError(`the namespaces stage1 needs an OCI runtime at ${this.ociRuntime}, and there is none`, {
        hint: 'install crun (apt-get install crun), set STEVEDORE_OCI_RUNTIME, or run the pod with --stage1 fly',
      });
    }
    // A pod attached while it is prepared had them made first (makeNamespaces).
    if (!pod.manifest.awaitsNetwork) await this.makeNamespaces(pod.dir, this.sharedNamespaces(pod).includes('net'));
  }

  async makeNamespaces(podDir: string, withNet = true): Promise<void> {
    const nsDir = path.join(podPaths(podDir).stage1, 'ns');
    // Synchronous, as stage0's pod directory (common/fsutil.ts replaceFileSync): on the start path.
    mkdirSync(nsDir, { recursive: true });
    const shared = POD_NAMESPACES.filter((ns) => withNet || ns !== 'net');
    // Persist the pod's namespaces as bind-mounted nsfs files: no pause process
    // has to live for them, and every app's crun joins them by path.
    for (const ns of shared) writeFileSync(path.join(nsDir, ns), '');
    // A pool thread of this process makes them and brings loopback up in the new network
    // namespace (native/netns.c): no `unshare … -- ip link set lo up`, two process starts.
    await netnsAddon().makePodNamespaces(nsDir, withNet);
  }

  private async ociSpec(pod: PreparedPod, app: AppManifest): Promise<unknown> {
    const sec = appSecurity(app);
    const spec = ociSpec({
      app,
      hostname: pod.manifest.hostname,
      namespaces: [{ type: 'pid' }, { type: 'mount' }, ...this.sharedNamespaces(pod).map((ns) => ({ type: OCI_NS_TYPE[ns], path: this.nsFile(pod, ns) }))],
      binds: [...podEtcBinds(pod), ...terminationLogBind(pod, app)],
      volumes: (app.mounts ?? []).map((m) => ({ source: appMountSource(pod.dir, m), destination: m.destination, readOnly: m.readOnly })),
      sysctls: pod.manifest.sysctls,
      ...(sec.seccomp.type === 'Localhost' ? { localhostSeccomp: await readLocalhostSeccomp(sec.seccomp.path) } : {}),
      ...(sec.privileged ? { hostDevices: hostDevices() } : {}),
    });
    // The profile precompiled once per node boot, so crun does not compile it at every start.
    await precompileSeccomp(spec);
    return spec;
  }

  async appUnit(pod: PreparedPod, app: AppManifest): Promise<AppUnitPlan> {
    const id = containerId(pod.manifest.uuid, app.name);
    const bundle = podPaths(pod.dir).app(app.name);
    // 0600: the spec holds the app's env, Secret values included, and the pod folder is open to the api-service's group.
    // Written again at every launch, right before the unit that reads it: no fsync, and synchronous (replaceFileSync).
    const spec = await this.ociSpec(pod, app) as Record<string, unknown>;
    // What exec probes enter with (stevedore-enter), from this very spec; none where the helper cannot honour it all.
    const enterSpec = enterSpecText(spec);
    replaceFileSync(path.join(bundle, 'config.json'), `${JSON.stringify(spec, null, 2)}\n`, 0o600);
    if (enterSpec !== undefined) replaceFileSync(path.join(bundle, ENTER_SPEC_FILE), enterSpec, 0o600);
    else rmSync(path.join(bundle, ENTER_SPEC_FILE), { force: true });
    let argv = [this.ociRuntime, '--cgroup-manager=disabled', 'run', '--bundle', bundle, id];
    if (app.console) {
      // stdin/tty: the app runs under a holder that keeps its stdin and terminal for attach.
      const paths = podPaths(pod.dir);
      const consoleSocket = path.join(bundle, 'console.sock');
      argv = [
        PYTHON, CONSOLE_HOLDER, '--socket', paths.attachSocket(app.name),
        ...(app.console.tty ? ['--tty', '--console-socket', consoleSocket] : []),
        ...(app.console.stdin ? ['--stdin'] : []), ...(app.console.stdinOnce ? ['--stdin-once'] : []),
        '--', this.ociRuntime, '--cgroup-manager=disabled', 'run', ...(app.console.tty ? [`--console-socket=${consoleSocket}`] : []), '--bundle', bundle, id,
      ];
    }
    // Ahead of crun: no container sees its pod's network half made, and /etc/hosts has the pod's IPs when crun binds it.
    if (pod.manifest.awaitsNetwork) argv = behindNetworkGate(pod.dir, argv);
    return {
      properties: [
        prop.exec('ExecStart', [{ path: argv[0]!, argv }]),
        // crun applies no cgroup settings here (the container stays in this unit's cgroup),
        // so the device filters of the unit and its slices enforce the OCI spec's device list.
        ...unitDeviceProperties(pod.manifest, appSecurity(app).privileged),
      ],
      // A crashed run leaves crun's state behind, and the next start of the same id would fail.
      stopPost: [{ path: this.ociRuntime, argv: [this.ociRuntime, 'delete', '--force', id] }],
      started: { path: '/bin/sh', argv: ['/bin/sh', '-c', CONTAINER_STARTED_SCRIPT, 'stevedore-started', this.ociRuntime, id] },
    };
  }

  /**
   * crun with the cgroup manager disabled does not move an exec'd process
   * into the container's cgroups, so it would run without the unit's device
   * rules (and outside its limits): join the app's cgroups first, as the
   * kubelet's exec does.
   */
  enterArgv(pod: PreparedPod, app: AppManifest, mainPid: number, command: string[], execFlags: string[] = []): string[] {
    return withCgroupJoin(this.crunExec(pod, app, mainPid, command, execFlags));
  }

  private crunExec(pod: PreparedPod, app: AppManifest, mainPid: number, command: string[], execFlags: string[] = [], cgroupProcs = cgroupProcsFiles(mainPid)): EnterCommand {
    // crun exec takes the container's seccomp and capabilities but not its no_new_privs: ask for it.
    const exec = [this.ociRuntime, 'exec', ...execFlags, ...(appSecurity(app).noNewPrivileges ? ['--no-new-privs'] : []), containerId(pod.manifest.uuid, app.name), ...command];
    return { argv: exec, cgroupProcs };
  }

  /**
   * Probes and hooks (short commands, no streams): through the static
   * stevedore-enter helper where it can honour the app's spec (native/enter.c:
   * crun exec's steps, ~4x less CPU than a crun process), else crun exec.
   * `kubectl exec` keeps crun (enterArgv): it needs terminals and streams, and
   * it is rare where probes are every few seconds per container.
   */
  enterCommand(pod: PreparedPod, app: AppManifest, mainPid: number, command: string[]): EnterCommand {
    const { target, cgroupProcs } = this.enterTarget(pod, app, mainPid);
    if (!target) return this.crunExec(pod, app, mainPid, command, [], cgroupProcs);
    return { argv: [target.helper, target.specFile, String(target.initPid), target.startTime, ...command], cgroupProcs };
  }

  /**
   * Per container, for its current run (its unit's MainPID): the helper's arguments (none: crun exec) and
   * the run's cgroup.procs files (a process stays in its unit's cgroups; reading them parses the whole
   * mount table, a few ms with 100 pods), found once per run.
   */
  private readonly enterTargets = new Map<string, { mainPid: number; cgroupProcs: string[]; target?: { helper: string; specFile: string; initPid: number; startTime: string } }>();

  private enterTarget(pod: PreparedPod, app: AppManifest, mainPid: number): { target?: { helper: string; specFile: string; initPid: number; startTime: string }; cgroupProcs: string[] } {
    const id = containerId(pod.manifest.uuid, app.name);
    const cached = this.enterTargets.get(id);
    if (cached?.mainPid === mainPid) return cached;
    if (this.enterTargets.size > 4096) this.enterTargets.clear();
    const cgroupProcs = cgroupProcsFiles(mainPid);
    const helper = nativeHelperPath('stevedore-enter');
    const specFile = path.join(podPaths(pod.dir).app(app.name), ENTER_SPEC_FILE);
    let target;
    if (helper && existsSync(specFile)) {
      try {
        // The container's init process, from crun's state (the unit's MainPID is crun itself); the helper checks
        // its start time, so a pid reused after this read is refused, not entered.
        const state = JSON.parse(readFileSync(path.join(CRUN_STATE_ROOT, id, 'status'), 'utf8')) as { pid?: number };
        const initPid = Number(state.pid);
        const startTime = initPid > 0 ? processStartTime(initPid) : undefined;
        if (startTime) target = { helper, specFile, initPid, startTime };
      } catch { /* no state (yet): crun exec says what is wrong */ }
    }
    // Remembered for the run when complete: cgroups read (empty is a process gone), and crun's state read where the helper is
    // to be used (a probe racing the start looks again).
    const entry = { mainPid, cgroupProcs, target };
    if (cgroupProcs.length && (target || !helper || !existsSync(specFile))) this.enterTargets.set(id, entry);
    return entry;
  }

  /**
   * The terminal is one of the container's own /dev/pts, as with the kubelet's exec -t. With the
   * client's size known, the process is given to crun whole (`--process`: the app's own process
   * from its config.json, with this command, a terminal and consoleSize), so the terminal has its
   * size before the command runs: set after crun handed the terminal over, a quick command (stty
   * size) could run first and see none. The file goes beside the console socket, in the caller's
   * private directory (it holds the app's environment).
   */
  enterTtyArgv(pod: PreparedPod, app: AppManifest, mainPid: number, command: string[], consoleSocket: string, size?: { cols: number; rows: number }): string[] {
    if (!size) return this.enterArgv(pod, app, mainPid, command, ['--tty', `--console-socket=${consoleSocket}`]);
    const spec = JSON.parse(readFileSync(path.join(podPaths(pod.dir).app(app.name), 'config.json'), 'utf8')) as { process: Record<string, unknown> };
    const processFile = path.join(path.dirname(consoleSocket), 'process.json');
    writeFileSync(processFile, JSON.stringify({ ...spec.process, args: command, terminal: true, consoleSize: { width: size.cols, height: size.rows } }), { mode: 0o600 });
    return withCgroupJoin({ argv: [this.ociRuntime, 'exec', '--process', processFile, `--console-socket=${consoleSocket}`, containerId(pod.manifest.uuid, app.name)], cgroupProcs: cgroupProcsFiles(mainPid) });
  }

  async cleanup(pod: PreparedPod): Promise<void> {
    for (const ns of POD_NAMESPACES) {
      const file = this.nsFile(pod, ns);
      try {
        fsops.umount(file);
      } catch (err) {
        if (errnoCode(err) !== 'EINVAL' && errnoCode(err) !== 'ENOENT') throw err;
      }
      await fs.rm(file, { force: true });
    }
  }
}

/** argv that moves itself into the command's cgroups and then execs it (exit 125 if it cannot). */
export function withCgroupJoin(cmd: EnterCommand): string[] {
  if (!cmd.cgroupProcs.length) return cmd.argv;
  const join = cmd.cgroupProcs.map((f) => `echo $$ > '${f.replace(/'/g, `'\\''`)}' || exit 125`).join('; ');
  return ['/bin/sh', '-c', `${join}; exec "$@"`, 'stevedore-enter', ...cmd.argv];
}

/** The cgroup.procs files of every cgroup a process is in (v1 hierarchies and the v2 one), as mounted here. */
export function cgroupProcsFiles(pid: number): string[] {
  return cgroupDirsOf(pid).map((d) => path.join(d.dir, 'cgroup.procs'));
}

/**
 * Returns once the container's process has exec'd the app (its /proc exe is no longer crun's),
 * or once the unit's main process is gone; at most ~10 s. crun's state names the process as soon
 * as the container exists, before its set-up is over and the app runs.
 * argv: <crun path> <container id>.
 */
const CONTAINER_STARTED_SCRIPT = `
i=0
while [ "$i" -lt 1000 ]; do
  pid=$("$1" state "$2" 2>/dev/null | sed -n 's/^ *"pid": *\\([0-9]*\\).*/\\1/p')
  if [ -n "$pid" ] && [ "$pid" != 0 ]; then
    case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in
      ''|*crun*) ;;
      *) exit 0 ;;
    esac
  fi
  [ -n "$MAINPID" ] && ! kill -0 "$MAINPID" 2>/dev/null && exit 0
  i=$((i + 1))
  sleep 0.01
done
`;
