#!/usr/bin/env bash
# Measures a rebuild after one file of a 10,000-file folder changed: the
# wall time of `imgscript run` of a script that bakes the folder into the
# image with add_local_dir (copy: true) and then runs one command, against
# `docker build` with BuildKit of the same steps as a Dockerfile.
#
#   tests/bench/context_change.sh               # 7 rounds
#   BENCH_RUNS=11 BENCH_FILES=20000 tests/bench/context_change.sh
#   IMGSCRIPT=/path/to/imgscript tests/bench/context_change.sh
#
# The folder holds BENCH_FILES files (default 10,000) of 1 to 4 KiB in
# folders of 100, made in a temporary folder. Each command builds once
# untimed to fill its caches. Then each round appends a line that no earlier
# run wrote to one file and times both commands, imgscript first in odd
# rounds and BuildKit first in even ones, so that drift on the machine and
# the order hit both alike. Every timed run is a real rebuild of the copy and
# run steps, and the script checks after the last round that both images
# contain the changed file. It prints each median in milliseconds and the
# ratio imgscript / BuildKit. Times come from `date +%s%N` around each
# command, so they include process start.
#
# It builds target/release/imgscript first (under CARGO_TARGET_DIR when that
# is set), unless IMGSCRIPT names another binary, for example one built from
# an older commit to compare with. The engine must have
# python:3.11-slim-bookworm, which tests/base-image/make.sh makes, because
# nothing is pulled.
# DOCKER_CLI (default /usr/bin/docker) must be a client that reaches the
# engine's BuildKit with DOCKER_BUILDKIT=1, such as Debian's docker.io 20.10.
#
# imgscript uses a cache folder of its own in the temporary folder, so its
# stat cache and cache index start empty. On exit the script removes the
# images that every round built, with imgscript's cache images. BuildKit's
# build cache keeps its layers, as after any build.
set -euo pipefail

runs=${BENCH_RUNS:-7}
files=${BENCH_FILES:-10000}
docker_cli=${DOCKER_CLI:-/usr/bin/docker}
base_image=python:3.11-slim-bookworm
imgscript_tag=imgscript-bench-imgscript:context-change
buildkit_tag=imgscript-bench-buildkit:context-change

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

if ! [[ $runs =~ ^[0-9]+$ ]] || [ "$runs" -lt 5 ]; then
  echo "context_change.sh: BENCH_RUNS must be an integer of at least 5, got '$runs'" >&2
  exit 2
fi
if ! [[ $files =~ ^[0-9]+$ ]] || [ "$files" -lt 1 ]; then
  echo "context_change.sh: BENCH_FILES must be a positive integer, got '$files'" >&2
  exit 2
fi
if ! "$docker_cli" image inspect "$base_image" >/dev/null 2>&1; then
  echo "context_change.sh: $base_image is not in the local image store. Run tests/base-image/make.sh first." >&2
  exit 1
fi

scratch=$(mktemp -d -t imgscript-bench.XXXXXX)
export IMGSCRIPT_CACHE_DIR=$scratch/cache
# Cache keys of the imgscript steps that the rounds built, and the images
# that each round delivered (untagged once the next round takes the tag),
# removed on exit.
touch "$scratch/keys" "$scratch/images"
clean_up() {
  "$docker_cli" image rm "$imgscript_tag" "$buildkit_tag" >/dev/null 2>&1 || true
  sort -u "$scratch/images" | xargs -r "$docker_cli" image rm >/dev/null 2>&1 || true
  sort -u "$scratch/keys" | while read -r key; do
    "$docker_cli" image ls --quiet --no-trunc --filter "label=dev.imgscript.key=$key" |
      xargs -r "$docker_cli" image rm >/dev/null 2>&1 || true
  done
  rm -rf "$scratch"
}
trap clean_up EXIT

echo "context_change.sh: writing $files files" >&2
python3 - "$scratch/context" "$files" <<'PYTHON'
import os, random, sys
root, count = sys.argv[1], int(sys.argv[2])
generator = random.Random(42)
for index in range(count):
    folder = os.path.join(root, f"pkg{index // 100:03d}")
    os.makedirs(folder, exist_ok=True)
    size = generator.randint(1024, 4096)
    with open(os.path.join(folder, f"module{index % 100:02d}.py"), "w") as file:
        file.write("".join(generator.choice("abcdefghij \n") for _ in range(size)))
PYTHON
changed_file=pkg000/module00.py

