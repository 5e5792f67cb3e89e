#!/bin/sh
# meshd benchmark: direct vs meshd --forward vs HAProxy vs nginx stream, one run,
# loopback only. Run by `make bench` (MESHD_BUILD=<build dir>); see bench/README.md.
#
# Knobs (environment):
#   BENCH_DURATION=8    measured seconds per wrk run      BENCH_WARMUP=1   warm-up seconds
#   BENCH_REPEAT=3      rounds (median reported)          BENCH_CONNS=50   wrk connections
#   BENCH_PIN=none      split: wrk+backend on CPU 0, proxy on CPU 1; none: no pinning
#   BENCH_LOAD_CPUS / BENCH_PROXY_CPUS   explicit taskset lists (override BENCH_PIN)
#   BENCH_BULK_MIB=1024 MiB per bulk transfer             BENCH_PORT_BASE=18080
#   BENCH_ONLY="direct nginx"   subset of: direct meshd haproxy nginx mtls http
#                       (mtls: two hops with mTLS vs HAProxy with TLS, bench/mtls.py;
#                        http: one HTTP-aware hop, meshd outbound vs HAProxy mode http vs
#                        nginx proxy_pass, plus h2 through meshd, bench/http_hop.py;
#                        pool: a connection per request through the mesh, with and
#                        without meshd's upstream pool, bench/pool.py;
#                        h2mesh: one h2 connection of 100 streams through the
#                        mesh, terminated and balanced per stream vs relayed,
#                        bench/h2mesh.py)
#   BENCH_SKIP_BULK=1   BENCH_MESHD_EXTRA="..." extra meshd flags
#   BENCH_SCHED=fifo    scheduling of every process of the run: fifo (SCHED_FIFO 10,
#                       falls back to nice), nice (nice -10) or none
# Every process started here is killed by pid on exit; every wait is bounded.

# The script uses bash (arrays, $(( )), read -a); `make bench` runs it with sh.
if [ -z "${BASH_VERSION:-}" ]; then exec /bin/bash "$0" "$@"; fi
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
MESHD_BUILD=${MESHD_BUILD:-$ROOT/build}
MESHD=${MESHD_BIN:-$MESHD_BUILD/meshd}
OUTDIR=$MESHD_BUILD/bench
PY=/usr/bin/python3

DURATION=${BENCH_DURATION:-8}
WARMUP=${BENCH_WARMUP:-1}
REPEAT=${BENCH_REPEAT:-3}
CONNS=${BENCH_CONNS:-50}
PIN=${BENCH_PIN:-none}
BULK_MIB=${BENCH_BULK_MIB:-1024}
BASE=${BENCH_PORT_BASE:-18080}
ONLY=${BENCH_ONLY:-direct meshd haproxy nginx}
SKIP_BULK=${BENCH_SKIP_BULK:-0}

P_BACKEND=$BASE
P_MESHD=$((BASE + 1)); P_HAPROXY=$((BASE + 2)); P_NGINX=$((BASE + 3))
P_SINK=$((BASE + 10))
P_BMESHD=$((BASE + 11)); P_BHAPROXY=$((BASE + 12)); P_BNGINX=$((BASE + 13))
P_ADMIN=$((BASE + 21)); P_BADMIN=$((BASE + 22))
STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

TMP=$(mktemp -d /tmp/meshd-bench.XXXXXX) || die "mktemp failed"
STARTED=()   # pids of every process this script started

stop_pid() {  # stop_pid PID: TERM, up to 3 s, then KILL; reaps it
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  return 0
}

