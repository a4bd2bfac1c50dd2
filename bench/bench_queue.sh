#!/usr/bin/env bash
# bench_queue.sh - the durable queue with `persisted` ACKs (the ACK waits for
# the journal's fdatasync), next to the bare acking sink in the same run.
#
#   bench/bench_queue.sh [BUILD_DIR] [WORK_DIR]
#
# For 1, 16 and 64 connections (window 1: send, wait for the ACK, send the
# next): messages/s and ACK latency p50/p99 of bench/mllp_sink and of
# `caduceus run` (one channel, one file destination in append mode); then the
# ACK latency at a fixed offered load (RATE messages/s over RATE_CONNS
# connections, `mllp_load -r`); and how many inbound messages share one
# journal fdatasync (appends / batches from the engine's `event=stats.queue`
# line).  The engine runs at log_level warn (as bench/mllp_compare.sh); the
# stats.queue line is an info line, and at info every message adds a log
# line, which costs throughput, so each engine measurement is repeated at
# log_level info for the batching figure (and to show what info costs).
# Each measurement runs a fresh engine on a new data directory under
# WORK_DIR, so put WORK_DIR on the disk you want to measure.  RUNS rounds;
# the table shows the median of each figure (and min-max of msgs/s).
#
# Environment: RUNS (3), CONNS ("1 16 64"), RATE (5000), RATE_CONNS (16),
# RATE_SECONDS (3), SINK_N1 / SINK_NC (messages for the sink at 1 / more
# connections), ENG_N1 / ENG_NC (for the engine), INFO (1: also the info
# runs; 0: skip them and the batching figure), OUT_DIR (where the append
# destination's file goes, default beside the data directory; /dev/shm takes
# the destination's own fdatasync off the disk to isolate the queue).
set -euo pipefail
B=${1:-build}
W=${2:-$(mktemp -d /tmp/cad-bq-XXXXXX)}
RUNS=${RUNS:-3}
CONNS=${CONNS:-"1 16 64"}
RATE=${RATE:-5000}
RATE_CONNS=${RATE_CONNS:-16}
RATE_SECONDS=${RATE_SECONDS:-3}
SINK_N1=${SINK_N1:-20000}
SINK_NC=${SINK_NC:-100000}
ENG_N1=${ENG_N1:-8000}
ENG_NC=${ENG_NC:-40000}
INFO=${INFO:-1}
OUT_DIR=${OUT_DIR:-}
LOAD=$B/bench/mllp_load
SINK=$B/bench/mllp_sink
CAD=$B/engine/caduceus
for x in "$LOAD" "$SINK" "$CAD"; do [ -x "$x" ] || { echo "missing $x (build first)" >&2; exit 2; }; done
mkdir -p "$W"
RES=$W/results.txt
: > "$RES"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }
sink_pid=""
eng_pid=""
cleanup() {
  [ -n "$eng_pid" ] && kill "$eng_pid" 2>/dev/null || true
  [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

# field NAME LINE: the value of NAME=... in a key=value line
field() { sed -n "s/.*[ ]$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

# record LABEL CONNS RUN LOAD_OUTPUT [BATCHES APPENDS]
record() {
  echo "$1 $2 $3 $(field msgs_per_s "$4") $(field p50_ms "$4") $(field p99_ms "$4") ${5:--} ${6:--}" >> "$RES"
}

# One engine, fresh data directory; runs mllp_load ARGS against it, then
# waits for a stats.queue line written after the load and stops the engine.
engine_run() { # LEVEL LABEL CONNS RUN mllp_load-args...
  local level=$1 label=$2 c=$3 r=$4
  shift 4
  local d=$W/$label-c$c-r$r p out q
  rm -rf "$d"
  mkdir -p "$d"
  p=$(port)
  cat > "$d/engine.yaml" <<EOF
engine:
  data_dir: $d/data
  log_level: $level
  stats_interval: 1s
destinations:
  out:
    type: file
    append: ${OUT_DIR:-$d/out}/$label-c$c-r$r.hl7
channels:
  bench:
    listen: [ "127.0.0.1:$p" ]
    ack: { policy: persisted }
    to: [ out ]
EOF
  "$CAD" run "$d/engine.yaml" 2>"$d/engine.log" &
  eng_pid=$!
  wait_port "$p" || { echo "engine did not start: $d/engine.log" >&2; exit 1; }
  out=$("$LOAD" -p "$p" "$@") || { echo "mllp_load failed: $out" >&2; exit 1; }
  local n0
  n0=$(grep -c 'event=stats.queue' "$d/engine.log" || true)
  # Counters are cumulative: the first stats.queue line after the load has them all.
  if [ "$level" = info ]; then
    for _ in $(seq 40); do
      [ "$(grep -c 'event=stats.queue' "$d/engine.log" || true)" -gt "$n0" ] && break
      sleep 0.1
    done
  fi
  kill -TERM "$eng_pid"
  wait "$eng_pid" || true
  eng_pid=""
  if [ -n "$OUT_DIR" ]; then rm -f "$OUT_DIR/$label-c$c-r$r.hl7"; fi
  rm -rf "$d/data" "$d/out" # ~100 MB per run; the config and log stay
  q=$(grep 'event=stats.queue' "$d/engine.log" | tail -1 || true)
  record "$label" "$c" "$r" "$out" "$(field batches "$q")" "$(field appends "$q")"
  echo "  $label c=$c run $r: $out${q:+ batches=$(field batches "$q") appends=$(field appends "$q")}" >&2
}

# The disk itself: fdatasync after each 1 KB append to a growing file (what
# the journal does), 500 times; a line like mllp_load's for the table.
fsync_probe() {
  python3 - "$W/fsync-probe" <<'EOF'
import os, sys, time
p = sys.argv[1]
fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
lat = []
for i in range(500):
    t = time.perf_counter()
    os.write(fd, b"x" * 1024)
    os.fdatasync(fd)
    lat.append(time.perf_counter() - t)
os.close(fd)
os.unlink(p)
lat.sort()
print("msgs_per_s=%.0f p50_ms=%.3f p99_ms=%.3f" % (len(lat) / sum(lat), lat[250] * 1e3,
                                                  lat[int(499 * 0.99)] * 1e3))
EOF
}

PS=$(port)
"$SINK" -p "$PS" &
sink_pid=$!
wait_port "$PS"

echo "bench_queue: $RUNS run(s), work dir $W" >&2
for r in $(seq "$RUNS"); do
  echo "  round $r: load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  out=" $(fsync_probe)"
  record fdatasync 1 "$r" "$out"
  echo "  fdatasync probe run $r:$out" >&2
  for c in $CONNS; do
    if [ "$c" -eq 1 ]; then sn=$SINK_N1 en=$ENG_N1; else sn=$SINK_NC en=$ENG_NC; fi
    out=$("$LOAD" -p "$PS" -c "$c" -n "$sn")
    record sink "$c" "$r" "$out"
    echo "  sink c=$c run $r: $out" >&2
    engine_run warn engine "$c" "$r" -c "$c" -n "$en"
    if [ "$INFO" = 1 ]; then engine_run info engine-info "$c" "$r" -c "$c" -n "$en"; fi
  done
  rn=$(( RATE * RATE_SECONDS ))
  out=$("$LOAD" -p "$PS" -c "$RATE_CONNS" -n "$rn" -r "$RATE")
  record sink@$RATE "$RATE_CONNS" "$r" "$out"
  echo "  sink@$RATE c=$RATE_CONNS run $r: $out" >&2
  engine_run warn engine@$RATE "$RATE_CONNS" "$r" -c "$RATE_CONNS" -n "$rn" -r "$RATE"
  if [ "$INFO" = 1 ]; then
    engine_run info engine-info@$RATE "$RATE_CONNS" "$r" -c "$RATE_CONNS" -n "$rn" -r "$RATE"
  fi
done

python3 - "$RES" <<'EOF'
import statistics, sys
rows = {}
order = []
for line in open(sys.argv[1]):
    label, c, r, rate, p50, p99, batches, appends = line.split()
    key = (label, int(c))
    if key not in rows:
        rows[key] = []
        order.append(key)
    rows[key].append((float(rate), float(p50), float(p99),
                      None if batches == "-" else int(batches),
                      None if appends == "-" else int(appends)))
med = lambda xs: statistics.median(xs)
sink = {c: med([x[0] for x in rows[(l, c)]]) for (l, c) in order if l == "sink"}
print("| server | conns | msgs/s (median) | min-max | p50 ms | p99 ms | % of sink | msgs per fdatasync |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for (label, c) in order:
    xs = rows[(label, c)]
    rate = med([x[0] for x in xs])
    spread = "%s-%s" % (format(round(min(x[0] for x in xs)), ","), format(round(max(x[0] for x in xs)), ","))
    pct = ""
    if label in ("engine", "engine-info") and c in sink:
        pct = "%.1f %%" % (100.0 * rate / sink[c])
    share = ""
    per = [x[4] / x[3] for x in xs if x[3] and x[4] is not None]
    if per:
        share = "%.1f" % med(per)
    name = {"sink": "sink", "engine": "engine",
            "fdatasync": "(disk: fdatasync of a 1 KB append, syncs/s)",
            "engine-info": "engine, log_level info"}.get(label, label)
    if label.startswith("sink@"):
        name = "sink, offered %s/s" % label[5:]
    elif label.startswith("engine@"):
        name = "engine, offered %s/s" % label[7:]
    elif label.startswith("engine-info@"):
        name = "engine, log_level info, offered %s/s" % label[12:]
    print("| %s | %d | %s | %s | %.3f | %.3f | %s | %s |" % (
        name, c, format(round(rate), ","), spread, med([x[1] for x in xs]),
        med([x[2] for x in xs]), pct, share))
EOF
echo "work dir: $W (results.txt: one line per run)"
