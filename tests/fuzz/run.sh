#!/bin/sh
# Runs one libFuzzer target, bounded: its seed corpus first (read, never
# written), then new inputs for at most SECONDS seconds or RUNS inputs. New
# inputs and any reproducer go to a temporary directory, removed when the
# run finds nothing; otherwise it is kept and the reproducer's path printed.
#   run.sh BINARY SEED_DIR SECONDS RUNS
set -u
bin=$1 seeds=$2 seconds=$3 runs=$4
name=$(basename "$bin")
[ -d "$seeds" ] || { echo "fuzz $name: no seed corpus at $seeds" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/meshd-fuzz-$name.XXXXXX") || exit 1
mkdir "$work/new"

# -timeout: an input taking this long is a hang, reported like a crash.
start=$(date +%s)
"$bin" -max_total_time="$seconds" -runs="$runs" -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$work/" "$work/new" "$seeds" >"$work/log" 2>&1
rc=$?
took=$(($(date +%s) - start))

if [ $rc -eq 0 ] && ! ls "$work" | grep -q -e '^crash-' -e '^leak-' -e '^timeout-' -e '^oom-'; then
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
  cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -n 1)
  echo "fuzz $name: ok, ${execs:-?} inputs in ${took}s ($cov, $(ls "$seeds" | wc -l) seeds)"
  rm -rf "$work"
  exit 0
fi

tail -n 60 "$work/log" >&2
echo "fuzz $name: FAILED (exit $rc); full log: $work/log" >&2
for f in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
  [ -e "$f" ] && echo "fuzz $name: reproducer: $f (rerun: $bin $f)" >&2
done
exit 1