# The same four steps in both forms: the folder copied to /app, a working
# folder, one command that lists every file, and a CMD.
cat >"$scratch/build.img" <<SCRIPT
debian_slim("3.11")
    .add_local_dir("./context", "/app", #{ copy: true })
    .workdir("/app")
    .run_commands(["find /app -type f | wc -l > /app-file-count"])
    .cmd(["python", "main.py"])
    .tag("$imgscript_tag")
SCRIPT
cat >"$scratch/Dockerfile" <<DOCKERFILE
FROM $base_image
COPY . /app/
WORKDIR /app
RUN find /app -type f | wc -l > /app-file-count
CMD ["python", "main.py"]
DOCKERFILE

# A copy, so that another cargo build cannot replace the binary halfway.
if [ -n "${IMGSCRIPT:-}" ]; then
  cp "$IMGSCRIPT" "$scratch/imgscript"
  revision="$IMGSCRIPT"
else
  echo "context_change.sh: building imgscript (cargo build --release)" >&2
  (cd "$repo" && cargo build --release --quiet)
  cp "${CARGO_TARGET_DIR:-$repo/target}/release/imgscript" "$scratch/imgscript"
  revision="$(cd "$repo" && git describe --always --dirty) (git describe when it was built)"
fi
imgscript=$scratch/imgscript

# Each run_* prints the image id the command produced. Output goes to a log
# that is shown on failure. The commands are chained with && because errexit
# is off inside a function called from an `if` condition.
run_imgscript() {
  "$imgscript" run "$scratch/build.img" 2>"$scratch/log" | awk '{ print $1 }'
}
run_buildkit() {
  rm -f "$scratch/iid" &&
    DOCKER_BUILDKIT=1 "$docker_cli" build --iidfile "$scratch/iid" -t "$buildkit_tag" \
      -f "$scratch/Dockerfile" "$scratch/context" >"$scratch/log" 2>&1 &&
    cat "$scratch/iid"
}

# Records the cache keys of the imgscript steps, for the clean-up.
record_keys() {
  "$imgscript" plan --format json "$scratch/build.img" 2>/dev/null |
    python3 -c 'import json, sys; print("\n".join(step["cache_key"] for step in json.load(sys.stdin)["steps"] if step["cache_key"]))' \
      >>"$scratch/keys"
}

# Runs one command and appends its wall time in milliseconds to
# $scratch/<name>.ms. Fails when the command fails, or when it gives the
# image of the run before, which would mean that the change was not built.
declare -A last_image
time_run() {
  local name=$1 started finished image_id
  started=$(date +%s%N)
  if ! image_id=$("run_$name") || [ -z "$image_id" ]; then
    echo "context_change.sh: $name run failed. Its output:" >&2
    cat "$scratch/log" >&2
    exit 1
  fi
  finished=$(date +%s%N)
  if [ "$image_id" = "${last_image[$name]}" ]; then
    echo "context_change.sh: $name gave the image of the run before, $image_id" >&2
    exit 1
  fi
  last_image[$name]=$image_id
  echo "$image_id" >>"$scratch/images"
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

echo "context_change.sh: first builds (untimed)" >&2
for name in imgscript buildkit; do
  if ! last_image[$name]=$("run_$name") || [ -z "${last_image[$name]}" ]; then
    echo "context_change.sh: first $name build failed. Its output:" >&2
    cat "$scratch/log" >&2
    exit 1
  fi
  echo "${last_image[$name]}" >>"$scratch/images"
done
record_keys

echo "context_change.sh: timing $runs rounds" >&2
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 1; round <= runs; round++)); do
  # The time makes the content new to BuildKit's cache of earlier runs too.
  echo "# changed in round $round at $(date +%s%N)" >>"$scratch/context/$changed_file"
  if ((round % 2)); then order="imgscript buildkit"; else order="buildkit imgscript"; fi
  for name in $order; do
    time_run "$name"
  done
  record_keys
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# Both last images must contain the file as the last round changed it.
for name in imgscript buildkit; do
  if ! "$docker_cli" run --rm "${last_image[$name]}" cat "/app/$changed_file" |
    cmp -s - "$scratch/context/$changed_file"; then
    echo "context_change.sh: the $name image lacks the last change to $changed_file" >&2
    exit 1
  fi
done

imgscript_ms=$(median "$scratch/imgscript.ms")
buildkit_ms=$(median "$scratch/buildkit.ms")
cat <<REPORT
commands:   imgscript: imgscript run build.img (add_local_dir copy, workdir, run_commands, cmd)
            BuildKit:  DOCKER_BUILDKIT=1 $docker_cli build -f Dockerfile context (COPY, WORKDIR, RUN, CMD)
context:    $files files, $(du -sh "$scratch/context" | cut -f1) on disk, one file changed per round
imgscript:  $revision
machine:    $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory
docker:     engine $("$docker_cli" version --format '{{.Server.Version}}'), client $("$docker_cli" version --format '{{.Client.Version}}') ($docker_cli)
load:       $load_before before the timed rounds, $load_after after (1, 5, 15 min averages)
times (ms): imgscript $(paste -sd' ' "$scratch/imgscript.ms")
            buildkit  $(paste -sd' ' "$scratch/buildkit.ms")
median ms:  imgscript $imgscript_ms, BuildKit $buildkit_ms over $runs rounds
ratio:      imgscript / BuildKit = $(awk -v a="$imgscript_ms" -v b="$buildkit_ms" 'BEGIN { printf "%.2f\n", a / b }') (target: at most 0.5)
REPORT
