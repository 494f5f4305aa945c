#!/usr/bin/env bash
# Fuzzes script evaluation and offline planning for a bounded time, from a
# seed corpus of the example scripts, the standard library and the README's
# script blocks. Fails when any input makes imgscript panic; libFuzzer then
# prints the input and saves it under tests/fuzz/artifacts/.
#
#   tests/fuzz/run.sh          # 60 seconds
#   FUZZ_SECONDS=600 tests/fuzz/run.sh
#
# It takes cargo-fuzz from PATH, else from the tools folder where
# tests/setup.sh installs it. The stable toolchain builds the target with
# RUSTC_BOOTSTRAP=1, since libFuzzer's instrumentation needs flags that only
# nightly toolchains accept. The instrumented build goes to a folder outside
# the checkout, which later runs reuse: it takes minutes.
set -euo pipefail

tools=${IMGSCRIPT_TEST_TOOLS:-/var/cache/imgscript-tools}
export PATH=$PATH:$tools/cargo-fuzz/bin
export CARGO_TARGET_DIR=${IMGSCRIPT_FUZZ_TARGET_DIR:-/var/cache/imgscript-fuzz-target}

seconds=${FUZZ_SECONDS:-60}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
corpus=$(mktemp -d -t imgscript-fuzz-corpus.XXXXXX)
trap 'rm -rf "$corpus"' EXIT

number=0
add_seed() {
  number=$((number + 1))
  cat >"$corpus/seed-$number.img"
}
while IFS= read -r -d '' script; do
  add_seed <"$script"
done < <(find "$repo/examples" "$repo/stdlib" -name '*.img' -print0)
# Each ```rhai block of the README becomes a seed of its own.
awk -v folder="$corpus" '
  /^```rhai$/ { inside = 1; count += 1; next }
  /^```$/ { inside = 0; next }
  inside { print > (folder "/readme-" count ".img") }
' "$repo/README.md"
echo "fuzz: $(ls "$corpus" | wc -l) seeds; fuzzing for ${seconds}s" >&2

cd "$repo"
RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz --sanitizer none evaluate "$corpus" -- \
  -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096
