#!/usr/bin/env node
/**
 * Standalone entry point: `node dist/api-service/main.js api-service [flags]`
 * (the same command `stevedore api-service` runs, without loading the rest of
 * the CLI). Useful for a unit file and for running it as an unprivileged user.
 */
import { Command, CommanderError } from 'commander';
import { registerApiServiceCommand } from './command.js';

const program = new Command('stevedore').exitOverride();
registerApiServiceCommand(program);
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exitCode = err.exitCode === 0 ? 0 : 2;
  else {
    process.stderr.write(`error: ${(err as Error)?.message ?? String(err)}\n`);
    process.exitCode = 1;
  }
}
