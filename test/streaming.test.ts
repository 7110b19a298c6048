/**
 * The node API's stream server (agent/streaming.ts) with real processes and a
 * real WebSocket client, without a cluster: the channel protocol (v4 and v5),
 * the exit status on channel 3, stdin's close (v5), the per-node stream limit
 * and the idle timeout — whose expiry must kill the command.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import WebSocket from 'ws';
import { createLogger } from '../common/log.js';
import { startExec } from '../runtime-rkt/exec.js';
import type { ContainerRuntime } from '../agent/runtime.js';
import { execFlags, StreamError, StreamServer, type StreamingLimits } from '../agent/streaming.js';
import { eventually, rejects } from './helpers/assert.js';

const t = suite('streaming: the node API\'s exec channels, limits and idle timeout');

/** Commands run on this machine as they are: the runtime's exec path with an enter plan of "just run it". */
const hostRuntime = {
  async exec(_pod: string, _c: string, command: string[], opts: { stdin: boolean; tty: boolean }) { return startExec({ argv: (c) => c, protectedPids: [] }, command, opts); },
  async checkExec() {},
} as unknown as ContainerRuntime;

async function serve(limits: StreamingLimits): Promise<{ url: string; close: () => Promise<void> }> {
  const streams = new StreamServer(hostRuntime, createLogger('test', 'silent'), limits);
  const server = http.createServer((_req, res) => { res.writeHead(404); res.end(); });
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://x');
    streams.exec(req, socket, head, { podId: 'p', container: 'c', ...execFlags(url.searchParams) }).catch((err) => {
      const code = err instanceof StreamError ? err.code : 500;
      socket.end(`HTTP/1.1 ${code} x\r\nContent-Length: ${Buffer.byteLength(err.message)}\r\nConnection: close\r\n\r\n${err.message}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `ws://127.0.0.1:${port}`,
    close: () => new Promise((r) => { streams.close(); server.closeAllConnections(); server.close(() => r()); }),
  };
}

interface Outcome { channels: Map<number, string>; closeCode: number }

function execWs(base: string, command: string[], opts: { protocol?: string; stdin?: boolean; onOpen?: (ws: WebSocket) => void; onMessage?: (ch: number, text: string, ws: WebSocket) => void } = {}): Promise<Outcome> {
  const q = new URLSearchParams();
  for (const c of command) q.append('command', c);
  q.set('output', '1');
  q.set('error', '1');
  if (opts.stdin) q.set('input', '1');
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base}/exec/ns/pod/c?${q}`, [opts.protocol ?? 'v5.channel.k8s.io']);
    const channels = new Map<number, string>();
    ws.on('open', () => opts.onOpen?.(ws));
    ws.on('message', (data: Buffer) => {
      const ch = data[0]!;
      const text = data.subarray(1).toString();
      channels.set(ch, (channels.get(ch) ?? '') + text);
      opts.onMessage?.(ch, text, ws);
    });
    ws.on('close', (code) => resolve({ channels, closeCode: code }));
    ws.on('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.on('error', reject);
  });
}

t('v4: stdout and stderr on their channels, the exit code as a Status on channel 3', async () => {
  const s = await serve({ maxStreams: 4, idleTimeoutMs: 60_000 });
  try {
    const out = await execWs(s.url, ['sh', '-c', 'echo out; echo err >&2; exit 3'], { protocol: 'v4.channel.k8s.io' });
    assert.is(out.channels.get(1), 'out\n');
    assert.is(out.channels.get(2), 'err\n');
    const status = JSON.parse(out.channels.get(3)!);
    assert.is(status.status, 'Failure');
    assert.is(status.reason, 'NonZeroExitCode');
    assert.equal(status.details.causes, [{ reason: 'ExitCode', message: '3' }]);
    const ok = await execWs(s.url, ['true']);
    assert.equal(JSON.parse(ok.channels.get(3)!), { metadata: {}, status: 'Success' });
  } finally {
    await s.close();
  }
});

t('v5: stdin, then its close ends the command\'s input', async () => {
  const s = await serve({ maxStreams: 4, idleTimeoutMs: 60_000 });
  try {
    const out = await execWs(s.url, ['sh', '-c', 'cat; echo eof-seen'], {
      stdin: true,
      onOpen: (ws) => {
        ws.send(Buffer.concat([Buffer.of(0), Buffer.from('typed\n')]));
        ws.send(Buffer.of(255, 0));
      },
    });
    assert.is(out.channels.get(1), 'typed\neof-seen\n');
    assert.is(JSON.parse(out.channels.get(3)!).status, 'Success');
  } finally {
    await s.close();
  }
});

t('one stream more than the node allows is refused (429); the slot frees when a stream ends', async () => {
  const s = await serve({ maxStreams: 1, idleTimeoutMs: 60_000 });
  try {
    let release: (() => void) | undefined;
    const first = execWs(s.url, ['sh', '-c', 'echo started; read line'], {
      stdin: true,
      onMessage: (ch, text, ws) => { if (ch === 1 && text.includes('started')) release = () => ws.send(Buffer.concat([Buffer.of(0), Buffer.from('go\n')])); },
    });
    await eventually('the first stream to run', async () => (release ? true : undefined));
    await rejects(execWs(s.url, ['true']), /HTTP 429/);
    release!();
    await first;
    const again = await execWs(s.url, ['true']);
    assert.is(JSON.parse(again.channels.get(3)!).status, 'Success');
  } finally {
    await s.close();
  }
});

t('an idle stream is closed and its command killed', async () => {
  const s = await serve({ maxStreams: 4, idleTimeoutMs: 500 });
  try {
    let pid = 0;
    const started = Date.now();
    const out = await execWs(s.url, ['sh', '-c', 'echo $$; exec sleep 100'], { onMessage: (ch, text) => { if (ch === 1 && /\d+/.test(text)) pid = Number(text.trim()); } });
    assert.ok(Date.now() - started < 10_000, 'closed long before the command would end');
    assert.ok(pid > 0);
    assert.not.ok(out.channels.has(3), 'no exit status: the command did not finish');
    await eventually('the command to be gone', async () => {
      try { process.kill(pid, 0); return undefined; } catch { return true; }
    });
  } finally {
    await s.close();
  }
});

t('neither WebSocket nor SPDY: a clear refusal, nothing run', async () => {
  const s = await serve({ maxStreams: 4, idleTimeoutMs: 60_000 });
  try {
    const port = new URL(s.url).port;
    const res = await new Promise<{ code: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/exec/ns/pod/c?command=true&output=1', headers: { Connection: 'Upgrade', Upgrade: 'h2c' } });
      req.on('response', (r) => { let b = ''; r.on('data', (d) => { b += d; }); r.on('end', () => resolve({ code: r.statusCode ?? 0, body: b })); });
      req.on('upgrade', () => reject(new Error('upgraded')));
      req.on('error', reject);
      req.end();
    });
    assert.is(res.code, 400);
    assert.match(res.body, /over WebSocket \(subprotocol v5.channel.k8s.io or v4.channel.k8s.io\) or SPDY\/3.1/);
  } finally {
    await s.close();
  }
});

t.run();
