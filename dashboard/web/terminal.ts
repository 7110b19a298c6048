/**
 * An exec terminal (xterm.js) on the control plane's pods/exec, through the
 * dashboard's WebSocket splice: the channel protocol of v5/v4.channel.k8s.io
 * (one byte of channel, then data: 0 stdin, 1 stdout, 2 stderr, 3 status, 4 resize).
 */
import { Terminal } from '/vendor/xterm/xterm.mjs';
import { FitAddon } from '/vendor/xterm/addon-fit.mjs';
import { whoami } from './api.js';

const [ns = '', pod = '', container = ''] = location.hash.replace(/^#/, '').split('/').map(decodeURIComponent);
const title = document.getElementById('title')!;
title.textContent = `${ns}/${pod} · ${container}`;
document.title = `exec ${ns}/${pod}`;

const term = new Terminal({ cursorBlink: true, fontSize: 14 });
const fit = new FitAddon();
term.loadAddon(fit);
term.open(document.getElementById('terminal')!);
fit.fit();

async function connect(): Promise<void> {
  const me = await whoami();
  const q = new URLSearchParams({ container, stdin: 'true', stdout: 'true', tty: 'true', csrf: me.csrfToken });
  q.append('command', 'sh');
  const ws = new WebSocket(`ws://${location.host}/k8s/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(pod)}/exec?${q}`, ['v5.channel.k8s.io', 'v4.channel.k8s.io']);
  ws.binaryType = 'arraybuffer';
  const encoder = new TextEncoder();
  const send = (channel: number, data: Uint8Array) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    const frame = new Uint8Array(data.length + 1);
    frame[0] = channel;
    frame.set(data, 1);
    ws.send(frame);
  };
  const resize = () => send(4, encoder.encode(JSON.stringify({ Width: term.cols, Height: term.rows })));
  ws.onopen = () => { resize(); term.focus(); };
  ws.onmessage = (ev) => {
    const bytes = new Uint8Array(ev.data as ArrayBuffer);
    if (bytes.length === 0) return;
    const channel = bytes[0];
    if (channel === 1 || channel === 2) term.write(bytes.subarray(1));
    else if (channel === 3) {
      const status = JSON.parse(new TextDecoder().decode(bytes.subarray(1)));
      term.write(`\r\n[${status.status === 'Success' ? 'exited' : `ended: ${status.message ?? status.reason ?? 'failure'}`}]\r\n`);
    }
  };
  ws.onclose = (ev) => term.write(`\r\n[connection closed${ev.reason ? `: ${ev.reason}` : ''}]\r\n`);
  ws.onerror = () => term.write('\r\n[the terminal could not connect: is the container running, and may you exec?]\r\n');
  term.onData((d: string) => send(0, encoder.encode(d)));
  window.addEventListener('resize', () => { fit.fit(); resize(); });
}

connect().catch((err: Error) => term.write(`\r\n[${err.message}]\r\n`));
