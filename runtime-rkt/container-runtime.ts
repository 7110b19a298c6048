/**
 * runtime-rkt behind the neutral runtime interface (runtime-api/): what the
 * agent drives when the node runs --container-runtime=rkt. Runtime handlers
 * are the stage1 flavours.
 */
import type { ContainerRuntime, ContainerUsage, PodUsage, RuntimeFactory, RuntimeOpenOptions } from '../runtime-api/runtime.js';
import type { Pod } from '../runtime-api/pod-spec.js';
import type { RegistryKeyring } from '../runtime-api/registry-auth.js';
import type { LogQuery } from '../runtime-api/logs.js';
import type { ExecOptions } from '../runtime-api/streams.js';
import { HandlerNotOffered } from '../runtime-api/errors.js';
import { cgroupDirsOf, cgroupUsageIn, siblingCgroupDirs, type CgroupDir, type CgroupUsage } from '../common/cgroups.js';
import { STAGE1_NAMES, unitNames, type Stage1Name } from '../stage1/contract.js';
import { RktRuntime } from './runtime.js';
import { readLogs } from './logs.js';

/** The version nodeInfo.containerRuntimeVersion reports (rkt://VERSION). */
export const RKT_RUNTIME_VERSION = '0.1.0';

type VmAccel = 'kvm' | 'tcg' | 'unavailable';

class RktContainerRuntime implements ContainerRuntime {
  readonly name = 'rkt';
  readonly version = RKT_RUNTIME_VERSION;
  readonly handlers = STAGE1_NAMES;
  readonly nodeLabels: Readonly<Record<string, string>>;
  constructor(private readonly rt: RktRuntime, vmAccel: VmAccel) {
    // What VM pods get here: the scheduler and users can tell emulated (tcg) isolation from hardware.
    this.nodeLabels = { 'stevedore.io/kvm-accel': vmAccel };
  }
  async runPod(pod: Pod, opts: { handler?: string }): Promise<string> {
    if (opts.handler !== undefined && !(STAGE1_NAMES as readonly string[]).includes(opts.handler)) throw new HandlerNotOffered(opts.handler, this.name, this.handlers);
    return this.rt.runPod(pod, { stage1: opts.handler as Stage1Name | undefined });
  }
  async findImage(ref: string) {
    const image = await this.rt.images.resolve(ref);
    // localhost/ is where built and imported images live (Podman's convention): no registry has them.
    return image && { id: image.id, local: image.names.some((n) => n.startsWith('localhost/')) };
  }
  async pullImage(ref: string, opts: { insecureRegistries?: string[]; auth?: RegistryKeyring }) { await this.rt.images.pull(ref, opts); }
  listPods() { return this.rt.listPods(); }
  async stopPod(id: string, gracePeriodSeconds?: number) { await this.rt.stopPod(id, { gracePeriodSeconds }); }
  removePod(id: string) { return this.rt.removePod(id, { force: true }); }
  logs(query: LogQuery) { return readLogs(query); }
  runInContainer(podId: string, container: string, command: string[], timeoutMs: number) { return this.rt.runInContainer(podId, container, command, { timeoutMs }); }
  killContainer(podId: string, container: string, gracePeriodSeconds: number) { return this.rt.killApp(podId, container, gracePeriodSeconds); }
  exec(podId: string, container: string, command: string[], opts: ExecOptions) { return this.rt.exec(podId, container, command, opts); }
  attach(podId: string, container: string, opts: { stdin: boolean; tty: boolean }) { return this.rt.attach(podId, container, opts); }
  async checkAttach(podId: string, container: string, opts: { tty: boolean }) { await this.rt.attachTarget(podId, container, opts); }
  openPortForward(podId: string) { return this.rt.openPortForward(podId); }
  async checkExec(podId: string, container: string, opts: Pick<ExecOptions, 'tty'>) { await this.rt.checkExec(podId, container, opts); }
  async gc() { await this.rt.gc({ exitedGracePeriodMs: Number.MAX_SAFE_INTEGER }); }
  /** Each running app's cgroup folders, by main PID and start: a process stays in its unit's cgroup, so /proc/PID/cgroup and mountinfo are read once per run, not per sample. */
  private readonly cgroupDirs = new Map<string, CgroupDir[]>();

