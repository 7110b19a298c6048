import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import { LayerDecompressor, type LayerCodec } from '../runtime-rkt/image/decompress.js';

/** Compressed with node:zlib (gzip) or the zstd CLI (node 20 has no zstd; Debian's zstd package). */
function compress(codec: LayerCodec, data: Buffer): Buffer {
  if (codec === 'gzip') return gzipSync(data);
  const r = spawnSync('zstd', ['-q', '-c', '-3'], { input: data, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`zstd failed: ${r.stderr}`);
  return r.stdout;
}

/** Feed `data` in chunks of the given sizes (cycled) through a LayerDecompressor; the output. */
async function decode(codec: LayerCodec, data: Buffer, sizes: number[] = [65536]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for (let at = 0, i = 0; at < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    chunks.push(data.subarray(at, at + n));
    at += n;
  }
  const out: Buffer[] = [];
  await pipeline(Readable.from(chunks), new LayerDecompressor(codec), new Writable({ write(c: Buffer, _e, cb) { out.push(c); cb(); } }));
  return Buffer.concat(out);
}

const failure = (p: Promise<unknown>) => p.then(() => 'no error', (err: Error) => err.message);

for (const codec of ['gzip', 'zstd'] as const) {
  test(`${codec}: random and compressible data, any chunking, give back the original`, async () => {
    const text = Buffer.from('layer '.repeat(400_000));
    for (const data of [randomBytes(3 << 20), text, Buffer.alloc(0), Buffer.from('x')]) {
      const packed = compress(codec, data);
      for (const sizes of [[1, 7, 4096], [65536], [1 << 20], [packed.length]]) {
        if (sizes[0] === 1 && packed.length > 200_000) continue; // byte-at-a-time over megabytes only costs time
        assert.ok((await decode(codec, packed, sizes)).equals(data), `${data.length} bytes in chunks of ${sizes.join(',')}`);
      }
    }
  });

  test(`${codec}: several members or frames are read to the end; bytes after one that start no other are an error`, async () => {
    const parts = [randomBytes(100_000), Buffer.from('second part'), Buffer.alloc(0), randomBytes(70_000)];
    const packed = Buffer.concat(parts.map((p) => compress(codec, p)));
    for (const sizes of [[13, 1000], [65536]]) {
      assert.ok((await decode(codec, packed, sizes)).equals(Buffer.concat(parts)), `in chunks of ${sizes.join(',')}`);
      assert.match(await failure(decode(codec, Buffer.concat([packed, Buffer.from('trailing garbage')]), sizes)), new RegExp(`${codec} data is corrupt`));
    }
  });

  test(`${codec}: truncated, corrupt, empty and foreign data fail with a message saying so`, async () => {
    const packed = compress(codec, randomBytes(200_000));
    assert.match(await failure(decode(codec, packed.subarray(0, packed.length - 1000))), /truncated/);
    assert.match(await failure(decode(codec, packed.subarray(0, packed.length - 3))), /truncated/, 'without the last bytes');
    const corrupt = Buffer.from(compress(codec, Buffer.from(randomBytes(50_000).toString('hex'))));
    corrupt.fill(0xff, 20, 60);
    assert.match(await failure(decode(codec, corrupt)), new RegExp(`${codec} data is corrupt`));
    assert.match(await failure(decode(codec, Buffer.alloc(0))), /empty/);
    assert.match(await failure(decode(codec, Buffer.from('plain tar bytes, not compressed'))), new RegExp(`${codec} data is corrupt`));
  });

  test(`${codec}: output waits for a slow reader: a small input that decodes to 256 MiB is never buffered whole`, async () => {
    const packed = compress(codec, Buffer.alloc(256 << 20));
    assert.ok(packed.length < 1 << 20);
    let maxBuffered = 0;
    let total = 0;
    const decoder = new LayerDecompressor(codec);
    await pipeline(Readable.from([packed]), decoder, new Writable({
      highWaterMark: 1 << 20,
      write(c: Buffer, _e, cb) {
        total += c.length;
        maxBuffered = Math.max(maxBuffered, decoder.readableLength);
        setImmediate(cb);
      },
    }));
    assert.is(total, 256 << 20);
    assert.ok(maxBuffered <= 2 << 20, `at most ~2 MiB waited in the decoder (${maxBuffered} bytes did)`);
  });
}

test('gzip: the CRC is not computed (the digests prove the bytes), so a wrong one passes', async () => {
  const data = randomBytes(200_000);
  const badCrc = Buffer.from(gzipSync(data));
  badCrc.writeUInt32LE((badCrc.readUInt32LE(badCrc.length - 8) ^ 1) >>> 0, badCrc.length - 8);
  assert.ok((await decode('gzip', badCrc)).equals(data));
});

test.run();
