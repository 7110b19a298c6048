import * as path from 'node:path';
import { ISOLATION_HANDLERS, type IsolationHandler } from '../runtime-api/handlers.js';
import { InvalidInput } from '../common/errors.js';
import type { UnitProperty } from '../common/systemd.js';
import type { Pod, RestartPolicy } from '../runtime-api/pod-spec.js';

/**
 * The pod directory is the contract between stage0 (runtime-rkt: images,
 * rootfs, manifest) and a stage1 (how the apps are isolated). stage0 writes
 * everything below before a stage1 sees the pod; a stage1 only adds files of
 * its own under `stage1/` and turns the pod into systemd units.
 *
 *   pod.json                     RuntimePodManifest (below)
 *   apps/<app>/rootfs/           the app's root filesystem (an overlayfs mount)
 *   apps/<app>/upper, work/      the overlay's writable layer
 *   apps/<app>/exits/<ns>.json   one ExitRecord per finished run of the app
 *   apps/<app>/exits/msg-<invocation>   that run's termination message, if it wrote one (the exit recorder keeps it)
 *   apps/<app>/termination-log   the app's termination message (namespaces: bound at its terminationMessagePath)
 *   apps/<app>/started           a sidecar init container has started (stage0's ExecStartPost; runtime-rkt/init-gate.ts)
 *   etc/hosts, hostname, resolv.conf   pod-level files bound into every app
 *   volumes/<name>/              emptyDir volumes (a tmpfs mounted there for medium Memory)
 *   volume-subpaths/<app>/<n>    bind mounts of subPaths, made through a descriptor (runtime-rkt/volumes.ts)
 *   network.json                 the pod's CNI attachment (network, cache, IPs; stage0's, see runtime-rkt/network.ts)
 *   network-gate, network-ready, network-failed   where the apps wait for that attachment, when it overlaps the pod's start (stage1/network-gate.ts)
 *   stage1/                      private to the stage1
 *   created, started, gc-marked  timestamps (ns since epoch), written once
 */
/** rkt's stage1 flavours are the node's isolation levels, one each (runtime-api/handlers.ts). */
export type Stage1Name = IsolationHandler;
export const STAGE1_NAMES: readonly Stage1Name[] = ISOLATION_HANDLERS;

export function parseStage1Name(name: string): Stage1Name {
  if (!(STAGE1_NAMES as readonly string[]).includes(name)) throw new InvalidInput(`unknown stage1 "${name}"`, `choose one of: ${STAGE1_NAMES.join(', ')}`);
  return name as Stage1Name;
}

export interface AppLimits {
  cpuMillis?: number;
  memoryBytes?: number;
}

/**
 * How an app's process is confined, resolved by stage0 from the pod's and the
 * container's securityContext (runtime-rkt/security.ts) so that every stage1
 * applies the same decision. `user` in AppManifest holds the uid and gid.
 */
export interface AppSecurity {
  /**
   * The process's group list (setgroups): its primary gid, the image's groups
   * that list its user, the pod's supplementalGroups, fsGroup. Empty when that
   * is only the primary gid.
   */
  supplementalGroups: number[];
  /**
   * Capabilities, `CAP_` names in kernel order: bounding = permitted = effective
   * set; never inheritable or ambient (as containerd), so a non-root process
   * keeps only the bounding set after its execve.
   */
  capabilities: string[];
  /** no_new_privs: set unless allowPrivilegeEscalation is true (or the container is privileged). */
  noNewPrivileges: boolean;
  readOnlyRootFilesystem: boolean;
  /** All capabilities, every device, no seccomp, no masked paths, /sys read-write (the kubelet's privileged). */
  privileged: boolean;
  /** RuntimeDefault (the node's built-in profile), Unconfined, or a Localhost profile (absolute path on the node, already checked). */
  seccomp: { type: 'RuntimeDefault' } | { type: 'Unconfined' } | { type: 'Localhost'; path: string };
}

/**
 * One volumeMount of an app, resolved by stage0 (runtime-rkt/volumes.ts): a
 * node path bound at `destination` in the app. `source` is absolute (a
 * hostPath) or relative to the pod directory (an emptyDir under volumes/, a
 * subPath's bind under volume-subpaths/), since the pod directory moves.
 */
