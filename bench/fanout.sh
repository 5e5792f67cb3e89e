#!/bin/sh
# Controller fan-out benchmark: a meshd-controller (release build) with a temp
# data dir on loopback, bench-fanout against it (1,000 services x 10
# endpoints, 500 subscribed streams, one hot endpoint changed per round),
# and the controller's RSS and CPU from /proc. See bench/README.md.
#
# Knobs (environment):
#   FANOUT_STREAMS=500  FANOUT_SERVICES=1000  FANOUT_ENDPOINTS=10  FANOUT_SUBS=20
#   FANOUT_UNKNOWN_ADDRS=0   subscriptions per stream by an address no service has
#   FANOUT_ROUNDS=200   FANOUT_GAP_MS=20   FANOUT_DEADLINE=120 (seconds, the tool's whole run)
#   FANOUT_PIN=none     split: the tool on CPU 0, the controller on CPU 1 (taskset)
#   FANOUT_PORT=18190   FANOUT_EXTRA="..." extra bench-fanout flags
# The controller is stopped by its pid on exit; every wait is bounded.
# Exits non-zero when the tool fails or a target is missed (FANOUT_TARGETS=0: report only).

if [ -z "${BASH_VERSION:-}" ]; then exec /bin/bash "$0" "$@"; fi
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
MESHD_BUILD=${MESHD_BUILD:-$ROOT/build}
CONTROLLER=${MESHD_CONTROLLER_BIN:-$MESHD_BUILD/meshd-controller}
TOOL=${FANOUT_BIN:-$MESHD_BUILD/bench-fanout}
OUTDIR=$MESHD_BUILD/bench
PORT=${FANOUT_PORT:-18190}
PIN=${FANOUT_PIN:-none}
TARGET_P99_MS=50
TARGET_RSS_MB=64

log() { printf 'fanout: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for f in "$CONTROLLER" "$TOOL"; do
  [ -x "$f" ] || die "$f not found (run: make $(basename "$f") or make bench)"
done
case "${FANOUT_STREAMS:-0}${FANOUT_SERVICES:-0}${FANOUT_ENDPOINTS:-0}${FANOUT_SUBS:-0}${FANOUT_ROUNDS:-0}$PORT" in
  *[!0-9]*) die "FANOUT_* numbers must be integers" ;;
esac
if ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q .; then
  die "port $PORT already in use on this host (set FANOUT_PORT)"
fi

TMP=$(mktemp -d /tmp/meshd-fanout.XXXXXX) || die "mktemp failed"
CTL_PID=
SAMPLER_PID=
stop_pid() {  # TERM, up to 3 s, then KILL; reaps it
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}
cleanup() {
  trap - EXIT INT TERM
  [ -n "$SAMPLER_PID" ] && stop_pid "$SAMPLER_PID"
  [ -n "$CTL_PID" ] && stop_pid "$CTL_PID"
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

case $PIN in
  split) CTL_CPUS=1; TOOL_CPUS=0 ;;
  none) CTL_CPUS=0-$(($(nproc) - 1)); TOOL_CPUS=$CTL_CPUS ;;
  *) die "FANOUT_PIN must be split or none, not '$PIN'" ;;
esac

