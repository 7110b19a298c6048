/**
 * native/seccomp-exec, the fly stage1's filter loader, run for real: it must
 * load the program it is given before the command runs, and never run the
 * command when it cannot.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { nativeHelperPath } from '../common/native.js';

type Instruction = [code: number, jt: number, jf: number, k: number];

/** struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}, host order: the helper's program file. */
function bpf(instructions: Instruction[]): Buffer {
  const buf = Buffer.alloc(instructions.length * 8);
  instructions.forEach(([code, jt, jf, k], i) => {
    buf.writeUInt16LE(code, i * 8);
    buf.writeUInt8(jt, i * 8 + 2);
    buf.writeUInt8(jf, i * 8 + 3);
    buf.writeUInt32LE(k, i * 8 + 4);
  });
  return buf;
}

const AUDIT_ARCH_X86_64 = 0xc000003e;
const NR_UNSHARE_X86_64 = 272;
/** unshare() fails with EPERM, everything else is allowed; any other architecture is killed. */
const DENY_UNSHARE = bpf([
  [0x20, 0, 0, 4], // ld arch
  [0x15, 1, 0, AUDIT_ARCH_X86_64], // jeq x86_64 ? skip the kill
  [0x06, 0, 0, 0x80000000], // ret KILL_PROCESS
  [0x20, 0, 0, 0], // ld nr
  [0x15, 0, 1, NR_UNSHARE_X86_64], // jeq unshare
  [0x06, 0, 0, 0x00050001], // ret ERRNO(EPERM)
  [0x06, 0, 0, 0x7fff0000], // ret ALLOW
]);
const ALLOW: Instruction = [0x06, 0, 0, 0x7fff0000];

const helper = nativeHelperPath('seccomp-exec');

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'seccomp-exec-'));
  try {
    await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

test('the filter is in place before the command runs, with no_new_privs', async () => {
  if (process.arch !== 'x64') return;
  assert.ok(helper, 'native/build/Release/seccomp-exec is built (npm ci / scripts/setup.sh)');
  await withDir(async (dir) => {
    const program = path.join(dir, 'deny-unshare.bpf');
    await fs.writeFile(program, DENY_UNSHARE);
    const r = await execa(helper, [program, '/bin/sh', 'sh', '-c', 'grep -E "^(Seccomp|Seccomp_filters|NoNewPrivs):" /proc/self/status; unshare -U true 2>/dev/null; echo unshare=$?; echo "$0"; ls /proc/self/fd | wc -l'], { reject: false });
    assert.is(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /^NoNewPrivs:\s+1$/m, r.stdout);
    assert.match(r.stdout, /^Seccomp:\s+2$/m, r.stdout);
    assert.match(r.stdout, /^Seccomp_filters:\s+1$/m, r.stdout);
    assert.match(r.stdout, /^unshare=[1-9]/m, r.stdout);
    assert.match(r.stdout, /^sh$/m, 'argv[0] is the one given');
    // The same command without the helper can unshare (root): the failure above is the filter's.
    const free = await execa('/bin/sh', ['-c', 'unshare -U true; echo unshare=$?; ls /proc/self/fd | wc -l'], { reject: false });
    assert.match(free.stdout, /^unshare=0$/m, free.stdout + free.stderr);
    // The same open fds with and without the helper: the program file was not left open for the command.
    assert.is(r.stdout.trim().split('\n').at(-1), free.stdout.trim().split('\n').at(-1), `${r.stdout}\n--\n${free.stdout}`);
    // The environment is passed on as it is (the helper has no libc of its own to read it: _start hands it over).
    const env = await execa(helper, [program, '/bin/sh', 'sh', '-c', 'echo "$STEVEDORE_TEST_VALUE"'], { reject: false, env: { STEVEDORE_TEST_VALUE: 'a b=c' } });
    assert.is(env.stdout, 'a b=c', env.stderr);
  });
});

test('a program of exactly BPF_MAXINSNS instructions loads', async () => {
  assert.ok(helper);
  await withDir(async (dir) => {
    const program = path.join(dir, 'max.bpf');
    await fs.writeFile(program, bpf(Array.from({ length: 4096 }, () => ALLOW)));
    const r = await execa(helper, [program, '/bin/sh', 'sh', '-c', 'grep "^Seccomp_filters:" /proc/self/status'], { reject: false });
    assert.is(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /^Seccomp_filters:\s+1$/m, r.stdout);
  });
});

test('a malformed or unreadable program, or a missing command: exit 127, a message, and the command never runs', async () => {
  assert.ok(helper);
  await withDir(async (dir) => {
    const marker = path.join(dir, 'ran');
    const cases: Array<[string, Buffer | 'missing' | 'directory', RegExp]> = [
      ['partial instruction', Buffer.from('ABC'), /not whole BPF instructions/],
      ['empty', Buffer.alloc(0), /not whole BPF instructions/],
      // One instruction more than the kernel takes: refused before it is read past the end of the buffer.
      ['too long', bpf(Array.from({ length: 4097 }, () => ALLOW)), /longer than 4096 instructions/],
      ['missing', 'missing', /cannot read the seccomp program .*: No such file or directory/],
      ['directory', 'directory', /cannot read the seccomp program .*: Is a directory/],
      // The kernel checks the program too: a jump past the end.
      ['invalid', bpf([[0x05, 0, 0, 5], ALLOW]), /cannot load the seccomp filter .*: Invalid argument/],
    ];
    for (const [name, content, message] of cases) {
      const program = path.join(dir, `${name}.bpf`);
      if (content === 'directory') await fs.mkdir(program);
      else if (content !== 'missing') await fs.writeFile(program, content);
      const r = await execa(helper, [program, '/bin/touch', 'touch', marker], { reject: false });
      assert.is(r.exitCode, 127, `${name}: ${r.stderr}`);
      assert.match(r.stderr, message, `${name}: ${r.stderr}`);
      assert.match(r.stderr, /seccomp-exec: .*the app was not started/, r.stderr);
      assert.not.ok(await fs.stat(marker).catch(() => undefined), `${name}: the command did not run`);
    }
    const program = path.join(dir, 'deny-unshare.bpf');
    await fs.writeFile(program, DENY_UNSHARE);
    if (process.arch === 'x64') {
      const missing = await execa(helper, [program, path.join(dir, 'nothing-here')], { reject: false });
      assert.is(missing.exitCode, 127);
      assert.match(missing.stderr, /cannot run .*nothing-here: No such file or directory/, missing.stderr);
    }
    const usage = await execa(helper, [program], { reject: false });
    assert.is(usage.exitCode, 127);
    assert.match(usage.stderr, /usage/);
  });
});

test.run();
