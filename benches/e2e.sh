#!/usr/bin/env bash
# End-to-end benchmark: kargo-export against DuckDB on the same JSON pages, both writing the
# same Hive-partitioned, zstd-compressed Parquet dataset. See benches/README.md.
#
#   benches/e2e.sh [ROWS [PAGE [SEED]]]
#
# Environment (positional arguments win):
#   ROWS=2000000     rows of the synthetic report (~490 bytes of JSON each); ROWS=200000 for the
#                    flatness (memory) run
#   PAGE=5000        rows per page (the sandbox's --page-size); PAGE=1000000 for huge pages
#   SEED=42          generator seed: the same seed and ORDER serve the same bytes
#   ORDER=random     row order of the report (the sandbox's --synthetic-order): random (each row's
#                    day drawn at random, so every page holds rows of almost every day, as a report
#                    sorted by campaign) or sorted (rows grouped by day, in order)
#   GZIP=1           the sandbox answers gzip (--gzip) and kargo-export asks for it, as a real API
#                    would; GZIP=0 serves identity JSON. Pages are pre-compressed at start-up.
#   PARTITION=date   the Hive partition columns, COL[,COL...] (kargo-export --partition-by, DuckDB
#                    PARTITION_BY): date (30 partitions), date,country (~1,230) or site_domain
#                    (~5,000)
#   TABLE_FORMAT=hive  kargo-export --table-format: hive, or delta (the same files committed to a
#                    Delta table: the same Parquet files, plus `_delta_log/`)
#   SLOW=MB/s        kargo-export reads through benches/slow_proxy.py, which passes the answers on
#                    at this many MB a second on the wire (e.g. SLOW=4 with GZIP=1 is ~35,000 rows
#                    a second): a slow server. DuckDB still reads local files.
#   DUCKDB=0         only run kargo-export (e.g. for the memory check below)
#   KEEP=1           keep the work folder (pages, both outputs, logs) instead of removing it
#   TMPDIR           where the work folder is made (needs ~3x the JSON size free)
#
# Memory check (peak RSS must not grow with the report): compare the kargo-export peak RSS of
#   ROWS=200000 DUCKDB=0 benches/e2e.sh      and      DUCKDB=0 benches/e2e.sh
# benches/e2e_matrix.sh runs the usual set of shapes one after another and tabulates them.
#
# Steps: build (cargo build --release); start `kargo-export sandbox --synthetic bench=ROWS` on
# 127.0.0.1:0 (its pages are pre-rendered, and gzipped with GZIP=1, before it listens, so it
# costs next to no CPU while serving; the start-up time is printed); time the export under
# /usr/bin/time -v; download the same pages to files as identity JSON (not timed; with GZIP=1
# each page is also fetched gzipped, checked to inflate to the same bytes and its size counted);
# time DuckDB converting those files under /usr/bin/time -v (python duckdb, in-process); check
# that both datasets hold the same rows in the same partitions; print the figures, the
# kargo-export/DuckDB ratios and one RESULT line.
set -euo pipefail

ROWS=${1:-${ROWS:-2000000}}
PAGE=${2:-${PAGE:-5000}}
SEED=${3:-${SEED:-42}}
ORDER=${ORDER:-random}
GZIP=${GZIP:-1}
PARTITION=${PARTITION:-date}
TABLE_FORMAT=${TABLE_FORMAT:-hive}
DUCKDB=${DUCKDB:-1}
SLOW=${SLOW:-}
DUCKDB_VERSION=2.0.1
REPORT=bench

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cd "$root"

log() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'e2e: FAIL: %s\n' "$*" >&2
    exit 1
}
for value in "$ROWS" "$PAGE" "$SEED"; do
    [[ $value =~ ^[0-9]+$ ]] || die "ROWS, PAGE and SEED must be non-negative integers (got '$value')"
