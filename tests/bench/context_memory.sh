#!/usr/bin/env bash
# Measures the peak memory (maximum resident set size) of `imgscript run`
# on a script that bakes a 1 GiB folder into an image with add_local_dir
# (copy: true): once cold, when the layer is built and every file is read,
# and once as a no-op rerun, when everything is cached.
#
#   tests/bench/context_memory.sh                  # 256 files, 1024 MiB
#   BENCH_MIB=2048 BENCH_FILES=512 tests/bench/context_memory.sh
#   IMGSCRIPT=/path/to/imgscript tests/bench/context_memory.sh
#
# The folder holds BENCH_FILES files of random bytes, BENCH_MIB MiB in all,
# made in a temporary folder. The peak comes from `/usr/bin/time -v` when it
# exists, else from getrusage(RUSAGE_CHILDREN) in a python3 wrapper. The
# target is under 100 MB for both runs.
#
# It builds target/release/imgscript first (under CARGO_TARGET_DIR when that
# is set), unless IMGSCRIPT names another binary, for example one built
# from an older commit to compare with. The engine must have
# python:3.11-slim-bookworm (tests/base-image/make.sh), because nothing is
# pulled. imgscript gets a cache folder of its own in the temporary folder.
# On exit the script removes the image it tagged and the imgscript cache
# images it built, because they hold the whole folder.
set -euo pipefail

mib=${BENCH_MIB:-1024}
files=${BENCH_FILES:-256}
docker_cli=${DOCKER_CLI:-/usr/bin/docker}
base_image=python:3.11-slim-bookworm
tag=imgscript-bench-imgscript:context-memory

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/bench/common.sh
. "$repo/tests/bench/common.sh"

if ! [[ $mib =~ ^[0-9]+$ ]] || [ "$mib" -lt 1 ]; then
  echo "context_memory.sh: BENCH_MIB must be a positive integer, got '$mib'" >&2
  exit 2
fi
if ! [[ $files =~ ^[0-9]+$ ]] || [ "$files" -lt 1 ] || [ "$files" -gt $((mib * 1024)) ]; then
  echo "context_memory.sh: BENCH_FILES must be a positive integer of at most BENCH_MIB * 1024, got '$files'" >&2
  exit 2
fi
if ! "$docker_cli" image inspect "$base_image" >/dev/null 2>&1; then
  echo "context_memory.sh: $base_image is not in the local image store. Run tests/base-image/make.sh first." >&2
  exit 1
fi

scratch=$(mktemp -d -t imgscript-bench.XXXXXX)
export IMGSCRIPT_CACHE_DIR=$scratch/cache
touch "$scratch/keys"
clean_up() {
  "$docker_cli" image rm "$tag" >/dev/null 2>&1 || true
  sort -u "$scratch/keys" | while read -r key; do
    "$docker_cli" image ls --quiet --no-trunc --filter "label=dev.imgscript.key=$key" |
      xargs -r "$docker_cli" image rm >/dev/null 2>&1 || true
  done
  rm -rf "$scratch"
}
trap clean_up EXIT

if [ -n "${IMGSCRIPT:-}" ]; then
  cp "$IMGSCRIPT" "$scratch/imgscript"
  revision="$IMGSCRIPT"
else
  echo "context_memory.sh: building imgscript (cargo build --release)" >&2
  (cd "$repo" && cargo build --release --quiet)
  cp "${CARGO_TARGET_DIR:-$repo/target}/release/imgscript" "$scratch/imgscript"
  revision="$(cd "$repo" && git describe --always --dirty) (git describe when it was built)"
fi
imgscript=$scratch/imgscript

echo "context_memory.sh: writing $files files, $mib MiB in all" >&2
kib_per_file=$((mib * 1024 / files))
mkdir "$scratch/data"
for ((index = 0; index < files; index++)); do
  head -c "$((kib_per_file * 1024))" /dev/urandom >"$scratch/data/$(printf 'part-%05d.bin' "$index")"
done

cat >"$scratch/build.img" <<SCRIPT
debian_slim("3.11")
    .env(#{ BENCH_RUN: "$(date +%s%N)" })
    .add_local_dir("./data", "/data", #{ copy: true })
    .tag("$tag")
SCRIPT
"$imgscript" plan --format json "$scratch/build.img" 2>/dev/null |
  python3 -c 'import json, sys; print("\n".join(step["cache_key"] for step in json.load(sys.stdin)["steps"] if step["cache_key"]))' \
    >>"$scratch/keys"

measure() { measure_peak "$scratch" "$imgscript" "$@"; }

echo "context_memory.sh: cold build" >&2
if ! cold=$(measure run "$scratch/build.img"); then
  echo "context_memory.sh: the cold build failed. Its output:" >&2
  cat "$scratch/log" >&2
  exit 1
fi
echo "context_memory.sh: no-op rerun" >&2
if ! noop=$(measure run "$scratch/build.img"); then
  echo "context_memory.sh: the rerun failed. Its output:" >&2
  cat "$scratch/log" >&2
  exit 1
fi
if ! grep -q "steps: 0 built" "$scratch/log"; then
  echo "context_memory.sh: the rerun built steps, so it was no no-op. Its output:" >&2
  cat "$scratch/log" >&2
  exit 1
fi

read -r cold_kib cold_seconds <<<"$cold"
read -r noop_kib noop_seconds <<<"$noop"
cat <<REPORT
command:    imgscript run build.img (add_local_dir ./data -> /data, copy: true)
context:    $files files of $kib_per_file KiB, $(du -sb "$scratch/data" | awk '{ printf "%.0f MiB", $1 / 1048576 }') in all
imgscript:  $revision
machine:    $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory
docker:     engine $("$docker_cli" version --format '{{.Server.Version}}')
peak RSS:   cold build $(megabytes "$cold_kib") (${cold_seconds} s), no-op rerun $(megabytes "$noop_kib") (${noop_seconds} s) (target: under 100 MB)
REPORT
