/**
 * Reading an import source into "plans": for each image it carries, the
 * verified (staged) manifest, config and layer blobs plus its names. Both
 * formats end up the same shape; a docker-archive gets a synthesized Docker
 * schema-2 manifest so that every record has a manifest blob.
 */
import * as fs from 'node:fs/promises';
import { InvalidInput } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { ImageFormat, ImageRunConfig, ImportOptions } from './types.js';
import { isBareTag, parseName, qualifyName, formatName } from './names.js';
import { readSmallJson, type SourceTree } from './source.js';
import { ImageLimitError, describeLimit, type ImageLimits } from '../../runtime-api/image-limits.js';

/** Image configs larger than this are refused (they are JSON read whole; real ones are a few KiB). */
export const MAX_CONFIG_BYTES = 4 << 20;

/**
 * Before any blob is fetched or copied: the config and every layer must say
 * their size (OCI requires it; without it a download has no bound), the config
 * must be small, each layer blob within the per-layer cap and all of them
 * within the per-image cap. `size` is then enforced byte by byte while the
 * blob streams (more bytes than it says abort at once).
 */
export function checkDescriptorSizes(config: Descriptor, layers: Descriptor[], where: string, limits: ImageLimits): void {
  const sizeOf = (d: Descriptor, what: string): number => {
    const size: unknown = d.size;
    if (size === undefined || size === null) {
      throw new InvalidInput(`${what} ${d.digest} of ${where} has no size`, 'OCI requires a size in every descriptor, and without it a download has no bound; push the image again with a current client');
    }
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new InvalidInput(`${what} ${d.digest} of ${where} has an invalid size ${JSON.stringify(size)}`);
    return size;
  };
  const configSize = sizeOf(config, 'the config');
  if (configSize > MAX_CONFIG_BYTES) throw new InvalidInput(`the config ${config.digest} of ${where} is ${configSize} bytes, more than the ${MAX_CONFIG_BYTES} allowed`, 'this is not a container image config');
  let total = 0;
  for (const l of layers) {
    const size = sizeOf(l, 'layer');
    if (size > limits.maxLayerBytes) {
      throw new ImageLimitError('maxLayerBytes', `layer ${l.digest} of ${where}: its blob is ${size} bytes, more than ${describeLimit('maxLayerBytes', limits.maxLayerBytes)} (a blob is never larger than the layer it unpacks to, give or take a few bytes)`);
    }
    total += size;
  }
  if (total > limits.maxImageBytes) {
    throw new ImageLimitError('maxImageBytes', `the layer blobs of ${where} are ${total} bytes together, more than ${describeLimit('maxImageBytes', limits.maxImageBytes)}`);
  }
}

export const MT = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerTar: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayerTar: 'application/vnd.docker.image.rootfs.diff.tar',
} as const;

const INDEX_TYPES = new Set<string>([MT.ociIndex, MT.dockerList]);
const MANIFEST_TYPES = new Set<string>([MT.ociManifest, MT.dockerManifest]);
export const LAYER_TYPES: ReadonlySet<string> = new Set<string>([
  MT.ociLayerTar, MT.ociLayerGzip, MT.ociLayerZstd, MT.dockerLayerGzip, MT.dockerLayerTar,
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
]);

export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';
export const ANNOTATION_CONTAINERD_NAME = 'io.containerd.image.name';
export const WANT_PLATFORM = { os: 'linux', architecture: 'amd64' } as const;

export interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  annotations?: Record<string, string>;
  platform?: { os?: string; architecture?: string; variant?: string };
}

export interface OciConfig {
  architecture?: string;
  os?: string;
  config?: ImageRunConfig;
  rootfs?: { type?: string; diff_ids?: string[] };
}

export interface StagedBlob {
  digest: string;
  /** Where the verified copy sits in the import's staging dir. */
  path: string;
  size: number;
}

export interface Stager {
  /** Copy (or move, for spooled sources) a blob into staging, verifying digest and size when known. */
  stage(src: string, expect: { digest?: string; size?: number }, what: string): Promise<StagedBlob>;
  stageBytes(data: Buffer): Promise<StagedBlob>;
}

