#!/bin/sh
# bench/replay.sh - `caduceus replay` at scale: gzip read throughput, replay
# throughput as fast as the ACKs allow against bench/mllp_sink, the rate
# held over a 1,000,000-message archive, and peak RSS (flat memory).
#
#   bench/replay.sh [BUILD_DIR] [WORK_DIR]
#   N=1000000 RATE=5000 CONNS=4 bench/replay.sh build /tmp/cad-replay-bench
#
# bench/mllp_sink answers every frame with one fixed ACK whose MSA-2 is "0",
# and replay checks that MSA-2 names the message sent (as a destination
# does), so the generated messages all carry MSH-10 = 0.  Everything runs
# on 127.0.0.1.  Takes about N/RATE seconds plus a minute.
set -eu
BUILD=${1:-build}
WORK=${2:-/tmp/cad-replay-bench}
N=${N:-1000000}
RATE=${RATE:-5000}
CONNS=${CONNS:-4}
CAD=$BUILD/engine/caduceus
SINK=$BUILD/bench/mllp_sink
mkdir -p "$WORK"

if [ ! -s "$WORK/archive.hl7.gz" ] || [ "$(cat "$WORK/archive.n" 2>/dev/null)" != "$N" ]; then
  echo "generating $N messages..."
  python3 - "$WORK/archive.hl7" "$N" <<'EOF'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w", newline="") as f:
    for i in range(n):
        t = "202601%02d%02d%02d%02d" % (1 + i // 86400 % 28, i // 3600 % 24, i // 60 % 60, i % 60)
        f.write("MSH|^~\\&|LAB|NORTH|EHR|SOUTH|%s||ORU^R01^ORU_R01|0|P|2.5.1\r"
                "PID|1||%d^^^HOSP^MR||DOE^JANE^Q||19700101|F\r"
                "OBR|1|%d|%d|GLU^Glucose|||%s\r"
                "OBX|1|NM|GLU^Glucose||%d|mg/dL|70-110|N|||F\r"
                "OBX|2|NM|NA^Sodium||%d|mmol/L|135-145|N|||F\n"
                % (t, 100000 + i, i, i, t, 80 + i % 40, 130 + i % 15))
EOF
  gzip -1 -c "$WORK/archive.hl7" > "$WORK/archive.hl7.gz"
  echo "$N" > "$WORK/archive.n"
fi
PLAIN=$(stat -c %s "$WORK/archive.hl7")
GZ=$(stat -c %s "$WORK/archive.hl7.gz")
echo "archive: $N messages, $PLAIN bytes plain, $GZ bytes gzip"

# 1. read throughput: every message read and its header looked at, none
#    selected (--type matches nothing), so nothing is sent.
for f in archive.hl7.gz archive.hl7; do
  t0=$(date +%s.%N)
  "$CAD" replay --quiet --to 127.0.0.1:9 --type NONE "$WORK/$f" > "$WORK/read.out" || true
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" -v p="$PLAIN" -v f="$f" \
    'BEGIN { printf "read %s: %.2f s, %.0f MB/s of decompressed input\n", f, b - a, p / (b - a) / 1e6 }'
done

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$SINK" -h 127.0.0.1 -p "$PORT" &
SINK_PID=$!
trap 'kill $SINK_PID 2>/dev/null || true' EXIT INT TERM
sleep 0.3

run() { # label, args...
  label=$1
  shift
  /usr/bin/time -v "$CAD" replay --quiet --to "127.0.0.1:$PORT" "$@" > "$WORK/run.out" 2> "$WORK/run.err"
  rss=$(awk '/Maximum resident set size/ { print $6 }' "$WORK/run.err")
  sed -n 's/^replay: .* finished: \(.*\)$/\1/p' "$WORK/run.out" | head -1 |
    awk -v l="$label" -v r="$rss" '{ print l ": " $0 "; peak RSS " r " KiB" }'
}

# 2. as fast as the ACKs allow
run "fast, 1 connection, 100k" --limit 100000 "$WORK/archive.hl7.gz"
run "fast, $CONNS connections, 100k" --connections "$CONNS" --limit 100000 "$WORK/archive.hl7.gz"
run "fast, $CONNS connections, all $N" --connections "$CONNS" "$WORK/archive.hl7.gz"

# 3. a fixed rate over the whole archive: measured rate vs --rate, and RSS
#    compared with a run of 10,000 messages (memory does not grow)
run "rate $RATE/s, 10k" --rate "$RATE/s" --limit 10000 "$WORK/archive.hl7.gz"
run "rate $RATE/s, all $N" --rate "$RATE/s" "$WORK/archive.hl7.gz"
