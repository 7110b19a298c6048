#!/usr/bin/env bash
# Pod start benchmark, one command: build, then measure (see bench/README.md).
#   bash bench/run.sh [--samples N] [--warmup N] [--no-docker] [--no-profile] [--update-results bench/RESULTS.md]
# Needs root (it boots a node sandbox: a real systemd in private namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
# tsc emits even when some file outside bench/ has a type error; the bench
# checks that the emitted CLI loads before it measures anything.
npx tsc -p tsconfig.json || echo "bench: tsc reported errors (see above); measuring what it emitted" >&2
exec node --enable-source-maps dist/bench/pod-start.js "$@"
