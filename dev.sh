#!/usr/bin/env bash
# dev.sh - the two commands of README, and the pieces they are made of.
#
#   ./dev.sh run [CONFIG]   install what is missing, build, start the engine
#                           (default examples/quickstart.yaml)
#   ./dev.sh test           install what is missing, build, run every test:
#                           unit + integration + fuzz replay (normal build),
#                           the same under ASan+UBSan, and bounded libFuzzer runs
#   ./dev.sh deps           only install the system packages
#   ./dev.sh build [DIR]    only build (default build/)
#   ./dev.sh format         clang-format (.clang-format) every C file in place
#
# Environment: FUZZ_SECONDS (per fuzz target, default 30), CAD_SKIP_FUZZ=1,
# CAD_SKIP_ASAN=1 (both for quick local runs; CI runs everything).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)

PKGS=(meson ninja-build pkg-config gcc libc6-dev libuv1-dev libyaml-dev libssl-dev zlib1g-dev
      libsqlite3-dev clang libclang-rt-14-dev python3 python3-hl7 openssl nodejs
      libh2o-dev libjansson-dev curl prometheus
      libssh-dev openssh-server openssh-client librdkafka-dev kcat libpq-dev postgresql
      libcurl4-openssl-dev)
PKGS+=(chromium chromium-driver) # the console test (ops)

need_pkgs() {
  local missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # npm ships inside some nodejs builds; Debian's nodejs needs the npm package.
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "dev.sh: installing ${missing[*]}" >&2
    if [ "$(id -u)" != 0 ]; then
      echo "dev.sh: not root; install these packages first: ${missing[*]}" >&2
      exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

build() {
  local dir=${1:-build}; shift || true
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" -Dwerror=true "$@" >/dev/null
  fi
  ninja -C "$dir" >/dev/null
}

node_clients() {
  # npm's node-hl7-client, a real third-party MLLP client for the integration tests.
  if [ -f tests/integration/package.json ]; then
    (cd tests/integration && npm ci --silent --no-audit --no-fund >/dev/null 2>&1) ||
      echo "dev.sh: npm ci failed; the node client test will report it" >&2
  fi
}

summarise() {
  # One closing line over every test log: "N passed, N failed".
  python3 - "$@" <<'PY'
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                res = r.get("result")
                if res in ("OK", "EXPECTEDFAIL"): passed += 1
                elif res == "SKIP": skipped += 1
                else: failed += 1
    except FileNotFoundError:
        pass
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
}

cmd=${1:-help}
case "$cmd" in
  deps) need_pkgs ;;
  format)
    PKGS=(clang-format); need_pkgs
    git ls-files '*.c' '*.h' | xargs clang-format -i ;;
  build) need_pkgs; shift; build "${1:-build}" ;;
  run)
    need_pkgs
    build build
    shift
    conf=${1:-examples/quickstart.yaml}
    mkdir -p var/out var/data
    exec build/engine/caduceus run "$conf"
    ;;
  test)
    need_pkgs
    node_clients
    status=0
    logs=()
    echo "== build (gcc, -Wall -Wextra -Werror)"
    build build
    echo "== tests (normal build)"
    meson test -C build --print-errorlogs --num-processes 2 || status=1
    logs+=(build/meson-logs/testlog.json)
    if [ -z "${CAD_SKIP_ASAN:-}" ]; then
      echo "== build and tests under AddressSanitizer + UndefinedBehaviorSanitizer"
      build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
      meson test -C build-asan --print-errorlogs --num-processes 2 --timeout-multiplier 3 || status=1
      logs+=(build-asan/meson-logs/testlog.json)
    fi
    if [ -z "${CAD_SKIP_FUZZ:-}" ]; then
      echo "== libFuzzer runs (${FUZZ_SECONDS:-30}s each)"
      CC=clang build build-fuzz -Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false
      tests/fuzz/run_fuzzers.sh build-fuzz "${FUZZ_SECONDS:-30}" || status=1
    fi
    summarise "${logs[@]}"
    exit $status
    ;;
  *)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    [ "$cmd" = help ] || exit 2
    ;;
esac
