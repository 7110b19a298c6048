/**
 * A command run inside a running app with its streams kept apart (exec,
 * `pod enter`): the stage1 says how to enter the app (Stage1.enterArgv, which
 * joins the app's namespaces and cgroups), this module runs that argv with
 * pipes or a terminal, reports the exit status, and kills every process the
 * command left when its caller goes away.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { UserError } from '../common/errors.js';
import type { ExecExit, ExecOptions, ExecProcess, TerminalSize } from '../runtime-api/streams.js';
export type { ExecExit, ExecOptions, ExecProcess, TerminalSize } from '../runtime-api/streams.js';

/** How a stage1 runs a command in an app: its enter argv, with or without a terminal made inside the app. */
export interface EnterPlan {
  /** argv without a terminal (Stage1.enterArgv). */
  argv: (command: string[]) => string[];
  /** argv whose terminal is made inside the app and whose master is sent to `consoleSocket` (Stage1.enterTtyArgv), if the stage1 can. */
  ttyArgv?: (command: string[], consoleSocket: string, size?: TerminalSize) => string[];
  /** argv that makes and relays the terminal itself (Stage1.enterTerminalArgv: kvm's, in the guest), if the stage1 does. */
  terminalArgv?: (command: string[], size?: TerminalSize) => string[];
  /** Processes whose sessions an exec's clean-up must never touch (the app's own). */
  protectedPids: number[];
}

// dist/runtime-rkt/exec.js -> <repo>/stage1/pty-relay.py
const PTY_RELAY = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../stage1/pty-relay.py');
const PYTHON = '/usr/bin/python3';

const clampSize = (n: number) => Math.max(1, Math.min(65535, Math.floor(n)));
const sizeArgs = (size: TerminalSize | undefined) => (size ? ['--size', `${clampSize(size.cols)}x${clampSize(size.rows)}`] : []);

export function startExec(plan: EnterPlan, command: string[], opts: ExecOptions): ExecProcess {
  if (!command.length) throw new UserError('no command to run in the container', { hint: 'give the command after --, e.g. -- sh' });
  let argv: string[];
  let consoleDir: string | undefined;
  const size = opts.size && { cols: clampSize(opts.size.cols), rows: clampSize(opts.size.rows) };
  if (opts.tty && plan.terminalArgv) {
    argv = plan.terminalArgv(command, size);
  } else if (opts.tty) {
    if (!fs.existsSync(PYTHON)) throw new UserError(`a terminal for exec needs ${PYTHON}, and this node has none`, { hint: 'install python3 on the node (apt-get install python3) or run the command without a terminal (no -t)' });
    if (plan.ttyArgv) {
      consoleDir = fs.mkdtempSync(path.join(os.tmpdir(), 'stevedore-console-'));
      const socket = path.join(consoleDir, 'console.sock');
      argv = [PYTHON, PTY_RELAY, '--console-socket', socket, ...sizeArgs(opts.size), '--', ...plan.ttyArgv(command, socket, size)];
    } else {
      argv = [PYTHON, PTY_RELAY, ...sizeArgs(opts.size), '--', ...plan.argv(command)];
    }
  } else {
    argv = plan.argv(command);
  }
  // A session of its own: every process of the exec that does not start another one is found by it.
  const child = spawn(argv[0]!, argv.slice(1), {
    detached: true,
    stdio: [opts.stdin || opts.tty ? 'pipe' : 'ignore', 'pipe', 'pipe', ...(opts.tty ? ['pipe' as const] : [])],
  });
  const rootPid = child.pid;
  const resizePipe = opts.tty ? (child.stdio[3] as Writable) : undefined;
  resizePipe?.on('error', () => undefined);
  child.stdin?.on('error', () => undefined);
  const resize = (size: TerminalSize) => {
    if (!resizePipe || resizePipe.destroyed) return;
    resizePipe.write(`${clampSize(size.cols)} ${clampSize(size.rows)}\n`);
  };
  let stdout: Readable = child.stdout!;
  if (opts.tty) {
    // The relay's own complaints (crun's "container not running", say) belong on the terminal.
    const merged = new PassThrough();
    let open = 2;
    for (const s of [child.stdout!, child.stderr!]) {
      s.pipe(merged, { end: false });
      s.on('end', () => { if (--open === 0) merged.end(); });
    }
    stdout = merged;
  }
  let exited = false;
  const exit = new Promise<ExecExit>((resolve) => {
    child.on('exit', () => { exited = true; });
    child.on('error', (err) => resolve({ code: (err as NodeJS.ErrnoException).code === 'ENOENT' ? 127 : 126 }));
    child.on('close', (code, signal) => {
      if (consoleDir) fs.rmSync(consoleDir, { recursive: true, force: true });
      resolve({ code: code ?? 128 + (signal ? os.constants.signals[signal] : 0) });
    });
  });
  let killed: Promise<void> | undefined;
  return {
    stdin: child.stdin ?? undefined,
    stdout,
    stderr: opts.tty ? undefined : child.stderr!,
    resize,
    exit,
    kill() {
      // Once the command is reaped its pid may be reused: then only its session (which keeps the id taken) is followed.
      killed ??= rootPid === undefined ? Promise.resolve() : killExecProcesses(rootPid, plan.protectedPids, { followTree: !exited });
      return killed;
    },
  };
}

interface ProcEntry { pid: number; ppid: number; sid: number; zombie: boolean }

function readProcTable(): ProcEntry[] {
  const entries: ProcEntry[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    // After "(comm)": state ppid pgrp session ...
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    entries.push({ pid: Number(name), ppid: Number(fields[1]), sid: Number(fields[3]), zombie: fields[0] === 'Z' || fields[0] === 'X' });
  }
  return entries;
}

/**
 * SIGKILL the exec's process tree and every process left in one of its
 * sessions (a daemonised child is re-parented to the container's init, but
 * keeps its session unless it made a new one). Rounds until nothing is left,
 * since a process may fork while the others die. The sessions of
 * `protectedPids` (the app's) and of this process are never touched.
 */
export async function killExecProcesses(rootPid: number, protectedPids: number[], opts: { followTree: boolean } = { followTree: true }): Promise<void> {
  for (let round = 0; round < 20; round++) {
    const table = readProcTable();
    const byPid = new Map(table.map((e) => [e.pid, e]));
    const spared = new Set([process.pid, ...protectedPids].map((p) => byPid.get(p)?.sid).filter((s): s is number => s !== undefined && s > 0));
    const children = new Map<number, number[]>();
    for (const e of table) children.set(e.ppid, [...(children.get(e.ppid) ?? []), e.pid]);
    const tree = new Set<number>();
    const queue = opts.followTree && byPid.has(rootPid) ? [rootPid] : [];
    while (queue.length) {
      const pid = queue.pop()!;
      if (tree.has(pid)) continue;
      tree.add(pid);
      queue.push(...(children.get(pid) ?? []));
    }
    const sessions = new Set([rootPid, ...[...tree].map((p) => byPid.get(p)!.sid)].filter((s) => s > 0 && !spared.has(s)));
    const targets = table.filter((e) => (tree.has(e.pid) || sessions.has(e.sid)) && e.pid !== process.pid && !protectedPids.includes(e.pid) && !e.zombie);
    if (!targets.length) return;
    for (const t of targets) {
      try {
        process.kill(t.pid, 'SIGKILL');
      } catch { /* already gone */ }
    }
    await new Promise((r) => setTimeout(r, 20 * (round + 1)));
  }
}
