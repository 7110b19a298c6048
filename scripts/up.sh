#!/usr/bin/env bash
# The main job, from a fresh machine: set-up, then a one-node local cluster
# (control plane + agent + demo pod). Arguments go to `stevedore up`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node bin/stevedore.js up "$@"
