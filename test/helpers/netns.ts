/**
 * Network test fixtures: persistent network namespaces as bind-mounted nsfs
 * files in a temp dir (the way the namespaces stage1 makes pod namespaces; no
 * /run/netns side effects), commands inside them, host state snapshots
 * (interfaces, iptables, sysctls) and a clean-up stack that also runs on
 * SIGINT/SIGTERM.
 */
import { spawn, execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export async function run(cmd: string, args: string[], opts: { allowFail?: boolean; timeoutMs?: number; input?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.stdin.on('error', () => {});
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const rc = code ?? (signal ? 128 : 1);
      if (rc !== 0 && !opts.allowFail) reject(new Error(`${cmd} ${args.join(' ')} failed (${code ?? signal}): ${stderr.trim() || stdout.trim()}`));
      else resolve({ code: rc, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** LIFO clean-up actions, run once, errors collected (never thrown half way). */
export class Cleanup {
  private actions: Array<{ what: string; fn: () => Promise<unknown> }> = [];
  private readonly onSignal = (sig: NodeJS.Signals) => {
    void this.runAll().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  constructor() {
    process.once('SIGINT', this.onSignal);
    process.once('SIGTERM', this.onSignal);
  }
  push(what: string, fn: () => Promise<unknown>): void {
    this.actions.push({ what, fn });
  }
  async runAll(): Promise<string[]> {
    const errors: string[] = [];
    while (this.actions.length) {
      const a = this.actions.pop()!;
      try {
        await a.fn();
      } catch (err) {
        errors.push(`${a.what}: ${(err as Error).message}`);
      }
    }
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    return errors;
  }
}

/** A persistent network namespace at `file` (lo up), like stage1's pod netns. */
export async function createNetns(file: string): Promise<string> {
  await fs.writeFile(file, '');
  await run('unshare', [`--net=${file}`, '--', 'ip', 'link', 'set', 'lo', 'up']);
  return file;
}

export async function removeNetns(file: string): Promise<void> {
  await run('umount', [file], { allowFail: true });
  await fs.rm(file, { force: true });
}

export function inNetns(file: string, argv: string[], opts: { allowFail?: boolean; timeoutMs?: number; input?: string } = {}) {
  return run('nsenter', [`--net=${file}`, '--', ...argv], opts);
}

/** A TCP server inside the netns that answers every connection with `reply` and closes. */
export async function startServer(file: string, port: number, reply: string): Promise<{ pid: number; stop: () => Promise<void> }> {
  const script = `require('net').createServer((s) => { s.on('error', () => {}); s.end(process.argv[1] + '\\n'); }).listen(${port}, '0.0.0.0', () => console.log('ready'));`;
  const child = spawn('nsenter', [`--net=${file}`, '--', process.execPath, '-e', script, reply], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('server in netns did not start')), 10_000);
    child.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('ready')) { clearTimeout(t); resolve(); } });
    child.on('exit', (code) => { clearTimeout(t); reject(new Error(`server in netns exited (${code})`)); });
  });
  const pid = child.pid!;
  return {
    pid,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}

/** Connect from this (host) process, return what the server said, or throw. */
export function tcpRead(host: string, port: number, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    let data = '';
    const t = setTimeout(() => { s.destroy(); reject(new Error(`no answer from ${host}:${port} in ${timeoutMs} ms`)); }, timeoutMs);
    s.on('data', (d) => { data += d; });
    s.on('end', () => { clearTimeout(t); resolve(data.trim()); });
    s.on('error', (e) => { clearTimeout(t); reject(e); });
  });
}

export async function readSysctl(key: string): Promise<string> {
  return (await fs.readFile(path.join('/proc/sys', key.replace(/\./g, '/')), 'utf8')).trim();
}

export async function writeSysctl(key: string, value: string): Promise<void> {
  await fs.writeFile(path.join('/proc/sys', key.replace(/\./g, '/')), value);
}

/** Host interface names. */
export async function hostLinks(): Promise<string[]> {
  const { stdout } = await execFileP('ip', ['-o', 'link', 'show']);
  return stdout.split('\n').filter(Boolean).map((l) => l.split(':')[1]!.trim().split('@')[0]!);
}

/** Interfaces enslaved to a bridge (the pods' host-side veths). */
export async function bridgePorts(bridge: string): Promise<string[]> {
  const { stdout } = await execFileP('ip', ['-o', 'link', 'show', 'master', bridge]).catch(() => ({ stdout: '' }));
  return stdout.split('\n').filter(Boolean).map((l) => l.split(':')[1]!.trim().split('@')[0]!);
}

const BUILTIN_CHAINS = new Set(['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']);

/**
 * iptables + ip6tables rules and user chains as a sorted list, counters and
 * comments dropped. `ignore` filters lines (e.g. portmap's CNI-HOSTPORT-*
 * chains, which its DEL leaves on purpose).
 */
