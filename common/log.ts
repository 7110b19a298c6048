import { pino, type Logger } from 'pino';

/**
 * One structured logger for every component. Logs go to stderr so that a
 * command's stdout stays machine-readable (`-o json`, pod UUIDs); under
 * systemd stderr lands in the journal.
 */
export function createLogger(component: string, level = process.env.STEVEDORE_LOG_LEVEL ?? 'warn'): Logger {
  return pino({ name: component, level, base: { component } }, pino.destination(2));
}

export type { Logger };
