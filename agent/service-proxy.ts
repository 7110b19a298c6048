/**
 * The node's service proxy (kube-proxy's role, nftables mode): keeps Services
 * and EndpointSlices from the API server (list, then watch; relist on 410 or
 * error) and programs them into one nftables table of ours through the `nft`
 * binary, one `nft -f -` transaction per change (the rules in
 * service-rules.ts). Changes arriving together become one transaction.
 *
 * The table is a kernel object: it stays when the agent stops or crashes, so
 * service traffic keeps flowing while no agent runs. A starting agent reads
 * the names in the table back (`nft -t -j list chains|sets|maps`) and rewrites it in one transaction
 * (whatever it holds, the result is the same ruleset: no duplicate rules);
 * after that only what changed is written. `stevedore down` (or
 * `removeProxyTable`) deletes the table.
 */
import * as k8s from '@kubernetes/client-node';
import type { Logger } from '../common/log.js';
import { UserError } from '../common/errors.js';
import { commandOnPath, runPiped } from '../common/run-captured.js';
import type { KubeClients } from './kube.js';
import { desiredState, fixedFragment, transaction, type EndpointSliceLike, type Fragment, type FragmentCache, type HairpinCounts, type KnownState, type ProxyOptions, type ServiceLike } from './service-rules.js';

export const DEFAULT_PROXY_TABLE = 'stevedore-proxy';
/** A full rewrite now and then repairs anything changed behind our back (kube-proxy: --sync-period). */
const FULL_RESYNC_MS = 5 * 60_000;

export interface NftOptions {
  /** The command that runs nft (default `['nft']`; tests: `['ip', 'netns', 'exec', NS, 'nft']`). */
  nft?: string[];
}

/**
 * How long one nft call may take: a full rewrite at 5 000 Services is a few seconds; one that hangs
 * (the kernel's nftables mutex held by another program) must not stop every later sync.
 */
const NFT_TIMEOUT_MS = 60_000;
/** What an nft listing of names (no rules, no elements) or an error prints stays far below this. */
const NFT_MAX_OUTPUT_BYTES = 64 << 20;

/**
 * One nft call, forked off the event loop (common/run-captured.ts: node's spawn would copy the
 * agent's page tables on the event loop at every Service change) and killed past NFT_TIMEOUT_MS.
 */
async function runNft(argv: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    // runPiped execs the path it is given; a name found nowhere stays as it is and fails with ENOENT below.
    const r = await runPiped([commandOnPath(argv[0]!) ?? argv[0]!, ...argv.slice(1)], { env: process.env as Record<string, string>, stdin: input ?? '', timeoutMs: NFT_TIMEOUT_MS, maxOutputBytes: NFT_MAX_OUTPUT_BYTES });
    const stderr = r.timedOut ? `${r.stderr}(killed: no answer in ${NFT_TIMEOUT_MS / 1000} s)` : r.stderr;
    return { code: r.exitCode, stdout: r.stdout, stderr };
  } catch (err) {
    return { code: 127, stdout: '', stderr: `${argv[0]}: ${(err as Error).message}` };
  }
}

/** Names of the chains and sets/maps our table holds now (none when it does not exist): no rules, no elements, so it stays fast at any size. */
export async function readTable(table: string, o: NftOptions = {}): Promise<KnownState> {
  const known = { names: { chains: new Set<string>(), sets: new Set<string>() } };
  // Three small listings at once (listing the table, or a map, would fetch every element: seconds at 5 000 Services).
  const lists = await Promise.all((['chains', 'sets', 'maps'] as const).map(async (what) => {
    const r = await runNft([...(o.nft ?? ['nft']), '-t', '-j', 'list', what, 'ip']);
    if (r.code !== 0) throw new Error(`nft -j list ${what} ip failed: ${r.stderr.trim()}`);
    return r.stdout;
  }));
  for (const stdout of lists) {
    for (const item of (JSON.parse(stdout || '{}').nftables ?? []) as Array<Record<string, { name?: string; table?: string }>>) {
      const obj = item.chain ?? item.set ?? item.map;
      if (!obj?.name || obj.table !== table) continue;
      (item.chain ? known.names.chains : known.names.sets).add(obj.name);
    }
  }
  return known;
}

