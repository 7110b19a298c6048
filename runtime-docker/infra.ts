/**
 * The infra ("pause") container's image, built on the node and never pulled:
 * the node's static busybox in a one-layer image whose command sleeps until
 * SIGTERM. And how to find, from wherever this process runs, the host-visible
 * PID of a container's process (dockerd may live in a node sandbox's PID
 * namespace, so the PID the engine reports may not be ours).
 */
import * as fs from 'node:fs/promises';
import { pack, type Header } from 'tar-stream';
import { UserError } from '../common/errors.js';
import { readAll, type EngineClient } from './engine-api.js';

export const PAUSE_IMAGE = 'localhost/stevedore/pause:1';
export const BUSYBOX = '/bin/busybox';
/** Exits 0 on SIGTERM; a plain `sleep` as PID 1 would ignore it (PID 1 gets no default signal actions). */
export const PAUSE_COMMAND = ['/bin/sh', '-c', 'trap "exit 0" TERM INT; while :; do sleep 86400 & wait $!; done'];

/** A tar of a root filesystem holding a static busybox and the applets named. */
export async function busyboxRootfsTar(applets: string[] = ['sh', 'sleep']): Promise<Buffer> {
  const binary = await fs.readFile(BUSYBOX).catch((err: Error) => {
    throw new UserError(`cannot read ${BUSYBOX} for the infra image: ${err.message}`, { hint: 'install busybox-static (scripts/setup.sh does)' });
  });
  const tar = pack();
  tar.entry({ name: 'bin/', type: 'directory', mode: 0o755 });
  tar.entry({ name: 'bin/busybox', mode: 0o755 }, binary);
  for (const a of applets) tar.entry({ name: `bin/${a}`, type: 'symlink', linkname: 'busybox' });
  for (const d of ['etc/', 'proc/', 'sys/', 'dev/', 'tmp/']) tar.entry({ name: d, type: 'directory', mode: d === 'tmp/' ? 0o1777 : 0o755 });
  tar.finalize();
  return readAll(tar as unknown as import('node:stream').Readable);
}

/** Import a rootfs tar as an image with the given command (POST /images/create?fromSrc=-). */
export async function importImage(engine: EngineClient, tar: Buffer, ref: string, cmd: string[], env: string[] = []): Promise<void> {
  const colon = ref.lastIndexOf(':');
  const [repo, tag] = colon > ref.lastIndexOf('/') ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, 'latest'];
  const changes = [`CMD ${JSON.stringify(cmd)}`, ...env.map((e) => `ENV ${e}`)];
  const res = await engine.stream('POST', '/images/create', { query: { fromSrc: '-', repo, tag, changes }, rawBody: tar });
  const text = (await readAll(res)).toString();
  const error = /"error":\s*"([^"]*)"/.exec(text);
  if (error) throw new UserError(`importing ${ref} into the docker engine failed: ${error[1]}`);
}

export async function ensurePauseImage(engine: EngineClient): Promise<void> {
  const present = await engine.call('GET', `/images/${encodeURIComponent(PAUSE_IMAGE)}/json`).then(() => true, () => false);
  if (!present) await importImage(engine, await busyboxRootfsTar(), PAUSE_IMAGE, PAUSE_COMMAND);
}

async function readText(file: string): Promise<string | undefined> {
  return fs.readFile(file, 'utf8').catch(() => undefined);
}

/**
 * The PID, as this process sees it, of a container's process that the engine
 * reports as `pid` (in dockerd's PID namespace). Checked by the container's
 * cgroup (its path holds the container ID under any cgroup driver): the same
 * number when we share dockerd's namespace, else the process in that cgroup
 * whose NSpid (its PID in each namespace from ours inwards: ours, dockerd's
 * and more, the container's own) holds `pid` below our level.
 */
export async function hostPidOf(containerId: string, pid: number): Promise<number> {
  if ((await readText(`/proc/${pid}/cgroup`))?.includes(containerId)) return pid;
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    if (!(await readText(`/proc/${entry}/cgroup`))?.includes(containerId)) continue;
    const nspid = /^NSpid:\s*(.*)$/m.exec((await readText(`/proc/${entry}/status`)) ?? '')?.[1]?.trim().split(/\s+/);
    if (nspid?.slice(1).some((n) => Number(n) === pid)) return Number(entry);
  }
  throw new UserError(`cannot find process ${pid} of container ${containerId.slice(0, 12)} from here`, { hint: 'the container exited meanwhile, or this agent cannot see the engine\'s processes (run it on the node)' });
}

/** A file of a root filesystem to import (tar-stream header; body inline or read from a file). */
export interface RootfsEntry { header: Record<string, unknown> & { name: string }; body?: Buffer | { file: string } }

/**
 * The demo image (`stevedore up`): the entries the caller gives (the node's
 * busybox, every applet: runtime-rkt/image/demo-image.ts busyboxEntries) as
 * localhost/NAME:latest, which a pod's short name NAME resolves to.
 */
export async function importDemoImage(engine: EngineClient, entries: RootfsEntry[], name = 'busybox'): Promise<void> {
  const tar = pack();
  for (const e of entries) {
    const body = e.body === undefined ? undefined : Buffer.isBuffer(e.body) ? e.body : await fs.readFile(e.body.file);
    const header = { ...e.header, ...(body ? { size: body.length } : {}) } as Header;
    if (body) tar.entry(header, body);
    else tar.entry(header);
  }
  tar.finalize();
  await importImage(engine, await readAll(tar as unknown as import('node:stream').Readable), `localhost/${name}:latest`, ['sh'], ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
}
