/**
 * GetLogs: an app's (or every app's) stdout/stderr lines from journald, read
 * with runtime-rkt's readLogs (journalctl, optionally on a sandbox's journal
 * directory). One line per journal entry, in this stable format:
 *
 *   <RFC 3339 UTC timestamp with 9 fraction digits> MESSAGE=<text>
 *   2024-05-01T12:00:00.123456000Z MESSAGE=hello world
 *
 * which is what rkt's api-service served and the rktnetes kubelet parsed
 * (split at the first " MESSAGE="). The text is the message as logged, with
 * no newline; journald's microsecond time is padded to nanoseconds.
 */
import { formatTimestamp, readLogs } from '../runtime-rkt/logs.js';

export function formatLogLine(timeUs: bigint, message: string): string {
  return `${formatTimestamp(timeUs)} MESSAGE=${message.replace(/\r?\n/g, ' ')}`;
}

export interface LogStreamOptions {
  podUuid: string;
  app?: string;
  lines?: number;
  follow: boolean;
  sinceS?: number;
  untilS?: number;
  journalDir?: string;
  signal: AbortSignal;
  /** Called with batches of formatted lines; resolves when the client can take more. */
  send(lines: string[]): Promise<void>;
}

/** Stream lines in batches (up to 200 lines, or what arrived within 20 ms). */
export async function streamLogs(o: LogStreamOptions): Promise<void> {
  let batch: string[] = [];
  let timer: NodeJS.Timeout | undefined;
  let sending: Promise<void> = Promise.resolve();
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    if (batch.length === 0) return sending;
    const lines = batch;
    batch = [];
    sending = sending.then(() => o.send(lines));
    return sending;
  };
  for await (const line of readLogs({
    podUuid: o.podUuid, container: o.app, tail: o.lines && o.lines > 0 ? o.lines : undefined, follow: o.follow,
    sinceMs: o.sinceS ? o.sinceS * 1000 : undefined, untilMs: o.untilS ? o.untilS * 1000 : undefined,
    journalDir: o.journalDir, signal: o.signal,
  })) {
    batch.push(formatLogLine(line.timeUs, line.message));
    if (batch.length >= 200) await flush();
    else timer ??= setTimeout(() => { void flush(); }, 20);
  }
  await flush();
}
