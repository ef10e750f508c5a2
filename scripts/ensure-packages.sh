#!/usr/bin/env bash
# Makes sure the Debian packages the tests drive as real peers are installed:
#   softhsm2  the PKCS#11 token the HSM signing tests run against
#   age       the reference age CLI, which must open Updraft's backups (and make keys for them)
# Idempotent: does nothing when every tool is present; otherwise installs what is missing in one
# apt-get call (running `apt-get update` only if a package is not known yet).
set -euo pipefail

missing=()
if [ ! -e /usr/lib/softhsm/libsofthsm2.so ] || ! command -v softhsm2-util >/dev/null 2>&1; then
    missing+=(softhsm2)
fi
if ! command -v age >/dev/null 2>&1 || ! command -v age-keygen >/dev/null 2>&1; then
    missing+=(age)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing test tools (${missing[*]}) and apt-get is not available: install them with your package manager" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "== installing ${missing[*]} (test peers)"
for p in "${missing[@]}"; do
    if ! apt-cache show "$p" >/dev/null 2>&1; then
        $SUDO apt-get update -qq
        break
    fi
done
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
if [ ! -e /usr/lib/softhsm/libsofthsm2.so ] || ! command -v age >/dev/null 2>&1; then
    echo "installed ${missing[*]}, but a tool is still missing" >&2
    exit 1
fi
