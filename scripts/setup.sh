#!/usr/bin/env bash
# One-time (and idempotent) set-up of a machine for Stevedore: Debian
# packages, npm packages, native addons and the TypeScript build. Both README
# commands run it first, so a fresh machine needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages, by the command each one provides: every command that the
# product, the tests and the benchmarks call. A command missing after the
# install is named below with its package, instead of a test dying with ENOENT.
declare -A PACKAGES=(
  [crun]=crun [runc]=runc [busybox]=busybox-static [iptables]=iptables [iptables-save]=iptables [ip6tables-save]=iptables
  [nft]=nftables [openssl]=openssl [kubectl]=kubernetes-client [unshare]=util-linux [nsenter]=util-linux
  [setpriv]=util-linux [script]=bsdutils [env]=coreutils [getent]=libc-bin [useradd]=passwd [groupadd]=passwd
  [mount]=mount [umount]=mount [ip]=iproute2 [dbus-daemon]=dbus [journalctl]=systemd [systemctl]=systemd
  [make]=make [g++]=g++ [python3]=python3 [git]=git [getconf]=libc-bin [mkfifo]=coreutils [du]=coreutils [hostname]=hostname
  [docker-registry]=docker-registry [skopeo]=skopeo [htpasswd]=apache2-utils [containerd]=containerd [ctr]=containerd
  [dockerd]=docker.io [docker]=docker.io [time]=time [curl]=curl [dnsmasq]=dnsmasq-base [dnsperf]=dnsperf
  [qemu-system-x86_64]=qemu-system-x86 [dpkg-deb]=dpkg [xz]=xz-utils [zstd]=zstd
  [mkfs.ext4]=e2fsprogs [losetup]=mount [mountpoint]=util-linux [truncate]=coreutils
  [chromium]=chromium [etcd]=etcd-server [etcdctl]=etcd-client [pgrep]=procps
)
# Commands looked for at a fixed path (the code names the path, not just the command).
declare -A PATHS=(
  [/usr/bin/time]=time [/usr/sbin/dockerd]=docker.io [/lib/systemd/systemd]=systemd [/usr/lib/cni/bridge]=containernetworking-plugins
)
missing=()
for cmd in "${!PACKAGES[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${PACKAGES[$cmd]}")
done
for file in "${!PATHS[@]}"; do
  [ -x "$file" ] || missing+=("${PATHS[$file]}")
done
# The api-service benchmark's C-core gRPC client (Debian's Python modules, no command of their own).
/usr/bin/python3 -c 'import grpc, grpc_tools' 2>/dev/null || missing+=(python3-grpcio python3-grpc-tools)
# The official Kubernetes Python client: the API conformance tests drive the control plane with it.
/usr/bin/python3 -c 'import kubernetes' 2>/dev/null || missing+=(python3-kubernetes)
# libseccomp for Python: stage1/seccomp-bpf.ts precompiles the containers' seccomp profile once per boot
# (without it crun compiles the profile at every container start, ~10 ms each).
/usr/bin/python3 -c 'import seccomp' 2>/dev/null || missing+=(python3-seccomp)
# A font for the dashboard's screenshots in headless Chromium (installed without recommends, it has none).
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
# Libraries native/decompress.c links: zlib (node's own copy is used where node exports it) and libzstd.
[ -f /usr/include/zstd.h ] || missing+=(libzstd-dev)
[ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
# The kernel headers native/seccomp-exec.c includes, and the static C library it links where it is not built
# without a libc (other than x86-64 and arm64; it runs inside app roots, whatever libc they have).
[ -f "/usr/lib/$(uname -m)-linux-gnu/libc.a" ] || missing+=(libc6-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packages such as docker.io and containerd start their daemons on install where
  # they can; on the host that would change its firewall. policy-rc.d says no
  # (Debian's convention), kept only for the install if the machine had none.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi
still=()
for cmd in "${!PACKAGES[@]}"; do command -v "$cmd" >/dev/null 2>&1 || still+=("$cmd (package ${PACKAGES[$cmd]})"); done
for file in "${!PATHS[@]}"; do [ -x "$file" ] || still+=("$file (package ${PATHS[$file]})"); done
if [ ${#still[@]} -gt 0 ]; then
  echo "setup: these commands are still missing after apt-get install: ${still[*]}" >&2
  echo "setup: install the packages named (apt-get install …) and run scripts/setup.sh again" >&2
  exit 1
fi

# kubectl 1.20, Debian's kubernetes-client, unpacked beside the machine's kubectl and not installed over it: the
# streaming tests drive exec, attach, port-forward and cp with it over SPDY/3.1, what clients before 1.30 speak.
old_kubectl=/var/cache/stevedore/kubectl-1.20
if [ ! -x "$old_kubectl/usr/bin/kubectl" ]; then
  echo "setup: unpacking kubectl 1.20 (Debian's kubernetes-client) into $old_kubectl"
  download=$(mktemp -d)
  chmod 755 "$download"   # apt-get download fetches as _apt where it can
  (cd "$download" && apt-get download -qq kubernetes-client 2>/dev/null || { apt-get update -qq && apt-get download -qq kubernetes-client; })
  rm -rf "$old_kubectl.new"
  mkdir -p "$old_kubectl.new"
  dpkg-deb -x "$download"/kubernetes-client_*.deb "$old_kubectl.new"
  rm -rf "$download" "$old_kubectl"
  mv "$old_kubectl.new" "$old_kubectl"
fi

# npm packages: only when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
fi
# Native addons: built when one is missing or older than any native source.
built=1
# Static helper programs, not addons: seccomp-exec (fly's precompiled seccomp filter), stevedore-enter (exec probes' way
# into a namespaces app) and console-relay (the kvm guest's exec terminal).
for built_file in flock.node fsops.node notify.node sha256.node inotify.node netns.node spawn.node decompress.node seccomp-exec stevedore-enter console-relay; do
  [ -f "native/build/Release/$built_file" ] || built=0
  for src in native/*.c native/*.h native/binding.gyp; do [ "$src" -nt "native/build/Release/$built_file" ] && built=0; done
done
[ "$built" = 1 ] || npm run install --silent

echo "setup: building"
npx tsc -p tsconfig.json
npx tsc -p dashboard/web/tsconfig.json   # the dashboard's browser modules (lib DOM), dist/dashboard/web

# The kvm stage1's guest kernel and initramfs (from the Debian archive via apt-get download; only when missing).
node bin/stevedore.js stage1 build-kvm --if-missing || echo "setup: WARNING: could not build the kvm stage1 assets; kvm pods will not start until \`stevedore stage1 build-kvm\` succeeds" >&2
