#!/usr/bin/env bash
# shipped.sh - the configurations a user starts with, beside the bare acking
# sink in the same run (issue 16's aims):
#   quickstart  examples/quickstart.yaml as shipped (info logs, archive, one
#               file per message, persisted ACKs), only its ports and
#               directories moved under WORK_DIR;
#   relay       MLLP in, durable queue, MLLP out to a second bare sink (-e,
#               echoing the control id), log_level info, nothing else set;
#   sink        bench/mllp_sink itself;
#   dsink       bench/mllp_sink -d: the bare durable sink (each read written
#               to a preallocated file, one fdatasync per loop iteration
#               before the ACKs; no parsing, no index, no thread): what any
#               durable MLLP server can do on this machine and disk.
#
#   bench/shipped.sh [BUILD_DIR] [WORK_DIR]
#
# For 1 and 16 connections (window 1): msgs/s and ACK p50/p99, RUNS rounds,
# the median printed with the ratios to the sink; the disk's fdatasync rate
# (1 KB write into a preallocated file + fdatasync, what one message per
# sync costs) for the
# one-connection aim; the ACK p99 of the relay at RATE msgs/s offered.
# Environment: RUNS (3), N1 (3000), N16 (30000), RATE (5000), KEEP (1: leave
# the runs' files in WORK_DIR), PERF (1: also
# `perf record` the engine during one 16-connection run of each and print
# its top symbols; needs perf), BASE (another caduceus binary, e.g. a build
# of main: its quickstart and relay run too, interleaved with these, as
# quickstart@base and relay@base: before and after in the same run).
# cpu_us/msg: the server's CPU time per message (all its threads,
# /proc/PID/stat: the engine, read once it has written its last file
# (quickstart) and is idle, or the sink);
# steadier than msgs/s on a shared machine, where the rate depends on who
# else runs.  load_us: mllp_load's own CPU per message; down_us: the relay's
# downstream sink's.  The last lines set these against the two cores: the
# CPU per message the cores give at each aim's rate, less what the load
# generator (and the relay's downstream sink) take, is what the engine may
# use; the engine's figure beside it.
set -euo pipefail
B=${1:-build}
W=${2:-$(mktemp -d /tmp/cad-shipped-XXXXXX)}
RUNS=${RUNS:-3}
N1=${N1:-3000}
N16=${N16:-30000}
RATE=${RATE:-5000}
PERF=${PERF:-0}
SRC=$(cd "$(dirname "$0")/.." && pwd)
LOAD=$B/bench/mllp_load
SINK=$B/bench/mllp_sink
CAD=$B/engine/caduceus
for x in "$LOAD" "$SINK" "$CAD"; do [ -x "$x" ] || { echo "missing $x (build first)" >&2; exit 2; }; done
mkdir -p "$W"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }
field() { sed -n "s/.*[ ]*$1=\([0-9.]*\).*/\1/p" <<<"$2" | head -1; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$W"/*/data "$W"/*/out "$W/dsink.ring"
}
trap cleanup EXIT

PS=$(port); "$SINK" -p "$PS" & pids+=($!); sink_pid=$!; wait_port "$PS"
PE=$(port); "$SINK" -p "$PE" -e & pids+=($!); esink_pid=$!; wait_port "$PE"
PD=$(port); "$SINK" -p "$PD" -d "$W/dsink.ring" & pids+=($!); dsink_pid=$!; wait_port "$PD"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
per_msg() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {printf "%.1f", (b - a) * 1e6 / 100 / n}'; }

start_quickstart() { # DIR PORT -> sets eng_pid
  local d=$1 p=$2
  rm -rf "$d"; mkdir -p "$d"
  sed -e "s#data_dir: ../var/data#data_dir: $d/data#" -e "s#dir: ../var/out#dir: $d/out#" \
      -e "s#127.0.0.1:2575#127.0.0.1:$p#" -e "s#127.0.0.1:8765#127.0.0.1:$(port)#" \
      "$SRC/examples/quickstart.yaml" > "$d/engine.yaml"
  "$ENG" run "$d/engine.yaml" 2>"$d/engine.log" >/dev/null & eng_pid=$!
  pids+=($eng_pid)
  wait_port "$p"
}
start_relay() { # DIR PORT
  local d=$1 p=$2
  rm -rf "$d"; mkdir -p "$d"
  cat > "$d/engine.yaml" <<EOF
engine:
  data_dir: $d/data
destinations:
  ehr:
    type: mllp
    host: 127.0.0.1
    port: $PE
channels:
  relay:
    listen: "127.0.0.1:$p"
    to: [ ehr ]
EOF
  "$ENG" run "$d/engine.yaml" 2>"$d/engine.log" >/dev/null & eng_pid=$!
  pids+=($eng_pid)
  wait_port "$p"
}
# The files written per message (out/) are removed at the end (KEEP=1: left),
# not between runs: on this machine's ext4 (no journal) a new inode is not
# taken from those freed in the last seconds, and the allocator's search
# through 30,000 just freed ones would be charged to the next run.  The data
# directory (a few large files: journal, archive) goes at once, so the disk
# holds one run's journal and archive at a time, not all of them.
stop_engine() {
  kill -TERM "$eng_pid"; wait "$eng_pid" 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$1/data"
}

