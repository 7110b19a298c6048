import type { Command } from 'commander';
import { table, age } from '../common/format.js';
// The sandbox module is loaded by the command that needs it: CLI start-up stays light.
const sandboxModule = () => import('../sandbox/sandbox.js');
const DEFAULT_SANDBOX_NAME = 'default';

export function registerSandboxCommands(program: Command): void {
  const sandbox = program.command('sandbox').description('a real systemd in private namespaces: a node for hosts whose PID 1 is not systemd');
  sandbox.command('start')
    .option('--name <name>', 'sandbox name (also its hostname)', DEFAULT_SANDBOX_NAME)
    .option('-o, --output <format>', 'json for scripts')
    .description('boot a sandbox and wait until its systemd is running')
    .action(async (opts: { name: string; output?: string }) => {
      const info = await (await sandboxModule()).startSandbox({ name: opts.name });
      process.stdout.write(opts.output === 'json' ? JSON.stringify(info, null, 2) + '\n' : `sandbox ${info.name} running (pid ${info.pid})\nD-Bus: ${info.busAddress}\njournal: journalctl -D ${info.journalDir}\nrun commands inside: stevedore sandbox exec --name ${info.name} -- COMMAND\n`);
    });
  sandbox.command('exec')
    .option('--name <name>', 'sandbox name', DEFAULT_SANDBOX_NAME)
    .argument('<command...>', 'command and arguments (put -- before them)')
    .description('run a command inside a sandbox; its exit code is passed through')
    .action(async (command: string[], opts: { name: string }) => {
      const result = await (await sandboxModule()).execInSandbox(opts.name, command, { stdio: 'inherit', env: process.env.STEVEDORE_DATA_DIR ? { STEVEDORE_DATA_DIR: process.env.STEVEDORE_DATA_DIR } : {} });
      process.exitCode = result.exitCode;
    });
  sandbox.command('stop')
    .option('--name <name>', 'sandbox name', DEFAULT_SANDBOX_NAME)
    .description('stop a sandbox and remove every trace of it')
    .action(async (opts: { name: string }) => {
      await (await sandboxModule()).stopSandbox(opts.name);
    });
  sandbox.command('list').alias('ls')
    .description('list running sandboxes')
    .action(async () => {
      const all = await (await sandboxModule()).listSandboxes();
      process.stdout.write(table(['NAME', 'PID', 'AGE', 'BUS'], all.map((s) => [s.name, String(s.pid), age(s.startedAt), s.busAddress])));
    });
}
