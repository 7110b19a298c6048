import * as fs from 'node:fs/promises';
import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { execa } from 'execa';
import type { V1Pod } from '@kubernetes/client-node';
import { ContainerConfigError, errnoCode } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Pod } from '../runtime-api/pod-spec.js';
import { apiStatus, type KubeClients } from './kube.js';

/**
 * FlexVolume, the kubelet's exec driver interface
 * (https://github.com/kubernetes/community/blob/master/contributors/devel/sig-storage/flexvolume.md),
 * for drivers that mount directly (capabilities.attach false):
 *   <plugin dir>/<vendor>~<driver>/<driver> init                    → {"status":"Success","capabilities":{"attach":false}}
 *   <plugin dir>/<vendor>~<driver>/<driver> mount <dir> <json>      → {"status":"Success"}
 *   <plugin dir>/<vendor>~<driver>/<driver> unmount <dir>           → {"status":"Success"}
 * `<json>` holds the volume's options plus the kubelet's own keys
 * (kubernetes.io/fsType, readwrite, pod.name, pod.namespace, pod.uid,
 * serviceAccount.name, and secret/<key> with the base64 values of secretRef).
 * The mount directory is `<data dir>/flexvolumes/<pod uid>/<vendor>~<driver>/<volume>`;
 * the agent hands it to the runtime as a hostPath (its own, after the
 * host-access gate), and unmounts it once no pod of that uid is wanted or
 * running any more (gc()). Attach/detach drivers are refused with a clear
 * error: there is no attach/detach controller.
 */

const CALL_TIMEOUT_MS = 120_000;
const DRIVER_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)\/([A-Za-z0-9][-A-Za-z0-9_.]*)$/;
/** Beside each mount directory: which driver mounted it (so gc can unmount after a restart of the agent). */
const MARKER = '.flexvolume.json';

interface DriverReply { status?: string; message?: string; capabilities?: { attach?: boolean; fsGroup?: boolean } }

export class FlexVolumes {
  private readonly initialised = new Map<string, DriverReply>();
  /** Pod uids with a directory under the root (read from disk once: an agent restart still unmounts what it mounted before). */
  private withVolumes: Set<string> | undefined;
  /** After a failed unmount, not before this time (each gc wakes another sync pass). */
  private retryAt = 0;

  constructor(private readonly kube: KubeClients, private readonly pluginDir: string, private readonly dataDir: string, private readonly log: Logger) {}

  private get root(): string { return path.join(this.dataDir, 'flexvolumes'); }

  /** Whether gc(keep) has anything to do (cheap: every sync pass asks). */
  needsGc(keep: ReadonlySet<string>): boolean {
    if (!this.withVolumes) {
      try { this.withVolumes = new Set(readdirSync(this.root)); } catch { this.withVolumes = new Set(); }
    }
    return Date.now() >= this.retryAt && [...this.withVolumes].some((uid) => !keep.has(uid));
  }

  private driverPath(driver: string, where: string): string {
    const m = DRIVER_NAME.exec(driver);
    if (!m) throw new ContainerConfigError(`${where}: flexVolume.driver ${JSON.stringify(driver)} is not of the form vendor/driver`);
    return path.join(this.pluginDir, `${m[1]}~${m[2]}`, m[2]!);
  }

