#!/usr/bin/env bash
# Measures a cold build of a script with 4 independent branches of
# `sleep 2` steps, against a cold build of its longest branch alone, for
# imgscript and for BuildKit. Built in parallel, the 4 branches should take
# little longer than one; built one after another, 4 times as long.
#
# Run it from any folder. The Docker Engine must already have
# python:3.11-slim-bookworm, which tests/base-image/make.sh makes:
#
#   tests/bench/branches.sh            # 5 rounds
#   BENCH_RUNS=7 tests/bench/branches.sh
#
# Each branch is two steps on the base image: `echo <nonce> && sleep 2`
# and `sleep 2`. A new nonce per build keeps every build cold without
# deleting anything. Each round times, in this order:
#   imgscript  run of the 4-branch script with --jobs 4
#   default    the same with the default --jobs (the number of CPUs)
#   one        run of one branch alone (--target a)
#   BuildKit   docker build of the same 4 branches as stages, with a last
#              stage that copies a file out of each, so all 4 are built
#   bk-one     docker build --target a
# and prints the medians and the ratios to the single branch. The target is
# imgscript / one of at most 1.2.
set -euo pipefail

runs=${BENCH_RUNS:-5}
docker_cli=${DOCKER_CLI:-/usr/bin/docker}
base_image=python:3.11-slim-bookworm
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/bench/common.sh
. "$repo/tests/bench/common.sh"

check_runs branches.sh "$runs"
check_base_image branches.sh "$docker_cli" "$base_image"

scratch=$(mktemp -d -t imgscript-bench.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

# Writes the 4-branch script with a new nonce in its first steps.
write_script() {
  local nonce=$1
  cat >"$scratch/branches.img" <<EOF
let base = debian_slim("3.11");
let branch = |name| base
    .run_commands(["echo $nonce " + name + " && sleep 2"])
    .run_commands(["sleep 2"]);
#{ a: branch.call("a"), b: branch.call("b"), c: branch.call("c"), d: branch.call("d") }
EOF
}

mkdir "$scratch/context"
cat >"$scratch/context/Dockerfile" <<EOF
FROM $base_image AS a
ARG NONCE
RUN echo \$NONCE a > /a && sleep 2
RUN sleep 2

FROM $base_image AS b
ARG NONCE
RUN echo \$NONCE b > /b && sleep 2
RUN sleep 2

FROM $base_image AS c
ARG NONCE
RUN echo \$NONCE c > /c && sleep 2
RUN sleep 2

FROM $base_image AS d
ARG NONCE
RUN echo \$NONCE d > /d && sleep 2
RUN sleep 2

FROM $base_image AS all
COPY --from=a /a /a
COPY --from=b /b /b
COPY --from=c /c /c
COPY --from=d /d /d
EOF

imgscript=$(build_imgscript branches.sh "$repo" "$scratch")
revision=$(cd "$repo" && git describe --always --dirty)

round_nonce() { echo "branches-$$-$(date +%s%N)"; }

run_imgscript() { write_script "$(round_nonce)" && "$imgscript" run --jobs 4 "$scratch/branches.img" >"$scratch/log" 2>&1; }
run_default() { write_script "$(round_nonce)" && "$imgscript" run "$scratch/branches.img" >"$scratch/log" 2>&1; }
run_one() { write_script "$(round_nonce)" && "$imgscript" run --target a "$scratch/branches.img" >"$scratch/log" 2>&1; }
run_buildkit() {
  DOCKER_BUILDKIT=1 "$docker_cli" build --build-arg NONCE="$(round_nonce)" --target all \
    "$scratch/context" >"$scratch/log" 2>&1
}
run_bk_one() {
  DOCKER_BUILDKIT=1 "$docker_cli" build --build-arg NONCE="$(round_nonce)" --target a \
    "$scratch/context" >"$scratch/log" 2>&1
}

names=(imgscript default one buildkit bk_one)
echo "branches.sh: timing $runs rounds of ${names[*]}" >&2
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 1; round <= runs; round++)); do
  for name in "${names[@]}"; do
    time_command branches.sh "$scratch" "$name"
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

for name in "${names[@]}"; do
  declare "median_$name=$(median "$scratch/$name.ms")"
done

cat <<EOF
script:     4 branches of 2 steps each (echo + sleep 2, sleep 2) on $base_image, all cold
imgscript:  $revision (git describe when it was built)
$(machine_lines "$docker_cli")
load:       $load_before before the timed runs, $load_after after (1, 5, 15 min averages)
runs:       $runs rounds, each command once per round
times (ms): 4 branches, --jobs 4        $(paste -sd' ' "$scratch/imgscript.ms")
            4 branches, default --jobs  $(paste -sd' ' "$scratch/default.ms")
            1 branch                    $(paste -sd' ' "$scratch/one.ms")
            BuildKit, 4 branches        $(paste -sd' ' "$scratch/buildkit.ms")
            BuildKit, 1 branch          $(paste -sd' ' "$scratch/bk_one.ms")
median ms:  imgscript 4 branches $median_imgscript (default --jobs $median_default), 1 branch $median_one
            BuildKit  4 branches $median_buildkit, 1 branch $median_bk_one
ratio:      imgscript 4 branches / 1 branch = $(ratio "$median_imgscript" "$median_one") (target: at most 1.2)
            with the default --jobs ($(nproc))   = $(ratio "$median_default" "$median_one")
            BuildKit 4 branches / 1 branch  = $(ratio "$median_buildkit" "$median_bk_one")
            imgscript / BuildKit, 4 branches = $(ratio "$median_imgscript" "$median_buildkit")
EOF
