import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';

/** A single-member etcd on loopback, for tests: its own data dir and free ports; stopped by its PID. */
export interface TestEtcd {
  url: string;
  /** The PID of the etcd running now (restart changes it). */
  pid: number;
  dataDir: string;
  /** Stops it (SIGTERM, or SIGKILL with hard) and starts it again on the same data and ports. */
  restart(hard?: boolean): Promise<void>;
  /** Stops it and removes its data dir. */
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

async function waitExit(child: ChildProcess, exited: Promise<void>, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await exited;
  }
}

export async function startTestEtcd(): Promise<TestEtcd> {
  const dataDir = await fs.mkdtemp('/var/tmp/stevedore-etcd-test-');
  const clientPort = await freePort();
  const peerPort = await freePort();
  const url = `http://127.0.0.1:${clientPort}`;
  let child: ChildProcess;
  let exited: Promise<void>;
  const launch = async () => {
    const log = await fs.open(path.join(dataDir, 'etcd.log'), 'a');
    child = spawn('/usr/bin/etcd', [
      '--name', 'test', '--data-dir', path.join(dataDir, 'data'),
      '--listen-client-urls', url, '--advertise-client-urls', url,
      '--listen-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
      '--initial-cluster', `test=http://127.0.0.1:${peerPort}`, '--initial-cluster-state', 'new',
    ], { stdio: ['ignore', log.fd, log.fd] });
    await log.close();
    const c = child;
    exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (c.exitCode !== null) {
        const text = await fs.readFile(path.join(dataDir, 'etcd.log'), 'utf8').catch(() => '');
        throw new Error(`etcd exited at start: ${text.slice(-2000)}`);
      }
      try {
        const res = await fetch(`${url}/health`);
        if (res.ok && ((await res.json()) as { health?: string }).health === 'true') return;
      } catch { /* not listening yet */ }
      if (Date.now() > deadline) throw new Error('etcd did not become healthy within 30 s');
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const t: TestEtcd = {
    url, pid: 0, dataDir,
    async restart(hard = false) {
      await waitExit(child, exited, hard ? 'SIGKILL' : 'SIGTERM');
      await launch();
      t.pid = child.pid!;
    },
    async stop() {
      if (child) await waitExit(child, exited, 'SIGTERM');
      await fs.rm(dataDir, { recursive: true, force: true });
    },
  };
  try {
    await launch();
  } catch (err) {
    await t.stop();
    throw err;
  }
  t.pid = child!.pid!;
  return t;
}
