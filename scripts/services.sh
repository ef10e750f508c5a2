#!/usr/bin/env bash
# Makes the services the PostgreSQL + S3 tests need reachable, or fails loudly (no test skips
# itself for want of them):
#   - PostgreSQL on 127.0.0.1:5432, user postgres (installed from Debian's packages and started
#     when it is not running already); tests create a fresh database per run or per server;
#   - an S3-compatible server: moto (pinned, from PyPI, in a cached virtualenv under
#     ~/.cache/updraft/) on a free loopback port, started in the background.
# Source it (`. scripts/services.sh`): it exports UPDRAFT_TEST_POSTGRES and UPDRAFT_TEST_S3
# (the endpoint URL) and registers a trap that stops the S3 server when the shell exits.
set -euo pipefail

MOTO_VERSION=5.1.22
PG_URL="postgres://postgres@127.0.0.1:5432/postgres"

ensure_postgres() {
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        return
    fi
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        echo "== installing PostgreSQL from Debian's packages"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq postgresql >/dev/null
    fi
    local cluster
    cluster=$(pg_lsclusters -h | awk 'NR==1 {print $1" "$2}')
    if [ -z "$cluster" ]; then
        echo "no PostgreSQL cluster found after installing" >&2
        return 1
    fi
    # Tests connect over TCP as postgres without a password: trust on loopback only.
    local hba
    hba="/etc/postgresql/${cluster% *}/${cluster#* }/pg_hba.conf"
    if ! grep -q "updraft-tests" "$hba"; then
        sed -i '1i host all all 127.0.0.1/32 trust # updraft-tests' "$hba"
    fi
    pg_ctlcluster ${cluster} start || pg_ctlcluster ${cluster} reload || true
    for _ in $(seq 1 50); do
        pg_isready -q -h 127.0.0.1 -p 5432 && return
        sleep 0.2
    done
    echo "PostgreSQL did not become reachable on 127.0.0.1:5432" >&2
    return 1
}

ensure_moto() {
    local venv="$HOME/.cache/updraft/moto-$MOTO_VERSION"
    if [ ! -x "$venv/bin/moto_server" ]; then
        echo "== installing moto[server]==$MOTO_VERSION into $venv"
        mkdir -p "$(dirname "$venv")"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q "moto[server]==$MOTO_VERSION"
    fi
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local log="${TMPDIR:-/tmp}/updraft-moto-$port.log"
    "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    UPDRAFT_MOTO_PID=$!
    export UPDRAFT_MOTO_PID
    for _ in $(seq 1 100); do
        if curl -fsS "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1; then
            export UPDRAFT_TEST_S3="http://127.0.0.1:$port"
            return
        fi
        if ! kill -0 "$UPDRAFT_MOTO_PID" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "the S3-compatible test server (moto) did not start; its log:" >&2
    cat "$log" >&2
    return 1
}

stop_services() {
    if [ -n "${UPDRAFT_MOTO_PID:-}" ]; then
        kill "$UPDRAFT_MOTO_PID" 2>/dev/null || true
    fi
}

ensure_postgres
psql -q -d "$PG_URL" -c "SELECT 1" >/dev/null || { echo "cannot log in to PostgreSQL as postgres on 127.0.0.1" >&2; exit 1; }
export UPDRAFT_TEST_POSTGRES="$PG_URL"
# Databases earlier test runs made (each test makes its own): dropped unless still in use.
for db in $(psql -At -d "$PG_URL" -c "SELECT datname FROM pg_database WHERE datname LIKE 'updraft\_e2e\_%' OR datname LIKE 'updraft\_unit\_%'"); do
    psql -q -d "$PG_URL" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
done
ensure_moto
trap stop_services EXIT
echo "== services: PostgreSQL at 127.0.0.1:5432, S3 (moto $MOTO_VERSION) at $UPDRAFT_TEST_S3"