status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null; }
cpu_ms() {  # utime+stime of PID in ms
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  s=${s##*) }
  set -- $s
  echo $(((${12} + ${13}) * 1000 / $(getconf CLK_TCK)))
}

busy_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
# How busy the machine is before anything starts (other builds, tests): the
# latencies depend on it, the CPU per change much less.
b0=$(busy_ticks); sleep 1; b1=$(busy_ticks)
BUSY=$(((b1 - b0) * 100 / ($(getconf CLK_TCK) * $(nproc)))); [ "$BUSY" -gt 100 ] && BUSY=100
log "machine busy before the run: ${BUSY}% of $(nproc) CPUs"

mkdir -p "$OUTDIR" "$TMP/data" || die "cannot create $OUTDIR"
taskset -c "$CTL_CPUS" "$CONTROLLER" --listen "127.0.0.1:$PORT" --data-dir "$TMP/data" --admin off \
  --log-level warn >"$TMP/controller.log" 2>&1 &
CTL_PID=$!
for i in $(seq 100); do
  kill -0 "$CTL_PID" 2>/dev/null || die "meshd-controller exited at start: $(tail -n 3 "$TMP/controller.log")"
  ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q . && break
  sleep 0.05
done
ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q . || die "meshd-controller not listening on :$PORT after 5 s"
sleep 0.2
RSS_IDLE=$(status_kb "$CTL_PID" VmRSS)
CPU0=$(cpu_ms "$CTL_PID")

# VmRSS every 100 ms while the tool runs: the peak in between readings shows
# in VmHWM anyway, the samples show when memory grows (seeding, snapshots).
( while kill -0 "$CTL_PID" 2>/dev/null; do
    printf '%s %s\n' "$(date +%s.%N)" "$(status_kb "$CTL_PID" VmRSS)"
    sleep 0.1
  done ) >"$TMP/rss.txt" 2>/dev/null &
SAMPLER_PID=$!

log "controller pid $CTL_PID on 127.0.0.1:$PORT (CPUs $CTL_CPUS), tool on CPUs $TOOL_CPUS"
# shellcheck disable=SC2086
taskset -c "$TOOL_CPUS" "$TOOL" --controller "127.0.0.1:$PORT" --controller-pid "$CTL_PID" \
  --streams "${FANOUT_STREAMS:-500}" --services "${FANOUT_SERVICES:-1000}" --endpoints "${FANOUT_ENDPOINTS:-10}" \
  --subs "${FANOUT_SUBS:-20}" --unknown-addrs "${FANOUT_UNKNOWN_ADDRS:-0}" --rounds "${FANOUT_ROUNDS:-200}" \
  --gap-ms "${FANOUT_GAP_MS:-20}" --deadline "${FANOUT_DEADLINE:-120}" ${FANOUT_EXTRA:-} >"$TMP/result.json"
RC=$?
CPU1=$(cpu_ms "$CTL_PID")
RSS_END=$(status_kb "$CTL_PID" VmRSS)
HWM=$(status_kb "$CTL_PID" VmHWM)
stop_pid "$SAMPLER_PID"; SAMPLER_PID=
RSS_MAX=$(awk '$2 > m {m = $2} END {print m + 0}' "$TMP/rss.txt")
kill -0 "$CTL_PID" 2>/dev/null || die "meshd-controller died during the run: $(tail -n 3 "$TMP/controller.log")"
stop_pid "$CTL_PID"; CTL_PID=
[ $RC -eq 0 ] || die "bench-fanout failed (exit $RC)"

mb() { awk -v k="$1" 'BEGIN {printf "%.1f MB", k / 1024}'; }
printf '\ncontroller: RSS idle %s, max sampled %s, end %s, peak (VmHWM) %s; CPU over the whole run %d ms\n' \
  "$(mb "$RSS_IDLE")" "$(mb "$RSS_MAX")" "$(mb "$RSS_END")" "$(mb "$HWM")" $((CPU1 - CPU0))
# One JSON line: the tool's figures plus the controller's, kept for comparisons.
sed "s/}\$/,\"ctl_rss_kb_idle\":$RSS_IDLE,\"ctl_rss_kb_max_sampled\":$RSS_MAX,\"ctl_cpu_ms_total\":$((CPU1 - CPU0)),\"busy_before_pct\":$BUSY}/" \
  "$TMP/result.json" | tee "$OUTDIR/fanout.json"

# Targets from the issue: p99 until the last stream under 50 ms, RSS under 64 MB.
"${PY:-/usr/bin/python3}" - "$OUTDIR/fanout.json" "$TARGET_P99_MS" "$TARGET_RSS_MB" "${FANOUT_TARGETS:-1}" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
p99_target, rss_target, enforce = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
peak_mb = r["ctl_hwm_kb"] / 1024
ok_p99 = r["last_ms_p99"] < p99_target
ok_rss = peak_mb < rss_target
print(f"target: change to the last stream p99 {r['last_ms_p99']:.1f} ms < {p99_target:.0f} ms: "
      f"{'met' if ok_p99 else 'MISSED'}; controller peak RSS {peak_mb:.1f} MB < {rss_target:.0f} MB: "
      f"{'met' if ok_rss else 'MISSED'}")
sys.exit(0 if (ok_p99 and ok_rss) or not enforce else 1)
EOF
