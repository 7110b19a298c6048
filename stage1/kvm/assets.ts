import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { UserError } from '../../common/errors.js';
import { nativeHelperPath } from '../../common/native.js';
import { cpioArchive, type CpioEntry } from './cpio.js';

/**
 * The kvm stage1's guest assets: an unpacked kernel (vmlinux: no in-guest
 * decompression, which costs seconds under TCG) and an initramfs with
 * busybox-static, crun (the OCI runtime every app of the guest runs under,
 * with the shared libraries it loads), the guest init and the kernel modules
 * it loads. Built from Debian packages only (`apt-get download` + `dpkg -x`,
 * never installed).
 *
 *   <assets>/vmlinux        the kernel of linux-image-amd64 (9p, virtiofs, virtio as modules)
 *   <assets>/initrd.cpio    uncompressed newc: /init, /bin/busybox, /bin/crun, /bin/console-relay, /lib64 + /lib/x86_64-linux-gnu (crun's
 *                           libraries), /lib/modules/*.ko, /etc/modules.load
 *   <assets>/assets.json    recipe, package versions and sha256 of both files
 *
 * Default place: /var/cache/stevedore/stage1-kvm (node-wide, not per data
 * dir: every runtime of the node shares them); STEVEDORE_KVM_ASSETS overrides.
 */
export const DEFAULT_KVM_ASSETS_DIR = '/var/cache/stevedore/stage1-kvm';
export const kvmAssetsDir = () => process.env.STEVEDORE_KVM_ASSETS ?? DEFAULT_KVM_ASSETS_DIR;

export interface KvmAssets { dir: string; vmlinux: string; initrd: string; info: AssetsInfo }
/**
 * What the build puts into the assets. Assets of another recipe are refused
 * (and `build-kvm --if-missing` rebuilds them). 2: crun and its libraries in
 * the initramfs; no /devtmpl (crun makes each app's /dev). 3: /bin/console-relay
 * (native/console-relay.c, static), the terminal of an exec with a tty.
 */
export const KVM_ASSETS_RECIPE = 3;

export interface AssetsInfo {
  /** KVM_ASSETS_RECIPE of the build (absent: recipe 1) */
  recipe?: number;
  kernelPackage: string;
  kernelVersion: string;
  busyboxPackage: string;
  /** crun and every package its libraries come from, `name=version` */
  crunPackages?: string[];
  modules: string[];
  sha256: Record<string, string>;
  /** sha256 of the guest-init.sh the initramfs carries (assets from another version are refused). */
  guestInitSha256: string;
}

/** Modules the guest loads (their dependencies come along): mmio transport, serial ports, 9p, network. */
const GUEST_MODULES = ['virtio_mmio', 'virtio_console', '9pnet_virtio', '9p', 'virtio_net'];

// dist/stage1/kvm/assets.js -> <repo>/stage1/kvm/guest-init.sh
const GUEST_INIT_FILE = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../stage1/kvm/guest-init.sh');

export async function loadKvmAssets(dir = kvmAssetsDir()): Promise<KvmAssets> {
  const infoFile = path.join(dir, 'assets.json');
  const text = await fs.readFile(infoFile, 'utf8').catch(() => undefined);
  if (text === undefined) {
    throw new UserError(`the kvm stage1's guest assets are not built (no ${infoFile})`, { hint: 'run `stevedore stage1 build-kvm` (or scripts/setup.sh), or set STEVEDORE_KVM_ASSETS to where they are' });
  }
  const info = JSON.parse(text) as AssetsInfo;
  if ((info.recipe ?? 1) !== KVM_ASSETS_RECIPE) {
    throw new UserError(`the kvm stage1's guest assets in ${dir} are of an older build recipe (${info.recipe ?? 1}, this version needs ${KVM_ASSETS_RECIPE}: crun and console-relay in the guest)`, { hint: 'run `stevedore stage1 build-kvm` (or scripts/setup.sh) to rebuild them' });
  }
  // The guest init is baked into the initramfs: assets built from another version of it would speak another protocol.
  const initNow = createHash('sha256').update(await fs.readFile(GUEST_INIT_FILE)).digest('hex');
  if (info.guestInitSha256 !== initNow) {
    throw new UserError(`the kvm stage1's guest assets in ${dir} were built from another version of stage1/kvm/guest-init.sh`, { hint: 'run `stevedore stage1 build-kvm` (or scripts/setup.sh) to rebuild them' });
  }
  return { dir, vmlinux: path.join(dir, 'vmlinux'), initrd: path.join(dir, 'initrd.cpio'), info };
}

