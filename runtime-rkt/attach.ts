/**
 * kubectl attach: a connection to the console holder of an app that runs with
 * stdin or a terminal (stage1/console-holder.py; on kvm the app's proxy,
 * stage1/kvm/app-proxy.ts, with the same protocol), shaped as an ExecProcess so
 * the node API streams it as it streams an exec. Detaching (kill()) closes the
 * connection only: the app goes on.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import type { ExecExit, ExecProcess, TerminalSize } from './exec.js';

const STDIN = 0, STDOUT = 1, STDERR = 2, EXIT = 3, RESIZE = 4, STDIN_CLOSED = 255;

const frame = (channel: number, data: Buffer) => {
  const head = Buffer.alloc(5);
  head[0] = channel;
  head.writeUInt32BE(data.length, 1);
  return Buffer.concat([head, data]);
};

/** One connection to the holder's socket; a path past sun_path's 108 bytes (a deep data dir, e.g. a node of `up --nodes`) is reached through /proc/self/fd of its directory. */
function connectHolder(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let dirFd: number | undefined;
    let target = socketPath;
    if (Buffer.byteLength(socketPath) >= 108) {
      try {
        dirFd = fs.openSync(path.dirname(socketPath), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
        target = `/proc/self/fd/${dirFd}/${path.basename(socketPath)}`;
      } catch (err) { reject(err); return; }
    }
    const socket = net.connect(target);
    const closeDir = () => { if (dirFd !== undefined) { fs.closeSync(dirFd); dirFd = undefined; } };
    const failed = (err: Error) => { closeDir(); reject(err); };
    socket.once('error', failed);
    socket.once('connect', () => { closeDir(); socket.off('error', failed); resolve(socket); });
  });
}

/**
 * The holder's socket, tried again for up to 2 s when the connection finds no socket (ENOENT) or no
 * listener: seen under load in the conformance suite with the socket file present a moment before
 * (not understood yet; a client that comes early should wait, not fail).
 */
async function connectHolderPatiently(socketPath: string): Promise<net.Socket> {
  const deadline = Date.now() + 2000;
  for (;;) {
    try {
      return await connectHolder(socketPath);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export async function attachConsole(socketPath: string, opts: { stdin: boolean; tty: boolean }): Promise<ExecProcess> {
  const socket = await connectHolderPatiently(socketPath);
  socket.on('error', () => undefined);
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let code: number | undefined;
  let buffer = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => {
    buffer = Buffer.concat([buffer, d]);
    while (buffer.length >= 5) {
      const len = buffer.readUInt32BE(1);
      if (buffer.length < 5 + len) break;
      const channel = buffer[0]!;
      const body = buffer.subarray(5, 5 + len);
      buffer = buffer.subarray(5 + len);
      if (channel === STDOUT) stdout.write(body);
      else if (channel === STDERR) (opts.tty ? stdout : stderr).write(body);
      else if (channel === EXIT) code = Number(body.toString()) || 0;
    }
  });
  const exit = new Promise<ExecExit>((done) => socket.once('close', () => {
    stdout.end();
    stderr.end();
    done({ code: code ?? 0 });
  }));
  const stdin = opts.stdin ? new Writable({
    write(chunk: Buffer, _enc, cb) { socket.write(frame(STDIN, chunk), () => cb()); },
    final(cb) { socket.write(frame(STDIN_CLOSED, Buffer.alloc(0)), () => cb()); },
  }) : undefined;
  stdin?.on('error', () => undefined);
  return {
    stdin, stdout, stderr: opts.tty ? undefined : stderr, exit,
    resize(size: TerminalSize) { if (opts.tty && !socket.destroyed) socket.write(frame(RESIZE, Buffer.from(`${Math.floor(size.cols)} ${Math.floor(size.rows)}`))); },
    async kill() { socket.destroy(); },
  };
}
