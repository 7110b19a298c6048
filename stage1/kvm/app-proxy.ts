/**
 * The main process of a kvm pod's app unit (one per app, on the node): it
 * stands in for the app, which runs in the pod's VM. It connects to the app's
 * three serial ports (ctl, out, err: unix sockets qemu serves), asks the
 * guest to start the app, copies the app's stdout and stderr to its own (so
 * journald files them under the app's unit with its fields, exactly as for a
 * container), forwards SIGTERM/SIGINT, and exits with the app's exit code.
 * systemd then does what it does for every stage1: records the exit
 * (ExecStopPost), restarts per the pod's policy, kills after the grace period
 * (the guest kills the app when this process's connection drops).
 *
 *   node app-proxy.js RUN_DIR INDEX VM_UNIT [--attach-socket PATH [--stdin] [--stdin-once] [--tty]]
 *
 * With --attach-socket (an app with stdin or a terminal) it is also the app's
 * console holder, as stage1/console-holder.py is on the namespaces stage1 and
 * with its protocol (that file's docstring), so runtime-rkt/attach.ts reaches
 * either the same way: it listens on PATH (0600) before the app starts, sends
 * the app's output to every attached client as well as to the journal (the
 * first client also gets what was printed before it came, up to
 * BACKLOG_BYTES), writes the clients' stdin to the app's port `a<i>.in`, and
 * turns a resize into `size COLS ROWS` and a closed stdin into `eof` on the
 * app's ctl port (a terminal's stdin cannot be closed: a typed ^D instead).
 * Detaching closes the connection only; with --stdin-once the app's stdin is
 * closed when the first attached client goes. The holder lives on the node,
 * not in the guest: it is the process that already has the app's ports, a
 * client never waits on the VM to connect, and the guest gains no server.
 *
 * Its unit is Type=notify: READY=1 goes out when the guest has started the
 * app (or reported its exit), so the container reads as waiting
 * (ContainerCreating) while the VM boots, not as running.
 *
 * Kept free of imports beyond node:net/fs and the sd_notify addon: it starts once per app run.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { loadAddon } from '../../common/native.js';
import { CONSOLE_CHANNEL, consoleFrame, consoleFrameReader, reachableSocketPath } from '../console-protocol.js';

const notify = loadAddon<{ notify(state: string): number }>('notify').notify;
let ready = false;
const markReady = () => {
  if (!ready) { ready = true; notify('READY=1'); }
};

const [runDir, index, vmUnit, ...options] = process.argv.slice(2) as [string, string, string, ...string[]];
const attachSocketAt = options.indexOf('--attach-socket');
const consoleOptions = attachSocketAt < 0 ? undefined : {
  socket: options[attachSocketAt + 1]!,
  stdin: options.includes('--stdin'), stdinOnce: options.includes('--stdin-once'), tty: options.includes('--tty'),
};
const run = process.env.INVOCATION_ID ?? `${process.pid}-${Date.now()}`;
const VM_GONE = 255;
/** After the exit message, output still in flight through qemu gets this long to arrive. */
const DRAIN_IDLE_MS = 150;
const CONNECT_TIMEOUT_MS = 30_000;

function die(message: string): never {
  process.stderr.write(`stevedore: ${message}\n`);
  process.exit(VM_GONE);
}

function connect(name: string, deadline: number): Promise<net.Socket> {
  const file = path.join(runDir, `a${index}.${name}.sock`);
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = net.connect(file);
      s.once('connect', () => { s.removeAllListeners('error'); resolve(s); });
      s.once('error', (err: NodeJS.ErrnoException) => {
        // The VM unit is started (qemu exec'd) before this unit; its sockets appear within moments, unless the VM is gone.
        if (!fs.existsSync(runDir)) return reject(new Error(`the pod's VM is not running (${runDir} is gone; see journalctl -u ${vmUnit})`));
        if (Date.now() > deadline) return reject(new Error(`cannot connect to the pod's VM at ${file}: ${err.code}`));
        setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

async function main(): Promise<void> {
  const deadline = Date.now() + CONNECT_TIMEOUT_MS;
  // The stdin port first: the guest's relay of it reads EOF (and tries again) until the host side is there.
  const input = consoleOptions ? await connect('in', deadline).catch((e: Error) => die(e.message)) : undefined;
  const [out, err, ctl] = await Promise.all([connect('out', deadline), connect('err', deadline), connect('ctl', deadline)]).catch((e: Error) => die(e.message));
  const holder = consoleOptions && input ? await holdConsole(consoleOptions, input, ctl) : undefined;
  let lastData = Date.now();
  out.on('data', (d: Buffer) => { lastData = Date.now(); process.stdout.write(d); holder?.output(STDOUT, d); });
  err.on('data', (d: Buffer) => { lastData = Date.now(); process.stderr.write(d); holder?.output(STDERR, d); });
  let exited: number | undefined;
  const forward = (sig: string) => () => {
    if (ctl.writable) ctl.write(`kill ${sig}\n`);
    else die(`the pod's VM is gone; container stopped`);
  };
  process.on('SIGTERM', forward('TERM'));
  process.on('SIGINT', forward('INT'));
  process.on('SIGHUP', forward('HUP'));
  let buf = '';
  ctl.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const [cmd, id, code] = buf.slice(0, nl).trim().split(/\s+/);
      buf = buf.slice(nl + 1);
      // An exit of an earlier run (its unit was gone before it was read) is not ours.
      if (cmd === 'started' && id === run) markReady();
      if (cmd === 'exit' && id === run && exited === undefined) {
        // An app that exits at once still started: systemd reads an exit before READY=1 as a failed start.
        markReady();
        finish(Number(code));
      }
    }
  });
  ctl.on('close', () => {
    if (exited === undefined) die(`the pod's VM stopped before the container exited (guest kernel panic, qemu crash or VM shutdown; see journalctl -u ${vmUnit})`);
  });
  const finish = (code: number) => {
    exited = Number.isInteger(code) ? code : VM_GONE;
    const tick = setInterval(() => {
      if (Date.now() - lastData < DRAIN_IDLE_MS) return;
      clearInterval(tick);
      out.destroy(); err.destroy(); input?.destroy(); ctl.end();
      const leave = () => process.stdout.write('', () => process.stderr.write('', () => process.exit(exited)));
      // stdout/stderr are journald stream sockets: flush before exiting; attached clients get the exit status first.
      if (holder) holder.exit(exited!).then(leave, leave);
      else leave();
    }, 50);
  };
  ctl.write(`start ${run}\n`);
}

