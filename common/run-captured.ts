/**
 * A short command run to completion with its output captured (exec probes,
 * lifecycle hooks), optionally inside given cgroups: native/spawn.c vforks
 * on a pool thread (no copy of the agent's address space per call) and the
 * child joins the cgroups itself before it execs, so no shell is started to
 * do it.
 */
import { loadAddon } from './native.js';

interface SpawnAddon {
  runCaptured(argv: string[], cgroupProcs: string[], timeoutMs: number, maxOutputBytes: number): Promise<{ exitCode: number; signal: number; timedOut: boolean; output: Buffer }>;
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
