/**
 * A TCP connection to a port of a pod's network namespace (kubectl
 * port-forward), as the kubelet's: to localhost inside the pod's netns, for
 * every runtime (rkt's pod netns file, docker's infra container's). The
 * socket is made inside the namespace by a pool thread that enters it and
 * comes back (native/netns.c: a network namespace is per thread), so the
 * agent reads and writes the pod's port directly, with no relay process per
 * connection; a pod on the node's network (fly, hostNetwork) is dialled
 * directly. A pod whose network is a VM's (stage1 kvm: its IP lives in the
 * guest, behind a tap in the netns) is dialled at its IP from the node's
 * network, the way its other peers reach it.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { errnoCode, UserError } from './errors.js';
import { loadAddon } from './native.js';

interface NetnsAddon {
  connectInNetns(netnsPath: string, port: number, timeoutMs: number): Promise<number>;
  loopbackUpInNetns(netnsPath: string): Promise<void>;
}

/**
 * Bring `lo` up inside the network namespace at netnsFile, by the same pool-thread entry as a
 * connection (no `nsenter … ip link set lo up`: two process starts, each a fork of the agent).
 * Rejects with the errno error (open, setns, ioctl) naming the file.
 */
export function loopbackUpInNetns(netnsFile: string): Promise<void> {
  return loadAddon<NetnsAddon>('netns').loopbackUpInNetns(netnsFile);
}

const CONNECT_TIMEOUT_MS = 10_000;

/** The connection's bytes, and why it failed or closed early once it is over (runtime-api's PortConnection has this shape). */
export interface NetnsConnection {
  stream: Duplex;
  done: Promise<string | undefined>;
}

/**
 * Dial 127.0.0.1:PORT (then [::1]) in the namespace, or `host`:PORT from the node's network when
 * there is no namespace to enter; throws, saying why, when nothing answers there. With `onread`,
 * the socket reads into the caller's buffers (runtime-api's PortDialOptions).
 */
export async function dialPodPort(netnsFile: string | undefined, port: number, host = '127.0.0.1', onread?: net.OnReadOpts): Promise<NetnsConnection> {
  let socket: net.Socket;
  if (!netnsFile) {
    socket = net.connect({ host, port, ...(onread ? { onread } : {}) });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => socket.destroy(new Error(`no answer within ${CONNECT_TIMEOUT_MS / 1000} s`)), CONNECT_TIMEOUT_MS);
      socket.once('connect', () => { clearTimeout(timer); resolve(); });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(host === '127.0.0.1' ? `cannot connect to port ${port} on the node's network: ${err.message}` : `cannot connect to ${host}:${port} (the pod's IP): ${err.message}`));
      });
    });
  } else {
    let fd: number;
    try {
      fd = await loadAddon<NetnsAddon>('netns').connectInNetns(netnsFile, port, CONNECT_TIMEOUT_MS);
    } catch (err) {
      const code = (err as { code?: string }).code;
      const why = code === 'ECONNREFUSED' ? 'connection refused' : code === 'ETIMEDOUT' ? `no answer within ${CONNECT_TIMEOUT_MS / 1000} s` : (err as Error).message;
      throw new Error(`cannot connect to port ${port} in the pod's network namespace: ${why}`);
    }
    // onread is a constructor option too (Node 12+; @types/node names it on connect only).
    socket = new net.Socket({ fd, readable: true, writable: true, ...(onread ? { onread } : {}) } as net.SocketConstructorOpts);
  }
  // Every write to the pod leaves at once, as Go's dialer (the kubelet's) does: with Nagle's
  // algorithm, a small write behind one not yet acknowledged waits for the pod's delayed ACK (40 ms).
  socket.setNoDelay(true);
  let failure: string | undefined;
  socket.on('error', (err) => { failure ??= err.message; });
  const done = new Promise<string | undefined>((resolve) => socket.once('close', () => resolve(failure)));
  return { stream: socket, done };
}

/** A pod's ports for one port-forward session (runtime-api's PortForwardTarget has this shape). */
export interface PortTarget {
  dial(port: number, opts?: { onread?: net.OnReadOpts }): Promise<NetnsConnection>;
  close(): void;
}

/**
 * The ports behind `netnsFile` for a session: the namespace is opened once and held, and every
 * connection is made in it through /proc/self/fd, so no lookup of the pod is repeated per
 * connection, and a namespace named by a PID (/proc/PID/ns/net) can never turn into another
 * process's. A pod that stops meanwhile leaves an empty namespace: its connections are refused.
 * The descriptor is closed once the session is closed and no dial still uses it (a number closed
 * under a pool thread's open could name another file by then). With no namespace, `host`'s ports,
 * each dial after `checkEachDial`.
 */
export function openPortTarget(netnsFile: string | undefined, host?: string, checkEachDial?: () => Promise<void>): PortTarget {
  if (!netnsFile) {
    return {
      async dial(port, opts) {
        await checkEachDial?.();
        return dialPodPort(undefined, port, host, opts?.onread);
      },
      close() { /* holds nothing */ },
    };
  }
  let fd: number | undefined;
  try {
    fd = fs.openSync(netnsFile, 'r');
  } catch (err) {
    // The pod stopped between its runtime's look at it and this open.
    if (errnoCode(err) === 'ENOENT') throw new UserError('the pod\'s network namespace is gone: the pod has stopped', { hint: 'port-forward needs a running pod' });
    throw err;
  }
  let dialling = 0;
  let closed = false;
  const release = () => {
    if (closed && dialling === 0 && fd !== undefined) { fs.closeSync(fd); fd = undefined; }
  };
  return {
    async dial(port, opts) {
      if (closed || fd === undefined) throw new Error(`cannot connect to port ${port}: the port-forward session is over`);
      dialling++;
      try {
        return await dialPodPort(`/proc/self/fd/${fd}`, port, undefined, opts?.onread);
      } finally {
        dialling--;
        release();
      }
    },
    close() { closed = true; release(); },
  };
}
