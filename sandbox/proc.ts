import * as fs from 'node:fs/promises';

/** What /proc tells about one process; undefined fields mean "could not read". */
export interface ProcInfo {
  pid: number;
  comm: string;
  /** One-letter state from /proc/PID/stat: R, S, D, Z (zombie), ... */
  state: string;
  /** Clock ticks since boot at process start: with the pid, identifies a process across pid reuse. */
  startTime: string;
}

export async function readProc(pid: number): Promise<ProcInfo | undefined> {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  let stat: string;
  try {
    stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm is in parentheses and may itself contain spaces and parentheses.
  const open = stat.indexOf('(');
  const close = stat.lastIndexOf(')');
  const rest = stat.slice(close + 2).split(' ');
  // Fields after comm start at field 3 (state); starttime is field 22.
  return { pid, comm: stat.slice(open + 1, close), state: rest[0] ?? '?', startTime: rest[19] ?? '' };
}

/** Alive = exists and is not a zombie waiting to be reaped. */
export async function isAlive(pid: number): Promise<boolean> {
  const info = await readProc(pid);
  return info !== undefined && info.state !== 'Z' && info.state !== 'X';
}

/** Direct children of a single-threaded process. */
export async function childrenOf(pid: number): Promise<number[]> {
  try {
    const text = await fs.readFile(`/proc/${pid}/task/${pid}/children`, 'utf8');
    return text.split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** The process's pid in each nested pid namespace, outermost first (NSpid in /proc/PID/status). */
export async function nsPids(pid: number): Promise<number[]> {
  try {
    const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
    const line = status.split('\n').find((l) => l.startsWith('NSpid:'));
    return line ? line.slice('NSpid:'.length).trim().split(/\s+/).map(Number) : [];
  } catch {
    return [];
  }
}

export function killQuietly(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone: that is what we wanted.
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls until none of pids is alive; returns the ones still alive at the deadline. */
export async function waitGone(pids: number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const alive: number[] = [];
    for (const pid of pids) if (await isAlive(pid)) alive.push(pid);
    if (alive.length === 0 || Date.now() > deadline) return alive;
    await sleep(10);
  }
}

/** SIGTERM, then SIGKILL if it is still alive after graceMs; says whether the kill was needed. */
export async function terminate(pid: number, graceMs: number): Promise<'exited' | 'killed'> {
  if (!(await isAlive(pid))) return 'exited';
  killQuietly(pid, 'SIGTERM');
  if ((await waitGone([pid], graceMs)).length === 0) return 'exited';
  killQuietly(pid, 'SIGKILL');
  return 'killed';
}
