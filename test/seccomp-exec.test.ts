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

/** struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}, host order. */
function bpf(instructions: Array<[number, number, number, number]>): string {
  const buf = Buffer.alloc(instructions.length * 8);
  instructions.forEach(([code, jt, jf, k], i) => {
    buf.writeUInt16LE(code, i * 8);
    buf.writeUInt8(jt, i * 8 + 2);
    buf.writeUInt8(jf, i * 8 + 3);
    buf.writeUInt32LE(k, i * 8 + 4);
  });
  return buf.toString('base64');
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

const helper = nativeHelperPath('seccomp-exec');

test('the filter is in place before the command runs, with no_new_privs', async () => {
  if (process.arch !== 'x64') return;
  assert.ok(helper, 'native/build/Release/seccomp-exec is built (npm ci / scripts/setup.sh)');
  const r = await execa(helper, [DENY_UNSHARE, '/bin/sh', 'sh', '-c', 'grep -E "^(Seccomp|Seccomp_filters|NoNewPrivs):" /proc/self/status; unshare -U true 2>/dev/null; echo unshare=$?; echo "$0"'], { reject: false });
  assert.is(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /^NoNewPrivs:\s+1$/m, r.stdout);
  assert.match(r.stdout, /^Seccomp:\s+2$/m, r.stdout);
  assert.match(r.stdout, /^Seccomp_filters:\s+1$/m, r.stdout);
  assert.match(r.stdout, /^unshare=[1-9]/m, r.stdout);
  assert.match(r.stdout, /^sh$/m, 'argv[0] is the one given');
  // The same command without the helper can unshare (root): the failure above is the filter's.
  const free = await execa('/bin/sh', ['-c', 'unshare -U true; echo unshare=$?'], { reject: false });
  assert.match(free.stdout, /^unshare=0$/m, free.stdout + free.stderr);
});

test('a malformed program or a missing command: exit 127, a message, and the command never runs', async () => {
  assert.ok(helper);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'seccomp-exec-'));
  try {
    const marker = path.join(dir, 'ran');
    for (const program of ['not base64!', 'QUJD', '']) {
      const r = await execa(helper, [program, '/bin/touch', 'touch', marker], { reject: false });
      assert.is(r.exitCode, 127, `${program}: ${r.stderr}`);
      assert.match(r.stderr, /seccomp-exec: .*the app was not started/, r.stderr);
      assert.not.ok(await fs.stat(marker).catch(() => undefined), `${JSON.stringify(program)}: the command did not run`);
    }
    if (process.arch === 'x64') {
      const missing = await execa(helper, [DENY_UNSHARE, path.join(dir, 'nothing-here')], { reject: false });
      assert.is(missing.exitCode, 127);
      assert.match(missing.stderr, /cannot run .*nothing-here: No such file or directory/, missing.stderr);
    }
    const usage = await execa(helper, [DENY_UNSHARE], { reject: false });
    assert.is(usage.exitCode, 127);
    assert.match(usage.stderr, /usage/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test.run();
