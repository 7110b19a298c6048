/**
 * A throw-away Docker Engine for the peer measurement, started by hand as
 * shared/reference/machine-facts.md describes: own data and exec root under
 * the bench's work dir, no iptables, no ip forwarding, no bridge, cgroupfs
 * under a cgroup parent of its own, inside a network namespace of its own
 * (`unshare --net`: it lives and dies with dockerd, nothing under /run/netns).
 * Stopped by its PID; everything it made is removed.
 */
import { spawn } from 'node:child_process';
import { openSync, closeSync, constants as fsConstants, createReadStream, createWriteStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import * as tar from 'tar-stream';
import { isAlive, terminate } from '../sandbox/proc.js';
import { sleep } from './stats.js';

export const DOCKERD = '/usr/sbin/dockerd';
/** Debian's client, the same version as the engine (a newer static client may sit earlier in PATH). */
export const DOCKER_CLIENT = '/usr/bin/docker';
const PATH_ENV = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface DockerEngine {
  dir: string;
  sock: string;
  /** DOCKER_HOST value */
  host: string;
  pid: number;
  client: string;
  version: string;
  env: Record<string, string>;
}

/** Paths dockerd (and the containerd it starts: its "opt" plugin) may create outside its roots; removed at stop if they did not exist before. */
const OUTSIDE_PATHS = ['/etc/docker/key.json', '/run/docker', '/var/run/docker', '/opt/containerd'];

async function exists(p: string): Promise<boolean> {
  return fs.lstat(p).then(() => true, () => false);
}

function ping(sock: string, pathname = '/_ping'): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath: sock, path: pathname, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

/** PIDs of every process whose cmdline mentions dir (dockerd, containerd, shims), found through /proc. */
async function processesUsing(dir: string): Promise<number[]> {
  const out: number[] = [];
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmd = await fs.readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(dir)) out.push(Number(name));
  }
  return out;
}

export interface DockerStart {
  engine?: DockerEngine;
  reason?: string;
  /** what existed before (for cleanup) */
  preexisting: Set<string>;
  cgroupParent: string;
  dir: string;
}

/** dockerd's PID as this process sees it: the process whose argv[0] is dockerd and that names `dir` (found through /proc). */
async function dockerdPid(dir: string): Promise<number | undefined> {
  for (const pid of await processesUsing(dir)) {
    const argv = (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv[0] === DOCKERD) return pid;
  }
  return undefined;
}

/**
 * `inSandbox`: run dockerd (and so its containers) inside a node sandbox —
 * its cgroups, mount, PID and cgroup namespaces, as execInSandbox enters
 * them — as a node's engine runs: a runtime in the sandbox then sees the
 * containers' processes (their network namespaces are /proc/PID/ns/net), and
 * the engine's mounts and cgroups end with the sandbox.
 */
