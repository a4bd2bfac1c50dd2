#!/usr/bin/env bash
# bench_archive.sh - what the message archive costs and gives.
#
#   bench/bench_archive.sh [BUILD_DIR] [WORK_DIR]
#
# (a) durable throughput (`persisted` ACKs, one channel, one append-file
#     destination) at CONNS connections with engine.archive on and off, the
#     two alternating in the same run, RUNS rounds, the median of each; a
#     1.5 KB ORU^R01 (bench/bench_archive.c's message) sent N times per run.
#     For the "on" runs: archive records dropped (queue full) and the
#     archive's bytes on disk per message.  Both: the engine's CPU per
#     message (all threads, read from /proc, the writer's catching up
#     included) and, with the archive, its writer thread's.
# (b, c) bench_archive: MESSAGES 1.5 KB results written through the store's
#     API, bytes per message on disk, search latency p50/p99 by patient id,
#     by control id, by type within one hour (QUERIES random queries each).
#
# SPIN=PERCENT: (a) also runs the engine without the archive beside
#     bench_spin, a program that spins PERCENT of the time at SCHED_IDLE and
#     does nothing else ("spin"): what a thread of that CPU share, doing no
#     work for the message path at the lowest priority, costs the message
#     path on this machine.  The archive writer's share is its CPU per
#     message times the rate.
#
# Environment: RUNS (3), CONNS (16), N (40000), MESSAGES (1000000),
# QUERIES (1000), SKIP_API=1 (only (a)), SPIN (none).
set -euo pipefail
B=${1:-build}
W=${2:-$(mktemp -d /tmp/cad-ba-XXXXXX)}
RUNS=${RUNS:-3}
CONNS=${CONNS:-16}
N=${N:-40000}
MESSAGES=${MESSAGES:-1000000}
QUERIES=${QUERIES:-1000}
LOAD=$B/bench/mllp_load
CAD=$B/engine/caduceus
API=$B/bench/bench_archive
SPINNER=$B/bench/bench_spin
SPIN=${SPIN:-}
for x in "$LOAD" "$CAD" "$API" ${SPIN:+"$SPINNER"}; do [ -x "$x" ] || { echo "missing $x (build first)" >&2; exit 2; }; done
mkdir -p "$W"
RES=$W/results.txt
: > "$RES"
eng_pid=""
spin_pid=""
cleanup() {
  [ -n "$eng_pid" ] && kill "$eng_pid" 2>/dev/null || true
  [ -n "$spin_pid" ] && kill "$spin_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }
field() { sed -n "s/.*[ ]$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
# CPU clock ticks of process $1's threads (named $2 only, when given).
ticks() {
  local t=0 f
  for f in /proc/$1/task/*; do
    [ -n "${2:-}" ] && [ "$(cat "$f/comm" 2>/dev/null)" != "$2" ] && continue
    t=$((t + $(awk '{sub(/.*\) /, ""); print $12 + $13}' "$f/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
# Wait (at most 10 s) until the archive writer has written what the load
# left (its CPU stops growing), so that the CPU figures include it.
settle() {
  local a b
  for _ in $(seq 50); do
    a=$(ticks "$1" cad-archive); sleep 0.2; b=$(ticks "$1" cad-archive)
    [ "$a" = "$b" ] && return 0
  done
}

# The 1.5 KB message: the one bench_archive writes, as a file.
python3 - "$W/oru.hl7" <<'EOF'
import sys
obx = "".join("OBX|%d|NM|%s^LN||%d.%d|10*9/L|4.0-11.0|N|||F|||20260101111500\r" % (k + 1, n, k * 7 % 50, k)
              for k, n in enumerate(["WBC^Leukocytes", "RBC^Erythrocytes", "HGB^Hemoglobin",
                                     "HCT^Hematocrit", "MCV^MCV", "MCH^MCH", "PLT^Platelets",
                                     "NEUT^Neutrophils", "LYMPH^Lymphocytes"]))
msg = ("MSH|^~\\&|LIS|LABFAC|EHR|EHRFAC|20260101120000||ORU^R01^ORU_R01|C1|P|2.5.1\r"
       "PID|1||M1^^^HOSP^MR~S1^^^SSA^SS||PATIENT1^TEST^Q||19700101|F|||1 MAIN ST^^SPRINGFIELD^IL^62701||555-0001\r"
       "PV1|1|O|LAB^^^MAIN||||1234^ORDERING^DOCTOR|||||||||||V1\r"
       "ORC|RE|O1|F1||CM\r"
       "OBR|1|O1|F1|CBC^COMPLETE BLOOD COUNT^L|||20260101110000|||||||20260101111500||1234^ORDERING^DOCTOR||||||20260101120000|||F\r"
       + obx +
       "NTE|1|L|Specimen received in good condition. Results reviewed and verified by the laboratory. "
       "Reference ranges are for adults; see the laboratory handbook for pediatric ranges. Call the "
       "laboratory at extension 4001 with questions about this report or to request additional testing "
       "on the same specimen within seven days of collection. Automated differential; manual review not "
       "required by the laboratory's criteria.\r")
open(sys.argv[1], "w").write(msg)
EOF

run() { # on|off|spin ROUND
  local mode=$1 r=$2 d=$W/$1-r$2 p out dropped bytes
  rm -rf "$d"; mkdir -p "$d"
  p=$(port)
  cat > "$d/engine.yaml" <<EOF
engine:
  data_dir: $d/data
  log_level: warn
  archive: { enabled: $([ "$mode" = on ] && echo true || echo false) }
destinations:
  out: { type: file, append: $d/out.hl7 }
channels:
  bench:
    listen: [ "127.0.0.1:$p" ]
    max_message_size: 64KiB
    to: [ out ]
EOF
  "$CAD" run "$d/engine.yaml" 2>"$d/engine.log" &
  eng_pid=$!
  wait_port "$p" || { echo "engine did not start: $d/engine.log" >&2; exit 1; }
  local t0 w0 cpu wcpu
  if [ "$mode" = spin ]; then "$SPINNER" "$SPIN" & spin_pid=$!; sleep 0.2; fi
  t0=$(ticks "$eng_pid"); w0=$(ticks "$eng_pid" cad-archive)
  out=$("$LOAD" -p "$p" -c "$CONNS" -n "$N" -f "$W/oru.hl7")
  if [ -n "$spin_pid" ]; then kill "$spin_pid"; wait "$spin_pid" 2>/dev/null || true; spin_pid=""; fi
  settle "$eng_pid"
  cpu=$(( $(ticks "$eng_pid") - t0 )); wcpu=$(( $(ticks "$eng_pid" cad-archive) - w0 ))
  kill -TERM "$eng_pid"; wait "$eng_pid" || true; eng_pid=""
  dropped=$(grep -o 'event=archive.dropped dropped=[0-9]*' "$d/engine.log" | tail -1 | sed 's/.*=//' || true)
  bytes=0
  [ -d "$d/data/archive" ] && bytes=$(du -sb "$d/data/archive" | cut -f1)
  echo "$mode $r $(field msgs_per_s " $out") $(field p99_ms " $out") ${dropped:-0} $bytes $cpu $wcpu" >> "$RES"
  echo "  archive $mode run $r: $out dropped=${dropped:-0} archive_bytes=$bytes cpu_ticks=$cpu writer_ticks=$wcpu" >&2
  rm -rf "$d/data" "$d/out.hl7"
}

echo "bench_archive (a): $RUNS round(s) of $N messages at $CONNS connections, work dir $W" >&2
for r in $(seq "$RUNS"); do
  echo "  round $r: load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  if [ $((r % 2)) = 1 ]; then run off "$r"; run on "$r"; else run on "$r"; run off "$r"; fi
  if [ -n "$SPIN" ]; then run spin "$r"; fi
done
python3 - "$RES" "$N" "$SPIN" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
n = int(sys.argv[2])
med = lambda m, i: statistics.median(float(r[i]) for r in rows if r[0] == m)
off, on = med("off", 2), med("on", 2)
print("| archive | msgs/s (median) | p99 ms | archive records dropped | archive bytes per message |")
print("| --- | ---: | ---: | ---: | ---: |")
print("| off | %s | %.3f | | |" % (format(round(off), ","), med("off", 3)))
print("| on | %s | %.3f | %d | %.0f |" % (format(round(on), ","), med("on", 3), med("on", 4),
                                        med("on", 5) / n))
print("cost of the archive: %.1f %% of durable throughput" % (100.0 * (off - on) / off))
if sys.argv[3]:
    spin = med("spin", 2)
    print("without the archive, beside bench_spin %s (idle priority, %s %% of a core, no work):"
          " %s msgs/s, %.1f %% less" % (sys.argv[3], sys.argv[3], format(round(spin), ","),
                                        100.0 * (off - spin) / off))
# CPU (clock ticks of 10 ms) per message, less sensitive to what else runs.
tick_us = 1e6 / 100
c_off, c_on, w_on = med("off", 6), med("on", 6), med("on", 7)
print("engine CPU per message: %.1f us without the archive, %.1f us with it (its writer thread: "
      "%.1f us); the archive adds %.0f %% CPU" % (c_off * tick_us / n, c_on * tick_us / n,
                                               w_on * tick_us / n, 100.0 * (c_on - c_off) / c_off))
print("the writer's share of a core while the load ran: %.2f" % (w_on * tick_us / n * 1e-6 * on))
EOF
if [ "${SKIP_API:-0}" != 1 ]; then
  echo "bench_archive (b, c): $MESSAGES messages through the store's API" >&2
  "$API" -n "$MESSAGES" -q "$QUERIES" -d "$W/api"
fi
