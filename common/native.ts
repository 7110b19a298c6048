import { createRequire } from 'node:module';
import { accessSync, constants } from 'node:fs';

const require = createRequire(import.meta.url);
const loaded = new Map<string, unknown>();

/**
 * The one loader of the project's N-API addons (native/*.c, built by
 * `npm ci` into native/build/Release). A missing build says how to make it,
 * instead of each caller's bare MODULE_NOT_FOUND.
 */
export function loadAddon<T>(name: 'flock' | 'fsops' | 'inotify' | 'netns' | 'notify' | 'sha256' | 'spawn' | 'decompress'): T {
  let addon = loaded.get(name);
  if (addon === undefined) {
    // dist/common/native.js -> <repo>/native/build/Release
    const file = new URL(`../../native/build/Release/${name}.node`, import.meta.url).pathname;
    try {
      addon = require(file);
    } catch (err) {
      throw new Error(`cannot load the native addon ${file}: ${(err as Error).message} (build it with \`npm ci\` or \`bash scripts/setup.sh\`)`, { cause: err });
    }
    loaded.set(name, addon);
  }
  return addon as T;
}

/**
 * A helper program built beside the addons (native/binding.gyp, type
 * executable, linked statically: it runs inside app roots with any libc),
 * as a node path; undefined when it was not built, so a caller can take its
 * slower path instead.
 */
export function nativeHelperPath(name: 'seccomp-exec' | 'stevedore-enter' | 'console-relay'): string | undefined {
  const file = new URL(`../../native/build/Release/${name}`, import.meta.url).pathname;
  try {
    accessSync(file, constants.X_OK);
    return file;
  } catch {
    return undefined;
  }
}
