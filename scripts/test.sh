#!/usr/bin/env bash
# The whole test suite: unit, property and end-to-end tests (real `updraft` servers on random
# loopback ports, real SQLite, real files). This is the command the README gives and CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Property tests: a fixed, moderate case count keeps the run repeatable in time.
export PROPTEST_CASES="${PROPTEST_CASES:-256}"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    # nextest does not run doctests
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast
fi