export interface ImagePlan {
  names: string[];
  format: ImageFormat;
  manifest: StagedBlob;
  config: StagedBlob;
  configJson: OciConfig;
  layers: StagedBlob[];
  diffIds: string[];
  annotations?: Record<string, string>;
  /** `domain/repo@digest` references that name this image (pulls). */
  repoDigests?: string[];
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** Validate a digest before it is ever used to build a path. */
export function checkDigest(digest: unknown, what: string): string {
  if (typeof digest !== 'string' || !DIGEST.test(digest)) {
    throw new InvalidInput(`${what} has an invalid or unsupported digest ${JSON.stringify(digest)}`, 'only sha256 digests are supported');
  }
  return digest;
}

export function hexOf(digest: string): string {
  return digest.slice('sha256:'.length);
}

export async function planImport(src: SourceTree, stager: Stager, opts: ImportOptions, log: Logger, limits: ImageLimits): Promise<ImagePlan[]> {
  return src.kind === 'oci' ? planOci(src, stager, opts, log, limits) : planDocker(src, stager, opts, limits);
}

async function mustResolve(src: SourceTree, rel: string, what: string): Promise<string> {
  const p = await src.resolve(rel);
  if (p === undefined) throw new InvalidInput(`the image archive lacks ${what} (${rel})`, 'the archive is incomplete; re-export it');
  return p;
}

function namesFor(annotations: Record<string, string> | undefined, opts: ImportOptions): string[] {
  const full = annotations?.[ANNOTATION_CONTAINERD_NAME];
  if (full !== undefined && parseName(full) !== undefined) return [qualifyName(full, 'localhost')];
  const ref = annotations?.[ANNOTATION_REF_NAME];
  if (ref !== undefined && !isBareTag(ref) && parseName(ref) !== undefined) return [qualifyName(ref, 'localhost')];
  if (opts.name !== undefined) {
    const given = parseName(opts.name);
    if (given === undefined) return [qualifyName(opts.name, 'localhost')]; // throws the naming error
    // A bare-tag ref name (the common OCI case) tags the name the user gave.
    const tag = given.tag ?? (ref !== undefined && isBareTag(ref) ? ref : undefined);
    return [formatName({ ...given, tag }, 'localhost')];
  }
  return [];
}

function platformOk(d: Descriptor): boolean {
  return d.platform === undefined || (d.platform.os === WANT_PLATFORM.os && d.platform.architecture === WANT_PLATFORM.architecture);
}

async function planOci(src: SourceTree, stager: Stager, opts: ImportOptions, log: Logger, limits: ImageLimits): Promise<ImagePlan[]> {
  const layout = await readSmallJson<{ imageLayoutVersion?: string }>(await mustResolve(src, 'oci-layout', 'the oci-layout file'), 'oci-layout');
  if (layout.imageLayoutVersion !== '1.0.0') log.warn({ version: layout.imageLayoutVersion }, 'unexpected OCI imageLayoutVersion; trying anyway');
  const index = await readSmallJson<{ manifests?: Descriptor[] }>(await mustResolve(src, 'index.json', 'index.json'), 'index.json');

  // Collect image manifests, following nested indexes (multi-arch) and
  // keeping the name annotations of the outermost descriptor.
  const found = new Map<string, { desc: Descriptor; annotations?: Record<string, string> }>();
  const walk = async (manifests: Descriptor[] | undefined, inherited: Record<string, string> | undefined, depth: number, where: string): Promise<number> => {
    if (depth > 4) throw new InvalidInput(`${where}: image indexes nested too deeply`);
    const candidates = (manifests ?? []).filter((d) => d && typeof d === 'object');
    let matched = 0;
    for (const d of candidates) {
      const digest = checkDigest(d.digest, `a descriptor in ${where}`);
      const annotations = depth === 0 ? d.annotations : inherited;
      if (d.mediaType !== undefined && INDEX_TYPES.has(d.mediaType)) {
        const blob = await stageDescriptor(src, stager, d, 'an image index');
        const nested = await readSmallJson<{ manifests?: Descriptor[] }>(blob.path, `index ${digest}`);
        matched += await walk(nested.manifests, annotations, depth + 1, `index ${digest}`);
      } else if (d.mediaType === undefined || MANIFEST_TYPES.has(d.mediaType)) {
        if (!platformOk(d)) continue;
        const prev = found.get(digest);
        const merged = prev ? { ...prev.annotations, ...annotations } : annotations;
        found.set(digest, { desc: d, annotations: merged });
        matched++;
        // In a multi-arch index one image per platform is enough.
        if (depth > 0) break;
      } else {
        log.debug({ mediaType: d.mediaType, digest }, 'skipping non-image descriptor');
      }
    }
    if (depth > 0 && matched === 0) {
      throw new InvalidInput(`${where} has no ${WANT_PLATFORM.os}/${WANT_PLATFORM.architecture} image`, 'this runtime only runs linux/amd64 images');
    }
    return matched;
  };
  await walk(index.manifests, undefined, 0, 'index.json');
  if (found.size === 0) throw new InvalidInput('index.json lists no linux/amd64 image manifest', 'check the archive with `jq . index.json`');

  const plans: ImagePlan[] = [];
  for (const { desc, annotations } of found.values()) {
    const manifest = await stageDescriptor(src, stager, desc, 'an image manifest');
    const m = await readSmallJson<{ mediaType?: string; config?: Descriptor; layers?: Descriptor[] }>(manifest.path, `manifest ${manifest.digest}`);
    if (m.config === undefined || !Array.isArray(m.layers)) throw new InvalidInput(`manifest ${manifest.digest} is not an image manifest (no config or layers)`);
    if (m.config.mediaType !== undefined && m.config.mediaType !== MT.ociConfig && m.config.mediaType !== MT.dockerConfig) {
      throw new InvalidInput(`manifest ${manifest.digest} is an artifact (${m.config.mediaType}), not a container image`);
    }
    for (const l of m.layers) {
      if (l.mediaType !== undefined && !LAYER_TYPES.has(l.mediaType)) {
        throw new InvalidInput(
          `layer ${l.digest} has media type ${l.mediaType}, which this runtime cannot unpack`,
          'layers must be tar archives, uncompressed, gzip or zstd',
        );
      }
    }
    checkDescriptorSizes(m.config, m.layers, `manifest ${manifest.digest}`, limits);
    const config = await stageDescriptor(src, stager, m.config, 'an image config');
    const configJson = await readSmallJson<OciConfig>(config.path, `config ${config.digest}`);
    const layers: StagedBlob[] = [];
    for (const l of m.layers) layers.push(await stageDescriptor(src, stager, l, 'a layer'));
    plans.push({
      names: namesFor(annotations, opts),
      format: 'oci',
      manifest,
      config,
      configJson,
      layers,
      diffIds: checkDiffIds(configJson, layers.length, config.digest),
      ...(annotations ? { annotations } : {}),
    });
  }
  return plans;
}

async function stageDescriptor(src: SourceTree, stager: Stager, d: Descriptor, what: string): Promise<StagedBlob> {
  const digest = checkDigest(d.digest, what);
  const file = await mustResolve(src, `blobs/sha256/${hexOf(digest)}`, `${what} ${digest}`);
  return stager.stage(file, { digest, ...(typeof d.size === 'number' ? { size: d.size } : {}) }, `${what} ${digest}`);
}

export function checkDiffIds(config: OciConfig, layerCount: number, configDigest: string): string[] {
  const ids = config.rootfs?.diff_ids;
  if (!Array.isArray(ids) || ids.length !== layerCount) {
    throw new InvalidInput(`config ${configDigest} lists ${Array.isArray(ids) ? ids.length : 'no'} diff_ids for ${layerCount} layers`, 'the image is corrupt');
  }
  return ids.map((id, i) => checkDigest(id, `diff_id ${i} of config ${configDigest}`));
}

interface DockerManifestEntry {
  Config?: string;
  RepoTags?: string[] | null;
  Layers?: string[];
}

/** docker save: manifest.json names the config (`<hex>.json`) and layer tars; the config's diff_ids verify the layers. */
async function planDocker(src: SourceTree, stager: Stager, opts: ImportOptions, limits: ImageLimits): Promise<ImagePlan[]> {
  const entries = await readSmallJson<DockerManifestEntry[]>(await mustResolve(src, 'manifest.json', 'manifest.json'), 'manifest.json');
  if (!Array.isArray(entries) || entries.length === 0) throw new InvalidInput('manifest.json lists no images');
  const plans: ImagePlan[] = [];
  for (const e of entries) {
    if (typeof e.Config !== 'string' || !Array.isArray(e.Layers)) throw new InvalidInput('manifest.json entry lacks Config or Layers');
    const config = await stager.stage(await mustResolve(src, e.Config, 'the image config'), { digest: digestFromName(e.Config) }, `config ${e.Config}`);
    const configJson = await readSmallJson<OciConfig>(config.path, `config ${config.digest}`);
    const diffIds = checkDiffIds(configJson, e.Layers.length, config.digest);
    // docker save lists no sizes: the files' own sizes take their place (the archive holds them; no download is unbounded).
    const files: string[] = [];
    for (const l of e.Layers) files.push(await mustResolve(src, l, `layer ${l}`));
    const sized: Descriptor[] = [];
    for (const [i, f] of files.entries()) sized.push({ digest: e.Layers[i]!, size: (await fs.stat(f)).size });
    checkDescriptorSizes({ digest: config.digest, size: config.size }, sized, `docker-archive image ${e.RepoTags?.[0] ?? config.digest}`, limits);
    const layers: StagedBlob[] = [];
    for (const [i, l] of e.Layers.entries()) layers.push(await stager.stage(files[i]!, { digest: digestFromName(l) }, `layer ${l}`));
    const manifestJson = {
      schemaVersion: 2,
      mediaType: MT.dockerManifest,
      config: { mediaType: MT.dockerConfig, size: config.size, digest: config.digest },
      // Layers are verified against diff_ids while unpacking; docker save writes them uncompressed.
      layers: layers.map((l, i) => ({ mediaType: l.digest === diffIds[i] ? MT.dockerLayerTar : MT.dockerLayerGzip, size: l.size, digest: l.digest })),
    };
    const manifest = await stager.stageBytes(Buffer.from(JSON.stringify(manifestJson)));
    const tags = (e.RepoTags ?? []).map((t) => qualifyName(t, 'docker.io'));
    plans.push({
      names: tags.length > 0 ? tags : opts.name !== undefined ? [qualifyName(opts.name, 'localhost')] : [],
      format: 'docker',
      manifest,
      config,
      configJson,
      layers,
      diffIds,
    });
  }
  return plans;
}

/** `<hex>.json`, `blobs/sha256/<hex>` or `<hex>/layer.tar` carry their digest in the name (legacy ids excepted). */
function digestFromName(rel: string): string | undefined {
  const m = /(?:^|\/)(?:blobs\/sha256\/)?([0-9a-f]{64})(?:\.json)?$/.exec(rel);
  if (m && (rel.endsWith('.json') || rel.includes('blobs/sha256/'))) return `sha256:${m[1]}`;
  return undefined;
}
