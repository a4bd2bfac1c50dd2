#!/usr/bin/env bash
# e2e_mllp.sh - end to end through the engine to an MLLP receiver, with and
# without TLS, next to the bare acking sink measured in the same run.
#
#   bench/e2e_mllp.sh [BUILD_DIR] [WORK_DIR]
#
# Paths measured (all on 127.0.0.1):
#   sink      mllp_load -> mllp_sink                      (the yardstick)
#   plain     mllp_load -> A -> B -> mllp_sink            (A: persisted ACK, MLLP destination to B;
#                                                          B: persisted ACK, MLLP destination to the sink)
#   tls       mllp_load -> A =TLS=> B -> mllp_sink        (the A->B hop over TLS 1.3, server-verified)
# For each: the rate and ACK latency (p50/p99) the client sees at A, at 1 and
# 16 connections, and the end-to-end drain rate: messages / time until B's
# queue has delivered the last one to the sink (from `caduceus queue stats`).
# Environment: N1 (default 3000), N16 (default 20000).
set -euo pipefail
B=${1:-build}
W=${2:-$(mktemp -d /tmp/cad-e2e-XXXXXX)}
N1=${N1:-3000}
N16=${N16:-20000}
LOAD=$B/bench/mllp_load
SINK=$B/bench/mllp_sink
CAD=$B/engine/caduceus
mkdir -p "$W"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# A throwaway CA and a server certificate for 127.0.0.1.
( cd "$W" &&
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
    -out ca.crt -days 2 -subj "/CN=bench CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign 2>/dev/null &&
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key \
    -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null &&
  printf 'subjectAltName=IP:127.0.0.1\n' > san.ext &&
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile san.ext -out server.crt 2>/dev/null )

PS=$(port); "$SINK" -e -p "$PS" & pids+=($!); wait_port "$PS"
echo "sink c=1  $("$LOAD" -p "$PS" -c 1 -n "$N1")"
echo "sink c=16 $("$LOAD" -p "$PS" -c 16 -n "$N16")"

depth() { "$CAD" queue stats "$1" 2>/dev/null | awk '$1=="next"{print $2}'; }

chain() { # LABEL TLS(0|1)
  local label=$1 tls=$2 pa pb dir=$W/$1
  mkdir -p "$dir"
  pa=$(port); pb=$(port)
  local listen_tls="" dest_tls=""
  if [ "$tls" = 1 ]; then
    listen_tls="    tls: {cert: $W/server.crt, key: $W/server.key}"
    dest_tls="    tls: {ca: $W/ca.crt}"
  fi
  cat > "$dir/b.yaml" <<EOF
engine: {data_dir: $dir/b, log_level: warn, stats_interval: 0}
destinations:
  next: {type: mllp, host: 127.0.0.1, port: $PS}
channels:
  b:
    listen: ["127.0.0.1:$pb"]
$listen_tls
    to: [next]
EOF
  cat > "$dir/a.yaml" <<EOF
engine: {data_dir: $dir/a, log_level: warn, stats_interval: 0}
destinations:
  next:
    type: mllp
    host: 127.0.0.1
    port: $pb
$dest_tls
channels:
  a:
    listen: ["127.0.0.1:$pa"]
    to: [next]
EOF
  "$CAD" run "$dir/b.yaml" 2>"$dir/b.log" & pids+=($!)
  "$CAD" run "$dir/a.yaml" 2>"$dir/a.log" & pids+=($!)
  wait_port "$pb"; wait_port "$pa"
  for c in 1 16; do
    local n=$N1; [ "$c" = 16 ] && n=$N16
    local t0 r
    t0=$(date +%s.%N)
    r=$("$LOAD" -p "$pa" -c "$c" -n "$n")
    # Drained when both queues have delivered everything.
    for _ in $(seq 1200); do
      if [ "$(depth "$dir/a")" = 0 ] && [ "$(depth "$dir/b")" = 0 ]; then break; fi
      sleep 0.05
    done
    local t1 drain
    t1=$(date +%s.%N)
    drain=$(python3 -c "print(int($n/($t1-$t0)))")
    echo "$label c=$c $r e2e_msgs_per_s=$drain"
  done
}
chain plain 0
chain tls 1
echo "work dir: $W"
