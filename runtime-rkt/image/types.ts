/**
 * The image store's contract with the rest of runtime-rkt (and later the
 * api-service, which reads the same files without writing).
 *
 * On disk, under `<dataDir>/images/`:
 *   blobs/sha256/<hex>            content-addressed blobs (manifests, configs, layer tars as received)
 *   layers/sha256/<hex>/rootfs/   one unpacked tree per layer blob, shared read-only by every pod
 *   layers/sha256/<hex>/ok         written last: a layer tree without it is incomplete and is redone
 *   records/<image id hex>.json   one ImageRecord per image (atomic write)
 *   tmp/                          staging; anything here is garbage at start-up
 *   lock                          flock: writers take it exclusive while changing records
 */

import type { ImageLimits } from '../../runtime-api/image-limits.js';

export type ImageFormat = 'oci' | 'docker';

/** The parts of an OCI image config the runtime honours (config.config in the JSON). */
export interface ImageRunConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
  Labels?: Record<string, string> | null;
  ExposedPorts?: Record<string, unknown> | null;
}

export interface ImageRecord {
  /** `sha256:<hex>` of the image config blob (what `docker images --no-trunc` calls the image ID). */
  id: string;
  /** Fully qualified references that point at this image, e.g. `localhost/busybox:latest`. */
  names: string[];
  format: ImageFormat;
  manifestDigest: string;
  configDigest: string;
  /** Layer blob digests, bottom layer first, as the manifest lists them. */
  layers: string[];
  /** The image config's `config` object. */
  config: ImageRunConfig;
  os: string;
  architecture: string;
  /** Bytes the image's blobs take in the store (shared blobs counted in full). */
  size: number;
  /** Unix milliseconds. */
  importedAt: number;
  /** Unix milliseconds; updated when a pod is prepared from it (for GC by age). */
  lastUsedAt?: number;
  annotations?: Record<string, string>;
  /**
   * Pulled images: `domain/repository@sha256:…` for the manifest digest (and
   * the index digest when pulled through a multi-arch index), as docker's
   * RepoDigests. `resolve('domain/repo@sha256:…')` finds the image by these.
   */
  repoDigests?: string[];
}

export interface ImportOptions {
  /** Name to give the image when the archive carries none (e.g. an OCI layout without ref names). */
  name?: string;
  /** Allow device nodes in layers (privileged images only). Default false: refused. */
  allowDevices?: boolean;
  /** Caps for this import (limits.ts); unset ones are the store's. */
  limits?: Partial<ImageLimits>;
}

export interface ImageStoreApi {
  /** Import an OCI image layout (dir or tar) or a docker-archive tar (`docker save`), optionally gzip'd. */
  importPath(source: string, opts?: ImportOptions): Promise<ImageRecord[]>;
  list(): Promise<ImageRecord[]>;
  /** Find by full name, short name (`busybox` = `localhost/busybox:latest` or `docker.io/library/busybox:latest`), id or unique id prefix. */
  resolve(ref: string): Promise<ImageRecord | undefined>;
  /** Unpacked layer trees, bottom layer first, unpacking any that are missing. */
  layerRootfsPaths(image: ImageRecord): Promise<string[]>;
  markUsed(image: ImageRecord): Promise<void>;
  /** Remove an image record and any blobs/layers no other image references. */
  remove(ref: string): Promise<ImageRecord>;
}

/** What the agent and CLI use beyond ImageStoreApi (a separate interface so existing fakes stay valid). */
export interface ImagePullApi extends ImageStoreApi {
  /** Pull from a registry (see registry.ts); commits exactly like importPath. */
  pull(ref: string, opts?: PullOptions): Promise<ImageRecord>;
  /** Image garbage collection by disk-use thresholds and age. */
  gc(opts: ImageGcOptions): Promise<ImageGcResult>;
}

/** Progress of a pull, for progress bars and pod events. */
export type PullProgress =
  | { kind: 'resolved'; ref: string; manifestDigest: string; layers: Array<{ digest: string; size: number }> }
  | { kind: 'layer'; digest: string; state: 'exists' | 'waiting' | 'downloading' | 'extracting' | 'done'; bytes: number; total: number }
  | { kind: 'committing' }
  | { kind: 'done'; id: string; reused: boolean };

export interface PullOptions {
  /** Registry credentials by host (or host/path prefix): see auth.ts (docker config.json, imagePullSecrets). */
  auth?: Record<string, { username: string; password: string }>;
  /** `host[:port]` registries that may be reached over plain HTTP (loopback always may). */
  insecureRegistries?: string[];
  onProgress?: (p: PullProgress) => void;
  /** Allow device nodes in layers (privileged images only). Default false. */
  allowDevices?: boolean;
  /** Manifest size limit in bytes (default 4 MiB). */
  maxManifestBytes?: number;
  /** Caps on layer and image sizes, entries and tar headers for this pull (limits.ts); unset ones are the store's. */
  limits?: Partial<ImageLimits>;
  /** Attempts per request on network errors, 5xx and truncation (default 4), and the first backoff (default 500 ms). */
  attempts?: number;
  retryDelayMs?: number;
  /** Parallel layer downloads (default 6, as containers/image — skopeo, podman — has it: with fewer, the last layers of an image download alone, and their hashes cannot share vector lanes). */
  concurrency?: number;
}

export interface StatfsLike {
  /** Block size in bytes. */
  bsize: number;
  /** Total blocks. */
  blocks: number;
  /** Blocks available to unprivileged users. */
  bavail: number;
}

export interface ImageGcOptions {
  /** Start removing when disk use of the image filesystem is at or above this. Default 85. */
  highPercent?: number;
  /** Remove until disk use is at or below this. Default 80. */
  lowPercent?: number;
  /** Also remove unused images whose last use (or import) is older than this, regardless of disk use. */
  minAgeMs?: number;
  /** Threshold GC leaves images imported or used less than this long ago (default 2 min, as kubelet's MinAge). */
  protectNewerThanMs?: number;
  /** Image ids (or names) that pods use: never removed. */
  inUse: Set<string>;
  /** Injected for tests; default fs.statfs of the store root. */
  statfs?: (path: string) => Promise<StatfsLike>;
  now?: () => number;
}

export interface ImageGcResult {
  removed: Array<{ id: string; names: string[]; size: number; reason: 'age' | 'disk' }>;
  /** Disk use before and after, in percent (0..100). */
  usageBefore: number;
  usageAfter: number;
  /** True when disk use stays above lowPercent because nothing more could be removed. */
  unmetTarget: boolean;
}
