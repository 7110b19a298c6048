/**
 * Size caps for image pulls and imports. Layers are untrusted: a few MiB of
 * gzip or zstd can expand to terabytes, a tar can hold millions of empty
 * entries, and tar extension headers (PAX, GNU long names) are read into
 * memory whole. Every one of those is bounded here, before the bytes land on
 * disk or in memory; exceeding a cap aborts the pull or import (nothing is
 * committed: the stage holding the partial blob and tree is deleted).
 *
 * The defaults must never refuse a real image. The largest real ones are
 * CUDA/ML images: nvidia/cuda `*-devel` and PyTorch/TensorFlow GPU images
 * have single layers of 5-10 GiB uncompressed and totals of 15-25 GiB; images
 * with baked-in model weights go further (ECR accepts layers of up to
 * 52,000 MiB compressed). So: 64 GiB per layer and 128 GiB per image. Entry
 * counts of real layers stay in the hundreds of thousands (a full TeX Live or
 * a large node_modules is ~200k files), so 1Mi entries. Extension headers get
 * Go archive/tar's 1 MiB (what Docker and containerd unpack with), so any
 * layer they accept is accepted here.
 */
import * as tar from 'tar-stream';
import { InvalidInput, UserError } from '../common/errors.js';
import { humanBytes } from '../common/format.js';

export interface ImageLimits {
  /** Uncompressed size of one layer (its tar stream, what the diff_id hashes). Also bounds each compressed layer blob. */
  maxLayerBytes: number;
  /** Uncompressed size of the layers one pull or import unpacks, together; also bounds the sum of the compressed blobs. */
  maxImageBytes: number;
  /** Entries (files, dirs, links, whiteouts…) in one layer. */
  maxLayerEntries: number;
  /** One tar extension header (PAX, PAX global, GNU long name/link), which the tar reader holds in memory. */
  maxTarHeaderBytes: number;
}

const GiB = 1024 ** 3;
export const DEFAULT_IMAGE_LIMITS: Readonly<ImageLimits> = Object.freeze({
  maxLayerBytes: 64 * GiB,
  maxImageBytes: 128 * GiB,
  maxLayerEntries: 1 << 20,
  maxTarHeaderBytes: 1 << 20,
});

/** tar-stream refuses extension headers above this itself ("Header exceeds max size"): a higher cap cannot be honoured. */
export const TAR_READER_HEADER_LIMIT = 4 << 20;

/** How an operator raises each cap: the same names on `stevedore image pull|import` and `stevedore agent`, and in the agent config. */
export const LIMIT_SETTINGS: Record<keyof ImageLimits, { flag: string; configKey: string; what: string }> = {
  maxLayerBytes: { flag: '--image-max-layer-size', configKey: 'imageMaxLayerSize', what: 'the size limit of one layer' },
  maxImageBytes: { flag: '--image-max-image-size', configKey: 'imageMaxImageSize', what: 'the size limit of one image' },
  maxLayerEntries: { flag: '--image-max-layer-entries', configKey: 'imageMaxLayerEntries', what: 'the entry limit of one layer' },
  maxTarHeaderBytes: { flag: '--image-max-tar-header-size', configKey: 'imageMaxTarHeaderSize', what: 'the size limit of one tar extension header' },
};

/** A cap was exceeded. Not retryable: the same content exceeds it again. */
export class ImageLimitError extends UserError {
  readonly limit: keyof ImageLimits;
  constructor(limit: keyof ImageLimits, message: string) {
    const s = LIMIT_SETTINGS[limit];
    super(message, {
      exitCode: 2,
      hint: `if the image is genuine, raise ${s.what}: ${s.flag} on \`stevedore image pull\`/\`image import\` and \`stevedore agent\`, or ${s.configKey} in the agent config`,
    });
    this.name = 'ImageLimitError';
    this.limit = limit;
  }
}

/** `maxLayerBytes (64.0 GiB)`: the cap's name and value, for messages. */
export function describeLimit(limit: keyof ImageLimits, value: number): string {
  return `${limit} = ${limit === 'maxLayerEntries' ? String(value) : humanBytes(value)}`;
}

