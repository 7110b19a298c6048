/**
 * The node → client splice of control-plane/node-upgrade.ts (the bytes a port-forward downloads),
 * as pure logic: reads landing in reused arenas, written in order, one write at a time, reading
 * stopped while the client lags. The whole path through kubectl is in exec.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { ArenaSplice, SPLICE_PAUSE_BYTES, SPLICE_RESUME_BYTES } from '../control-plane/node-upgrade.js';

/**
 * A client whose writes complete only when the test says so. A write's bytes are copied when it
 * completes, not when it starts: an arena reused before then would show as corrupt output.
 */
function slowClient() {
  const written: Buffer[] = [];
  const inFlight: Array<{ chunk: Buffer; done: () => void }> = [];
  let ended = false;
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) { inFlight.push({ chunk, done }); },
    final(done) { ended = true; done(); },
  });
  return {
    stream,
    writesStarted: () => written.length + inFlight.length,
    inFlight: () => inFlight.length,
    completeOne() {
      const w = inFlight.shift();
      if (!w) return false;
      written.push(Buffer.from(w.chunk));
      w.done();
      return true;
    },
    output: () => Buffer.concat(written),
    ended: () => ended,
  };
}

/** Let the Writable's callbacks (process.nextTick) run. */
const settle = () => new Promise((r) => setImmediate(r));

test('a read goes out at once when no write is in flight; what lands meanwhile goes out as one write', async () => {
  const client = slowClient();
  const splice = new ArenaSplice(client.stream, () => undefined);
  const land = (text: string) => { const room = splice.room(); room.write(text); return splice.landed(Buffer.byteLength(text)); };
  assert.ok(land('ls\n'));
  assert.is(client.writesStarted(), 1, 'a keystroke is not held back');
  land('a');
  land('b');
  land('c');
  assert.is(client.inFlight(), 1, 'one write at a time');
  client.completeOne();
  await settle();
  assert.is(client.inFlight(), 1);
  client.completeOne();
  await settle();
  assert.is(client.output().toString(), 'ls\nabc', 'the three reads went out together');
  // A trickle fills small arenas one after another: all an idle exec holds is 32 KiB.
  for (let i = 0; i < 40; i++) { land('x'.repeat(1000)); while (client.completeOne()) await settle(); }
  assert.is(splice.room().buffer.byteLength, 32 << 10);
});

test('under a lagging client: every byte in order across arenas, reading stopped above the pause mark and resumed below the resume mark', async () => {
  const client = slowClient();
  let resumed = 0;
  const splice = new ArenaSplice(client.stream, () => { resumed++; });
  const source = randomBytes(8 << 20);
  let sent = 0, stops = 0, reading = true, largest = 0;
  while (sent < source.length || client.inFlight()) {
    if (reading && sent < source.length) {
      const room = splice.room();
      assert.ok(room.length >= 16 << 10, 'a read always has room for a TLS record');
      const n = Math.min(room.length, 1 + Math.floor(Math.random() * (16 << 10)), source.length - sent);
      source.copy(room, 0, sent, sent + n);
      largest = Math.max(largest, room.buffer.byteLength);
      sent += n;
      if (!splice.landed(n)) { reading = false; stops++; }
      continue;
    }
    // Stopped (or all sent): the client catches up a write at a time.
    const before = resumed;
    assert.ok(client.completeOne(), 'a stopped splice has a write in flight');
    await settle();
    if (resumed > before) reading = true;
  }
  splice.end();
  await settle();
  assert.ok(stops > 0, 'reading was stopped');
  assert.is(largest, 256 << 10, 'a download moves to large arenas');
  assert.is(resumed, stops, 'and resumed as often');
  assert.ok(client.ended(), 'the client is ended once everything is written');
  assert.ok(client.output().equals(source), 'every byte, in order');
  assert.ok(SPLICE_RESUME_BYTES < SPLICE_PAUSE_BYTES);
});

test('the node closing first: the client is ended only after what was read has been written', async () => {
  const client = slowClient();
  const splice = new ArenaSplice(client.stream, () => undefined);
  for (const part of ['one ', 'two']) { splice.room().write(part); splice.landed(part.length); }
  splice.end();
  await settle();
  assert.not.ok(client.ended());
  while (client.completeOne()) await settle();
  await settle();
  assert.is(client.output().toString(), 'one two');
  assert.ok(client.ended());
});

test.run();
