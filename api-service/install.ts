/**
 * `stevedore api-service install`: the api-service as a systemd unit that
 * runs as its own unprivileged user and reads the node's state through a
 * group. Nothing here runs in the service itself: it is the installer's
 * half (root), which creates the identity, opens the data directory to the
 * group — only the parts the service reads — and writes the unit.
 */
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { execa } from 'execa';
import { UserError } from '../common/errors.js';
import { POD_DIR_STATES } from '../runtime-rkt/pod-store.js';
import { imageStoreDir, podStoreDir } from '../runtime-rkt/data-dir.js';

export const API_SERVICE_UNIT = 'stevedore-api-service.service';
/** The service's own user: owns nothing but its socket. */
export const API_SERVICE_USER = 'stevedore-api';
/** Readers of the node's state: the service's group, and whoever an operator adds to it to use the socket. */
export const API_SERVICE_GROUP = 'stevedore';
/** journald lets members of this group read the system journal (GetLogs). */
export const JOURNAL_GROUP = 'systemd-journal';
/** systemd creates it (RuntimeDirectory=) for the service's user, and removes it when the service stops. */
export const API_SERVICE_RUNTIME_DIR = 'stevedore-api';
export const API_SERVICE_SOCKET = `/run/${API_SERVICE_RUNTIME_DIR}/api.sock`;

export interface ApiServiceUnitOptions {
  /** ExecStart= prefix: node, its flags and the CLI. */
  cli: string;
  dataDir: string;
  socket: string;
  /** Also listen on TCP here (no client authentication on loopback: every local user can connect). */
  listen?: string;
  user: string;
  group: string;
  /** Supplementary groups (the journal's), only those that exist on this node. */
  extraGroups: string[];
  /** Paths the service must reach (the CLI, the data dir): /home and /root are made read-only rather than hidden, and /tmp is not made private, when one is there. */
  reads: string[];
}

const underHome = (p: string) => /^\/(home|root|run\/user)(\/|$)/.test(path.resolve(p));
/** PrivateTmp= would hide a data dir (or a CLI) kept in /tmp or /var/tmp, as test clusters do. */
const underTmp = (p: string) => /^\/(var\/)?tmp(\/|$)/.test(path.resolve(p));

/**
 * The unit. The service never writes anything but its socket, so the whole
 * filesystem is read-only for it (ProtectSystem=strict) and its only writable
 * place is its runtime directory, where the socket lives. It keeps no
 * capability and may not gain one (NoNewPrivileges, an empty bounding set),
 * so a flaw in it gives at most what its group reads.
 */
export function apiServiceUnitFile(o: ApiServiceUnitOptions): string {
  const socketDir = path.dirname(o.socket);
  const inRuntimeDir = socketDir === `/run/${API_SERVICE_RUNTIME_DIR}`;
  const args = ['--dir', o.dataDir, 'api-service', '--socket', o.socket, ...(o.listen ? ['--listen', o.listen] : [])];
  return `[Unit]
Description=Stevedore read-only API service (rkt v1alpha gRPC)
After=dbus.service systemd-journald.service

[Service]
ExecStart=${o.cli} ${args.join(' ')}
User=${o.user}
Group=${o.group}
${o.extraGroups.length ? `SupplementaryGroups=${o.extraGroups.join(' ')}\n` : ''}RuntimeDirectory=${API_SERVICE_RUNTIME_DIR}
RuntimeDirectoryMode=0750
${inRuntimeDir ? '' : `ReadWritePaths=${socketDir}\n`}UMask=0077
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=${o.reads.some(underHome) ? 'read-only' : 'yes'}
PrivateTmp=${o.reads.some(underTmp) ? 'no' : 'yes'}
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
`;
}

async function run(argv: string[], what: string, hint: string): Promise<string> {
  const r = await execa(argv[0]!, argv.slice(1), { reject: false });
  if (r.exitCode !== 0) throw new UserError(`${what} failed: \`${argv.join(' ')}\` exited ${r.exitCode}: ${String(r.stderr).trim()}`, { hint });
  return String(r.stdout);
}

/** The numeric id from a `getent` line (`name:x:ID:…`), or undefined when there is no such entry. */
async function getentId(db: 'group' | 'passwd', name: string): Promise<number | undefined> {
  const r = await execa('getent', [db, name], { reject: false });
  if (r.exitCode !== 0) return undefined;
  const id = Number(String(r.stdout).split(':')[2]);
  return Number.isInteger(id) ? id : undefined;
}

