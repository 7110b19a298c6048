/**
 * `stevedore api-lb`: the one address kubectl's kubeconfig names when `up --control-planes N` runs
 * several control planes (kind puts haproxy in front of its API servers for the same reason: a
 * kubeconfig has one server). A TCP pass-through, so TLS, client certificates and upgraded streams
 * (exec, port-forward, watches) go end to end between the client and a control plane; it sees no
 * credentials.
 *
 * Each new connection goes to the first backend, in the order given, that passed its last health
 * check (GET /readyz over TLS against the cluster CA, every second); if that one refuses the
 * connection or does not connect within 2 s, to the next; when none is known healthy, every backend
 * is tried in order. Connections already passed stay where they are until either end closes them:
 * when a control plane dies, its clients see their connection drop and reconnect, and land on the
 * next one.
 */
import * as fs from 'node:fs/promises';
import * as https from 'node:https';
import * as net from 'node:net';
import { InvalidInput } from '../common/errors.js';

export interface Backend { host: string; port: number }

export function parseHostPort(text: string, flag: string): Backend {
  const m = /^([^:]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) throw new InvalidInput(`${flag} ${text} is not HOST:PORT`, 'e.g. 127.0.0.1:6443');
  return { host: m[1]!, port };
}

const CONNECT_TIMEOUT_MS = 2000;
const HEALTH_PERIOD_MS = 1000;

export async function runApiLoadBalancer(o: { listen: Backend; backends: Backend[]; caFile: string }): Promise<void> {
  if (!o.backends.length) throw new InvalidInput('api-lb needs at least one --backend', 'e.g. --backend 127.0.0.1:6444');
  const ca = await fs.readFile(o.caFile, 'utf8');
  const healthy = o.backends.map(() => false);
  const probe = (b: Backend, i: number) => {
    const req = https.get({ host: b.host, port: b.port, path: '/readyz', ca, timeout: CONNECT_TIMEOUT_MS, agent: false }, (res) => {
      healthy[i] = res.statusCode === 200;
      res.resume();
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => { healthy[i] = false; });
  };
  const probeAll = () => o.backends.forEach(probe);
  probeAll();
  const timer = setInterval(probeAll, HEALTH_PERIOD_MS);

  const server = net.createServer((client) => {
    client.pause();
    client.on('error', () => undefined);
    const order = [...o.backends.keys()].sort((a, b) => Number(healthy[b]) - Number(healthy[a]) || a - b);
    const tryNext = (k: number) => {
      if (k >= order.length || client.destroyed) { client.destroy(); return; }
      const i = order[k]!;
      const upstream = net.connect({ host: o.backends[i]!.host, port: o.backends[i]!.port });
      const timeout = setTimeout(() => upstream.destroy(new Error('connect timeout')), CONNECT_TIMEOUT_MS);
      upstream.once('error', () => {
        clearTimeout(timeout);
        healthy[i] = false;
        tryNext(k + 1);
      });
      upstream.once('connect', () => {
        clearTimeout(timeout);
        upstream.removeAllListeners('error');
        upstream.on('error', () => client.destroy());
        client.on('error', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
        client.on('close', () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    tryNext(0);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.listen.port, o.listen.host, () => resolve());
  });
  process.stderr.write(`api-lb on ${o.listen.host}:${o.listen.port} → ${o.backends.map((b) => `${b.host}:${b.port}`).join(', ')}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  clearInterval(timer);
  server.close();
  process.exit(0);
}
