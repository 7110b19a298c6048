import { execa } from 'execa';
import { createInterface } from 'node:readline';
import { UserError } from '../common/errors.js';
import type { LogLine, LogQuery } from '../runtime-api/logs.js';
export { formatTimestamp, type LogLine, type LogQuery } from '../runtime-api/logs.js';

function messageText(raw: unknown): string {
  if (typeof raw === 'string') return raw;
  // journald stores non-UTF-8 messages as byte arrays.
  if (Array.isArray(raw)) return Buffer.from(raw as number[]).toString('utf8');
  return '';
}

/** journalctl arguments that select exactly one pod's (or app's) stdout/stderr lines. */
export function journalctlArgs(q: LogQuery): string[] {
  const args = ['--output=json', '--no-pager', '--output-fields=MESSAGE,STEVEDORE_CONTAINER,__REALTIME_TIMESTAMP'];
  if (q.journalDir) args.push(`--directory=${q.journalDir}`);
  if (q.tail !== undefined) args.push(`--lines=${Math.max(0, Math.floor(q.tail))}`);
  if (q.sinceMs !== undefined) args.push(`--since=@${(q.sinceMs / 1000).toFixed(3)}`);
  if (q.untilMs !== undefined) args.push(`--until=@${(q.untilMs / 1000).toFixed(3)}`);
  if (q.follow) args.push('--follow');
  // Only what the app wrote to stdout/stderr: systemd's own messages about the unit carry the same extra fields.
  args.push(`STEVEDORE_POD_UUID=${q.podUuid}`, '_TRANSPORT=stdout');
  if (q.container) args.push(`STEVEDORE_CONTAINER=${q.container}`);
  if (q.invocation) args.push(`_SYSTEMD_INVOCATION_ID=${q.invocation}`);
  return args;
}

/** Stream a pod's log lines from journald, oldest first; with follow, until the signal aborts. */
export async function* readLogs(q: LogQuery): AsyncGenerator<LogLine> {
  const child = execa('journalctl', journalctlArgs(q), { reject: false, buffer: false, cancelSignal: q.signal, stdin: 'ignore' });
  const lines = createInterface({ input: child.stdout! });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  try {
    for await (const line of lines) {
      if (!line) continue;
      const entry = JSON.parse(line) as Record<string, unknown>;
      yield { timeUs: BigInt(String(entry.__REALTIME_TIMESTAMP ?? '0')), container: String(entry.STEVEDORE_CONTAINER ?? ''), message: messageText(entry.MESSAGE) };
    }
  } finally {
    lines.close();
    if (!child.killed && child.exitCode === null) child.kill();
    const result = await child;
    if (result.exitCode && !result.isCanceled && !result.isTerminated && !q.signal?.aborted) {
      // eslint-disable-next-line no-unsafe-finally
      throw new UserError(`reading the journal failed: ${stderr.trim() || `journalctl exited with ${result.exitCode}`}`, { hint: 'is journald running on this node, and is its journal readable by this user?' });
    }
  }
}

