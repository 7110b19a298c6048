/**
 * The attach protocol of the console holders (stage1/console-holder.py on
 * namespaces, whose docstring is its definition; kvm's app proxy), for their
 * TypeScript ends: frames of [channel:1][length:4 BE][data]. Clients send
 * stdin, resize ("COLUMNS ROWS") and stdin-closed; holders send stdout,
 * stderr and the exit status (decimal).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export const CONSOLE_CHANNEL = { stdin: 0, stdout: 1, stderr: 2, exit: 3, resize: 4, stdinClosed: 255 } as const;

export function consoleFrame(channel: number, data: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = channel;
  head.writeUInt32BE(data.length, 1);
  return Buffer.concat([head, data]);
}

/** Splits a byte stream into frames; a frame cut across reads waits for its rest. */
export function consoleFrameReader(onFrame: (channel: number, body: Buffer) => void): (data: Buffer) => void {
  let buffered: Buffer = Buffer.alloc(0);
  return (data) => {
    buffered = buffered.length ? Buffer.concat([buffered, data]) : data;
    while (buffered.length >= 5) {
      const length = buffered.readUInt32BE(1);
      if (buffered.length < 5 + length) break;
      const channel = buffered[0]!;
      const body = buffered.subarray(5, 5 + length);
      buffered = buffered.subarray(5 + length);
      onFrame(channel, body);
    }
  };
}

/**
 * A name for the unix socket `socketPath` that connect() and listen() accept even past sun_path's
 * 108 bytes (a deep data dir, e.g. a node of `up --nodes`): /proc/self/fd/N/NAME of an open fd of its
 * directory. release() closes that fd once the socket is connected or listening.
 */
export function reachableSocketPath(socketPath: string): { target: string; release(): void } {
  if (Buffer.byteLength(socketPath) < 108) return { target: socketPath, release: () => undefined };
  let dirFd: number | undefined = fs.openSync(path.dirname(socketPath), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  return {
    target: `/proc/self/fd/${dirFd}/${path.basename(socketPath)}`,
    release: () => { if (dirFd !== undefined) { fs.closeSync(dirFd); dirFd = undefined; } },
  };
}
