/**
 * `pod enter` into a kvm pod: runs a command in an app's rootfs in the guest
 * through the pod's exec ports (exec.ctl: `run INDEX NONCE QUOTED-ARGS`, `eof`;
 * guest → host `exit NONCE CODE`; exec.io: the command's stdin, and its stdout
 * and stderr merged, between a begin and an end marker carrying NONCE). qemu
 * serves one connection per port, so execs into one pod take turns; what an
 * earlier client left unread in the ports (a probe that timed out) is skipped
 * by its nonce. Exits with the command's code; 255 if the VM is gone.
 *
 * With `--tty PROCESS_FILE [--resize-fd N]` the command runs on a terminal made in the guest,
 * inside the container: PROCESS_FILE (in the pod's share, `guest/exec-*.json`,
 * written by the stage1: the app's OCI process with the command, terminal and
 * size) is named in `tty INDEX NONCE FILE`; the bytes on stdin are typed into
 * the terminal (raw: no `eof`, a terminal cannot be half-closed), stdout gets
 * what it prints, and `COLUMNS ROWS` lines on fd N (as stage1/pty-relay.py
 * takes them on fd 3) become `size COLUMNS ROWS` on exec.ctl. The file is removed at
 * the end (the guest removes it as soon as crun has read it).
 *
 *   node exec-client.js RUN_DIR INDEX [--tty PROCESS_FILE [--resize-fd N]] -- COMMAND…
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

const [runDir, index, ...rest] = process.argv.slice(2) as [string, string, ...string[]];
const ttyProcessFile = rest[0] === '--tty' ? rest[1] : undefined;
// Said by the caller, never guessed: without an inherited fd 3, node's own event loop may have that number.
const resizeFd = ttyProcessFile !== undefined && rest[2] === '--resize-fd' ? Number(rest[3]) : undefined;
const [sep, ...command] = rest.slice((ttyProcessFile === undefined ? 0 : 2) + (resizeFd === undefined ? 0 : 2));
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function removeProcessFile(): void {
  if (ttyProcessFile) fs.rmSync(ttyProcessFile, { force: true });
}

function die(message: string): never {
  removeProcessFile();
  process.stderr.write(`stevedore: ${message}\n`);
  process.exit(255);
}

if (sep !== '--' || !command.length) die('usage: exec-client RUN_DIR INDEX [--tty PROCESS_FILE [--resize-fd N]] -- COMMAND…');
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
  if (phase === 'ended' && code !== undefined) {
    removeProcessFile();
    process.stdout.write('', () => process.exit(code));
  }
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
  // Hold back only a tail that may be the end marker's start, split across reads; everything
  // else goes out at once (a command that prints a line and waits must show it).
  const hold = markerPrefixStart(pending, END);
  if (hold > 0) {
    process.stdout.write(pending.subarray(0, hold));
    pending = pending.subarray(hold);
  }
});

/** Where the longest tail of `data` that is a proper prefix of `marker` starts; data.length when none. */
function markerPrefixStart(data: Buffer, marker: Buffer): number {
  for (let at = Math.max(0, data.length - marker.length + 1); at < data.length; at++) {
    if (data[at] === marker[0] && marker.subarray(0, data.length - at).equals(data.subarray(at))) return at;
  }
  return data.length;
}
process.stdin.on('data', (d: Buffer) => io.write(d));
if (ttyProcessFile === undefined) process.stdin.on('end', () => ctl.write('eof\n'));
else relayResizes();

/** The `COLUMNS ROWS` lines on the resize fd (a pipe: runtime-rkt/exec.ts gives fd 3 to a terminal's argv), to the guest. */
function relayResizes(): void {
  if (resizeFd === undefined || !Number.isInteger(resizeFd)) return;
  let buffered = '';
  // A socket over the pipe, not an fs stream: a blocking read in libuv's thread pool would hold up the exit.
  const resizes = new net.Socket({ fd: resizeFd, readable: true, writable: false });
  resizes.on('error', () => undefined);
  resizes.on('data', (d) => {
    buffered += d.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const m = /^(\d+) (\d+)$/.exec(buffered.slice(0, nl).trim());
      buffered = buffered.slice(nl + 1);
      if (m) ctl.write(`size ${m[1]} ${m[2]}\n`);
    }
  });
}
let lines = '';
ctl.on('data', (d: Buffer) => {
  lines += d.toString();
  const m = new RegExp(`^exit ${nonce} (\\d+)$`, 'm').exec(lines);
  if (!m || code !== undefined) return;
  code = Number(m[1]);
  finishWhenComplete();
});
ctl.on('close', () => { if (code === undefined) die('the pod\'s VM went away during the command'); });
ctl.write(ttyProcessFile === undefined ? `run ${index} ${nonce} ${command.map(q).join(' ')}\n` : `tty ${index} ${nonce} ${path.basename(ttyProcessFile)}\n`);