export interface AppMount {
  volume: string;
  source: string;
  destination: string;
  readOnly: boolean;
}

/** Where an app mount's source is on the node, for the pod in `podDir`. */
export function appMountSource(podDir: string, m: AppMount): string {
  return path.isAbsolute(m.source) ? m.source : path.join(podDir, m.source);
}

export interface AppManifest {
  name: string;
  image: { id: string; name: string };
  /** argv[0] is an absolute path inside the app's rootfs (resolved by stage0). */
  argv: string[];
  env: Array<[string, string]>;
  workingDir: string;
  user: { uid: number; gid: number };
  limits: AppLimits;
  requests: AppLimits;
  /** Absent in pods prepared by releases before it existed: read it through appSecurity(). */
  security?: AppSecurity;
  /** The app's volume mounts, in the order of its volumeMounts (absent: none). */
  mounts?: AppMount[];
  /**
   * An init container (the pod's apps list them first, in order): `once` runs
   * to completion before the next app starts, `sidecar` (restartPolicy
   * Always) only has to have started. Absent: a regular container.
   */
  init?: 'once' | 'sidecar';
  /** Where the app writes its termination message (terminationMessagePath); stage0's file `apps/<app>/termination-log` is bound there (namespaces). */
  terminationMessagePath?: string;
  /**
   * The container's stdin and terminal (stdin, stdinOnce, tty), present when it asks for either:
   * its process then runs under a console holder that `attach` connects to (stage1/console-holder.py;
   * kvm: the app unit's proxy, stage1/kvm/app-proxy.ts, holds it on the node, the app's stdin and terminal are in the guest).
   */
  console?: AppConsole;
}

export interface AppConsole { stdin: boolean; stdinOnce: boolean; tty: boolean }

export interface RuntimePodManifest {
  version: 1;
  uuid: string;
  stage1: Stage1Name;
  /** ns since epoch */
  createdAt: number;
  hostname: string;
  restartPolicy: RestartPolicy;
  terminationGracePeriodSeconds: number;
  /** The pod as the user or the API server gave it. */
  pod: Pod;
  apps: AppManifest[];
  /** Namespaced sysctls for the pod (already checked against the node's safe set). */
  sysctls?: Array<[string, string]>;
  /**
   * stage0 attaches the pod's network while it prepares the pod and systemd starts its units: the
   * stage1 made the namespaces early (makeNamespaces), and each app's process waits at the network
   * gate (stage1/network-gate.ts) first. Only for a stage1 with `networkGate`.
   */
  awaitsNetwork?: true;
}

/** Written by the unit's ExecStopPost each time an app's process exits. */
export interface ExitRecord {
  /** ns since epoch */
  at: number;
  invocation: string;
  /** systemd's $SERVICE_RESULT: success, exit-code, signal, core-dump, timeout, … */
  result: string;
  /** $EXIT_CODE: exited, killed, dumped */
  code: string;
  /** $EXIT_STATUS: exit status, or signal name/number when killed */
  status: string;
  /** the memory cgroup's oom_kill counter when the run ended */
  oomKills: number;
}

/**
 * An app's restart rule by Kubernetes' rules, in systemd's words (Restart=): init containers
 * run again only on failure (never under restartPolicy Never), sidecars always, the others per
 * the pod's restartPolicy. Stage0's units and the kvm guest's supervisors both follow it.
 */
export function appRestart(restartPolicy: RestartPolicy, app: AppManifest): 'always' | 'on-failure' | 'no' {
  if (app.init === 'sidecar') return 'always';
  if (app.init === 'once') return restartPolicy === 'Never' ? 'no' : 'on-failure';
  return restartPolicy === 'Never' ? 'no' : restartPolicy === 'OnFailure' ? 'on-failure' : 'always';
}

