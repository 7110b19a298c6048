import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { errnoCode, UserError } from '../common/errors.js';
import { atomicWrite, atomicWriteJson, readJsonIfExists } from '../common/fsutil.js';
import { prop, Variant, type UnitProperty } from '../common/systemd.js';
import { appMountSource, appRestart, podPaths, unitNames, type AppManifest, type AppUnitPlan, type PodUnitPlan, type PreparedPod, type Stage1 } from './contract.js';
import { chooseAccel, type KvmAccelMode } from './kvm/accel.js';
import { loadKvmAssets } from './kvm/assets.js';
import { attachVmNetwork } from './kvm/net.js';
import { fsops } from '../common/fsops.js';
import { commandOnPath } from '../common/run-captured.js';
import { ociSpec } from './oci-spec.js';
import { precompileSeccomp } from './seccomp-bpf.js';
import { appSecurity } from './app-security.js';
import { readLocalhostSeccomp } from './seccomp.js';
import { guestCpus, guestMemoryMiB, qemuArgv, type KvmAccel } from './kvm/vm.js';

/** `<pod>/stage1/kvm/vm.json`: what prepare() chose for the pod's VM (the accel is shown in pod status). */
export interface VmRecord {
  accel: KvmAccel;
  accelMode: KvmAccelMode;
  accelReason: string;
  memoryMiB: number;
  cpus: number;
  assetsDir: string;
  kernel: string;
}

const kvmDir = (pod: PreparedPod | string) => path.join(podPaths(typeof pod === 'string' ? pod : pod.dir).stage1, 'kvm');
export const vmRecordPath = (podDir: string) => path.join(kvmDir(podDir), 'vm.json');
const shareDir = (pod: PreparedPod) => path.join(kvmDir(pod), 'share');

/**
 * The pod's volume mounts as the guest sees them: every distinct node source
 * (an emptyDir, a hostPath, a subPath's bind) is bound once into the share at
 * volumes/<k>, in the order apps and mounts come, so prepare() and
 * podUnits() agree on k. Read-only in the share when every mount of it is
 * (qemu then cannot write it either, whatever the guest asks).
 */
function volumeShares(pod: PreparedPod): Array<{ source: string; readOnly: boolean }> {
  const shares = new Map<string, { source: string; readOnly: boolean }>();
  for (const app of pod.manifest.apps) {
    for (const m of app.mounts ?? []) {
      const seen = shares.get(m.source);
      if (seen) seen.readOnly &&= m.readOnly;
      else shares.set(m.source, { source: m.source, readOnly: m.readOnly });
    }
  }
  return [...shares.values()];
}
/** The pod's network namespace, where stage0 (runtime-rkt/network.ts netnsPath) attaches CNI, as for namespaces pods. */
const netnsFile = (pod: PreparedPod) => path.join(podPaths(pod.dir).stage1, 'ns', 'net');
/** Under /run (short: unix socket paths are limited to 108 bytes); systemd makes and removes it with the VM unit. */
const runDirName = (uuid: string) => `stevedore-kvm/${uuid.replace(/-/g, '')}`;
export const vmRunDir = (uuid: string) => path.join('/run', runDirName(uuid));

/** The indexes of the apps with stdin or a terminal: each gets a port a<i>.in. */
const consoleApps = (apps: AppManifest[]) => apps.flatMap((app, i) => (app.console ? [i] : []));

const PROXY = path.join(path.dirname(new URL(import.meta.url).pathname), 'kvm', 'app-proxy.js');
const EXEC_CLIENT = path.join(path.dirname(new URL(import.meta.url).pathname), 'kvm', 'exec-client.js');
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export async function readVmRecord(podDir: string): Promise<VmRecord | undefined> {
  return readJsonIfExists<VmRecord>(vmRecordPath(podDir)).catch(() => undefined);
}

function hostTscKhz(cpuinfo: string): number | undefined {
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1];
  return mhz ? Math.round(Number(mhz) * 1000) : undefined;
}

async function unmountIfMounted(dir: string): Promise<void> {
  const r = await execa('umount', [dir], { reject: false });
  if (r.exitCode !== 0 && !/not mounted|no mount point|not found|No such file/i.test(r.stderr)) {
    throw new UserError(`cannot unmount ${dir}: ${r.stderr.trim()}`, { hint: 'see what holds it (fuser -m) and run `stevedore gc` again' });
  }
}

