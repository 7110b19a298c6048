/**
 * The agent's runtime interface on a Docker Engine: a pod is an infra
 * container holding the network (and IPC) namespace, attached to the pod
 * network by our CNI code, plus one container per app joined to it. Labels
 * on every container say which pod it belongs to (dockershim's
 * io.kubernetes.* labels, plus the runtime pod UUID), so the engine alone
 * holds what status needs; the pod directory only holds the CNI record and the
 * pod's /etc/hosts and /etc/resolv.conf.
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ContainerConfigError, PodNotFound, UserError } from '../common/errors.js';
import { atomicWrite, atomicWriteJson, readJsonIfExists } from '../common/fsutil.js';
import { cpuMillis, memoryBytes } from '../common/quantity.js';
import { cgroupUsageOf } from '../common/cgroups.js';
import { podHostnameAndDomain, podHostsFile, releaseStaleAttachments } from '../cni/index.js';
import { resolvConfText, type ClusterDnsConfig } from './pod-env.js';
import { checkRuntimeEnv, expandCommand, podEnv } from '../runtime-api/pod-env.js';
import { openPortTarget } from '../common/netns-dial.js';
import { lookupCredentials } from '../runtime-api/registry-auth.js';
import { parseReference } from '../runtime-api/image-reference.js';
import { HandlerNotOffered, ImageNotFound } from '../runtime-api/errors.js';
import { demultiplex, EngineError, jsonLines, splitStreams, type EngineClient } from './engine-api.js';
import { ensurePauseImage, hostPidOf, PAUSE_IMAGE } from './infra.js';
import { dockerImageGc, type DockerImageGcOptions, type DockerImageGcResult } from './image-gc.js';
import { attachDockerPod, detachDockerPod, loopbackUp, podIPsOf, recordDockerPodNetns } from './network.js';
import { containerCgroupParent, watchContainerNetns } from './early-netns.js';
import { createLogger } from '../common/log.js';
import type {
  AppStatus, ContainerRuntime, ContainerSpec, ContainerUsage, ExecOptions, ExecProcess, LogLine, LogQuery, Pod, PodNetworkOptions, PodStatus,
  PodUsage, PortForwardTarget, RegistryKeyring, Termination, TerminalSize,
} from './types.js';

const log = createLogger('runtime-docker');

/** Labels: dockershim's, so tools that know Kubernetes-on-Docker read them, plus ours. */
export const LABEL = {
  podUuid: 'io.stevedore.pod.uuid',
  podUid: 'io.kubernetes.pod.uid',
  podName: 'io.kubernetes.pod.name',
  podNamespace: 'io.kubernetes.pod.namespace',
  container: 'io.kubernetes.container.name',
  type: 'io.kubernetes.docker.type',
  index: 'io.stevedore.container.index',
  /** 'true' on init containers (run one by one to completion before the apps start). */
  init: 'io.stevedore.container.init',
  /** 'true' on a sidecar init container (restartPolicy Always): it only has to have started before the next one starts, and runs beside the apps. */
  sidecar: 'io.stevedore.container.sidecar',
  /** The image as the pod spec names it (the engine's Config.Image is the name it resolved: localhost/NAME for a local image). */
  image: 'io.stevedore.container.image',
  podLabels: 'io.stevedore.pod.labels',
  podAnnotations: 'io.stevedore.pod.annotations',
  grace: 'io.stevedore.pod.termination-grace-period',
  restartPolicy: 'io.stevedore.pod.restart-policy',
} as const;
const INFRA_NAME = 'POD';

/**
 * The runtime handler (isolation level, runtime-api/handlers.ts) this runtime
 * offers: `namespaces`, a container (the engine's runc). `fly` (root on the
 * node's filesystem) and `kvm` (a VM) have no equivalent on the engine.
 */
export const DOCKER_HANDLERS = ['namespaces'] as const;

export interface DockerRuntimeOptions {
  /** The agent's data dir for this runtime: pods/<uuid>/ (CNI record, /etc files, emptyDir volumes). */
  dir: string;
  network?: PodNetworkOptions;
  clusterDns?: ClusterDnsConfig;
}

interface ContainerSummary { Id: string; Names: string[]; Image: string; ImageID: string; State: string; Labels: Record<string, string>; Created: number }
interface ContainerState { Status: string; Running: boolean; Restarting: boolean; OOMKilled: boolean; Pid: number; ExitCode: number; StartedAt: string; FinishedAt: string; Error?: string }
interface ContainerInspect {
  Id: string; Name: string; Image: string; RestartCount: number; Created: string; State: ContainerState;
  Config: { Image: string; Labels: Record<string, string>; Tty?: boolean; User?: string };
  HostConfig: { NetworkMode?: string; RestartPolicy?: { Name: string } };
}

const ZERO_TIME = /^0001-01-01/;
const timeOf = (t: string | undefined) => (!t || ZERO_TIME.test(t) ? undefined : Date.parse(t));

/** Kubernetes' reason for a finished run. */
function terminationReason(state: Pick<ContainerState, 'OOMKilled' | 'ExitCode'>): string {
  return state.OOMKilled ? 'OOMKilled' : state.ExitCode === 0 ? 'Completed' : 'Error';
}

/** RFC 3339 with nanoseconds (the engine's log timestamps) → µs since epoch. */
export function parseEngineTimeUs(stamp: string): bigint {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(stamp);
  if (!m) return 0n;
  const seconds = BigInt(Math.floor(Date.parse(`${m[1]}${m[3]}`) / 1000));
  const micros = BigInt(((m[2] ?? '') + '000000').slice(0, 6));
  return seconds * 1_000_000n + micros;
}

const RESTART: Record<string, string> = { Always: 'always', OnFailure: 'on-failure', Never: 'no' };

/** An init container the next one may follow: exited 0, or a sidecar that has started. */
const initDone = (d: ContainerInspect) => (d.Config.Labels[LABEL.sidecar] === 'true' ? d.State.Status !== 'created' : d.State.Status === 'exited' && d.State.ExitCode === 0);

export class DockerRuntime implements ContainerRuntime {
  readonly name = 'docker';
  readonly handlers: readonly string[] = DOCKER_HANDLERS;
  readonly nodeLabels: Record<string, string> = {};
  private readonly listeners: Array<() => void> = [];
  private readonly events = new AbortController();
  /** Runs that ended, per container ID, newest last: the engine keeps only the latest (lastState, logs --previous). */
  private readonly ended = new Map<string, Termination[]>();
  /** Pods runPod is making: gc leaves their directory alone (their infra may not exist yet). */
  private readonly starting = new Set<string>();
  private pauseImageReady = false;
  /** Where the engine makes its containers' cgroups, as this process sees them: learnt from the first pod's infra (early-netns.ts). */
  private cgroupParent: string | undefined;
  /** Pods being stopped or removed: advance() starts nothing in them. */
  private readonly stopping = new Set<string>();
  /** One advance() per pod at a time; a request meanwhile runs it once more after. */
  private readonly advancing = new Map<string, boolean>();
  /**
   * listPods' inspects by container ID, kept while the engine's event stream
   * is followed: the engine announces every change of a container's state
   * (create, start, die, oom, restart, destroy…) with an event, so an entry is
   * good until an event about its container arrives. Without it every sync
   * pass inspected every container of every pod, and an inspect of a
   * container being started waits for the start to finish.
   */
  private readonly inspected = new Map<string, { info: ContainerInspect; asOf: number }>();
  /** Per container ID, the tick of the last event about it; `tick` orders events and inspects. */
  private readonly lastEvent = new Map<string, number>();
  private tick = 0;
  /** The tick at which the current event stream was opened; undefined while no stream is followed. */
  private followingSince: number | undefined;

