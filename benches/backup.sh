#!/usr/bin/env bash
# Backup and restore throughput against a reference measured in the same run: `tar | age`
# (Debian's reference age CLI) over the same data directory. Not part of the test command.
#
#   bash benches/backup.sh                 # 1 GiB of artifacts, 3 rounds (about 4 minutes)
#   MIB=256 ROUNDS=1 bash benches/backup.sh
#
# Reports the median wall time of each step, its ratio to the reference, and peak RSS (which
# shows no blob is held whole in memory). Writes benches/results/backup.json.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB="${MIB:-1024}"
ROUNDS="${ROUNDS:-3}"
bash scripts/ensure-packages.sh
echo "== building the release binary"
cargo build --release --locked -q -p updraft-cli
BIN="$(pwd)/${CARGO_TARGET_DIR:-target}/release/updraft"
WORK=$(mktemp -d)
cleanup() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

TOKEN="updraft_bench_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
UPDRAFT_BOOTSTRAP_TOKEN="$TOKEN" "$BIN" serve --listen 127.0.0.1:0 --data "$WORK/data" >"$WORK/out" 2>"$WORK/log" &
PID=$!
for _ in $(seq 1 300); do
    URL=$(sed -n 's/^updraft listening on \(http:[^ ]*\).*/\1/p' "$WORK/out")
    [ -n "$URL" ] && break
    sleep 0.1
done
export UPDRAFT_SERVER="$URL" UPDRAFT_TOKEN="$TOKEN"
"$BIN" app create bench >/dev/null
echo "== publishing $MIB MiB in 8 artifacts"
per=$((MIB / 8))
for i in $(seq 1 8); do
    head -c $((per * 1024 * 1024)) /dev/urandom >"$WORK/a.bin"
    "$BIN" release publish bench "1.0.$i" --channel stable --artifact "linux-x86_64=$WORK/a.bin" >/dev/null
done
rm -f "$WORK/a.bin"
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""

"$BIN" backup keygen --out "$WORK/key" >"$WORK/recipient" 2>/dev/null
R=$(cat "$WORK/recipient")

# One timed run: prints "seconds peak_rss_kib".
timed() { /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err"; exit 1; }; cat "$WORK/time"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A T M
for step in ref_create create verify ref_restore restore; do : >"$WORK/$step.t"; : >"$WORK/$step.m"; done
for round in $(seq 1 "$ROUNDS"); do
    rm -rf "$WORK/ref.age" "$WORK/b.age" "$WORK/r1" "$WORK/r2"
    sync
    read -r s m < <(timed bash -c "tar -C '$WORK/data' -cf - updraft.db keys blobs/sha256 | age -r '$R' > '$WORK/ref.age'")
    echo "$s" >>"$WORK/ref_create.t"; echo "$m" >>"$WORK/ref_create.m"
    read -r s m < <(timed "$BIN" backup create --data "$WORK/data" --to "$WORK/b.age" --recipient "$R" --with-blobs --json)
    echo "$s" >>"$WORK/create.t"; echo "$m" >>"$WORK/create.m"
    read -r s m < <(timed "$BIN" backup verify --from "$WORK/b.age" --identity "$WORK/key" --json)
    echo "$s" >>"$WORK/verify.t"; echo "$m" >>"$WORK/verify.m"
    mkdir -p "$WORK/r1"
    read -r s m < <(timed bash -c "age -d -i '$WORK/key' '$WORK/ref.age' | tar -C '$WORK/r1' -xf - && sync")
    echo "$s" >>"$WORK/ref_restore.t"; echo "$m" >>"$WORK/ref_restore.m"
    read -r s m < <(timed bash -c "'$BIN' backup restore --from '$WORK/b.age' --identity '$WORK/key' --data '$WORK/r2' --json && sync")
    echo "$s" >>"$WORK/restore.t"; echo "$m" >>"$WORK/restore.m"
done
for step in ref_create create verify ref_restore restore; do
    T[$step]=$(median <"$WORK/$step.t")
    M[$step]=$(median <"$WORK/$step.m")
done
size=$(stat -c %s "$WORK/b.age")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
printf '%-12s %10s %10s %14s\n' step seconds vs_ref peak_rss_MiB
for step in ref_create create verify ref_restore restore; do
    ref=${T[ref_create]}
    case $step in ref_restore | restore) ref=${T[ref_restore]} ;; esac
    printf '%-12s %10s %10s %14s\n' "$step" "${T[$step]}" "$(ratio "${T[$step]}" "$ref")" "$((M[$step] / 1024))"
done
mkdir -p benches/results
cat >benches/results/backup.json <<JSON
{"mib": $MIB, "rounds": $ROUNDS, "archive_bytes": $size,
 "median_seconds": {"ref_create": ${T[ref_create]}, "create": ${T[create]}, "verify": ${T[verify]}, "ref_restore": ${T[ref_restore]}, "restore": ${T[restore]}},
 "peak_rss_kib": {"ref_create": ${M[ref_create]}, "create": ${M[create]}, "verify": ${M[verify]}, "ref_restore": ${M[ref_restore]}, "restore": ${M[restore]}}}
JSON
echo "written benches/results/backup.json (archive: $((size / 1024 / 1024)) MiB)"