/**
 * Capabilities qemu keeps (its bounding set): what 9p passthrough needs so the guest's files keep the
 * owners, modes and times the guest gives them, in directories of any owner (the guest kernel does the
 * permission checks: access=client). Each one found by trying without it (test/security-kvm.test.ts).
 */
export const QEMU_CAPABILITIES: Record<string, number> = { CAP_CHOWN: 0, CAP_DAC_OVERRIDE: 1, CAP_FOWNER: 3 };
// Left out on purpose: CAP_MKNOD (a guest mknod over 9p would make a device node of the node's in the
// pod's rootfs), CAP_NET_ADMIN (the tap is made owned by root, so attaching needs no capability),
// CAP_SYS_ADMIN, CAP_SETUID/SETGID (qemu runs as root and never changes ids: -sandbox elevateprivileges=deny),
// CAP_DAC_READ_SEARCH (DAC_OVERRIDE covers 9p's reads), CAP_FSETID (a guest write to a setuid file
// of its image clears the bit, as it would for a writer without CAP_FSETID).

const MS_REC = 16384n;

/**
 * systemd sandboxing of the VM unit (every Exec* of it): qemu is a large
 * program that parses what the guest sends, so if a guest breaks it, the
 * node around it must give as little as possible. Not MemoryDenyWriteExecute:
 * TCG translates guest code into host code at run time and needs W+X pages
 * (with KVM too, qemu keeps TCG in the binary and maps its buffer W+X).
 */
function vmSandbox(binds: { share: [string, string]; readOnly: Array<[string, string]> }): UnitProperty[] {
  const caps = Object.values(QEMU_CAPABILITIES).reduce((m, bit) => m | (1n << BigInt(bit)), 0n);
  return [
    prop.bool('NoNewPrivileges', true),
    prop.u64('CapabilityBoundingSet', caps),
    prop.str('ProtectSystem', 'strict'),
    prop.str('ProtectHome', 'yes'),
    prop.bool('PrivateTmp', true),
    prop.bool('ProtectKernelTunables', true), prop.bool('ProtectKernelModules', true), prop.bool('ProtectKernelLogs', true),
    prop.bool('ProtectControlGroups', true), prop.bool('ProtectClock', true), prop.bool('ProtectHostname', true),
    // The allowed set: none (qemu makes no namespaces; systemd joins the pod's netns before the sandbox applies).
    prop.u64('RestrictNamespaces', 0),
    // RestrictSUIDSGID: qemu cannot make setuid/setgid files on the node, so a guest cannot plant one in
    // its rootfs through 9p either. The cost, inside the guest: chmod u+s/g+s, and mkdir in a setgid
    // directory, fail with EPERM (setuid files the image brings still work: stage0 extracted them).
    prop.bool('RestrictRealtime', true), prop.bool('RestrictSUIDSGID', true), prop.bool('LockPersonality', true),
    prop.strs('SystemCallArchitectures', ['native']),
    // The chardev sockets and the systemctl of ExecStopPost; the tap is a file descriptor, not a socket.
    ['RestrictAddressFamilies', new Variant('(bas)', [true, ['AF_UNIX']])],
    // closed: /dev/null, zero, full, random, urandom and these.
    prop.str('DevicePolicy', 'closed'),
    ['DeviceAllow', new Variant('a(ss)', [['/dev/kvm', 'rw'], ['/dev/net/tun', 'rw']])],
    // The only writable places: the run dir (RuntimeDirectory) and the pod's share; the guest assets read-only.
    ['BindPaths', new Variant('a(ssbt)', [[binds.share[0], binds.share[1], false, MS_REC]])],
    ['BindReadOnlyPaths', new Variant('a(ssbt)', binds.readOnly.map(([from, to]) => [from, to, false, 0n]))],
  ];
}

/**
 * kvm: every pod in its own virtual machine (qemu, microvm). The app units
 * stay (one per app, same names, restart policy, exit recorder, journal
 * fields), but their main process is a proxy to the app in the guest
 * (kvm/app-proxy.ts); one more unit per pod, `stevedore-<uuid>.service`,
 * runs qemu. Guest side: kvm/guest-init.sh.
 */
export class KvmStage1 implements Stage1 {
  readonly name = 'kvm' as const;
  readonly cgroupLimits = false as const;
  constructor(private readonly accelMode: KvmAccelMode = 'auto') {}