export async function applyTransaction(script: string, o: NftOptions = {}): Promise<void> {
  if (!script) return;
  const r = await runNft([...(o.nft ?? ['nft']), '-f', '-'], script);
  if (r.code !== 0) {
    const first = script.split('\n').slice(0, 3).join(' | ');
    throw new Error(`nft -f - failed (${r.code}): ${r.stderr.trim() || r.stdout.trim()} (transaction starting: ${first})`);
  }
}

/** Delete our table (stevedore down); a table that is not there is fine. */
export async function removeProxyTable(table: string, o: NftOptions = {}): Promise<void> {
  const r = await runNft([...(o.nft ?? ['nft']), 'delete', 'table', 'ip', table]);
  if (r.code !== 0 && !/No such file or directory/.test(r.stderr)) throw new Error(`nft delete table ip ${table} failed: ${r.stderr.trim()}`);
}

export interface SyncStats { at: number; ms: number; full: boolean; lines: number }

/**
 * Programs a set of Services and EndpointSlices into the table. `update()` may be
 * called at any rate: writes are serialized and coalesced (the latest data wins).
 */
export class ServiceRules {
  private known: KnownState | undefined;
  /** The data as last set (cluster DNS reads it too). */
  readonly services = new Map<string, ServiceLike>();
  readonly slices = new Map<string, EndpointSliceLike>();
  private readonly cache: FragmentCache = new Map();
  private readonly hairpin: HairpinCounts = new Map();
  private readonly fixed: Fragment;
  private running: Promise<void> | undefined;
  private again = false;
  private lastFull = 0;
  /** The last sync (for metrics, tests and the bench). */
  last: SyncStats | undefined;
  /** Syncs done (tests wait for a count to pass). */
  syncs = 0;

  constructor(private readonly opts: ProxyOptions & NftOptions, private readonly log: Logger) {
    this.fixed = fixedFragment(opts);
  }

  setService(key: string, svc: ServiceLike | undefined): void { svc ? this.services.set(key, svc) : this.services.delete(key); }
  setSlice(key: string, slice: EndpointSliceLike | undefined): void { slice ? this.slices.set(key, slice) : this.slices.delete(key); }

  /** Forget what the kernel holds: the next sync reads the table back and rewrites it whole. */
  forceFull(): void { this.known = undefined; }

  /** Bring the kernel in line with the data; resolves when a sync that saw the latest data is done. */
  sync(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.syncOnce();
        } while (this.again);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private async syncOnce(): Promise<void> {
    const started = performance.now();
    const full = !this.known || Date.now() - this.lastFull > FULL_RESYNC_MS;
    const known = full ? await readTable(this.opts.table, this.opts) : this.known!;
    const want = desiredState(this.services, this.slices, this.opts, this.cache, this.fixed);
    const script = transaction(this.opts.table, known, want, this.hairpin);
    try {
      await applyTransaction(script, this.opts);
    } catch (err) {
      this.known = undefined; // read it back next time
      throw err;
    }
    this.known = { state: want };
    if (full) this.lastFull = Date.now();
    this.syncs++;
    this.last = { at: Date.now(), ms: performance.now() - started, full, lines: script ? script.split('\n').length - 1 : 0 };
    if (script) this.log.debug({ ...this.last, table: this.opts.table }, 'service rules synced');
  }
}

const keyOf = (o: { metadata?: { namespace?: string; name?: string } }) => `${o.metadata?.namespace}/${o.metadata?.name}`;

/**
 * The proxy of a running agent: list/watch Services and EndpointSlices (all namespaces) and
 * keep the table in step. Failing syncs are retried with a back-off; traffic keeps using
 * whatever the table holds meanwhile.
 */
export class ServiceProxy {
  readonly rules: ServiceRules;
  private retry: NodeJS.Timeout | undefined;

