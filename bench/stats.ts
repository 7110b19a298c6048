/** Small statistics and formatting helpers for the benchmarks. */

/** Wall-clock time in milliseconds with sub-millisecond precision (same clock as journald's __REALTIME_TIMESTAMP). */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Median (mean of the two middle values for an even count). */
export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Nearest-rank percentile: with fewer than 100 samples p99 is the maximum. */
export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[rank - 1]!;
}

export interface Summary {
  n: number;
  median: number;
  p90: number;
  p99: number;
  min: number;
  max: number;
}

export function summarize(values: number[]): Summary {
  return {
    n: values.length,
    median: median(values),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    min: Math.min(...values),
    max: Math.max(...values),
  };
}

export const fmtMs = (v: number | undefined): string => (v === undefined || Number.isNaN(v) ? '-' : v >= 100 ? v.toFixed(0) : v.toFixed(1));
export const fmtRatio = (a: number | undefined, b: number | undefined): string =>
  a === undefined || b === undefined || !b || Number.isNaN(a) || Number.isNaN(b) ? '-' : `${(a / b).toFixed(2)}x`;

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Walk `--flag [value]` arguments. `on(flag, value)` handles one flag and
 * returns false for flags it does not know; `value()` consumes the next
 * argument (an error names the flag when there is none).
 */
export function eachFlag(argv: string[], on: (flag: string, value: () => string) => boolean): void {
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (!on(flag, value)) throw new Error(`unknown option ${flag} (see bench/README.md)`);
  }
}

/**
 * Put `body` (which starts with `begin` and ends with `end`) in place of the
 * section between those markers in `file`, or append it — after `heading`,
 * when given — if the file has no such section yet.
 */
export async function replaceResultsSection(file: string, begin: string, end: string, body: string, heading?: string): Promise<void> {
  const { readFile, writeFile } = await import('node:fs/promises');
  const current = await readFile(file, 'utf8').catch(() => '');
  const i = current.indexOf(begin);
  const j = current.indexOf(end);
  const appended = `${current}${current && !current.endsWith('\n') ? '\n' : ''}${current ? '\n' : ''}${heading ? `${heading}\n\n` : ''}${body}\n`;
  await writeFile(file, i >= 0 && j > i ? current.slice(0, i) + body + current.slice(j + end.length) : appended);
  process.stderr.write(`bench: updated ${file}\n`);
}
