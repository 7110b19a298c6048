import * as path from 'node:path';
import { Command } from 'commander';
import { InvalidInput } from '../common/errors.js';
import { startControlPlane } from './server.js';

export { startControlPlane } from './server.js';

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
    .exitOverride();
  cmd.parse(argv, { from: 'user' });
  const o = cmd.opts<{ dataDir: string; port: string; host: string; kubeconfig?: string; logLevel: string }>();
  const port = Number(o.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidInput(`--port ${o.port} is not a port number`, 'use a number between 1 and 65535');
  const cp = await startControlPlane({ dataDir: path.resolve(o.dataDir), port, host: o.host, kubeconfigPath: o.kubeconfig ? path.resolve(o.kubeconfig) : undefined, logLevel: o.logLevel });
  process.stderr.write(`control plane listening on ${cp.url}${o.kubeconfig ? `; export KUBECONFIG=${path.resolve(o.kubeconfig)}` : ''}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await cp.close();
}