cleanup() {
  local i
  trap - EXIT INT TERM
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop_pid "${STARTED[i]}"; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- CPU placement
NCPU=$(nproc)
if [ -n "${BENCH_LOAD_CPUS:-}" ] || [ -n "${BENCH_PROXY_CPUS:-}" ]; then
  LOAD_CPUS=${BENCH_LOAD_CPUS:-0-$((NCPU - 1))}
  PROXY_CPUS=${BENCH_PROXY_CPUS:-0-$((NCPU - 1))}
  PINNING="pinning: wrk+backend on CPU $LOAD_CPUS, proxy on CPU $PROXY_CPUS (taskset)"
elif [ "$PIN" = split ] && [ "$NCPU" -ge 2 ]; then
  LOAD_CPUS=0; PROXY_CPUS=1
  PINNING="pinning: wrk+backend on CPU 0, proxy on CPU 1 (taskset); proxies get 1 thread/worker"
else
  [ "$PIN" = split ] && log "only $NCPU CPU: no pinning"
  LOAD_CPUS=0-$((NCPU - 1)); PROXY_CPUS=$LOAD_CPUS
  PINNING="no pinning: wrk, backend and proxy share CPUs 0-$((NCPU - 1)); proxies get 1 thread/worker"
fi

# Scheduling. The default is the kernel's ordinary scheduler: on a quiet
# machine rounds repeat within a few percent. On a machine shared with builds,
# BENCH_SCHED=fifo (SCHED_FIFO, inherited by every process started here) keeps
# rounds steady, but RT throttling then stalls the saturated load CPU for
# 50 ms every second, which shows as a p99 of ~40 ms for every row: use it
# for throughput and CPU figures only. It is used only while RT throttling is
# on (sched_rt_runtime_us != -1), so a spinning proxy never takes a CPU whole.
SCHED=${BENCH_SCHED:-none}
case $SCHED in
  fifo)
    if [ "$(cat /proc/sys/kernel/sched_rt_runtime_us 2>/dev/null)" != -1 ] &&
       chrt -f -p 10 $$ >/dev/null 2>&1; then
      PINNING="$PINNING; SCHED_FIFO"
    elif renice -n -10 -p $$ >/dev/null 2>&1; then
      PINNING="$PINNING; nice -10 (SCHED_FIFO not allowed)"
    fi ;;
  nice) renice -n -10 -p $$ >/dev/null 2>&1 && PINNING="$PINNING; nice -10" ;;
  none) ;;
  *) die "BENCH_SCHED must be fifo, nice or none, not '$SCHED'" ;;
esac

# ---------------------------------------------------------------- preflight
for tool in wrk haproxy nginx taskset chrt ss timeout; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (run: make deps)"
done
[ -x "$PY" ] || die "$PY not found (run: make deps)"
case "$DURATION$WARMUP$REPEAT$CONNS$BULK_MIB$BASE" in *[!0-9]*) die "BENCH_* numbers must be integers";; esac
[ "$REPEAT" -ge 1 ] && [ "$REPEAT" -le 20 ] || die "BENCH_REPEAT must be 1..20"

listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
for p in $P_BACKEND $P_MESHD $P_HAPROXY $P_NGINX $P_SINK $P_BMESHD $P_BHAPROXY $P_BNGINX $P_ADMIN $P_BADMIN; do
  listening "$p" && die "port $p already in use on this host (set BENCH_PORT_BASE)"
done