RES=$W/results.txt; : > "$RES"
for r in $(seq "$RUNS"); do
  for c in 1 16; do
    n=$N1; [ "$c" = 16 ] && n=$N16
    for what in sink dsink; do
      pid=$sink_pid; pt=$PS; [ "$what" = dsink ] && pid=$dsink_pid pt=$PD
      t0=$(ticks "$pid"); out=$("$LOAD" -p "$pt" -c "$c" -n "$n"); t1=$(ticks "$pid")
      echo "$what $c $r $(field msgs_per_s "$out") $(field p50_ms "$out") $(field p99_ms "$out") $(per_msg "$t0" "$t1" "$n") $(field cpu_us_per_msg "$out") -" >> "$RES"
    done
    for what in quickstart relay ${BASE:+quickstart@base relay@base}; do
      p=$(port); d=$W/$what-$c-$r
      ENG=$CAD; [ "${what#*@}" = base ] && ENG=$BASE
      "start_${what%@*}" "$d" "$p"
      if [ "$PERF" = 1 ] && [ "$c" = 16 ] && [ "$r" = 1 ]; then
        perf record -g -o "$W/$what.perf" -p "$eng_pid" 2>/dev/null & perf_pid=$!
        sleep 0.3
      fi
      e0=$(ticks "$esink_pid"); out=$("$LOAD" -p "$p" -c "$c" -n "$n")
      if [ "$PERF" = 1 ] && [ "$c" = 16 ] && [ "$r" = 1 ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
      # What the engine still does for these messages: the quickstart ACKs
      # once a message is in the journal and writes its file afterwards, so
      # wait (30 s at most) until every file is there; then until the engine
      # is idle (at most one clock tick in 0.3 s: deliveries, the archive).
      if [ "${what%@*}" = quickstart ]; then
        for _ in $(seq 300); do
          [ "$(find "$d/out" -maxdepth 1 -name '*.hl7' 2>/dev/null | wc -l)" -ge "$n" ] && break
          sleep 0.1
        done
      fi
      for _ in $(seq 100); do
        i0=$(ticks "$eng_pid"); sleep 0.3; [ $(($(ticks "$eng_pid") - i0)) -le 1 ] && break
      done
      cpu=$(per_msg 0 "$(ticks "$eng_pid")" "$n")
      down=-; [ "${what%@*}" = relay ] && down=$(per_msg "$e0" "$(ticks "$esink_pid")" "$n")
      echo "$what $c $r $(field msgs_per_s "$out") $(field p50_ms "$out") $(field p99_ms "$out") $cpu $(field cpu_us_per_msg "$out") $down" >> "$RES"
      stop_engine "$d"
    done
  done
done
# ACK latency of the relay at a fixed offered load.
# The hypervisor's share (/proc/stat steal) during these runs: a vCPU taken
# away for a few ms stalls whichever engine thread it ran, as a disk stall.
steal() { awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
steal0=$(steal)
for r in $(seq "$RUNS"); do
  p=$(port); d=$W/relay-rate; ENG=$CAD; start_relay "$d" "$p"
  out=$("$LOAD" -p "$p" -c 16 -n $((RATE * 3)) -r "$RATE"); stop_engine "$d"
  echo "relay-rate 16 $r $(field msgs_per_s "$out") $(field p50_ms "$out") $(field p99_ms "$out") - - -" >> "$RES"
done
steal_pct=$(echo "$steal0 $(steal)" | awk '{d = $4 - $2; s = 0; if (d > 0) s = ($3 - $1) * 100 / d; printf "%.1f", s}')
fsync=$(python3 - "$W/fsync-probe" <<'EOF'
import os, sys, time
p = sys.argv[1]
fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
# Zero-filled ahead and synced, as the journal's active segment: each
# fdatasync then has only data to write, no size or extent change.
os.write(fd, b"\0" * (1 << 20))
os.fsync(fd)
os.lseek(fd, 0, os.SEEK_SET)
t0 = time.perf_counter()
for i in range(500):
    os.write(fd, b"x" * 1024)
    os.fdatasync(fd)
rate = 500 / (time.perf_counter() - t0)
# Latency over as long as one fixed-rate run (3 s), one sync every ~0.2 ms:
# a stall of the disk delays every message committed behind it, so the
# engine's ACK p99 follows the disk's worst stalls, not its p99.
lat = []
end = time.perf_counter() + 3
while time.perf_counter() < end:
    t = time.perf_counter()
    os.write(fd, b"x" * 1024)
    os.fdatasync(fd)
    lat.append((time.perf_counter() - t) * 1000)
    time.sleep(0.0002)
lat.sort()
print("%.0f %.3f %.3f %.3f" % (rate, lat[len(lat) // 2], lat[int(len(lat) * 0.99)], lat[-1]))
os.close(fd); os.unlink(p)
EOF
)
read -r fsync fsync_p50 fsync_p99 fsync_max <<<"$fsync"
python3 - "$RES" "$fsync" "$RATE" "$fsync_p50" "$fsync_p99" "$fsync_max" "$steal_pct" <<'EOF'
import os, statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {}
num = lambda v: float(v) if v != "-" else 0.0
for what, c, r, rate, p50, p99, cpu, load, down in rows:
    med.setdefault((what, c), []).append(tuple(num(v) for v in (rate, p50, p99, cpu, load, down)))
def m(what, c, i):
    return statistics.median(x[i] for x in med[(what, c)])
print("%-16s %5s %10s %8s %8s %8s %11s %8s %8s" % ("config", "conns", "msgs/s", "p50_ms", "p99_ms",
                                                 "x sink", "cpu_us/msg", "load_us", "down_us"))
for what in ("sink", "dsink", "quickstart", "relay", "quickstart@base", "relay@base"):
    if (what, "1") not in med:
        continue
    for c in ("1", "16"):
        print("%-16s %5s %10.0f %8.3f %8.3f %8.2f %11.1f %8.1f %8.1f" % (
              what, c, m(what, c, 0), m(what, c, 1), m(what, c, 2),
              m(what, c, 0) / m("sink", c, 0), m(what, c, 3), m(what, c, 4), m(what, c, 5)))
fs = float(sys.argv[2])
print("fdatasync rate of the disk: %.0f/s; relay at 1 connection: %.2f x of it (aim >= 0.8)"
      % (fs, m("relay", "1", 0) / fs))
print("bare durable sink (dsink) at 1 connection: %.2f x the fdatasync rate; the relay %.2f x"
      " the dsink at 1 connection, %.2f x at 16"
      % (m("dsink", "1", 0) / fs, m("relay", "1", 0) / m("dsink", "1", 0),
         m("relay", "16", 0) / m("dsink", "16", 0)))
print("relay ACK at %s msgs/s offered: p50 %.3f ms, p99 %.3f ms (aim p99 <= 2 ms); one 1 KB"
      " write + fdatasync alone for 3 s in this run: p50 %s ms, p99 %s ms, max %s ms"
      % (sys.argv[3], m("relay-rate", "16", 1), m("relay-rate", "16", 2), sys.argv[4], sys.argv[5],
         sys.argv[6]))
print("CPU time the hypervisor took (steal) during those runs: %s %%" % sys.argv[7])
print("aims at 16 connections: relay >= 0.5 x sink (%.2f), quickstart >= 0.35 x sink (%.2f)"
      % (m("relay", "16", 0) / m("sink", "16", 0), m("quickstart", "16", 0) / m("sink", "16", 0)))
# What the two cores give per message at each aim's rate, and who takes it.
cores = os.cpu_count() or 2
for what, aim in (("relay", 0.5), ("quickstart", 0.35)):
    rate = aim * m("sink", "16", 0)
    budget = cores * 1e6 / rate
    left = budget - m(what, "16", 4) - m(what, "16", 5)
    print("%s at %.2f x the sink (%.0f msgs/s): %d cores give %.1f us of CPU per message; the load"
          " generator takes %.1f%s, leaving %.1f for the engine, which takes %.1f (the dsink takes"
          " %.1f)" % (what, aim, rate, cores, budget, m(what, "16", 4),
                      " and the downstream sink %.1f" % m(what, "16", 5) if what == "relay" else "",
                      left, m(what, "16", 3), m("dsink", "16", 3)))
EOF
if [ "$PERF" = 1 ]; then
  for what in quickstart relay; do
    echo "== perf top symbols: $what, 16 connections (self %)"
    perf report -i "$W/$what.perf" --no-children --sort symbol --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -25
  done
fi
echo "work dir: $W"
