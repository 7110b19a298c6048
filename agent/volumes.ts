import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { execa } from 'execa';
import type { V1Pod } from '@kubernetes/client-node';
import { fsops } from '../common/fsops.js';
import type { Logger } from '../common/log.js';
import type { Pod } from '../runtime-api/pod-spec.js';
import { writeAtomically } from './atomic-writer.js';
import type { PodObjects } from './pod-objects.js';
import { agentVolumeKind, holdsSecrets, PLUGIN_DIR, volumePayload, type VolumeContext } from './volume-sources.js';

/**
 * configMap, secret, downwardAPI and projected volumes, prepared on the node
 * by the agent as the kubelet's volume manager does (rkt, like rktnetes'
 * runtime, knows only host directories and empty volumes):
 * `<dataDir>/agent/pods/<uid>/volumes/kubernetes.io~<plugin>/<volume>`,
 * written with the `..data` symlink swap (atomic-writer.ts), handed to the
 * runtime as `hostPath` (type Directory) volumes mounted read-only, and kept
 * up to date while the pod runs. Volumes that may hold Secret data sit on
 * their own tmpfs (never on disk); `<dataDir>/agent/pods` is 0700.
 */
export class VolumeManager {
  constructor(private readonly dataDir: string, private readonly log: Logger) {}

  private get podsDir() { return path.join(this.dataDir, 'agent', 'pods'); }
  podDir(uid: string) { return path.join(this.podsDir, uid); }

  static needsVolumes(pod: V1Pod): boolean {
    return (pod.spec?.volumes ?? []).some((v) => agentVolumeKind(v) !== undefined);
  }

  /**
   * Write every agent-made volume of `pod` and turn it into a hostPath
   * volume of `runtimePod` (mounts of it read-only, as the kubelet mounts
   * them). Throws VolumeSetupError (kubelet's words) when one cannot be made.
   */
  async setUp(pod: V1Pod, runtimePod: Pod, objects: PodObjects, ctx: VolumeContext): Promise<void> {
    const volumes = (runtimePod.spec as { volumes?: Array<Record<string, unknown>> }).volumes ?? [];
    const ours = new Set<string>();
    for (const [i, v] of (pod.spec?.volumes ?? []).entries()) {
      const kind = agentVolumeKind(v);
      if (!kind) continue;
      const dir = await this.write(pod, i, objects, ctx);
      volumes[i] = { name: v.name, hostPath: { path: dir, type: 'Directory' } };
      ours.add(v.name);
    }
    for (const c of [...runtimePod.spec.initContainers ?? [], ...runtimePod.spec.containers] as Array<{ volumeMounts?: Array<{ name: string; readOnly?: boolean }> }>) {
      for (const m of c.volumeMounts ?? []) if (ours.has(m.name)) m.readOnly = true;
    }
  }

  /** Write one volume's files (atomically; nothing when unchanged); returns its directory. */
  private async write(pod: V1Pod, index: number, objects: PodObjects, ctx: VolumeContext): Promise<string> {
    const v = pod.spec!.volumes![index]!;
    const payload = await volumePayload(pod, v, objects, ctx);
    const dir = path.join(this.podDir(pod.metadata!.uid!), 'volumes', PLUGIN_DIR[agentVolumeKind(v)!], v.name);
    await fs.mkdir(this.podsDir, { recursive: true, mode: 0o700 });
    await fs.chmod(this.podsDir, 0o700);
    await fs.mkdir(dir, { recursive: true, mode: 0o755 });
    if (holdsSecrets(v)) await this.ensureTmpfs(dir);
    const fsGroup = pod.spec?.securityContext?.fsGroup;
    await writeAtomically(dir, payload, fsGroup !== undefined ? { gid: fsGroup } : {});
    return dir;
  }

  private async ensureTmpfs(dir: string): Promise<void> {
    const [here, parent] = await Promise.all([fs.stat(dir), fs.stat(path.dirname(dir))]);
    if (here.dev !== parent.dev) return; // already its own mount
    try {
      // mount(2) itself, not mount(8): a process start (a fork of the agent) on every pod start with a token.
      fsops.mount('tmpfs', dir, 'tmpfs', 'mode=0755', fsops.MS_NOSUID | fsops.MS_NODEV);
    } catch (err) {
      // Still unreadable to other users of the node (the pods dir is 0700), but on disk.
      this.log.warn({ dir, err: String(err) }, 'cannot mount a tmpfs for a secret volume; writing it to disk');
    }
  }

  /**
   * Bring the volumes of running pods (the caller's list) up to date (ConfigMap/Secret edits,
   * label and annotation changes): each changed volume gets the atomic swap;
   * subPath mounts keep what they had, as in Kubernetes. A volume that cannot
   * be recomputed now (its object deleted, say) keeps its files.
   */
  async refresh(pods: V1Pod[], objectsFor: (namespace: string) => PodObjects, ctx: VolumeContext, onError: (pod: V1Pod, message: string) => void): Promise<void> {
    for (const pod of pods) {
      if (pod.metadata?.deletionTimestamp) continue;
      const objects = objectsFor(pod.metadata?.namespace ?? 'default');
      for (const [i, v] of (pod.spec?.volumes ?? []).entries()) {
        if (!agentVolumeKind(v)) continue;
        try {
          await this.write(pod, i, objects, ctx);
        } catch (err) {
          onError(pod, (err as Error).message);
        }
      }
    }
  }

  /** Remove the volumes of every pod not in `keep` (pods gone from the API and the runtime), at start and after. */
  async cleanup(keep: Set<string>): Promise<void> {
    const uids = await fs.readdir(this.podsDir).catch(() => [] as string[]);
    for (const uid of uids) {
      if (keep.has(uid)) continue;
      const dir = this.podDir(uid);
      try {
        for (const mount of await mountsUnder(dir)) {
          // Busy (a process of the pod not yet gone): detached, as umount -l, so the files can go.
          try { fsops.umount(mount); } catch { await execa('umount', ['-l', mount]); }
        }
        await fs.rm(dir, { recursive: true, force: true });
        this.log.info({ uid }, 'pod volumes removed');
      } catch (err) {
        this.log.warn({ uid, err: String(err) }, 'cannot remove pod volumes yet; will retry');
      }
    }
  }
}

/** Mount points at or under `dir` (deepest first), from /proc/self/mountinfo. */
async function mountsUnder(dir: string): Promise<string[]> {
  const info = await fs.readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const unescape = (s: string) => s.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return info.split('\n').map((l) => unescape(l.split(' ')[4] ?? '')).filter((m) => m === dir || m.startsWith(`${dir}/`)).sort((a, b) => b.length - a.length);
}
