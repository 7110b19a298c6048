/**
 * A node sandbox: a real systemd booted as PID 1 in private pid/mount/cgroup/uts
 * namespaces, with only journald and D-Bus, so that hosts whose PID 1 is not
 * systemd (containers, CI) can run Stevedore, and so that tests have a real
 * systemd of their own to break.
 *
 * State on the host, per sandbox: `<stateRoot>/<name>/` (stateRoot defaults to
 * /run/stevedore/sandboxes), holding:
 *   pid                the inner systemd's PID as seen from the host
 *   info.json          SandboxInfo (written before boot, so a failed boot can be cleaned up)
 *   boot.log           stdout/stderr of sandbox/boot.sh and of systemd before journald runs
 *   machine-id, hostname     bind-mounted over /etc/machine-id and /etc/hostname inside
 *   dbus/system_bus_socket   the sandbox's system bus, reachable from the host
 *   journal/<machine-id>/    the sandbox's journal files (journalctl -D …)
 *   run/               empty on the host; boot.sh builds the sandbox's /run on it
 */
export interface SandboxInfo {
  name: string;
  /** Host PID of the sandbox's systemd (PID 1 inside). */
  pid: number;
  stateDir: string;
  /** D-Bus address usable from the host, e.g. `unix:path=/run/stevedore/sandboxes/x/dbus/system_bus_socket`. */
  busAddress: string;
  /** Directory to pass to `journalctl -D` from the host. */
  journalDir: string;
  machineId: string;
  /** Unix milliseconds. */
  startedAt: number;
  /**
   * Host cgroup directories the sandbox owns, one per hierarchy (v1
   * controllers, name=systemd, cgroup2); everything inside runs below them.
   */
  cgroupDirs: string[];
  /** Host PID of the `unshare` process that is the parent of `pid`. */
  launcherPid: number;
}

export interface SandboxStartOptions {
  name?: string;
  stateRoot?: string;
  /** Give up if systemd has not reached `running` (or `degraded`) within this time. */
  timeoutMs?: number;
}
