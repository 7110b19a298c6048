/**
 * `stevedore image pull REF` and `stevedore image gc`, as functions main.ts
 * wires in. Pull progress: one bar per layer on a terminal (redrawn in place,
 * at most ~10 times a second), plain lines on state changes otherwise.
 */
import type { ImagePullApi, ImageRecord, PullProgress, ImageGcResult } from '../runtime-rkt/image/types.js';
import { readAuthFile } from '../runtime-api/registry-auth.js';
import { InvalidInput } from '../common/errors.js';
import { parseByteSize, parseCount, resolveLimits, type ImageLimits } from '../runtime-api/image-limits.js';
import type { ImageLimitFlags } from './image-limit-flags.js';

export { IMAGE_LIMIT_OPTIONS, type ImageLimitFlags } from './image-limit-flags.js';
import { humanBytes, parseDuration } from '../common/format.js';

export interface PullCommandOptions {
  /** Registries (`host[:port]`) allowed over plain HTTP / unverified TLS. */
  insecure?: string[];
  /** docker-style auth file; default $REGISTRY_AUTH_FILE or ~/.docker/config.json when present. */
  authFile?: string;
  /** For tests: where to write (default process.stdout) and whether it is a terminal. */
  out?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Size caps for this pull (see imageLimitsFromFlags); unset ones are the defaults. */
  limits?: Partial<ImageLimits>;
}

/** Parse the `--image-max-*` flags; a bad value is an InvalidInput naming the flag. */
export function imageLimitsFromFlags(flags: ImageLimitFlags): Partial<ImageLimits> {
  const set: Partial<ImageLimits> = {};
  if (flags.imageMaxLayerSize !== undefined) set.maxLayerBytes = parseByteSize(flags.imageMaxLayerSize, '--image-max-layer-size');
  if (flags.imageMaxImageSize !== undefined) set.maxImageBytes = parseByteSize(flags.imageMaxImageSize, '--image-max-image-size');
  if (flags.imageMaxLayerEntries !== undefined) set.maxLayerEntries = parseCount(flags.imageMaxLayerEntries, '--image-max-layer-entries');
  if (flags.imageMaxTarHeaderSize !== undefined) set.maxTarHeaderBytes = parseByteSize(flags.imageMaxTarHeaderSize, '--image-max-tar-header-size');
  resolveLimits(set); // refuse a cap that cannot be honoured before any work
  return set;
}

const short = (digest: string) => digest.slice(7, 19);


interface LayerView {
  digest: string;
  state: string;
  bytes: number;
  total: number;
}

class TtyProgress {
  private layers: LayerView[] = [];
  private drawn = 0;
  private last = 0;
  constructor(private readonly out: NodeJS.WritableStream & { columns?: number }) {}

  update(p: PullProgress): void {
    if (p.kind === 'resolved') {
      this.out.write(`pulling ${p.ref} (${p.manifestDigest})\n`);
      this.layers = p.layers.map((l) => ({ digest: l.digest, state: 'waiting', bytes: 0, total: l.size }));
      this.draw(true);
    } else if (p.kind === 'layer') {
      const l = this.layers.find((x) => x.digest === p.digest);
      if (!l) return;
      const changed = l.state !== p.state;
      Object.assign(l, { state: p.state, bytes: p.bytes, total: p.total || l.total });
      this.draw(changed);
    } else if (p.kind === 'committing') {
      this.draw(true);
    }
  }

  private draw(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    const width = Math.max(10, Math.min(40, (this.out.columns ?? 80) - 50));
    let s = this.drawn > 0 ? `\x1b[${this.drawn}A` : '';
    for (const l of this.layers) {
      const frac = l.state === 'done' || l.state === 'exists' ? 1 : l.total > 0 ? Math.min(1, l.bytes / l.total) : 0;
      const filled = Math.round(frac * width);
      const bar = `[${'='.repeat(Math.max(0, filled - 1))}${filled > 0 ? (frac < 1 ? '>' : '=') : ''}${' '.repeat(width - filled)}]`;
      const label = l.state === 'exists' ? 'already present' : l.state === 'downloading' ? `${humanBytes(l.bytes)} / ${humanBytes(l.total)}` : l.state;
      s += `\x1b[2K${short(l.digest)} ${bar} ${label}\n`;
    }
    this.drawn = this.layers.length;
    this.out.write(s);
  }
}

class PlainProgress {
  private readonly states = new Map<string, string>();
  constructor(private readonly out: NodeJS.WritableStream) {}
  update(p: PullProgress): void {
    if (p.kind === 'resolved') this.out.write(`pulling ${p.ref} (${p.manifestDigest}), ${p.layers.length} layer(s)\n`);
    else if (p.kind === 'layer') {
      if (this.states.get(p.digest) === p.state) return;
      this.states.set(p.digest, p.state);
      const size = p.state === 'downloading' ? ` (${humanBytes(p.total)})` : p.state === 'done' ? ` (${humanBytes(p.bytes)})` : '';
      this.out.write(`layer ${short(p.digest)}: ${p.state === 'exists' ? 'already present' : p.state}${size}\n`);
    } else if (p.kind === 'committing') this.out.write('committing\n');
  }
}

/** Pull one image; prints progress and finally the image id (`sha256:…`) on its own line. */
export async function pullCommandAction(store: Pick<ImagePullApi, 'pull'>, ref: string, opts: PullCommandOptions = {}): Promise<ImageRecord> {
  const out = opts.out ?? process.stdout;
  const auth = await readAuthFile(opts.authFile);
  const view = out.isTTY ? new TtyProgress(out) : new PlainProgress(out);
  const record = await store.pull(ref, {
    auth,
    ...(opts.insecure ? { insecureRegistries: opts.insecure } : {}),
    ...(opts.limits ? { limits: opts.limits } : {}),
    onProgress: (p) => view.update(p),
  });
  out.write(`${record.id}\n`);
  return record;
}

export interface GcCommandOptions {
  highPercent?: number | string;
  lowPercent?: number | string;
  /** Remove unused images older than this: milliseconds or `30s`, `10m`, `2h`, `7d`. */
  minAge?: number | string;
  out?: NodeJS.WritableStream;
}


function percent(v: number | string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || n > 100) throw new InvalidInput(`${what} must be a percentage (0-100), not ${JSON.stringify(v)}`);
  return n;
}

/** `stevedore image gc`: inUse = ids of images pods on this node use. Prints what it removed. */
export async function gcCommandAction(store: Pick<ImagePullApi, 'gc'>, inUse: Set<string>, opts: GcCommandOptions = {}): Promise<ImageGcResult> {
  const out = opts.out ?? process.stdout;
  const high = percent(opts.highPercent, '--high');
  const low = percent(opts.lowPercent, '--low');
  const result = await store.gc({
    inUse,
    ...(high !== undefined ? { highPercent: high } : {}),
    ...(low !== undefined ? { lowPercent: low } : {}),
    ...(opts.minAge !== undefined ? { minAgeMs: typeof opts.minAge === 'number' ? opts.minAge : parseDuration(opts.minAge) } : {}),
    protectNewerThanMs: 0, // by hand: the operator asked for it now
  });
  for (const r of result.removed) out.write(`removed ${r.id.slice(7, 19)} ${r.names.join(',') || '<none>'} (${humanBytes(r.size)}, ${r.reason})\n`);
  out.write(`image filesystem ${result.usageBefore.toFixed(1)}% used before, ${result.usageAfter.toFixed(1)}% after; ${result.removed.length} image(s) removed\n`);
  if (result.unmetTarget) out.write('warning: disk use is still above the low threshold; remaining images are in use or too new\n');
  return result;
}