const { stdin: STDIN, stdout: STDOUT, stderr: STDERR, exit: EXIT, resize: RESIZE, stdinClosed: STDIN_CLOSED } = CONSOLE_CHANNEL;
const frame = consoleFrame;
/** What the first client to attach is sent of the output before it: `kubectl run -i -- echo hi` would miss a quick command's output otherwise. */
const BACKLOG_BYTES = 64 * 1024;

function listenAt(server: net.Server, socketPath: string): Promise<void> {
  const reachable = reachableSocketPath(socketPath);
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(reachable.target, () => { server.off('error', reject); resolve(); });
  }).finally(() => reachable.release());
}

/** The console holder's side of attach (see the header): the attach socket, its clients, and the app's stdin. */
async function holdConsole(opts: NonNullable<typeof consoleOptions>, input: net.Socket, ctl: net.Socket) {
  fs.rmSync(opts.socket, { force: true });
  const clients = new Set<net.Socket>();
  let attachedOnce = false;
  let backlog: Buffer[] = [];
  let backlogSize = 0;
  let stdinOpen = opts.stdin || opts.tty;
  input.on('error', () => undefined);
  const closeStdin = () => {
    if (!stdinOpen) return;
    stdinOpen = false;
    // A terminal cannot be closed for writing: end-of-file as a typed ^D (as console-holder.py).
    if (opts.tty) input.write(Buffer.from([4]));
    else if (ctl.writable) ctl.write('eof\n');
  };
  const drop = (client: net.Socket) => {
    if (!clients.delete(client)) return;
    client.destroy();
    if (opts.stdinOnce && attachedOnce) closeStdin();
  };
  const server = net.createServer((client) => {
    clients.add(client);
    client.on('error', () => drop(client));
    client.on('close', () => drop(client));
    if (!attachedOnce) {
      attachedOnce = true;
      if (backlog.length) client.write(Buffer.concat(backlog));
      backlog = [];
    }
    client.on('data', consoleFrameReader((channel, body) => {
      if (channel === STDIN && stdinOpen) input.write(body);
      else if (channel === RESIZE && opts.tty) {
        const m = /^(\d+) (\d+)$/.exec(body.toString().trim());
        if (m && ctl.writable) ctl.write(`size ${m[1]} ${m[2]}\n`);
      } else if (channel === STDIN_CLOSED) closeStdin();
    }));
  });
  // 0600 from the start: a client must not connect in the moment between bind and chmod.
  const umask = process.umask(0o177);
  try {
    await listenAt(server, opts.socket);
  } finally {
    process.umask(umask);
  }
  return {
    output(channel: number, data: Buffer) {
      if (!attachedOnce && backlogSize < BACKLOG_BYTES) {
        const part = data.subarray(0, BACKLOG_BYTES - backlogSize);
        backlog.push(frame(channel, part));
        backlogSize += part.length;
      }
      for (const client of clients) client.write(frame(channel, data));
    },
    /** The exit status to every client, then they and the socket go. */
    async exit(code: number) {
      // From here no client can connect (the path is gone); one still in the listener's queue is
      // accepted in the loop's next poll phase, before the check phase this waits for, and is served
      // as the others (closed unaccepted, it would read an end with no output and no status).
      fs.rmSync(opts.socket, { force: true });
      await new Promise((resolve) => setImmediate(resolve));
      // Half-closed after the status, each client is waited for until it closes its side (at most
      // 1 s): exiting at once, a client still writing (its stdin's end) would get EPIPE and lose the
      // output and status it has not read yet, as console-holder.py says.
      await Promise.all([...clients].map((client) => new Promise<void>((resolve) => {
        client.once('close', () => resolve());
        client.end(frame(EXIT, Buffer.from(String(code))));
        setTimeout(resolve, 1000).unref();
      })));
      server.close();
    },
  };
}

void main();
