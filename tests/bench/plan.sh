#!/usr/bin/env bash
# Measures how long imgscript takes to evaluate and to plan a 1,000-step
# script: the wall time of `imgscript check` (evaluation only) and of
# `imgscript plan` (evaluation, cache keys and cache lookups on the engine,
# none of the steps cached), medians of BENCH_RUNS runs each.
#
#   tests/bench/plan.sh              # 11 runs of each command
#   BENCH_RUNS=21 BENCH_STEPS=2000 tests/bench/plan.sh
#
# It builds target/release/imgscript first. The engine must have
# python:3.11-slim-bookworm (tests/base-image/make.sh). Times come from
# `date +%s%N` around each command, so they include process start.
set -euo pipefail

runs=${BENCH_RUNS:-11}
steps=${BENCH_STEPS:-1000}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

if ! [[ $runs =~ ^[0-9]+$ ]] || [ "$runs" -lt 5 ]; then
  echo "plan.sh: BENCH_RUNS must be an integer of at least 5, got '$runs'" >&2
  exit 2
fi
if ! [[ $steps =~ ^[0-9]+$ ]] || [ "$steps" -lt 1 ]; then
  echo "plan.sh: BENCH_STEPS must be a positive integer, got '$steps'" >&2
  exit 2
fi

(cd "$repo" && cargo build --release --quiet)
imgscript=$repo/target/release/imgscript
scratch=$(mktemp -d -t imgscript-bench.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

# Alternating run and env steps, with a marker that no earlier run cached.
marker="bench-$(date +%s%N)"
{
  echo "debian_slim(\"3.11\")"
  for i in $(seq 1 "$steps"); do
    if [ $((i % 2)) -eq 0 ]; then
      echo "    .env(#{ STEP_$i: \"$marker\" })"
    else
      echo "    .run_commands([\"echo $marker-$i > /step-$i\"])"
    fi
  done
} >"$scratch/steps.img"

median() {
  sort -n | awk '{ values[NR] = $1 } END { print values[int((NR + 1) / 2)] }'
}

time_runs() {
  for _ in $(seq 1 "$runs"); do
    start=$(date +%s%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s%N)
    echo $(((end - start) / 1000))
  done | median
}

"$imgscript" plan "$scratch/steps.img" >/dev/null 2>&1 || {
  echo "plan.sh: imgscript plan failed on the generated script" >&2
  exit 1
}
check_us=$(time_runs "$imgscript" check "$scratch/steps.img")
plan_us=$(time_runs "$imgscript" plan "$scratch/steps.img")
awk -v steps="$steps" -v runs="$runs" -v check="$check_us" -v plan="$plan_us" 'BEGIN {
  printf "%d steps, medians of %d runs: check %.1f ms, plan %.1f ms\n", steps, runs, check / 1000, plan / 1000
}'
