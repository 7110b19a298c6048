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

/** Stops the etcd `up` started, by its recorded PID, if that PID is still an etcd (not a reused PID). */
export async function stopEtcdProcess(pid: number | undefined): Promise<void> {
  if (!pid) return;
  const info = await readProc(pid);
  if (!info || info.comm !== 'etcd') return;
  await terminate(pid, 10_000);
}