  constructor(private readonly engine: EngineClient, readonly version: string, private readonly opts: DockerRuntimeOptions) {}

  private podDir(uuid: string): string {
    return path.join(this.opts.dir, 'pods', uuid);
  }

  // ---- pods ---------------------------------------------------------------

  async runPod(pod: Pod, opts: { handler?: string } = {}): Promise<string> {
    if (opts.handler !== undefined && !DOCKER_HANDLERS.includes(opts.handler as 'namespaces')) throw new HandlerNotOffered(opts.handler, this.name, DOCKER_HANDLERS);
    this.refuseUnsupported(pod);
    checkRuntimeEnv(pod);
    if (!this.pauseImageReady) {
      await ensurePauseImage(this.engine);
      this.pauseImageReady = true;
    }
    const uuid = randomUUID();
    const dir = this.podDir(uuid);
    this.starting.add(uuid);
    // The start's timeline at debug level (STEVEDORE_LOG_LEVEL=debug): ms since runPod began, per step.
    const began = performance.now();
    const timeline: Record<string, number> = {};
    const mark = (step: string) => { timeline[step] = Math.round((performance.now() - began) * 10) / 10; };
    let creations: Promise<PromiseSettledResult<string>[]> | undefined;
    let infraCreate: Promise<string> | undefined;
    try {
      // The pod's files are written while the engine creates the infra: the apps' bind mounts need their
      // sources when the apps are created; the files get their content once the pod has its IPs.
      infraCreate = this.createInfra(uuid, pod);
      // Its failure is thrown where it is awaited below; until then it must not count as unhandled.
      infraCreate.catch(() => undefined);
      await fs.mkdir(path.join(dir, 'etc'), { recursive: true });
      const [, volumes] = await Promise.all([this.writeEtcFiles(uuid, pod, []), this.prepareVolumes(uuid, pod)]);
      const infraId = await infraCreate;
      mark('infraCreated');
      const inits = pod.spec.initContainers ?? [];
      const all = [...inits.map((c, index) => ({ c, index, init: true })), ...pod.spec.containers.map((c, index) => ({ c, index, init: false }))];
      const create = (ips: string[]) => Promise.allSettled(all.map(({ c, index, init }) => this.createApp(uuid, pod, c, index, infraId, ips, volumes, init)));
      // Containers whose env does not name the pod IP are created while the infra starts and joins the network.
      const needsIPs = all.some(({ c }) => (c.env ?? []).some((e) => ['status.podIP', 'status.podIPs'].includes(e.valueFrom?.fieldRef?.fieldPath ?? '')));
      if (!needsIPs) creations = create([]);
      const onPodNetwork = pod.spec.hostNetwork !== true;
      // The pod's network is attached as soon as runc has made the infra's namespace, while the engine finishes the start.
      const early = onPodNetwork && this.cgroupParent ? watchContainerNetns(this.cgroupParent, infraId) : undefined;
      const infraStart = this.engine.call('POST', `/containers/${infraId}/start`).finally(() => { mark('infraStarted'); early?.stop(); });
      infraStart.catch(() => undefined);
      const network = this.opts.network;
      // The pod's /etc files get its IPs as soon as ADD has them (while the infra may still be starting); without IPs
      // the files written above are already what the pod gets.
      const attach = async (netns: string): Promise<string[]> => (await Promise.all([
        loopbackUp(netns),
        network ? attachDockerPod(network, dir, uuid, pod, netns).then(async (r) => {
          mark('cniAdded');
          if (r.ips.length) await this.writeEtcFiles(uuid, pod, r.ips);
          return r.ips;
        }) : Promise.resolve([]),
      ]))[1];
      let ips: string[] = [];
      const held = await early?.found;
      if (held) {
        mark('netnsSeen');
        try {
          const [started, attached] = await Promise.allSettled([infraStart, attach(held.path)]);
          if (started.status === 'rejected') throw started.reason;
          if (attached.status === 'rejected') throw attached.reason;
          ips = attached.value;
        } finally {
          await held.release();
        }
      } else {
        await infraStart;
        if (onPodNetwork) {
          const info = await this.inspect(infraId);
          const hostPid = await hostPidOf(infraId, info.State.Pid);
          this.cgroupParent ??= await containerCgroupParent(infraId, hostPid);
          ips = await attach(`/proc/${hostPid}/ns/net`);
        }
      }
      creations ??= create(ips);
      const created = await creations;
      mark('appsCreated');
      const failed = created.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      const ids = created.map((r) => (r as PromiseFulfilledResult<string>).value);
      // With init containers, the first starts now (and those after it while it is a sidecar) and each exit 0 starts the next (advance), then the apps.
      if (inits.length) await this.advance(uuid);
      // Started in the spec's order, as the kubelet starts them.
      else for (const id of ids) await this.engine.call('POST', `/containers/${id}/start`);
      mark('appsStarted');
      log.debug({ pod: `${pod.metadata.namespace ?? 'default'}/${pod.metadata.name}`, uuid, timeline, earlyNetns: held !== undefined }, 'pod started');
      // Off the pod's start path: the CNI cache names the infra's namespace by its process, not by the descriptor held above.
      // Best effort: the pod runs either way (this runtime's DEL never takes the recorded path; the infra gone, there is none to name).
      if (held && network) {
        await this.inspect(infraId)
          .then(async (info) => recordDockerPodNetns(dir, uuid, `/proc/${await hostPidOf(infraId, info.State.Pid)}/ns/net`))
          .catch((err: Error) => log.warn({ uuid, err: err.message }, 'the CNI cache still names the namespace by a descriptor'));
      }
    } catch (err) {
      await infraCreate?.catch(() => undefined);
      await creations?.catch(() => undefined);
      await this.removePod(uuid).catch(() => undefined);
      throw err;
    } finally {
      this.starting.delete(uuid);
    }
    this.changed();
    return uuid;
  }

  /** Fail closed on what this runtime does not do yet. */
  private refuseUnsupported(pod: Pod): void {
    const refused: string[] = [];
    for (const v of pod.spec.volumes ?? []) {
      const sources = Object.keys(v).filter((k) => k !== 'name');
      if (v.emptyDir?.medium === 'Memory') refused.push(`spec.volumes[${v.name}].emptyDir.medium: Memory`);
      else if (!sources.every((s) => s === 'emptyDir' || s === 'hostPath')) refused.push(`spec.volumes[${v.name}] (${sources.join(', ')})`);
    }
    pod.spec.containers.forEach((c, i) => {
      for (const m of c.volumeMounts ?? []) if (m.subPathExpr) refused.push(`spec.containers[${i}].volumeMounts[${m.name}].subPathExpr`);
      if (c.securityContext?.seccompProfile?.type === 'Localhost') refused.push(`spec.containers[${i}].securityContext.seccompProfile: Localhost`);
    });
    if (pod.spec.securityContext?.seccompProfile?.type === 'Localhost') refused.push('spec.securityContext.seccompProfile: Localhost');
    if (refused.length) throw new ContainerConfigError(`the docker runtime does not implement ${refused.join('; ')}`, 'run this pod on an rkt node, or leave those fields out');
  }

  private baseLabels(uuid: string, pod: Pod, container: string): Record<string, string> {
    const md = pod.metadata;
    return {
      [LABEL.podUuid]: uuid, [LABEL.podName]: md.name, [LABEL.podNamespace]: md.namespace ?? 'default', [LABEL.container]: container,
      ...(md.uid ? { [LABEL.podUid]: md.uid } : {}),
    };
  }

