import { readFileSync } from 'node:fs';

/**
 * A process's start time (field 22 of /proc/PID/stat, clock ticks since boot), or undefined when it
 * is gone. With the pid it names one process for good: a pid reused later has another start time.
 */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // After "(comm)" (which may hold spaces) comes field 3: field 22 is the 20th from there.
    const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    return startTime && /^\d+$/.test(startTime) ? startTime : undefined;
  } catch {
    return undefined;
  }
}
