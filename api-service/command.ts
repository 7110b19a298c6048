import type { Command } from 'commander';
import { InvalidInput, UserError } from '../common/errors.js';

// gRPC is loaded by the command itself, not when the CLI starts.
const DEFAULT_LISTEN = '127.0.0.1:15441';

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
  metrics?: string;
  containerRuntime?: string;
}

/**
 * The api-service is rkt's v1alpha API: its model (rkt pod directories and
 * states, images of rkt's store, journald logs per app) is rkt's own, and a
 * docker node would get an empty or half-true answer from it. So it refuses
 * to start for docker, saying where a docker node's pods are read instead
 * (as rkt's api-service never served Docker pods either).
 */
function refuseNonRkt(runtime: string | undefined): void {
  if (runtime === undefined || runtime === 'rkt') return;
  if (runtime === 'docker') {
    throw new UserError('the api-service serves rkt\'s v1alpha API and only rkt\'s pods: it does not run on a --container-runtime=docker node', {
      hint: 'read a docker node\'s pods with `stevedore pod list --container-runtime=docker`, kubectl, or the engine\'s own API (docker ps)', exitCode: 2,
    });
  }
  throw new InvalidInput(`--container-runtime=${runtime}: choose rkt (docker nodes have no api-service)`);
}

export function registerApiServiceCommand(program: Command): void {
  const apiService = program.command('api-service')
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
    .option('--metrics <host:port>', 'also serve Prometheus metrics (request counts, latencies, memory) over HTTP at /metrics here')
    .option('--container-runtime <name>', 'the node\'s runtime; the api-service serves rkt\'s pods only (docker is refused)', 'rkt')
    .action(async (flags: ApiServiceFlags, cmd: Command) => {
      refuseNonRkt(flags.containerRuntime);
      const globals = (cmd.optsWithGlobals?.() ?? {}) as ApiServiceFlags;
      const tlsParts = [flags.tlsCert, flags.tlsKey, flags.tlsClientCa];
      if (tlsParts.some(Boolean) && !tlsParts.every(Boolean)) throw new InvalidInput('TLS needs all of --tls-cert, --tls-key and --tls-client-ca');
      const { startApiService } = await import('./server.js');
      const service = await startApiService({
        listen: flags.listen,
        socket: flags.socket,
        dataDir: flags.dir ?? globals.dir ?? process.env.STEVEDORE_DATA_DIR,
        dbusAddress: flags.dbusAddress ?? globals.dbusAddress ?? process.env.STEVEDORE_DBUS_ADDRESS,
        journalDir: flags.journalDir,
        tls: flags.tlsCert ? { certFile: flags.tlsCert, keyFile: flags.tlsKey!, clientCaFile: flags.tlsClientCa! } : undefined,
        rescanMs: Number(flags.rescanMs) || 1000,
        metricsListen: flags.metrics,
      });
      if (service.metricsAddress) process.stdout.write(`metrics on http://${service.metricsAddress}/metrics\n`);
      process.stdout.write(`listening on ${service.address}\n`);
      await new Promise<void>((resolve) => {
        const stop = () => { void service.close().finally(resolve); };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });
  apiService.command('install')
    .description('write the stevedore-api-service unit (its own user, reading the data dir through a group; unix socket 0660) and enable it (start it too with --now)')
    .option('--now', 'start it too')
    .option('--unit-dir <dir>', 'where to write the unit', '/etc/systemd/system')
    .option('--user <name>', "the service's user (created as a system user if missing)", 'stevedore-api')
    .option('--group <name>', 'the group that may read the node state and use the socket (created if missing)', 'stevedore')
    .action(async (own: { now?: boolean; unitDir: string; user: string; group: string }, cmd: Command) => {
      // Commander hands flags it also knows on `api-service` to the parent: merge both.
      const flags = { ...cmd.parent!.opts(), ...own } as ApiServiceFlags & { now?: boolean; unitDir: string; user: string; group: string };
      const globals = cmd.optsWithGlobals() as ApiServiceFlags;
      const { API_SERVICE_NODE_FLAGS, cliCommand, cliScript, installUnit } = await import('../common/unit-install.js');
      const install = await import('./install.js');
      const path = await import('node:path');
      const dataDir = path.resolve(flags.dir ?? globals.dir ?? process.env.STEVEDORE_DATA_DIR ?? '/var/lib/stevedore');
      const socket = path.resolve(flags.socket ?? install.API_SERVICE_SOCKET);
      if (flags.listen && !/^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d+$/.test(flags.listen)) {
        throw new InvalidInput(`api-service install --listen ${flags.listen}: the unit listens on loopback or its unix socket only`, 'run `stevedore api-service --listen HOST:PORT --tls-cert … --tls-key … --tls-client-ca …` under a unit of your own for a non-loopback listener');
      }
      const { gid } = await install.ensureServiceIdentity(flags.user, flags.group);
      await install.openDataDirToGroup(dataDir, gid);
      await install.checkServiceCanReach(flags.user, flags.group, { read: [cliScript(), process.execPath], search: [dataDir] });
      const unit = install.apiServiceUnitFile({
        cli: cliCommand(API_SERVICE_NODE_FLAGS), dataDir, socket, listen: flags.listen, user: flags.user, group: flags.group,
        extraGroups: await install.existingGroups([install.JOURNAL_GROUP]), reads: [cliScript(), dataDir],
      });
      await installUnit(flags.unitDir, install.API_SERVICE_UNIT, unit, flags.now === true);
      process.stdout.write(`installed ${install.API_SERVICE_UNIT} (user ${flags.user}, group ${flags.group}, socket ${socket}${flags.listen ? `, ${flags.listen}` : ''})${flags.now ? ' and started it' : ''}\n`);
    });
}
