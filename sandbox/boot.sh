#!/bin/bash
# Boots a Stevedore node sandbox: a real systemd as PID 1 of private pid, mount,
# cgroup and uts namespaces, running only journald and D-Bus.
#
# Started by sandbox.ts (detached, stdout/stderr to <state>/boot.log) in two phases:
#   boot.sh outer   on the host: join the sandbox's cgroups, then unshare and
#                   re-run this script as "inner". Must not fork before the
#                   exec of unshare: sandbox.ts finds the inner PID 1 as the
#                   only child of this process.
#   boot.sh inner   PID 1 of the new namespaces: build a private /proc, /run,
#                   /dev, /sys/fs/cgroup and unit directories, then exec systemd.
#
# Inputs (environment):
#   STEVEDORE_SANDBOX_NAME          sandbox name, used as hostname
#   STEVEDORE_SANDBOX_STATE         host state dir; must hold machine-id, hostname,
#                                   dbus/, journal/ and an empty run/
#   STEVEDORE_SANDBOX_CGROUP_PROCS  newline-separated cgroup.procs files (outer)
#
# Hard rule: never let systemd reach the host's default target or any
# sysinit/sockets unit other than journald and dbus: systemd-tmpfiles --boot
# would empty the host's /tmp, and host services would start twice.
set -euo pipefail

readonly TARGET=stevedore-sandbox.target
# Units our target needs; every other unit a stock .wants directory would pull in is masked.
# (Not the audit socket: it would copy the host's kernel audit stream into the sandbox journal.)
readonly KEEP_UNITS=" systemd-journald.service systemd-journald.socket systemd-journald-dev-log.socket dbus.socket dbus.service "
# Masked even if no .wants directory lists them: each touches host state that
# our private mount namespace does not cover (/tmp, /var, sysctls, devices).
readonly ALWAYS_MASK="tmp.mount systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service
systemd-tmpfiles-clean.service systemd-tmpfiles-clean.timer systemd-remount-fs.service
systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service
systemd-sysctl.service systemd-modules-load.service systemd-random-seed.service
systemd-journal-flush.service systemd-update-utmp.service systemd-logind.service
systemd-firstboot.service systemd-machine-id-commit.service systemd-binfmt.service
systemd-sysusers.service getty.target console-getty.service"

log() { echo "boot.sh[$1]: ${*:2}" >&2; }

outer() {
  : "${STEVEDORE_SANDBOX_STATE:?}" "${STEVEDORE_SANDBOX_NAME:?}" "${STEVEDORE_SANDBOX_CGROUP_PROCS:?}"
  local procs
  # Builtins only (no fork): the cgroup move must cover this very process,
  # which becomes unshare and then the parent of the sandbox's PID 1.
  while IFS= read -r procs; do
    [[ -n "$procs" ]] && echo $$ > "$procs"
  done <<< "$STEVEDORE_SANDBOX_CGROUP_PROCS"
  unset STEVEDORE_SANDBOX_CGROUP_PROCS
  # slave: mounts the host makes later under a shared mount (e.g. /run/netns
  # once `ip netns` made it shared) still propagate in; ours never leak out.
  exec unshare --fork --kill-child --pid --mount --cgroup --uts --propagation slave \
    /bin/bash "${BASH_SOURCE[0]}" inner
}

# Prints "mountpoint mount-options fstype super-options" for every cgroup mount.
cgroup_mounts() {
  awk '{ for (i = 7; $i != "-"; i++); if ($(i+1) == "cgroup" || $(i+1) == "cgroup2") print $5, $6, $(i+1), $(i+3) }' /proc/self/mountinfo
}

