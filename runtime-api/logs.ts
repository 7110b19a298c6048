/** Container logs as every runtime serves them (kubectl logs: tail, since, follow, previous). */

export interface LogQuery {
  podUuid: string;
  container?: string;
  /** Only the last N lines. */
  tail?: number;
  /** Only lines at or after this time (ms since epoch). */
  sinceMs?: number;
  /** Only lines before this time (ms since epoch). */
  untilMs?: number;
  /** Only lines of this run of the container (the runtime's run ID, Termination.invocation): `--previous` picks the run before the current one. */
  invocation?: string;
  follow?: boolean;
  /** rkt: read journal files from this directory instead of the node's journal (e.g. a sandbox's, from the host). */
  journalDir?: string;
  signal?: AbortSignal;
}

export interface LogLine {
  /** ms since epoch, with µs precision in the fraction */
  timeUs: bigint;
  container: string;
  message: string;
}

/** RFC 3339 with nanosecond digits, as `kubectl logs --timestamps` prints. */
export function formatTimestamp(timeUs: bigint): string {
  const ms = Number(timeUs / 1000n);
  const iso = new Date(ms).toISOString().replace(/\.\d{3}Z$/, '');
  return `${iso}.${(timeUs % 1_000_000n).toString().padStart(6, '0')}000Z`;
}
