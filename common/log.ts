import { createRequire } from 'node:module';
import type { Logger as PinoLogger } from 'pino';

/**
 * One structured logger for every component. Logs go to stderr so that a
 * command's stdout stays machine-readable (`-o json`, pod UUIDs); under
 * systemd stderr lands in the journal.
 *
 * pino is loaded when something is first logged at an enabled level, not at
 * start-up: it is ~10 modules and ~50 ms of loading on these machines, and a
 * CLI command that logs nothing (most, at the default level `warn`) should
 * not pay for it.
 */
export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

export interface LogFn {
  (fields: object, message?: string): void;
  (message: string): void;
}

const PINO_LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

const require = createRequire(import.meta.url);

function createPino(component: string, level: string): PinoLogger {
  const { pino } = require('pino') as typeof import('pino');
  return pino({ name: component, level, base: { component } }, pino.destination(2));
}

export function createLogger(component: string, level = process.env.STEVEDORE_LOG_LEVEL ?? 'warn'): Logger {
  const threshold = PINO_LEVELS[level];
  // An unknown level: let pino refuse it now, with its own message.
  if (threshold === undefined) return createPino(component, level);
  let logger: PinoLogger | undefined;
  const method = (name: keyof Logger, value: number): LogFn =>
    value < threshold
      ? () => undefined
      : (fieldsOrMessage: object | string, message?: string) => {
          logger ??= createPino(component, level);
          if (typeof fieldsOrMessage === 'string') logger[name](fieldsOrMessage);
          else logger[name](fieldsOrMessage, message);
        };
  return { debug: method('debug', 20), info: method('info', 30), warn: method('warn', 40), error: method('error', 50) };
}
