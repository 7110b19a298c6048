/**
 * `node --import <this file> bin/stevedore.js …`: traces one CLI run for the
 * pod-start benchmark. It first loads the CLI's module graph itself, one
 * static import of dist/cli/main.js at a time (each timed: the marginal cost
 * of that import), wraps the runtime's methods and every spawn, and at exit
 * writes the spans to $STEVEDORE_BENCH_TRACE as JSON.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { nowMs } from './stats.js';
import { Tracer, instrumentRuntime } from './trace.js';

const out = process.env.STEVEDORE_BENCH_TRACE;
const tracer = new Tracer();
const hookStart = nowMs();
const distRoot = new URL('../', import.meta.url);

/** main.js's static imports, in order (read from the built file, so this follows changes to the CLI). */
export function mainImports(): string[] {
  const mainUrl = new URL('cli/main.js', distRoot);
  const text = readFileSync(mainUrl, 'utf8');
  const specs = [...text.matchAll(/^import\s[^'"]*['"]([^'"]+)['"];?\s*$/gm)].map((m) => m[1]!);
  return specs.map((s) => (s.startsWith('.') ? new URL(s, mainUrl).href : s));
}

const graphStart = nowMs();
for (const spec of mainImports()) {
  const t = nowMs();
  await import(spec);
  tracer.add(`import ${spec.replace(distRoot.href, 'dist/')}`, t, nowMs());
}
tracer.add('load the CLI module graph (static imports of dist/cli/main.js)', graphStart, nowMs());
await instrumentRuntime(tracer, distRoot.href);

process.on('exit', () => {
  if (!out) return;
  writeFileSync(out, JSON.stringify({ processStart: performance.timeOrigin, hookStart, exit: nowMs(), spans: tracer.spans }));
});
