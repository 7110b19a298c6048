#!/usr/bin/env bash
# One-time (and idempotent) set-up of a machine for Stevedore: Debian
# packages, npm packages, native addons and the TypeScript build. Both README
# commands run it first, so a fresh machine needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages, by the command each one provides.
declare -A PACKAGES=(
  [crun]=crun [runc]=runc [busybox]=busybox-static [iptables]=iptables
  [openssl]=openssl [kubectl]=kubernetes-client [unshare]=util-linux [nsenter]=util-linux
  [ip]=iproute2 [dbus-daemon]=dbus [journalctl]=systemd [make]=make [g++]=g++ [python3]=python3
  [docker-registry]=docker-registry [skopeo]=skopeo [htpasswd]=apache2-utils [containerd]=containerd
  [qemu-system-x86_64]=qemu-system-x86 [dpkg-deb]=dpkg [xz]=xz-utils [zstd]=zstd
)
missing=()
for cmd in "${!PACKAGES[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${PACKAGES[$cmd]}")
done
[ -x /lib/systemd/systemd ] || missing+=(systemd)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
# Libraries native/decompress.c links: zlib (node's own copy is used where node exports it) and libzstd.
[ -f /usr/include/zstd.h ] || missing+=(libzstd-dev)
[ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

# npm packages: only when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
fi
# Native addons: built when one is missing or older than any native source.
built=1
for addon in flock fsops notify sha256 inotify decompress; do
  [ -f "native/build/Release/$addon.node" ] || built=0
  for src in native/*.c native/*.h native/binding.gyp; do [ "$src" -nt "native/build/Release/$addon.node" ] && built=0; done
done
[ "$built" = 1 ] || npm run install --silent

echo "setup: building"
npx tsc -p tsconfig.json

# The kvm stage1's guest kernel and initramfs (from the Debian archive via apt-get download; only when missing).
node bin/stevedore.js stage1 build-kvm --if-missing || echo "setup: WARNING: could not build the kvm stage1 assets; kvm pods will not start until \`stevedore stage1 build-kvm\` succeeds" >&2
