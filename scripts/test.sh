#!/usr/bin/env bash
# The whole test suite: unit, property and end-to-end tests (real `updraft` servers on random
# loopback ports, real SQLite and PostgreSQL, real files and S3). This is the command the README gives and CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-packages.sh  # real peers: a SoftHSM2 PKCS#11 token, the age CLI
# PostgreSQL on 127.0.0.1:5432 and an S3-compatible server (moto), or a loud failure: the
# PostgreSQL + S3 tests never skip themselves.
. scripts/services.sh

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Property tests: a fixed, moderate case count keeps the run repeatable in time.
export PROPTEST_CASES="${PROPTEST_CASES:-256}"

# Formatting and lints need the rustfmt and clippy components (in rustup's default profile).
# CI always has them; elsewhere a missing component is reported and skipped.
if cargo fmt --version >/dev/null 2>&1; then
    echo "== cargo fmt --check"
    cargo fmt --all -- --check
elif [ "${CI:-}" = "true" ]; then
    echo "rustfmt is missing" >&2; exit 1
else
    echo "== skipping formatting check: rustfmt is not installed (rustup component add rustfmt)"
fi
if cargo clippy --version >/dev/null 2>&1; then
    echo "== cargo clippy"
    cargo clippy --workspace --all-targets --locked -- -D warnings
elif [ "${CI:-}" = "true" ]; then
    echo "clippy is missing" >&2; exit 1
else
    echo "== skipping lints: clippy is not installed (rustup component add clippy)"
fi

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    echo "== end-to-end suite again, on PostgreSQL + S3 (a database and a bucket per server)"
    UPDRAFT_E2E_BACKEND=postgres-s3 cargo nextest run -p updraft-cli --test e2e --locked --no-fail-fast
    # nextest does not run doctests
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast
    echo "== end-to-end suite again, on PostgreSQL + S3 (a database and a bucket per server)"
    UPDRAFT_E2E_BACKEND=postgres-s3 cargo test -p updraft-cli --test e2e --locked --no-fail-fast
fi

echo "== schemathesis (property-based API testing against a live server)"
bash scripts/schemathesis.sh

echo "== perf gate (instructions and allocations per update check under callgrind vs benches/baseline)"
bash scripts/perf-gate.sh
