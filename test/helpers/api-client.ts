/**
 * Test helper: a grpc-js client of the api-service built from the project's
 * own .proto (api-service/v1alpha.proto), and a way to run the api-service
 * as its own process (optionally as another user).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadDefinitions } from '../../api-service/proto.js';

type Callback<T> = (err: grpc.ServiceError | null, res: T) => void;
export type UnaryFn = (req: unknown, cb: Callback<any>) => grpc.ClientUnaryCall;

export interface ApiClient {
  raw: grpc.Client & Record<string, any>;
  health: grpc.Client & Record<string, any>;
  call<T = any>(method: string, req?: unknown, timeoutMs?: number): Promise<T>;
  /** Start a server stream; collects every message. */
  stream(method: string, req: unknown): ApiStream;
  close(): void;
}

export interface ApiStream {
  call: grpc.ClientReadableStream<any>;
  messages: any[];
  /** Resolves when the server has sent its headers (for ListenEvents: the subscription is live). */
  ready: Promise<void>;
  /** Resolves with the status when the stream ends (OK or an error status). */
  done: Promise<grpc.StatusObject | grpc.ServiceError>;
  /** Wait until pred(messages) holds. */
  until(pred: (messages: any[]) => boolean, timeoutMs?: number): Promise<void>;
}

