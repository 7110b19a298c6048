import * as path from 'node:path';
import { Command } from 'commander';
import { InvalidInput } from '../common/errors.js';
import { startControlPlane } from './server.js';

export { startControlPlane } from './server.js';

/** A Go-style duration (1h, 30m, 1h30m, 90s) or plain seconds, in seconds. */
export function durationSeconds(text: string, flag: string): number {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?$/.exec(text.trim());
  const seconds = m && text.trim() !== '' ? Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0) : NaN;
  if (!(seconds > 0)) throw new InvalidInput(`${flag} ${text} is not a duration`, 'write it like 1h, 30m, 1h30m or 90s');
  return seconds;
}

function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new InvalidInput(`${flag} ${text} is not a positive whole number`);
  return n;
}

/**
 * `stevedore control-plane --data-dir D [--port P] [--host H] [--kubeconfig F]`: runs until
 * SIGINT/SIGTERM. argv are the arguments after `control-plane`.
 */
export async function runControlPlaneCommand(argv: string[]): Promise<void> {
  const cmd = new Command('control-plane')
    .description('run the Stevedore control plane (a thin Kubernetes API server) in the foreground')
    .requiredOption('--data-dir <dir>', 'where the database, certificates and tokens live')
    .option('--port <port>', 'HTTPS port', '6443')
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--kubeconfig <file>', 'write an admin kubeconfig here')
    .option('--log-level <level>', 'pino log level', process.env.STEVEDORE_LOG_LEVEL ?? 'info')
    .option('--event-ttl <duration>', 'how long Events live after their last write (kube-apiserver\'s flag; 1h, 30m, 90s)', '1h')
    .option('--max-events-per-namespace <n>', 'Events kept per namespace; the oldest go first', '5000')
    .option('--max-watches <n>', 'open watches in total', '2000')
    .option('--max-watches-per-client <n>', 'open watches per credential', '250')
    .option('--max-watch-timeout <duration>', 'the longest a watch lasts, whatever timeoutSeconds asks', '1h')
    .exitOverride();
  cmd.parse(argv, { from: 'user' });
  const o = cmd.opts<{ dataDir: string; port: string; host: string; kubeconfig?: string; logLevel: string; eventTtl: string; maxEventsPerNamespace: string; maxWatches: string; maxWatchesPerClient: string; maxWatchTimeout: string }>();
  const port = Number(o.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidInput(`--port ${o.port} is not a port number`, 'use a number between 1 and 65535');
  const cp = await startControlPlane({
    dataDir: path.resolve(o.dataDir), port, host: o.host, kubeconfigPath: o.kubeconfig ? path.resolve(o.kubeconfig) : undefined, logLevel: o.logLevel,
    eventTtlSeconds: durationSeconds(o.eventTtl, '--event-ttl'),
    maxEventsPerNamespace: positiveInt(o.maxEventsPerNamespace, '--max-events-per-namespace'),
    watchLimits: { maxTotal: positiveInt(o.maxWatches, '--max-watches'), maxPerClient: positiveInt(o.maxWatchesPerClient, '--max-watches-per-client'), maxTimeoutSeconds: durationSeconds(o.maxWatchTimeout, '--max-watch-timeout') },
  });
  process.stderr.write(`control plane listening on ${cp.url}${o.kubeconfig ? `; export KUBECONFIG=${path.resolve(o.kubeconfig)}` : ''}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await cp.close();
}