  async prepare(pod: PreparedPod): Promise<void> {
    if (pod.manifest.pod.spec.hostNetwork) {
      throw new UserError('a hostNetwork pod cannot run in a VM (stage1 kvm): the guest has its own network stack', { hint: 'run it with --stage1 namespaces or fly, or drop hostNetwork' });
    }
    const assets = await loadKvmAssets();
    const choice = await chooseAccel(this.accelMode, assets);
    const share = shareDir(pod);
    await fs.mkdir(path.join(share, 'apps'), { recursive: true });
    await fs.mkdir(path.join(share, 'etc'), { recursive: true });
    await fs.mkdir(path.join(share, 'guest'), { recursive: true });
    // One 9p share for the whole pod (microvm has only 8 virtio-mmio slots):
    // each app's rootfs and the pod's etc files, bound into it. Bind mounts
    // follow the pod directory when it is renamed to run/.
    for (const [i, app] of pod.manifest.apps.entries()) {
      const target = path.join(share, 'apps', String(i));
      await fs.mkdir(target, { recursive: true });
      await execa('mount', ['--bind', podPaths(pod.dir).rootfs(app.name), target]);
    }
    const etc = path.join(share, 'etc');
    await execa('mount', ['--bind', path.join(pod.dir, 'etc'), etc]);
    await execa('mount', ['-o', 'remount,bind,ro', etc]);
    // Volumes reach the guest through the same share (9p): stage0 made each one a node path already.
    for (const [k, v] of volumeShares(pod).entries()) {
      const source = appMountSource(pod.dir, { volume: '', source: v.source, destination: '', readOnly: v.readOnly });
      const target = path.join(share, 'volumes', String(k));
      await fs.mkdir(path.dirname(target), { recursive: true });
      if ((await fs.stat(source)).isDirectory()) await fs.mkdir(target);
      else await fs.writeFile(target, '', { flag: 'wx' });
      // --no-canonicalize: the source is used as it is (a subPath's bind is already the resolved path).
      await execa('mount', ['--no-canonicalize', '--bind', source, target]);
      if (v.readOnly) await execa('mount', ['-o', 'remount,bind,ro', target]);
    }
    const record: VmRecord = {
      accel: choice.accel, accelMode: choice.mode, accelReason: choice.reason,
      memoryMiB: guestMemoryMiB(pod.manifest.apps), cpus: guestCpus(pod.manifest.apps, os.cpus().length),
      assetsDir: assets.dir, kernel: assets.info.kernelVersion,
    };
    await atomicWriteJson(vmRecordPath(pod.dir), record);
    // The pod's netns, persisted as a bind-mounted nsfs file (no process needs to hold it): CNI attaches it before launch, qemu runs in it.
    await fs.mkdir(path.dirname(netnsFile(pod)), { recursive: true });
    await fs.writeFile(netnsFile(pod), '');
    await execa('unshare', [`--net=${netnsFile(pod)}`, '--', 'ip', 'link', 'set', 'lo', 'up']);
  }

