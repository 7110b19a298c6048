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
}

export interface ImportOptions {
  /** Name to give the image when the archive carries none (e.g. an OCI layout without ref names). */
  name?: string;
  /** Allow device nodes in layers (privileged images only). Default false: refused. */
  allowDevices?: boolean;
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
