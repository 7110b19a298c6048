import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync, gunzipSync } from 'node:zlib';
import { LayerGunzip } from '../runtime-rkt/image/gunzip.js';

/** Feed `data` in chunks of the given sizes (cycled) through LayerGunzip; the output, or the error message. */
async function gunzip(data: Buffer, sizes: number[] = [65536]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for (let at = 0, i = 0; at < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    chunks.push(data.subarray(at, at + n));
    at += n;
  }
  const out: Buffer[] = [];
  await pipeline(Readable.from(chunks), new LayerGunzip(), new Writable({ write(c: Buffer, _e, cb) { out.push(c); cb(); } }));
  return Buffer.concat(out);
}

const failure = (p: Promise<unknown>) => p.then(() => 'no error', (err: Error) => err.message);

test('inflates like node:zlib: random and compressible data, any chunking', async () => {
  const text = Buffer.from('layer '.repeat(400_000));
  for (const data of [randomBytes(3 << 20), text, Buffer.alloc(0), Buffer.from('x')]) {
    const gz = gzipSync(data);
    for (const sizes of [[1, 7, 4096], [65536], [1 << 20], [gz.length]]) {
      if (sizes[0] === 1 && gz.length > 200_000) continue; // byte-at-a-time over megabytes only costs time
      assert.ok((await gunzip(gz, sizes)).equals(gunzipSync(gz)), `${data.length} bytes in chunks of ${sizes.join(',')}`);
    }
  }
});

test('multi-member data is inflated to its end; bytes after a member that start no other are an error, as in node:zlib', async () => {
  const parts = [randomBytes(100_000), Buffer.from('second member'), Buffer.alloc(0), randomBytes(70_000)];
  const gz = Buffer.concat(parts.map((p) => gzipSync(p)));
  for (const sizes of [[13, 1000], [65536]]) {
    assert.ok((await gunzip(gz, sizes)).equals(Buffer.concat(parts)), `members in chunks of ${sizes.join(',')}`);
    assert.match(await failure(gunzip(Buffer.concat([gz, Buffer.from('trailing garbage')]), sizes)), /gzip data is corrupt: incorrect header check/);
  }
});

test('truncated, corrupt, empty and non-gzip data fail with a message saying so; a wrong CRC is not checked', async () => {
  const data = randomBytes(200_000);
  const gz = gzipSync(data);
  assert.match(await failure(gunzip(gz.subarray(0, gz.length - 1000))), /truncated/);
  assert.match(await failure(gunzip(gz.subarray(0, gz.length - 4))), /truncated/, 'without the length word of the trailer');
  const corrupt = Buffer.from(gzipSync(Buffer.from('compressible '.repeat(10_000))));
  corrupt.fill(0xff, 20, 60);
  assert.match(await failure(gunzip(corrupt)), /gzip data is corrupt/);
  assert.match(await failure(gunzip(Buffer.alloc(0))), /empty/);
  assert.match(await failure(gunzip(Buffer.from('plain tar bytes, not gzip'))), /gzip data is corrupt/);
  // The digests prove the bytes; the CRC is not computed (that is the point), so a wrong one passes.
  const badCrc = Buffer.from(gz);
  badCrc.writeUInt32LE((badCrc.readUInt32LE(badCrc.length - 8) ^ 1) >>> 0, badCrc.length - 8);
  assert.ok((await gunzip(badCrc)).equals(data));
});

test('output waits for a slow reader: a small input that inflates to 256 MiB is never buffered whole', async () => {
  const gz = gzipSync(Buffer.alloc(256 << 20));
  assert.ok(gz.length < 1 << 20);
  let maxBuffered = 0;
  let total = 0;
  const inflater = new LayerGunzip();
  await pipeline(Readable.from([gz]), inflater, new Writable({
    highWaterMark: 1 << 20,
    write(c: Buffer, _e, cb) {
      total += c.length;
      maxBuffered = Math.max(maxBuffered, inflater.readableLength);
      setImmediate(cb);
    },
  }));
  assert.is(total, 256 << 20);
  assert.ok(maxBuffered <= 2 << 20, `at most ~2 MiB waited in the inflater (${maxBuffered} bytes did)`);
});

test.run();
