import type { Command } from 'commander';
import { DEFAULT_LISTEN, startApiService } from './server.js';

interface ApiServiceFlags {
  listen?: string;
  socket?: string;
  dir?: string;
  dbusAddress?: string;
  journalDir?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  rescanMs?: string;
}

/**
 * `stevedore api-service`: run the read-only v1alpha gRPC service in the
 * foreground until SIGINT/SIGTERM. --dir and --dbus-address fall back to the
 * program's global options of the same name when it has them.
 */
export function registerApiServiceCommand(program: Command): void {
  program.command('api-service')
    .description(`serve the read-only v1alpha gRPC API (rkt api-service compatible) on ${DEFAULT_LISTEN} or a unix socket`)
    .option('--listen <host:port>', `TCP address (default ${DEFAULT_LISTEN} unless only --socket is given; non-loopback needs TLS)`)
    .option('--socket <path>', 'unix socket to listen on')
    .option('--dir <path>', 'data directory of the runtime (pods, images)')
    .option('--dbus-address <address>', "D-Bus address of the node's systemd")
    .option('--journal-dir <dir>', "read logs from this journal directory (e.g. a sandbox's) instead of the node's journal")
    .option('--tls-cert <file>', 'server certificate chain (PEM)')
    .option('--tls-key <file>', 'server private key (PEM)')
    .option('--tls-client-ca <file>', 'CA that client certificates must chain to (PEM); clients must present one')
    .option('--rescan-ms <ms>', 'full event rescan period', '1000')
    .action(async (flags: ApiServiceFlags, cmd: Command) => {
      const globals = (cmd.optsWithGlobals?.() ?? {}) as ApiServiceFlags;
      const tlsParts = [flags.tlsCert, flags.tlsKey, flags.tlsClientCa];
      if (tlsParts.some(Boolean) && !tlsParts.every(Boolean)) throw new Error('TLS needs all of --tls-cert, --tls-key and --tls-client-ca');
      const service = await startApiService({
        listen: flags.listen,
        socket: flags.socket,
        dataDir: flags.dir ?? globals.dir ?? process.env.STEVEDORE_DATA_DIR,
        dbusAddress: flags.dbusAddress ?? globals.dbusAddress ?? process.env.STEVEDORE_DBUS_ADDRESS,
        journalDir: flags.journalDir,
        tls: flags.tlsCert ? { certFile: flags.tlsCert, keyFile: flags.tlsKey!, clientCaFile: flags.tlsClientCa! } : undefined,
        rescanMs: Number(flags.rescanMs) || 1000,
      });
      process.stdout.write(`listening on ${service.address}\n`);
      await new Promise<void>((resolve) => {
        const stop = () => { void service.close().finally(resolve); };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
}