setup_cgroups() {
  local mounts mp opts fstype super
  mounts=$(cgroup_mounts)
  if awk '$1 == "/sys/fs/cgroup" && $3 == "cgroup2" { found = 1 } END { exit !found }' <<< "$mounts"; then
    # Pure cgroup2 host: one fresh mount shows our cgroup namespace's root.
    mount -n -t cgroup2 -o nosuid,nodev,noexec,relatime cgroup2 /sys/fs/cgroup
    return
  fi
  mount -n -t tmpfs -o mode=755,nosuid,nodev,noexec tmpfs /sys/fs/cgroup
  # Same options as the host, hierarchy by hierarchy: left to itself systemd
  # would try to co-mount cpu,cpuacct, fail on hosts that mount them apart,
  # and silently run without the cpu controller.
  while read -r mp opts fstype super; do
    [[ "$mp" == /sys/fs/cgroup/* ]] || continue
    mkdir -p "$mp"
    mount -n -t "$fstype" -o "$opts,$super" "$fstype" "$mp"
  done <<< "$mounts"
}

# Private /dev: host /dev/log, /dev/kmsg and /dev/console stay out of reach.
setup_dev() {
  mount -n -t tmpfs -o mode=755,nosuid,size=4m tmpfs /dev
  mknod -m 666 /dev/null c 1 3
  mknod -m 666 /dev/zero c 1 5
  mknod -m 666 /dev/full c 1 7
  mknod -m 666 /dev/random c 1 8
  mknod -m 666 /dev/urandom c 1 9
  mknod -m 666 /dev/tty c 5 0
  mkdir -m 755 /dev/pts
  mkdir -m 1777 /dev/shm
  mount -n -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5,nosuid,noexec devpts /dev/pts
  ln -s pts/ptmx /dev/ptmx
  mount -n -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
  ln -s /proc/self/fd /dev/fd
  ln -s /proc/self/fd/0 /dev/stdin
  ln -s /proc/self/fd/1 /dev/stdout
  ln -s /proc/self/fd/2 /dev/stderr
}

# A private /etc (an overlay on the host's, its upper layer in a tmpfs of the
# sandbox's own): what the node writes there — users and groups its services
# add at install (useradd, groupadd), anything else — stays in the sandbox
# instead of changing the host's user database. Files the host mounts over
# entries of /etc (a container's resolv.conf, hosts) are mounted again on top.
setup_etc() {
  local state=$1 layer=$1/etc sub
  local -a subs=()
  mapfile -t subs < <(awk '$5 ~ "^/etc/" { print $5 }' /proc/self/mountinfo)
  mkdir -p "$layer"
  mount -n -t tmpfs -o mode=755,nosuid,nodev,size=16m tmpfs "$layer"
  mkdir "$layer/upper" "$layer/work" "$layer/host"
  (( ${#subs[@]} )) && mount -n --rbind /etc "$layer/host"
  if ! mount -n -t overlay -o "lowerdir=/etc,upperdir=$layer/upper,workdir=$layer/work" overlay /etc; then
    log inner "warning: no private /etc (overlay mount failed): users and groups added inside change the host's"
    return 0
  fi
  for sub in "${subs[@]}"; do mount -n --bind "$layer/host/${sub#/etc/}" "$sub"; done
}

# Per-instance identity. Done before /run is covered: the state dir lives there.
setup_identity() {
  local state=$1
  mount -n --bind "$state/machine-id" /etc/machine-id
  mount -n --bind "$state/hostname" /etc/hostname
  hostname "$STEVEDORE_SANDBOX_NAME"
}

# Builds the new /run on <state>/run, then moves it over /run: the host state
# dir is itself under /run, so the binds must be made before it is hidden.
setup_run() {
  local state=$1 stage=$1/run
  mount -n -t tmpfs -o mode=755,nosuid,nodev,size=64m tmpfs "$stage"
  mkdir -p "$stage/dbus" "$stage/log/journal" "$stage/lock" "$stage/systemd/journald.conf.d"
  mount -n --bind "$state/dbus" "$stage/dbus"
  mount -n --bind "$state/journal" "$stage/log/journal"
  # As systemd-tmpfiles sets it up on a real node (tmpfiles is masked here):
  # journal files inherit the systemd-journal group, whose members (e.g. the
  # api-service's user) may read the system journal.
  if getent group systemd-journal >/dev/null; then
    chgrp systemd-journal "$stage/log/journal" && chmod 2755 "$stage/log/journal"
  fi
  mount -n -t tmpfs -o mode=1777,nosuid,nodev,noexec,size=5m tmpfs "$stage/lock"
  if [[ -d /run/netns ]]; then
    # Pod network namespaces made on the host (CNI) must be joinable by units.
    mkdir "$stage/netns"
    mount -n --rbind /run/netns "$stage/netns"
  fi
  # The journal lands in the host state dir, on whatever disk holds it: cap it.
  printf '[Journal]\nStorage=volatile\nReadKMsg=no\nRuntimeMaxUse=64M\n' > "$stage/systemd/journald.conf.d/stevedore-sandbox.conf"
  mount -n --move "$stage" /run
}

mask() { [[ -e "/etc/systemd/system/$1" ]] || ln -s /dev/null "/etc/systemd/system/$1"; }

setup_units() {
  local dir unit gen
  mount -n -t tmpfs -o mode=755 tmpfs /etc/systemd/system
  # Generators would read the host's fstab, rc.local, SysV scripts, postgres clusters...
  for gen in /usr/lib/systemd/system-generators /lib/systemd/system-generators /usr/local/lib/systemd/system-generators /etc/systemd/system-generators; do
    [[ -d "$gen" ]] || continue
    # /lib may be a symlink to /usr/lib: one mount then covers both.
    mountpoint -q "$gen" || mount -n -t tmpfs -o mode=755 tmpfs "$gen"
  done
  cat > "/etc/systemd/system/$TARGET" <<EOF
[Unit]
Description=Stevedore node sandbox (journald and D-Bus only)
Wants=systemd-journald.service systemd-journald.socket systemd-journald-dev-log.socket dbus.socket dbus.service
AllowIsolate=yes
EOF
  for dir in /usr/lib/systemd/system/*.wants /lib/systemd/system/*.wants; do
    for unit in "$dir"/*; do
      [[ -e "$unit" || -L "$unit" ]] || continue
      unit=${unit##*/}
      [[ "$KEEP_UNITS" == *" $unit "* ]] || mask "$unit"
    done
  done
  for unit in $ALWAYS_MASK; do mask "$unit"; done
}

inner() {
  local state=${STEVEDORE_SANDBOX_STATE:?}
  # A fresh /proc first: the host's cannot show this pid namespace, and
  # everything below reads /proc/self.
  mount -n -t proc -o nosuid,nodev,noexec proc /proc
  # systemd's startup raises host-wide sysctls (fs.file-max, net.unix.max_dgram_qlen:
  # neither is namespaced here). Read-only while it boots; sandbox.ts lifts
  # this once the sandbox runs, so that units can still set sysctls.
  mount -n --bind /proc/sys /proc/sys
  mount -n -o remount,bind,ro /proc/sys
  setup_cgroups
  setup_dev
  setup_etc "$state"
  setup_identity "$state"
  setup_units
  setup_run "$state"
  log inner "namespaces ready, starting systemd"
  cd /
  # A clean environment: PID 1 hands it down to every unit.
  exec env -i container=stevedore PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system "--unit=$TARGET" --log-target=journal
}

case "${1:-}" in
  outer) outer ;;
  inner) inner ;;
  *) echo "usage: boot.sh outer|inner (run by stevedore's sandbox.ts)" >&2; exit 2 ;;
esac
