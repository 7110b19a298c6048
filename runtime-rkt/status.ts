import type { ExitRecord } from '../stage1/contract.js';
import type { Termination } from '../runtime-api/status.js';
export type { AppState, AppStatus, PodState, PodStatus, Termination } from '../runtime-api/status.js';

const SIGNALS: Record<string, number> = { HUP: 1, INT: 2, QUIT: 3, ILL: 4, TRAP: 5, ABRT: 6, BUS: 7, FPE: 8, KILL: 9, USR1: 10, SEGV: 11, USR2: 12, PIPE: 13, ALRM: 14, TERM: 15 };

/** Turn one exit record into the exit code and reason a Kubernetes user expects. */
export function terminationOf(record: ExitRecord): Termination {
  let exitCode: number;
  let signal: number | undefined;
  if (record.code === 'exited') exitCode = Number(record.status);
  else {
    signal = SIGNALS[record.status.replace(/^SIG/, '')] ?? (Number(record.status) || 9);
    exitCode = 128 + signal;
  }
  // systemd removes an app's cgroup after every run and makes a new one for
  // the next (measured: the counter reads 1 after each of several OOM-killed
  // restarts), so the memory cgroup's oom_kill counter is per run. systemd on
  // cgroup v1 only sees SIGKILL; like the CRI, any OOM kill in the container
  // makes the reason OOMKilled.
  const oom = record.oomKills > 0;
  const reason = oom ? 'OOMKilled' : exitCode === 0 ? 'Completed' : 'Error';
  return { exitCode, signal, reason, finishedAt: Math.floor(record.at / 1e6), invocation: record.invocation };
}
