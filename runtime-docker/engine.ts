/**
 * The Docker Engine of a node: dockerd started as a transient unit of the
 * node's systemd (so it outlives the agent, as rkt's pod units do, and dies
 * with the node sandbox), with everything it keeps under one directory of
 * the node's data dir. Networking is left to our CNI code: no bridge, no
 * iptables, no IP forwarding from dockerd.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { UserError } from '../common/errors.js';
import { prop, SystemdClient } from '../common/systemd.js';
import { EngineClient } from './engine-api.js';

export const DEFAULT_ENGINE_UNIT = 'stevedore-dockerd.service';
export const DOCKERD = '/usr/sbin/dockerd';

export interface EngineOptions {
  /** Everything dockerd keeps: socket, data root, exec root, config, pid file. */
  dir: string;
  /** The node's systemd (default: the system bus). */
  dbusAddress?: string;
  unit?: string;
  startTimeoutMs?: number;
}

export const enginePaths = (dir: string) => ({
  socket: path.join(dir, 'docker.sock'),
  dataRoot: path.join(dir, 'data'),
  execRoot: path.join(dir, 'exec'),
  pidFile: path.join(dir, 'docker.pid'),
  config: path.join(dir, 'daemon.json'),
});

/** dockerd's argv: our own config file (never the host's /etc/docker/daemon.json), our own roots. */
export function dockerdArgv(dir: string): string[] {
  const p = enginePaths(dir);
  return [DOCKERD, '--config-file', p.config, '--host', `unix://${p.socket}`, '--data-root', p.dataRoot, '--exec-root', p.execRoot, '--pidfile', p.pidFile,
    '--iptables=false', '--ip-forward=false', '--ip-masq=false', '--bridge=none', '--storage-driver=overlay2',
    // Containers keep running while dockerd restarts (an upgrade, a crash): pods survive it as rkt's survive the agent.
    '--live-restore',
    '--cgroup-parent=/stevedore-docker'];
}

export async function ping(client: EngineClient): Promise<boolean> {
  try {
    const res = await client.stream('GET', '/_ping');
    res.resume();
    return true;
  } catch {
    return false;
  }
}

/** dockerd up and answering on its socket: started as a unit of the node's systemd unless it already answers. */
export async function ensureEngine(opts: EngineOptions): Promise<EngineClient> {
  const p = enginePaths(opts.dir);
  const client = new EngineClient(p.socket);
  if (await ping(client)) return client;
  await fs.mkdir(opts.dir, { recursive: true, mode: 0o711 });
  await fs.writeFile(p.config, '{}\n');
  const unit = opts.unit ?? DEFAULT_ENGINE_UNIT;
  const sd = await SystemdClient.connect(opts.dbusAddress);
  try {
    await sd.subscribe();
    await sd.resetFailedUnit(unit).catch(() => undefined);
    const argv = dockerdArgv(opts.dir);
    const properties = [
      prop.str('Description', 'Docker Engine of this Stevedore node'),
      prop.exec('ExecStart', [{ path: argv[0]!, argv }]),
      // dockerd manages its containers' cgroups itself, below its own.
      prop.bool('Delegate', true),
      // Stopping or restarting the engine signals dockerd alone (docker.service does the same): the
      // containerd shims stay, so --live-restore finds the containers running when dockerd is back.
      prop.str('KillMode', 'process'),
      prop.str('Restart', 'on-failure'),
      prop.u64('StartLimitIntervalUSec', 0),
    ];
    const started = await sd.startTransientUnit(unit, properties).catch((err: Error) => {
      // Stopped with the containers' shims still in its cgroup (KillMode=process), the unit stays loaded: start it again.
      if (/already loaded|fragment file/i.test(err.message)) return sd.startUnit(unit);
      throw err;
    });
    await sd.waitForJob(started, 30_000).catch(() => undefined);
  } finally {
    sd.close();
  }
  const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
  while (!(await ping(client))) {
    if (Date.now() > deadline) {
      throw new UserError(`dockerd did not answer on ${p.socket} within ${(opts.startTimeoutMs ?? 30_000) / 1000} s`, { hint: `see its journal on the node: journalctl -u ${unit}` });
    }
    await sleep(100);
  }
  return client;
}

/**
 * Stop dockerd (its unit). Then, unless `keepContainers` (an engine restart:
 * --live-restore finds them again), SIGKILL whatever is left in its cgroup:
 * containerd and the shims of containers still there.
 */
export async function stopEngine(opts: EngineOptions, { keepContainers = false }: { keepContainers?: boolean } = {}): Promise<void> {
  const unit = opts.unit ?? DEFAULT_ENGINE_UNIT;
  const sd = await SystemdClient.connect(opts.dbusAddress);
  try {
    await sd.subscribe();
    const job = await sd.stopUnit(unit).catch(() => undefined);
    if (job) await sd.waitForJob(job, 30_000).catch(() => undefined);
    if (!keepContainers) await sd.killUnit(unit, 9, 'all').catch(() => undefined);
    await sd.resetFailedUnit(unit).catch(() => undefined);
  } finally {
    sd.close();
  }
}
