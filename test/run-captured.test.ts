/**
 * common/run-captured.ts (native/spawn.c) for real: output, exit codes, the
 * output cap, the timeout, a command that cannot start, and the child placed
 * in a cgroup made for the test (removed after); runPiped's stdin, its
 * environment and stderr apart (how the CNI plugins run).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, rmdirSync } from 'node:fs';
import * as path from 'node:path';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { commandOnPath, executableIn, runCaptured, runPiped } from '../common/run-captured.js';
import { cgroupDirsOf } from '../common/cgroups.js';

test('stdout and stderr together, the exit code, stdin empty', async () => {
  const r = await runCaptured(['/bin/sh', '-c', 'echo out; echo err >&2; read x; echo "stdin:$x"; exit 7'], { timeoutMs: 5000, maxOutputBytes: 1024 });
  assert.is(r.exitCode, 7);
  assert.is(r.timedOut, false);
  assert.is(r.output, 'out\nerr\nstdin:\n');
});

test('output is cut at the cap; a signal is 128 + its number', async () => {
  const r = await runCaptured(['/bin/sh', '-c', 'head -c 100000 /dev/zero | tr "\\0" x; kill -TERM $$'], { timeoutMs: 5000, maxOutputBytes: 10 });
  assert.is(r.output, 'xxxxxxxxxx');
  assert.is(r.exitCode, 143);
});

test('a command past its timeout is killed with what it started, says so, its output so far kept', async () => {
  const t0 = Date.now();
  // The shell forks sleep (not exec): the child holding the pipe must die with it, answered at the timeout.
  const r = await runCaptured(['/bin/sh', '-c', 'echo started; sleep 37.123; echo never'], { timeoutMs: 300, maxOutputBytes: 100 });
  assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`);
  assert.is(r.timedOut, true);
  assert.is(r.exitCode, 137);
  assert.is(r.output, 'started\n');
  const left = await runCaptured(['/bin/sh', '-c', 'pgrep -f "^sleep 37.123$" || true'], { timeoutMs: 2000, maxOutputBytes: 100 });
  assert.is(left.output, '', 'the forked sleep was killed too');
});

test('running commands hold no thread of libuv\'s pool: file operations go on while 8 wait', async () => {
  const running = Array.from({ length: 8 }, () => runCaptured(['/bin/sleep', '1'], { timeoutMs: 5000, maxOutputBytes: 10 }));
  const t0 = Date.now();
  await readFile('/proc/self/stat');
  assert.ok(Date.now() - t0 < 500, `a readFile took ${Date.now() - t0} ms beside 8 running commands`);
  assert.equal((await Promise.all(running)).map((r) => r.exitCode), [0, 0, 0, 0, 0, 0, 0, 0]);
});

test('a command that does not exist: ENOENT naming it', async () => {
  try {
    await runCaptured(['/nonexistent/probe'], { timeoutMs: 1000, maxOutputBytes: 10 });
    assert.unreachable();
  } catch (err) {
    assert.is((err as { code?: string }).code, 'ENOENT');
    assert.match((err as Error).message, "execve '/nonexistent/probe'");
    assert.is((err as { exitCode?: number }).exitCode, 127);
  }
  await runCaptured(['relative'], { timeoutMs: 1000, maxOutputBytes: 10 }).then(() => assert.unreachable(), (err: Error) => assert.match(err.message, 'absolute path'));
});

test('the child joins the given cgroups before it execs; a cgroup it cannot join fails the run', async () => {
  const mine = cgroupDirsOf(process.pid).find((d) => d.controllers.includes('pids') || d.version === 2)!;
  const dir = path.join(mine.dir, `stevedore-run-captured-${process.pid}`);
  mkdirSync(dir);
  try {
    const r = await runCaptured(['/bin/cat', '/proc/self/cgroup'], { cgroupProcs: [path.join(dir, 'cgroup.procs')], timeoutMs: 5000, maxOutputBytes: 4096 });
    assert.is(r.exitCode, 0);
    const line = r.output.split('\n').find((l) => (mine.version === 2 ? l.startsWith('0::') : l.split(':')[1]!.split(',').includes('pids')))!;
    assert.is(line.split(':')[2], path.join(mine.path, path.basename(dir)));
    assert.not.match(readFileSync(path.join(dir, 'cgroup.procs'), 'utf8'), /\d/, 'the child has exited');
  } finally {
    rmdirSync(dir);
  }
  try {
    await runCaptured(['/bin/true'], { cgroupProcs: ['/nonexistent/cgroup.procs'], timeoutMs: 1000, maxOutputBytes: 10 });
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, "join the container's cgroup");
    assert.is((err as { exitCode?: number }).exitCode, 125);
  }
});

test('runPiped: stdin written while the output is read (4 MiB each way, more than a pipe holds), stderr apart, exactly the env given', async () => {
  const input = 'abcdefgh'.repeat(512 * 1024);
  const echo = await runPiped(['/bin/sh', '-c', 'cat; echo "on stderr, A=$A B=${B-unset}" >&2; exit 3'], { env: { A: 'one two', PATH: '/usr/bin:/bin' }, stdin: input, timeoutMs: 10_000, maxOutputBytes: 8 << 20 });
  assert.is(echo.exitCode, 3);
  assert.is(echo.stdout.length, input.length);
  assert.ok(echo.stdout === input, 'stdout is stdin, byte for byte');
  assert.is(echo.stderr, 'on stderr, A=one two B=unset\n', 'the env given and nothing of the agent\'s');
  const deaf = await runPiped(['/bin/true'], { env: {}, stdin: input, timeoutMs: 5000, maxOutputBytes: 10 });
  assert.is(deaf.exitCode, 0, 'a command that reads no stdin is not an error (EPIPE is not the command\'s)');
  const quiet = await runPiped(['/bin/cat'], { env: {}, stdin: '', timeoutMs: 5000, maxOutputBytes: 10 });
  assert.equal([quiet.exitCode, quiet.stdout, quiet.stderr], [0, '', ''], 'empty stdin is an immediate end of file');
});

test('runPiped: the timeout kills the command and what it started; a signal is reported; ENOENT names the command', async () => {
  const t0 = Date.now();
  const slow = await runPiped(['/bin/sh', '-c', 'echo partial; echo err >&2; sleep 38.456; echo never'], { env: { PATH: '/usr/bin:/bin' }, stdin: '', timeoutMs: 300, maxOutputBytes: 100 });
  assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`);
  assert.equal([slow.timedOut, slow.exitCode, slow.signal, slow.stdout, slow.stderr], [true, 137, 9, 'partial\n', 'err\n']);
  const left = await runCaptured(['/bin/sh', '-c', 'pgrep -f "^sleep 38.456$" || true'], { timeoutMs: 2000, maxOutputBytes: 100 });
  assert.is(left.output, '', 'the forked sleep was killed too');
  const killed = await runPiped(['/bin/sh', '-c', 'kill -TERM $$'], { env: {}, stdin: 'x', timeoutMs: 5000, maxOutputBytes: 10 });
  assert.equal([killed.exitCode, killed.signal, killed.timedOut], [143, 15, false]);
  await runPiped(['/nonexistent/plugin'], { env: {}, stdin: '{}', timeoutMs: 1000, maxOutputBytes: 10 }).then(() => assert.unreachable(), (err: Error & { code?: string }) => {
    assert.is(err.code, 'ENOENT');
    assert.match(err.message, "execve '/nonexistent/plugin'");
  });
});

test('executableIn and commandOnPath: the first executable regular file, as execvp looks', () => {
  assert.is(executableIn(['/nonexistent', '/usr/lib', '/bin'], 'sh'), '/bin/sh', 'a missing directory is skipped');
  assert.is(executableIn(['/'], 'etc'), undefined, 'a directory is not a command');
  assert.is(executableIn(['/etc'], 'passwd'), undefined, 'nor is a file without x');
  assert.ok(commandOnPath('sh')?.startsWith('/'), 'sh, on PATH');
  assert.is(commandOnPath('/some/where/x'), '/some/where/x', 'a name with a slash is taken as it is');
  assert.is(commandOnPath('no-such-command-anywhere'), undefined);
});

test.run();
