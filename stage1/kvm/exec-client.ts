/**
 * `pod enter` into a kvm pod: runs a command in an app's rootfs in the guest
 * through the pod's exec ports (exec.ctl: `run INDEX NONCE QUOTED-ARGS`, `eof`;
 * guest → host `exit NONCE CODE`; exec.io: the command's stdin, and its stdout
 * and stderr merged, between a begin and an end marker carrying NONCE). qemu
 * serves one connection per port, so execs into one pod take turns; what an
 * earlier client left unread in the ports (a probe that timed out) is skipped
 * by its nonce. Exits with the command's code; 255 if the VM is gone.
 *
 *   node exec-client.js RUN_DIR INDEX -- COMMAND…
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

const [runDir, index, sep, ...command] = process.argv.slice(2) as [string, string, string, ...string[]];
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
const nonce = randomBytes(8).toString('hex');
const BEGIN = Buffer.from(`\x1estevedore-exec-begin ${nonce}\x1e`);
const END = Buffer.from(`\x1estevedore-exec-end ${nonce}\x1e`);
let phase: 'before' | 'output' | 'ended' = 'before';
let pending: Buffer = Buffer.alloc(0);
let code: number | undefined;

function finishWhenComplete(): void {
  if (phase === 'ended' && code !== undefined) process.stdout.write('', () => process.exit(code));
}

io.on('data', (d: Buffer) => {
  if (phase === 'ended') return;
  pending = pending.length ? Buffer.concat([pending, d]) : d;
  if (phase === 'before') {
    const at = pending.indexOf(BEGIN);
    // Keep a tail that could be the start of the marker split across reads.
    if (at < 0) { pending = pending.subarray(Math.max(0, pending.length - BEGIN.length + 1)); return; }
    pending = pending.subarray(at + BEGIN.length);
    phase = 'output';
  }
  const end = pending.indexOf(END);
  if (end >= 0) {
    process.stdout.write(pending.subarray(0, end));
    pending = Buffer.alloc(0);
    phase = 'ended';
    finishWhenComplete();
    return;
  }
  const hold = END.length - 1;
  if (pending.length > hold) {
    process.stdout.write(pending.subarray(0, pending.length - hold));
    pending = pending.subarray(pending.length - hold);
  }
});
process.stdin.on('data', (d: Buffer) => io.write(d));
process.stdin.on('end', () => ctl.write('eof\n'));
let lines = '';
ctl.on('data', (d: Buffer) => {
  lines += d.toString();
  const m = new RegExp(`^exit ${nonce} (\\d+)$`, 'm').exec(lines);
  if (!m || code !== undefined) return;
  code = Number(m[1]);
  finishWhenComplete();
});
ctl.on('close', () => { if (code === undefined) die('the pod\'s VM went away during the command'); });
ctl.write(`run ${index} ${nonce} ${command.map(q).join(' ')}\n`);
