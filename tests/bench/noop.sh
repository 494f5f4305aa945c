#!/usr/bin/env bash
# Measures the wall time of a no-op imgscript run of a 20-step script, with
# every step cached. It compares that with `docker build` of the same 20 steps
# as a Dockerfile with a warm cache, on BuildKit and on the legacy builder.
#
# Run it from any folder. The Docker Engine must already have
# python:3.11-slim-bookworm, which tests/base-image/make.sh makes, because
# nothing is pulled:
#
#   tests/bench/noop.sh            # 11 timed runs of each command
#   BENCH_RUNS=21 tests/bench/noop.sh
#
# The script builds target/release/imgscript with `cargo build --release`
# and runs each of the three commands once untimed to fill its cache. Then it
# times BENCH_RUNS rounds of imgscript, BuildKit and legacy builds, one of
# each per round, so that drift on the machine hits all three alike. It prints
# each median in milliseconds and the ratio imgscript / BuildKit. Times are
# taken with `date +%s%N` around each command, so they include process start.
#
# DOCKER_CLI (default /usr/bin/docker) must be a client that can reach the
# engine's BuildKit with DOCKER_BUILDKIT=1, such as Debian's docker.io 20.10.
# Docker CLI 28.2 without the buildx plugin rejects DOCKER_BUILDKIT=1, and
# without the variable it uses the legacy builder.
#
# The images it tags are named imgscript-bench-*, and it removes them on
# exit. imgscript's own cache images (untagged, labelled) stay, as any build
# leaves them.
set -euo pipefail

runs=${BENCH_RUNS:-11}
docker_cli=${DOCKER_CLI:-/usr/bin/docker}
base_image=python:3.11-slim-bookworm
imgscript_tag=imgscript-bench-imgscript:noop
buildkit_tag=imgscript-bench-buildkit:noop
legacy_tag=imgscript-bench-legacy:noop

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

if ! [[ $runs =~ ^[0-9]+$ ]] || [ "$runs" -lt 5 ]; then
  echo "noop.sh: BENCH_RUNS must be an integer of at least 5, got '$runs'" >&2
  exit 2
fi
if ! "$docker_cli" image inspect "$base_image" >/dev/null 2>&1; then
  echo "noop.sh: $base_image is not in the local image store. Run tests/base-image/make.sh first." >&2
  exit 1
fi

