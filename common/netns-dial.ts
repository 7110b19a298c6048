/**
 * A TCP connection to a port of a pod's network namespace (kubectl
 * port-forward), as the kubelet's: to localhost inside the pod's netns, for
 * every runtime (rkt's pod netns file, docker's infra container's). The
 * node's own process cannot enter a namespace (Node has no setns), so a small
 * relay entered into it (nsenter --net) connects and copies bytes both ways;
 * a pod on the node's network (fly, hostNetwork) is dialled directly.
 */
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import { Duplex } from 'node:stream';

/** Connects to 127.0.0.1:PORT (then [::1]) and copies stdin → socket, socket → stdout, half-closing as each side ends. */
const RELAY = `
import os, socket, sys, select
port = int(sys.argv[1])
s = None
for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    try:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.connect((addr, port))
        break
    except OSError as err:
        last = err
        s = None
if s is None:
    sys.stderr.write("cannot connect to port %d in the pod's network namespace: %s\\n" % (port, last.strerror))
    sys.exit(1)
readers = [0, s]
while readers:
    for r in select.select(readers, [], [])[0]:
        if r == 0:
            data = os.read(0, 65536)
            if data:
                s.sendall(data)
            else:
                readers.remove(0)
                s.shutdown(socket.SHUT_WR)
        else:
            data = s.recv(65536)
            if data:
                os.write(1, data)
            else:
                sys.exit(0)
`;

/** The connection's bytes, and why it failed or closed early once it is over (runtime-api's PortConnection has this shape). */
export interface NetnsConnection {
  stream: Duplex;
  done: Promise<string | undefined>;
}

export function dialPodPort(netnsFile: string | undefined, port: number): NetnsConnection {
  if (!netnsFile) {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = new Promise<string | undefined>((resolve) => {
      socket.once('error', (err) => resolve(`cannot connect to port ${port} on the node's network: ${err.message}`));
      socket.once('close', () => resolve(undefined));
    });
    return { stream: socket, done };
  }
  const child = spawn('nsenter', [`--net=${netnsFile}`, '--', '/usr/bin/python3', '-c', RELAY, String(port)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  child.stdin.on('error', () => undefined);
  const stream = Duplex.from({ writable: child.stdin, readable: child.stdout });
  stream.on('close', () => { if (child.exitCode === null) child.kill('SIGKILL'); });
  const done = new Promise<string | undefined>((resolve) => {
    child.on('error', (err) => resolve(`cannot start the port relay: ${err.message}`));
    child.on('close', (code) => resolve(code === 0 ? undefined : stderr.trim() || `the port relay exited ${code}`));
  });
  return { stream, done };
}
