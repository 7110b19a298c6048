/**
 * Standard cron schedules (five fields: minute hour day-of-month month day-of-week, with `*`,
 * lists, ranges, steps, month and weekday names, and the @hourly/@daily/@weekly/@monthly/@yearly
 * macros), as robfig/cron's standard parser reads CronJob schedules. Day of month and day of week
 * both restricted: either matches (Vixie cron).
 */
export interface Schedule { minute: Set<number>; hour: Set<number>; dom: Set<number>; month: Set<number>; dow: Set<number>; domStar: boolean; dowStar: boolean }

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const MACROS: Record<string, string> = { '@yearly': '0 0 1 1 *', '@annually': '0 0 1 1 *', '@monthly': '0 0 1 * *', '@weekly': '0 0 * * 0', '@daily': '0 0 * * *', '@midnight': '0 0 * * *', '@hourly': '0 * * * *' };

export class CronError extends Error {}

function field(text: string, min: number, max: number, names: string[] = [], nameBase = 0): Set<number> {
  const out = new Set<number>();
  const num = (s: string): number => {
    const i = names.indexOf(s.toLowerCase());
    if (i >= 0) return i + nameBase;
    if (!/^\d+$/.test(s)) throw new CronError(`failed to parse int from ${s}`);
    return Number(s);
  };
  for (const part of text.split(',')) {
    const [range, stepText] = part.split('/') as [string, string | undefined];
    const step = stepText === undefined ? 1 : Number(stepText);
    if (!Number.isInteger(step) || step < 1) throw new CronError(`step of range should be a positive number: ${part}`);
    let lo: number, hi: number;
    if (range === '*' || range === '?') [lo, hi] = [min, max];
    else if (range.includes('-')) {
      const [a, b] = range.split('-') as [string, string];
      [lo, hi] = [num(a), num(b)];
    } else {
      lo = num(range);
      hi = stepText === undefined ? lo : max;
    }
    if (lo < min || hi > max || lo > hi) throw new CronError(`end of range (${hi}) above maximum (${max}) or beginning (${lo}) below minimum (${min}): ${part}`);
    for (let v = lo; v <= hi; v += step) out.add(v);
  }
  return out;
}

export function parseSchedule(text: string): Schedule {
  const spec = MACROS[text.trim()] ?? text.trim();
  if (spec.startsWith('TZ=') || spec.startsWith('CRON_TZ=')) throw new CronError('TZ= in the schedule is not supported; use spec.timeZone');
  const parts = spec.split(/\s+/);
  if (parts.length !== 5) throw new CronError(`expected exactly 5 fields, found ${parts.length}: ${text}`);
  const dow = field(parts[4]!, 0, 7, DAYS);
  if (dow.has(7)) { dow.delete(7); dow.add(0); }
  return {
    minute: field(parts[0]!, 0, 59), hour: field(parts[1]!, 0, 23), dom: field(parts[2]!, 1, 31), month: field(parts[3]!, 1, 12, MONTHS, 1), dow,
    domStar: parts[2] === '*' || parts[2] === '?', dowStar: parts[4] === '*' || parts[4] === '?',
  };
}

/** The minute, hour, day, month and weekday of a time in a time zone (undefined: this process's zone). */
function wallClock(t: Date, timeZone: string | undefined): { minute: number; hour: number; dom: number; month: number; dow: number } {
  if (!timeZone) return { minute: t.getMinutes(), hour: t.getHours(), dom: t.getDate(), month: t.getMonth() + 1, dow: t.getDay() };
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', minute: 'numeric', hour: 'numeric', day: 'numeric', month: 'numeric', weekday: 'short' }).formatToParts(t).map((p) => [p.type, p.value]));
  return { minute: Number(parts.minute), hour: Number(parts.hour), dom: Number(parts.day), month: Number(parts.month), dow: DAYS.indexOf(String(parts.weekday).toLowerCase().slice(0, 3)) };
}

export function matches(s: Schedule, t: Date, timeZone?: string): boolean {
  const w = wallClock(t, timeZone);
  if (!s.minute.has(w.minute) || !s.hour.has(w.hour) || !s.month.has(w.month)) return false;
  const domOk = s.dom.has(w.dom), dowOk = s.dow.has(w.dow);
  if (s.domStar || s.dowStar) return domOk && dowOk;
  return domOk || dowOk;
}

/** The latest scheduled minute in (after, now], looking back at most `limit` minutes. */
export function latestScheduled(s: Schedule, afterMs: number, nowMs: number, timeZone?: string, limit = 60 * 24 * 7): number | undefined {
  const first = Math.floor(afterMs / 60_000) * 60_000 + 60_000;
  let t = Math.floor(nowMs / 60_000) * 60_000;
  for (let n = 0; t >= first && n < limit; t -= 60_000, n++) if (matches(s, new Date(t), timeZone)) return t;
  return undefined;
}
