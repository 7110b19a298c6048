import { createRequire } from 'node:module';

/**
 * The filesystem calls Node lacks (native/fsops.c): mknod for overlayfs
 * whiteouts and device nodes, l{set,get}xattr for opaque directories, syncfs
 * to make an unpacked layer durable before it is marked complete. The
 * addon throws Errors whose `code` is the errno name, like node:fs does.
 */
export interface FsOpsAddon {
  mknod(path: string, mode: number, dev: number): void;
  makedev(major: number, minor: number): number;
  lsetxattr(path: string, name: string, value: string | Buffer): void;
  /** undefined when the attribute is not set. */
  lgetxattr(path: string, name: string): Buffer | undefined;
  /** Flush the filesystem that holds fd. */
  syncfs(fd: number): void;
  S_IFCHR: number;
  S_IFBLK: number;
  S_IFIFO: number;
}

const require = createRequire(import.meta.url);
// dist/runtime-rkt/image/fsops.js -> <repo>/native/build/Release
export const fsops: FsOpsAddon = require('../../../native/build/Release/fsops.node');
