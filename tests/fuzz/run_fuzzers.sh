#!/usr/bin/env bash
# run_fuzzers.sh BUILD_DIR SECONDS - bounded libFuzzer runs of every target.
#
# Called by `./dev.sh test` after it builds BUILD_DIR with -Dfuzzing=true.
# For each BUILD_DIR/tests/fuzz/fuzz_<name>: copy the seeds of
# tests/fuzz/corpus/<name>/ (plus, for hl7 and stream targets, the shared
# corpus when it exists) into a temporary working corpus, run the target for
# SECONDS, and write any crash artifact to tests/fuzz/findings/<name>/.
# Prints one line per target; exits non-zero if any target failed.
# Environment: CAD_CORPUS (shared corpus, default ../shared/corpus),
# FUZZ_JOBS (targets run at once, default 2: one per core here).
set -uo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build=$1
secs=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=${CAD_CORPUS:-$root/../shared/corpus}
findings=$here/findings
fuzzdir=$build/tests/fuzz

if [ ! -d "$fuzzdir" ]; then
  echo "run_fuzzers: $fuzzdir does not exist (build with -Dfuzzing=true)" >&2
  exit 2
fi

# An UndefinedBehaviorSanitizer report is a finding like a crash.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

work=$(mktemp -d "${TMPDIR:-/tmp}/cad-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

njobs=${FUZZ_JOBS:-2}

# One target: its result line in $work/<name>.result, its status in .rc.
run_one() {
  local exe=$1 name=${1##*/fuzz_}
  local corpus=$work/$name seeds before after log rc runs cov
  local args=()
  mkdir -p "$corpus" "$findings/$name"
  seeds=$here/corpus/$name
  [ -d "$seeds" ] && cp -r "$seeds"/. "$corpus"/ 2>/dev/null
  case $name in
    hl7*|stream*|fhir*)
      if [ -d "$shared" ]; then
        # top level and the message subdirectories, one file each
        for sub in "" malformed streams mllp; do
          [ -d "$shared/$sub" ] || continue
          find "$shared/$sub" -maxdepth 1 -type f ! -name '*.md' ! -name '*.tsv' \
            -exec cp {} "$corpus"/ \; 2>/dev/null
        done
      fi
      [ -f "$here/hl7.dict" ] && args+=("-dict=$here/hl7.dict")
      ;;
  esac
  before=$(ls "$findings/$name" | wc -l)
  log=$work/$name.log
  "$exe" "$corpus" "${args[@]}" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$findings/$name/" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  after=$(ls "$findings/$name" | wc -l)
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  if [ $rc -ne 0 ] || [ "$after" -gt "$before" ]; then
    echo 1 >"$work/$name.rc"
    {
      echo "fuzz_$name: FAILED (exit $rc, ${runs:-?} runs, $((after - before)) new artifacts in tests/fuzz/findings/$name/)"
      grep -m1 -E 'ERROR: |fuzz_[a-z0-9]*: |SUMMARY' "$log" | sed 's/^/    /'
    } >"$work/$name.result"
  else
    echo 0 >"$work/$name.rc"
    echo "fuzz_$name: ok (${secs}s, ${runs:-?} runs, cov ${cov:-?})" >"$work/$name.result"
  fi
  rmdir "$findings/$name" 2>/dev/null
}

names=()
for exe in "$fuzzdir"/fuzz_*; do
  [ -f "$exe" ] && [ -x "$exe" ] || continue
  names+=("${exe##*/fuzz_}")
  while [ "$(jobs -rp | wc -l)" -ge "$njobs" ]; do wait -n; done
  run_one "$exe" &
done
wait
status=0
for name in "${names[@]}"; do
  cat "$work/$name.result" 2>/dev/null || echo "fuzz_$name: FAILED (no result)"
  [ "$(cat "$work/$name.rc" 2>/dev/null)" = 0 ] || status=1
done
rmdir "$findings" 2>/dev/null
exit $status