const UNITS: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12, ki: 1024, mi: 1024 ** 2, gi: 1024 ** 3, ti: 1024 ** 4 };

/** Bytes as a number or a Kubernetes-style quantity: `1048576`, `512Mi`, `64Gi`, `10G` (also `64GiB`). */
export function parseByteSize(raw: string | number, what: string): number {
  if (typeof raw === 'number') return checkPositive(raw, what);
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*$/i.exec(raw);
  if (!m) throw new InvalidInput(`${what}: ${JSON.stringify(raw)} is not a size`, 'give bytes or a quantity such as 512Mi, 64Gi or 10G');
  return checkPositive(Math.floor(Number(m[1]) * UNITS[(m[2] ?? '').toLowerCase()]!), what);
}

/** A count as a number or a decimal string. */
export function parseCount(raw: string | number, what: string): number {
  const n = typeof raw === 'number' ? raw : /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
  return checkPositive(n, what);
}

function checkPositive(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidInput(`${what} must be a positive whole number, not ${JSON.stringify(n)}`);
  return n;
}

/** Defaults, then each partial in turn (later wins); every value checked. */
export function resolveLimits(...partials: Array<Partial<ImageLimits> | undefined>): ImageLimits {
  const out: ImageLimits = { ...DEFAULT_IMAGE_LIMITS };
  for (const p of partials) {
    for (const key of Object.keys(LIMIT_SETTINGS) as Array<keyof ImageLimits>) {
      const v = p?.[key];
      if (v !== undefined) out[key] = checkPositive(v, `image limit ${key}`);
    }
  }
  if (out.maxTarHeaderBytes > TAR_READER_HEADER_LIMIT) {
    throw new InvalidInput(`image limit maxTarHeaderBytes (${humanBytes(out.maxTarHeaderBytes)}) is above ${humanBytes(TAR_READER_HEADER_LIMIT)}, the most the tar reader can hold`, `set ${LIMIT_SETTINGS.maxTarHeaderBytes.flag} to at most 4Mi`);
  }
  return out;
}

/**
 * The uncompressed bytes one pull or import may unpack, shared by its layers
 * (which unpack concurrently). A layer whose unpack fails gives its bytes back
 * (a retry of it counts again from zero).
 */
export class ImageBudget {
  private used = 0;
  constructor(readonly max: number, readonly where: string) {}
  take(n: number, layerDigest: string): void {
    this.used += n;
    if (this.used > this.max) {
      throw new ImageLimitError('maxImageBytes', `${this.where}: the layers expand to more than ${describeLimit('maxImageBytes', this.max)} together (refused while unpacking layer ${layerDigest})`);
    }
  }
  giveBack(n: number): void {
    this.used = Math.max(0, this.used - n);
  }
}

/** The fields of tar-stream's Extract this module relies on (checked at run time: fail closed if they change). */
interface TarExtractInternals {
  _consumeHeader(): boolean;
  _continueWrite(err: Error | null): void;
  _longHeader: boolean;
  _header: { type?: string; size?: number; name?: string } | null;
}

/**
 * A tar-stream extractor that refuses an extension header (PAX, GNU long
 * name) larger than `maxHeaderBytes` as soon as its tar header declares the
 * size, before any of it is buffered. `refusal(size, type)` builds the error.
 */
export function cappedTarExtract(maxHeaderBytes: number, refusal: (size: number, type: string) => Error): tar.Extract {
  const extract = tar.extract();
  const inner = extract as unknown as TarExtractInternals;
  if (typeof inner._consumeHeader !== 'function' || typeof inner._continueWrite !== 'function') {
    throw new Error('tar-stream changed: cannot bound tar extension headers (update runtime-api/image-limits.ts)');
  }
  const consume = inner._consumeHeader.bind(inner);
  inner._consumeHeader = () => {
    const ok = consume();
    const h = inner._header;
    if (ok && inner._longHeader && h !== null && (h.size ?? 0) > maxHeaderBytes) {
      inner._continueWrite(refusal(h.size ?? 0, h.type ?? 'extension'));
      return false;
    }
    return ok;
  };
  return extract;
}
