/**
 * A minimal port-forward endpoint for bench/exec.ts: what `kubectl
 * port-forward` alone can move. kubectl talks to this process as to its API
 * server; ordinary requests (the pod GET, discovery) are passed on to the real
 * control plane, and the port-forward upgrade is served here by the agent's
 * own stream code (agent/streaming.ts, SPDY in WebSocket) with the pod's port
 * dialled straight at its IP: one TLS hop and one process instead of the
 * control plane's splice plus the node API. If this path is about as fast as
 * the real one, kubectl is the ceiling; if it is much faster, our hops are.
 *
 *   node dist/bench/pf-relay.js --listen PORT --cert F --key F --upstream https://127.0.0.1:6443 --ca F --pod-ip IP
 *
 * Prints "listening" once it accepts connections; stops on SIGTERM.
 */
import * as fs from 'node:fs';
import * as https from 'node:https';
import { openPortTarget } from '../common/netns-dial.js';
import { createLogger } from '../common/log.js';
import { StreamServer } from '../agent/streaming.js';
import type { ContainerRuntime } from '../agent/runtime.js';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!, process.argv[i + 1]!);
const need = (k: string) => { const v = args.get(k); if (!v) throw new Error(`pf-relay: ${k} is required`); return v; };
const upstream = new URL(need('--upstream'));
const ca = fs.readFileSync(need('--ca'));
const podIP = need('--pod-ip');

// Only what portForward calls: the pod is running, and its port is its IP's.
const runtime = {
  openPortForward: async () => openPortTarget(undefined, podIP),
} as unknown as ContainerRuntime;
const streams = new StreamServer(runtime, createLogger('pf-relay', 'error'));

const server = https.createServer({ cert: fs.readFileSync(need('--cert')), key: fs.readFileSync(need('--key')) }, (req, res) => {
  const up = https.request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: { ...req.headers, host: upstream.host }, ca }, (ures) => {
    res.writeHead(ures.statusCode ?? 502, ures.headers);
    ures.pipe(res);
  });
  up.on('error', (err) => { res.writeHead(502); res.end(String(err)); });
  req.pipe(up);
});
server.on('upgrade', (req, socket, head) => {
  socket.on('error', () => undefined);
  if (!/\/portforward$/.test(new URL(req.url ?? '/', 'https://x').pathname)) { socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n'); return; }
  streams.portForward(req, socket, head, 'bench').catch((err: Error) => socket.end(`HTTP/1.1 500 Internal Server Error\r\nContent-Length: ${Buffer.byteLength(err.message)}\r\n\r\n${err.message}`));
});
server.listen(Number(need('--listen')), '127.0.0.1', () => process.stdout.write('listening\n'));
process.once('SIGTERM', () => { streams.close(); server.close(); process.exit(0); });
