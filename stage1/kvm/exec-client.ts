/**
 * `pod enter` into a kvm pod: runs a command in an app's rootfs in the guest
 * through the pod's exec ports (exec.ctl: `run INDEX QUOTED-ARGS`, `eof`;
 * guest → host `exit CODE`; exec.io: the command's stdin, and its stdout and
 * stderr merged). qemu serves one connection per port, so execs into one pod
 * take turns. Exits with the command's code; 255 if the VM is gone.
 *
 *   node exec-client.js RUN_DIR INDEX -- COMMAND…
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

const [runDir, index, sep, ...command] = process.argv.slice(2) as [string, string, string, ...string[]];
const DRAIN_IDLE_MS = 150;
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function die(message: string): never {
  process.stderr.write(`stevedore: ${message}\n`);
  process.exit(255);
}

if (sep !== '--' || !command.length) die('usage: exec-client RUN_DIR INDEX -- COMMAND…');
if (!fs.existsSync(runDir)) die(`the pod's VM is not running (${runDir} is gone)`);

function connect(name: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(path.join(runDir, `${name}.sock`));
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

const [io, ctl] = await Promise.all([connect('exec.io'), connect('exec.ctl')]).catch((e: Error) => die(`cannot reach the pod's VM: ${e.message}`));
let lastData = Date.now();
let code: number | undefined;
io.on('data', (d: Buffer) => { lastData = Date.now(); process.stdout.write(d); });
process.stdin.on('data', (d: Buffer) => io.write(d));
process.stdin.on('end', () => ctl.write('eof\n'));
let buf = '';
ctl.on('data', (d: Buffer) => {
  buf += d.toString();
  const m = /^exit (\d+)$/m.exec(buf);
  if (!m || code !== undefined) return;
  code = Number(m[1]);
  const tick = setInterval(() => {
    if (Date.now() - lastData < DRAIN_IDLE_MS) return;
    clearInterval(tick);
    process.stdout.write('', () => process.exit(code));
  }, 50);
});
ctl.on('close', () => { if (code === undefined) die('the pod\'s VM went away during the command'); });
ctl.write(`run ${index} ${command.map(q).join(' ')}\n`);
