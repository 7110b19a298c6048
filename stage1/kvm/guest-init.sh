#!/bin/busybox sh
# The guest's /init (busybox sh, PID 1 of the pod VM). Contract with the host
# (stage1/kvm/vm.ts builds the qemu side, stage1/kvm.ts the files):
#
# - one 9p share, tag `pod`: `apps/<i>/` each app's rootfs (read-write),
#   `etc/` the pod's hosts, hostname, resolv.conf (read-only), `guest/` the
#   pod's config: `pod.env` (POD_HOSTNAME, POD_APPS, POD_APP_RESTART_<i>, POD_NET_*),
#   `app<i>/config.json` (app i's OCI runtime spec, built on the host by
#   stage1/oci-spec.ts like the namespaces stage1's, with guest paths: root
#   /pod/apps/<i>, the pod's files from /pod/etc), `app<i>.sh PIDFILE` (runs
#   app i: writes its pid first, then execs `crun run` of that bundle, so the
#   pid stays; an app with a terminal runs under console-relay, crun writing
#   the container's pid to /run/app<i>.cpid) and `enter<i>.sh ARGS` (`crun
#   exec` into app i); POD_APP_STDIN_<i>=1 for an app with stdin or a tty;
# - virtio-serial ports by name: `a<i>.ctl` (host → guest `start RUN`,
#   `kill SIG`, and for an app with stdin `eof` (close its stdin), `size COLS
#   ROWS` (its terminal's); guest → host `started RUN`, `exit RUN CODE`),
#   `a<i>.out`, `a<i>.err` (the app's stdout and stderr; a terminal's output
#   on out), `a<i>.in` (an app with stdin or a tty: its stdin), `status` (guest → host `ready`, `done`),
#   `podctl` (host → guest `poweroff`), `exec.io` + `exec.ctl` (`pod enter`:
#   `run INDEX NONCE ARGS` and `eof`, or `tty INDEX NONCE FILE` and `size COLS
#   ROWS`; guest → host `exit NONCE CODE`).
#
# Confinement: every app runs under crun (in the initramfs with its
# libraries), from its config.json: its own pid, mount and uts namespaces
# (net and ipc are the pod's: the guest's), uid/gid and supplementary groups,
# capabilities, no_new_privs, seccomp, read-only rootfs, masked and read-only
# /proc paths, a /dev with only the spec's devices, as on the namespaces
# stage1. crun runs with its cgroupfs manager on the guest's cgroup2 (one
# cgroup per app), so the spec's device rules are enforced by the guest
# kernel's device eBPF hook: a device not listed does not open (crun's
# program, unlike systemd's device controller on the node, lets mknod make
# the node on the app's own /dev; on the rootfs mknod fails: qemu has no
# CAP_MKNOD). `pod enter` (crun exec) runs under the same spec. A privileged
# app gets every capability and every device of the guest, not the node's.
#
# Each app gets a supervisor that runs it on every `start` from its host-side
# unit, so restarts, exit records and logs are the host's (systemd's) as for
# every other stage1. The guest powers off once no app will run again under
# its restart rule and every host-side unit has read its last exit,
# or when the host asks; `done` on the status port is the only sign of a
# clean shutdown (qemu exits 0 after a kernel panic too).

# The initramfs (rootfs) cannot be pivot_root'ed away from, and crun
# pivot_roots into each app's root: first move the guest's files onto a tmpfs
# and make that the root (switch_root frees the initramfs).
if [ ! -e /.stevedore-root ]; then
  /bin/busybox mount -t tmpfs -o mode=755 root /newroot || { echo "stevedore-init: cannot mount the root tmpfs" >&2; /bin/busybox poweroff -f; }
  for f in /*; do [ "$f" = /newroot ] || /bin/busybox cp -a "$f" /newroot/; done
  : > /newroot/.stevedore-root
  exec /bin/busybox switch_root /newroot /init
fi
/bin/busybox mkdir -p /bin /sbin /proc /sys /dev /run /tmp /pod
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs -o mode=755 run /run
# cgroup2 only: crun's cgroupfs manager puts each app in its own cgroup and attaches the spec's device rules there.
mkdir -p /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup
while read -r m; do insmod "/lib/modules/$m" 2>/dev/null; done < /etc/modules.load
if grep -q stevedore.probe /proc/cmdline; then echo STEVEDORE-PROBE-OK; poweroff -f; fi

fail() { echo "stevedore-init: $*" >&2; [ -e /dev/port-status ] && echo "failed $*" > /dev/port-status; sleep 1; poweroff -f; }

# Ports show up once the host has announced them: wait for the ones we need.
port() { [ -e "/dev/port-$1" ]; }
# Shell builtins only where it loops (a fork+exec costs milliseconds under TCG).
linkports() {
  for d in /sys/class/virtio-ports/*; do
    [ -r "$d/name" ] || continue
    name=; read -r name < "$d/name"
    [ -n "$name" ] && [ ! -e "/dev/port-$name" ] && ln -s "/dev/${d##*/}" "/dev/port-$name"
  done
}
waitports() {
  n=0
  while :; do
    linkports; ok=1
    for p in "$@"; do port "$p" || ok=; done
    [ -n "$ok" ] && return 0
    n=$((n+1)); [ $n -gt 300 ] && fail "virtio-serial ports $* did not appear"
    sleep 0.05
  done
}
waitports status podctl exec.io exec.ctl

mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,access=client,cache=loose pod /pod || fail "cannot mount the pod share"
. /pod/guest/pod.env || fail "no pod config"
hostname "$POD_HOSTNAME"
ip link set lo up
# The pod network: the NIC carries eth0's MAC from the pod netns; the address and route are CNI's.
if [ -n "$POD_NET_ADDRS" ]; then
  n=0
  while [ ! -e /sys/class/net/eth0 ]; do n=$((n+1)); [ $n -gt 200 ] && fail "no network device"; sleep 0.05; done
  [ -n "$POD_NET_MTU" ] && ip link set eth0 mtu "$POD_NET_MTU"
  for a in $POD_NET_ADDRS; do ip addr add "$a" dev eth0; done
  ip link set eth0 up
  [ -n "$POD_NET_GW" ] && ip route add default via "$POD_NET_GW"
fi
# crun makes each app's /proc, /sys, /dev and binds the pod's files (config.json); the ports must be there.
for i in $POD_APPS; do
  eval "has_stdin=\$POD_APP_STDIN_$i"
  waitports "a$i.ctl" "a$i.out" "a$i.err" ${has_stdin:+"a$i.in"}
done

# Whether app $2 that exited with $1 is done for good (no host unit will start it again): its
# unit's Restart= (no, on-failure, always; init containers and sidecars have their own).
final() {
  eval "restart=\$POD_APP_RESTART_$2"
  case "$restart" in no) return 0 ;; on-failure) [ "$1" = 0 ] ;; *) return 1 ;; esac
}

# An app with stdin (or a terminal): its stdin is the FIFO /run/app<i>.stdin, fed from the
# port a<i>.in by cat. A port reads EOF while the host side is not connected (its proxy not yet
# or no longer there; also when the port is still open from the previous run: EBUSY), so cat
# is started again until the host's `eof` (or the app's end) TERMs this relay (its pid is in
# /run/app<i>.relay): only then does the app read EOF.
stdin_relay() {
  exec >"/run/app$1.stdin"
  catpid=
  trap '[ -n "$catpid" ] && kill "$catpid" 2>/dev/null; exit 0' TERM
  while :; do
    cat <"/dev/port-a$1.in" 2>/dev/null & catpid=$!
    wait "$catpid"
    catpid=
    sleep 0.1
  done
}

# App $1's terminal to the size last asked for (/run/app<i>.size), through its container process's fd 0.
apply_size() {
  [ -s "/run/app$1.cpid" ] && [ -s "/run/app$1.size" ] || return 0
  read -r cols rows < "/run/app$1.size"
  stty -F "/proc/$(cat "/run/app$1.cpid")/fd/0" cols "$cols" rows "$rows" 2>/dev/null
}

