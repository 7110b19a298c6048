/**
 * The WebSocket message header the agent writes in place ahead of a port-forward's DATA frame
 * (agent/spdy.ts `writeBinaryMessageHead`), read back by ws's own receiver, the parser of a
 * WebSocket client: every length form of RFC 6455 (7-bit, 16-bit, 64-bit) and their edges. And
 * the session's header compression against another zlib (node:zlib, as a client's): streams
 * opened, answered and fed in one write, and a header block that is not zlib. The whole path
 * through kubectl is in exec.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { once } from 'node:events';
import * as zlib from 'node:zlib';
import * as ws from 'ws';
import { SPDY_HEADER_DICTIONARY, SpdySession, TRANSPORT_HEADROOM, writeBinaryMessageHead, type SpdyStream } from '../agent/spdy.js';

/** ws's frame parser (exported by ws, not declared by @types/ws). */
interface FrameReceiver {
  on(event: 'message', cb: (data: Buffer, isBinary: boolean) => void): void;
  on(event: 'error', cb: (err: Error) => void): void;
  write(chunk: Buffer, cb: () => void): void;
}
const { Receiver } = ws as unknown as { Receiver: new (opts: { isServer: boolean; maxPayload: number }) => FrameReceiver };

/** What a WebSocket client receives from `wire`: the messages, or the protocol error that stopped it. */
function receive(wire: Buffer): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const messages: Buffer[] = [];
    // A client's receiver: frames from a server are unmasked.
    const receiver = new Receiver({ isServer: false, maxPayload: 0 });
    receiver.on('message', (data: Buffer, isBinary: boolean) => { if (!isBinary) reject(new Error('a text message')); messages.push(Buffer.from(data)); });
    receiver.on('error', reject);
    receiver.write(wire, () => resolve(messages));
  });
}

for (const length of [0, 1, 125, 126, 127, 65535, 65536, 65544, 1 << 20]) {
  test(`a ${length}-byte payload: one whole binary message, byte for byte`, async () => {
    const payload = randomBytes(length);
    const buffer = Buffer.concat([Buffer.alloc(TRANSPORT_HEADROOM, 0xee), payload]);
    const start = writeBinaryMessageHead(buffer);
    const headBytes = TRANSPORT_HEADROOM - start;
    assert.is(headBytes, length < 126 ? 2 : length < 65536 ? 4 : 10);
    // Two messages back to back: the first one's header says exactly where it ends.
    const messages = await receive(Buffer.concat([buffer.subarray(start), buffer.subarray(start)]));
    assert.is(messages.length, 2);
    for (const m of messages) assert.ok(m.equals(payload), `payload of ${length} bytes came back as ${m.length}`);
  });
}

/** One header block through a zlib stream that goes on (a client's compressor or decompressor), ending in a sync flush. */
function zlibBlock(z: zlib.Deflate | zlib.Inflate, block: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const onData = (d: Buffer) => out.push(d);
    z.on('data', onData);
    z.once('error', reject);
    z.write(block, (err) => {
      if (err) return reject(err);
      z.flush(zlib.constants.Z_SYNC_FLUSH, () => { z.off('data', onData); z.off('error', reject); resolve(Buffer.concat(out)); });
    });
  });
}

function headerBlock(headers: Record<string, string>): Buffer {
  const parts = [Buffer.alloc(4)];
  parts[0]!.writeUInt32BE(Object.keys(headers).length);
  for (const s of Object.entries(headers).flat()) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(Buffer.byteLength(s));
    parts.push(len, Buffer.from(s));
  }
  return Buffer.concat(parts);
}

function controlFrame(type: number, flags: number, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt16BE(0x8003, 0);
  head.writeUInt16BE(type, 2);
  head.writeUInt32BE(body.length, 4);
  head[4] = flags;
  return Buffer.concat([head, body]);
}

function synStream(id: number, block: Buffer): Buffer {
  const body = Buffer.alloc(10);
  body.writeUInt32BE(id, 0);
  return controlFrame(1, 0, Buffer.concat([body, block]));
}

function dataFrame(id: number, fin: boolean, payload: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(id, 0);
  head.writeUInt32BE(payload.length, 4);
  head[4] = fin ? 1 : 0;
  return Buffer.concat([head, payload]);
}

/** A SpdySession on the server end of a loopback connection, and the client end. */
async function sessionPair(): Promise<{ session: SpdySession; client: net.Socket; close: () => void }> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection');
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const [socket] = (await accepted) as [net.Socket];
  return { session: SpdySession.onSocket(socket), client, close: () => { client.destroy(); socket.destroy(); server.close(); } };
}

test('header blocks: two streams opened, answered and fed in one write, against node:zlib on the client side', async () => {
  const { session, client, close } = await sessionPair();
  try {
    const deflate = zlib.createDeflate({ dictionary: SPDY_HEADER_DICTIONARY });
    const errorHeaders = { streamtype: 'error', port: '8080', requestid: '0' };
    const dataHeaders = { streamtype: 'data', port: '8080', requestid: '0' };
    const wire = Buffer.concat([
      synStream(1, await zlibBlock(deflate, headerBlock(errorHeaders))),
      synStream(3, await zlibBlock(deflate, headerBlock(dataHeaders))),
      dataFrame(3, false, Buffer.from('hello ')),
      dataFrame(3, true, Buffer.from('world')),
    ]);
    const opened: SpdyStream[] = [];
    let received = '';
    const ended = new Promise<void>((resolve) => session.on('stream', (s: SpdyStream) => {
      opened.push(s);
      if (s.id === 3) s.consume((d) => { received += d; }, resolve);
    }));
    const replies: Buffer[] = [];
    let answer = Buffer.alloc(0);
    client.on('data', (d: Buffer) => { answer = Buffer.concat([answer, d]); });
    client.write(wire);
    await ended;
    assert.equal(opened.map((s) => [s.id, s.headers]), [[1, errorHeaders], [3, dataHeaders]]);
    assert.is(received, 'hello world', 'DATA delivered in order, after its stream was opened');
    for (let i = 0; i < 50 && answer.length < 2 * 8; i++) await new Promise((r) => setTimeout(r, 10));
    for (let off = 0; off < answer.length;) {
      const length = answer.readUIntBE(off + 5, 3);
      assert.is(answer.readUInt16BE(off + 2), 2, 'a SYN_REPLY');
      replies.push(answer.subarray(off + 8, off + 8 + length));
      off += 8 + length;
    }
    assert.equal(replies.map((r) => r.readUInt32BE(0)), [1, 3], 'each stream answered, in order');
    // The replies' blocks are one zlib stream: the second inflates only in the first one's context.
    const inflate = zlib.createInflate({ dictionary: SPDY_HEADER_DICTIONARY });
    for (const r of replies) assert.is((await zlibBlock(inflate, r.subarray(4))).readUInt32BE(0), 0, 'an empty header block');
  } finally {
    close();
  }
});

for (const [what, frame] of [
  ['a header block that is not zlib', synStream(1, randomBytes(40))],
  ['a SYN_STREAM shorter than its stream id', controlFrame(1, 0, Buffer.alloc(2))],
  ['a RST_STREAM without its fields', controlFrame(3, 0, Buffer.alloc(0))],
] as const) {
  test(`${what}: the session closes, no stream is opened, nothing is thrown`, async () => {
    const { session, client, close } = await sessionPair();
    try {
      let opened = 0;
      session.on('stream', () => { opened++; });
      const closed = once(session, 'close');
      client.write(frame);
      await closed;
      assert.is(opened, 0);
    } finally {
      close();
    }
  });
}

test.run();
