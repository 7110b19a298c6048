/**
 * The `--image-max-*` flags of `stevedore image pull` and `image import`
 * (the agent has the same ones): only the option specs, so main.ts can
 * declare them without loading the image modules at start-up. They are parsed
 * by imageLimitsFromFlags (image-pull.ts); the caps are runtime-api/image-limits.ts.
 */
/** The `--image-max-*` flags of `image pull` and `image import`, as Commander hands them over. */
export interface ImageLimitFlags {
  imageMaxLayerSize?: string;
  imageMaxImageSize?: string;
  imageMaxLayerEntries?: string;
  imageMaxTarHeaderSize?: string;
}

/** Commander option specs for the caps, shared by `image pull` and `image import` (the agent has the same flags). */
export const IMAGE_LIMIT_OPTIONS: Array<[flag: string, description: string]> = [
  ['--image-max-layer-size <size>', 'refuse layers larger than this uncompressed (bytes or 512Mi, 64Gi…; default 64Gi)'],
  ['--image-max-image-size <size>', 'refuse images whose layers are larger than this together, uncompressed (default 128Gi)'],
  ['--image-max-layer-entries <n>', 'refuse layers with more entries than this (default 1048576)'],
  ['--image-max-tar-header-size <size>', 'refuse tar extension headers (PAX, GNU long names) larger than this (default 1Mi, at most 4Mi)'],
];