export function apiClient(address: string): ApiClient {
  const pkg = grpc.loadPackageDefinition(loadDefinitions()) as any;
  const creds = grpc.credentials.createInsecure();
  const raw = new pkg.v1alpha.PublicAPI(address, creds);
  const health = new pkg.grpc.health.v1.Health(address, creds);
  return {
    raw,
    health,
    call(method, req = {}, timeoutMs = 30_000) {
      const target = method.startsWith('Health.') ? health : raw;
      const name = method.replace(/^Health\./, '');
      return new Promise((resolve, reject) => {
        target[name](req, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: any) => (err ? reject(err) : resolve(res)));
      });
    },
    stream(method, req) {
      const call = raw[method](req) as grpc.ClientReadableStream<any>;
      const messages: any[] = [];
      const waiters = new Set<() => void>();
      call.on('data', (m) => { messages.push(m); for (const w of waiters) w(); });
      const ready = new Promise<void>((resolve) => { call.once('metadata', () => resolve()); call.once('status', () => resolve()); call.once('error', () => resolve()); });
      const done = new Promise<grpc.StatusObject | grpc.ServiceError>((resolve) => {
        call.on('error', (e) => resolve(e as grpc.ServiceError));
        call.on('status', (s) => { if (s.code === grpc.status.OK) resolve(s); });
      });
      let finished = false;
      void done.then(() => { finished = true; for (const w of waiters) w(); });
      return {
        call, messages, ready, done,
        until(pred, timeoutMs = 30_000) {
          return new Promise<void>((resolve, reject) => {
            const check = () => {
              if (pred(messages)) { cleanup(); resolve(); } else if (finished) { cleanup(); reject(new Error(`stream ${method} ended before the condition held (${messages.length} messages)`)); }
            };
            const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out after ${timeoutMs} ms waiting on ${method} (${messages.length} messages)`)); }, timeoutMs);
            const cleanup = () => { clearTimeout(timer); waiters.delete(check); };
            waiters.add(check);
            check();
          });
        },
      };
    },
    close() {
      raw.close();
      health.close();
    },
  };
}

export const API_SERVICE_MAIN = fileURLToPath(new URL('../../api-service/main.js', import.meta.url));

const liveChildren = new Set<ChildProcess>();
let exitHook = false;

export interface ApiServiceProcess {
  address: string;
  pid: number;
  child: ChildProcess;
  stderr: () => string;
  /** host:port of its /metrics, when started with --metrics. */
  metricsAddress?: string;
  stop(): Promise<void>;
}

/**
 * Run the api-service as its own process: `node dist/api-service/main.js
 * api-service --listen 127.0.0.1:0 ARGS`; `asUser` runs it through
 * setpriv with that uid/gid and no supplementary groups.
 */
export async function spawnApiService(args: string[], opts: { asUser?: number } = {}): Promise<ApiServiceProcess> {
  // The same V8 flags as its systemd unit: tests and benchmarks run the service as deployed.
  const argv = [process.execPath, ...API_SERVICE_NODE_FLAGS, API_SERVICE_MAIN, 'api-service', '--listen', '127.0.0.1:0', ...args];
  const cmd = opts.asUser !== undefined ? ['setpriv', `--reuid=${opts.asUser}`, `--regid=${opts.asUser}`, '--clear-groups', '--', ...argv] : argv;
  const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  if (!exitHook) {
    exitHook = true;
    // Whatever a test forgets, no api-service outlives the test process.
    process.once('exit', () => { for (const c of liveChildren) c.kill('SIGKILL'); });
  }
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => { err += d; });
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`api-service did not start: ${err}`)), 20_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) { clearTimeout(timer); resolve(m[1]!); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`api-service exited with ${code}: ${err}`)); });
  });
  const exited = new Promise<void>((resolve) => { if (child.exitCode !== null) resolve(); else child.once('exit', () => resolve()); });
  return {
    address, pid: child.pid!, child, stderr: () => err, metricsAddress: /metrics on http:\/\/(\S+)\/metrics/.exec(out)?.[1],
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

// ---- synthetic node state (no systemd needed) --------------------------------

import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomUUID, createHash } from 'node:crypto';
import { API_SERVICE_NODE_FLAGS } from '../../common/unit-install.js';

export interface SyntheticPod { uuid: string; name: string; state: 'prepared' | 'run' | 'exited-garbage' | 'garbage' | 'embryo'; apps: string[]; exited?: boolean }

/**
 * Lay out pods and images on disk the way runtime-rkt does (stage1/contract.ts,
 * runtime-rkt/image/types.ts), without running anything: for benchmarks and
 * for tests that need no systemd. Returns what it made.
 */
export function makeSyntheticDataDir(dataDir: string, opts: { pods: number; appsPerPod?: number; images?: number }): { pods: SyntheticPod[]; imageIds: string[] } {
  for (const s of ['embryo', 'prepare', 'prepared', 'run', 'exited-garbage', 'garbage']) fs.mkdirSync(path.join(dataDir, 'pods', s), { recursive: true });
  fs.mkdirSync(path.join(dataDir, 'images', 'records'), { recursive: true });
  fs.mkdirSync(path.join(dataDir, 'images', 'blobs', 'sha256'), { recursive: true });
  const imageIds: string[] = [];
  for (let i = 0; i < (opts.images ?? 2); i++) {
    const manifest = JSON.stringify({ schemaVersion: 2, i });
    const mdigest = createHash('sha256').update(manifest).digest('hex');
    fs.writeFileSync(path.join(dataDir, 'images', 'blobs', 'sha256', mdigest), manifest);
    const hex = createHash('sha256').update(`image-${i}`).digest('hex');
    const rec = {
      id: `sha256:${hex}`, names: [`example.com/synthetic/img${i}:v${i}`], format: 'oci', manifestDigest: `sha256:${mdigest}`, configDigest: `sha256:${hex}`,
      layers: [], config: { Labels: { index: String(i) } }, os: 'linux', architecture: 'amd64', size: 1000 + i, importedAt: Date.now() - 1000 * (opts.images ?? 2 - i),
      annotations: { synthetic: 'yes' },
    };
    fs.writeFileSync(path.join(dataDir, 'images', 'records', `${hex}.json`), JSON.stringify(rec));
    imageIds.push(rec.id);
  }
  const pods: SyntheticPod[] = [];
  const nowNs = BigInt(Date.now()) * 1_000_000n;
  for (let i = 0; i < opts.pods; i++) {
    const uuid = randomUUID();
    const name = `synthetic-${i}`;
    const apps = Array.from({ length: opts.appsPerPod ?? 2 }, (_, k) => `app${k}`);
    const state: SyntheticPod['state'] = 'run';
    const dir = path.join(dataDir, 'pods', state, uuid);
    fs.mkdirSync(dir, { recursive: true });
    const manifest = {
      version: 1, uuid, stage1: i % 2 ? 'fly' : 'namespaces', createdAt: Number(nowNs), hostname: name, restartPolicy: 'Never', terminationGracePeriodSeconds: 1,
      pod: { metadata: { name, namespace: 'default', annotations: { index: String(i) } }, spec: { containers: apps.map((a) => ({ name: a, image: 'img0' })) } },
      apps: apps.map((a, k) => ({ name: a, image: { id: imageIds[k % imageIds.length] ?? 'sha256:00', name: 'example.com/synthetic/img0:v0' }, argv: ['/bin/true'], env: [], workingDir: '/', user: { uid: 0, gid: 0 }, limits: {}, requests: {} })),
    };
    fs.writeFileSync(path.join(dir, 'pod.json'), JSON.stringify(manifest));
    fs.writeFileSync(path.join(dir, 'created'), `${nowNs - BigInt(opts.pods - i) * 1_000_000n}\n`);
    fs.writeFileSync(path.join(dir, 'started'), `${nowNs - BigInt(opts.pods - i) * 1_000_000n + 500_000n}\n`);
    for (const a of apps) {
      const exits = path.join(dir, 'apps', a, 'exits');
      fs.mkdirSync(exits, { recursive: true });
      fs.writeFileSync(path.join(exits, `${nowNs}.json`), JSON.stringify({ at: Number(nowNs), invocation: 'x', result: 'exit-code', code: 'exited', status: String(i % 3), oomKills: 0 }));
    }
    pods.push({ uuid, name, state, apps, exited: true });
  }
  return { pods, imageIds };
}