export async function startDocker(dir: string, runId: string, opts: { inSandbox?: { pid: number; cgroupDirs: string[] } } = {}): Promise<DockerStart> {
  const cgroupParent = `stevedore-bench-docker-${runId}`;
  const preexisting = new Set<string>();
  for (const p of OUTSIDE_PATHS) if (await exists(p)) preexisting.add(p);
  const st: DockerStart = { preexisting, cgroupParent, dir };
  if (!(await exists(DOCKERD))) return { ...st, reason: `${DOCKERD} not installed (apt-get install -y docker.io)` };
  if (!(await exists(DOCKER_CLIENT))) return { ...st, reason: `${DOCKER_CLIENT} not installed` };
  await fs.mkdir(path.join(dir, 'data'), { recursive: true });
  await fs.mkdir(path.join(dir, 'exec'), { recursive: true });
  await fs.mkdir(path.join(dir, 'config'), { recursive: true });
  const sock = path.join(dir, 'docker.sock');
  const args = [
    `--host=unix://${sock}`, `--data-root=${dir}/data`, `--exec-root=${dir}/exec`, `--pidfile=${dir}/docker.pid`,
    '--iptables=false', '--ip6tables=false', '--ip-forward=false', '--ip-masq=false', '--bridge=none',
    '--storage-driver=overlay2', '--exec-opt=native.cgroupdriver=cgroupfs', `--cgroup-parent=/${cgroupParent}`,
    `--config-file=${dir}/config/daemon.json`, '--log-level=warn',
  ];
  await fs.writeFile(path.join(dir, 'config', 'daemon.json'), '{}\n');
  const logFd = openSync(path.join(dir, 'dockerd.log'), fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND, 0o644);
  let pid: number | undefined;
  try {
    // unshare --net execs (no fork), sh execs: the PID we get is dockerd's.
    const inNet = ['unshare', '--net', '--', '/bin/sh', '-c', 'ip link set lo up; exec "$@"', 'sh', DOCKERD, ...args];
    // nsenter forks for the PID namespace: the PID we get is nsenter's, dockerd's is looked up below.
    const sb = opts.inSandbox;
    const argv = sb
      ? ['/bin/sh', '-c', 'while [ "$1" != -- ]; do echo $$ 2>/dev/null >"$1" || :; shift; done; shift; exec "$@"', 'join-cgroups',
        ...sb.cgroupDirs.map((d) => path.join(d, 'cgroup.procs')), '--', 'nsenter', '-t', String(sb.pid), '-m', '-p', '-C', '--', ...inNet]
      : inNet;
    const child = spawn(argv[0]!, argv.slice(1), {
      detached: true, stdio: ['ignore', logFd, logFd], env: { PATH: PATH_ENV, HOME: dir },
    });
    child.on('error', () => undefined);
    child.unref();
    pid = child.pid;
  } finally {
    closeSync(logFd);
  }
  if (pid === undefined) return { ...st, reason: 'could not spawn unshare/dockerd' };
  const engine: DockerEngine = {
    dir, sock, host: `unix://${sock}`, pid, client: DOCKER_CLIENT, version: '',
    env: { PATH: PATH_ENV, HOME: dir, DOCKER_HOST: `unix://${sock}`, DOCKER_CONFIG: path.join(dir, 'client') },
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (!(await isAlive(pid))) {
      const log = await fs.readFile(path.join(dir, 'dockerd.log'), 'utf8').catch(() => '');
      return { ...st, engine, reason: `dockerd exited during start: ${log.trim().split('\n').slice(-3).join(' | ')}` };
    }
    if (opts.inSandbox && engine.pid === pid) engine.pid = (await dockerdPid(dir)) ?? pid;
    if (await exists(sock)) {
      try {
        await ping(sock);
        const v = JSON.parse(await ping(sock, '/version')) as { Version?: string; ApiVersion?: string };
        engine.version = `${v.Version ?? '?'} (API ${v.ApiVersion ?? '?'})`;
        return { ...st, engine };
      } catch { /* not ready */ }
    }
    if (Date.now() > deadline) return { ...st, engine, reason: 'dockerd did not answer _ping within 30 s' };
    await sleep(50);
  }
}