  /** Run a driver call; its JSON reply, or a ContainerConfigError with the driver's message. */
  private async call(exe: string, args: string[], what: string): Promise<DriverReply> {
    const r = await execa(exe, args, { reject: false, timeout: CALL_TIMEOUT_MS, stdin: 'ignore' });
    let reply: DriverReply | undefined;
    try { reply = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '') as DriverReply; } catch { reply = undefined; }
    if (!reply || typeof reply.status !== 'string') {
      throw new ContainerConfigError(`${what}: driver ${exe} ${args[0]} gave no JSON status (exit ${r.exitCode}${r.timedOut ? ', timed out' : ''}): ${(r.stderr || r.stdout).trim().slice(0, 500)}`,
        'a FlexVolume driver prints {"status": "Success"|"Failure"|"Not supported", "message": …} on stdout');
    }
    return reply;
  }

  private async init(exe: string, what: string): Promise<DriverReply> {
    const cached = this.initialised.get(exe);
    if (cached) return cached;
    try {
      await fs.access(exe, fs.constants.X_OK);
    } catch {
      throw new ContainerConfigError(`${what}: no FlexVolume driver at ${exe}`, `install the driver there (executable), or fix the volume's driver name; the plugin dir is --volume-plugin-dir`);
    }
    const reply = await this.call(exe, ['init'], what);
    if (reply.status !== 'Success') throw new ContainerConfigError(`${what}: driver init failed: ${reply.message ?? reply.status}`);
    if (reply.capabilities?.attach !== false) {
      throw new ContainerConfigError(`${what}: driver ${exe} needs attach/detach (capabilities.attach is not false), and this node has no attach/detach controller`,
        'use a driver that mounts directly: its init answers {"status":"Success","capabilities":{"attach":false}}');
    }
    this.initialised.set(exe, reply);
    return reply;
  }

  /** The kubelet's options for a mount call. */
  private async options(pod: V1Pod, vol: { flexVolume?: { fsType?: string; readOnly?: boolean; options?: Record<string, string>; secretRef?: { name?: string } } }, what: string): Promise<Record<string, string>> {
    const fv = vol.flexVolume!;
    const md = pod.metadata ?? {};
    const opts: Record<string, string> = {
      ...(fv.options ?? {}),
      'kubernetes.io/fsType': fv.fsType ?? '',
      'kubernetes.io/readwrite': fv.readOnly ? 'ro' : 'rw',
      'kubernetes.io/pod.name': md.name ?? '',
      'kubernetes.io/pod.namespace': md.namespace ?? 'default',
      'kubernetes.io/pod.uid': md.uid ?? '',
      'kubernetes.io/serviceAccount.name': pod.spec?.serviceAccountName ?? 'default',
    };
    const secretName = fv.secretRef?.name;
    if (secretName) {
      try {
        const secret = await this.kube.core.readNamespacedSecret({ name: secretName, namespace: md.namespace ?? 'default' });
        for (const [k, v] of Object.entries(secret.data ?? {})) opts[`kubernetes.io/secret/${k}`] = v;
      } catch (err) {
        if (apiStatus(err) === 404) throw new ContainerConfigError(`${what}: secret "${secretName}" (flexVolume.secretRef) not found`);
        throw err;
      }
    }
    return opts;
  }

  /**
   * Mount the pod's flexVolume volumes (once per pod uid: a mounted one is
   * kept across restarts of the pod's runtime pod) and return the runtime
   * pod with each of them a hostPath of its mount directory.
   */
  async mountVolumes(pod: V1Pod, runtimePod: Pod): Promise<Pod> {
    const volumes = pod.spec?.volumes ?? [];
    if (!volumes.some((v) => v.flexVolume)) return runtimePod;
    const uid = pod.metadata!.uid!;
    this.needsGc(new Set());
    this.withVolumes!.add(uid);
    const out = structuredClone(runtimePod);
    for (const [i, v] of volumes.entries()) {
      if (!v.flexVolume) continue;
      const what = `MountVolume.SetUp failed for volume "${v.name}" (spec.volumes[${i}], flexVolume ${v.flexVolume.driver})`;
      const exe = this.driverPath(v.flexVolume.driver, what);
      const caps = await this.init(exe, what);
      const dir = path.join(this.root, uid, path.basename(path.dirname(exe)), v.name);
      const marker = path.join(path.dirname(dir), `${v.name}${MARKER}`);
      if (!(await fs.access(marker).then(() => true, () => false))) {
        await fs.mkdir(dir, { recursive: true, mode: 0o750 });
        // The marker first: a crash during the mount still leaves gc() something to unmount.
        await fs.writeFile(marker, JSON.stringify({ driver: v.flexVolume.driver, exe }));
        const reply = await this.call(exe, ['mount', dir, JSON.stringify(await this.options(pod, v, what))], what);
        if (reply.status !== 'Success') {
          await fs.rm(marker, { force: true });
          await fs.rmdir(dir).catch(() => undefined);
          throw new ContainerConfigError(`${what}: ${reply.message ?? reply.status}`, 'the driver\'s message says what it needs; the pod is retried with back-off');
        }
        const fsGroup = pod.spec?.securityContext?.fsGroup;
        // As the kubelet: ownership for fsGroup unless the driver says it manages it (capabilities.fsGroup false).
        if (fsGroup !== undefined && fsGroup !== null && caps.capabilities?.fsGroup !== false && !v.flexVolume.readOnly) await ownTree(dir, fsGroup);
        this.log.info({ pod: `${pod.metadata?.namespace}/${pod.metadata?.name}`, volume: v.name, driver: v.flexVolume.driver }, 'flexVolume mounted');
      }
      out.spec.volumes![i] = { name: v.name, hostPath: { path: dir, type: 'Directory' } };
      if (v.flexVolume.readOnly) for (const c of out.spec.containers) for (const m of c.volumeMounts ?? []) if (m.name === v.name) m.readOnly = true;
    }
    return out;
  }

  /** Unmount the flex volumes of every pod uid not in `keep`; a failed unmount is logged and tried again next time. */
  async gc(keep: ReadonlySet<string>): Promise<void> {
    const uids = await fs.readdir(this.root).catch(() => [] as string[]);
    for (const uid of uids.filter((u) => !keep.has(u))) {
      const podDir = path.join(this.root, uid);
      let clean = true;
      for (const driverDir of await fs.readdir(podDir).catch(() => [] as string[])) {
        const base = path.join(podDir, driverDir);
        for (const entry of (await fs.readdir(base).catch(() => [] as string[])).filter((e) => e.endsWith(MARKER))) {
          const volume = entry.slice(0, -MARKER.length);
          const dir = path.join(base, volume);
          const { exe } = JSON.parse(await fs.readFile(path.join(base, entry), 'utf8')) as { exe: string };
          const reply = await this.call(exe, ['unmount', dir], `UnmountVolume.TearDown for volume "${volume}" of pod ${uid}`).catch((err: Error) => ({ status: 'Failure', message: err.message }));
          if (reply.status !== 'Success') {
            clean = false;
            this.log.warn({ uid, volume, message: reply.message }, 'flexVolume unmount failed; will retry');
            continue;
          }
          await fs.rm(path.join(base, entry), { force: true });
          // rmdir, never rm -r: what is left in it would be on the volume.
          await fs.rmdir(dir).catch((err) => { if (errnoCode(err) !== 'ENOENT') { clean = false; this.log.warn({ dir, err: String(err) }, 'flexVolume directory not empty after unmount'); } });
          this.log.info({ uid, volume }, 'flexVolume unmounted');
        }
        await fs.rmdir(base).catch(() => { clean = false; });
      }
      if (clean && (await fs.rmdir(podDir).then(() => true, (err) => errnoCode(err) === 'ENOENT'))) this.withVolumes?.delete(uid);
      else this.retryAt = Date.now() + 10_000;
    }
  }
}

/** The kubelet's SetVolumeOwnership: group fsGroup, group read-write, setgid directories, through the whole volume. */
async function ownTree(dir: string, gid: number): Promise<void> {
  const walk = async (p: string): Promise<void> => {
    const st = await fs.lstat(p);
    if (st.isSymbolicLink()) return;
    await fs.lchown(p, st.uid, gid);
    const mask = st.isDirectory() ? 0o2070 : 0o060;
    await fs.chmod(p, (st.mode & 0o7777) | mask);
    if (st.isDirectory()) for (const e of await fs.readdir(p)) await walk(path.join(p, e));
  };
  await walk(dir);
}