  /** onChange: called after every change of the data (cluster DNS rebuilds its index). */
  constructor(private readonly kube: KubeClients, opts: ProxyOptions & NftOptions, private readonly log: Logger, private readonly onChange: () => void = () => undefined) {
    this.rules = new ServiceRules(opts, log);
  }

  /** Fails (UserError) when nft cannot run at all, so a misconfigured node says so at start. */
  async checkNft(o: NftOptions = {}): Promise<void> {
    const r = await runNft([...(o.nft ?? ['nft']), '--version']);
    if (r.code !== 0) throw new UserError(`the service proxy needs nft (nftables), which cannot run: ${r.stderr.trim()}`, { hint: 'install nftables (apt-get install nftables), or start the agent with --proxy-mode none' });
  }

  private kick = () => {
    this.onChange();
    void this.rules.sync().then(() => {
      if (this.retry) { clearTimeout(this.retry); this.retry = undefined; }
    }, (err) => {
      this.log.warn({ err: String(err) }, 'service proxy sync failed; retrying (the table keeps its last rules)');
      this.retry ??= setTimeout(() => { this.retry = undefined; this.kick(); }, 2000);
    });
  };

  async run(signal: AbortSignal): Promise<void> {
    const timer = setInterval(this.kick, FULL_RESYNC_MS);
    signal.addEventListener('abort', () => { clearInterval(timer); if (this.retry) clearTimeout(this.retry); }, { once: true });
    await Promise.all([
      this.watch(signal, '/api/v1/services', (k, o) => this.rules.setService(k, o as ServiceLike), (items) => { for (const [k, v] of items) this.rules.setService(k, v as ServiceLike); }, 'services'),
      this.watch(signal, '/apis/discovery.k8s.io/v1/endpointslices', (k, o) => this.rules.setSlice(k, o as EndpointSliceLike), (items) => { for (const [k, v] of items) this.rules.setSlice(k, v as EndpointSliceLike); }, 'endpointslices'),
    ]);
  }

  private async list(path: string): Promise<{ items: Array<Record<string, any>>; resourceVersion?: string }> {
    const list = path.startsWith('/api/v1/')
      ? await this.kube.core.listServiceForAllNamespaces()
      : await this.kube.kc.makeApiClient(k8s.DiscoveryV1Api).listEndpointSliceForAllNamespaces();
    return { items: list.items as Array<Record<string, any>>, resourceVersion: list.metadata?.resourceVersion };
  }

  private async watch(signal: AbortSignal, path: string, set: (key: string, obj: unknown) => void, replace: (items: Map<string, unknown>) => void, what: string): Promise<void> {
    const watch = new k8s.Watch(this.kube.kc);
    const known = new Set<string>();
    while (!signal.aborted) {
      try {
        const list = await this.list(path);
        const fresh = new Map(list.items.map((o) => [keyOf(o), o] as [string, unknown]));
        for (const k of known) if (!fresh.has(k)) set(k, undefined);
        known.clear();
        for (const k of fresh.keys()) known.add(k);
        replace(fresh);
        this.kick();
        let resourceVersion = list.resourceVersion;
        await new Promise<void>((resolve) => {
          const onAbort = () => { void controller.then((c) => c.abort()); resolve(); };
          const controller = watch.watch(path, { resourceVersion, allowWatchBookmarks: true, timeoutSeconds: 300 },
            (type: string, obj: Record<string, any>) => {
              if (type === 'BOOKMARK') { resourceVersion = obj.metadata?.resourceVersion; return; }
              if (type === 'ERROR') { resolve(); return; }
              const k = keyOf(obj);
              if (type === 'DELETED') { known.delete(k); set(k, undefined); } else { known.add(k); set(k, obj); }
              this.kick();
            },
            () => { signal.removeEventListener('abort', onAbort); resolve(); });
          signal.addEventListener('abort', onAbort, { once: true });
          controller.catch(() => resolve());
        });
      } catch (err) {
        if (signal.aborted) return;
        this.log.warn({ err: String(err) }, `${what} list/watch failed; retrying (the service rules stay as they are)`);
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  }
}
