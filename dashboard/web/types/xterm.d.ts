// xterm.js as the browser imports it from /vendor/xterm/ (dashboard/server.ts serves the package's files there).
export * from '@xterm/xterm';
