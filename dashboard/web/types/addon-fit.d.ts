// @xterm/addon-fit as the browser imports it from /vendor/xterm/.
export * from '@xterm/addon-fit';
