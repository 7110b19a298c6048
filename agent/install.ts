import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { atomicWrite } from '../common/fsutil.js';
import { cliCommand, installUnit } from '../common/unit-install.js';
import type { AgentConfig } from './config.js';

export const AGENT_UNIT = 'stevedore-agent.service';

/**
 * The agent's unit. KillMode=process: stopping or restarting the agent must
 * never touch pods (they are units of their own anyway, but a stray child of
 * the agent — journalctl for a log stream — may die with it). The kvm stage1's
 * assets stay where the installing command was told (STEVEDORE_KVM_ASSETS).
 */
export function agentUnitFile(configPath: string): string {
  return `[Unit]
Description=Stevedore node agent
After=dbus.service
Wants=dbus.service

[Service]
Type=notify
NotifyAccess=main
ExecStart=${cliCommand()} agent --config ${configPath}
Environment=STEVEDORE_LOG_LEVEL=info
${process.env.STEVEDORE_KVM_ASSETS ? `Environment=STEVEDORE_KVM_ASSETS=${process.env.STEVEDORE_KVM_ASSETS}\n` : ''}Restart=always
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
  await fs.mkdir(path.dirname(opts.configPath), { recursive: true });
  await atomicWrite(opts.configPath, stringify(cfg));
  await installUnit(opts.unitDir, AGENT_UNIT, agentUnitFile(opts.configPath), opts.now);
}
