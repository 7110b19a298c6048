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
import { cgroupUsageOf } from '../common/cgroups.js';
import { STAGE1_NAMES, type Stage1Name } from '../stage1/contract.js';
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
  async checkPortForward(podId: string) { await this.rt.portForwardTarget(podId); }
  dialPort(podId: string, port: number) { return this.rt.dialPort(podId, port); }
  async checkExec(podId: string, container: string, opts: Pick<ExecOptions, 'tty'>) { await this.rt.checkExec(podId, container, opts); }
  async gc() { await this.rt.gc({ exitedGracePeriodMs: Number.MAX_SAFE_INTEGER }); }
  /**
   * From each running app's cgroup (its unit's). kvm pods are left out: their
   * apps' units hold only a proxy, and the guest's usage is not split per app.
   */
  async containerUsage(): Promise<PodUsage[]> {
    const out: PodUsage[] = [];
    for (const pod of await this.rt.listPods()) {
      if (pod.state !== 'running' || pod.handler === 'kvm') continue;
      const containers: ContainerUsage[] = [];
      for (const app of pod.apps) {
        if (app.state !== 'running' || !app.mainPid) continue;
        const usage = cgroupUsageOf(app.mainPid);
        if (usage) containers.push({ name: app.name, startedAt: app.startedAt, ...usage });
      }
      out.push({ uuid: pod.uuid, uid: pod.uid, name: pod.name, namespace: pod.namespace, startedAt: pod.startedAt, containers });
    }
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
