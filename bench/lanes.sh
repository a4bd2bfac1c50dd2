#!/usr/bin/env bash
# lanes.sh - drain rate of one MLLP destination with lanes, to a receiver that
# takes DELAY to answer each message (bench/mllp_slow_sink), beside the ideal
# (lanes / DELAY) and beside the same receiver driven directly by
# bench/mllp_load on as many connections (the receiver's own limit, measured
# in the same run).
#
#   bench/lanes.sh [BUILD_DIR] [WORK_DIR]
#
# For each DELAY (DELAYS_US, default "1000 5000 20000") and each lane count
# (LANES, default "1 4 16"): an engine (log_level warn) queues N messages
# while its destination's receiver is down, then the receiver starts and
# reports how long the N messages took from its first to its last answer
# (the drain: the engine's reads, sends and DONE records, the network and
# the receiver's delay).  N is about BENCH_SECONDS (default 2) of the ideal rate,
# at least 100.  order_by: MSH-10 (every message its own key: the lanes are
# evenly used, as with many patients).  Prints one table; `ratio` is the
# engine's rate over the direct one.
set -euo pipefail
B=${1:-build}
W=${2:-$(mktemp -d /tmp/cad-lanes-XXXXXX)}
DELAYS_US=${DELAYS_US:-"1000 5000 20000"}
LANES=${LANES:-"1 4 16"}
SECONDS_EACH=${BENCH_SECONDS:-2}
LOAD=$B/bench/mllp_load
SLOW=$B/bench/mllp_slow_sink
CAD=$B/engine/caduceus
for x in "$LOAD" "$SLOW" "$CAD"; do [ -x "$x" ] || { echo "missing $x (build first)" >&2; exit 2; }; done
mkdir -p "$W"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

printf "%-9s %5s %7s %10s %10s %10s %7s %7s\n" delay_ms lanes msgs ideal/s direct/s engine/s ratio vs_ideal
for d in $DELAYS_US; do
  for l in $LANES; do
    ideal=$(( l * 1000000 / d ))
    n=$(( ideal * SECONDS_EACH ))
    [ "$n" -lt 100 ] && n=100
    # The receiver's own limit on l connections.
    ps=$(port)
    "$SLOW" -p "$ps" -d "$d" & pids+=($!)
    wait_port "$ps"
    direct=$("$LOAD" -p "$ps" -c "$l" -n "$n")
    kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
    # The engine: queue n messages with the receiver down, then drain.
    dir=$W/d$d-l$l
    rm -rf "$dir"; mkdir -p "$dir"
    pin=$(port); ps=$(port)
    cat > "$dir/engine.yaml" <<EOF
engine:
  data_dir: $dir/data
  log_level: error
  stats_interval: 0
destinations:
  ehr:
    type: mllp
    host: 127.0.0.1
    port: $ps
    lanes: $l
    order_by: MSH-10
    retry: { initial: 10ms, max: 20ms, attempts: 1000000 }
channels:
  bench:
    listen: [ "127.0.0.1:$pin" ]
    to: [ ehr ]
EOF
    if [ "$l" = 1 ]; then sed -i '/lanes: 1/d; /order_by/d' "$dir/engine.yaml"; fi
    "$CAD" run "$dir/engine.yaml" 2>"$dir/engine.log" & pids+=($!)
    wait_port "$pin" || { echo "engine did not start: $dir/engine.log" >&2; exit 1; }
    "$LOAD" -p "$pin" -c 8 -n "$n" >/dev/null
    out=$("$SLOW" -p "$ps" -d "$d" -n "$n")
    kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
    rm -rf "$dir/data"
    dr=$(field msgs_per_s "$direct"); er=$(field rate "$out")
    printf "%-9s %5s %7s %10s %10.0f %10.0f %7.2f %7.2f\n" "$(awk "BEGIN{print $d/1000}")" "$l" "$n" \
      "$ideal" "$dr" "$er" "$(awk "BEGIN{print $er/$dr}")" "$(awk "BEGIN{print $er/$ideal}")"
  done
done
