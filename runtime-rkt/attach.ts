/**
 * kubectl attach: a connection to the console holder of an app that runs with
 * stdin or a terminal (stage1/console-holder.py; on kvm the app's proxy,
 * stage1/kvm/app-proxy.ts, with the same protocol), shaped as an ExecProcess so
 * the node API streams it as it streams an exec. Detaching (kill()) closes the
 * connection only: the app goes on.
 */
import * as net from 'node:net';
import { PassThrough, Writable } from 'node:stream';
import { CONSOLE_CHANNEL, consoleFrame, consoleFrameReader, reachableSocketPath } from '../stage1/console-protocol.js';
import type { ExecExit, ExecProcess, TerminalSize } from './exec.js';

const { stdin: STDIN, stdout: STDOUT, stderr: STDERR, exit: EXIT, resize: RESIZE, stdinClosed: STDIN_CLOSED } = CONSOLE_CHANNEL;
const frame = consoleFrame;

/** One connection to the holder's socket. */
function connectHolder(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let reachable: ReturnType<typeof reachableSocketPath>;
    try {
      reachable = reachableSocketPath(socketPath);
    } catch (err) { reject(err); return; }
    const socket = net.connect(reachable.target);
    const failed = (err: Error) => { reachable.release(); reject(err); };
    socket.once('error', failed);
    socket.once('connect', () => { reachable.release(); socket.off('error', failed); resolve(socket); });
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
  socket.on('data', consoleFrameReader((channel, body) => {
    if (channel === STDOUT) stdout.write(body);
    else if (channel === STDERR) (opts.tty ? stdout : stderr).write(body);
    else if (channel === EXIT) code = Number(body.toString()) || 0;
  }));
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