  private async createInfra(uuid: string, pod: Pod): Promise<string> {
    const md = pod.metadata;
    const { hostname } = podHostnameAndDomain({ podName: md.name, hostname: pod.spec.hostname, subdomain: pod.spec.subdomain, namespace: md.namespace ?? 'default' });
    const hostNetwork = pod.spec.hostNetwork === true;
    const sysctls = Object.fromEntries((pod.spec.securityContext?.sysctls ?? []).map((s) => [s.name, s.value]));
    const body = {
      Image: PAUSE_IMAGE,
      ...(hostNetwork ? {} : { Hostname: hostname }),
      // No network sandbox from the engine: runc makes the pod's network namespace, runPod brings
      // loopback up and our CNI attaches it. The engine's `none` network would cost two runs of
      // dockerd's own binary per start (libnetwork's netns-create and its setkey prestart hook).
      ...(hostNetwork ? {} : { NetworkDisabled: true }),
      Labels: {
        ...this.baseLabels(uuid, pod, INFRA_NAME), [LABEL.type]: 'podsandbox',
        [LABEL.podLabels]: JSON.stringify(md.labels ?? {}), [LABEL.podAnnotations]: JSON.stringify(md.annotations ?? {}),
        [LABEL.grace]: String(pod.spec.terminationGracePeriodSeconds ?? 30), [LABEL.restartPolicy]: pod.spec.restartPolicy ?? 'Always',
      },
      HostConfig: {
        NetworkMode: hostNetwork ? 'host' : 'none',
        IpcMode: pod.spec.hostIPC ? 'host' : 'shareable',
        ...(Object.keys(sysctls).length ? { Sysctls: sysctls } : {}),
        RestartPolicy: { Name: 'no' },
      },
    };
    const created = await this.engine.call<{ Id: string }>('POST', '/containers/create', { query: { name: containerName(pod, INFRA_NAME, uuid) }, body });
    return created.Id;
  }

  private async createApp(uuid: string, pod: Pod, c: ContainerSpec, index: number, infraId: string, ips: string[], volumes: Map<string, string>, init: boolean): Promise<string> {
    const body = await this.containerBody(uuid, pod, c, index, infraId, ips, volumes, init);
    const created = await this.engine.call<{ Id: string }>('POST', '/containers/create', { query: { name: containerName(pod, c.name, uuid) }, body }).catch((err: unknown) => {
      if (err instanceof EngineError && err.status === 404 && /no such image/i.test(err.engineMessage)) {
        throw new ImageNotFound(c.image, c.name, 'the agent pulls it per imagePullPolicy; `docker images` on the node lists what the engine holds');
      }
      throw err;
    });
    return created.Id;
  }

  private async writeEtcFiles(uuid: string, pod: Pod, ips: string[]): Promise<void> {
    const md = pod.metadata;
    const etc = path.join(this.podDir(uuid), 'etc');
    const { hostname } = podHostnameAndDomain({ podName: md.name, hostname: pod.spec.hostname, subdomain: pod.spec.subdomain, namespace: md.namespace ?? 'default' });
    const nodeHosts = pod.spec.hostNetwork ? await fs.readFile('/etc/hosts', 'utf8').catch(() => undefined) : undefined;
    await atomicWrite(path.join(etc, 'hosts'), podHostsFile({
      hostname, subdomain: pod.spec.subdomain, namespace: md.namespace ?? 'default', podIPs: ips, hostAliases: pod.spec.hostAliases, ...(nodeHosts ? { nodeHosts } : {}),
    }));
    await atomicWrite(path.join(etc, 'resolv.conf'), await resolvConfText(pod, this.opts.clusterDns));
  }

