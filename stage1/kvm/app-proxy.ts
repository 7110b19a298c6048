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
 *   node app-proxy.js RUN_DIR INDEX VM_UNIT
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

const notify = loadAddon<{ notify(state: string): number }>('notify').notify;
let ready = false;
const markReady = () => {
  if (!ready) { ready = true; notify('READY=1'); }
};

const [runDir, index, vmUnit] = process.argv.slice(2) as [string, string, string];
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
  const [out, err, ctl] = await Promise.all([connect('out', deadline), connect('err', deadline), connect('ctl', deadline)]).catch((e: Error) => die(e.message));
  let lastData = Date.now();
  out.on('data', (d: Buffer) => { lastData = Date.now(); process.stdout.write(d); });
  err.on('data', (d: Buffer) => { lastData = Date.now(); process.stderr.write(d); });
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
      out.destroy(); err.destroy(); ctl.end();
      // stdout/stderr are journald stream sockets: flush before exiting.
      process.stdout.write('', () => process.stderr.write('', () => process.exit(exited)));
    }, 50);
  };
  ctl.write(`start ${run}\n`);
}

void main();