mkdir -p "$OUTDIR/raw" || die "cannot create $OUTDIR"
rm -f "$OUTDIR"/raw/* "$OUTDIR/samples.tsv"
SAMPLES=$OUTDIR/samples.tsv
: >"$SAMPLES"
rec() { local IFS=$'\t'; printf '%s\n' "$*" >>"$SAMPLES"; }

want() { case " $ONLY " in *" $1 "*) return 0;; *) return 1;; esac; }

# meshd -> mTLS -> meshd against HAProxy -> TLS -> HAProxy, in network
# namespaces with meshd-init's rules (bench/mtls.py: its own table and knobs
# BENCH_MTLS_*; needs root, meshd-controller, meshd-ctl and meshd-init).
run_mtls() { MESHD_BUILD="$MESHD_BUILD" MESHD_BIN="$MESHD" "$PY" "$HERE/mtls.py" || log "two-hop mTLS benchmark failed"; }
# One hop of HTTP in network namespaces: meshd's tapped outbound path vs
# HAProxy mode http vs nginx proxy_pass, and h2 (h2load) direct vs meshd
# (bench/http_hop.py: knobs BENCH_HTTP_*; needs root and meshd-init).
run_http() { MESHD_BUILD="$MESHD_BUILD" MESHD_BIN="$MESHD" "$PY" "$HERE/http_hop.py" || log "one-hop HTTP benchmark failed"; }
# A client opening a connection per request, pooled and not (bench/pool.py:
# the e2e mesh with a controller; knob BENCH_POOL_REQUESTS).
run_pool() { MESHD_BUILD="$MESHD_BUILD" "$PY" "$HERE/pool.py" || log "upstream pool benchmark failed"; }
# HTTP/2 through the mesh, terminated per stream vs relayed (bench/h2mesh.py:
# the e2e mesh; knob BENCH_H2MESH_SECONDS).
run_h2mesh() { MESHD_BUILD="$MESHD_BUILD" "$PY" "$HERE/h2mesh.py" || log "HTTP/2 mesh benchmark failed"; }
# Only namespace benchmarks asked for: the loopback part is not run.
ns_only=1
for w in $ONLY; do case $w in mtls|http|pool|h2mesh) ;; *) ns_only=0 ;; esac; done
if [ "$ns_only" = 1 ]; then
  want mtls && run_mtls
  want http && { want mtls && echo; run_http; }
  want pool && { { want mtls || want http; } && echo; run_pool; }
  want h2mesh && { { want mtls || want http || want pool; } && echo; run_h2mesh; }
  exit 0
fi

# ---------------------------------------------------------------- helpers
# start NAME CPUS CMD... : background, pinned, stdout/stderr to $TMP/NAME.log; sets PID
start() {
  local name=$1 cpus=$2; shift 2
  taskset -c "$cpus" "$@" >"$TMP/$name.log" 2>&1 &
  PID=$!
  STARTED+=("$PID")
}

# wait_listen PID PORT SECONDS: 0 when PORT listens, 1 when PID died or time ran out
wait_listen() {
  local pid=$1 port=$2 i
  for i in $(seq $(($3 * 20))); do
    kill -0 "$pid" 2>/dev/null || return 1
    listening "$port" && return 0
    sleep 0.05
  done
  return 1
}

last_log() {  # one line describing why NAME failed
  local f="$TMP/$1.log"
  if [ -s "$f" ]; then tail -n 3 "$f" | tr '\n\t' '  ' | cut -c1-200; else echo "no output"; fi
}

tree() {  # PID and its direct children (nginx master + worker)
  echo "$1"
  ps -o pid= --ppid "$1" 2>/dev/null
}

cpu_ticks() {  # sum of utime+stime (all threads) over the given pids
  local total=0 p s
  for p in "$@"; do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    s=${s##*) }          # drop "pid (comm) "; field 3 (state) is now $1
    set -- $s
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}

cpu_set() {  # expand taskset lists ("0-1,3" "1") into "0 1 3"
  echo "$@" | tr ', ' '\n\n' | awk -F- 'NF == 2 {for (i = $1; i <= $2; i++) print i; next} NF == 1 && $1 != "" {print $1}' |
    sort -un | tr '\n' ' '
}

sys_ticks() {  # CPUS...: "busy steal" ticks (user+nice+system, steal) summed over those CPUs
  awk -v cpus=" $* " '$1 ~ /^cpu[0-9]+$/ && index(cpus, " " substr($1, 4) " ") {b += $2 + $3 + $4; st += $9}
                      END {print b + 0, st + 0}' /proc/stat
}

waited_ticks() {  # utime+stime of every child this shell has waited for (wrk)
  local s
  s=$(cat "/proc/$$/stat"); s=${s##*) }
  set -- $s
  echo $((${14} + ${15}))
}

rss_kb() {  # sum of VmRSS over the given pids
  local total=0 p kb
  for p in "$@"; do
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

nginx_conf_common() {  # DIR
  cat <<EOF
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 8192; multi_accept on; }
EOF
}

start_nginx() {  # NAME CPUS CONF_DIR
  start "$1" "$2" nginx -p "$3/" -c "$3/nginx.conf" -e "$3/error.log" -g 'daemon off;'
}

# start_proxy KIND LISTEN_PORT TARGET_PORT ADMIN_PORT : sets PID or returns 1 with REASON
start_proxy() {
  local kind=$1 lp=$2 tp=$3 ap=$4 dir="$TMP/$1-$2"
  mkdir -p "$dir"
  case $kind in
    meshd)
      if [ ! -x "$MESHD" ]; then REASON="binary not found at $MESHD"; return 1; fi
      # shellcheck disable=SC2086
      start "$kind-$lp" "$PROXY_CPUS" "$MESHD" --forward "127.0.0.1:$lp=127.0.0.1:$tp" --threads 1 \
        --admin "127.0.0.1:$ap" --outbound-listen off --inbound-listen off ${BENCH_MESHD_EXTRA:-}
      ;;
    haproxy)
      cat >"$dir/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:$lp
    default_backend be
backend be
    server s1 127.0.0.1:$tp
EOF
      start "$kind-$lp" "$PROXY_CPUS" haproxy -f "$dir/haproxy.cfg" -db
      ;;
    nginx)
      if [ ! -f "$STREAM_MODULE" ]; then REASON="$STREAM_MODULE missing (libnginx-mod-stream)"; return 1; fi
      { echo "load_module $STREAM_MODULE;"; nginx_conf_common "$dir"
        echo "stream { server { listen 127.0.0.1:$lp backlog=4096; proxy_pass 127.0.0.1:$tp; proxy_half_close on; } }"
      } >"$dir/nginx.conf"
      start_nginx "$kind-$lp" "$PROXY_CPUS" "$dir"
      ;;
  esac
  if ! wait_listen "$PID" "$lp" 10; then
    if kill -0 "$PID" 2>/dev/null; then REASON="not listening on :$lp after 10 s: $(last_log "$kind-$lp")"
    else REASON="exited at start: $(last_log "$kind-$lp")"; fi
    stop_pid "$PID"
    return 1
  fi
  return 0
}

# ---------------------------------------------------------------- meta
rec meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
rec meta duration "$DURATION"; rec meta warmup "$WARMUP"; rec meta repeat "$REPEAT"
rec meta conns "$CONNS"; rec meta bulk_mib "$BULK_MIB"; rec meta pinning "$PINNING"
rec meta response 'backend nginx (1 worker) returning 200 "ok\n"'
rec meta cpus "$NCPU"
rec meta cpu_model "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
rec meta kernel "$(uname -r)"
NGV=$(nginx -v 2>&1 | sed 's/.*nginx\///'); HAV=$(haproxy -v 2>&1 | awk 'NR==1 {print $3}')
WRKV=$(wrk -v 2>&1 | awk 'NR==1 {print $2}')
rec meta versions "nginx $NGV, HAProxy $HAV, wrk $WRKV"

# How busy the machine is before anything starts (other builds, tests).
# shellcheck disable=SC2046  # the CPU list is meant to split
read -r q0 _ <<<"$(sys_ticks $(cpu_set "0-$((NCPU - 1))"))"; sleep 1
# shellcheck disable=SC2046
read -r q1 _ <<<"$(sys_ticks $(cpu_set "0-$((NCPU - 1))"))"
BG=$(( (q1 - q0) * 100 / ($(getconf CLK_TCK) * NCPU) )); [ "$BG" -gt 100 ] && BG=100
rec meta background "$BG"

log "$PINNING; ${DURATION}s x $REPEAT rounds per proxy, $CONNS connections; raw output in $OUTDIR"

# ---------------------------------------------------------------- backend
mkdir -p "$TMP/backend/tmp"
{ nginx_conf_common "$TMP/backend"
  cat <<EOF
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    default_type text/plain;
    client_body_temp_path $TMP/backend/tmp/body;
    proxy_temp_path $TMP/backend/tmp/proxy;
    fastcgi_temp_path $TMP/backend/tmp/fastcgi;
    uwsgi_temp_path $TMP/backend/tmp/uwsgi;
    scgi_temp_path $TMP/backend/tmp/scgi;
    server {
        listen 127.0.0.1:$P_BACKEND backlog=4096;
        location / { return 200 "ok\n"; }
    }
}
EOF
} >"$TMP/backend/nginx.conf"
start_nginx backend "$LOAD_CPUS" "$TMP/backend"
BACKEND_PID=$PID
wait_listen "$BACKEND_PID" "$P_BACKEND" 10 || die "backend nginx did not start: $(last_log backend)"
backend_pids=$(tree "$BACKEND_PID")
timeout 5 wrk -t1 -c1 -d1s "http://127.0.0.1:$P_BACKEND/" >"$TMP/probe.log" 2>&1 \
  && grep -q '^Requests/sec' "$TMP/probe.log" || die "backend does not answer: $(cat "$TMP/probe.log")"

# ---------------------------------------------------------------- proxies (request/response)
declare -A PPID_OF PORT_OF FAILED
PORT_OF[direct]=$P_BACKEND; PORT_OF[meshd]=$P_MESHD; PORT_OF[haproxy]=$P_HAPROXY; PORT_OF[nginx]=$P_NGINX
for kind in direct meshd haproxy nginx; do
  want "$kind" || { rec fail "$kind" "skipped (not in BENCH_ONLY)"; rec bulkfail "$kind" "skipped"; continue; }
  [ "$kind" = direct ] && continue
  if start_proxy "$kind" "${PORT_OF[$kind]}" "$P_BACKEND" "$P_ADMIN"; then
    PPID_OF[$kind]=$PID
  else
    FAILED[$kind]=1; rec fail "$kind" "$REASON"; log "$kind failed: $REASON"
  fi
done
sleep 1   # let every proxy settle before the idle RSS reading
for kind in meshd haproxy nginx; do
  [ -n "${PPID_OF[$kind]:-}" ] || continue
  pids=$(tree "${PPID_OF[$kind]}")
  # shellcheck disable=SC2086
  rec rss "$kind" idle "$(rss_kb $pids)" "$(echo $pids | wc -w)"
done

run_wrk() {  # PORT SECONDS OUTFILE
  timeout $(($2 + 30)) taskset -c "$LOAD_CPUS" wrk -t1 -c"$CONNS" -d"$2"s --latency \
    "http://127.0.0.1:$1/" >"$3" 2>&1
}

for round in $(seq "$REPEAT"); do
  for kind in direct meshd haproxy nginx; do
    want "$kind" || continue
    [ -z "${FAILED[$kind]:-}" ] || continue
    port=${PORT_OF[$kind]}
    pid=${PPID_OF[$kind]:-}
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      FAILED[$kind]=1; rec fail "$kind" "died: $(last_log "$kind-$port")"; continue
    fi
    log "round $round/$REPEAT: $kind"
    out="$OUTDIR/raw/wrk-$kind-$round.txt"
    if ! run_wrk "$port" "$WARMUP" "$TMP/warm.txt" || ! grep -q '^Requests/sec' "$TMP/warm.txt"; then
      FAILED[$kind]=1; rec fail "$kind" "warm-up failed: $(tail -n 2 "$TMP/warm.txt" | tr '\n' ' ')"
      log "$kind: warm-up failed"; continue
    fi
    pids=; cpus=$(cpu_set "$LOAD_CPUS")
    [ -n "$pid" ] && { pids=$(tree "$pid"); cpus=$(cpu_set "$LOAD_CPUS" "$PROXY_CPUS"); }
    # shellcheck disable=SC2086
    t0=$(cpu_ticks $pids); b0=$(cpu_ticks $backend_pids); w0=$(waited_ticks); read -r s0 st0 <<<"$(sys_ticks $cpus)"
    run_wrk "$port" "$DURATION" "$out"; rc=$?
    # shellcheck disable=SC2086
    t1=$(cpu_ticks $pids); b1=$(cpu_ticks $backend_pids); w1=$(waited_ticks); read -r s1 st1 <<<"$(sys_ticks $cpus)"
    # CPU spent on the CPUs of this run by anything but wrk, the backend and
    # the proxy (other builds, the hypervisor's steal): the noise indicator.
    other=$(( (s1 - s0) - (t1 - t0) - (b1 - b0) - (w1 - w0) ))
    [ "$other" -lt 0 ] && other=0
    other=$((other + st1 - st0))
    if [ -n "$pid" ]; then
      ticks=$((t1 - t0)); np=$(echo $pids | wc -w)
      if ! kill -0 "$pid" 2>/dev/null; then
        FAILED[$kind]=1; rec fail "$kind" "died during the run: $(last_log "$kind-$port")"; continue
      fi
    else
      ticks=-; np=0
    fi
    if [ $rc -ne 0 ]; then
      FAILED[$kind]=1; rec fail "$kind" "wrk exit $rc: $(tail -n 2 "$out" | tr '\n' ' ')"; continue
    fi
    log "  ticks: sys $((s1 - s0)) steal $((st1 - st0)) proxy $((t1 - t0)) backend $((b1 - b0)) wrk $((w1 - w0))"
    rec rr "$kind" "$round" "$out" "$ticks" "$np" "$other" "$(echo $cpus | wc -w)"
    log "  $(grep '^Requests/sec' "$out")"
  done
done

for kind in meshd haproxy nginx; do
  pid=${PPID_OF[$kind]:-}
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || continue
  pids=$(tree "$pid")
  # shellcheck disable=SC2086
  rec rss "$kind" end "$(rss_kb $pids)" "$(echo $pids | wc -w)"
  stop_pid "$pid"
done
stop_pid "$BACKEND_PID"

# ---------------------------------------------------------------- bulk transfer
if [ "$SKIP_BULK" != 1 ]; then
  start sink "$LOAD_CPUS" "$PY" "$HERE/bulk.py" sink "$P_SINK"
  SINK_PID=$PID
  if ! wait_listen "$SINK_PID" "$P_SINK" 10; then
    for kind in direct meshd haproxy nginx; do rec bulkfail "$kind" "sink did not start: $(last_log sink)"; done
  else
    declare -A BPORT=([meshd]=$P_BMESHD [haproxy]=$P_BHAPROXY [nginx]=$P_BNGINX [direct]=$P_SINK)
    # Generous bound: 50 MB/s.
    limit=$((BULK_MIB / 50 + 20))
    for kind in direct meshd haproxy nginx; do
      want "$kind" || continue
      port=${BPORT[$kind]}; pid=
      if [ "$kind" != direct ]; then
        if ! start_proxy "$kind" "$port" "$P_SINK" "$P_BADMIN"; then
          rec bulkfail "$kind" "$REASON"; continue
        fi
        pid=$PID
      fi
      log "bulk: $kind"
      for round in $(seq "$REPEAT"); do
        if res=$(timeout "$limit" taskset -c "$LOAD_CPUS" "$PY" "$HERE/bulk.py" send "$port" "$BULK_MIB" "$limit" 2>"$TMP/send.err"); then
          # shellcheck disable=SC2086
          set -- $res
          rec bulk "$kind" "$round" "$1" "$2"
          log "  $(awk -v b="$1" -v s="$2" 'BEGIN {printf "%.0f MB/s", b / s / 1e6}')"
        else
          rec bulkfail "$kind" "transfer failed: $(tr '\n' ' ' <"$TMP/send.err" | cut -c1-200)"
          break
        fi
      done
      [ -n "$pid" ] && stop_pid "$pid"
    done
  fi
  stop_pid "$SINK_PID"
fi

# ---------------------------------------------------------------- report
echo
"$PY" "$HERE/report.py" "$SAMPLES" "$OUTDIR/results.md" || die "report failed"

# ---------------------------------------------------- two hops with mTLS
if [ -z "${BENCH_ONLY:-}" ] || want mtls; then echo; run_mtls; fi

# ---------------------------------------------------- one hop of HTTP
if [ -z "${BENCH_ONLY:-}" ] || want http; then echo; run_http; fi

# ---------------------------------------------------- a connection per request
if [ -z "${BENCH_ONLY:-}" ] || want pool; then echo; run_pool; fi

# ---------------------------------------------------- HTTP/2 through the mesh
if [ -z "${BENCH_ONLY:-}" ] || want h2mesh; then echo; run_h2mesh; fi

# ---------------------------------------------------- control plane
# The controller's fan-out to 500 proxy streams (bench/fanout.sh) and gossip
# convergence between replicas (bench/gossip.py); each reports its own
# figures and targets.
if [ -z "${BENCH_ONLY:-}" ]; then  # a subset of proxies is a data-plane run
  echo
  "$HERE/fanout.sh" || log "controller fan-out benchmark failed"
  echo
  "$PY" "$HERE/gossip.py" || log "gossip benchmark failed"
fi