scratch=$(mktemp -d -t imgscript-bench.XXXXXX)
clean_up() {
  "$docker_cli" image rm "$imgscript_tag" "$buildkit_tag" "$legacy_tag" >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap clean_up EXIT

# The same 20 steps in both forms: twelve RUN, five ENV, two WORKDIR and
# one CMD.
cat >"$scratch/noop.img" <<EOF
debian_slim("3.11")
    .run_commands(["echo one > /s1"])
    .env(#{ APP_ENV: "bench" })
    .run_commands(["mkdir -p /app/data"])
    .workdir("/app")
    .run_commands(["echo two > /app/s2"])
    .run_commands(["echo 'print(1)' > /app/main.py"])
    .env(#{ PYTHONUNBUFFERED: "1" })
    .run_commands(["echo three > /app/data/s3"])
    .run_commands(["touch /app/data/.keep"])
    .run_commands(["echo four > /app/data/s4"])
    .env(#{ STAGE: "two" })
    .run_commands(["mkdir -p /app/logs"])
    .workdir("/app/logs")
    .run_commands(["echo five > /app/logs/s5"])
    .run_commands(["echo six > /app/logs/s6"])
    .env(#{ LOG_DIR: "/app/logs" })
    .run_commands(["echo seven > /app/logs/s7"])
    .env(#{ DONE: "1" })
    .run_commands(["echo eight > /app/logs/s8"])
    .cmd(["python", "main.py"])
    .tag("$imgscript_tag")
EOF

# The Dockerfile sits in a folder of its own so the build context is just it.
mkdir "$scratch/context"
cat >"$scratch/context/Dockerfile" <<EOF
FROM $base_image
RUN echo one > /s1
ENV APP_ENV=bench
RUN mkdir -p /app/data
WORKDIR /app
RUN echo two > /app/s2
RUN echo 'print(1)' > /app/main.py
ENV PYTHONUNBUFFERED=1
RUN echo three > /app/data/s3
RUN touch /app/data/.keep
RUN echo four > /app/data/s4
ENV STAGE=two
RUN mkdir -p /app/logs
WORKDIR /app/logs
RUN echo five > /app/logs/s5
RUN echo six > /app/logs/s6
ENV LOG_DIR=/app/logs
RUN echo seven > /app/logs/s7
ENV DONE=1
RUN echo eight > /app/logs/s8
CMD ["python", "main.py"]
EOF

echo "noop.sh: building imgscript (cargo build --release)" >&2
(cd "$repo" && cargo build --release --quiet)
# A copy, so that another cargo build in the same checkout cannot replace
# the binary halfway through the runs.
cp "$repo/target/release/imgscript" "$scratch/imgscript"
imgscript=$scratch/imgscript
revision=$(cd "$repo" && git describe --always --dirty)

# Each run_* prints the image id the command produced, so the timed runs
# can be checked to be no-ops. Output goes to a log that is shown on failure.
# The commands are chained with && because errexit is off inside a function
# called from an `if` condition.
run_imgscript() {
  "$imgscript" run "$scratch/noop.img" 2>"$scratch/log" | awk '{ print $1 }'
}
run_buildkit() {
  rm -f "$scratch/iid" &&
    DOCKER_BUILDKIT=1 "$docker_cli" build --iidfile "$scratch/iid" -t "$buildkit_tag" \
      "$scratch/context" >"$scratch/log" 2>&1 &&
    cat "$scratch/iid"
}
run_legacy() {
  rm -f "$scratch/iid" &&
    DOCKER_BUILDKIT=0 "$docker_cli" build --iidfile "$scratch/iid" -t "$legacy_tag" \
      "$scratch/context" >"$scratch/log" 2>&1 &&
    cat "$scratch/iid"
}

# Runs one command and appends its wall time in milliseconds to
# $scratch/<name>.ms. Fails if the image id differs from the warm-up run's,
# because then the run was not a no-op.
time_run() {
  local name=$1 expected=$2 started finished image_id
  started=$(date +%s%N)
  if ! image_id=$("run_$name"); then
    echo "noop.sh: $name run failed. Its output:" >&2
    cat "$scratch/log" >&2
    exit 1
  fi
  finished=$(date +%s%N)
  if [ "$image_id" != "$expected" ]; then
    echo "noop.sh: $name run built $image_id, not the cached $expected. Its output:" >&2
    cat "$scratch/log" >&2
    exit 1
  fi
  echo $(((finished - started) / 1000)) | awk '{ printf "%.1f\n", $1 / 1000 }' >>"$scratch/$name.ms"
}

# Prints the median of the numbers in a file, one per line.
median() {
  sort -n "$1" | awk '{ value[NR] = $1 }
    END {
      if (NR % 2) printf "%.1f\n", value[(NR + 1) / 2]
      else printf "%.1f\n", (value[NR / 2] + value[NR / 2 + 1]) / 2
    }'
}

echo "noop.sh: warming the caches (untimed)" >&2
declare -A image_id
for name in imgscript buildkit legacy; do
  if ! image_id[$name]=$("run_$name"); then
    echo "noop.sh: warm-up $name run failed. Its output:" >&2
    cat "$scratch/log" >&2
    exit 1
  fi
done

echo "noop.sh: timing $runs rounds of imgscript, BuildKit, legacy" >&2
# Other work on the machine skews the figures, so the load is printed too.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# A listing of the labelled images costs more on a bigger store.
store_size=$("$docker_cli" image ls --all --quiet | wc -l)
for ((round = 1; round <= runs; round++)); do
  for name in imgscript buildkit legacy; do
    time_run "$name" "${image_id[$name]}"
  done
done

load_after=$(cut -d' ' -f1-3 /proc/loadavg)

imgscript_ms=$(median "$scratch/imgscript.ms")
buildkit_ms=$(median "$scratch/buildkit.ms")
legacy_ms=$(median "$scratch/legacy.ms")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", a / b }'; }

cat <<EOF
commands:   imgscript: target/release/imgscript run noop.img (20 steps, all cached)
            BuildKit:  DOCKER_BUILDKIT=1 $docker_cli build -t $buildkit_tag context
            legacy:    DOCKER_BUILDKIT=0 $docker_cli build -t $legacy_tag context
imgscript:  $revision (git describe when it was built)
machine:    $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory
docker:     engine $("$docker_cli" version --format '{{.Server.Version}}'), client $("$docker_cli" version --format '{{.Client.Version}}') ($docker_cli)
images:     $store_size in the local store, $("$docker_cli" image ls --all --quiet --filter label=dev.imgscript.key | wc -l) of them imgscript cache images
load:       $load_before before the timed runs, $load_after after (1, 5, 15 min averages)
runs:       $runs of each, alternating, after one untimed warm-up
times (ms): imgscript $(paste -sd' ' "$scratch/imgscript.ms")
            buildkit  $(paste -sd' ' "$scratch/buildkit.ms")
            legacy    $(paste -sd' ' "$scratch/legacy.ms")
median ms:  imgscript $imgscript_ms, BuildKit $buildkit_ms, legacy $legacy_ms
ratio:      imgscript / BuildKit = $(ratio "$imgscript_ms" "$buildkit_ms") (target: at most 0.3)
            imgscript / legacy   = $(ratio "$imgscript_ms" "$legacy_ms")
EOF
