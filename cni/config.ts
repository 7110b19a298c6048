import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { readdirOrEmpty } from '../common/fsutil.js';
import { CniConfigError, SUPPORTED_CNI_VERSIONS, type CniNetworkConfig, type CniPluginConf } from './types.js';

/** File names libcni considers network configs. */
export const CONFIG_EXTENSIONS = ['.conflist', '.conf', '.json'] as const;

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const TYPE_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export interface LoadedConfig {
  file: string;
  config: CniNetworkConfig;
}

/** Config files in a directory, in lexical order (libcni's order). Missing dir = none. */
export async function configFiles(confDir: string): Promise<string[]> {
  const names = await readdirOrEmpty(confDir);
  return names
    .filter((n) => !n.startsWith('.') && CONFIG_EXTENSIONS.some((ext) => n.endsWith(ext)))
    .sort()
    .map((n) => path.join(confDir, n));
}

/** Parse and validate one config text; a single-plugin .conf becomes a one-entry list. */
export function parseNetworkConfig(text: string, file = '<inline>'): CniNetworkConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CniConfigError(`CNI config ${file} is not valid JSON: ${(err as Error).message}`, {
      file, hint: 'fix or remove the file; the runtime reads the first *.conflist/*.conf/*.json in lexical order', cause: err,
    });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new CniConfigError(`CNI config ${file} is not a JSON object`, { file });
  const obj = raw as Record<string, unknown>;
  const bad = (what: string): never => {
    throw new CniConfigError(`CNI config ${file}: ${what}`, { file, network: typeof obj.name === 'string' ? obj.name : undefined });
  };
  if (typeof obj.name !== 'string' || !NAME_RE.test(obj.name)) bad(`"name" must be a string matching ${NAME_RE.source}, got ${JSON.stringify(obj.name)}`);
  if (typeof obj.cniVersion !== 'string') bad('"cniVersion" is missing');
  if (!(SUPPORTED_CNI_VERSIONS as readonly string[]).includes(obj.cniVersion as string)) {
    bad(`cniVersion ${JSON.stringify(obj.cniVersion)} is not supported (supported: ${SUPPORTED_CNI_VERSIONS.join(', ')})`);
  }
  let plugins: unknown;
  let config: CniNetworkConfig;
  if ('plugins' in obj) {
    plugins = obj.plugins;
    config = { ...(obj as CniNetworkConfig) };
  } else {
    // A single plugin config (.conf): the top-level object is the plugin.
    if (file.endsWith('.conflist')) bad('a .conflist needs a "plugins" array');
    const { name, cniVersion, ...plugin } = obj;
    plugins = [plugin];
    config = { name: name as string, cniVersion: cniVersion as string, plugins: [] };
  }
  if (!Array.isArray(plugins) || plugins.length === 0) bad('"plugins" must be a non-empty array');
  (plugins as unknown[]).forEach((p, i) => {
    if (typeof p !== 'object' || p === null || Array.isArray(p)) bad(`plugins[${i}] is not an object`);
    const t = (p as Record<string, unknown>).type;
    if (typeof t !== 'string' || !TYPE_RE.test(t)) bad(`plugins[${i}].type must be a plugin binary name, got ${JSON.stringify(t)}`);
  });
  config.plugins = plugins as CniPluginConf[];
  if (config.disableCheck !== undefined && typeof config.disableCheck !== 'boolean') bad('"disableCheck" must be a boolean');
  return config;
}

/**
 * Load the network: the one named `networkName`, or the first config file in
 * lexical order. With a name, unreadable files that are not it are skipped
 * (and listed if the name is not found), like libcni.
 */
export async function loadNetworkConfig(confDir: string, networkName?: string): Promise<LoadedConfig> {
  const files = await configFiles(confDir);
  if (files.length === 0) {
    throw new CniConfigError(`no CNI network config in ${confDir}`, {
      hint: 'the agent writes a default network there when it has a pod CIDR; or add a *.conflist',
    });
  }
  const broken: string[] = [];
  for (const file of files) {
    // Synchronous: a pod start loads its network here, and a config is a small file; through libuv's pool the
    // read was four round trips, each waiting for a pool thread and then for the event loop on a busy node.
    const text = readFileSync(file, 'utf8');
    if (networkName === undefined) return { file, config: parseNetworkConfig(text, file) };
    try {
      const config = parseNetworkConfig(text, file);
      if (config.name === networkName) return { file, config };
    } catch (err) {
      broken.push(`${file}: ${(err as Error).message}`);
    }
  }
  throw new CniConfigError(`no CNI network named "${networkName}" in ${confDir}${broken.length ? ` (unusable files: ${broken.join('; ')})` : ''}`, {
    network: networkName,
  });
}
