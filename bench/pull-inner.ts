/**
 * One pull in a process of its own, for bench/pull.ts: `node
 * dist/bench/pull-inner.js REF STORE_DIR` pulls REF into a fresh ImageStore
 * and prints `pullms` (the pull alone, as the agent pulls) and `maxrss`. It
 * loads only the image store, as a lean command would: the benchmark's own
 * modules stay out of its start-up time and its heap.
 */
import { performance } from 'node:perf_hooks';
import { ImageStore } from '../runtime-rkt/image/store.js';

const [ref, storeDir] = process.argv.slice(2);
if (!ref || !storeDir) throw new Error('usage: pull-inner.js REF STORE_DIR');
const store = new ImageStore(storeDir);
const t0 = performance.now();
await store.pull(ref);
process.stdout.write(`pullms ${(performance.now() - t0).toFixed(1)}\nmaxrss ${process.resourceUsage().maxRSS}\n`);
