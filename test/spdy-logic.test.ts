/**
 * The WebSocket message header the agent writes in place ahead of a port-forward's DATA frame
 * (agent/spdy.ts `writeBinaryMessageHead`), read back by ws's own receiver, the parser of a
 * WebSocket client: every length form of RFC 6455 (7-bit, 16-bit, 64-bit) and their edges. The
 * whole path through kubectl is in exec.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytes } from 'node:crypto';
import * as ws from 'ws';
import { TRANSPORT_HEADROOM, writeBinaryMessageHead } from '../agent/spdy.js';

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

test.run();
