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
  /** Set when the sandbox has a network namespace of its own (see SandboxNetwork). */
  network?: SandboxNetworkInfo;
}

/**
 * A network namespace of the sandbox's own, as a node of a multi-node
 * cluster has: `/run/netns/<netns>` with loopback, `eth0` (address/24, default
 * route via the gateway) whose veth peer is on a bridge of the host that holds
 * the gateway address. IPv4 forwarding is on inside (pods route through it).
 */
export interface SandboxNetwork {
  /** The host bridge, created when missing (e.g. `stvd-nodes`); at most 15 characters. */
  bridge: string;
  /** The sandbox's address, e.g. 10.250.0.11 (a /24 with the gateway). */
  address: string;
  /** The bridge's address on the host and the sandbox's default route, e.g. 10.250.0.1. */
  gateway: string;
  /** Prefix length of address and gateway (default 24). */
  prefixLength?: number;
}

export interface SandboxNetworkInfo extends Required<SandboxNetwork> {
  /** Name under /run/netns (the sandbox's name). */
  netns: string;
  /** The host end of the veth pair. */
  hostVeth: string;
}

export interface SandboxStartOptions {
  name?: string;
  stateRoot?: string;
  /** Give up if systemd has not reached `running` (or `degraded`) within this time. */
  timeoutMs?: number;
  /** A network namespace of its own on a host bridge; default: the host's network namespace. */
  network?: SandboxNetwork;
}
