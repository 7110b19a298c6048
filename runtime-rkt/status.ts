import type { ExitRecord, Stage1Name } from '../stage1/contract.js';

/** Pod states, named as rkt's api-service names them. */
export type PodState = 'embryo' | 'preparing' | 'aborted-prepare' | 'prepared' | 'running' | 'exited' | 'deleting' | 'garbage';
export type AppState = 'waiting' | 'running' | 'exited' | 'unknown';

export interface AppStatus {
  name: string;
  image: { id: string; name: string };
  unit: string;
  state: AppState;
  /** Why it is waiting or exited: Completed, Error, OOMKilled, CrashLoopBackOff, LaunchInterrupted… */
  reason?: string;
  restartCount: number;
  mainPid?: number;
  exitCode?: number;
  /** Signal number when the process died by a signal. */
  signal?: number;
  startedAt?: number;
  finishedAt?: number;
  /** What an exited app wrote at its terminationMessagePath (at most 4 KiB; namespaces stage1). */
  terminationMessage?: string;
  /** The run before the current one, as Kubernetes' lastState.terminated has it. */
  lastTermination?: Termination;
}

export interface Termination {
  exitCode: number;
  signal?: number;
  reason: string;
  finishedAt: number;
  invocation: string;
}

export interface PodStatus {
  uuid: string;
  state: PodState;
  stage1?: Stage1Name;
  name?: string;
  namespace?: string;
  /** Kubernetes pod UID when the pod came from an API server. */
  uid?: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  /** ms since epoch */
  createdAt?: number;
  startedAt?: number;
  gcMarkedAt?: number;
  slice?: string;
  /** The pod's own IPs from its CNI network, primary first; absent for host-network (fly, hostNetwork) and unnetworked pods. */
  podIPs?: string[];
  networks?: Array<{ name: string; ifName: string; ips: string[] }>;
  /** kvm pods: the VM the pod got; accel tcg means emulation, not a hardware isolation boundary. */
  vm?: { accel: 'kvm' | 'tcg'; accelReason: string; memoryMiB: number; cpus: number; kernel: string };
  apps: AppStatus[];
}

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
