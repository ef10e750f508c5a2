#!/usr/bin/env bash
# Property-based API testing with schemathesis against a live server: every operation in
# /openapi.json, all phases, checks not_a_server_error, status_code_conformance,
# response_schema_conformance and negative_data_rejection. Any failure fails the run.
# One worker: with two, schemathesis 4.32 sometimes crashes in its own strategy cache.
# Knobs: ST_MAX_EXAMPLES (default 150), ST_SEED (default 1; "random" for a fresh one).
set -euo pipefail
cd "$(dirname "$0")/.."

ST_VERSION=4.32.5
VENV="${UPDRAFT_ST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/updraft/schemathesis-$ST_VERSION}"
if ! "$VENV/bin/st" --version >/dev/null 2>&1; then
    echo "== installing schemathesis $ST_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

cargo build --quiet ${CI:+--locked} -p updraft-cli
BIN="${CARGO_TARGET_DIR:-target}/debug/updraft"
WORK=$(mktemp -d)
TOKEN="updraft_schemathesis_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cleanup() { [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

UPDRAFT_BOOTSTRAP_TOKEN="$TOKEN" UPDRAFT_ADMIN_RATE_LIMIT=0 UPDRAFT_AUTH_FAILURE_RATE_LIMIT=0 \
    "$BIN" serve --listen 127.0.0.1:0 --data "$WORK/data" >"$WORK/stdout" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 300); do
    URL=$(sed -n 's/^updraft listening on \(http:[^ ]*\).*/\1/p' "$WORK/stdout")
    [ -n "$URL" ] && curl -fsS "$URL/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
[ -n "${URL:-}" ] || { echo "server did not start"; cat "$WORK/server.log"; exit 1; }

# Something real to test against: an app, a published release, an upload in progress.
export UPDRAFT_SERVER="$URL" UPDRAFT_TOKEN="$TOKEN"
"$BIN" app create demo >/dev/null
head -c 100000 /dev/urandom >"$WORK/app.bin"
"$BIN" release publish demo 1.0.0 --channel stable --artifact "linux-x86_64=$WORK/app.bin" --rollout 50 >/dev/null
export UPDRAFT_ST_SHA256=$(sha256sum "$WORK/app.bin" | cut -d' ' -f1)
export UPDRAFT_ST_TARGET="1.0.0/linux-x86_64/$UPDRAFT_ST_SHA256.app.bin"
export UPDRAFT_ST_UPLOAD=$(curl -fsS -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{"size": 1000000}' "$URL/v1/admin/uploads" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

SEED="${ST_SEED:-1}"
SEED_ARGS=()
[ "$SEED" = "random" ] || SEED_ARGS=(--seed "$SEED")
set +e
"$VENV/bin/st" --config-file tests/schemathesis/schemathesis.toml run "$URL/openapi.json" \
    -H "Authorization: Bearer $TOKEN" \
    --checks not_a_server_error,status_code_conformance,response_schema_conformance,negative_data_rejection \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "${ST_MAX_EXAMPLES:-150}" --workers 1 "${SEED_ARGS[@]}" \
    --no-color --output-truncate false --warnings off >"$WORK/st.out" 2>&1
RC=$?
set -e
tail -n 25 "$WORK/st.out"
if [ $RC -ne 0 ]; then
    echo "== schemathesis failed (exit $RC); full output:"
    cat "$WORK/st.out"
    echo "== server log (last 50 lines):"
    tail -n 50 "$WORK/server.log"
    exit $RC
fi
if grep -q '"internal_error"\|panicked' "$WORK/server.log"; then
    echo "== the server logged internal errors or panics during the run:"
    grep -n 'internal error\|panicked' "$WORK/server.log" | head -20
    exit 1
fi
echo "== schemathesis: $(grep -o '[0-9]* generated' "$WORK/st.out" | head -1) test cases, no failures"
