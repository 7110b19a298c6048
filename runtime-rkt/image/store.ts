/**
 * The image store (layout in types.ts and README.md). Crash-safety rests on
 * three rules:
 *  1. everything an import produces is built in its own tmp/<stage> dir
 *     (held with an flock while in use) and only renamed into blobs/ and
 *     layers/ under the store-wide lock, in one commit step;
 *  2. a record is written (atomically) only after every blob and layer tree
 *     it names is in place, so a record never points at something missing;
 *  3. the first locked operation of an ImageStore "opens" the store:
 *     unlocked tmp/ stages, layer trees without `ok` and blobs/layers no
 *     record references are garbage and are deleted.
 * Readers (list/resolve) take no lock: records are replaced atomically.
 */
import * as fs from 'node:fs/promises';
import { createReadStream, createWriteStream, existsSync, readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { atomicWrite, atomicWriteJson, readJson, readdirOrEmpty, exists, FileLock } from '../../common/fsutil.js';
import { InvalidInput, UserError, errnoCode } from '../../common/errors.js';
import { createLogger, type Logger } from '../../common/log.js';
import type { ImageGcOptions, ImageGcResult, ImagePullApi, ImageRecord, ImportOptions, PullOptions } from './types.js';
import { extractLayer, extractLayerStream, type ExtractOptions } from './extract.js';
import { openSource } from './source.js';
import { planImport, checkDescriptorSizes, MAX_CONFIG_BYTES, checkDigest, checkDiffIds, hexOf, MT, LAYER_TYPES, type ImagePlan, type OciConfig, type StagedBlob, type Stager } from './plan.js';
import { readSmallJson } from './source.js';
import { parseReference, repoDigest, type ImageReference } from '../../runtime-api/image-reference.js';
import { RegistryClient, type BlobTap, type FetchedManifest, type ResolvedImage } from './registry.js';
import { candidateNames } from './names.js';
import { fsops } from '../../common/fsops.js';
import { ImageBudget, ImageLimitError, resolveLimits, type ImageLimits } from '../../runtime-api/image-limits.js';

const LOCK_TIMEOUT_MS = 10 * 60_000;
const ID_PREFIX_MIN = 6;

/** In-process de-duplication of pulls: `<store root>\0<manifest digest>` → the pull in progress. */
const inflightPulls = new Map<string, Promise<ImageRecord>>();

/** A blob that was in the store when a pull skipped downloading it was collected before the commit. */
class VanishedBlob extends Error {
  constructor(digest: string) {
    super(`blob ${digest} was removed from the store during the pull`);
  }
}

export class ImageStore implements ImagePullApi {
  readonly root: string;
  private readonly blobsDir: string;
  private readonly layersDir: string;
  private readonly recordsDir: string;
  private readonly tmpDir: string;
  private readonly lockFile: string;
  private readonly log: Logger;
  /** Caps every pull and import gets unless its options say otherwise (limits.ts). */
  readonly limits: ImageLimits;
  private opened = false;

  /** @param root `<dataDir>/images`; created on first use. */
  constructor(root: string, opts: { log?: Logger; limits?: Partial<ImageLimits> } = {}) {
    this.limits = resolveLimits(opts.limits);
    this.root = path.resolve(root);
    this.blobsDir = path.join(this.root, 'blobs', 'sha256');
    this.layersDir = path.join(this.root, 'layers', 'sha256');
    this.recordsDir = path.join(this.root, 'records');
    this.tmpDir = path.join(this.root, 'tmp');
    this.lockFile = path.join(this.root, 'lock');
    this.log = opts.log ?? createLogger('image-store');
  }

  blobPath(digest: string): string {
    return path.join(this.blobsDir, hexOf(checkDigest(digest, 'blob')));
  }

  layerDir(digest: string): string {
    return path.join(this.layersDir, hexOf(checkDigest(digest, 'layer')));
  }

  // ---- reading -------------------------------------------------------------

  /**
   * The records, read synchronously on purpose: every pod start resolves its images here (the agent before it
   * pulls, runPod again), and they are a few small files. Through libuv's pool each file was an open, a stat, a read
   * and a close, every one waiting for a pool thread and then for the event loop: ~3 ms per resolve of one image
   * while a pod started beside it. Read here, 0.3 ms for 30 records.
   */
  async list(): Promise<ImageRecord[]> {
    let files: string[];
    try {
      files = readdirSync(this.recordsDir).filter((f) => /^[0-9a-f]{64}\.json$/.test(f)); // atomicWrite temporaries start with '.'
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw err;
    }
    const records: ImageRecord[] = [];
    for (const f of files) {
      try {
        records.push(JSON.parse(readFileSync(path.join(this.recordsDir, f), 'utf8')) as ImageRecord);
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err; // removed meanwhile
      }
    }
    return records.sort((a, b) => a.importedAt - b.importedAt || a.id.localeCompare(b.id));
  }

  async resolve(ref: string): Promise<ImageRecord | undefined> {
    const want = ref.trim();
    if (want === '') throw new InvalidInput('empty image reference', 'give an image name, id or id prefix');
    const records = await this.list();
    if (/^sha256:[0-9a-f]{64}$/.test(want)) return records.find((r) => r.id === want);
    if (want.includes('@')) return this.resolveDigestRef(want, records);
    // Names first (a name may look like hex); newest wins if a crash left a name on two records.
    for (const name of candidateNames(want)) {
      const hits = records.filter((r) => r.names.includes(name));
      if (hits.length > 0) return hits.reduce((a, b) => (b.importedAt >= a.importedAt ? b : a));
    }
    const prefix = want.startsWith('sha256:') ? want.slice(7) : want;
    if (/^[0-9a-f]+$/.test(prefix) && prefix.length >= ID_PREFIX_MIN) {
      const hits = records.filter((r) => hexOf(r.id).startsWith(prefix));
      if (hits.length > 1) throw new InvalidInput(`image id prefix ${prefix} is ambiguous (${hits.length} images)`, 'give more characters of the id');
      return hits[0];
    }
    return undefined;
  }

  /** `[domain/]path[:tag]@sha256:…` against the records' repoDigests (short names: localhost/ then docker.io/). */
  private resolveDigestRef(want: string, records: ImageRecord[]): ImageRecord | undefined {
    let ref: ImageReference;
    try {
      ref = parseReference(want);
    } catch {
      return undefined;
    }
    const digest = ref.digest as string;
    const wanted = new Set([repoDigest(ref, digest)]);
    const bare = want.slice(0, want.indexOf('@')).replace(/:[^/:]*$/, '');
    for (const name of candidateNames(bare)) wanted.add(`${name.replace(/:[^/:]*$/, '')}@${digest}`);
    return records.find((r) => (r.repoDigests ?? []).some((d) => wanted.has(d)));
  }

  // ---- importing -----------------------------------------------------------

  async importPath(source: string, opts: ImportOptions = {}): Promise<ImageRecord[]> {
    const limits = resolveLimits(this.limits, opts.limits);
    const stage = await this.createStage();
    try {
      const src = await openSource(source, path.join(stage.dir, 'src'), limits);
      const stager = this.stager(stage.dir, src.spooled);
      const plans = await planImport(src, stager, opts, this.log, limits);
      // Unpack new layers outside the store lock: it is the slow part, and a
      // hostile or corrupt layer must fail here, before anything is committed.
      const staged = new Map<string, string>();
      for (const plan of plans) {
        const budget = new ImageBudget(limits.maxImageBytes, `import ${source}: image ${plan.names[0] ?? plan.config.digest}`);
        for (const [i, layer] of plan.layers.entries()) {
          if (staged.has(layer.digest) || this.layerComplete(layer.digest)) continue;
          const dir = path.join(stage.dir, 'layers', hexOf(layer.digest));
          await fs.mkdir(dir, { recursive: true });
          await extractLayer(layer.path, path.join(dir, 'rootfs'), layer.digest, { allowDevices: opts.allowDevices ?? false, diffId: plan.diffIds[i], log: this.log, limits, budget });
          staged.set(layer.digest, dir);
        }
      }
      await this.syncTree(stage.dir);
      return await this.withLock(() => this.commit(plans, staged, opts));
    } finally {
      await stage.dispose();
    }
  }

  /** A blob stager writing verified copies into <stage>/blobs. */
  private stager(stageDir: string, move: boolean): Stager {
    const dir = path.join(stageDir, 'blobs');
    const byDigest = new Map<string, StagedBlob>();
    const bySource = new Map<string, StagedBlob>();
    const place = async (tmp: string, digest: string, size: number): Promise<StagedBlob> => {
      const have = byDigest.get(digest);
      if (have) {
        await fs.rm(tmp, { force: true });
        return have;
      }
      const blob = { digest, path: path.join(dir, hexOf(digest)), size };
      await fs.rename(tmp, blob.path);
      byDigest.set(digest, blob);
      return blob;
    };
    return {
      stage: async (src, expect, what) => {
        const seen = bySource.get(src);
        if (seen) return seen;
        await fs.mkdir(dir, { recursive: true });
        const tmp = path.join(dir, `.partial-${randomBytes(6).toString('hex')}`);
        const hash = createHash('sha256');
        let size = 0;
        const hasher = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            hash.update(chunk);
            size += chunk.length;
            cb(null, move ? undefined : chunk);
          },
        });
        // Streamed in chunks: a layer is never held in memory whole.
        if (move) {
          await pipeline(createReadStream(src), hasher, async (s: AsyncIterable<Buffer>) => {
            for await (const _ of s) void _;
          });
        } else {
          await pipeline(createReadStream(src), hasher, createWriteStream(tmp, { flags: 'wx', mode: 0o644 }));
        }
        const digest = `sha256:${hash.digest('hex')}`;
        const fail = (msg: string) => new UserError(`${what}: ${msg}`, { exitCode: 2, hint: 'the image archive is corrupt or was tampered with; re-export it from its source' });
        if (expect.digest !== undefined && digest !== expect.digest) {
          await fs.rm(tmp, { force: true });
          throw fail(`content digest mismatch: expected ${expect.digest}, got ${digest}`);
        }
        if (expect.size !== undefined && size !== expect.size) {
          await fs.rm(tmp, { force: true });
          throw fail(`size mismatch: descriptor says ${expect.size} bytes, blob has ${size}`);
        }
        if (move) await fs.rename(src, tmp);
        const blob = await place(tmp, digest, size);
        bySource.set(src, blob);
        return blob;
      },
      stageBytes: async (data) => {
        await fs.mkdir(dir, { recursive: true });
        const tmp = path.join(dir, `.partial-${randomBytes(6).toString('hex')}`);
        await fs.writeFile(tmp, data, { flag: 'wx', mode: 0o644 });
        return place(tmp, `sha256:${createHash('sha256').update(data).digest('hex')}`, data.length);
      },
    };
  }

  /**
   * Under the store lock: move blobs and layer trees into place, then write
   * records. The caller has flushed the stage (syncTree), so no rename here can
   * publish a blob or tree whose data is not yet on disk.
   */
  private async commit(plans: ImagePlan[], stagedLayers: Map<string, string>, opts: ImportOptions): Promise<ImageRecord[]> {
    try {
      for (const plan of plans) {
        for (const blob of [plan.manifest, plan.config, ...plan.layers]) {
          const dest = this.blobPath(blob.digest);
          if (!(await exists(dest))) {
            if (blob.path === '') throw new VanishedBlob(blob.digest); // a pull relied on it being here
            await fs.rename(blob.path, dest);
          }
        }
      }
      for (const plan of plans) {
        for (const [i, layer] of plan.layers.entries()) {
          if (this.layerComplete(layer.digest)) continue;
          const dest = this.layerDir(layer.digest);
          await fs.rm(dest, { recursive: true, force: true }); // an incomplete tree
          const staged = stagedLayers.get(layer.digest);
          if (staged !== undefined) {
            await fs.rename(staged, dest);
          } else {
            // It was complete when we looked but has been collected since; redo it here.
            await this.unpackInto(dest, layer.digest, plan.diffIds[i], opts.allowDevices ?? false);
            await this.syncTree(dest);
          }
          await atomicWrite(path.join(dest, 'ok'), '');
        }
      }
      const now = Date.now();
      const written: ImageRecord[] = [];
      for (const plan of plans) written.push(await this.writeRecord(plan, now));
      // Names move: strip the new images' names from every other record.
      const claimed = new Map(written.flatMap((r) => r.names.map((n) => [n, r.id] as const)));
      for (const other of await this.list()) {
        const keep = other.names.filter((n) => claimed.get(n) === undefined || claimed.get(n) === other.id);
        if (keep.length !== other.names.length) await this.saveRecord({ ...other, names: keep });
      }
      // Re-importing an id with different layers can orphan the old ones.
      await this.collectGarbage();
      for (const r of written) this.log.info({ id: r.id, names: r.names }, 'image imported');
      return written;
    } catch (err) {
      // Nothing that no record references survives a failed commit.
      await this.collectGarbage().catch((gcErr) => this.log.error({ err: gcErr }, 'cleanup after failed import failed'));
      throw err;
    }
  }

  private async writeRecord(plan: ImagePlan, now: number): Promise<ImageRecord> {
    const id = plan.config.digest;
    const prev = await this.readRecord(id);
    const names = [...new Set([...(prev?.names ?? []), ...plan.names])];
    const record: ImageRecord = {
      id,
      names,
      format: plan.format,
      manifestDigest: plan.manifest.digest,
      configDigest: plan.config.digest,
      layers: plan.layers.map((l) => l.digest),
      config: plan.configJson.config ?? {},
      os: plan.configJson.os ?? 'linux',
      architecture: plan.configJson.architecture ?? 'amd64',
      size: plan.manifest.size + plan.config.size + plan.layers.reduce((n, l) => n + l.size, 0),
      importedAt: now,
      ...(prev?.lastUsedAt !== undefined ? { lastUsedAt: prev.lastUsedAt } : {}),
      ...(plan.annotations ? { annotations: plan.annotations } : {}),
    };
    const repoDigests = [...new Set([...(prev?.repoDigests ?? []), ...(plan.repoDigests ?? [])])];
    if (repoDigests.length > 0) record.repoDigests = repoDigests;
    await this.saveRecord(record);
    return record;
  }

  private recordPath(id: string): string {
    return path.join(this.recordsDir, `${hexOf(checkDigest(id, 'image id'))}.json`);
  }

  private async readRecord(id: string): Promise<ImageRecord | undefined> {
    try {
      return await readJson<ImageRecord>(this.recordPath(id));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  private async saveRecord(record: ImageRecord): Promise<void> {
    await atomicWriteJson(this.recordPath(record.id), record);
  }

  // ---- layers --------------------------------------------------------------

  /** Synchronous: every pod start asks it of each layer of each image, one stat each (see list()). */
  private layerComplete(digest: string): boolean {
    return existsSync(path.join(this.layerDir(digest), 'ok'));
  }

  async layerRootfsPaths(image: ImageRecord): Promise<string[]> {
    const paths = image.layers.map((d) => path.join(this.layerDir(d), 'rootfs'));
    const missing: string[] = [];
    for (const d of image.layers) if (!this.layerComplete(d)) missing.push(d);
    if (missing.length === 0) return paths;
    await this.withLock(async () => {
      const config = await this.readBlobJson<OciConfig>(image.configDigest, image);
      for (const digest of missing) {
        if (this.layerComplete(digest)) continue;
        if (!(await exists(this.blobPath(digest)))) throw this.damaged(image, `layer blob ${digest} is missing`);
        const dest = this.layerDir(digest);
        await fs.rm(dest, { recursive: true, force: true });
        const stage = await this.createStage(false);
        try {
          const i = image.layers.indexOf(digest);
          await this.unpackInto(path.join(stage.dir, 'layer'), digest, config.rootfs?.diff_ids?.[i], false);
          await this.syncTree(path.join(stage.dir, 'layer'));
          await fs.rename(path.join(stage.dir, 'layer'), dest);
          await atomicWrite(path.join(dest, 'ok'), '');
        } finally {
          await stage.dispose();
        }
      }
    });
    return paths;
  }

  /** Unpack the stored blob of `digest` into dir/rootfs (dir is created). */
  private async unpackInto(dir: string, digest: string, diffId: string | undefined, allowDevices: boolean): Promise<void> {
    await fs.mkdir(dir, { recursive: true });
    await extractLayer(this.blobPath(digest), path.join(dir, 'rootfs'), digest, { allowDevices, log: this.log, limits: this.limits, ...(diffId ? { diffId } : {}) });
  }

  /**
   * Start unpacking a layer from its download as it arrives: `tap` is given
   * to fetchBlob (its backpressure holds the download back, so memory stays
   * flat), `finish()` ends the feed and says whether the tree is complete and
   * its diff_id matched, `abort()` stops it when the download failed.
   */
  private async streamingUnpack(dir: string, rootfs: string, digest: string, opts: ExtractOptions): Promise<{ tap: BlobTap; finish(): Promise<boolean>; abort(err: unknown): Promise<void> }> {
    await fs.mkdir(dir, { recursive: true });
    const feed = new PassThrough({ highWaterMark: 1 << 20 });
    feed.on('error', () => undefined); // failures surface through `unpacked`
    let fed = 0;
    let broken = false;
    // A cap exceeded is final (the bytes were the registry's, in order): the download stops at once,
    // instead of finishing and unpacking the blob again only to hit the cap a second time.
    let overLimit: ImageLimitError | undefined;
    const unpacked = extractLayerStream(feed, rootfs, digest, opts).then(
      () => !broken,
      (err: unknown) => {
        broken = true;
        if (err instanceof ImageLimitError) overLimit = err;
        feed.resume();
        return false;
      },
    );
    const tap: BlobTap = (chunk, offset) => {
      if (overLimit !== undefined) return Promise.reject(overLimit);
      if (broken || offset + chunk.length <= fed) return undefined; // a resumed or restarted download repeats bytes already fed
      if (offset > fed) {
        broken = true; // a gap cannot be fed; finish() then reports failure
        feed.destroy();
        return undefined;
      }
      const part = offset < fed ? chunk.subarray(fed - offset) : chunk;
      fed += part.length;
      // Socket-sized chunks go as they are: the unpacker's gunzip takes whatever queued while it worked as one batch.
      if (feed.write(part)) return undefined;
      return new Promise<void>((resolve) => {
        feed.once('drain', resolve);
        void unpacked.then(() => resolve());
      });
    };
    return {
      tap,
      finish: async () => {
        feed.end();
        const complete = await unpacked;
        if (overLimit !== undefined) throw overLimit;
        return complete;
      },
      abort: async (err) => {
        broken = true;
        feed.destroy(err instanceof Error ? err : new Error(String(err)));
        await unpacked;
      },
    };
  }

  /** Flush the filesystem before a tree is marked complete: one syncfs instead of an fsync per file. */
  private async syncTree(dir: string): Promise<void> {
    const handle = await fs.open(dir, 'r');
    try {
      await fsops.syncfs(handle.fd);
    } finally {
      await handle.close();
    }
  }

  private async readBlobJson<T>(digest: string, image: ImageRecord): Promise<T> {
    try {
      return await readJson<T>(this.blobPath(digest));
    } catch (err) {
      throw this.damaged(image, `blob ${digest} is unreadable (${(err as Error).message})`);
    }
  }

  private damaged(image: ImageRecord, why: string): UserError {
    return new UserError(`image ${image.names[0] ?? image.id} is damaged: ${why}`, { hint: `remove it (stevedore image rm ${hexOf(image.id).slice(0, 12)}) and import it again` });
  }

  // ---- pulling -------------------------------------------------------------

  /**
   * Pull `ref` from its registry: resolve it (linux/amd64 from an index),
   * stream every missing blob into a private stage (verified while it
   * streams), unpack new layers there, then commit under the store lock like
   * importPath. A failed pull leaves nothing behind. Concurrent pulls of the
   * same manifest in this process share one download. Blobs already in the
   * store are not downloaded again.
   */
  async pull(ref: string, opts: PullOptions = {}): Promise<ImageRecord> {
    const parsed = parseReference(ref);
    const client = new RegistryClient({
      ...(opts.auth ? { credentials: opts.auth } : {}),
      ...(opts.insecureRegistries ? { insecureRegistries: opts.insecureRegistries } : {}),
      ...(opts.maxManifestBytes !== undefined ? { maxManifestBytes: opts.maxManifestBytes } : {}),
      ...(opts.attempts !== undefined ? { attempts: opts.attempts } : {}),
      ...(opts.retryDelayMs !== undefined ? { retryDelayMs: opts.retryDelayMs } : {}),
    });
    try {
      const resolved = await client.resolve(parsed);
      const names = parsed.name !== undefined ? [parsed.name] : [];
      const digests = [repoDigest(parsed, resolved.manifest.digest), ...(resolved.index ? [repoDigest(parsed, resolved.index.digest)] : [])];
      const key = `${this.root}\0${resolved.manifest.digest}`;
      const running = inflightPulls.get(key);
      if (running !== undefined) {
        // Someone in this process is already pulling this image: share it, then add our names.
        const rec = await running;
        const named = await this.addNames(rec.id, names, digests);
        opts.onProgress?.({ kind: 'done', id: named.id, reused: true });
        return named;
      }
      const p = this.pullResolved(client, resolved, names, digests, opts);
      inflightPulls.set(key, p);
      const forget = () => {
        if (inflightPulls.get(key) === p) inflightPulls.delete(key);
      };
      p.then(forget, forget);
      return await p;
    } finally {
      client.close();
    }
  }

  private async pullResolved(client: RegistryClient, resolved: ResolvedImage, names: string[], digests: string[], opts: PullOptions): Promise<ImageRecord> {
    const { manifest } = resolved;
    const layersOf = (manifest.json.layers ?? []).map((l) => ({ digest: l.digest, size: l.size ?? 0 }));
    opts.onProgress?.({ kind: 'resolved', ref: resolved.ref.name ?? `${resolved.ref.repo}@${resolved.ref.digest}`, manifestDigest: manifest.digest, layers: layersOf });
    for (let attempt = 1; ; attempt++) {
      const have = (await this.list()).find((r) => r.manifestDigest === manifest.digest);
      try {
        if (have !== undefined) {
          for (const l of layersOf) opts.onProgress?.({ kind: 'layer', digest: l.digest, state: 'exists', bytes: l.size, total: l.size });
          const named = await this.addNames(have.id, names, digests);
          opts.onProgress?.({ kind: 'done', id: named.id, reused: true });
          return named;
        }
        const rec = await this.downloadAndCommit(client, resolved.ref, manifest, names, digests, opts);
        opts.onProgress?.({ kind: 'done', id: rec.id, reused: false });
        return rec;
      } catch (err) {
        // A blob we relied on (or the record we joined) was removed meanwhile: go again, downloading it.
        if (err instanceof VanishedBlob && attempt < 3) continue;
        throw err;
      }
    }
  }

  private async downloadAndCommit(client: RegistryClient, ref: ImageReference, manifest: FetchedManifest, names: string[], digests: string[], opts: PullOptions): Promise<ImageRecord> {
    const where = `${ref.repo}@${manifest.digest}`;
    const m = manifest.json;
    if (m.config === undefined || !Array.isArray(m.layers)) throw new InvalidInput(`manifest ${where} is not an image manifest (no config or layers)`);
    if (m.config.mediaType !== undefined && m.config.mediaType !== MT.ociConfig && m.config.mediaType !== MT.dockerConfig) {
      throw new InvalidInput(`${where} is an artifact (${m.config.mediaType}), not a container image`);
    }
    checkDigest(m.config.digest, `the config of ${where}`);
    for (const l of m.layers) {
      checkDigest(l?.digest, `a layer of ${where}`);
      if (l.mediaType !== undefined && !LAYER_TYPES.has(l.mediaType)) {
        throw new InvalidInput(`layer ${l.digest} of ${where} has media type ${l.mediaType}, which this runtime cannot unpack`, 'layers must be tar archives, uncompressed, gzip or zstd');
      }
    }
    const limits = resolveLimits(this.limits, opts.limits);
    checkDescriptorSizes(m.config, m.layers, where, limits);
    const budget = new ImageBudget(limits.maxImageBytes, `pull ${where}`);
    const stage = await this.createStage();
    try {
      const stager = this.stager(stage.dir, false);
      const blobsDir = path.join(stage.dir, 'blobs');
      await fs.mkdir(blobsDir, { recursive: true });
      const manifestBlob = await stager.stageBytes(manifest.body);

      const cfgPath = path.join(blobsDir, hexOf(m.config.digest));
      const cfg = await client.fetchBlob(ref, { digest: m.config.digest, size: m.config.size ?? undefined }, cfgPath);
      const configBlob: StagedBlob = { digest: m.config.digest, path: cfgPath, size: cfg.size };
      const configJson = await readSmallJson<OciConfig>(cfgPath, `config ${m.config.digest}`, MAX_CONFIG_BYTES);
      const diffIds = checkDiffIds(configJson, m.layers.length, m.config.digest);

      // One entry per distinct layer blob; already-stored blobs are not fetched.
      const byDigest = new Map<string, StagedBlob>();
      const todo: Array<{ digest: string; size: number | undefined; diffId: string }> = [];
      for (const [i, l] of m.layers.entries()) {
        if (byDigest.has(l.digest) || todo.some((t) => t.digest === l.digest)) continue;
        if (await exists(this.blobPath(l.digest))) {
          byDigest.set(l.digest, { digest: l.digest, path: '', size: l.size ?? 0 });
          opts.onProgress?.({ kind: 'layer', digest: l.digest, state: 'exists', bytes: l.size ?? 0, total: l.size ?? 0 });
        } else {
          todo.push({ digest: l.digest, size: typeof l.size === 'number' ? l.size : undefined, diffId: diffIds[i]! });
          opts.onProgress?.({ kind: 'layer', digest: l.digest, state: 'waiting', bytes: 0, total: l.size ?? 0 });
        }
      }
      const staged = new Map<string, string>();
      let failed: unknown;
      // Each finished layer starts flushing the stage at once, while the others still download:
      // by commit time most of the data is on disk already. A flush covers everything written before it.
      const flushes: Array<Promise<void>> = [];
      const flushStage = () => flushes.push(this.syncTree(stage.dir).catch((err: unknown) => void (failed ??= err)));
      const worker = async () => {
        for (let job = todo.shift(); job !== undefined && failed === undefined; job = todo.shift()) {
          const { digest, size, diffId } = job;
          try {
            const blobPath = path.join(blobsDir, hexOf(digest));
            const total = size ?? 0;
            const extractOpts = { allowDevices: opts.allowDevices ?? false, diffId, log: this.log, limits, budget };
            const dir = path.join(stage.dir, 'layers', hexOf(digest));
            const rootfs = path.join(dir, 'rootfs');
            // Unpack while downloading (the tree stays in the stage until the blob's digest is verified).
            const streaming = this.layerComplete(digest) ? undefined : await this.streamingUnpack(dir, rootfs, digest, extractOpts);
            opts.onProgress?.({ kind: 'layer', digest, state: 'downloading', bytes: 0, total });
            let got: { size: number };
            try {
              got = await client.fetchBlob(ref, { digest, ...(size !== undefined ? { size } : {}) }, blobPath, (bytes) =>
                opts.onProgress?.({ kind: 'layer', digest, state: 'downloading', bytes, total }),
              streaming?.tap);
            } catch (err) {
              await streaming?.abort(err);
              throw err;
            }
            byDigest.set(digest, { digest, path: blobPath, size: got.size });
            if (streaming) {
              opts.onProgress?.({ kind: 'layer', digest, state: 'extracting', bytes: got.size, total: got.size });
              if (!(await streaming.finish())) {
                // The streamed unpack failed (a hostile entry, a resumed download that did not line up…):
                // unpack the verified blob the ordinary way, which gives the real error if there is one.
                this.log.debug({ layer: digest }, 'streamed unpack did not complete; unpacking the verified blob');
                await fs.rm(rootfs, { recursive: true, force: true });
                await extractLayer(blobPath, rootfs, digest, extractOpts);
              }
              staged.set(digest, dir);
            }
            flushStage();
            opts.onProgress?.({ kind: 'layer', digest, state: 'done', bytes: got.size, total: got.size });
          } catch (err) {
            failed ??= err;
          }
        }
      };
      const workers = Math.max(1, Math.min(opts.concurrency ?? 6, todo.length));
      await Promise.all(Array.from({ length: workers }, worker));
      if (flushes.length === 0) flushStage(); // the manifest and config alone
      await Promise.all(flushes);
      if (failed !== undefined) throw failed;

      const plan: ImagePlan = {
        names,
        format: manifest.mediaType === MT.dockerManifest ? 'docker' : 'oci',
        manifest: manifestBlob,
        config: configBlob,
        configJson,
        layers: m.layers.map((l) => byDigest.get(l.digest)!),
        diffIds,
        repoDigests: digests,
        ...(m.annotations && Object.keys(m.annotations).length > 0 ? { annotations: m.annotations } : {}),
      };
      opts.onProgress?.({ kind: 'committing' });
      const [rec] = await this.withLock(() => this.commit([plan], staged, { allowDevices: opts.allowDevices ?? false }));
      this.log.info({ id: rec!.id, ref: names[0] ?? digests[0] }, 'image pulled');
      return rec!;
    } finally {
      await stage.dispose();
    }
  }

  /** Add names (moved from other records, as on import) and repo digests to a record. */
  private async addNames(id: string, names: string[], digests: string[]): Promise<ImageRecord> {
    return this.withLock(async () => {
      const current = await this.readRecord(id);
      if (current === undefined) throw new VanishedBlob(id);
      const merged: ImageRecord = {
        ...current,
        names: [...new Set([...current.names, ...names])],
        repoDigests: [...new Set([...(current.repoDigests ?? []), ...digests])],
      };
      if (merged.names.length !== current.names.length || merged.repoDigests!.length !== (current.repoDigests ?? []).length) await this.saveRecord(merged);
      for (const other of await this.list()) {
        if (other.id === id) continue;
        const keep = other.names.filter((n) => !names.includes(n));
        if (keep.length !== other.names.length) await this.saveRecord({ ...other, names: keep });
      }
      return merged;
    });
  }

  // ---- image GC ------------------------------------------------------------

  /**
   * Kubelet-style image GC. Images in `inUse` (ids or names) are never removed.
   *  1. with `minAgeMs`: every unused image last used (or imported, if never
   *     used) longer ago than that is removed;
   *  2. when disk use of the filesystem holding the store is at or above
   *     `highPercent`, unused images are removed least recently used first
   *     (skipping those newer than `protectNewerThanMs`), re-measuring after
   *     each, until use is at or below `lowPercent`.
   */
  async gc(opts: ImageGcOptions): Promise<ImageGcResult> {
    const high = opts.highPercent ?? 85;
    const low = opts.lowPercent ?? 80;
    if (!(low >= 0 && high <= 100 && low <= high)) throw new InvalidInput(`image GC thresholds must satisfy 0 <= low (${low}) <= high (${high}) <= 100`);
    if (opts.minAgeMs !== undefined && !(opts.minAgeMs >= 0)) throw new InvalidInput('image GC minimum age must be >= 0');
    const protect = opts.protectNewerThanMs ?? 2 * 60_000;
    const now = (opts.now ?? Date.now)();
    const statfs =
      opts.statfs ??
      (async (p: string) => {
        const s = await fs.statfs(p);
        return { bsize: Number(s.bsize), blocks: Number(s.blocks), bavail: Number(s.bavail) };
      });
    await this.ensureLayout();
    const usage = async () => {
      const s = await statfs(this.root);
      return s.blocks > 0 ? ((s.blocks - s.bavail) / s.blocks) * 100 : 0;
    };
    const used = (r: ImageRecord) => opts.inUse.has(r.id) || r.names.some((n) => opts.inUse.has(n));
    const lastUse = (r: ImageRecord) => Math.max(r.lastUsedAt ?? 0, r.importedAt);
    const removed: ImageGcResult['removed'] = [];
    const removeOne = async (r: ImageRecord, reason: 'age' | 'disk') => {
      const gone = await this.withLock(async () => {
        if ((await this.readRecord(r.id)) === undefined) return false; // removed meanwhile
        await fs.unlink(this.recordPath(r.id));
        await this.collectGarbage();
        return true;
      });
      if (gone) {
        removed.push({ id: r.id, names: r.names, size: r.size, reason });
        this.log.info({ id: r.id, names: r.names, reason }, 'image garbage-collected');
      }
    };

    const usageBefore = await usage();
    if (opts.minAgeMs !== undefined) {
      for (const r of await this.list()) {
        if (!used(r) && now - lastUse(r) > opts.minAgeMs) await removeOne(r, 'age');
      }
    }
    let current = await usage();
    if (current >= high) {
      const candidates = (await this.list())
        .filter((r) => !used(r) && now - lastUse(r) >= protect)
        .sort((a, b) => lastUse(a) - lastUse(b) || a.importedAt - b.importedAt || a.id.localeCompare(b.id));
      for (const r of candidates) {
        if (current <= low) break;
        await removeOne(r, 'disk');
        current = await usage();
      }
      if (current > low) this.log.warn({ usage: current, low }, 'image GC could not bring disk use down to the low threshold');
    }
    return { removed, usageBefore, usageAfter: current, unmetTarget: usageBefore >= high && current > low };
  }

  // ---- changing records ----------------------------------------------------

  async markUsed(image: ImageRecord): Promise<void> {
    await this.withLock(async () => {
      const current = await this.readRecord(image.id);
      if (current === undefined) throw new InvalidInput(`image ${image.id} is no longer in the store`);
      await this.saveRecord({ ...current, lastUsedAt: Date.now() });
    });
  }

  async remove(ref: string): Promise<ImageRecord> {
    return this.withLock(async () => {
      const image = await this.resolve(ref);
      if (image === undefined) throw new InvalidInput(`no image matches ${JSON.stringify(ref)}`, 'see the image list for names and ids');
      await fs.unlink(this.recordPath(image.id));
      await this.collectGarbage();
      this.log.info({ id: image.id, names: image.names }, 'image removed');
      return image;
    });
  }

  /**
   * Delete blobs and layer trees no record references. Only ever called
   * under the store lock; imports keep their blobs in tmp/ until commit.
   */
  private async collectGarbage(): Promise<void> {
    let records: ImageRecord[];
    try {
      records = await this.list();
    } catch (err) {
      // An unreadable record might reference anything: keep everything.
      this.log.error({ err }, 'not collecting garbage: a record is unreadable');
      return;
    }
    const blobs = new Set(records.flatMap((r) => [r.manifestDigest, r.configDigest, ...r.layers].map(hexOf)));
    const layers = new Set(records.flatMap((r) => r.layers.map(hexOf)));
    for (const hex of await readdirOrEmpty(this.blobsDir)) {
      if (!blobs.has(hex)) await fs.rm(path.join(this.blobsDir, hex), { force: true });
    }
    for (const hex of await readdirOrEmpty(this.layersDir)) {
      if (!layers.has(hex)) await fs.rm(path.join(this.layersDir, hex), { recursive: true, force: true });
    }
  }

  // ---- locking, staging, recovery -----------------------------------------

  private async withLock<T>(fn: () => Promise<T>): Promise<T> {
    await this.ensureLayout();
    const lock = await FileLock.acquire(this.lockFile, 'exclusive', LOCK_TIMEOUT_MS);
    try {
      if (!this.opened) {
        await this.recover();
        this.opened = true;
      }
      return await fn();
    } finally {
      lock.release();
    }
  }

  private async ensureLayout(): Promise<void> {
    // 0700: layer trees hold setuid binaries and image secrets; only root walks them.
    await fs.mkdir(this.root, { recursive: true, mode: 0o700 });
    for (const d of [this.blobsDir, this.layersDir, this.recordsDir, this.tmpDir]) await fs.mkdir(d, { recursive: true, mode: 0o700 });
    const h = await fs.open(this.lockFile, 'a', 0o600);
    await h.close();
  }

  /**
   * A private staging dir under tmp/, flock'ed while in use so that another
   * process opening the store does not take it for a crash leftover. It is
   * created under the store lock, which closes the window between mkdir and
   * flock (the recovery scan also runs under that lock).
   */
  private async createStage(takeStoreLock = true): Promise<{ dir: string; dispose(): Promise<void> }> {
    const make = async () => {
      const dir = await fs.mkdtemp(path.join(this.tmpDir, 'stage-'));
      const lock = FileLock.tryAcquire(dir, 'exclusive');
      if (lock === undefined) throw new Error(`could not lock fresh staging dir ${dir}`);
      return {
        dir,
        dispose: async () => {
          await fs.rm(dir, { recursive: true, force: true });
          lock.release();
        },
      };
    };
    return takeStoreLock ? this.withLock(make) : make();
  }

  /** Runs once per process, under the store lock: clean up after crashed writers. */
  private async recover(): Promise<void> {
    for (const name of await readdirOrEmpty(this.tmpDir)) {
      const p = path.join(this.tmpDir, name);
      const st = await fs.lstat(p).catch(() => undefined);
      if (st === undefined) continue;
      if (st.isDirectory()) {
        const lock = FileLock.tryAcquire(p, 'exclusive');
        if (lock === undefined) continue; // a live import in another process
        try {
          await fs.rm(p, { recursive: true, force: true });
        } finally {
          lock.release();
        }
      } else {
        await fs.rm(p, { force: true });
      }
    }
    for (const hex of await readdirOrEmpty(this.layersDir)) {
      const dir = path.join(this.layersDir, hex);
      if (!(await exists(path.join(dir, 'ok')))) await fs.rm(dir, { recursive: true, force: true });
    }
    for (const name of await readdirOrEmpty(this.recordsDir)) {
      if (name.startsWith('.') && name.endsWith('.tmp')) await fs.rm(path.join(this.recordsDir, name), { force: true });
    }
    await this.collectGarbage();
  }
}