async function aptDownload(pkg: string, into: string): Promise<string> {
  const r = await execa('apt-get', ['download', '-q', pkg], { cwd: into, reject: false });
  const deb = (await fs.readdir(into)).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  if (r.exitCode !== 0 || !deb) {
    throw new UserError(`apt-get download ${pkg} failed: ${(r.stderr || r.stdout).trim()}`, { hint: 'run apt-get update, and check that the Debian repositories are reachable' });
  }
  return path.join(into, deb);
}

const debField = async (deb: string, field: string) => (await execa('dpkg-deb', ['-f', deb, field])).stdout.trim();

/** Package names a .deb's Depends and Pre-Depends name (the first of each alternative; no virtual packages here). */
async function debDepends(deb: string): Promise<string[]> {
  const fields = [await debField(deb, 'Pre-Depends'), await debField(deb, 'Depends')].filter(Boolean).join(',');
  return fields.split(',').map((d) => d.trim().split('|')[0]!.trim().split(/[\s(:]/)[0]!).filter(Boolean);
}

/** A package and everything it depends on, downloaded (apt-get download, nothing installed). */
async function aptDownloadWithDepends(pkg: string, into: string): Promise<string[]> {
  const debs = new Map<string, string>();
  const queue = [pkg];
  while (queue.length > 0) {
    const name = queue.shift()!;
    if (debs.has(name)) continue;
    const deb = await aptDownload(name, into);
    debs.set(name, deb);
    queue.push(...await debDepends(deb));
  }
  return [...debs.values()];
}

/**
 * The shared libraries an ELF program in `root` loads, resolved inside `root`
 * only, by root's own dynamic loader (`ld.so --list`): never a library of the
 * node that builds the assets.
 */
async function sharedLibraries(root: string, program: string): Promise<Array<{ name: string; file: string }>> {
  const libDirs = ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu'].map((d) => path.join(root, d));
  const loader = path.join(root, 'lib', 'x86_64-linux-gnu', 'ld-linux-x86-64.so.2');
  const r = await execa(loader, ['--library-path', libDirs.join(':'), '--list', program], { reject: false, env: {} });
  if (r.exitCode !== 0) throw new UserError(`cannot list the libraries of ${path.basename(program)}: ${(r.stderr || r.stdout).trim()}`, { hint: 'the guest runtime packages (crun and its libraries) are incomplete' });
  const libs: Array<{ name: string; file: string }> = [];
  for (const line of r.stdout.split('\n')) {
    const m = /^\s*(\S+) => (\S+) \(/.exec(line);
    if (!m) {
      if (/not found/.test(line)) throw new UserError(`${path.basename(program)} needs ${line.trim()}`, { hint: 'a package of the guest runtime is missing from the build' });
      continue;
    }
    if (!m[2]!.startsWith(root + path.sep)) throw new UserError(`${path.basename(program)}'s library ${m[1]} resolved outside the guest packages (${m[2]})`, { hint: 'a package of the guest runtime is missing from the build' });
    libs.push({ name: m[1]!, file: m[2]! });
  }
  return libs;
}

/** The ELF kernel inside a bzImage: Debian compresses it with xz; the payload starts at the xz magic. */
async function extractVmlinux(bzImage: string, out: string): Promise<void> {
  const image = await fs.readFile(bzImage);
  const magics: Array<[Buffer, string[]]> = [
    [Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), ['xz', '-dc', '--single-stream']],
    [Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), ['zstd', '-dcq']],
    [Buffer.from([0x1f, 0x8b, 0x08]), ['gzip', '-dc']],
  ];
  for (const [magic, cmd] of magics) {
    for (let at = image.indexOf(magic); at >= 0; at = image.indexOf(magic, at + 1)) {
      const r = await execa(cmd[0]!, cmd.slice(1), { input: image.subarray(at), encoding: 'buffer', reject: false, maxBuffer: 512 * 2 ** 20 });
      const elf = r.stdout as unknown as Uint8Array;
      if (elf.length > 4 && Buffer.from(elf.subarray(0, 4)).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) {
        await fs.writeFile(out, elf);
        return;
      }
    }
  }
  throw new UserError(`no ELF kernel found inside ${bzImage}`, { hint: 'the kernel package uses a compression this build does not know (xz, zstd, gzip)' });
}

