import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash, randomBytes } from 'node:crypto';
import { StreamSha256 } from '../runtime-rkt/image/sha256.js';

const reference = (chunks: Buffer[]) => `sha256:${chunks.reduce((h, c) => h.update(c), createHash('sha256')).digest('hex')}`;

test('thread-pool SHA-256 equals node:crypto over any chunking, empty chunks included', async () => {
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

test.run();
