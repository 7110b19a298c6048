#!/usr/bin/env bash
# The whole test suite, from a fresh machine: set-up, build, every test file.
# Extra arguments filter test files by name (scripts/test.sh sandbox runtime).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node scripts/run-tests.mjs "$@"
