/**
 * A minimal writer of the "newc" cpio format the kernel unpacks as an
 * initramfs. Entries are written in the order given with fixed owner (root),
 * mtime 0 and sequential inode numbers, so the same inputs give the same bytes
 * (the asset build is reproducible without cpio(1) or touch -d tricks).
 */
export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; data: Buffer; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'chardev'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function header(ino: number, mode: number, size: number, name: string, rdev: [number, number] = [0, 0]): Buffer {
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  const fields = ['070701', hex(ino), hex(mode), hex(0), hex(0), hex(1), hex(0), hex(size), hex(0), hex(0), hex(rdev[0]), hex(rdev[1]), hex(Buffer.byteLength(name) + 1), hex(0)];
  return Buffer.concat([Buffer.from(fields.join('')), Buffer.from(name + '\0')]);
}

const pad4 = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);

export function cpioArchive(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  const push = (b: Buffer) => { parts.push(b); offset += b.length; };
  entries.forEach((e, i) => {
    const name = e.path.replace(/^\/+/, '');
    const data = e.type === 'file' ? e.data : e.type === 'symlink' ? Buffer.from(e.target) : Buffer.alloc(0);
    const mode = e.type === 'dir' ? S_IFDIR | (e.mode ?? 0o755) : e.type === 'symlink' ? S_IFLNK | 0o777
      : e.type === 'chardev' ? S_IFCHR | (e.mode ?? 0o666) : S_IFREG | (e.mode ?? 0o644);
    push(header(i + 1, mode, data.length, name, e.type === 'chardev' ? [e.major, e.minor] : [0, 0]));
    push(pad4(offset));
    push(data);
    push(pad4(offset));
  });
  push(header(0, 0, 0, 'TRAILER!!!'));
  push(pad4(offset));
  return Buffer.concat(parts);
}
