import { spawn } from 'node:child_process';
import { openSync, closeSync, existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { UserError } from '../common/errors.js';
import { readProc, terminate } from '../sandbox/proc.js';

export const ETCD_BINARY = '/usr/bin/etcd';

/**
 * The etcd of `stevedore up --store etcd`: one member, detached like the
 * control plane (it outlives `up`), listening on loopback only, its data in
 * DIR/data and its log in DIR/etcd.log. `started` gets its PID before the
 * wait, so `down` can stop it even if it never became healthy. Resolves with
 * its client URL once /health says true.
 */
export async function startEtcdProcess(o: { dir: string; clientPort: number; started(pid: number): Promise<void> }): Promise<string> {
  if (!existsSync(ETCD_BINARY)) throw new UserError(`--store etcd needs ${ETCD_BINARY}, which is not installed`, { hint: 'apt-get install etcd-server (scripts/setup.sh installs it)' });
  await fs.mkdir(o.dir, { recursive: true, mode: 0o700 });
  const url = `http://127.0.0.1:${o.clientPort}`;
  const peer = `http://127.0.0.1:${o.clientPort + 1}`;
  const logFd = openSync(path.join(o.dir, 'etcd.log'), 'a');
  const child = spawn(ETCD_BINARY, [
    '--name', 'stevedore', '--data-dir', path.join(o.dir, 'data'),
    '--listen-client-urls', url, '--advertise-client-urls', url,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `stevedore=${peer}`,
    // Read on the first start only: a member with data in --data-dir keeps the cluster it has.
    '--initial-cluster-state', 'new',
  ], { detached: true, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  child.unref();
  await o.started(child.pid!);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (!(await readProc(child.pid!)) || child.exitCode !== null) {
      throw new UserError(`etcd exited at start (see ${path.join(o.dir, 'etcd.log')})`, { hint: `is port ${o.clientPort} or ${o.clientPort + 1} in use? choose others with --etcd-port` });
    }
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2000) });
      if (res.ok && ((await res.json()) as { health?: string }).health === 'true') return url;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new UserError(`etcd at ${url} did not become healthy within 30 s`, { hint: `see ${path.join(o.dir, 'etcd.log')}` });
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * The etcd of `up --control-planes N --store etcd` (N > 1): N members on loopback forming one
 * cluster (`--initial-cluster`), member i (1-based) named stevedore-i with client port
 * base + 2(i-1) and peer port the next one, data in DIR-i/data (`dirs[i-1]`), log in DIR-i/etcd.log.
 * All are spawned before any is waited for (a member alone has no quorum and no leader);
 * `started` gets every PID first. Resolves with the client URLs once each member's /health says true.
 */
export async function startEtcdCluster(o: { dirs: string[]; clientPortBase: number; started(pids: number[]): Promise<void> }): Promise<string[]> {
  if (!existsSync(ETCD_BINARY)) throw new UserError(`--store etcd needs ${ETCD_BINARY}, which is not installed`, { hint: 'apt-get install etcd-server (scripts/setup.sh installs it)' });
  const members = o.dirs.map((dir, i) => ({
    name: `stevedore-${i + 1}`, dir,
    client: `http://127.0.0.1:${o.clientPortBase + 2 * i}`, peer: `http://127.0.0.1:${o.clientPortBase + 2 * i + 1}`,
  }));
  const initialCluster = members.map((m) => `${m.name}=${m.peer}`).join(',');
  const children = [];
  for (const m of members) {
    await fs.mkdir(m.dir, { recursive: true, mode: 0o700 });
    const logFd = openSync(path.join(m.dir, 'etcd.log'), 'a');
    const child = spawn(ETCD_BINARY, [
      '--name', m.name, '--data-dir', path.join(m.dir, 'data'),
      '--listen-client-urls', m.client, '--advertise-client-urls', m.client,
      '--listen-peer-urls', m.peer, '--initial-advertise-peer-urls', m.peer, '--initial-cluster', initialCluster,
      '--initial-cluster-token', 'stevedore',
      // Read on the first start only: members with data keep the cluster they formed.
      '--initial-cluster-state', 'new',
    ], { detached: true, stdio: ['ignore', logFd, logFd] });
    closeSync(logFd);
    child.unref();
    children.push(child);
  }
  await o.started(children.map((c) => c.pid!));
  const deadline = Date.now() + 60_000;
  for (const [i, m] of members.entries()) {
    for (;;) {
      if (!(await readProc(children[i]!.pid!)) || children[i]!.exitCode !== null) {
        throw new UserError(`etcd member ${m.name} exited at start (see ${path.join(m.dir, 'etcd.log')})`, { hint: `is port ${o.clientPortBase + 2 * i} or ${o.clientPortBase + 2 * i + 1} in use? choose others with --etcd-port (the members take ${members.length * 2} ports from it)` });
      }
      try {
        const res = await fetch(`${m.client}/health`, { signal: AbortSignal.timeout(2000) });
        if (res.ok && ((await res.json()) as { health?: string }).health === 'true') break;
      } catch { /* not listening yet, or no leader yet */ }
      if (Date.now() > deadline) throw new UserError(`the etcd cluster (${members.map((x) => x.client).join(', ')}) did not become healthy within 60 s`, { hint: `see the etcd.log files under ${path.dirname(m.dir)}` });
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return members.map((m) => m.client);
}

/** Stops the etcd `up` started, by its recorded PID, if that PID is still an etcd (not a reused PID). */
export async function stopEtcdProcess(pid: number | undefined): Promise<void> {
  if (!pid) return;
  const info = await readProc(pid);
  if (!info || info.comm !== 'etcd') return;
  await terminate(pid, 10_000);
}