export const podPaths = (podDir: string) => ({
  manifest: path.join(podDir, 'pod.json'),
  app: (app: string) => path.join(podDir, 'apps', app),
  rootfs: (app: string) => path.join(podDir, 'apps', app, 'rootfs'),
  exits: (app: string) => path.join(podDir, 'apps', app, 'exits'),
  /** The app's termination message file (kept and emptied by the exit recorder after each run). */
  terminationLog: (app: string) => path.join(podDir, 'apps', app, 'termination-log'),
  etc: (file: 'hosts' | 'hostname' | 'resolv.conf') => path.join(podDir, 'etc', file),
  stage1: path.join(podDir, 'stage1'),
  network: path.join(podDir, 'network.json'),
  created: path.join(podDir, 'created'),
  started: path.join(podDir, 'started'),
  gcMarked: path.join(podDir, 'gc-marked'),
  /** the console holder's socket that attach connects to (apps with stdin or tty) */
  attachSocket: (app: string) => path.join(podDir, 'apps', app, 'attach.sock'),
  /** stage0's marker: the pod's units are being started (see runtime-rkt/runtime.ts) */
  launching: path.join(podDir, 'launching'),
  /** the FIFO app processes wait on until the pod's network is attached, and the marker that it is (stage1/network-gate.ts) */
  networkGate: path.join(podDir, 'network-gate'),
  networkReady: path.join(podDir, 'network-ready'),
  networkFailed: path.join(podDir, 'network-failed'),
});

/** systemd names: every unit carries the prefix and the pod UUID, so orphans can be found by pattern. */
export const UNIT_PREFIX = 'stevedore-';
/**
 * Pod slices live under one of two parents. `stevedore.slice` holds the
 * device allow-list every container gets (DEFAULT_DEVICE_RULES, set once by
 * stage0 when it connects to systemd), so it is compiled and attached once
 * per node, not once per app. systemd's device filters of a parent apply to
 * every cgroup below it and a child can only narrow them, so pods that need
 * the node's devices (a privileged app, the kvm stage1's qemu with /dev/kvm)
 * get their slice under `stevedore_host.slice` instead, and each of their
 * units carries its own device rules.
 */
export const PODS_SLICE = 'stevedore.slice';
const HOST_DEVICE_SLICE_PREFIX = 'stevedore_host-';
const hex = (uuid: string) => uuid.replace(/-/g, '');
export const unitNames = {
  /** the pod's slice; `hostDevices`: under stevedore_host.slice, outside the node-wide device allow-list */
  slice: (uuid: string, hostDevices = false) => `${hostDevices ? HOST_DEVICE_SLICE_PREFIX : UNIT_PREFIX}${hex(uuid)}.slice`,
  app: (uuid: string, app: string) => `${UNIT_PREFIX}${hex(uuid)}-${app}.service`,
  /** a pod-level service (no app suffix: app names cannot be empty), e.g. the kvm stage1's VM */
  pod: (uuid: string) => `${UNIT_PREFIX}${hex(uuid)}.service`,
  /** glob matching every service of one pod (for journalctl -u) */
  podPattern: (uuid: string) => `${UNIT_PREFIX}${hex(uuid)}*`,
  /** globs matching every unit of one pod, its slice under either parent included */
  podPatterns: (uuid: string) => [`${UNIT_PREFIX}${hex(uuid)}*`, `${HOST_DEVICE_SLICE_PREFIX}${hex(uuid)}.slice`],
  allPatterns: [`${UNIT_PREFIX}*`, `${HOST_DEVICE_SLICE_PREFIX}*`],
  /** pod UUID and app name back from a unit name, or undefined if it is not ours */
  parse(unit: string): { uuid: string; app?: string } | undefined {
    const m = /^stevedore-([0-9a-f]{32})(?:-([a-z0-9-]+))?\.(service|slice)$/.exec(unit) ?? /^stevedore_host-([0-9a-f]{32})()\.(slice)$/.exec(unit);
    if (!m) return undefined;
    const h = m[1]!;
    const uuid = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    return m[2] ? { uuid, app: m[2] } : { uuid };
  },
};

/** What a stage1 hands back for one app: how to run it inside its unit. */
export interface AppUnitPlan {
  properties: UnitProperty[];
  /** Commands run after each exit of the app (before the exit is recorded), e.g. runtime state clean-up. */
  stopPost: Array<{ path: string; argv: string[] }>;
  /**
   * A command that returns once the app's own process runs (crun has exec'd it), for stages where
   * the unit's start completes earlier. The kubelet counts a sidecar as started only then, and the
   * next init container waits for it. Run after the unit's start, on the node, with $MAINPID set.
   */
  started?: { path: string; argv: string[] };
}