/**
 * The service's group and user, created as system accounts when missing (no
 * home, no login shell); existing ones are used as they are.
 */
export async function ensureServiceIdentity(user: string, group: string): Promise<{ uid: number; gid: number }> {
  const hint = 'run the install as root on the node (groupadd/useradd from the passwd package), or create the user and group yourself and pass --user/--group';
  let gid = await getentId('group', group);
  if (gid === undefined) {
    await run(['groupadd', '--system', group], `creating the group ${group}`, hint);
    gid = await getentId('group', group);
  }
  let uid = await getentId('passwd', user);
  if (uid === undefined) {
    await run(['useradd', '--system', '--gid', group, '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin',
      '--comment', 'Stevedore api-service', user], `creating the user ${user}`, hint);
    uid = await getentId('passwd', user);
  }
  if (gid === undefined || uid === undefined) throw new UserError(`the user ${user} or the group ${group} cannot be resolved after creating it`, { hint });
  if (uid === 0) throw new UserError(`the api-service's user ${user} is root`, { hint: 'pass --user with an unprivileged account' });
  return { uid, gid };
}

/** Groups that exist on this node, of those given. */
export async function existingGroups(names: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const n of names) if ((await getentId('group', n)) !== undefined) out.push(n);
  return out;
}

async function setOwnerMode(p: string, gid: number, mode: number): Promise<void> {
  await fs.chown(p, 0, gid);
  await fs.chmod(p, mode);
}

/**
 * Open the data directory to `gid`, for exactly what the api-service reads
 * (api-service/README.md, "Who may read what"):
 *
 *   <dir>, pods/, images/, images/blobs/, images/blobs/sha256/   root:G, search only (x)
 *   pods/<state>/                                               root:G 2750: listed; pod folders made in them take G
 *   pods/<state>/<uuid>/                                        root:G 0750 (the runtime makes new ones so)
 *   images/records/                                             root:G 0750
 *
 * Everything else keeps its mode: images/layers, images/tmp, the store lock,
 * agent/ (its TLS key), cni/results stay root-only (0700). Others' search
 * bit on <dir> and pods/ is kept as it was (runtime's default 0711): the
 * folders below them are closed to others. Idempotent.
 */
export async function openDataDirToGroup(dataDir: string, gid: number): Promise<void> {
  const pods = podStoreDir(dataDir);
  const images = imageStoreDir(dataDir);
  const keepOthersSearch = async (p: string) => ((await fs.stat(p)).mode & 0o001);
  for (const dir of [dataDir, pods, images]) {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    await setOwnerMode(dir, gid, 0o710 | (dir === images ? 0 : await keepOthersSearch(dir)));
  }
  for (const state of POD_DIR_STATES) {
    const folder = path.join(pods, state);
    await fs.mkdir(folder, { recursive: true, mode: 0o700 });
    await setOwnerMode(folder, gid, 0o2750);
    for (const name of await fs.readdir(folder)) {
      const st = await fs.lstat(path.join(folder, name)).catch(() => undefined);
      if (st?.isDirectory()) await setOwnerMode(path.join(folder, name), gid, 0o750);
    }
  }
  for (const [dir, mode] of [[path.join(images, 'records'), 0o750], [path.join(images, 'blobs'), 0o710], [path.join(images, 'blobs', 'sha256'), 0o710]] as const) {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    await setOwnerMode(dir, gid, mode);
  }
}

/**
 * Fail at install, not in the journal later: the service's user must reach
 * the CLI it runs and the data directory (every parent searchable).
 */
export async function checkServiceCanReach(user: string, group: string, paths: { read: string[]; search: string[] }): Promise<void> {
  for (const [flag, list] of [['-r', paths.read], ['-x', paths.search]] as const) {
    for (const p of list) {
      const r = await execa('setpriv', [`--reuid=${user}`, `--regid=${group}`, '--init-groups', '--', 'test', flag, p], { reject: false });
      if (r.exitCode !== 0) {
        throw new UserError(`the api-service's user ${user} cannot ${flag === '-r' ? 'read' : 'enter'} ${p}`, {
          hint: `make every parent directory of ${p} searchable by others (chmod o+x), or keep the CLI and the data directory outside private home directories`,
        });
      }
    }
  }
}
