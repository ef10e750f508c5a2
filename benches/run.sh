#!/usr/bin/env bash
# The benchmark suite (not part of the test command): Updraft against nginx serving the same
# bytes, a bare axum "hello world", and sha256sum, on loopback, in one run. Installs nginx and
# wrk from Debian packages when missing, builds release binaries, runs
# crates/updraft-bench (see docs/benchmarks.md), writes benches/results/latest.json, and
# checks it against the issue's targets with `updraft slo check` (reported, not fatal).
#
#   bash benches/run.sh                      # the full suite (about 12 minutes on 2 cores)
#   bash benches/run.sh --rounds 1 --seconds 2 --releases 10,100 --blob-mib 32 --upload-mib 64   # a smoke run
#
# Every extra argument goes to `updraft-bench run` (see `updraft-bench run --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "the suite pins servers and load generators to different cores; this machine has one" >&2
    exit 1
fi

echo "== building release binaries"
cargo build --release --locked -q -p updraft-cli -p updraft-bench
target="${CARGO_TARGET_DIR:-target}/release"

out="${BENCH_OUT:-benches/results/latest.json}"
"$target/updraft-bench" run --updraft "$target/updraft" --out "$out" "$@"

echo
echo "== targets (benches/targets.slo.toml)"
"$target/updraft" slo check --slos benches/targets.slo.toml --results "$out" || true