/** A pod-level unit a stage1 needs besides the per-app ones (kvm: the VM). */
export interface PodUnitPlan {
  name: string;
  properties: UnitProperty[];
}

export interface PreparedPod {
  dir: string;
  manifest: RuntimePodManifest;
}

/**
 * An isolation flavour. stage0 calls prepare() once the pod directory is
 * complete (nothing it makes may depend on the directory's path: the pod is
 * renamed afterwards), then starts one service per app with the properties
 * from appUnit(); cleanup() undoes prepare() and must be idempotent (GC calls
 * it again after a crash).
 */
/** A command to run inside an app: the program and the cgroups it must be in (Stage1.enterCommand). */
export interface EnterCommand {
  argv: string[];
  cgroupProcs: string[];
}

export interface Stage1 {
  readonly name: Stage1Name;
  /**
   * false when the apps' processes do not run in their units (kvm: each unit
   * holds a host-side proxy, the app runs in the VM, whose RAM and vCPUs are
   * the limits): stage0 then puts no cgroup limits on the app units or the slice.
   */
  readonly cgroupLimits?: false;
  /**
   * true when the stage1 can have a pod attached to its network while stage0 prepares and starts it:
   * for a pod whose manifest has `awaitsNetwork`, stage0 calls makeNamespaces() while it makes the pod
   * directory (prepare() then makes none), and appUnit() puts each app's process
   * behind the network gate. A stage1 without it (kvm: the VM's pod unit moves the attached eth0
   * behind a tap before the VM boots) gets its pods attached between prepare() and the launch.
   */
  readonly networkGate?: true;
  /** With networkGate: make the pod's namespaces, the network one at stage0's netns path (runtime-rkt/network.ts). */
  makeNamespaces?(podDir: string): Promise<void>;
  prepare(pod: PreparedPod): Promise<void>;
  /** Called at launch, with the pod in its final (run/) directory; may write launch-time files under the pod dir. */
  appUnit(pod: PreparedPod, app: AppManifest): Promise<AppUnitPlan>;
  /**
   * Units that must run before the apps' (kvm: the pod's VM); stage0 starts
   * them in the pod's slice and waits for their start jobs before starting
   * the app units. Their names must match unitNames.podPattern (GC and
   * removal find them by it) and must not be app unit names.
   */
  podUnits?(pod: PreparedPod): Promise<PodUnitPlan[]>;
  /** false when enter cannot give a command a terminal (kvm: the guest's exec ports carry none). */
  readonly enterTerminal?: false;
  /** argv that runs `command` inside a running app, given its unit's MainPID. */
  enterArgv(pod: PreparedPod, app: AppManifest, mainPid: number, command: string[]): string[];
  /**
   * The same as enterArgv, split into the program (argv[0] an absolute path) and the cgroup.procs
   * files its process must join before it execs: a caller that can place a child in cgroups itself
   * (common/run-captured.ts, for exec probes) then needs no shell to do it. Optional (kvm: no).
   * For short commands without streams only (probes, hooks): the command must end up with exactly
   * the restrictions enterArgv gives it, but may get there another way (namespaces: the
   * stevedore-enter helper instead of a crun process; fly: the same helper for both).
   */
  enterCommand?(pod: PreparedPod, app: AppManifest, mainPid: number, command: string[]): EnterCommand;
  /**
   * Like enterArgv, with the command on a terminal made inside the app whose master is sent over
   * the unix socket `consoleSocket` (crun exec --tty --console-socket). A stage1 without it gets a
   * terminal made on the node (stage1/pty-relay.py).
   */
  enterTtyArgv?(pod: PreparedPod, app: AppManifest, mainPid: number, command: string[], consoleSocket: string, size?: { cols: number; rows: number }): string[];
  /**
   * argv that runs `command` on a terminal the stage1 makes and relays itself (kvm: in the guest,
   * inside the container, over the guest's exec ports), with pty-relay.py's streams: fd 0 the bytes
   * typed, fd 1 what the terminal prints, fd 3 resize requests (one `COLUMNS ROWS` line each); exits
   * with the command's status. Used instead of enterTtyArgv when present.
   */
  enterTerminalArgv?(pod: PreparedPod, app: AppManifest, mainPid: number, command: string[], size?: { cols: number; rows: number }): string[];
  cleanup(pod: PreparedPod): Promise<void>;
}
