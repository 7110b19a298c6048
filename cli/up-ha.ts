/**
 * `stevedore up --control-planes 3 --store etcd`: a control plane that survives the death of any
 * one of its processes, on one host.
 *
 *   etcd:           3 members on loopback forming one cluster, member i with client port
 *                   --etcd-port + 2(i-1) and the next as peer port, data in DATADIR/etcd-i;
 *   control planes: 3 processes with --leader-elect (controllers and the scheduler run in the one
 *                   holding the Lease kube-system/stevedore-controller-manager), each on its own port
 *                   (--control-plane-ports, default --port + 1…3), all with the same data dir
 *                   DATADIR/control-plane, so the same CA, serving certificate (its SANs are
 *                   addresses, not ports), ServiceAccount key and admin token; logs
 *                   control-plane-i.log there; each writes its own admin kubeconfig
 *                   (control-plane/kubeconfig-i, straight to it);
 *   kubectl:        DATADIR/kubeconfig names 127.0.0.1:--port, where `stevedore api-lb` (cli/api-lb.ts)
 *                   passes each connection to the first healthy control plane;
 *   agents:         their kubeconfig names the first control plane and lists all of them
 *                   (extension stevedore.io/control-planes); their client dials the next when one
 *                   does not answer (agent/kube.ts), as k3s's agents keep a list of servers rather
 *                   than go through one more process.
 * Every PID goes into up.json; `stop` and `down` stop the balancer, the control planes and the etcd
 * members, in that order.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { InvalidInput, UserError } from '../common/errors.js';
import { kubeconfigText, writeKubeconfig } from '../control-plane/pki.js';
import { isAlive, readProc, terminate, waitGone } from '../sandbox/proc.js';
import { CLI, apiGet, startControlPlaneProcess, waitFor } from './up.js';

/** `--control-planes 3`: the control planes' own ports (the balancer has --port). Absent for one control plane. */
export interface HaControlPlanes { ports: number[] }

/** What up.json records of them; controlPlanePid (UpState's) is the first control plane's. */
export interface HaState { etcdPids?: number[]; controlPlanePids?: number[]; lbPid?: number }

const SUPPORTED = [1, 3];

/** Checks --control-planes and --control-plane-ports; undefined for one control plane. */
export function parseControlPlanes(countText: string, portsText: string | undefined, store: string, port: number): HaControlPlanes | undefined {
  const count = Number(countText);
  if (!SUPPORTED.includes(count)) throw new InvalidInput(`--control-planes ${countText}: choose 1 or 3`, 'three control planes survive the loss of one; two would not (etcd needs a majority)');
  if (count === 1) {
    if (portsText) throw new InvalidInput('--control-plane-ports goes with --control-planes 3', 'drop it, or add --control-planes 3 --store etcd');
    return undefined;
  }
  if (store !== 'etcd') throw new UserError(`--control-planes ${count} needs --store etcd`, { hint: `the control planes share their objects through an etcd cluster (SQLite is one file of one process): add --store etcd` });
  const ports = portsText ? portsText.split(',').map((p) => Number(p.trim())) : Array.from({ length: count }, (_, i) => port + 1 + i);
  if (ports.length !== count || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535) || new Set([...ports, port]).size !== count + 1) {
    throw new InvalidInput(`--control-plane-ports ${portsText ?? ports.join(',')} is not ${count} distinct ports other than --port ${port}`, `e.g. --control-plane-ports ${port + 1},${port + 2},${port + 3}`);
  }
  return { ports };
}

/** The URLs the nodes use, in order: each control plane's port on the address the nodes reach the host at. */
export const controlPlaneUrls = (ha: HaControlPlanes, host: string) => ha.ports.map((p) => `https://${host}:${p}`);

/**
 * Starts the etcd cluster, the control planes and the balancer (module comment); `record` gets
 * every PID as soon as it exists, so a failed start is still taken apart by `down`. Resolves with
 * the balancer's URL and the admin credentials once kubectl's address answers.
 */