/** Stop dockerd by its PID (SIGTERM, then SIGKILL), then remove its mounts, cgroups, files. */
export async function stopDocker(st: DockerStart): Promise<string[]> {
  const notes: string[] = [];
  const { engine, dir } = st;
  if (engine) {
    const helpers = (await processesUsing(dir)).filter((p) => p !== engine.pid);
    if ((await terminate(engine.pid, 20_000)) === 'killed') notes.push('dockerd needed SIGKILL');
    // Its containerd (and shims) normally exit with it; kill the ones we listed if they did not.
    await sleep(200);
    for (const p of helpers) {
      if (await isAlive(p)) {
        try { process.kill(p, 'SIGKILL'); notes.push(`killed leftover pid ${p}`); } catch { /* gone */ }
      }
    }
  }
  // Mounts under the dir (overlay, shm, netns files), deepest first.
  const mountinfo = await fs.readFile('/proc/self/mountinfo', 'utf8');
  const mounts = mountinfo.split('\n').map((l) => l.split(' ')[4]).filter((m): m is string => !!m && m.startsWith(dir + '/'));
  for (const m of mounts.sort((a, b) => b.length - a.length)) {
    await new Promise<void>((resolve) => spawn('umount', ['-l', m], { stdio: 'ignore' }).on('close', () => resolve()).on('error', () => resolve()));
  }
  // cgroups: <hierarchy>/<cgroupParent>, depth-first rmdir (all empty once dockerd is gone).
  for (const h of await fs.readdir('/sys/fs/cgroup').catch(() => [] as string[])) {
    const base = path.join('/sys/fs/cgroup', h, st.cgroupParent);
    if (await exists(base)) await rmdirTree(base).catch((err) => notes.push(`cgroup ${base}: ${(err as Error).message}`));
  }
  for (const p of OUTSIDE_PATHS) {
    if (!st.preexisting.has(p) && (await exists(p))) {
      await fs.rm(p, { recursive: true, force: true });
      notes.push(`removed ${p} (created by dockerd)`);
    }
  }
  await fs.rm(dir, { recursive: true, force: true }).catch((err) => notes.push(`rm ${dir}: ${(err as Error).message}`));
  return notes;
}

async function rmdirTree(dir: string): Promise<void> {
  for (const e of await fs.readdir(dir, { withFileTypes: true })) if (e.isDirectory()) await rmdirTree(path.join(dir, e.name));
  await fs.rmdir(dir);
}

/**
 * Convert an OCI image layout (first image of index.json) into a
 * docker-archive (`docker save` format) that `docker load` reads, with our
 * own code: same config and layer bits, layers gunzipped.
 */
export async function ociLayoutToDockerArchive(layoutDir: string, outFile: string, repoTag: string): Promise<void> {
  const blob = (digest: string) => path.join(layoutDir, 'blobs', ...digest.split(':'));
  const index = JSON.parse(await fs.readFile(path.join(layoutDir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const manifest = JSON.parse(await fs.readFile(blob(index.manifests[0]!.digest), 'utf8')) as { config: { digest: string }; layers: Array<{ digest: string; mediaType: string }> };
  const configBytes = await fs.readFile(blob(manifest.config.digest));
  const config = JSON.parse(configBytes.toString('utf8')) as { rootfs: { diff_ids: string[] } };
  const tmpDir = path.join(path.dirname(outFile), `.layers-${process.pid}`);
  await fs.mkdir(tmpDir, { recursive: true });
  const layerFiles: Array<{ name: string; file: string; size: number }> = [];
  for (const [i, layer] of manifest.layers.entries()) {
    const diffId = config.rootfs.diff_ids[i]!.split(':')[1]!;
    const file = path.join(tmpDir, `${diffId}.tar`);
    const stages: NodeJS.ReadWriteStream[] = layer.mediaType.endsWith('gzip') ? [createGunzip()] : [];
    await pipeline([createReadStream(blob(layer.digest)), ...stages, createWriteStream(file)]);
    layerFiles.push({ name: `${diffId}/layer.tar`, file, size: (await fs.stat(file)).size });
  }
  const configName = `${manifest.config.digest.split(':')[1]}.json`;
  const pack = tar.pack();
  const written = pipeline(pack, createWriteStream(outFile));
  const add = (name: string, body: Buffer) => new Promise<void>((resolve, reject) => pack.entry({ name, size: body.length }, body, (e) => (e ? reject(e) : resolve())));
  await add(configName, configBytes);
  for (const l of layerFiles) {
    await new Promise<void>((resolve, reject) => {
      const sink = pack.entry({ name: l.name, size: l.size }, (e) => (e ? reject(e) : resolve()));
      createReadStream(l.file).on('error', reject).pipe(sink);
    });
  }
  await add('manifest.json', Buffer.from(JSON.stringify([{ Config: configName, RepoTags: [repoTag], Layers: layerFiles.map((l) => l.name) }])));
  pack.finalize();
  await written;
  await fs.rm(tmpDir, { recursive: true, force: true });
}
