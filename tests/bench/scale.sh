#!/usr/bin/env bash
# Measures the peak memory (maximum resident set size) and wall time of
# imgscript on a large script over a large context. The script has
# BENCH_STEPS steps: a copy of the folder, one run step, env steps and a
# workdir. The folder holds BENCH_FILES small files. It measures `imgscript
# check`, `imgscript plan`, the cold build, and a no-op rerun. The target is
# under 100 MB for each.
#
#   tests/bench/scale.sh                      # 2,000 steps, 100,000 files
#   BENCH_STEPS=500 BENCH_FILES=10000 tests/bench/scale.sh
#
# It builds target/release/imgscript first. The engine must have
# python:3.11-slim-bookworm (tests/base-image/make.sh). imgscript gets a
# cache folder of its own in a temporary folder; on exit the script removes
# the images the build made. The cold build takes a few minutes.
set -euo pipefail

steps=${BENCH_STEPS:-2000}
files=${BENCH_FILES:-100000}
docker_cli=${DOCKER_CLI:-/usr/bin/docker}
base_image=python:3.11-slim-bookworm
tag=imgscript-bench-imgscript:scale
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/bench/common.sh
. "$repo/tests/bench/common.sh"

if ! [[ $steps =~ ^[0-9]+$ ]] || [ "$steps" -lt 5 ]; then
  echo "scale.sh: BENCH_STEPS must be an integer of at least 5, got '$steps'" >&2
  exit 2
fi
if ! [[ $files =~ ^[0-9]+$ ]] || [ "$files" -lt 1 ]; then
  echo "scale.sh: BENCH_FILES must be a positive integer, got '$files'" >&2
  exit 2
fi
check_base_image scale.sh "$docker_cli" "$base_image"

scratch=$(mktemp -d -t imgscript-bench.XXXXXX)
export IMGSCRIPT_CACHE_DIR=$scratch/cache
# Removes the tag and the cached layers of the script's steps, found in one
# `imgscript cache ls` listing, since a `docker image ls` per key takes
# minutes with thousands of keys.
clean_up() {
  "$docker_cli" image rm "$tag" >/dev/null 2>&1 || true
  if [ -s "$scratch/keys" ] && [ -x "$scratch/imgscript" ]; then
    "$scratch/imgscript" cache ls --format json 2>/dev/null |
      python3 -c 'import json, sys
keys = set(open(sys.argv[1]).read().split())
print("\n".join(layer["image_id"] for layer in json.load(sys.stdin) if layer["cache_key"] in keys))' "$scratch/keys" |
      xargs -r "$docker_cli" image rm --force >/dev/null 2>&1 || true
  fi
  rm -rf "$scratch"
}
trap clean_up EXIT
imgscript=$(build_imgscript scale.sh "$repo" "$scratch")
revision=$(cd "$repo" && git describe --always --dirty)

echo "scale.sh: writing $files files" >&2
python3 - "$scratch/context" "$files" <<'PYTHON'
import os, sys
root, files = sys.argv[1], int(sys.argv[2])
for index in range(files):
    folder = os.path.join(root, f"d{index // 1000:03}")
    if index % 1000 == 0:
        os.makedirs(folder)
    with open(os.path.join(folder, f"f{index % 1000:04}.txt"), "w") as file:
        file.write(f"{index}\n")
PYTHON
echo "bench-$(date +%s%N)" >"$scratch/context/marker"

cat >"$scratch/build.img" <<SCRIPT
let image = debian_slim("3.11")
    .add_local_dir("./context", "/context", #{ copy: true })
    .run_commands(["find /context -type f | wc -l > /count"]);
for i in 0..$((steps - 4)) {
    let vars = #{};
    vars["STEP_" + i] = "bench";
    image = image.env(vars);
}
image.workdir("/context").tag("$tag")
SCRIPT
"$imgscript" plan --format json "$scratch/build.img" 2>/dev/null |
  python3 -c 'import json, sys; print("\n".join(step["cache_key"] for step in json.load(sys.stdin)["steps"][1:]))' \
    >"$scratch/keys"

# Measures one command and prints its figures, or shows its log and exits.
measure() {
  local name=$1
  shift
  local figures
  if ! figures=$(measure_peak "$scratch" "$imgscript" "$@"); then
    echo "scale.sh: $name failed. Its output:" >&2
    cat "$scratch/log" >&2
    exit 1
  fi
  local kib seconds
  read -r kib seconds <<<"$figures"
  printf '%-11s %s, %s s\n' "$name:" "$(megabytes "$kib")" "$seconds"
}

report=$(
  measure check check "$scratch/build.img"
  measure plan plan "$scratch/build.img"
  echo "scale.sh: cold build of $steps steps" >&2
  measure "cold build" run --progress plain "$scratch/build.img"
  measure "no-op run" run --progress plain "$scratch/build.img"
  if ! grep -q "steps: 0 built" "$scratch/log"; then
    echo "scale.sh: the rerun built steps, so it was no no-op. Its output:" >&2
    cat "$scratch/log" >&2
    exit 1
  fi
)

cat <<REPORT
script:     $steps steps (add_local_dir, run_commands, env steps, workdir)
context:    $files files in $(((files + 999) / 1000)) folders
imgscript:  $revision (git describe when it was built)
$(machine_lines "$docker_cli")
peak RSS and wall time (target: under 100 MB each):
$report
REPORT