done
((PAGE > 0)) || die "PAGE must be at least 1"
[[ $ORDER == random || $ORDER == sorted ]] || die "ORDER must be random or sorted (got '$ORDER')"
[[ $GZIP == 0 || $GZIP == 1 ]] || die "GZIP must be 0 or 1 (got '$GZIP')"
[[ $PARTITION =~ ^[A-Za-z_][A-Za-z0-9_]*(,[A-Za-z_][A-Za-z0-9_]*)*$ ]] ||
    die "PARTITION must be COL[,COL...], e.g. date,country (got '$PARTITION')"
sandbox_flags=(--synthetic-order "$ORDER")
fetch_flags=()
if ((GZIP)); then
    sandbox_flags+=(--gzip)
    fetch_flags+=(--gzip)
    served=gzip
    prepared="rendered and gzipped"
else
    served=identity
    prepared=rendered
fi

# --- tools -------------------------------------------------------------------------------------
if [[ ! -x /usr/bin/time ]]; then
    log "installing GNU time (apt-get install -y time)"
    apt-get install -y time >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
fi
if ((DUCKDB)) && ! python3 -c "import duckdb, sys; sys.exit(duckdb.__version__ != '$DUCKDB_VERSION')" 2>/dev/null; then
    log "installing duckdb $DUCKDB_VERSION (pip)"
    python3 -m pip install --quiet "duckdb==$DUCKDB_VERSION"
fi

log "building (cargo build --release)"
cargo build --release --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release/kargo-export"

# --- work folder and cleanup -------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/kx-e2e.XXXXXX")
sandbox_pid=
proxy_pid=
stop_sandbox() {
    if [[ -n $proxy_pid ]]; then
        kill "$proxy_pid" 2>/dev/null || true
        wait "$proxy_pid" 2>/dev/null || true
        proxy_pid=
    fi
    if [[ -n $sandbox_pid ]]; then
        kill "$sandbox_pid" 2>/dev/null || true
        wait "$sandbox_pid" 2>/dev/null || true
        sandbox_pid=
    fi
}
cleanup() {
    stop_sandbox
    if [[ ${KEEP:-0} == 1 ]]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- GNU time report -> figures ----------------------------------------------------------------
# "wall cpu user sys rss_mib" from a /usr/bin/time -v report.
time_figures() {
    awk -F': ' '
        /Elapsed \(wall clock\)/ { n = split($2, p, ":"); wall = 0; for (i = 1; i <= n; i++) wall = wall * 60 + p[i] }
        /User time \(seconds\)/ { user = $2 }
        /System time \(seconds\)/ { sys = $2 }
        /Maximum resident set size/ { rss = $2 / 1024 }
        END { printf "%.2f %.2f %.2f %.2f %.1f\n", wall, user + sys, user, sys, rss }' "$1"
}
# Number of partitions (folders holding Parquet files) of a dataset.
partitions_of() {
    find "$1" -name '*.parquet' -printf '%h\n' | sort -u | wc -l
}
# One result line: name wall cpu user sys rss rows json_bytes.
show() {
    awk -v name="$1" -v wall="$2" -v cpu="$3" -v user="$4" -v sys="$5" -v rss="$6" -v rows="$7" -v bytes="$8" 'BEGIN {
        w = (wall > 0) ? wall : 1e-9
        printf "%-13s wall %8.2f s   cpu %8.2f s (user %.2f + sys %.2f)   peak RSS %8.1f MiB   %10.0f rows/s   %7.1f MB/s of JSON\n",
            name, wall, cpu, user, sys, rss, rows / w, bytes / w / 1e6 }'
}
# CPU seconds (user + sys) a process has used so far.
cpu_of() {
    awk -v tck="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / tck }' "/proc/$1/stat"
}

# --- the sandbox -------------------------------------------------------------------------------
log "starting the sandbox: report '$REPORT' of $ROWS rows ($ORDER), pages of $PAGE, seed $SEED, $served"
sandbox_started=$(date +%s.%N)
"$bin" sandbox --addr 127.0.0.1:0 --synthetic "$REPORT=$ROWS" --page-size "$PAGE" --seed "$SEED" \
    "${sandbox_flags[@]}" >"$work/sandbox.out" 2>"$work/sandbox.err" &
