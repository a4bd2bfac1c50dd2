#!/usr/bin/env bash
# http_delivery.sh - the HTTP destination's delivery rate to a local server,
# beside the file destination in the same run.
#
#   bench/http_delivery.sh [BUILD_DIR] [WORK_DIR]
#
# One engine, one channel, two destinations: `files` (type file, one file per
# message) and `api` (type http, POST to bench/http_sink.py on 127.0.0.1,
# keep-alive, one request at a time).  Phase 1 queues N messages (mllp_load,
# 16 connections) while both destinations are unreachable; phase 2 restarts
# the engine with both reachable, and each drains the same N messages from
# the journal at the same time.  Printed per destination: N over the time
# from the engine's start to its last delivery, and the HTTP rate as a
# share of the file rate.
# Runs RUNS times (default 3) and prints the medians.  Environment: N
# (default 5000), RUNS.
set -euo pipefail
B=${1:-build}
W=${2:-$(mktemp -d /tmp/cad-httpb-XXXXXX)}
N=${N:-5000}
RUNS=${RUNS:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
LOAD=$B/bench/mllp_load
CAD=$B/engine/caduceus
mkdir -p "$W"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
now() { date +%s.%N; }

rates_f=(); rates_h=(); ratios=(); loads=()
conf() { # DIR HTTP_PORT FILES_DESTINATION MLLP_PORT
  cat > "$1/e.yaml" <<EOC
engine: {data_dir: $1/data, log_level: warn, stats_interval: 0, archive: {enabled: false}}
destinations:
  files: {$3, retry: {initial: 60s, max: 60s}}
  api: {type: http, url: "http://127.0.0.1:$2/fhir", retry: {initial: 60s, max: 60s}}
channels:
  lab:
    listen: ["127.0.0.1:$4"]
    to: [files, api]
EOC
}
for run in $(seq "$RUNS"); do
  dir=$W/run$run; rm -rf "$dir"; mkdir -p "$dir"
  PH=$(port); PM=$(port)
  # Phase 1: queue N messages while both destinations fail (nothing listens
  # on PH; `files` is an HTTP destination to it for now), then stop.
  conf "$dir" "$PH" "type: http, url: \"http://127.0.0.1:$PH/x\"" "$PM"
  "$CAD" run "$dir/e.yaml" 2>"$dir/e1.log" & epid=$!; wait_port "$PM"
  "$LOAD" -p "$PM" -c 16 -n "$N" > "$dir/load.txt"
  kill "$epid"; wait "$epid" 2>/dev/null || true
  # Phase 2: both reachable; each drains the same N messages from the journal.
  python3 "$HERE/http_sink.py" "$PH" & spid=$!; pids+=($spid); wait_port "$PH"
  conf "$dir" "$PH" "type: file, dir: $dir/out" "$PM"
  t0=$(now)
  "$CAD" run "$dir/e.yaml" 2>"$dir/e2.log" & epid=$!; pids+=($epid)
  tf=""; th=""
  for _ in $(seq 6000); do
    f=$( (find "$dir/out" -maxdepth 1 -name '*.hl7' 2>/dev/null || true) | wc -l)
    h=$(curl -s "http://127.0.0.1:$PH/count" || echo 0)
    [ -z "$tf" ] && [ "$f" -ge "$N" ] && tf=$(now)
    [ -z "$th" ] && [ "${h:-0}" -ge "$N" ] && th=$(now)
    [ -n "$tf" ] && [ -n "$th" ] && break
    sleep 0.05
  done
  [ -n "$tf" ] && [ -n "$th" ] || { echo "run $run: not everything was delivered" >&2; exit 1; }
  rf=$(python3 -c "print(round($N/($tf-$t0)))"); rh=$(python3 -c "print(round($N/($th-$t0)))")
  ra=$(python3 -c "print(round(100*$rh/$rf,1))")
  echo "run $run: N=$N drained: file ${rf} msgs/s, http ${rh} msgs/s (${ra} % of file)"
  rates_f+=("$rf"); rates_h+=("$rh"); ratios+=("$ra")
  kill "$epid" "$spid" 2>/dev/null || true; wait "$epid" "$spid" 2>/dev/null || true; pids=()
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
echo "median: file $(med "${rates_f[@]}") msgs/s, http $(med "${rates_h[@]}") msgs/s, http/file $(med "${ratios[@]}") %"
