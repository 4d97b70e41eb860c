#!/usr/bin/env bash
# tests/run.sh - the whole test suite, as CI runs it (.ci/run calls exactly this).
#  1. installs missing dependencies (packaging/install-deps.sh; idempotent);
#  2. builds with -Werror and ASan+UBSan and runs every ctest test (unit, fuzz
#     corpus replay, integration) - the real vectors of ../shared/testdata are
#     read in place and skipped with a message when absent;
#  3. runs the unit tests once more under valgrind on a plain build;
#  4. builds the libFuzzer targets with clang and runs each for a short smoke
#     (TDXR_FUZZ_SECONDS, default 20). Long fuzzing runs are in docs/testing.md.
# Build trees live under build-test/ (git-ignored). Timing is never asserted.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=${TDXR_JOBS:-2}
fuzz_seconds=${TDXR_FUZZ_SECONDS:-20}
export TDXR_SHARED_TESTDATA=${TDXR_SHARED_TESTDATA:-$(cd "$root/.." && pwd)/shared/testdata}

step() { printf '\n=== %s\n' "$*"; }

step "dependencies"
packaging/install-deps.sh

step "sanitized build (ASan+UBSan, -Werror) and ctest"
cmake -S . -B build-test/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTDXR_WERROR=ON -DTDXR_SANITIZE=ON \
  -DTDXR_SHARED_TESTDATA="$TDXR_SHARED_TESTDATA" >/dev/null
cmake --build build-test/asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-test/asan --output-on-failure -j "$jobs"

step "valgrind (unit tests, plain build)"
cmake -S . -B build-test/plain -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTDXR_WERROR=ON \
  -DTDXR_SHARED_TESTDATA="$TDXR_SHARED_TESTDATA" >/dev/null
cmake --build build-test/plain -j "$jobs"
for t in build-test/plain/tests/test_*; do
  [ -x "$t" ] || continue
  log=$(mktemp)
  if ! TDXR_MUTATION_STRIDE=32 valgrind -q --error-exitcode=97 --leak-check=full --errors-for-leak-kinds=definite \
      --show-leak-kinds=definite "$t" >"$log" 2>&1; then
    tail -60 "$log"; echo "valgrind: $(basename "$t") failed"; exit 1
  fi
  printf '%-16s clean\n' "$(basename "$t")"
  rm -f "$log"
done
echo "valgrind: clean"

step "libFuzzer smoke (${fuzz_seconds}s per target)"
cmake -S . -B build-test/fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTDXR_FUZZ=ON \
  >/dev/null
cmake --build build-test/fuzz -j "$jobs"
for f in build-test/fuzz/tests/fuzz/fuzz_*; do
  [ -x "$f" ] || continue
  name=$(basename "$f")
  work=$(mktemp -d)
  extra=()  # real vectors as read-only seed corpora (libFuzzer writes only to $work)
  case $name in
    fuzz_quote) extra=(tdx/dcap-qvl tdx/go-tdx-guest tdx/dstack crabbox) ;;
    fuzz_collateral) extra=(tdx/dcap-qvl tdx/bundles) ;;
    fuzz_eventlog|fuzz_evidence) extra=(tdx/dstack crabbox) ;;
    fuzz_gitlab_job) extra=(ci/gitlab) ;;
    fuzz_webhook) extra=(ci/github) ;;
  esac
  seeds=()
  for d in "${extra[@]}"; do [ -d "$TDXR_SHARED_TESTDATA/$d" ] && seeds+=("$TDXR_SHARED_TESTDATA/$d"); done
  "$f" -max_total_time="$fuzz_seconds" -print_final_stats=1 "$work" "tests/fuzz/corpus/$name" ${seeds[@]+"${seeds[@]}"} 2>"$work.log" \
    || { tail -40 "$work.log"; echo "fuzz smoke: $name crashed"; exit 1; }
  printf '%-22s %s executions, no crash\n' "$name" "$(grep -o 'number_of_executed_units: [0-9]*' "$work.log" | grep -o '[0-9]*$')"
  rm -rf "$work" "$work.log"
done
step "all tests passed"
