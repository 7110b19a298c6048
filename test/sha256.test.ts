import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { StreamSha256, sha256Kernel, type Sha256Kernel } from '../runtime-rkt/image/sha256.js';

const reference = (chunks: Buffer[]) => `sha256:${chunks.reduce((h, c) => h.update(c), createHash('sha256')).digest('hex')}`;

test('native SHA-256 equals node:crypto over any chunking, empty chunks included', async () => {
  const data = randomBytes(3 << 20);
  for (const sizes of [[1], [7, 0, 65536, 1], [1 << 20], [3 << 20]]) {
    const chunks: Buffer[] = [];
    for (let at = 0, i = 0; at < data.length; i++) {
      const n = sizes[i % sizes.length]!;
      chunks.push(data.subarray(at, at + n));
      at += n;
      if (chunks.length > 5000) {
        chunks.push(data.subarray(at));
        break;
      }
    }
    const h = new StreamSha256();
    for (const c of chunks) await h.update(c);
    assert.is(await h.digest(), reference(chunks), `chunk sizes ${sizes.join(',')}`);
  }
  assert.is(await new StreamSha256().digest(), reference([]), 'nothing hashed');
});

test('update() asks the caller to wait only past the high-water mark, and the wait ends', async () => {
  const h = new StreamSha256(1 << 20);
  const chunk = randomBytes(512 << 10);
  assert.is(h.update(chunk), undefined, 'under the mark: no wait');
  assert.is(h.update(chunk), undefined, 'at the mark: no wait');
  const wait = h.update(chunk);
  assert.ok(wait instanceof Promise, 'past the mark: a promise');
  await wait;
  assert.is(await h.digest(), reference([chunk, chunk, chunk]));
});

test('a taken digest cannot be extended or taken again', async () => {
  const h = new StreamSha256();
  await h.update(Buffer.from('abc'));
  assert.is(await h.digest(), 'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  const again = await h.digest().then(() => 'no error', (err: Error) => err.message);
  assert.match(again, /already taken/);
});

/** Hash `streams` concurrently, each in chunks of random sizes, and compare every digest with node:crypto's. */
async function hashConcurrently(streams: Buffer[], label: string): Promise<void> {
  const digests = await Promise.all(streams.map(async (data) => {
    const h = new StreamSha256(256 << 10);
    for (let at = 0; at < data.length;) {
      const n = Math.min(data.length - at, [1, 63, 64, 65, 4096, 70_000, 300_000][Math.floor(Math.random() * 7)]!);
      const wait = h.update(data.subarray(at, at + n));
      at += n;
      if (wait) await wait;
    }
    return h.digest();
  }));
  streams.forEach((data, i) => assert.is(digests[i], reference([data]), `${label}: stream ${i} of ${data.length} bytes`));
}

test('every multi-stream kernel the CPU has equals node:crypto, for 1 to 12 concurrent streams and every padding case', async () => {
  const initial = sha256Kernel();
  const kernels: Sha256Kernel[] = ['none'];
  for (const k of ['avx2', 'avx512'] as const) {
    try {
      sha256Kernel(k);
      kernels.push(k);
    } catch {
      // not on this CPU
    }
  }
  try {
    for (const k of kernels) {
      assert.is(sha256Kernel(k), k);
      // Lengths around the one- and two-block padding boundaries, all hashed at once.
      await hashConcurrently(Array.from({ length: 130 }, (_, n) => randomBytes(n)), `${k}, lengths 0..129`);
      for (const count of [1, 2, 3, 5, 8, 12]) {
        const streams = Array.from({ length: count }, () => randomBytes(Math.floor(Math.random() * (3 << 20)) + 1));
        await hashConcurrently(streams, `${k}, ${count} streams`);
      }
    }
  } finally {
    sha256Kernel(initial);
  }
  assert.ok(kernels.length > 1 || process.arch !== 'x64', `an x64 CPU of this kind has AVX2 at least (kernels: ${kernels.join(', ')})`);
});

test('a stream nobody digests (a failed download) is still hashed and lets the process exit', () => {
  const module = fileURLToPath(new URL('../runtime-rkt/image/sha256.js', import.meta.url));
  const script = `const { StreamSha256 } = await import(${JSON.stringify(module)});
    for (let i = 0; i < 3; i++) new StreamSha256().update(Buffer.alloc(300 << 10));
    console.log('left behind');`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
  assert.is(r.error, undefined, 'the process exited by itself (it hung before: the data waited for lanes to fill)');
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /left behind/);
});

test.run();