  /** emptyDir volumes: a directory per pod and volume (removed with the pod); hostPath: the node's path. */
  private async prepareVolumes(uuid: string, pod: Pod): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const fsGroup = pod.spec.securityContext?.fsGroup;
    for (const v of pod.spec.volumes ?? []) {
      if (v.emptyDir) {
        const dir = path.join(this.podDir(uuid), 'volumes', v.name);
        await fs.mkdir(dir, { recursive: true });
        await fs.chmod(dir, fsGroup !== undefined ? 0o2777 : 0o777);
        if (fsGroup !== undefined) await fs.chown(dir, 0, fsGroup);
        out.set(v.name, dir);
      } else if (v.hostPath) {
        const type = v.hostPath.type ?? '';
        if (type === 'DirectoryOrCreate') await fs.mkdir(v.hostPath.path, { recursive: true, mode: 0o755 });
        else if (type === 'FileOrCreate') await fs.writeFile(v.hostPath.path, '', { flag: 'a' });
        const st = await fs.stat(v.hostPath.path).catch(() => undefined);
        const want: Record<string, ((s: NonNullable<typeof st>) => boolean) | undefined> = {
          Directory: (s) => s.isDirectory(), File: (s) => s.isFile(), Socket: (s) => s.isSocket(), CharDevice: (s) => s.isCharacterDevice(), BlockDevice: (s) => s.isBlockDevice(),
        };
        const check = want[type];
        if (type && !st) throw new ContainerConfigError(`hostPath volume "${v.name}": ${v.hostPath.path} does not exist`, 'create it on the node, or use type DirectoryOrCreate');
        if (st && check && !check(st)) throw new ContainerConfigError(`hostPath volume "${v.name}": ${v.hostPath.path} is not a ${type}`);
        out.set(v.name, v.hostPath.path);
      }
    }
    return out;
  }

  private async containerBody(uuid: string, pod: Pod, c: ContainerSpec, index: number, infraId: string, ips: string[], volumes: Map<string, string>, init: boolean): Promise<Record<string, unknown>> {
    const field = `spec.${init ? 'initContainers' : 'containers'}[${index}]`;
    // Init containers run to completion: retried on failure unless the pod never restarts (the kubelet's rule); a sidecar always.
    const sidecar = init && c.restartPolicy === 'Always';
    const restart = sidecar ? 'always' : init ? ((pod.spec.restartPolicy ?? 'Always') === 'Never' ? 'no' : 'on-failure') : RESTART[pod.spec.restartPolicy ?? 'Always'];
    const env = podEnv(c, ips);
    const { command, args } = expandCommand(c, env);
    const psc = pod.spec.securityContext ?? {};
    const csc = c.securityContext ?? {};
    const runAsUser = csc.runAsUser ?? psc.runAsUser;
    const runAsGroup = csc.runAsGroup ?? psc.runAsGroup;
    if (csc.runAsNonRoot ?? psc.runAsNonRoot) await this.checkNonRoot(c, runAsUser, field);
    const limits = c.resources?.limits ?? {};
    const memory = limits.memory !== undefined ? memoryBytes(limits.memory, `${field}.resources.limits.memory`) : undefined;
    const cpu = limits.cpu !== undefined ? cpuMillis(limits.cpu, `${field}.resources.limits.cpu`) : undefined;
    const requests = c.resources?.requests ?? {};
    const cpuShares = requests.cpu !== undefined ? Math.max(2, Math.floor((cpuMillis(requests.cpu, `${field}.resources.requests.cpu`) * 1024) / 1000)) : undefined;
    const privileged = csc.privileged === true;
    const seccomp = privileged ? 'unconfined' : (csc.seccompProfile ?? psc.seccompProfile)?.type === 'Unconfined' ? 'unconfined' : undefined;
    const securityOpt = [
      ...(seccomp ? [`seccomp=${seccomp}`] : []),
      // rkt's default, and containerd's for a container that does not ask for escalation.
      ...(!privileged && csc.allowPrivilegeEscalation !== true ? ['no-new-privileges'] : []),
    ];
    const mounts = [
      ...(pod.spec.hostNetwork ? [] : [{ Type: 'bind', Source: path.join(this.podDir(uuid), 'etc', 'hosts'), Target: '/etc/hosts' }]),
      { Type: 'bind', Source: path.join(this.podDir(uuid), 'etc', 'resolv.conf'), Target: '/etc/resolv.conf', ReadOnly: true },
      ...(c.volumeMounts ?? []).map((m) => {
        const source = volumes.get(m.name);
        if (!source) throw new ContainerConfigError(`${field}.volumeMounts: no volume named "${m.name}"`);
        return { Type: 'bind', Source: m.subPath ? path.join(source, m.subPath) : source, Target: m.mountPath, ReadOnly: m.readOnly === true };
      }),
    ];
    const groups = [...(psc.supplementalGroups ?? []), ...(psc.fsGroup !== undefined ? [psc.fsGroup] : [])].map(String);
    const hostPid = pod.spec.hostPID === true;
    return {
      Image: await this.storedName(c.image),
      ...(command ? { Entrypoint: command } : {}),
      ...(args ? { Cmd: args } : command ? { Cmd: [] } : {}),
      Env: [...env].map(([k, v]) => `${k}=${v}`),
      ...(c.workingDir ? { WorkingDir: c.workingDir } : {}),
      ...(runAsUser !== undefined ? { User: runAsGroup !== undefined ? `${runAsUser}:${runAsGroup}` : String(runAsUser) } : {}),
      Tty: c.tty === true, OpenStdin: c.stdin === true, StdinOnce: c.stdinOnce === true, AttachStdin: false,
      Labels: { ...this.baseLabels(uuid, pod, c.name), [LABEL.type]: 'container', [LABEL.index]: String(index), [LABEL.image]: c.image, ...(init ? { [LABEL.init]: 'true' } : {}), ...(sidecar ? { [LABEL.sidecar]: 'true' } : {}) },
      StopTimeout: pod.spec.terminationGracePeriodSeconds ?? 30,
      HostConfig: {
        NetworkMode: `container:${infraId}`,
        IpcMode: `container:${infraId}`,
        ...(hostPid ? { PidMode: 'host' } : {}),
        Mounts: mounts,
        RestartPolicy: { Name: restart },
        ...(memory !== undefined ? { Memory: memory, MemorySwap: memory } : {}),
        ...(cpu !== undefined ? { NanoCpus: cpu * 1_000_000 } : {}),
        ...(cpuShares !== undefined ? { CpuShares: cpuShares } : {}),
        PidsLimit: 4096,
        Privileged: privileged,
        ReadonlyRootfs: csc.readOnlyRootFilesystem === true,
        ...(csc.capabilities?.add?.length ? { CapAdd: csc.capabilities.add.map(capName) } : {}),
        ...(csc.capabilities?.drop?.length ? { CapDrop: csc.capabilities.drop.map(capName) } : {}),
        ...(securityOpt.length ? { SecurityOpt: securityOpt } : {}),
        ...(groups.length ? { GroupAdd: groups } : {}),
        Init: false,
      },
    };
  }

  /** runAsNonRoot: the user the container will run as must not be 0 (from the spec, else the image's). */
  private async checkNonRoot(c: ContainerSpec, runAsUser: number | undefined, field: string): Promise<void> {
    if (runAsUser !== undefined) {
      if (runAsUser === 0) throw new ContainerConfigError(`${field}: runAsNonRoot is set but runAsUser is 0`, 'run as a non-zero UID');
      return;
    }
    const image = await this.engine.call<{ Config?: { User?: string } }>('GET', `/images/${encodeURIComponent(await this.storedName(c.image))}/json`);
    const user = (image.Config?.User ?? '').split(':')[0] ?? '';
    if (!/^\d+$/.test(user) || Number(user) === 0) {
      throw new ContainerConfigError(`${field}: runAsNonRoot is set and the image runs as ${user ? `"${user}"` : 'root'} (a numeric non-zero user is required)`, 'set securityContext.runAsUser');
    }
  }

  // ---- status -------------------------------------------------------------

  private async ourContainers(uuid?: string): Promise<ContainerSummary[]> {
    const filters = { label: [uuid ? `${LABEL.podUuid}=${uuid}` : LABEL.podUuid] };
    return this.engine.call<ContainerSummary[]>('GET', '/containers/json', { query: { all: 1, filters: JSON.stringify(filters) } });
  }

  private inspect(id: string): Promise<ContainerInspect> {
    return this.engine.call<ContainerInspect>('GET', `/containers/${id}/json`);
  }

  async listPods(): Promise<PodStatus[]> {
    const byPod = new Map<string, ContainerSummary[]>();
    for (const c of await this.ourContainers()) {
      const uuid = c.Labels[LABEL.podUuid]!;
      byPod.set(uuid, [...(byPod.get(uuid) ?? []), c]);
    }
    this.forgetInspects(new Set([...byPod.values()].flat().map((c) => c.Id)));
    const pods = await Promise.all([...byPod].map(async ([uuid, containers]) => {
      const details = (await Promise.all(containers.map((c) => this.inspectForStatus(c.Id).catch(() => undefined)))).filter((d): d is ContainerInspect => !!d);
      return this.podStatus(uuid, details);
    }));
    return pods.filter((p): p is PodStatus => p !== undefined);
  }

  /** A container's inspect for status: the kept one unless an event about the container came since (see `inspected`). */
  private async inspectForStatus(id: string): Promise<ContainerInspect> {
    const since = this.followingSince;
    const kept = this.inspected.get(id);
    if (since !== undefined && kept && kept.asOf > since && (this.lastEvent.get(id) ?? 0) < kept.asOf) return kept.info;
    // Ticked before the call: an event that arrives while the engine answers makes the answer stale.
    const asOf = ++this.tick;
    const info = await this.inspect(id);
    if (since !== undefined && this.followingSince === since) this.inspected.set(id, { info, asOf });
    return info;
  }

  /** Kept inspects of containers the engine no longer lists (their event ticks go with their `destroy` event). */
  private forgetInspects(listed: Set<string>): void {
    for (const id of this.inspected.keys()) if (!listed.has(id)) this.inspected.delete(id);
  }

  private async podStatus(uuid: string, details: ContainerInspect[]): Promise<PodStatus | undefined> {
    const infra = details.find((d) => d.Config.Labels[LABEL.type] === 'podsandbox');
    const order = (d: ContainerInspect) => (d.Config.Labels[LABEL.init] === 'true' ? 0 : 1_000_000) + Number(d.Config.Labels[LABEL.index]);
    const apps = details.filter((d) => d.Config.Labels[LABEL.type] === 'container').sort((a, b) => order(a) - order(b));
    const initializing = apps.some((d) => d.Config.Labels[LABEL.init] === 'true' && !initDone(d));
    const any = infra ?? apps[0];
    if (!any) return undefined;
    const labels = any.Config.Labels;
    const parse = (s: string | undefined) => { try { return s ? (JSON.parse(s) as Record<string, string>) : undefined; } catch { return undefined; } };
    const running = infra?.State.Running === true;
    const ips = running ? await podIPsOf(this.podDir(uuid)) : [];
    return {
      uuid,
      state: running ? 'running' : 'exited',
      handler: DOCKER_HANDLERS[0], hostNetwork: infra?.HostConfig.NetworkMode === 'host',
      name: labels[LABEL.podName], namespace: labels[LABEL.podNamespace], uid: labels[LABEL.podUid],
      labels: parse(infra?.Config.Labels[LABEL.podLabels]), annotations: parse(infra?.Config.Labels[LABEL.podAnnotations]),
      createdAt: timeOf(any.Created), startedAt: timeOf(infra?.State.StartedAt),
      ...(ips.length ? { podIPs: ips, networks: [{ name: 'pod', ifName: 'eth0', ips }] } : {}),
      apps: apps.map((d) => this.appStatus(d, initializing, running)),
    };
  }

  private appStatus(d: ContainerInspect, initializing = false, podRunning = true): AppStatus {
    const s = d.State;
    const name = d.Config.Labels[LABEL.container]!;
    const base = { name, image: { id: d.Image, name: d.Config.Labels[LABEL.image] ?? d.Config.Image }, unit: d.Name.replace(/^\//, ''), restartCount: d.RestartCount };
    const lastRun: Termination | undefined = timeOf(s.FinishedAt) !== undefined && (!s.Running || s.Restarting)
      ? { exitCode: s.ExitCode, reason: terminationReason(s), finishedAt: timeOf(s.FinishedAt)!, invocation: runId(s.StartedAt, s.FinishedAt) }
      : undefined;
    const previous = this.ended.get(d.Id)?.filter((t) => t.invocation !== lastRun?.invocation).at(-1);
    if (s.Running && !s.Restarting) {
      return { ...base, state: 'running', mainPid: s.Pid, startedAt: timeOf(s.StartedAt), ...(previous ? { lastTermination: previous } : {}) };
    }
    // A stopped pod (its infra ended: stopPod stops it last) restarts nothing, whatever a container's policy says.
    if (s.Restarting || (s.Status === 'exited' && lastRun && podRunning && this.willRestart(d))) {
      // Between two runs: the engine waits (its back-off) before starting the next.
      return { ...base, state: 'waiting', reason: 'CrashLoopBackOff', ...(lastRun ? { lastTermination: lastRun } : {}) };
    }
    if (s.Status === 'created') return { ...base, state: 'waiting', reason: initializing && d.Config.Labels[LABEL.init] !== 'true' ? 'PodInitializing' : 'ContainerCreating' };
    if (lastRun) {
      return { ...base, state: 'exited', reason: lastRun.reason, exitCode: lastRun.exitCode, startedAt: timeOf(s.StartedAt), finishedAt: lastRun.finishedAt, ...(previous ? { lastTermination: previous } : {}) };
    }
    return { ...base, state: 'unknown', reason: s.Error || s.Status };
  }

  private willRestart(d: ContainerInspect): boolean {
    if (d.Config.Labels[LABEL.sidecar] === 'true') return true;
    if (d.Config.Labels[LABEL.init] === 'true') return d.State.ExitCode !== 0 && d.HostConfig.RestartPolicy?.Name === 'on-failure';
    const policy = d.Config.Labels[LABEL.restartPolicy];
    return policy === 'Always' || (policy === 'OnFailure' && d.State.ExitCode !== 0);
  }

  // ---- stop, remove, gc ---------------------------------------------------

  async stopPod(id: string, gracePeriodSeconds?: number): Promise<void> {
    const containers = await this.ourContainers(id);
    if (!containers.length) throw new PodNotFound(id);
    const infra = containers.find((c) => c.Labels[LABEL.type] === 'podsandbox');
    const grace = gracePeriodSeconds ?? Number(infra?.Labels[LABEL.grace] ?? 30);
    // No init container's exit may start the next container of a pod being stopped.
    this.stopping.add(id);
    // The engine sends the image's stop signal (SIGTERM), then SIGKILL after t seconds; stopping also ends its restart policy.
    // As the kubelet: the app containers (and any init container still running) first, together; then the
    // sidecars (restartable init containers) one by one in reverse spec order, so an app's last requests still
    // find its proxy or log shipper. They share the pod's grace period: a sidecar gets what is left of it.
    const deadline = Date.now() + grace * 1000;
    const sidecars = containers.filter((c) => c.Labels[LABEL.sidecar] === 'true')
      .sort((a, b) => Number(b.Labels[LABEL.index] ?? 0) - Number(a.Labels[LABEL.index] ?? 0));
    await Promise.all(containers.filter((c) => c !== infra && !sidecars.includes(c)).map((c) => this.stopContainer(c.Id, grace)));
    for (const sidecar of sidecars) await this.stopContainer(sidecar.Id, Math.max(0, (deadline - Date.now()) / 1000));
    if (infra) {
      await this.detach(id, infra.Id);
      await this.stopContainer(infra.Id, 2);
    }
    this.changed();
  }

  private async stopContainer(id: string, graceSeconds: number): Promise<void> {
    await this.engine.call('POST', `/containers/${id}/stop`, { query: { t: Math.max(0, Math.floor(graceSeconds)) } }).catch((err) => {
      // 304: already stopped; 404: gone.
      if (!(err instanceof EngineError && err.status === 404)) throw err;
    });
  }

  private async detach(uuid: string, infraId: string | undefined): Promise<void> {
    let netns: string | undefined;
    if (infraId) {
      const info = await this.inspect(infraId).catch(() => undefined);
      if (info?.State.Running) netns = await hostPidOf(infraId, info.State.Pid).then((pid) => `/proc/${pid}/ns/net`, () => undefined);
    }
    await detachDockerPod(this.podDir(uuid), uuid, netns);
  }

  async removePod(id: string): Promise<void> {
    this.stopping.add(id);
    const containers = await this.ourContainers(id);
    const infra = containers.find((c) => c.Labels[LABEL.type] === 'podsandbox');
    await this.detach(id, infra?.Id);
    for (const c of containers.filter((x) => x !== infra)) await this.removeContainer(c.Id);
    if (infra) await this.removeContainer(infra.Id);
    for (const c of containers) this.ended.delete(c.Id);
    await fs.rm(this.podDir(id), { recursive: true, force: true });
    this.stopping.delete(id);
    if (containers.length) this.changed();
  }

  private async removeContainer(id: string): Promise<void> {
    await this.engine.call('DELETE', `/containers/${id}`, { query: { force: 1, v: 1 } }).catch((err) => {
      if (!(err instanceof EngineError && err.status === 404)) throw err;
    });
  }

  /**
   * What is left behind: app containers whose infra is gone (a crash half
   * way through runPod or removePod), pod directories without containers,
   * and CNI attachments of pods the engine no longer holds.
   */
  async gc(): Promise<void> {
    const containers = await this.ourContainers();
    const withInfra = new Set(containers.filter((c) => c.Labels[LABEL.type] === 'podsandbox').map((c) => c.Labels[LABEL.podUuid]));
    for (const c of containers) if (!withInfra.has(c.Labels[LABEL.podUuid]) && !this.starting.has(c.Labels[LABEL.podUuid]!)) await this.removeContainer(c.Id);
    const live = new Set([...containers.map((c) => c.Labels[LABEL.podUuid]!).filter((u) => withInfra.has(u)), ...this.starting]);
    for (const uuid of await fs.readdir(path.join(this.opts.dir, 'pods')).catch(() => [] as string[])) {
      if (!live.has(uuid)) await detachDockerPod(this.podDir(uuid), uuid).catch(() => undefined).then(() => fs.rm(this.podDir(uuid), { recursive: true, force: true }));
    }
    if (this.opts.network) await releaseStaleAttachments(this.opts.network.cacheDir, live, { binDirs: this.opts.network.binDirs });
  }

  // ---- images -------------------------------------------------------------

  /** The kubelet's image GC through the engine (image-gc.ts): thresholds by disk use, images in use kept. */
  imageGc(opts: DockerImageGcOptions = {}): Promise<DockerImageGcResult> {
    return dockerImageGc(this.engine, path.join(this.opts.dir, 'image-use.json'), opts);
  }

  /**
   * The name the engine stores an image under: a short name (no registry)
   * that exists as localhost/NAME is that local image, as rkt's store
   * resolves it (Podman's convention), so images built or imported on the
   * node win over a registry's of the same name.
   */
  private async storedName(ref: string): Promise<string> {
    const local = localNameOf(ref);
    if (!local) return ref;
    return (await this.engine.call('GET', `/images/${encodeURIComponent(local)}/json`).then(() => true, () => false)) ? local : ref;
  }

  async findImage(ref: string): Promise<{ id: string; local: boolean } | undefined> {
    // As storedName resolves it (the local image for a short name, else the name), in one call when the local one exists.
    const local = localNameOf(ref);
    for (const name of local ? [local, ref] : [ref]) {
      try {
        const image = await this.engine.call<{ Id: string; RepoTags?: string[] }>('GET', `/images/${encodeURIComponent(name)}/json`);
        return { id: image.Id, local: (image.RepoTags ?? []).some((t) => t.startsWith('localhost/')) };
      } catch (err) {
        if (!(err instanceof EngineError && err.status === 404)) throw err;
      }
    }
    return undefined;
  }

  async pullImage(ref: string, opts: { insecureRegistries?: string[]; auth?: RegistryKeyring }): Promise<void> {
    const parsed = parseReference(ref);
    const registry = parsed.domain;
    const creds = lookupCredentials(opts.auth, registry, parsed.repository);
    const headers: Record<string, string> = creds
      ? { 'X-Registry-Auth': Buffer.from(JSON.stringify({ username: creds.username, password: creds.password, serveraddress: registry })).toString('base64url') }
      : {};
    const fromImage = `${registry}/${parsed.repository}`;
    const res = await this.engine.stream('POST', '/images/create', { query: { fromImage, tag: parsed.digest ?? parsed.tag ?? 'latest' }, headers }).catch((err: unknown) => {
      if (err instanceof EngineError) {
        throw new UserError(`pulling ${ref} through the docker engine failed: ${err.engineMessage}`, {
          hint: err.status === 404 ? 'check the image name and tag' : /unauthorized|denied|authentication|credentials/i.test(err.engineMessage) ? 'check the pod\'s imagePullSecrets' : 'check that the registry is reachable from the node',
        });
      }
      throw err;
    });
    for await (const msg of jsonLines<{ error?: string; errorDetail?: { message?: string } }>(res)) {
      if (msg.error) {
        throw new UserError(`pulling ${ref} through the docker engine failed: ${msg.errorDetail?.message ?? msg.error}`, {
          hint: /unauthorized|denied|authentication|credentials/i.test(msg.error) ? 'check the pod\'s imagePullSecrets' : 'check the image name and that the registry is reachable from the node',
        });
      }
    }
  }

  // ---- logs ---------------------------------------------------------------

  async *logs(query: LogQuery): AsyncGenerator<LogLine> {
    const containers = (await this.ourContainers(query.podUuid)).filter((c) => c.Labels[LABEL.type] === 'container' && (!query.container || c.Labels[LABEL.container] === query.container));
    if (!containers.length) {
      if (query.container) throw new UserError(`pod ${query.podUuid} has no container "${query.container}"`);
      return;
    }
    let since = query.sinceMs;
    let until = query.untilMs;
    if (query.invocation) {
      // A run of the container is its start and end time: the engine keeps every run's lines in one log.
      // The engine stamps a run's first lines up to a few ms before its StartedAt; runs are at least
      // the engine's back-off (100 ms, doubling) apart, so a 50 ms margin takes no line of the run before.
      const [start, end] = query.invocation.split('/').map(Number);
      since = Math.max(since ?? 0, start! - 50);
      until = Math.min(until ?? Number.MAX_SAFE_INTEGER, end! + 1);
    }
    const streams = containers.map((c) => this.containerLogs(c, { ...query, sinceMs: since, untilMs: until }));
    if (streams.length === 1) {
      yield* streams[0]!;
      return;
    }
    if (!query.follow) {
      const all: LogLine[] = [];
      for (const s of streams) for await (const l of s) all.push(l);
      all.sort((a, b) => (a.timeUs < b.timeUs ? -1 : a.timeUs > b.timeUs ? 1 : 0));
      yield* query.tail !== undefined ? all.slice(Math.max(0, all.length - query.tail)) : all;
      return;
    }
    yield* merge(streams);
  }

  private async *containerLogs(c: ContainerSummary, q: LogQuery): AsyncGenerator<LogLine> {
    const info = await this.inspect(c.Id);
    const res = await this.engine.stream('GET', `/containers/${c.Id}/logs`, {
      query: {
        stdout: 1, stderr: 1, timestamps: 1, follow: q.follow ? 1 : undefined,
        tail: q.tail !== undefined ? Math.max(0, Math.floor(q.tail)) : undefined,
        since: q.sinceMs !== undefined ? (q.sinceMs / 1000).toFixed(3) : undefined,
        until: q.untilMs !== undefined && q.untilMs < Number.MAX_SAFE_INTEGER ? (q.untilMs / 1000).toFixed(3) : undefined,
      },
      signal: q.signal,
    });
    const container = c.Labels[LABEL.container]!;
    const chunks: AsyncIterable<Buffer> = info.Config.Tty ? res : (async function* () { for await (const f of demultiplex(res)) yield f.data; })();
    let rest = '';
    try {
      for await (const chunk of chunks) {
        rest += chunk.toString('utf8');
        let nl: number;
        while ((nl = rest.indexOf('\n')) >= 0) {
          const line = rest.slice(0, nl);
          rest = rest.slice(nl + 1);
          const sp = line.indexOf(' ');
          yield { timeUs: parseEngineTimeUs(line.slice(0, sp)), container, message: line.slice(sp + 1).replace(/\r$/, '') };
        }
      }
    } catch (err) {
      if (!q.signal?.aborted) throw err;
    } finally {
      res.destroy();
    }
  }

  // ---- exec, attach, port-forward -----------------------------------------

  /** The running container of an app, or a UserError saying why there is none. */
  private async runningContainer(podId: string, container: string): Promise<ContainerInspect> {
    const all = await this.ourContainers(podId);
    if (!all.length) throw new PodNotFound(podId);
    const c = all.find((x) => x.Labels[LABEL.type] === 'container' && x.Labels[LABEL.container] === container);
    if (!c) throw new UserError(`pod ${podId} has no container "${container}"`, { hint: `its containers: ${all.filter((x) => x.Labels[LABEL.type] === 'container').map((x) => x.Labels[LABEL.container]).join(', ')}` });
    const info = await this.inspect(c.Id);
    if (!info.State.Running) throw new UserError(`container "${container}" of pod ${podId} is not running (${info.State.Status})`, { hint: 'wait for it to start; `kubectl describe pod` says why it stopped' });
    return info;
  }

  async checkExec(podId: string, container: string): Promise<void> {
    await this.runningContainer(podId, container);
  }

  async exec(podId: string, container: string, command: string[], opts: ExecOptions): Promise<ExecProcess> {
    const info = await this.runningContainer(podId, container);
    const created = await this.engine.call<{ Id: string }>('POST', `/containers/${info.Id}/exec`, {
      body: { AttachStdin: opts.stdin, AttachStdout: true, AttachStderr: true, Tty: opts.tty, Cmd: command, ...(opts.size && opts.tty ? { ConsoleSize: [opts.size.rows, opts.size.cols] } : {}) },
    });
    const execId = created.Id;
    const socket = await this.engine.hijack(`/exec/${execId}/start`, { Detach: false, Tty: opts.tty });
    if (opts.tty && opts.size) void this.resizeExec(execId, opts.size);
    return this.processOf(socket, opts, async () => {
      for (let i = 0; i < 50; i++) {
        const state = await this.engine.call<{ Running: boolean; ExitCode: number | null }>('GET', `/exec/${execId}/json`);
        if (!state.Running && state.ExitCode !== null) return state.ExitCode;
        await sleep(20);
      }
      return 137;
    }, (size) => void this.resizeExec(execId, size), async () => {
      const state = await this.engine.call<{ Pid: number; Running: boolean }>('GET', `/exec/${execId}/json`).catch(() => undefined);
      if (state?.Running && state.Pid) {
        const pid = await hostPidOf(info.Id, state.Pid).catch(() => undefined);
        if (pid) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
    });
  }

  private async resizeExec(execId: string, size: TerminalSize): Promise<void> {
    await this.engine.call('POST', `/exec/${execId}/resize`, { query: { h: size.rows, w: size.cols } }).catch(() => undefined);
  }

  private processOf(socket: import('node:net').Socket, opts: { stdin: boolean; tty: boolean }, exitCode: () => Promise<number>, resize: (s: TerminalSize) => void, kill: () => Promise<void>): ExecProcess {
    let stdout: PassThrough;
    let stderr: PassThrough | undefined;
    let outputDone: Promise<void>;
    if (opts.tty) {
      stdout = new PassThrough();
      socket.pipe(stdout);
      outputDone = new Promise((resolve) => socket.once('close', () => resolve()));
    } else {
      const split = splitStreams(socket);
      stdout = split.stdout;
      stderr = split.stderr;
      outputDone = split.done;
    }
    let stdin: PassThrough | undefined;
    if (opts.stdin) {
      stdin = new PassThrough();
      stdin.on('data', (d) => socket.write(d));
      stdin.on('end', () => socket.end());
    } else {
      socket.end();
    }
    socket.on('error', () => undefined);
    const exit = outputDone.then(exitCode).then((code) => ({ code }));
    return {
      stdin, stdout, stderr, resize,
      exit,
      async kill() {
        await kill();
        socket.destroy();
      },
    };
  }

  async checkAttach(podId: string, container: string, opts: { tty: boolean }): Promise<void> {
    const info = await this.runningContainer(podId, container);
    if (opts.tty && !info.Config.Tty) throw new UserError(`container "${container}" has no terminal (tty: false)`, { hint: 'attach without -t' });
  }

  async attach(podId: string, container: string, opts: { stdin: boolean; tty: boolean }): Promise<ExecProcess> {
    await this.checkAttach(podId, container, opts);
    const info = await this.runningContainer(podId, container);
    const socket = await this.engine.hijack(`/containers/${info.Id}/attach?stream=1&stdout=1&stderr=1${opts.stdin ? '&stdin=1' : ''}`, {});
    return this.processOf(socket, { stdin: opts.stdin, tty: info.Config.Tty === true }, async () => {
      const now = await this.inspect(info.Id).catch(() => undefined);
      return now && !now.State.Running ? now.State.ExitCode : 0;
    }, (size) => void this.engine.call('POST', `/containers/${info.Id}/resize`, { query: { h: size.rows, w: size.cols } }).catch(() => undefined), async () => undefined);
  }

  private async infraNetns(podId: string): Promise<string | undefined> {
    const infra = (await this.ourContainers(podId)).find((c) => c.Labels[LABEL.type] === 'podsandbox');
    if (!infra) throw new PodNotFound(podId);
    const info = await this.inspect(infra.Id);
    if (!info.State.Running) throw new UserError(`pod ${podId} is not running`, { hint: 'port-forward needs a running pod' });
    if (info.HostConfig.NetworkMode === 'host') return undefined;
    return `/proc/${await hostPidOf(infra.Id, info.State.Pid)}/ns/net`;
  }

  /** The infra container's namespace, opened once for the session: its /proc/PID path is never followed again. */
  async openPortForward(podId: string): Promise<PortForwardTarget> {
    return openPortTarget(await this.infraNetns(podId));
  }

  async runInContainer(podId: string, container: string, command: string[], timeoutMs: number): Promise<{ exitCode: number; output: string; timedOut: boolean }> {
    const proc = await this.exec(podId, container, command, { stdin: false, tty: false });
    const LIMIT = 10 * 1024;
    let output = '';
    const take = (d: Buffer) => { if (output.length < LIMIT) output = (output + d.toString('utf8')).slice(0, LIMIT); };
    proc.stdout.on('data', take);
    proc.stderr?.on('data', take);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), timeoutMs); });
    const result = await Promise.race([proc.exit, timeout]);
    clearTimeout(timer);
    if (result === 'timeout') {
      await proc.kill();
      return { exitCode: -1, output, timedOut: true };
    }
    return { exitCode: result.code, output, timedOut: false };
  }

  async killContainer(podId: string, container: string, gracePeriodSeconds: number): Promise<void> {
    const info = await this.runningContainer(podId, container);
    // Signalled from here, not through /kill or /stop: the engine takes both for a manual stop and
    // would not restart the container; a process that dies on its own follows the restart policy
    // (and counts in RestartCount), as a liveness restart must.
    const pid = await hostPidOf(info.Id, info.State.Pid);
    const signal = (sig: NodeJS.Signals) => { try { process.kill(pid, sig); } catch { /* gone */ } };
    signal('SIGTERM');
    const deadline = Date.now() + gracePeriodSeconds * 1000;
    while (Date.now() < deadline) {
      const now = await this.inspect(info.Id).catch(() => undefined);
      if (!now?.State.Running || now.State.StartedAt !== info.State.StartedAt) return;
      await sleep(100);
    }
    const now = await this.inspect(info.Id).catch(() => undefined);
    if (now?.State.Running && now.State.StartedAt === info.State.StartedAt) signal('SIGKILL');
  }

  // ---- usage, events --------------------------------------------------------

  /** The engine's own counters (`GET /containers/{id}/stats?stream=false`), as the kubelet's dockershim read them. */
  async containerUsage(): Promise<PodUsage[]> {
    const out: PodUsage[] = [];
    const containers = await this.ourContainers();
    for (const pod of await this.listPods()) {
      if (pod.state !== 'running') continue;
      const usage: ContainerUsage[] = [];
      for (const app of pod.apps) {
        if (app.state !== 'running') continue;
        const id = containers.find((c) => c.Labels[LABEL.podUuid] === pod.uuid && c.Labels[LABEL.type] === 'container' && c.Labels[LABEL.container] === app.name)?.Id;
        if (!id) continue;
        // The container's own cgroup, read as cAdvisor reads it for the kubelet (rkt's pods are read the same way):
        // the engine's stats endpoint answers nothing for a container joined to an infra that has no engine network.
        const pid = app.mainPid ? await hostPidOf(id, app.mainPid).catch(() => undefined) : undefined;
        const counters = pid !== undefined ? cgroupUsageOf(pid, (dir) => dir.path.includes(id)) : undefined;
        if (!counters) continue;
        usage.push({ name: app.name, startedAt: app.startedAt, ...counters });
      }
      out.push({ uuid: pod.uuid, uid: pod.uid, name: pod.name, namespace: pod.namespace, startedAt: pod.startedAt, containers: usage });
    }
    return out;
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  /** Follow the engine's events about our containers until close(): each one may change a pod's status. */
  async watchEvents(): Promise<void> {
    const filters = JSON.stringify({ type: ['container'], label: [LABEL.podUuid] });
    let settled: NodeJS.Timeout | undefined;
    while (!this.events.signal.aborted) {
      try {
        const res = await this.engine.stream('GET', '/events', { query: { filters }, signal: this.events.signal });
        // The stream's headers may come before dockerd has subscribed it: inspects are kept (see `inspected`) only from
        // a moment after, when every change is surely announced (a change before it shows in any inspect made after it).
        settled = setTimeout(() => { this.followingSince = ++this.tick; }, 500);
        settled.unref();
        for await (const ev of jsonLines<{ Action: string; Actor: { ID: string; Attributes: Record<string, string> } }>(res)) {
          if (ev.Action === 'destroy') {
            this.lastEvent.delete(ev.Actor.ID);
            this.inspected.delete(ev.Actor.ID);
          } else this.lastEvent.set(ev.Actor.ID, ++this.tick);
          if (ev.Action === 'die') await this.recordEnd(ev.Actor.ID);
          if (ev.Action === 'die' && ev.Actor.Attributes[LABEL.init] === 'true') void this.advance(ev.Actor.Attributes[LABEL.podUuid]!);
          this.changed();
        }
      } catch {
        // the engine restarted, or close() aborted: reconnect unless closing
      }
      // Changes may go unannounced until the next stream is open: inspect everything again.
      clearTimeout(settled);
      this.followingSince = undefined;
      this.inspected.clear();
      this.lastEvent.clear();
      if (!this.events.signal.aborted) await sleep(1000).catch(() => undefined);
    }
  }

  /**
   * Init containers, one by one: the first not yet completed is started if
   * it never ran; once all exited 0, the apps that never ran start in the
   * spec's order. Called on every init container's exit and when the runtime
   * opens (an agent that died half way through a pod's inits).
   */
  async advance(uuid: string): Promise<void> {
    if (this.advancing.has(uuid)) {
      this.advancing.set(uuid, true);
      return;
    }
    this.advancing.set(uuid, false);
    try {
      do {
        this.advancing.set(uuid, false);
        await this.advanceOnce(uuid).catch(() => undefined);
      } while (this.advancing.get(uuid));
    } finally {
      this.advancing.delete(uuid);
    }
  }

  private async advanceOnce(uuid: string): Promise<void> {
    if (this.stopping.has(uuid)) return;
    const details = await Promise.all((await this.ourContainers(uuid)).map((c) => this.inspect(c.Id)));
    const infra = details.find((d) => d.Config.Labels[LABEL.type] === 'podsandbox');
    if (!infra?.State.Running) return;
    const byIndex = (a: ContainerInspect, b: ContainerInspect) => Number(a.Config.Labels[LABEL.index]) - Number(b.Config.Labels[LABEL.index]);
    const inits = details.filter((d) => d.Config.Labels[LABEL.init] === 'true').sort(byIndex);
    for (const init of inits) {
      if (initDone(init)) continue;
      if (init.State.Status === 'created') await this.engine.call('POST', `/containers/${init.Id}/start`);
      // A sidecar only has to have started: the next one starts beside it.
      if (init.Config.Labels[LABEL.sidecar] === 'true') continue;
      return;
    }
    const apps = details.filter((d) => d.Config.Labels[LABEL.type] === 'container' && d.Config.Labels[LABEL.init] !== 'true').sort(byIndex);
    for (const app of apps) if (app.State.Status === 'created' && !this.stopping.has(uuid)) await this.engine.call('POST', `/containers/${app.Id}/start`);
    this.changed();
  }

  /** Pods with containers that never started (init containers half way): advance each. */
  async advanceAll(): Promise<void> {
    const waiting = new Set((await this.ourContainers()).filter((c) => c.State === 'created' && c.Labels[LABEL.type] === 'container').map((c) => c.Labels[LABEL.podUuid]!));
    for (const uuid of waiting) await this.advance(uuid);
  }

  /** Keep a finished run (the engine forgets it at the next start), for lastState and logs --previous. */
  private async recordEnd(id: string): Promise<void> {
    const info = await this.inspect(id).catch(() => undefined);
    if (!info || info.Config.Labels[LABEL.type] !== 'container') return;
    const finishedAt = timeOf(info.State.FinishedAt);
    if (finishedAt === undefined) return;
    const runs = this.ended.get(id) ?? [];
    const invocation = runId(info.State.StartedAt, info.State.FinishedAt);
    if (runs.at(-1)?.invocation !== invocation) runs.push({ exitCode: info.State.ExitCode, reason: terminationReason(info.State), finishedAt, invocation });
    this.ended.set(id, runs.slice(-2));
    const uuid = info.Config.Labels[LABEL.podUuid]!;
    await atomicWriteJson(path.join(this.podDir(uuid), 'ended.json'), Object.fromEntries([...this.ended].filter(([cid]) => cid === id))).catch(() => undefined);
  }

  /** Runs recorded before a restart of the agent. */
  async loadEnded(): Promise<void> {
    for (const uuid of await fs.readdir(path.join(this.opts.dir, 'pods')).catch(() => [] as string[])) {
      const saved = await readJsonIfExists<Record<string, Termination[]>>(path.join(this.podDir(uuid), 'ended.json')).catch(() => undefined);
      for (const [id, runs] of Object.entries(saved ?? {})) this.ended.set(id, runs);
    }
  }

  async close(): Promise<void> {
    this.events.abort();
  }
}