export async function startHaControlPlanes(o: {
  dataDir: string; cpDir: string; kubeconfig: string; port: number; etcdPort: number; ha: HaControlPlanes; args: string[]; hint: string;
  earlier: (HaState & { stoppedAt?: number }) | undefined; record(s: HaState): Promise<void>;
}): Promise<{ url: string; ca: string; adminToken: string }> {
  // Processes of an earlier `up` here that was not stopped (its first control plane died) would be forgotten by the new up.json.
  if (o.earlier && !o.earlier.stoppedAt) await stopHaProcesses(o.earlier);
  const { startEtcdCluster } = await import('./etcd-process.js');
  const recorded: HaState = {};
  const count = o.ha.ports.length;
  const etcdUrls = await startEtcdCluster({
    dirs: Array.from({ length: count }, (_, i) => path.join(o.dataDir, `etcd-${i + 1}`)), clientPortBase: o.etcdPort,
    async started(pids) { recorded.etcdPids = pids; await o.record(recorded); },
  });
  process.stdout.write(`etcd cluster of ${count} members up at ${etcdUrls.join(', ')}\n`);
  recorded.controlPlanePids = [];
  const startOne = async (i: number) => {
    // Each prefers its own member; the others are there when it dies.
    const endpoints = [...etcdUrls.slice(i), ...etcdUrls.slice(0, i)].join(',');
    return startControlPlaneProcess({
      dir: o.cpDir, kubeconfig: path.join(o.cpDir, `kubeconfig-${i + 1}`), port: o.ha.ports[i]!, logName: `control-plane-${i + 1}.log`,
      args: [...o.args, '--store', `etcd:${endpoints}`, '--leader-elect'], hint: `is port ${o.ha.ports[i]} free? (--control-plane-ports) ${o.hint}`,
      async started(pid) { recorded.controlPlanePids![i] = pid; await o.record(recorded); },
    });
  };
  // The first makes the CA, serving certificate, ServiceAccount key and admin token; the others read them.
  const first = await startOne(0);
  await Promise.all(o.ha.ports.slice(1).map((_, k) => startOne(k + 1)));
  process.stdout.write(`${count} control planes up at ${o.ha.ports.map((p) => `https://127.0.0.1:${p}`).join(', ')} (leader election: Lease kube-system/stevedore-controller-manager)\n`);

  const logFd = openSync(path.join(o.dataDir, 'api-lb.log'), 'a');
  const lb = spawn(process.execPath, [CLI, 'api-lb', '--listen', `127.0.0.1:${o.port}`, '--ca', path.join(o.cpDir, 'pki', 'ca.crt'),
    '--backend', ...o.ha.ports.map((p) => `127.0.0.1:${p}`)], { detached: true, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  lb.unref();
  recorded.lbPid = lb.pid!;
  await o.record(recorded);
  const url = `https://127.0.0.1:${o.port}`;
  await waitFor('the API load balancer', 30_000, async () => {
    if (!(await isAlive(lb.pid!))) throw new Error('exited');
    const [code] = await apiGet(`${url}/version`, first.ca, first.adminToken);
    return code === 200 ? true : undefined;
  }, `see ${path.join(o.dataDir, 'api-lb.log')}; is port ${o.port} free?`);
  await writeKubeconfig(o.kubeconfig, kubeconfigText(url, first.ca, first.adminToken, 'admin', o.ha.ports.map((p) => `https://127.0.0.1:${p}`)));
  process.stdout.write(`kubectl's address ${url}: a load balancer (pid ${lb.pid}) in front of them\n`);
  return { url, ca: first.ca, adminToken: first.adminToken };
}

/** Whether PID is still the process we started (its command line has `marker`), not a reused PID. */
async function isOurs(pid: number, marker: string): Promise<boolean> {
  const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.split('\0').includes(marker);
}

/**
 * Stops the balancer, then the control planes (SIGTERM: the leader releases its Lease), then the
 * etcd members, by the PIDs recorded; each only if it is still the process `up` started.
 */
export async function stopHaProcesses(state: HaState): Promise<void> {
  // SIGTERM, SIGKILL after the grace period, and gone before the next step (a killed process lingers a moment).
  const stop = async (pid: number, graceMs: number) => {
    if ((await terminate(pid, graceMs)) === 'killed') await waitGone([pid], 5000);
  };
  if (state.lbPid && (await isOurs(state.lbPid, 'api-lb'))) await stop(state.lbPid, 5000);
  await Promise.all((state.controlPlanePids ?? []).map(async (pid) => {
    if (pid && (await isOurs(pid, 'control-plane'))) await stop(pid, 10_000);
  }));
  await Promise.all((state.etcdPids ?? []).map(async (pid) => {
    if ((await readProc(pid))?.comm === 'etcd') await stop(pid, 10_000);
  }));
}
