/**
 * A throw-away containerd for the pull benchmark's peer (`ctr image pull`):
 * Debian's /usr/bin/containerd with a config of our own whose root, state,
 * sockets, temp dir (where the diff applier mounts layers while unpacking)
 * and "opt" dir all sit in one mkdtemp dir under /var/tmp; the CRI, tracing
 * and the btrfs/zfs/devmapper/aufs snapshotters are disabled (overlayfs, the
 * default, stays). It runs in the host's network namespace (it must reach the
 * registry on 127.0.0.1). Started as our child (so a Ctrl-C in the terminal
 * reaches it too), stopped by its PID; then whatever is still mounted under
 * the dir is unmounted and the dir removed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, constants as fsConstants } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { run } from './cluster-util.js';
import { isAlive, terminate } from '../sandbox/proc.js';
import { sleep } from './stats.js';

export const CONTAINERD = '/usr/bin/containerd';
export const CTR = '/usr/bin/ctr';
const PATH_ENV = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const INSTALL_HINT = 'apt-get install -y containerd (scripts/setup.sh installs it)';

export interface Containerd {
  dir: string;
  /** the gRPC socket, for `ctr -a` */
  sock: string;
  pid: number;
  /** `containerd --version`'s version field, e.g. `1.6.20~ds1` */
  version: string;
  log: string;
  child: ChildProcess;
  exited: Promise<void>;
}

function config(dir: string): string {
  const q = (p: string) => JSON.stringify(path.join(dir, p));
  return `version = 2
root = ${q('root')}
state = ${q('state')}
temp = ${q('tmp')}
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = ${q('ctrd.sock')}
[ttrpc]
  address = ${q('ctrd.sock.ttrpc')}
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = ${q('opt')}
`;
}

async function exists(p: string): Promise<boolean> {
  return fs.lstat(p).then(() => true, () => false);
}

/** Mount points under dir in this (the host's) mount namespace. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const mountinfo = await fs.readFile('/proc/self/mountinfo', 'utf8');
  return mountinfo.split('\n').map((l) => l.split(' ')[4]).filter((m): m is string => !!m && (m === dir || m.startsWith(dir + '/')));
}

/** `ctr -a SOCK -n NS ARGS…` as an argument vector for CTR. */
export const ctrArgs = (c: Containerd, namespace: string, ...args: string[]): string[] => ['-a', c.sock, '-n', namespace, ...args];

/**
 * Start containerd in a fresh `<parent>/stevedore-bench-ctrd-XXXXXX`; resolves
 * once `ctr version` answers. Throws (after cleaning up) when the binaries are
 * missing or it does not come up within 15 s.
 */
export async function startContainerd(parent = '/var/tmp'): Promise<Containerd> {
  for (const bin of [CONTAINERD, CTR]) {
    if (!(await exists(bin))) throw new Error(`${bin} not installed (${INSTALL_HINT})`);
  }
  const dir = await fs.mkdtemp(path.join(parent, 'stevedore-bench-ctrd-'));
  const log = path.join(dir, 'containerd.log');
  const sock = path.join(dir, 'ctrd.sock');
  let c: Containerd | undefined;
  try {
    await fs.mkdir(path.join(dir, 'tmp'));
    await fs.writeFile(path.join(dir, 'config.toml'), config(dir));
    const logFd = openSync(log, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND, 0o644);
    let child: ChildProcess;
    try {
      child = spawn(CONTAINERD, ['--config', path.join(dir, 'config.toml')], {
        stdio: ['ignore', logFd, logFd],
        // TMPDIR too (mount.WithTempMount reads it); no XDG_RUNTIME_DIR, which it would prefer.
        env: { PATH: PATH_ENV, HOME: dir, TMPDIR: path.join(dir, 'tmp') },
      });
    } finally {
      closeSync(logFd);
    }
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()).once('error', () => resolve()));
    if (child.pid === undefined) throw new Error(`could not spawn ${CONTAINERD}`);
    c = { dir, sock, pid: child.pid, version: '', log, child, exited };
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null || !(await isAlive(c.pid))) {
        const text = await fs.readFile(log, 'utf8').catch(() => '');
        throw new Error(`containerd exited during start: ${text.trim().split('\n').slice(-3).join(' | ')}`);
      }
      if (await exists(sock)) {
        const v = await run(CTR, ['-a', sock, 'version'], { PATH: PATH_ENV });
        const server = /Server:[\s\S]*?Version:\s*(\S+)/.exec(v.stdout)?.[1];
        if (v.code === 0 && server) {
          c.version = server;
          return c;
        }
      }
      if (Date.now() > deadline) throw new Error(`containerd did not answer \`ctr version\` within 15 s (log: ${log})`);
      await sleep(50);
    }
  } catch (err) {
    const notes = c ? await stopContainerd(c) : (await fs.rm(dir, { recursive: true, force: true }), []);
    if (notes.length) (err as Error).message += ` (cleanup: ${notes.join('; ')})`;
    throw err;
  }
}

/**
 * Stop containerd by its PID (SIGTERM, SIGKILL after 10 s), unmount anything
 * left under its dir (deepest first), remove the dir. Returns notes: anything
 * unusual, plus the warning/error lines of its log (read before the dir goes).
 */
export async function stopContainerd(c: Containerd): Promise<string[]> {
  const notes: string[] = [];
  if ((await terminate(c.pid, 10_000)) === 'killed') notes.push('containerd needed SIGKILL');
  await Promise.race([c.exited, sleep(2000)]);
  // Nothing should have outlived it (it ran no containers, so no shims); a process naming the dir would be ours.
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmd = await fs.readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(c.dir + '/') && (await isAlive(Number(name)))) {
      try { process.kill(Number(name), 'SIGKILL'); notes.push(`killed leftover pid ${name}: ${cmd.replace(/\0/g, ' ').trim()}`); } catch { /* gone */ }
    }
  }
  const logText = await fs.readFile(c.log, 'utf8').catch(() => '');
  const flagged = logText.split('\n').filter((l) => /level=(warning|error|fatal|panic)/.test(l));
  for (const l of [...new Set(flagged.map((l) => l.replace(/^time="[^"]*" /, '')))].slice(0, 10)) notes.push(`containerd log: ${l}`);
  for (const m of (await mountsUnder(c.dir)).sort((a, b) => b.length - a.length)) {
    const r = await run('umount', [m]);
    if (r.code !== 0) await run('umount', ['-l', m]);
    notes.push(`unmounted ${m} (left mounted by containerd)`);
  }
  await fs.rm(c.dir, { recursive: true, force: true }).catch((err) => notes.push(`rm ${c.dir}: ${(err as Error).message}`));
  if (await isAlive(c.pid)) notes.push(`containerd pid ${c.pid} still alive`);
  const left = await mountsUnder(c.dir);
  if (left.length) notes.push(`still mounted: ${left.join(', ')}`);
  if (await exists(c.dir)) notes.push(`${c.dir} still exists`);
  return notes;
}
