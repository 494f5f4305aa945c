#!/usr/bin/env bash
# Runs every benchmark of BENCHMARKS.md, one after another, each with its
# own default number of rounds (BENCH_RUNS sets one number for all):
#
#   tests/bench/all.sh
#
# Each benchmark prints its command, machine and figures. Run nothing else
# on the machine meanwhile: the figures are wall times.
set -euo pipefail
bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

for name in noop plan context_change context_memory branches scale; do
  echo "=== $name.sh"
  "$bench/$name.sh"
  echo
done
