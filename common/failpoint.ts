/**
 * Crash points for tests: with STEVEDORE_CRASH_AT=<name> in the environment,
 * the process kills itself with SIGKILL when it reaches that point, exactly as
 * an OOM kill or a power cut would stop it. Tests use this to prove that every
 * step of a multi-step operation leaves state the next command can reconcile.
 */
export function crashPoint(name: string): void {
  if (process.env.STEVEDORE_CRASH_AT === name) process.kill(process.pid, 'SIGKILL');
}
