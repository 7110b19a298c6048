import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { execa } from 'execa';
import type { OciSeccomp } from './seccomp.js';

/**
 * Compiling a seccomp profile costs crun ~7–10 ms at every container start
 * (libseccomp builds the BPF program for three architectures), more than
 * the rest of crun's start. The profile is the same for every container with
 * the same capabilities, so it is compiled once per node boot with libseccomp
 * itself (Debian's python3-seccomp, the same library crun links) and handed
 * to crun as `run.oci.seccomp_bpf_data`, which crun loads as is.
 *
 * The compiler follows crun's reading of the OCI profile: unknown syscall
 * names are skipped, ERRNO without errnoRet is EPERM, rules whose action is
 * the default are dropped. Anything it does not handle the same way (other
 * actions, several conditions on one argument, flags) makes it give up, and
 * crun compiles the JSON profile as before: the cache only ever saves time.
 */
const COMPILER = String.raw`
import json, os, sys
import seccomp
p = json.load(sys.stdin)
if p.get('flags') or p.get('listenerPath'):
    sys.exit(3)
EPERM = 1
def action(name, errno):
    if name == 'SCMP_ACT_ALLOW': return ('allow', None), seccomp.ALLOW
    if name == 'SCMP_ACT_ERRNO':
        e = EPERM if errno is None else errno
        return ('errno', e), seccomp.ERRNO(e)
    if name in ('SCMP_ACT_KILL', 'SCMP_ACT_KILL_THREAD'): return ('kill', None), seccomp.KILL
    if name == 'SCMP_ACT_KILL_PROCESS': return ('killp', None), seccomp.KILL_PROCESS
    if name == 'SCMP_ACT_LOG': return ('log', None), seccomp.LOG
    sys.exit(3)
ARCH = {'SCMP_ARCH_X86_64': seccomp.Arch.X86_64, 'SCMP_ARCH_X86': seccomp.Arch.X86, 'SCMP_ARCH_X32': seccomp.Arch.X32,
        'SCMP_ARCH_AARCH64': seccomp.Arch.AARCH64, 'SCMP_ARCH_ARM': seccomp.Arch.ARM}
OPS = {'SCMP_CMP_NE': seccomp.NE, 'SCMP_CMP_LT': seccomp.LT, 'SCMP_CMP_LE': seccomp.LE, 'SCMP_CMP_EQ': seccomp.EQ,
       'SCMP_CMP_GE': seccomp.GE, 'SCMP_CMP_GT': seccomp.GT, 'SCMP_CMP_MASKED_EQ': seccomp.MASKED_EQ}
default_key, default = action(p['defaultAction'], p.get('defaultErrnoRet'))
f = seccomp.SyscallFilter(default)
native = seccomp.Arch.NATIVE
for a in p.get('architectures') or []:
    if a not in ARCH: sys.exit(3)
    if not f.exist_arch(ARCH[a]): f.add_arch(ARCH[a])
for rule in p.get('syscalls') or []:
    key, act = action(rule['action'], rule.get('errnoRet'))
    if key == default_key: continue
    args = rule.get('args') or []
    if len({a['index'] for a in args}) != len(args): sys.exit(3)
    conds = []
    for a in args:
        if a['op'] not in OPS: sys.exit(3)
        conds.append(seccomp.Arg(a['index'], OPS[a['op']], a['value'], a.get('valueTwo', 0)))
    for name in rule['names']:
        try:
            if seccomp.resolve_syscall(native, name) == -1: continue
        except ValueError:
            continue
        f.add_rule(act, name, *conds)
# A binary search on the syscall number instead of libseccomp's default list (one compare per rule):
# the same decisions, ~log2(rules) compares per syscall instead of up to one per rule, and a cheaper attach (the kernel runs
# the program once per syscall number to build its allow cache). Measured: load + exec of busybox true
# under the filter 1.08 -> 0.61 ms over no filter. A libseccomp before 2.5 has no such attribute: the list then.
try:
    f.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
except (AttributeError, ValueError, RuntimeError, OSError):
    pass
f.export_bpf(sys.stdout)
`;

const CACHE_DIR = '/run/stevedore/seccomp-bpf';
const PYTHON = '/usr/bin/python3';

/** Compilations under way in this process, by profile hash: the apps of one pod start together and share one. */
const inFlight = new Map<string, Promise<string | undefined>>();
/**
 * Programs this process already has, by profile JSON: a start then costs no
 * read of the node's cache (a node has a handful of distinct profiles; the
 * bound only keeps changing Localhost profiles from piling up).
 */
const known = new Map<string, string>();
const KNOWN_MAX = 32;

/** The profile as a BPF program (base64), from the node's cache or compiled now; undefined when it cannot be. */
export function compiledSeccomp(profile: OciSeccomp): Promise<string | undefined> {
  const json = JSON.stringify(profile);
  const hit = known.get(json);
  if (hit) return Promise.resolve(hit);
  // The compiler is part of the key: a program cached by an earlier compiler is not taken for this one's.
  const key = createHash('sha256').update(COMPILER).update('\0').update(json).digest('hex');
  let pending = inFlight.get(key);
  if (!pending) {
    pending = cachedOrCompiled(json, path.join(CACHE_DIR, `${key}.bpf`)).then((bpf) => {
      if (bpf) {
        if (known.size >= KNOWN_MAX) known.delete(known.keys().next().value!);
        known.set(json, bpf);
      }
      return bpf;
    }).finally(() => inFlight.delete(key));
    inFlight.set(key, pending);
  }
  return pending;
}

async function cachedOrCompiled(json: string, file: string): Promise<string | undefined> {
  const cached = await fs.readFile(file).catch(() => undefined);
  if (cached?.length && cached.length % 8 === 0) return cached.toString('base64');
  const r = await execa(PYTHON, ['-c', COMPILER], { input: json, encoding: 'buffer', stripFinalNewline: false, reject: false, timeout: 10_000 });
  // execa hands back a Uint8Array: its own toString() would not be base64.
  const bpf = Buffer.from(r.stdout as unknown as Uint8Array);
  // A classic BPF program is a whole number of 8-byte instructions.
  if (r.exitCode !== 0 || !bpf?.length || bpf.length % 8 !== 0) return undefined;
  // The cache only saves time: failing to keep the program (another process writing it too, a full /run) loses nothing.
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await fs.mkdir(CACHE_DIR, { recursive: true, mode: 0o700 });
    await fs.writeFile(tmp, bpf, { mode: 0o600 });
    await fs.rename(tmp, file);
  } catch {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
  }
  return bpf.toString('base64');
}

/**
 * Hand crun the spec's seccomp profile precompiled (`run.oci.seccomp_bpf_data`,
 * which crun loads as is), when it can be compiled; otherwise crun compiles
 * the JSON profile itself. The namespaces stage1 and the kvm guest's crun both
 * take it (the guest runs the same Debian crun; under TCG the compilation
 * costs it ~0.2 s per app start).
 */
export async function precompileSeccomp(spec: Record<string, unknown>): Promise<void> {
  const seccomp = (spec.linux as { seccomp?: OciSeccomp } | undefined)?.seccomp;
  const bpf = seccomp && await compiledSeccomp(seccomp);
  if (bpf) spec.annotations = { ...(spec.annotations as Record<string, string> | undefined), 'run.oci.seccomp_bpf_data': bpf };
}