/** `depends=` from a module's .modinfo section. */
function moduleDepends(ko: Buffer): string[] {
  const at = ko.indexOf('\0depends=');
  if (at < 0) return [];
  const end = ko.indexOf(0, at + 1);
  return ko.subarray(at + 9, end).toString().split(',').filter(Boolean);
}

/** The modules to load, dependencies first. */
async function moduleLoadOrder(modulesDir: string, wanted: string[]): Promise<Array<{ name: string; file: string }>> {
  const byName = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    for (const e of await fs.readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.name.endsWith('.ko')) byName.set(e.name.slice(0, -3).replace(/-/g, '_'), p);
    }
  };
  await walk(modulesDir);
  const order: Array<{ name: string; file: string }> = [];
  const seen = new Set<string>();
  const visit = async (name: string): Promise<void> => {
    const key = name.replace(/-/g, '_');
    if (seen.has(key)) return;
    seen.add(key);
    const file = byName.get(key);
    if (!file) throw new UserError(`kernel module ${name} is not in the kernel package`, { hint: 'the guest needs it; use a kernel built with it as a module or built in' });
    for (const dep of moduleDepends(await fs.readFile(file))) await visit(dep);
    order.push({ name: key, file });
  };
  for (const m of wanted) await visit(m);
  return order;
}

const sha256 = async (file: string) => createHash('sha256').update(await fs.readFile(file)).digest('hex');

/**
 * Build the assets into `outDir` (replaced atomically). The same package
 * versions give byte-identical files: the cpio carries no timestamps or
 * owners, and assets.json records the versions and hashes.
 */