export async function firewallSnapshot(ignore: RegExp = /CNI-HOSTPORT-/): Promise<string[]> {
  const out: string[] = [];
  for (const tool of ['iptables-save', 'ip6tables-save']) {
    const { stdout } = await run(tool, [], { allowFail: true });
    let table = '';
    for (const line of stdout.split('\n')) {
      if (line.startsWith('*')) table = line.slice(1);
      else if (line.startsWith('-A ')) out.push(`${tool} ${table} ${line}`);
      else if (line.startsWith(':')) {
        const chain = line.slice(1).split(' ')[0]!;
        if (!BUILTIN_CHAINS.has(chain)) out.push(`${tool} ${table} chain ${chain}`);
      }
    }
  }
  return out.filter((l) => !ignore.test(l)).sort();
}

/** Split an iptables-save rule line into argv (double quotes as iptables-save writes them). */
function splitRule(line: string): string[] {
  const args: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(line))) args.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  return args;
}

/** Remove the nat chains named by `chainRe` and every rule jumping to them (IPv4 and IPv6). */
export async function removeNatChains(chainRe: RegExp): Promise<void> {
  for (const [save, tool] of [['iptables-save', 'iptables'], ['ip6tables-save', 'ip6tables']] as const) {
    const { stdout } = await run(save, ['-t', 'nat'], { allowFail: true });
    const lines = stdout.split('\n');
    const chains = lines.filter((l) => l.startsWith(':')).map((l) => l.slice(1).split(' ')[0]!).filter((c) => chainRe.test(c));
    if (chains.length === 0) continue;
    for (const l of lines) {
      if (!l.startsWith('-A ')) continue;
      const argv = splitRule(l);
      const chain = argv[1]!;
      const target = argv[argv.indexOf('-j') + 1];
      if (!chainRe.test(chain) && target && chainRe.test(target)) await run(tool, ['-t', 'nat', '-D', chain, ...argv.slice(2)], { allowFail: true });
    }
    for (const c of chains) await run(tool, ['-t', 'nat', '-F', c], { allowFail: true });
    for (const c of chains) await run(tool, ['-t', 'nat', '-X', c], { allowFail: true });
  }
}

/** Name of the per-pod chain portmap makes: CNI-DN- + the first 21 hex digits of sha512(network + containerId). */
export function portmapChain(network: string, containerId: string): string {
  return `CNI-DN-${createHash('sha512').update(network + containerId).digest('hex').slice(0, 21)}`;
}

/**
 * Every line of iptables-save, ip6tables-save and `nft list ruleset` that
 * names one of `needles` (a subnet prefix, a network name, chain names): what
 * a test made, whatever other tests on the machine do to the firewall meanwhile.
 */
export async function firewallLinesNaming(needles: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const [cmd, args] of [['iptables-save', []], ['ip6tables-save', []], ['nft', ['list', 'ruleset']]] as const) {
    const { stdout } = await run(cmd, [...args], { allowFail: true });
    for (const line of stdout.split('\n')) if (needles.some((n) => line.includes(n))) out.push(`${cmd}: ${line.trim()}`);
  }
  return out;
}

/**
 * Host interfaces that are not there in `before` and could be ours: ports of
 * `bridges`, those bridges, and interfaces with no master at all (a veth whose
 * bridge is gone). Ports of other bridges belong to other tests.
 */
export async function newLinksOf(before: string[], bridges: string[]): Promise<string[]> {
  const { stdout } = await execFileP('ip', ['-o', 'link', 'show']);
  const { stdout: br } = await execFileP('ip', ['-o', 'link', 'show', 'type', 'bridge']);
  const bridgeNames = new Set(br.split('\n').filter(Boolean).map((l) => l.split(':')[1]!.trim().split('@')[0]!));
  const out: string[] = [];
  for (const line of stdout.split('\n').filter(Boolean)) {
    const name = line.split(':')[1]!.trim().split('@')[0]!;
    if (before.includes(name)) continue;
    const master = / master (\S+)/.exec(line)?.[1];
    if (master ? bridges.includes(master) : !bridgeNames.has(name) || bridges.includes(name)) out.push(name);
  }
  return out;
}

/**
 * portmap's per-pod chains (CNI-DN-*) of one network: the targets of the
 * jumps whose comment names it (`dnat name: "<network>" id: "<container>"`).
 * Lets a test remove what its own pods left without touching other tests' chains.
 */
export async function natChainsOfNetwork(network: string): Promise<string[]> {
  const { stdout } = await run('iptables-save', ['-t', 'nat'], { allowFail: true });
  const chains = new Set<string>();
  for (const line of stdout.split('\n')) {
    const jump = /-j (CNI-DN-[0-9a-f]+)/.exec(line);
    if (jump && line.includes(`name: \\"${network}\\"`)) chains.add(jump[1]!);
  }
  return [...chains];
}

/** nft tables present (family + name), to drop the ones a test run brought in. */
export async function nftTables(): Promise<string[]> {
  const { stdout } = await run('nft', ['list', 'tables'], { allowFail: true });
  return stdout.split('\n').filter((l) => l.startsWith('table ')).map((l) => l.slice(6).trim());
}

/** Delete an nft table if it holds no rules any more. */
export async function dropEmptyNftTable(table: string): Promise<void> {
  const { stdout } = await run('nft', ['list', 'table', ...table.split(' ')], { allowFail: true });
  // rules sit two tabs deep; "type … hook … policy …" lines are chain headers
  if (stdout === '' || /^\t\t(?!type )\S/m.test(stdout)) return;
  await run('nft', ['delete', 'table', ...table.split(' ')], { allowFail: true });
}
