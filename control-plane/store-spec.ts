import * as path from 'node:path';
import { InvalidInput, UserError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { SqliteStore, type ObjectStore } from './store.js';
import { EtcdStore, DEFAULT_ETCD_PREFIX } from './etcd-store.js';

/** `--store` parsed: the embedded SQLite file, or the endpoints of one etcd cluster. */
export type StoreSpec = { kind: 'sqlite'; file: string } | { kind: 'etcd'; endpoints: string[] };

/**
 * `sqlite:PATH` (a relative PATH is taken from the data dir) or `etcd:URL[,URL...]`
 * (http:// URLs of the members of one etcd cluster). Absent: sqlite:DATADIR/state.db,
 * what the control plane always kept.
 */
export function parseStoreSpec(text: string | undefined, dataDir: string): StoreSpec {
  if (text === undefined || text === '') return { kind: 'sqlite', file: path.join(dataDir, 'state.db') };
  const colon = text.indexOf(':');
  const scheme = colon < 0 ? text : text.slice(0, colon);
  const rest = colon < 0 ? '' : text.slice(colon + 1);
  if (scheme === 'sqlite') {
    if (!rest) throw new InvalidInput(`--store ${text} names no database file`, 'write it like sqlite:/var/lib/stevedore/state.db, or leave --store out for DATADIR/state.db');
    return { kind: 'sqlite', file: path.resolve(dataDir, rest) };
  }
  if (scheme === 'etcd') {
    const endpoints = rest.split(',').map((u) => u.trim()).filter(Boolean);
    if (!endpoints.length) throw new InvalidInput(`--store ${text} names no etcd endpoint`, 'write it like etcd:http://127.0.0.1:2379 (several members separated by commas)');
    for (const e of endpoints) {
      let url: URL;
      try {
        url = new URL(e);
      } catch {
        throw new InvalidInput(`--store: etcd endpoint ${e} is not a URL`, 'write it like http://127.0.0.1:2379');
      }
      // TLS to etcd would need client certificates passed through; refused rather than tried without them.
      if (url.protocol !== 'http:') throw new InvalidInput(`--store: etcd endpoint ${e} uses ${url.protocol.replace(/:$/, '')}, only http is supported`, 'run etcd on a loopback or private address with http://, or file an issue for TLS to etcd');
      if (!url.port) throw new InvalidInput(`--store: etcd endpoint ${e} has no port`, 'etcd serves clients on 2379 by default: http://HOST:2379');
    }
    return { kind: 'etcd', endpoints };
  }
  throw new InvalidInput(`--store ${text}: unknown store "${scheme}"`, 'use sqlite:PATH (the default, embedded) or etcd:URL[,URL...]');
}

export function describeStore(text: string | undefined, dataDir: string): string {
  const spec = parseStoreSpec(text, dataDir);
  return spec.kind === 'sqlite' ? `sqlite:${spec.file}` : `etcd:${spec.endpoints.join(',')}`;
}

export function openStore(text: string | undefined, dataDir: string, log: Logger, opts: { retain?: number; etcdPrefix?: string } = {}): ObjectStore {
  const spec = parseStoreSpec(text, dataDir);
  if (spec.kind === 'etcd') return new EtcdStore({ endpoints: spec.endpoints, prefix: opts.etcdPrefix ?? DEFAULT_ETCD_PREFIX, retain: opts.retain }, log);
  try {
    return new SqliteStore(dataDir, log, { retain: opts.retain, file: spec.file });
  } catch (err) {
    throw new UserError(`cannot open the control plane database ${spec.file}: ${(err as Error).message}`, { hint: 'check that the directory is writable and not used by another control plane', cause: err });
  }
}
