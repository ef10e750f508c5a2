#!/usr/bin/env bash
# Makes sure SoftHSM2 (the PKCS#11 token the HSM signing tests run against) is installed.
# Idempotent: does nothing when the module and softhsm2-util are present; otherwise installs
# Debian's `softhsm2` (running `apt-get update` only if the package is not known yet).
set -euo pipefail

MODULE=/usr/lib/softhsm/libsofthsm2.so
if [ -e "$MODULE" ] && command -v softhsm2-util >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "SoftHSM2 is missing ($MODULE) and apt-get is not available: install softhsm2 with your package manager" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "== installing softhsm2 (PKCS#11 test token)"
if ! apt-cache show softhsm2 >/dev/null 2>&1; then
    $SUDO apt-get update -qq
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq softhsm2 >/dev/null
if [ ! -e "$MODULE" ]; then
    echo "softhsm2 was installed but $MODULE is missing" >&2
    exit 1
fi
