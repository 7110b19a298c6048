/**
 * A short command run to completion with its output captured (exec probes,
 * lifecycle hooks, CNI plugins), optionally inside given cgroups:
 * native/spawn.c vforks on a thread of its own (no copy of the agent's
 * address space per call, nothing done on the event loop) and the child
 * joins the cgroups itself before it execs, so no shell is started to do it.
 */
import { accessSync, statSync, constants } from 'node:fs';
import * as path from 'node:path';
import { loadAddon } from './native.js';

interface SpawnAddon {
  runCaptured(argv: string[], cgroupProcs: string[], timeoutMs: number, maxOutputBytes: number): Promise<{ exitCode: number; signal: number; timedOut: boolean; output: Buffer }>;
  runPiped(argv: string[], env: string[], stdin: Buffer, timeoutMs: number, maxOutputBytes: number): Promise<{ exitCode: number; signal: number; timedOut: boolean; stdout: Buffer; stderr: Buffer }>;
}

export interface CapturedRun {
  /** The exit status, or 128 + the signal that ended it (137 for a command killed at its timeout). */
  exitCode: number;
  /** stdout and stderr as they came, cut at maxOutputBytes. */
  output: string;
  timedOut: boolean;
}

/**
 * Run argv (argv[0] an absolute path) with stdin from /dev/null; killed with SIGKILL after timeoutMs.
 * A command that cannot start, or a cgroup it cannot join, rejects with the errno error (code ENOENT, …)
 * carrying `exitCode` as a shell would have exited: 125 (the cgroup join), 127 (the exec), 126.
 */
export async function runCaptured(argv: string[], opts: { cgroupProcs?: string[]; timeoutMs: number; maxOutputBytes: number }): Promise<CapturedRun> {
  const r = await loadAddon<SpawnAddon>('spawn').runCaptured(argv, opts.cgroupProcs ?? [], Math.max(1, Math.round(opts.timeoutMs)), opts.maxOutputBytes);
  return { exitCode: r.exitCode, output: r.output.toString('utf8'), timedOut: r.timedOut };
}

export interface PipedRun {
  /** The exit status, or 128 + the signal that ended it (137 for a command killed at its timeout). */
  exitCode: number;
  /** The signal that ended it, or 0. */
  signal: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * Run argv (argv[0] an absolute path) with exactly `env` as its environment and `stdin` written to it, stdout
 * and stderr captured apart (each cut at maxOutputBytes); killed with its process group after timeoutMs. The
 * same vfork off the event loop as runCaptured (the CNI plugins: Node's spawn forks the whole agent). A command
 * that cannot start rejects with the errno error (code ENOENT, EACCES…).
 */
export async function runPiped(argv: string[], opts: { env: Record<string, string>; stdin: string; timeoutMs: number; maxOutputBytes: number }): Promise<PipedRun> {
  const env = Object.entries(opts.env).map(([k, v]) => `${k}=${v}`);
  const r = await loadAddon<SpawnAddon>('spawn').runPiped(argv, env, Buffer.from(opts.stdin), Math.max(1, Math.round(opts.timeoutMs)), opts.maxOutputBytes);
  return { exitCode: r.exitCode, signal: r.signal, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8'), timedOut: r.timedOut };
}

/**
 * The first `dir/name` among dirs that is an executable regular file, as execvp looks (runCaptured and
 * runPiped exec the path they are given). Synchronous: two stats of a local file, where round trips
 * through libuv's pool would wait milliseconds on a busy node.
 */
export function executableIn(dirs: readonly string[], name: string): string | undefined {
  for (const dir of dirs) {
    const candidate = path.join(dir || '.', name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // try the next directory
    }
  }
  return undefined;
}

/** Where PATH is unset: the directories of a Debian root's default PATH. */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** `name` found on this process's PATH as execvp would (a name with a slash is taken as it is); undefined when nowhere. */
export function commandOnPath(name: string): string | undefined {
  if (name.includes('/')) return name;
  return executableIn((process.env.PATH || DEFAULT_PATH).split(':').filter(Boolean), name);
}
