import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { execa } from 'execa';
import { InvalidInput, UserError } from '../../common/errors.js';
import { atomicWriteJson } from '../../common/fsutil.js';
import type { KvmAssets } from './assets.js';
import { qemuArgv, type KvmAccel } from './vm.js';

import { KVM_ACCEL_MODES, type KvmAccelMode } from '../../runtime-api/handlers.js';
export { KVM_ACCEL_MODES, type KvmAccelMode } from '../../runtime-api/handlers.js';

export function parseKvmAccelMode(v: string): KvmAccelMode {
  if (!(KVM_ACCEL_MODES as readonly string[]).includes(v)) throw new InvalidInput(`unknown --kvm-accel "${v}"`, `choose one of: ${KVM_ACCEL_MODES.join(', ')}`);
  return v as KvmAccelMode;
}

export interface ProbeResult { kvm: boolean; reason: string; at: number; bootId: string; assets: string }

/** Where the probe's verdict is kept: /run, so it holds for one boot of the node (the hardware does not change under a running kernel). */
const PROBE_FILE = process.env.STEVEDORE_KVM_PROBE_FILE ?? '/run/stevedore/kvm-probe.json';
// Hardware KVM boots this guest in well under a second; a software hypervisor that crawls never finishes.
const PROBE_TIMEOUT_MS = 10_000;

/**
 * Whether hardware KVM really boots our guest. Opening /dev/kvm, or qemu
 * reporting KVM enabled, proves nothing (nested/paravirtual hypervisors
 * accept KVM_CREATE_VM and then abort or crawl: ../shared/reference/kvm.md),
 * so boot the real kernel and initrd in probe mode and wait for its marker.
 */
export async function probeKvm(assets: KvmAssets): Promise<Omit<ProbeResult, 'at' | 'bootId' | 'assets'>> {
  try {
    await fs.access('/dev/kvm', fs.constants.R_OK | fs.constants.W_OK);
  } catch {
    return { kvm: false, reason: 'no usable /dev/kvm on this node' };
  }
  const argv = qemuArgv({ vmlinux: assets.vmlinux, initrd: assets.initrd, accel: 'kvm', memoryMiB: 128, cpus: 1, probe: true });
  const started = Date.now();
  const r = await execa(argv[0]!, argv.slice(1), { reject: false, timeout: PROBE_TIMEOUT_MS, stdin: 'ignore', all: true });
  if (r.all?.includes('STEVEDORE-PROBE-OK')) return { kvm: true, reason: `a probe VM booted with KVM in ${Date.now() - started} ms` };
  if (r.timedOut) return { kvm: false, reason: `a probe VM with KVM did not boot within ${PROBE_TIMEOUT_MS / 1000} s` };
  const why = (r.all ?? '').split('\n').map((l) => l.trim()).filter(Boolean).slice(-2).join('; ') || `qemu exited with ${r.exitCode}`;
  return { kvm: false, reason: `a probe VM with KVM failed to boot (${why})` };
}

async function bootId(): Promise<string> {
  return (await fs.readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '')).trim();
}

/** The probe's verdict, from the cache when it was made in this boot with these assets. */
export async function kvmProbe(assets: KvmAssets, opts: { fresh?: boolean } = {}): Promise<ProbeResult> {
  const id = await bootId();
  const key = assets.info.sha256.vmlinux ?? '';
  if (!opts.fresh) {
    const cached = await fs.readFile(PROBE_FILE, 'utf8').then((t) => JSON.parse(t) as ProbeResult, () => undefined);
    if (cached && cached.bootId === id && cached.assets === key) return cached;
  }
  const result: ProbeResult = { ...(await probeKvm(assets)), at: Date.now(), bootId: id, assets: key };
  await fs.mkdir(path.dirname(PROBE_FILE), { recursive: true });
  await atomicWriteJson(PROBE_FILE, result);
  return result;
}

export interface AccelChoice { accel: KvmAccel; mode: KvmAccelMode; reason: string }

/** What a new VM pod runs with; `kvm` mode refuses (throws) when hardware KVM does not work here. */
export async function chooseAccel(mode: KvmAccelMode, assets: KvmAssets): Promise<AccelChoice> {
  if (mode === 'tcg') return { accel: 'tcg', mode, reason: 'the node runs VM pods under TCG emulation (--kvm-accel=tcg)' };
  const probe = await kvmProbe(assets);
  if (probe.kvm) return { accel: 'kvm', mode, reason: probe.reason };
  if (mode === 'kvm') {
    throw new UserError(`refusing to start a VM pod: --kvm-accel=kvm requires hardware KVM, and it is not usable on this node: ${probe.reason}`, {
      hint: 'run VM pods on a node with working KVM, or allow emulation with --kvm-accel=auto or tcg (TCG is no hardware isolation boundary)',
    });
  }
  return { accel: 'tcg', mode, reason: `hardware KVM is not usable (${probe.reason}); emulating with TCG` };
}
