import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { execa } from 'execa';
import { stringify } from 'yaml';
import { UserError } from '../common/errors.js';
import { atomicWrite } from '../common/fsutil.js';
import type { AgentConfig } from './config.js';

export const AGENT_UNIT = 'stevedore-agent.service';

/**
 * The agent's unit. KillMode=process: stopping or restarting the agent must
 * never touch pods (they are units of their own anyway, but a stray child of
 * the agent — journalctl for a log stream — may die with it).
 */
export function agentUnitFile(cliPath: string, configPath: string): string {
  return `[Unit]
Description=Stevedore node agent
Documentation=file://${path.resolve(path.dirname(cliPath), '..', 'agent', 'README.md')}
After=dbus.service
Wants=dbus.service

[Service]
Type=notify
NotifyAccess=main
ExecStart=${process.execPath} ${cliPath} agent --config ${configPath}
Environment=STEVEDORE_LOG_LEVEL=info
Restart=always
RestartSec=2
WatchdogSec=60
TimeoutStartSec=120
KillMode=process

[Install]
WantedBy=multi-user.target
`;
}

/** Write the agent's config and unit, reload systemd, enable the unit, and start it with `now`. */
export async function installAgent(cfg: AgentConfig, opts: { configPath: string; unitDir: string; now: boolean }): Promise<void> {
  const cliPath = path.resolve(new URL('../../bin/stevedore.js', import.meta.url).pathname);
  await fs.mkdir(path.dirname(opts.configPath), { recursive: true });
  await atomicWrite(opts.configPath, stringify(cfg));
  await fs.mkdir(opts.unitDir, { recursive: true });
  await atomicWrite(path.join(opts.unitDir, AGENT_UNIT), agentUnitFile(cliPath, opts.configPath));
  const systemctl = async (...args: string[]) => {
    const r = await execa('systemctl', args, { reject: false });
    if (r.exitCode !== 0) throw new UserError(`systemctl ${args.join(' ')} failed: ${r.stderr.trim()}`, { hint: 'agent install needs a running systemd (PID 1, or a node sandbox: stevedore sandbox exec -- stevedore agent install …)' });
  };
  await systemctl('daemon-reload');
  await systemctl('enable', ...(opts.now ? ['--now'] : []), AGENT_UNIT);
}