supervise() {
  i=$1
  exec 3<>"/dev/port-a$i.ctl" 4>"/dev/port-a$i.out" 5>"/dev/port-a$i.err"
  pidf=/run/app$i.pid
  eval "has_stdin=\$POD_APP_STDIN_$i"
  [ -n "$has_stdin" ] && { rm -f "/run/app$i.stdin"; mkfifo -m 600 "/run/app$i.stdin"; }
  while :; do
    if read -r cmd arg arg2 <&3; then
      case "$cmd" in
        start)
          rm -f "/run/app$i.final"
          (
            stdin=/dev/null
            if [ -n "$has_stdin" ]; then
              # $! here: inside the relay, $$ would be this shell's (PID 1's) pid.
              stdin_relay "$i" 3>&- 4>&- 5>&- & echo $! > "/run/app$i.relay"
              stdin=/run/app$i.stdin
            fi
            sh "/pod/guest/app$i.sh" "$pidf" >&4 2>&5 3>&- 4>&- 5>&- <"$stdin"
            code=$?
            [ -s "/run/app$i.relay" ] && kill "$(cat "/run/app$i.relay")" 2>/dev/null
            rm -f "$pidf" "/run/app$i.relay" "/run/app$i.cpid" "/run/app$i.size"
            final "$code" "$i" && : > "/run/app$i.final"
            echo "exit $arg $code" >&3
          ) &
          # the pid file is written before the app runs; a kill right after start must find it
          n=0; while [ ! -s "$pidf" ] && [ $n -lt 100 ]; do n=$((n+1)); sleep 0.01; done
          # the host side reports the container running (READY=1) only now, not while the VM boots
          echo "started $arg" >&3
          ;;
        # To the container's init (crun run forwards signals too, but not KILL, and not before the container exists).
        kill) [ -s "$pidf" ] && { crun kill "app$i" "$arg" 2>/dev/null || kill "-$arg" "$(cat "$pidf")" 2>/dev/null; } ;;
        # The host closed the app's stdin (stdinOnce, or the attached client's end of input): the relay goes, the app reads EOF.
        eof) [ -s "/run/app$i.relay" ] && kill "$(cat "/run/app$i.relay")" 2>/dev/null ;;
        # A terminal app's new size: stty on the container process's terminal (the kernel then sends SIGWINCH to
        # its foreground job). A client may attach (kubectl run -it does) before crun has made the container:
        # the latest size is kept and applied once its pid is there, by one waiter.
        size)
          echo "$arg $arg2" > "/run/app$i.size"
          if [ -s "/run/app$i.cpid" ]; then apply_size "$i"
          elif [ ! -e "/run/app$i.sizewait" ]; then
            : > "/run/app$i.sizewait"
            (
              n=0; while [ ! -s "/run/app$i.cpid" ] && [ $n -lt 600 ]; do n=$((n+1)); sleep 0.05; done
              rm -f "/run/app$i.sizewait"
              apply_size "$i"
            ) 3>&- 4>&- 5>&- &
          fi
          ;;
      esac
    else
      # EOF: the host side is not connected (not yet, between restarts, or gone for good).
      if [ -s "$pidf" ]; then crun kill "app$i" KILL 2>/dev/null || kill -KILL "$(cat "$pidf")" 2>/dev/null
      elif [ -e "/run/app$i.final" ]; then return 0
      fi
      sleep 0.2
    fi
  done
}

# The host hung up on an exec: SIGKILL every process of the exec's sessions, a child the command
# backgrounded included (re-parented, it keeps its session), in rounds until none is left. $@:
# the exec's processes (the setsid'd crun exec; the process crun made, in a session crun made).
# Its caller ignores TERM first: the exec's end (its crun killed here) makes the server TERM it.
kill_sessions() {
  sids=" "
  for p in "$@"; do
    { read -r line < "/proc/$p/stat"; } 2>/dev/null || continue
    set -- ${line##*) }
    [ "$4" -gt 1 ] && sids="$sids$4 "
  done
  [ "$sids" = " " ] && return 0
  n=0
  while [ $n -lt 20 ]; do
    left=
    for st in /proc/[0-9]*/stat; do
      { read -r line < "$st"; } 2>/dev/null || continue
      set -- ${line##*) }
      [ "$1" != Z ] || continue
      case "$sids" in *" $4 "*) ;; *) continue ;; esac
      p=${st#/proc/}
      kill -KILL "${p%/stat}" 2>/dev/null && left=1
    done
    [ -z "$left" ] && return 0
    n=$((n + 1)); sleep 0.05
  done
}

# `pod enter`: one command at a time, in app INDEX's container (guest/enter<i>.sh:
# crun exec). Its stdin comes from exec.io through a cat (so the host's `eof`
# can close it), its stdout and stderr go to exec.io between two markers that
# carry the host's NONCE, and its exit line carries it too: bytes and exit
# lines of a command whose client gave up (a timed-out probe) are still in
# the ports when the next client connects, and the markers let it skip them.
# A command on a terminal (`tty INDEX NONCE FILE`): FILE, under /pod/guest, is the
# whole OCI process the host wrote (the app's own, with the command, terminal:
# true and the client's size as consoleSize, so the terminal has its size before
# the command runs). crun makes the terminal inside the container (one of its own
# /dev/pts, its controlling terminal) and sends its master over a console socket
# to console-relay (native/console-relay.c: crun's own relay wants its stdin to
# be a terminal, the port is not one), which copies it to and from the exec.io
# port, between the same nonce markers, and exits with the command's status. A
# terminal cannot be half-closed: no `eof`; `size COLS ROWS` on exec.ctl resizes
# it (stty on the command's terminal, through /proc: the kernel then sends
# SIGWINCH to its foreground job).
exec_tty() {
  case "$args" in exec-*.json) ;; *) echo "exit $nonce 126" >&8; return ;; esac
  printf '\036stevedore-exec-begin %s\036' "$nonce" >&7
  rm -f /run/exec.pid
  console-relay /run/exec-console.sock -- crun exec --process "/pod/guest/$args" --console-socket /run/exec-console.sock --pid-file /run/exec.pid "app$idx" <&7 >&7 2>&7 7>&- 8>&- &
  cmdpid=$!
  n=0; while [ ! -s /run/exec.pid ] && kill -0 "$cmdpid" 2>/dev/null && [ $n -lt 500 ]; do n=$((n+1)); sleep 0.01; done
  execpid=$(cat /run/exec.pid 2>/dev/null)
  # crun has read it: the app's environment (Secret values too) need not stay in the share.
  rm -f "/pod/guest/$args"
  (
    while :; do
      if read -r c cols rows <&8; then
        [ "$c" = size ] && [ -n "$execpid" ] && { stty -F "/proc/$execpid/fd/0" cols "$cols" rows "$rows" 2>/dev/null || stty -F "/proc/$execpid/fd/1" cols "$cols" rows "$rows" 2>/dev/null; }
      else trap '' TERM; kill_sessions $execpid; kill -KILL "$cmdpid" 2>/dev/null; exit 0
      fi
    done
  ) & readerpid=$!
  wait "$cmdpid"; code=$?
  kill "$readerpid" 2>/dev/null
  printf '\036stevedore-exec-end %s\036' "$nonce" >&7
  echo "exit $nonce $code" >&8
}

