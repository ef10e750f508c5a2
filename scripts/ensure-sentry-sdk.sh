#!/usr/bin/env bash
# Makes sure a Python venv with the pinned Sentry SDK (and brotli, so the SDK can compress with
# br) exists, for the ingest tests that drive Updraft with the real SDK. Idempotent; prints the
# venv's python on its last line.
set -euo pipefail
SENTRY_VERSION=2.75.0
BROTLI_VERSION=1.1.0
VENV="${UPDRAFT_SENTRY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/updraft/sentry-sdk-$SENTRY_VERSION}"
if ! "$VENV/bin/python" -c "import sentry_sdk, brotli" >/dev/null 2>&1; then
    echo "== installing sentry-sdk $SENTRY_VERSION into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "sentry-sdk==$SENTRY_VERSION" "brotli==$BROTLI_VERSION" >&2
fi
echo "$VENV/bin/python"
