import { loadAddon } from '../common/native.js';

const addon = loadAddon<{ notify(state: string): number }>('notify');

/**
 * Tell systemd about our state (Type=notify services). Outside systemd
 * (no $NOTIFY_SOCKET) this does nothing.
 */
export function sdNotify(state: string): void {
  const rc = addon.notify(state);
  if (rc < 0) throw new Error(`sd_notify(${state}) failed: errno ${-rc}`);
}

/** The watchdog interval systemd expects pings at (half of WatchdogSec=), or undefined when not watched. */
export function watchdogIntervalMs(): number | undefined {
  const usec = Number(process.env.WATCHDOG_USEC);
  const pid = Number(process.env.WATCHDOG_PID || process.pid);
  if (!usec || pid !== process.pid) return undefined;
  return Math.max(500, Math.floor(usec / 2000));
}
