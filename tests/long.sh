#!/usr/bin/env bash
# The long-running tests, which `cargo test` skips: builds killed at random
# points, a daemon restart, a full disk (a second dockerd on a tmpfs; needs
# root), and a bounded fuzzing run. Run tests/setup.sh first.
#
#   tests/long.sh
#   FUZZ_SECONDS=600 tests/long.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --locked --test faults --test scale -- --ignored
FUZZ_SECONDS=${FUZZ_SECONDS:-120} tests/fuzz/run.sh
