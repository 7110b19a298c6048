/**
 * kubectl port-forward into a docker pod, as dockershim did it: a client
 * entered into the infra container's network namespace (nsenter --net)
 * connects to localhost:PORT there and copies bytes both ways; here the
 * node's busybox nc (it half-closes the connection when our side ends). A
 * hostNetwork pod is dialled directly on the node.
 */
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import { Duplex } from 'node:stream';
import type { PortConnection } from './types.js';

export function dialInNetns(netnsFile: string | undefined, port: number): PortConnection {
  if (!netnsFile) {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = new Promise<string | undefined>((resolve) => {
      socket.once('error', (err) => resolve(`cannot connect to port ${port} on the node's network: ${err.message}`));
      socket.once('close', () => resolve(undefined));
    });
    return { stream: socket, done };
  }
  const child = spawn('nsenter', [`--net=${netnsFile}`, '--', 'busybox', 'nc', '127.0.0.1', String(port)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  child.stdin.on('error', () => undefined);
  const stream = Duplex.from({ writable: child.stdin, readable: child.stdout });
  stream.on('close', () => { if (child.exitCode === null) child.kill('SIGKILL'); });
  const done = new Promise<string | undefined>((resolve) => {
    child.on('error', (err) => resolve(`cannot start the port relay: ${err.message}`));
    child.on('close', (code) => resolve(code === 0 ? undefined : `cannot connect to port ${port} in the pod's network namespace: ${stderr.trim() || `the relay exited ${code}`}`));
  });
  return { stream, done };
}