export async function buildKvmAssets(outDir = kvmAssetsDir(), log: (msg: string) => void = () => {}): Promise<KvmAssets> {
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'stevedore-kvm-build-'));
  try {
    const debs = path.join(work, 'debs');
    await fs.mkdir(debs);
    log('downloading linux-image-amd64, busybox-static, crun and its libraries (apt-get download)');
    const meta = await aptDownload('linux-image-amd64', debs);
    const kernelPackage = (await debField(meta, 'Depends')).split(',').map((d) => d.trim().split(/\s/)[0]!).find((d) => d.startsWith('linux-image-'));
    if (!kernelPackage) throw new UserError('linux-image-amd64 names no kernel package in its Depends');
    const kernelDeb = await aptDownload(kernelPackage, debs);
    const busyboxDeb = await aptDownload('busybox-static', debs);
    const crunDebs = await aptDownloadWithDepends('crun', debs);
    const root = path.join(work, 'root');
    for (const deb of [kernelDeb, busyboxDeb, ...crunDebs]) await execa('dpkg-deb', ['-x', deb, root]);
    const crun = path.join(root, 'usr', 'bin', 'crun');
    const crunLibs = await sharedLibraries(root, crun);
    const kernelVersion = kernelPackage.replace(/^linux-image-/, '');
    const stage = `${outDir}.tmp-${process.pid}`;
    await fs.rm(stage, { recursive: true, force: true });
    await fs.mkdir(stage, { recursive: true });
    log(`unpacking vmlinux from vmlinuz-${kernelVersion}`);
    await extractVmlinux(path.join(root, 'boot', `vmlinuz-${kernelVersion}`), path.join(stage, 'vmlinux'));
    const modules = await moduleLoadOrder(path.join(root, 'lib', 'modules', kernelVersion), GUEST_MODULES);
    const busybox = [path.join(root, 'bin', 'busybox'), path.join(root, 'usr', 'bin', 'busybox')];
    const busyboxFile = (await Promise.all(busybox.map((b) => fs.access(b).then(() => b, () => undefined)))).find(Boolean);
    if (!busyboxFile) throw new UserError('busybox-static holds no busybox binary');
    const guestInit = await fs.readFile(GUEST_INIT_FILE);
    const consoleRelay = nativeHelperPath('console-relay');
    if (!consoleRelay) throw new UserError('native/build/Release/console-relay is not built (the kvm guest\'s terminal for exec -t)', { hint: 'build the native helpers: npm run install (scripts/setup.sh does)' });
    const entries: CpioEntry[] = [
      { type: 'dir', path: 'bin' }, { type: 'dir', path: 'etc' }, { type: 'dir', path: 'lib' }, { type: 'dir', path: 'lib/modules' },
      // The tmpfs the init moves the guest's root to (pivot_root, which crun needs, refuses the initramfs itself).
      { type: 'dir', path: 'newroot' },
      { type: 'file', path: 'bin/busybox', data: await fs.readFile(busyboxFile), mode: 0o755 },
      { type: 'symlink', path: 'bin/sh', target: 'busybox' },
      { type: 'file', path: 'init', data: guestInit, mode: 0o755 },
      { type: 'file', path: 'bin/crun', data: await fs.readFile(crun), mode: 0o755 },
      { type: 'file', path: 'bin/console-relay', data: await fs.readFile(consoleRelay), mode: 0o755 },
      { type: 'dir', path: 'lib64' }, { type: 'dir', path: 'lib/x86_64-linux-gnu' },
      // Under their sonames (ld.so looks them up by DT_NEEDED), the loader where crun's PT_INTERP says.
      ...await Promise.all(crunLibs.filter((l) => !l.name.startsWith('/')).map(async (l): Promise<CpioEntry> => ({ type: 'file', path: `lib/x86_64-linux-gnu/${l.name}`, data: await fs.readFile(l.file), mode: 0o755 }))),
      { type: 'file', path: 'lib64/ld-linux-x86-64.so.2', data: await fs.readFile(path.join(root, 'lib', 'x86_64-linux-gnu', 'ld-linux-x86-64.so.2')), mode: 0o755 },
      { type: 'file', path: 'etc/modules.load', data: Buffer.from(modules.map((m) => `${m.name}.ko\n`).join('')) },
      ...await Promise.all(modules.map(async (m): Promise<CpioEntry> => ({ type: 'file', path: `lib/modules/${m.name}.ko`, data: await fs.readFile(m.file) }))),
    ];
    await fs.writeFile(path.join(stage, 'initrd.cpio'), cpioArchive(entries));
    const info: AssetsInfo = {
      recipe: KVM_ASSETS_RECIPE,
      kernelPackage: `${kernelPackage}=${await debField(kernelDeb, 'Version')}`,
      kernelVersion,
      busyboxPackage: `busybox-static=${await debField(busyboxDeb, 'Version')}`,
      crunPackages: await Promise.all(crunDebs.map(async (d) => `${await debField(d, 'Package')}=${await debField(d, 'Version')}`)),
      modules: modules.map((m) => m.name),
      sha256: { vmlinux: await sha256(path.join(stage, 'vmlinux')), 'initrd.cpio': await sha256(path.join(stage, 'initrd.cpio')) },
      guestInitSha256: createHash('sha256').update(guestInit).digest('hex'),
    };
    await fs.writeFile(path.join(stage, 'assets.json'), JSON.stringify(info, null, 2) + '\n');
    // Swap in the new build: the old one goes aside first, so a reader never sees a half-written directory.
    const old = `${outDir}.old-${process.pid}`;
    await fs.rename(outDir, old).catch(() => undefined);
    await fs.rename(stage, outDir);
    await fs.rm(old, { recursive: true, force: true });
    log(`built ${outDir} (${info.kernelPackage}, ${info.busyboxPackage})`);
    return loadKvmAssets(outDir);
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}
