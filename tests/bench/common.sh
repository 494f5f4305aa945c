# Functions the benchmark scripts share. Source it; it runs nothing itself.

# Fails unless $2 (BENCH_RUNS) is an integer of at least 5.
check_runs() {
  local script=$1 runs=$2
  if ! [[ $runs =~ ^[0-9]+$ ]] || [ "$runs" -lt 5 ]; then
    echo "$script: BENCH_RUNS must be an integer of at least 5, got '$runs'" >&2
    exit 2
  fi
}

# Fails unless the base image is in the local store, since nothing is pulled.
check_base_image() {
  local script=$1 docker_cli=$2 base_image=$3
  if ! "$docker_cli" image inspect "$base_image" >/dev/null 2>&1; then
    echo "$script: $base_image is not in the local image store. Run tests/base-image/make.sh first." >&2
    exit 1
  fi
}

# Builds imgscript in release mode and prints the path of a copy in the
# scratch folder, so that another cargo build in the same checkout cannot
# replace the binary halfway through the runs.
build_imgscript() {
  local script=$1 repo=$2 scratch=$3
  echo "$script: building imgscript (cargo build --release)" >&2
  (cd "$repo" && cargo build --release --quiet)
  cp "$repo/target/release/imgscript" "$scratch/imgscript"
  echo "$scratch/imgscript"
}

# Runs run_<name> and appends its wall time in milliseconds to
# <scratch>/<name>.ms; on failure, shows the command's log and exits. The
# time comes from `date +%s%N` around the command, so it includes process
# start.
time_command() {
  local script=$1 scratch=$2 name=$3 started finished
  started=$(date +%s%N)
  if ! "run_$name"; then
    echo "$script: $name run failed. Its output:" >&2
    cat "$scratch/log" >&2
    exit 1
  fi
  finished=$(date +%s%N)
  awk -v ns=$((finished - started)) 'BEGIN { printf "%.1f\n", ns / 1000000 }' >>"$scratch/$name.ms"
}

# Prints the median of the numbers in a file, one per line.
median() {
  sort -n "$1" | awk '{ value[NR] = $1 }
    END {
      if (NR % 2) printf "%.1f\n", value[(NR + 1) / 2]
      else printf "%.1f\n", (value[NR / 2] + value[NR / 2 + 1]) / 2
    }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", a / b }'; }

# Prints the machine and docker lines of a benchmark report.
machine_lines() {
  local docker_cli=$1
  echo "machine:    $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory"
  echo "docker:     engine $("$docker_cli" version --format '{{.Server.Version}}'), client $("$docker_cli" version --format '{{.Client.Version}}') ($docker_cli)"
}

# Runs the command given (an imgscript binary and its arguments) and prints
# "<peak KiB> <seconds>": its peak resident memory and wall time. Its stderr
# goes to $1/log. The peak comes from `/usr/bin/time -v` when it exists,
# else from getrusage(RUSAGE_CHILDREN) in a python3 wrapper.
measure_peak() {
  local scratch=$1
  shift
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -v -o "$scratch/time" "$@" >/dev/null 2>"$scratch/log" || return
    awk -F': ' '/Maximum resident set size/ { peak = $2 }
      /Elapsed \(wall clock\)/ { split($2, part, ":"); wall = part[1] * 60 + part[2] }
      END { printf "%d %.1f\n", peak, wall }' "$scratch/time"
  else
    python3 - "$@" 2>"$scratch/log" <<'PYTHON'
import resource, subprocess, sys, time
started = time.monotonic()
status = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
wall = time.monotonic() - started
if status != 0:
    sys.exit(status)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, f"{wall:.1f}")
PYTHON
  fi
}

# Prints KiB as megabytes.
megabytes() { awk -v kib="$1" 'BEGIN { printf "%.1f MB", kib * 1024 / 1e6 }'; }
