#!/usr/bin/env bash
# What --on-schema-change evolve costs: a synthetic report of ROWS rows (random order) exported
# by date, then an export of the same rows under another name with one more column
# (--add-column), which rewrites every file of the first report to the merged schema; then the
# same second export into a fresh destination, for comparison. Prints wall time, CPU time and
# peak RSS of each (from /usr/bin/time).
#
#   ROWS=2000000 benches/evolve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${ROWS:-2000000}
cargo build --release --quiet
bin=target/release/kargo-export
work=$(mktemp -d)
"$bin" sandbox --addr 127.0.0.1:0 --synthetic "bench=$rows" --page-size 5000 \
    --synthetic-order random >"$work/sandbox.txt" 2>&1 &
sandbox=$!
trap 'kill $sandbox 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1200); do grep -q listening "$work/sandbox.txt" && break; sleep 0.25; done
base=$(grep -o 'http://[0-9.:]*' "$work/sandbox.txt")
KARGO_USERNAME=$(grep -o 'username "[^"]*"' "$work/sandbox.txt" | cut -d'"' -f2)
KARGO_PASSWORD=$(grep -o 'password "[^"]*"' "$work/sandbox.txt" | cut -d'"' -f2)
export KARGO_USERNAME KARGO_PASSWORD
measure() {
    local label=$1
    shift
    /usr/bin/time -f "$label: %e s wall, %U+%S s CPU, %M KiB peak RSS" "$bin" --api-base "$base" "$@" >/dev/null
}
added=(export url /v1/completed-reports/bench --name extra --add-column source=api --partition-by date)
measure "first export ($rows rows)" export report bench --out "$work/dest" --partition-by date
measure "evolve: export + rewrite of $rows rows" "${added[@]}" --out "$work/dest" --on-schema-change evolve
measure "the same export into a fresh DEST" "${added[@]}" --out "$work/fresh"