exec_server() {
  exec 7<>/dev/port-exec.io 8<>/dev/port-exec.ctl
  while :; do
    if read -r cmd idx nonce args <&8; then
      [ "$cmd" = tty ] && { exec_tty; continue; }
      [ "$cmd" = run ] || continue
      printf '\036stevedore-exec-begin %s\036' "$nonce" >&7
      # stdin through cat, so that the host's `eof` (killing cat) closes it
      rm -f /run/exec.pid
      # a session of its own (setsid: not a group leader here, so the same pid), for the clean-up below
      sh -c 'echo $$ > /run/exec.cat; exec cat' <&7 | ( eval "set -- $args"; exec setsid sh "/pod/guest/enter$idx.sh" "$@" ) >&7 2>&7 7>&- 8>&- &
      cmdpid=$!
      n=0; while [ ! -s /run/exec.cat ] && [ $n -lt 100 ]; do n=$((n+1)); sleep 0.01; done
      catpid=$(cat /run/exec.cat 2>/dev/null); rm -f /run/exec.cat
      # Until the command ends: `eof` closes its stdin; the host hanging up kills it.
      (
        while :; do
          if read -r c <&8; then [ "$c" = eof ] && kill "$catpid" 2>/dev/null
          else trap '' TERM; kill_sessions "$cmdpid" $(cat /run/exec.pid 2>/dev/null); kill -KILL "$cmdpid" "$catpid" 2>/dev/null; exit 0
          fi
        done
      ) & readerpid=$!
      wait "$cmdpid"; code=$?
      kill "$catpid" "$readerpid" 2>/dev/null
      printf '\036stevedore-exec-end %s\036' "$nonce" >&7
      echo "exit $nonce $code" >&8
    else
      sleep 0.2
    fi
  done
}
exec_server &

pids=
for i in $POD_APPS; do supervise "$i" & pids="$pids $!"; done

shutdown() {
  for i in $POD_APPS; do [ -s "/run/app$i.pid" ] && { crun kill "app$i" KILL 2>/dev/null || kill -KILL "$(cat "/run/app$i.pid")" 2>/dev/null; }; done
  sync
  echo done > /dev/port-status
  poweroff -f
}

(
  exec 6<"/dev/port-podctl"
  while :; do
    if read -r cmd <&6; then [ "$cmd" = poweroff ] && kill -USR1 1; else sleep 0.2; fi
  done
) &
trap shutdown USR1
echo ready > /dev/port-status
for p in $pids; do while kill -0 "$p" 2>/dev/null; do wait "$p"; done; done
shutdown