  /**
   * From each running app's cgroup (its unit's). A kvm pod's apps' units hold
   * only a proxy each, and the guest's usage is not visible per app from the
   * node: the pod is counted from its VM unit's cgroup (qemu and its
   * helpers), a sibling of the proxies' in the pod's slice, and its apps are
   * listed without numbers.
   */
  async containerUsage(): Promise<PodUsage[]> {
    const out: PodUsage[] = [];
    const seen = new Set<string>();
    const dirsOf = (pid: number, startedAt: number | undefined) => {
      const key = `${pid}/${startedAt ?? 0}`;
      seen.add(key);
      let dirs = this.cgroupDirs.get(key);
      if (!dirs) {
        dirs = cgroupDirsOf(pid);
        if (dirs.length) this.cgroupDirs.set(key, dirs); // [] is a process gone: not worth keeping
      }
      return dirs;
    };
    for (const pod of await this.rt.listPods()) {
      if (pod.state !== 'running') continue;
      const containers: ContainerUsage[] = [];
      let sandbox: CgroupUsage | undefined;
      for (const app of pod.apps) {
        if (app.state !== 'running' || !app.mainPid) continue;
        const dirs = dirsOf(app.mainPid, app.startedAt);
        if (pod.handler === 'kvm') {
          sandbox ??= cgroupUsageIn(siblingCgroupDirs(dirs, unitNames.pod(pod.uuid)), { processMemory: true });
          containers.push({ name: app.name, startedAt: app.startedAt, usageUnknown: true, cpuUsageNs: 0, memoryUsageBytes: 0, workingSetBytes: 0, rssBytes: 0 });
          continue;
        }
        const usage = cgroupUsageIn(dirs);
        if (usage) containers.push({ name: app.name, startedAt: app.startedAt, ...usage });
      }
      // A VM whose counters cannot be read (its unit just went): no numbers at all rather than containers that would sum to 0.
      if (pod.handler === 'kvm' && !sandbox) containers.length = 0;
      out.push({ uuid: pod.uuid, uid: pod.uid, name: pod.name, namespace: pod.namespace, startedAt: pod.startedAt, containers, ...(sandbox ? { sandbox } : {}) });
    }
    for (const key of this.cgroupDirs.keys()) if (!seen.has(key)) this.cgroupDirs.delete(key);
    return out;
  }
  onChange(listener: () => void) {
    void this.rt.systemd().then((sd) => sd.on('unitChanged', listener), () => undefined);
  }
  close() { return this.rt.close(); }
}

/** Open the rkt runtime for the agent: finish what a killed predecessor left (reconcile), connect to systemd, probe VM acceleration. */
export const openRktRuntime: RuntimeFactory = async (opts: RuntimeOpenOptions) => {
  const { parseStage1Name } = await import('../stage1/contract.js');
  const rt = await RktRuntime.open({ dataDir: opts.dataDir, dbusAddress: opts.dbusAddress, defaultStage1: opts.defaultHandler ? parseStage1Name(opts.defaultHandler) : undefined, network: opts.network, kvmAccel: opts.kvmAccel, imageLimits: opts.imageLimits,
    ...(opts.clusterDns ? { clusterDns: opts.clusterDns } : {}) });
  await rt.reconcile();
  await rt.systemd();
  return new RktContainerRuntime(rt, await vmAccelAtStart(opts.kvmAccel ?? 'auto'));
};

/** The boot probe at start (its verdict is kept for this boot of the node and these assets: stage1/kvm/accel.ts). */
async function vmAccelAtStart(mode: 'auto' | 'kvm' | 'tcg'): Promise<VmAccel> {
  const { loadKvmAssets } = await import('../stage1/kvm/assets.js');
  const { chooseAccel } = await import('../stage1/kvm/accel.js');
  try {
    const assets = await loadKvmAssets();
    return (await chooseAccel(mode, assets)).accel;
  } catch {
    return 'unavailable';
  }
}
