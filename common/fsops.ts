import { loadAddon } from './native.js';

/**
 * The filesystem calls Node lacks (native/fsops.c): mknod for overlayfs
 * whiteouts and device nodes, l{set,get}xattr for opaque directories, syncfs
 * to make an unpacked layer durable before it is marked complete, mount and
 * umount for pod root filesystems and volumes. The
 * addon throws Errors whose `code` is the errno name, like node:fs does.
 */
export interface FsOpsAddon {
  mknod(path: string, mode: number, dev: number): void;
  makedev(major: number, minor: number): number;
  lsetxattr(path: string, name: string, value: string | Buffer): void;
  /** undefined when the attribute is not set. */
  lgetxattr(path: string, name: string): Buffer | undefined;
  /** Flush the filesystem that holds fd (on the thread pool; fd must stay open until it settles). */
  syncfs(fd: number): Promise<void>;
  /** mount(2) (fstype e.g. "overlay", data its options), with no flags or any of MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND. */
  mount(source: string, target: string, fstype: string, data: string, flags?: number): void;
  /** umount2(2) with UMOUNT_NOFOLLOW. */
  umount(target: string): void;
  S_IFCHR: number;
  S_IFBLK: number;
  S_IFIFO: number;
  MS_NOSUID: number;
  MS_NODEV: number;
  MS_NOEXEC: number;
  MS_BIND: number;
}

export const fsops: FsOpsAddon = loadAddon('fsops');
