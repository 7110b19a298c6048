import { executableIn, runPiped, type PipedRun } from '../common/run-captured.js';
import { CniError, type CniCommand, type CniPluginErrorBody } from './types.js';

export interface PluginInvocation {
  network: string;
  plugin: string;
  command: CniCommand;
  /** env added to the runner's own (any inherited CNI_* are dropped first) */
  env: Record<string, string>;
  stdin: string;
  binDirs: readonly string[];
  timeoutMs: number;
}

/** Find a plugin binary in the search path, or fail with an install hint. */
export async function findPlugin(network: string, type: string, binDirs: readonly string[], command: CniCommand): Promise<string> {
  const found = executableIn(binDirs, type);
  if (found) return found;
  throw new CniError({
    network, plugin: type, command, reason: 'CNIPluginNotFound',
    message: `CNI plugin "${type}" of network "${network}" not found in ${binDirs.join(':')}`,
    hint: `install the plugin (Debian: apt-get install containernetworking-plugins puts it in /usr/lib/cni) or put an executable "${type}" in one of: ${binDirs.join(', ')}`,
  });
}

/** A plugin's answer is a result or an error of a few KiB; more is not a CNI plugin talking. */
const MAX_PLUGIN_OUTPUT = 4 << 20;

/**
 * Run one plugin binary per the CNI protocol; returns its parsed stdout (or undefined when empty). Through
 * common/run-captured's vfork off the event loop, not Node's spawn, which forks the whole agent.
 */
export async function execPlugin(binary: string, inv: PluginInvocation): Promise<unknown> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CNI_') && v !== undefined) env[k] = v;
  Object.assign(env, inv.env);
  const where = `CNI ${inv.command} failed in plugin "${inv.plugin}" of network "${inv.network}"`;
  let run: PipedRun;
  try {
    run = await runPiped([binary], { env, stdin: inv.stdin, timeoutMs: inv.timeoutMs, maxOutputBytes: MAX_PLUGIN_OUTPUT });
  } catch (err) {
    throw new CniError({ network: inv.network, plugin: inv.plugin, command: inv.command, message: `${where}: cannot execute ${binary}: ${(err as Error).message}`, cause: err });
  }
  const { exitCode: code, signal, stdout, stderr, timedOut } = run;
  const stderrTail = stderr.trim().slice(-2000) || undefined;
  if (timedOut) {
    throw new CniError({ network: inv.network, plugin: inv.plugin, command: inv.command, reason: 'CNIPluginTimeout', message: `${where}: no answer within ${inv.timeoutMs} ms (killed)`, stderr: stderrTail });
  }
  if (code !== 0) {
    let body: CniPluginErrorBody | undefined;
    try {
      const parsed: unknown = JSON.parse(stdout);
      if (typeof parsed === 'object' && parsed !== null) body = parsed as CniPluginErrorBody;
    } catch {
      // not the spec's error JSON: fall back to stderr
    }
    const msg = body?.msg ?? (stderrTail || stdout.trim() || (signal ? `killed by signal ${signal}` : `exit ${code}`));
    const codePart = body?.code !== undefined ? ` (code ${body.code})` : '';
    throw new CniError({
      network: inv.network, plugin: inv.plugin, command: inv.command,
      message: `${where}${codePart}: ${msg}${body?.details ? `: ${body.details}` : ''}`,
      code: body?.code, pluginMsg: body?.msg ?? msg, details: body?.details, stderr: stderrTail,
    });
  }
  if (stdout.trim() === '') return undefined;
  try {
    return JSON.parse(stdout) as unknown;
  } catch (err) {
    throw new CniError({ network: inv.network, plugin: inv.plugin, command: inv.command, message: `${where}: its output is not JSON: ${stdout.slice(0, 200)}`, cause: err, stderr: stderrTail });
  }
}
