#!/usr/bin/env bash
# Perf gate for the update-check path, run by scripts/test.sh. It counts the CPU instructions
# of N update checks with callgrind — a real server and a keep-alive client in one process on
# one thread (crates/updraft-bench/src/gate.rs) — at 10 and at 1,000 releases, and holds them
# with `updraft slo check` to the committed baseline (benches/baseline/perf-gate.json) and to
# the objectives in benches/perf-gate.slo.toml. Instruction counts do not depend on how busy
# the machine is, so the tolerance can be tight without making CI flaky.
#
#   bash scripts/perf-gate.sh                     # check (exit 7 on a regression)
#   bash scripts/perf-gate.sh --update-baseline   # after an intended change: rewrite the baseline
set -euo pipefail
cd "$(dirname "$0")/.."

checks="${PERF_GATE_CHECKS:-2000}"
update=false
[ "${1:-}" = "--update-baseline" ] && update=true

if ! command -v valgrind >/dev/null 2>&1; then
    echo "== installing valgrind"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi

echo "== perf gate: building the workload (release) and the CLI"
cargo build --release --locked -q -p updraft-bench
cargo build --locked -q -p updraft-cli
target="${CARGO_TARGET_DIR:-target}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "== perf gate: $checks update checks at 10 and at 1,000 releases under callgrind"
# A large tcache makes glibc malloc's cost independent of the heap's history (thread timing
# during setup shifts it by a few percent otherwise), so counts repeat to within 0.5%.
GLIBC_TUNABLES=glibc.malloc.tcache_count=65535 \
valgrind --tool=callgrind --toggle-collect='*gate::measured_*' --callgrind-out-file="$work/callgrind.out" \
    "$target/release/updraft-bench" gate --checks "$checks" --few 10 --many 1000 --out "$work/gate.json" \
    2> "$work/valgrind.log" || { cat "$work/valgrind.log" >&2; exit 1; }
callgrind_annotate --inclusive=yes "$work/callgrind.out" > "$work/annotate.txt"
"$target/release/updraft-bench" gate-report --gate "$work/gate.json" --annotate "$work/annotate.txt" --out "$work/results.json"
cat "$work/results.json"

if $update; then
    cp "$work/results.json" benches/baseline/perf-gate.json
    echo "== perf gate: baseline written to benches/baseline/perf-gate.json"
    exit 0
fi
"$target/debug/updraft" slo check --slos benches/perf-gate.slo.toml --results "$work/results.json" \
    --baseline benches/baseline/perf-gate.json
