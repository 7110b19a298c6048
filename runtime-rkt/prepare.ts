import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { UserError, errnoCode } from '../common/errors.js';
import { fsops } from '../common/fsops.js';
import { atomicWriteJson, replaceFileSync } from '../common/fsutil.js';
import { closeSync, fchmodSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { cpuMillis, memoryBytes } from '../common/quantity.js';
import { podPaths, type AppLimits, type AppManifest, type RuntimePodManifest, type Stage1Name } from '../stage1/contract.js';
import type { ImageRecord, ImageStoreApi } from './image/types.js';
import { restartPolicyOf, type ContainerSpec, type Pod, type ResourceList } from '../runtime-api/pod-spec.js';
import { findExecutable, mkdirInRoot, readFileInRoot, resolveUser } from './rootfs.js';
import { checkLocalhostProfile, nodeCapabilities, podRefOf, resolveSecurity, resolveSysctls } from './security.js';
import { podResolvConfTextFor, type ClusterDnsConfig } from './network.js';
import { REDACTED, secretTaint } from './env.js';
import { expandCommand, podEnv } from '../runtime-api/pod-env.js';
import { preparePodVolumes } from './volumes.js';

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function limitsOf(list: ResourceList | undefined, where: string): AppLimits {
  const out: AppLimits = {};
  if (list?.cpu !== undefined) out.cpuMillis = cpuMillis(list.cpu, `${where}.cpu`);
  if (list?.memory !== undefined) out.memoryBytes = memoryBytes(list.memory, `${where}.memory`);
  return out;
}

/**
 * Kubernetes' rules: command replaces the image's Entrypoint, args replaces its Cmd; a command alone drops Cmd.
 * The pod's command and args have `$(VAR)` expanded against the pod's env (runtime-rkt/env.ts); the image's never.
 */
export function argvFor(c: ContainerSpec, image: ImageRecord, env: Map<string, string> = podEnv(c, [])): string[] {
  const { command, args } = expandCommand(c, env);
  if (command?.length) return [...command, ...(args ?? [])];
  return [...(image.config.Entrypoint ?? []), ...(args ?? image.config.Cmd ?? [])];
}

/**
 * The image's Env first, the pod's env on top (same name: the pod wins, keeping the image's order),
 * expanded as the kubelet does; `podIPs` fill status.podIP/podIPs.
 */
export function envFor(c: ContainerSpec, image: ImageRecord, hostname: string, podIPs: string[] = [], own: Map<string, string> = podEnv(c, podIPs)): Array<[string, string]> {
  const env = new Map<string, string>();
  for (const kv of image.config.Env ?? []) {
    const i = kv.indexOf('=');
    if (i > 0) env.set(kv.slice(0, i), kv.slice(i + 1));
  }
  if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
  env.set('HOSTNAME', hostname);
  for (const [k, v] of own) env.set(k, v);
  return [...env];
}

/**
 * pod.json as written to disk: values that carry Secret data (secretTaint)
 * replaced by REDACTED in the apps' env and argv and in the pod's env. The
 * group the api-service runs in can read pod.json and the api-service serves
 * it; the stage1s get the real values from the manifest in memory at launch.
 */
export function manifestForDisk(manifest: RuntimePodManifest): RuntimePodManifest {
  const taints = manifest.pod.spec.containers.map((c) => secretTaint(c));
  if (taints.every((t) => t.names.size === 0 && !t.command.includes(true) && !t.args.includes(true))) return manifest;
  const pod = structuredClone(manifest.pod);
  for (const c of pod.spec.containers) for (const e of c.env ?? []) if (e.fromSecret) e.value = REDACTED;
  const apps = manifest.apps.map((app, i) => {
    const c = manifest.pod.spec.containers[i]!;
    const t = taints[i]!;
    // argv is command+args, or the image's Entrypoint+args: only the pod's own args can expand a Secret.
    const argv = [...app.argv];
    const ownArgs = c.command?.length ? [...t.command, ...t.args] : t.args.length ? [...Array(argv.length - t.args.length).fill(false), ...t.args] : [];
    ownArgs.forEach((tainted, j) => { if (tainted) argv[j] = REDACTED; });
    return { ...app, argv, env: app.env.map(([k, v]): [string, string] => [k, t.names.has(k) ? REDACTED : v]) };
  });
  return { ...manifest, pod, apps };
}

/** An app's environment and argv (argv[0] resolved in its rootfs), given the pod's IPs as far as they are known. */
async function appCommand(c: ContainerSpec, image: ImageRecord, hostname: string, rootfs: string, podIPs: string[]): Promise<{ argv: string[]; env: Array<[string, string]> }> {
  const own = podEnv(c, podIPs);
  const argv = argvFor(c, image, own);
  if (argv.length === 0) throw new UserError(`container "${c.name}": no command to run: neither the pod spec nor image ${c.image} gives one`, { hint: 'set command (and args) for the container' });
  const env = envFor(c, image, hostname, podIPs, own);
  const exe = findExecutable(rootfs, argv[0]!, env.find(([k]) => k === 'PATH')?.[1] ?? DEFAULT_PATH);
  if (!exe) throw new UserError(`container "${c.name}": executable "${argv[0]}" not found in image ${c.image}`, { hint: 'check command/args in the pod spec, or the image\'s Entrypoint/Cmd' });
  argv[0] = exe;
  return { argv, env };
}

/**
 * status.podIP is known only once the pod is attached to its network (after
 * prepare, before launch): fill it into every app's env and expand again, and
 * rewrite pod.json. Stage1s read env and argv at launch, so they see the final values.
 */
export async function fillPodIPs(podDir: string, manifest: RuntimePodManifest, images: ImageRecord[], podIPs: string[]): Promise<RuntimePodManifest> {
  const apps: AppManifest[] = [];
  for (const [i, c] of manifest.pod.spec.containers.entries()) {
    const app = manifest.apps[i]!;
    apps.push({ ...app, ...await appCommand(c, images[i]!, manifest.hostname, podPaths(podDir).rootfs(c.name), podIPs) });
  }
  const filled = { ...manifest, apps };
  await atomicWriteJson(podPaths(podDir).manifest, manifestForDisk(filled));
  return filled;
}

function mountOverlay(layers: string[], appDir: string): void {
  const rootfs = path.join(appDir, 'rootfs');
  for (const d of ['rootfs', 'upper', 'work', 'exits']) mkdirSync(path.join(appDir, d), { recursive: true });
  // overlayfs lists lower layers top-most first.
  const lower = [...layers].reverse().join(':');
  try {
    fsops.mount('overlay', rootfs, 'overlay', `lowerdir=${lower},upperdir=${appDir}/upper,workdir=${appDir}/work`);
  } catch (err) {
    throw new UserError(`cannot mount the root filesystem of ${path.basename(appDir)}: ${(err as Error).message}`, {
      hint: 'the node needs overlayfs (modprobe overlay) and a data directory on a filesystem overlayfs accepts as upper layer (ext4, xfs, tmpfs)',
    });
  }
}

/**
 * /etc/hosts, /etc/hostname and /etc/resolv.conf for the whole pod. A pod
 * that gets a CNI network has its hosts file rewritten once it has its IPs
 * (network.ts attachPod).
 */
async function writePodEtc(podDir: string, pod: Pod, hostname: string, clusterDns?: ClusterDnsConfig): Promise<void> {
  const paths = podPaths(podDir);
  const resolvConf = await podResolvConfTextFor(pod, clusterDns);
  // Written while the pod is being prepared: a crash before launch discards
  // the whole pod, so these need no fsync. Synchronous: see replaceFileSync.
  mkdirSync(path.dirname(paths.etc('hosts')), { recursive: true });
  writeFileSync(paths.etc('hostname'), `${hostname}\n`);
  writeFileSync(paths.etc('hosts'), `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${hostname}\n`);
  writeFileSync(paths.etc('resolv.conf'), resolvConf);
}

export interface PrepareInput {
  uuid: string;
  podDir: string;
  pod: Pod;
  images: ImageRecord[];
  stage1: Stage1Name;
  imageStore: ImageStoreApi;
  /** Where Localhost seccomp profiles live on this node (security.ts seccompRootDir). */
  seccompRoot: string;
  /** Cluster DNS for ClusterFirst pods (resolv.conf). */
  clusterDns?: ClusterDnsConfig;
  /** The network is attached while the units start (RuntimePodManifest.awaitsNetwork). */
  awaitsNetwork?: boolean;
}

/**
 * stage0's half of preparing a pod: one overlay rootfs per app on top of the
 * image's shared layer trees, the app's command resolved inside its image,
 * pod-level /etc files, and pod.json. A failure throws a UserError naming
 * the container; the caller discards the half-made pod.
 */
export async function preparePodDir(input: PrepareInput): Promise<RuntimePodManifest> {
  const { pod, podDir } = input;
  const hostname = (pod.spec.hostname ?? pod.metadata.name.split('.')[0] ?? pod.metadata.name).slice(0, 63);
  const apps: AppManifest[] = [];
  // Checked before any rootfs is mounted: a refused pod costs nothing.
  const sysctls = resolveSysctls(pod, input.stage1);
  const nodeCaps = await nodeCapabilities();
  // Volumes before any rootfs: a hostPath of the wrong type costs no overlay mounts.
  const mounts = await preparePodVolumes({ podDir, pod });
  const inits = pod.spec.initContainers ?? [];
  for (const [i, c] of allContainers(pod).entries()) {
    const image = input.images[i]!;
    const appDir = podPaths(podDir).app(c.name);
    mountOverlay(await input.imageStore.layerRootfsPaths(image), appDir);
    const rootfs = podPaths(podDir).rootfs(c.name);
    // status.podIP is empty here; a pod that gets a network has it filled in after attaching (fillPodIPs).
    const { argv, env } = await appCommand(c, image, hostname, rootfs, []);
    const workingDir = c.workingDir ?? (image.config.WorkingDir || '/');
    // The image's user database is read once, for the image's user and the pod's securityContext.
    const passwd = readFileInRoot(rootfs, '/etc/passwd') ?? '';
    const group = readFileInRoot(rootfs, '/etc/group') ?? '';
    mkdirInRoot(rootfs, workingDir);
    const imageUser = resolveUser(rootfs, image.config.User, { passwd, group });
    const { user, security } = resolveSecurity({
      pod, podRef: podRefOf(pod, input.uuid), container: c, index: i, stage1: input.stage1, nodeCaps, seccompRoot: input.seccompRoot,
      image: { spec: image.config.User, resolved: 'error' in imageUser ? undefined : imageUser, passwd, group },
    });
    await checkLocalhostProfile(security, `spec.containers[${i}].securityContext.seccompProfile`);
    apps.push({
      name: c.name,
      image: { id: image.id, name: c.image },
      argv, env, workingDir, user, security,
      ...(c.stdin || c.tty ? { console: { stdin: c.stdin === true, stdinOnce: c.stdinOnce === true, tty: c.tty === true } } : {}),
      limits: limitsOf(c.resources?.limits, `spec.containers[${i}].resources.limits`),
      requests: limitsOf(c.resources?.requests, `spec.containers[${i}].resources.requests`),
      ...(mounts.get(c.name)?.length ? { mounts: mounts.get(c.name) } : {}),
      ...(i < inits.length ? { init: c.restartPolicy === 'Always' ? 'sidecar' as const : 'once' as const } : {}),
      ...(input.stage1 === 'namespaces' ? { terminationMessagePath: c.terminationMessagePath ?? '/dev/termination-log' } : {}),
    });
    if (input.stage1 === 'namespaces') {
      // Any user the app runs as writes it, as the kubelet's file (0666).
      // One open: created empty, then its mode set past the umask on the same descriptor.
      const log = openSync(podPaths(podDir).terminationLog(c.name), 'w', 0o666);
      try {
        fchmodSync(log, 0o666);
      } finally {
        closeSync(log);
      }
    }
  }
  await writePodEtc(podDir, pod, hostname, input.clusterDns);
  const manifest: RuntimePodManifest = {
    version: 1,
    uuid: input.uuid,
    stage1: input.stage1,
    createdAt: Date.now(),
    hostname,
    restartPolicy: restartPolicyOf(pod),
    terminationGracePeriodSeconds: pod.spec.terminationGracePeriodSeconds ?? 30,
    pod,
    apps,
    ...(sysctls.length ? { sysctls } : {}),
    ...(input.awaitsNetwork ? { awaitsNetwork: true as const } : {}),
  };
  // Not fsynced here: the caller makes it durable (fsyncFile) while the units start, before the launch is marked done.
  replaceFileSync(podPaths(podDir).manifest, `${JSON.stringify(manifestForDisk(manifest), null, 2)}\n`);
  return manifest;
}

/** Init containers first, in order, then the containers: the order of the pod's apps (and of the images runPod resolves). */
export function allContainers(pod: Pod): ContainerSpec[] {
  return [...(pod.spec.initContainers ?? []), ...pod.spec.containers];
}

/** Unmount every app rootfs of a pod; safe to call on a half-made or already clean pod. */
export async function unmountPodRootfs(podDir: string): Promise<void> {
  const apps = await fs.readdir(path.join(podDir, 'apps')).catch(() => [] as string[]);
  for (const app of apps) {
    try {
      fsops.umount(podPaths(podDir).rootfs(app));
    } catch (err) {
      // Not mounted (EINVAL) or already gone (ENOENT): nothing to undo.
      if (errnoCode(err) !== 'EINVAL' && errnoCode(err) !== 'ENOENT') throw err;
    }
  }
}
