#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for FUZZ_SECONDS each (default 60) and prints, per
# target, the executions and any finding. Usage: scripts/fuzz.sh [TARGET ...]
# Not part of the test command (it takes minutes); findings become regression tests.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo-fuzz passes nightly-only flags; this lets the one stable toolchain here accept them.
export RUSTC_BOOTSTRAP=1
SECS="${FUZZ_SECONDS:-60}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(parse_names tuf_client http_requests envelope)
status=0
for t in "${TARGETS[@]}"; do
    mkdir -p "fuzz/work/$t" "fuzz/corpus/$t"
    echo "== $t for ${SECS}s"
    # New inputs go to fuzz/work (ignored by git); fuzz/corpus holds the committed seeds.
    if cargo fuzz run --sanitizer none "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$SECS" -print_final_stats=1 -rss_limit_mb=4096 >"fuzz/work/$t.log" 2>&1; then
        echo "   $(grep -o 'stat::number_of_executed_units: [0-9]*' "fuzz/work/$t.log" | awk '{print $2}') executions, no findings"
    else
        status=1
        echo "   FINDING: see fuzz/work/$t.log and fuzz/artifacts/$t/"
        grep -E "panicked|ERROR|SUMMARY" "fuzz/work/$t.log" | head -5
    fi
done
exit $status