sandbox_pid=$!
api=
for _ in $(seq 1 6000); do
    api=$(grep -o 'http://[^ ]*' "$work/sandbox.out" 2>/dev/null | head -n 1 || true)
    [[ -n $api ]] && break
    kill -0 "$sandbox_pid" 2>/dev/null || die "the sandbox exited: $(cat "$work/sandbox.err")"
    sleep 0.05
done
[[ -n $api ]] || die "the sandbox printed no address within 300 s"
sandbox_startup=$(awk -v a="$sandbox_started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
log "sandbox at $api (pages $prepared in $sandbox_startup s)"

export KARGO_USERNAME=sandbox KARGO_PASSWORD=sandbox-password
unset KARGO_TOKEN KARGO_AUTH_URL KARGO_API_BASE

# --- a slow server: kargo-export reads through a throttling proxy ------------------------------
kx_api=$api
if [[ -n $SLOW ]]; then
    python3 "$here/slow_proxy.py" "${api##*:}" "$(awk -v m="$SLOW" 'BEGIN { print m * 1e6 }')" \
        >"$work/proxy.out" 2>"$work/proxy.err" &
    proxy_pid=$!
    for _ in $(seq 1 100); do
        port=$(sed -n 's/^listening on //p' "$work/proxy.out" 2>/dev/null)
        [[ -n $port ]] && break
        sleep 0.05
    done
    [[ -n $port ]] || die "the slow proxy did not start: $(cat "$work/proxy.err")"
    kx_api="http://127.0.0.1:$port"
    log "kargo-export reads through a proxy at $kx_api passing $SLOW MB/s"
fi

# --- kargo-export (timed) ----------------------------------------------------------------------
log "kargo-export: export report $REPORT --partition-by $PARTITION"
sandbox_cpu_before=$(cpu_of "$sandbox_pid")
mkdir "$work/spool"
if ! TMPDIR="$work/spool" /usr/bin/time -v -o "$work/kx.time" \
    "$bin" --api-base "$kx_api" export report "$REPORT" --out "$work/kx" --partition-by "$PARTITION" --table-format "$TABLE_FORMAT" \
    >"$work/kx.out" 2>"$work/kx.err"; then
    cat "$work/kx.err" >&2
    die "kargo-export failed"
fi
sandbox_cpu=$(awk -v a="$sandbox_cpu_before" -v b="$(cpu_of "$sandbox_pid")" 'BEGIN { printf "%.2f", b - a }')
cat "$work/kx.out"
json_bytes=$(sed -n 's/.*(\([0-9]*\) bytes fetched).*/\1/p' "$work/kx.out" | tail -n 1)
[[ -n $json_bytes ]] || die "no '(N bytes fetched)' in the export summary"
read -r kx_wall kx_cpu kx_user kx_sys kx_rss < <(time_figures "$work/kx.time")
kx_files=$(find "$work/kx" -name '*.parquet' | wc -l)
kx_size=$(find "$work/kx" -name '*.parquet' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
kx_parts=$(partitions_of "$work/kx")
wire_bytes=

duck_line=
ratios=
if ((DUCKDB)); then
    # --- the same pages as files (not timed) ---------------------------------------------------
    log "downloading the same pages to files as identity JSON (not timed${fetch_flags[*]:+; also gzipped, to check and measure})"
    mkdir "$work/pages"
    fetched=$(python3 "$here/e2e_fetch.py" "${fetch_flags[@]}" "$api" "$REPORT" "$work/pages") ||
        die "downloading the pages failed"
    read -r pages page_bytes wire_bytes <<<"$fetched"
    if ((!GZIP)); then
        wire_bytes=$page_bytes
    fi
    stop_sandbox
    [[ $page_bytes == "$json_bytes" ]] ||
        die "the downloaded pages hold $page_bytes bytes, kargo-export read $json_bytes"

    # --- DuckDB (timed) ------------------------------------------------------------------------
    log "duckdb $DUCKDB_VERSION: COPY (read_json of $pages pages) TO parquet, PARTITION_BY ($PARTITION), zstd"
    sync
    if ! /usr/bin/time -v -o "$work/duck.time" \
        python3 "$here/e2e_duckdb.py" convert "$work/pages" "$work/duck" "$PARTITION" 2>"$work/duck.err"; then
        cat "$work/duck.err" >&2
        die "duckdb failed"
    fi
    read -r dk_wall dk_cpu dk_user dk_sys dk_rss < <(time_figures "$work/duck.time")
    dk_files=$(find "$work/duck" -name '*.parquet' | wc -l)
    dk_size=$(find "$work/duck" -name '*.parquet' -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
    dk_parts=$(partitions_of "$work/duck")

    # --- same data? ----------------------------------------------------------------------------
    log "verifying both outputs"
    python3 "$here/e2e_duckdb.py" verify "$work/kx" "$work/duck" "$ROWS" "$PARTITION" ||
        die "the outputs differ"
    duck_line=$(show duckdb "$dk_wall" "$dk_cpu" "$dk_user" "$dk_sys" "$dk_rss" "$ROWS" "$json_bytes")
    ratios=$(awk -v kw="$kx_wall" -v dw="$dk_wall" -v kc="$kx_cpu" -v dc="$dk_cpu" -v kr="$kx_rss" -v dr="$dk_rss" \
        -v ks="$kx_size" -v ds="$dk_size" -v kf="$kx_files" -v df="$dk_files" 'function r(a, b) { return (b > 0) ? a / b : 0 }
        BEGIN {
            printf "kargo-export / duckdb (below 1: kargo-export uses less)\n"
            printf "  wall time     %6.2f\n", r(kw, dw)
            printf "  CPU time      %6.2f\n", r(kc, dc)
            printf "  peak RSS      %6.2f\n", r(kr, dr)
            printf "  Parquet size  %6.2f\n", r(ks, ds)
            printf "  Parquet files %6.2f\n", r(kf, df)
        }')
else
    stop_sandbox
fi

# --- results -----------------------------------------------------------------------------------
echo
echo "=== e2e: $ROWS rows in pages of $PAGE (seed $SEED, order $ORDER), $json_bytes bytes of JSON served $served, partitioned by $PARTITION"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo); $("$bin" --version); $(rustc --version)"
show kargo-export "$kx_wall" "$kx_cpu" "$kx_user" "$kx_sys" "$kx_rss" "$ROWS" "$json_bytes"
if [[ -n $duck_line ]]; then
    echo "$duck_line"
fi
echo "sandbox: pages $prepared at start-up in ${sandbox_startup} s; CPU while serving the export ${sandbox_cpu} s"
if ((GZIP)) && [[ -n $wire_bytes ]]; then
    awk -v w="$wire_bytes" -v j="$json_bytes" 'BEGIN { printf "gzip on the wire: %d bytes (%.2f of the JSON, %.1fx smaller)\n", w, (j > 0) ? w / j : 0, (w > 0) ? j / w : 0 }'
fi
echo "Parquet: kargo-export $kx_files files, $kx_size bytes, $kx_parts partitions${duck_line:+; duckdb $dk_files files, $dk_size bytes, $dk_parts partitions}"
if [[ -n $ratios ]]; then
    echo "$ratios"
fi
echo "RESULT rows=$ROWS page=$PAGE seed=$SEED order=$ORDER gzip=$GZIP partition=$PARTITION${SLOW:+ slow_mb_s=$SLOW} json_bytes=$json_bytes${wire_bytes:+ wire_bytes=$wire_bytes} sandbox_startup_s=$sandbox_startup sandbox_cpu_s=$sandbox_cpu kx_wall_s=$kx_wall kx_cpu_s=$kx_cpu kx_rss_mib=$kx_rss kx_files=$kx_files kx_bytes=$kx_size kx_partitions=$kx_parts${duck_line:+ duckdb_wall_s=$dk_wall duckdb_cpu_s=$dk_cpu duckdb_rss_mib=$dk_rss duckdb_files=$dk_files duckdb_bytes=$dk_size duckdb_partitions=$dk_parts}"
