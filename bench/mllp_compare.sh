#!/usr/bin/env bash
# mllp_compare.sh - the engine with a file destination next to the bare
# acking sink, measured in the same run on 127.0.0.1.
#
#   bench/mllp_compare.sh [BUILD_DIR] [WORK_DIR]
#
# BUILD_DIR (default build/) holds engine/caduceus, bench/mllp_load and
# bench/mllp_sink.  WORK_DIR (default a new directory under /tmp) receives the
# configurations, logs and the files the engine writes; put it on the disk you
# want to measure (fsync costs differ between tmpfs, ext4, SSD, ...).
# Environment: N1 (messages at 1 connection, default 5000), N16 (at 16,
# default 40000), WINDOW (in-flight messages per connection, default 1).
set -euo pipefail
B=${1:-build}
W=${2:-$(mktemp -d /tmp/cad-bench-XXXXXX)}
N1=${N1:-5000}
N16=${N16:-40000}
WIN=${WINDOW:-1}
LOAD=$B/bench/mllp_load
SINK=$B/bench/mllp_sink
CAD=$B/engine/caduceus
mkdir -p "$W"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

engine_conf() { # NAME PORT DEST_YAML
  cat > "$W/$1.yaml" <<EOF
engine:
  data_dir: $W/data-$1  # one per engine: a data_dir is locked by its engine
  log_level: warn
  stats_interval: 0
destinations:
  out:
$3
channels:
  bench:
    listen: [ "127.0.0.1:$2" ]
    to: [ out ]
EOF
}

run() { # LABEL PORT
  local r1 r16
  r1=$("$LOAD" -p "$2" -c 1 -n "$N1" -w "$WIN")
  r16=$("$LOAD" -p "$2" -c 16 -n "$N16" -w "$WIN")
  echo "$1 c=1  $r1"
  echo "$1 c=16 $r16"
}
rate() { sed -n 's/.*msgs_per_s=\([0-9]*\).*/\1/p'; }

PS=$(port); "$SINK" -p "$PS" & pids+=($!); wait_port "$PS"
PD=$(port); engine_conf dir "$PD" "    type: file
    dir: $W/out
    name: \"\${MSH-10}.hl7\""
"$CAD" run "$W/dir.yaml" 2>"$W/dir.log" & pids+=($!); wait_port "$PD"
PA=$(port); engine_conf append "$PA" "    type: file
    append: $W/append/all.hl7"
"$CAD" run "$W/append.yaml" 2>"$W/append.log" & pids+=($!); wait_port "$PA"

out=$( { run sink "$PS"; run engine-dir "$PD"; run engine-append "$PA"; } )
echo "$out"
s16=$(echo "$out" | grep '^sink c=16' | rate)
for m in engine-dir engine-append; do
  e16=$(echo "$out" | grep "^$m c=16" | rate)
  python3 -c "print('%s / sink at 16 connections: %.1f %%' % ('$m', 100.0 * $e16 / $s16))"
done
echo "work dir: $W"
