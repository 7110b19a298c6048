import type { Command } from 'commander';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { InvalidInput } from '../common/errors.js';

interface DashboardFlags { kubeconfig?: string; host: string; port: string; open?: boolean; logLevel?: string }

/** Open URL in the desktop's browser, as `minikube dashboard` does; on a machine without one, say so and carry on. */
function openInBrowser(url: string): void {
  const child = spawn('xdg-open', [url], { stdio: 'ignore', detached: true });
  child.on('error', () => process.stderr.write('--open: no xdg-open on this machine (no desktop?); open the address above yourself\n'));
  child.unref();
}

export function registerDashboardCommand(program: Command): void {
  program.command('dashboard')
    .description('serve the web dashboard on loopback and print its one-time login address (runs until Ctrl-C)')
    .option('--kubeconfig <file>', 'whose credentials the dashboard acts with (default: $KUBECONFIG, else .stevedore/kubeconfig from `stevedore up`)')
    .option('--host <address>', 'address to listen on (loopback: the dashboard speaks plain HTTP)', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0: any free port)', '0')
    .option('--open', 'also open the login address in the desktop\'s browser (xdg-open)')
    .option('--log-level <level>', 'pino log level on stderr', 'warn')
    .action(async (flags: DashboardFlags) => {
      const port = Number(flags.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidInput(`--port ${flags.port} is not a port number`, 'give 0..65535');
      const kubeconfigPath = path.resolve(flags.kubeconfig ?? process.env.KUBECONFIG?.split(':')[0] ?? '.stevedore/kubeconfig');
      const { startDashboard } = await import('./server.js');
      const dashboard = await startDashboard({ kubeconfigPath, host: flags.host, port, logLevel: flags.logLevel });
      const loginUrl = dashboard.newLoginUrl();
      process.stdout.write(`Stevedore dashboard for ${dashboard.user} (${kubeconfigPath}):\n\n    ${loginUrl}\n\n` +
        `The address signs in one browser once.${process.stdin.isTTY ? ' Press Enter for another one;' : ''} Ctrl-C stops the dashboard.\n`);
      if (flags.open) openInBrowser(loginUrl);
      if (process.stdin.isTTY) {
        process.stdin.setEncoding('utf8');
        process.stdin.on('data', () => process.stdout.write(`    ${dashboard.newLoginUrl()}\n`));
      }
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      process.stdin.pause();
      await dashboard.close();
    });
}