/** A run of a container, named by its start and end (ms): what logs --previous selects. */
function runId(startedAt: string, finishedAt: string): string {
  return `${timeOf(startedAt) ?? 0}/${timeOf(finishedAt) ?? 0}`;
}

/** A short image name (no registry) as this node's own image: `localhost/NAME:TAG` (rkt's store resolves it the same way); undefined for a name with a registry. */
function localNameOf(ref: string): string | undefined {
  const first = ref.split('/')[0]!;
  const short = !ref.includes('/') || !(first.includes('.') || first.includes(':') || first === 'localhost');
  if (!short) return undefined;
  const withTag = /[:@]/.test(ref.slice(ref.lastIndexOf('/') + 1)) ? ref : `${ref}:latest`;
  return `localhost/${withTag}`;
}

/** dockershim's container names: k8s_<container>_<pod>_<namespace>_<uuid>. */
function containerName(pod: Pod, container: string, uuid: string): string {
  return `k8s_${container}_${pod.metadata.name}_${pod.metadata.namespace ?? 'default'}_${uuid}`;
}

/** Kubernetes names capabilities without CAP_ (NET_ADMIN); the engine takes either. */
function capName(cap: string): string {
  return cap.toUpperCase().startsWith('CAP_') ? cap.toUpperCase() : `CAP_${cap.toUpperCase()}`;
}

/** Yield from several generators as their items come. */
async function* merge<T>(gens: Array<AsyncGenerator<T>>): AsyncGenerator<T> {
  const next = gens.map((g, i) => g.next().then((r) => ({ r, i })));
  const pending = new Set(next.map((_, i) => i));
  while (pending.size) {
    const { r, i } = await Promise.race([...pending].map((i) => next[i]!));
    if (r.done) { pending.delete(i); continue; }
    next[i] = gens[i]!.next().then((res) => ({ r: res, i }));
    yield r.value;
  }
}