  /**
   * App i's OCI runtime spec for crun in the guest: the same builder as the
   * namespaces stage1 (one set of defaults), with guest paths. The app gets
   * its own pid, mount and uts namespaces; net and ipc stay the guest's (the
   * pod's, shared by its apps as Kubernetes wants); one cgroup per app.
   */
  private async guestSpec(pod: PreparedPod, i: number, app: AppManifest): Promise<Record<string, unknown>> {
    const sec = appSecurity(app);
    const spec = ociSpec({
      app,
      hostname: pod.manifest.hostname,
      namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'uts' }],
      binds: (['hosts', 'hostname', 'resolv.conf'] as const).map((f) => ({ source: `/pod/etc/${f}`, destination: `/etc/${f}` })),
      volumes: (app.mounts ?? []).map((m) => ({ source: `/pod/volumes/${volumeShares(pod).findIndex((v) => v.source === m.source)}`, destination: m.destination, readOnly: m.readOnly })),
      sysctls: pod.manifest.sysctls,
      // The profile is a file of the node's: read here, it travels in the spec.
      ...(sec.seccomp.type === 'Localhost' ? { localhostSeccomp: await readLocalhostSeccomp(sec.seccomp.path) } : {}),
      // No hostDevices for a privileged app: the node's devices are not the guest's. It gets every
      // capability and an open device cgroup (it may mknod any of the guest's devices), not the node's.
    });
    await precompileSeccomp(spec);
    const root = spec.root as { path: string; readonly?: boolean };
    const linux = spec.linux as Record<string, unknown>;
    return { ...spec, root: { ...root, path: `/pod/apps/${i}` }, linux: { ...linux, cgroupsPath: `/stevedore/app${i}` } };
  }

  /**
   * `guest/app<i>.sh`: run app i under crun from `guest/app<i>/config.json`
   * (a run killed with its VM would leave crun's state behind: delete it
   * first); `guest/enter<i>.sh` runs "$@" in the running container.
   */
  private appScripts(i: number, app: AppManifest): { run: string; enter: string } {
    const id = `app${i}`;
    // crun exec takes the user, capabilities and seccomp filter from the container's spec, but not no_new_privs.
    const nnp = appSecurity(app).noNewPrivileges ? '--no-new-privs ' : '';
    // A terminal app (process.terminal in its spec): crun makes the terminal inside the container and sends its
    // master to console-relay, which copies the app's stdin (the guest's relay of port a<i>.in) to it and its output
    // to stdout (port a<i>.out), and exits with crun's status. The container's pid is where `size` finds its terminal.
    const crunRun = app.console?.tty
      ? `console-relay /run/${id}-console.sock -- crun run --console-socket /run/${id}-console.sock --pid-file /run/${id}.cpid --bundle /pod/guest/${id} ${id}`
      : `crun run --bundle /pod/guest/${id} ${id}`;
    return {
      // $1: where the guest supervisor wants the app's pid (exec keeps it: crun run forwards signals and exits with the app's code).
      run: `echo $$ > "$1"\n[ -e /run/crun/${id} ] && crun delete --force ${id}\nexec ${crunRun}\n`,
      // --pid-file: the process in the container, whose session the guest kills when the host hangs up.
      enter: `exec crun exec ${nnp}--pid-file /run/exec.pid ${id} "$@"\n`,
    };
  }

  async podUnits(pod: PreparedPod): Promise<PodUnitPlan[]> {
    const { manifest } = pod;
    const vm = await readVmRecord(pod.dir);
    if (!vm) throw new UserError(`pod ${manifest.uuid} has no VM record (${vmRecordPath(pod.dir)})`, { hint: 'the pod was not prepared for kvm; remove it and run it again' });
    const assets = await loadKvmAssets(vm.assetsDir);
    const share = shareDir(pod);
    const guest = path.join(share, 'guest');
    // Only a pod CNI attached has an eth0 to hand over (network.json is stage0's record of the attachment).
    const net = (await fs.access(podPaths(pod.dir).network).then(() => true, () => false)) ? await attachVmNetwork(netnsFile(pod)) : undefined;
    await atomicWrite(path.join(guest, 'pod.env'), [
      `POD_HOSTNAME=${q(manifest.hostname)}`,
      `POD_APPS=${q(manifest.apps.map((_, i) => i).join(' '))}`,
      // Each app's own restart rule (init containers and sidecars have theirs), so the guest knows when an app is done for good.
      ...manifest.apps.map((app, i) => `POD_APP_RESTART_${i}=${appRestart(manifest.restartPolicy, app)}`),
      // An app with stdin or a terminal reads it from its port a<i>.in (its node-side holder is the app's proxy).
      ...consoleApps(manifest.apps).map((i) => `POD_APP_STDIN_${i}=1`),
      `POD_NET_ADDRS=${q(net?.addrs.join(' ') ?? '')}`,
      `POD_NET_GW=${q(net?.gateway ?? '')}`,
      `POD_NET_MTU=${q(String(net?.mtu ?? ''))}`,
      '',
    ].join('\n'));
    for (const [i, app] of manifest.apps.entries()) {
      const scripts = this.appScripts(i, app);
      await fs.mkdir(path.join(guest, `app${i}`), { recursive: true });
      // 0600: the spec holds the app's env, Secret values included, and the pod folder is open to the api-service's group.
      await atomicWrite(path.join(guest, `app${i}`, 'config.json'), `${JSON.stringify(await this.guestSpec(pod, i, app), null, 2)}\n`, 0o600);
      await atomicWrite(path.join(guest, `app${i}.sh`), scripts.run);
      await atomicWrite(path.join(guest, `enter${i}.sh`), scripts.enter);
    }
    const runDir = vmRunDir(manifest.uuid);
    const tscKhz = vm.accel === 'tcg' ? hostTscKhz(await fs.readFile('/proc/cpuinfo', 'utf8').catch(() => '')) : undefined;
    // qemu sees the files it needs at fixed places in its run dir, bound there by systemd (vmSandbox): the
    // data dir or the assets may live under /tmp, /var/tmp or /home, which the sandbox hides from it.
    const inRun = { share: path.join(runDir, 'share'), vmlinux: path.join(runDir, 'vmlinux'), initrd: path.join(runDir, 'initrd.cpio') };
    const argv = qemuArgv({
      vmlinux: inRun.vmlinux, initrd: inRun.initrd, accel: vm.accel, memoryMiB: vm.memoryMiB, cpus: vm.cpus, tscKhz,
      pod: { shareDir: inRun.share, runDir, appCount: manifest.apps.length, stdinApps: consoleApps(manifest.apps), ...(net ? { tap: { name: net.tap, mac: net.mac } } : {}) },
    });
    const qemu = commandOnPath(argv[0]!);
    if (!qemu) throw new UserError(`the kvm stage1 needs ${argv[0]}, and it is not installed`, { hint: 'apt-get install qemu-system-x86 (or run scripts/setup.sh)' });
    const md = manifest.pod.metadata;
    const appUnits = `${unitNames.podPattern(manifest.uuid).replace(/\*$/, '')}-*.service`;
    const podctl = path.join(runDir, 'podctl.in');
    const status = path.join(runDir, 'status');
    const vmUnit = unitNames.pod(manifest.uuid);
    return [{
      name: vmUnit,
      properties: [
        prop.str('Description', `Stevedore pod ${md.namespace ?? 'default'}/${md.name} VM (${vm.accel})`),
        prop.str('Type', 'exec'),
        // qemu opens the tap in the pod's netns; its serial sockets are files, reachable from the node.
        prop.str('NetworkNamespacePath', netnsFile(pod)),
        prop.strs('RuntimeDirectory', [runDirName(manifest.uuid)]),
        ['RuntimeDirectoryMode', new Variant('u', 0o700)],
        prop.str('SyslogIdentifier', 'stevedore-vm'),
        // Not the apps' fields: the console must not show up in `pod logs`.
        prop.logFields({ STEVEDORE_VM_POD_UUID: manifest.uuid }),
        prop.exec('ExecStartPre', [{ path: '/usr/bin/mkfifo', argv: ['mkfifo', '-m', '600', `${path.join(runDir, 'podctl')}.in`, `${path.join(runDir, 'podctl')}.out`] }]),
        prop.exec('ExecStart', [{ path: qemu, argv: [qemu, ...argv.slice(1)] }]),
        // A clean shutdown first: the guest powers off when asked on its control port; systemd kills after the timeout.
        prop.exec('ExecStop', [{ path: '/bin/sh', argv: ['/bin/sh', '-c', `exec 3<>${q(podctl)}; echo poweroff >&3; while kill -0 "$MAINPID" 2>/dev/null; do sleep 0.1; done`] }]),
        // qemu exits 0 after a guest kernel panic too: only the guest's own `done` marks a clean shutdown.
        prop.exec('ExecStopPost', [{ path: '/bin/sh', argv: ['/bin/sh', '-c',
          `grep -qx done ${q(status)} 2>/dev/null && exit 0; echo "the pod's VM stopped without a clean guest shutdown (kernel panic, qemu crash or kill): $(tr '\\n' ' ' < ${q(status)} 2>/dev/null)"; systemctl stop --no-block ${q(appUnits)}; exit 1`] }]),
        prop.u64('TimeoutStopUSec', (Math.max(1, manifest.terminationGracePeriodSeconds) + 5) * 1_000_000),
        // The only file qemu writes is the guest's status port (a few bytes): a guest writing without end must not fill /run.
        prop.u64('LimitFSIZE', 1 << 20), prop.u64('LimitFSIZESoft', 1 << 20),
        ...vmSandbox({ share: [share, inRun.share], readOnly: [[assets.vmlinux, inRun.vmlinux], [assets.initrd, inRun.initrd]] }),
      ],
    }];
  }

  async appUnit(pod: PreparedPod, app: AppManifest): Promise<AppUnitPlan> {
    const i = pod.manifest.apps.findIndex((a) => a.name === app.name);
    // stdin/tty: the proxy is the app's console holder on the node (attach.sock, as the namespaces stage1's console-holder.py).
    const consoleArgs = app.console ? [
      '--attach-socket', podPaths(pod.dir).attachSocket(app.name),
      ...(app.console.stdin ? ['--stdin'] : []), ...(app.console.stdinOnce ? ['--stdin-once'] : []), ...(app.console.tty ? ['--tty'] : []),
    ] : [];
    const argv = [process.execPath, PROXY, vmRunDir(pod.manifest.uuid), String(i), unitNames.pod(pod.manifest.uuid), ...consoleArgs];
    return {
      properties: [
        prop.exec('ExecStart', [{ path: process.execPath, argv }]),
        // Started (READY=1 from the proxy) once the guest runs the app; until then the container is waiting.
        prop.str('Type', 'notify'),
        prop.str('NotifyAccess', 'main'),
        // A VM boot under TCG on a loaded node takes seconds, not minutes; stage0 waits at most 120 s for the start job.
        prop.u64('TimeoutStartUSec', 100 * 1_000_000),
      ],
      stopPost: [],
    };
  }

  /** Through the guest's exec ports (kvm/exec-client.ts); one exec at a time per pod, stdout and stderr merged. */
  enterArgv(pod: PreparedPod, app: AppManifest, _mainPid: number, command: string[]): string[] {
    const i = pod.manifest.apps.findIndex((a) => a.name === app.name);
    return [process.execPath, EXEC_CLIENT, vmRunDir(pod.manifest.uuid), String(i), '--', ...command];
  }

  /**
   * On a terminal made in the guest, inside the container (crun exec of a whole process, as the
   * namespaces stage1's enterTtyArgv): the app's own OCI process from its config.json with this
   * command, `terminal: true` and the client's size as consoleSize, so the terminal has its size
   * before the command runs. The file goes into the pod's share (0600: it holds the app's
   * environment) under a name of its own; the guest removes it once crun has read it, the exec
   * client at the end in any case.
   */
  enterTerminalArgv(pod: PreparedPod, app: AppManifest, _mainPid: number, command: string[], size?: { cols: number; rows: number }): string[] {
    const i = pod.manifest.apps.findIndex((a) => a.name === app.name);
    const guest = path.join(shareDir(pod), 'guest');
    const spec = JSON.parse(readFileSync(path.join(guest, `app${i}`, 'config.json'), 'utf8')) as { process: Record<string, unknown> };
    const processFile = path.join(guest, `exec-${randomBytes(8).toString('hex')}.json`);
    const processSpec = { ...spec.process, args: command, terminal: true, ...(size ? { consoleSize: { width: size.cols, height: size.rows } } : {}) };
    writeFileSync(processFile, JSON.stringify(processSpec), { mode: 0o600 });
    return [process.execPath, EXEC_CLIENT, vmRunDir(pod.manifest.uuid), String(i), '--tty', processFile, '--resize-fd', '3', '--', ...command];
  }

  async cleanup(pod: PreparedPod): Promise<void> {
    const share = shareDir(pod);
    const apps = await fs.readdir(path.join(share, 'apps')).catch(() => [] as string[]);
    const volumes = await fs.readdir(path.join(share, 'volumes')).catch(() => [] as string[]);
    for (const dir of [...volumes.map((v) => path.join(share, 'volumes', v)), ...apps.map((a) => path.join(share, 'apps', a)), path.join(share, 'etc')]) {
      await unmountIfMounted(dir);
      // rmdir, never rm -r: a directory still holding files is a mount we failed to undo, and they are the app's.
      await fs.rmdir(dir).catch(async (err) => {
        if (errnoCode(err) === 'ENOTDIR') return fs.unlink(dir); // a file volume's mount point (unlink refuses a mount: EBUSY)
        if (errnoCode(err) !== 'ENOENT') throw err;
      });
    }
    await fs.rm(kvmDir(pod), { recursive: true, force: true });
    try {
      fsops.umount(netnsFile(pod));
    } catch (err) {
      if (errnoCode(err) !== 'EINVAL' && errnoCode(err) !== 'ENOENT') throw err;
    }
    await fs.rm(netnsFile(pod), { force: true });
  }
}
