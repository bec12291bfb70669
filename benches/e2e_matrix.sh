#!/usr/bin/env bash
# Runs benches/e2e.sh over the usual report shapes, one after another (the machine should be
# otherwise quiet), and prints one table of their RESULT lines. See benches/README.md.
#
#   benches/e2e_matrix.sh
#
# The runs (ROWS=2000000, PAGE=5000, SEED=42 unless said):
#   1-3. ORDER=random GZIP=1, PARTITION=date, date,country and site_domain
#   4-5. ORDER=sorted GZIP=0, PARTITION=date and date,country   (the friendly shape)
#   6-7. ORDER=random GZIP=1 ROWS=200000 DUCKDB=0, PARTITION=date and date,country (flatness:
#        compare their peak RSS with runs 1 and 2)
#
# Environment: PAGE, SEED, KEEP and TMPDIR are passed on to every run. LOGS=DIR keeps each run's
# whole output in DIR/NN-<shape>.log (default: a temporary folder, removed at the end unless a
# run failed). A failed run is shown as FAIL in the table, the others still run, and the script
# exits 1.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
logs=${LOGS:-}
if [[ -z $logs ]]; then
    logs=$(mktemp -d "${TMPDIR:-/tmp}/kx-matrix.XXXXXX")
    made_logs=1
else
    mkdir -p "$logs"
    made_logs=0
fi

# Each run: "ROWS ORDER GZIP PARTITION DUCKDB".
runs=(
    "2000000 random 1 date 1"
    "2000000 random 1 date,country 1"
    "2000000 random 1 site_domain 1"
    "2000000 sorted 0 date 1"
    "2000000 sorted 0 date,country 1"
    "200000 random 1 date 0"
    "200000 random 1 date,country 0"
)

results=()
failed=0
n=0
for run in "${runs[@]}"; do
    read -r rows order gzip partition duckdb <<<"$run"
    n=$((n + 1))
    log="$logs/$(printf '%02d' "$n")-$rows-$order-gzip$gzip-${partition//,/+}.log"
    printf '==> [%d/%d] ROWS=%s ORDER=%s GZIP=%s PARTITION=%s DUCKDB=%s (log: %s)\n' \
        "$n" "${#runs[@]}" "$rows" "$order" "$gzip" "$partition" "$duckdb" "$log" >&2
    if ROWS=$rows ORDER=$order GZIP=$gzip PARTITION=$partition DUCKDB=$duckdb \
        "$here/e2e.sh" >"$log" 2>&1; then
        line=$(grep '^RESULT ' "$log" | tail -n 1)
        sed -n '/^=== e2e:/,$p' "$log" | grep -v '^RESULT ' >&2
    else
        failed=1
        line="RESULT rows=$rows order=$order gzip=$gzip partition=$partition FAIL=1"
        tail -n 5 "$log" >&2
    fi
    results+=("$line")
done

# One row per run: the shape, then kargo-export's and DuckDB's figures (MB = 10^6 bytes).
echo
echo "=== e2e matrix: $(nproc) cores, PAGE=${PAGE:-5000}, SEED=${SEED:-42}"
printf '%s\n' "${results[@]}" | awk '
    function get(key) { return (key in v) ? v[key] : "-" }
    function num(key, scale, fmt) { return (key in v) ? sprintf(fmt, v[key] / scale) : "-" }
    function ratio(a, b) { return ((a in v) && (b in v) && v[b] > 0) ? sprintf("%.2f", v[a] / v[b]) : "-" }
    BEGIN {
        printf "%-8s %-7s %-4s %-12s | %8s %8s %8s %6s %7s %6s | %8s %8s %8s %6s %7s | %6s %6s %6s\n",
            "rows", "order", "gzip", "partition",
            "kx wall", "kx cpu", "kx MiB", "files", "MB", "parts",
            "dk wall", "dk cpu", "dk MiB", "files", "MB",
            "wall", "cpu", "rss"
        printf "%-8s %-7s %-4s %-12s | %8s %8s %8s %6s %7s %6s | %8s %8s %8s %6s %7s | %6s %6s %6s\n",
            "", "", "", "", "s", "s", "RSS", "", "Parquet", "",
            "s", "s", "RSS", "", "Parquet", "kx/dk", "kx/dk", "kx/dk"
    }
    {
        delete v
        for (i = 2; i <= NF; i++) { at = index($i, "="); v[substr($i, 1, at - 1)] = substr($i, at + 1) }
        if ("FAIL" in v) {
            printf "%-8s %-7s %-4s %-12s | FAIL (see the log)\n", get("rows"), get("order"), get("gzip"), get("partition")
            next
        }
        printf "%-8s %-7s %-4s %-12s | %8s %8s %8s %6s %7s %6s | %8s %8s %8s %6s %7s | %6s %6s %6s\n",
            get("rows"), get("order"), get("gzip"), get("partition"),
            get("kx_wall_s"), get("kx_cpu_s"), get("kx_rss_mib"), get("kx_files"),
            num("kx_bytes", 1e6, "%.1f"), get("kx_partitions"),
            get("duckdb_wall_s"), get("duckdb_cpu_s"), get("duckdb_rss_mib"), get("duckdb_files"),
            num("duckdb_bytes", 1e6, "%.1f"),
            ratio("kx_wall_s", "duckdb_wall_s"), ratio("kx_cpu_s", "duckdb_cpu_s"),
            ratio("kx_rss_mib", "duckdb_rss_mib")
    }'
echo
printf '%s\n' "${results[@]}"

if ((failed)); then
    echo "e2e_matrix: some runs failed; their logs are in $logs" >&2
    exit 1
fi
if ((made_logs)); then
    rm -rf "$logs"
fi
