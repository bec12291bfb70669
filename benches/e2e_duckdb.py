#!/usr/bin/env python3
"""The DuckDB side of benches/e2e.sh (python duckdb, in-process).

  e2e_duckdb.py convert PAGES_DIR OUT   JSON pages -> Hive-partitioned Parquet (timed by e2e.sh)
  e2e_duckdb.py verify KX_DIR DUCK_DIR ROWS
        reads both datasets (hive_partitioning) and fails unless they hold ROWS rows, the same
        column types, the same per-day row counts, the same sums of impressions, clicks and spend
        (spend summed as DECIMAL(38,6), exact) and the same multiset of rows (sum of row hashes).
"""

import os
import sys

import duckdb


def convert(pages: str, out: str) -> None:
    largest = max(os.path.getsize(os.path.join(pages, name)) for name in os.listdir(pages))
    con = duckdb.connect()
    # TIMESTAMPTZ values are instants; UTC keeps any cast from a naive TIMESTAMP unshifted.
    con.execute("SET TimeZone = 'UTC'")
    glob = os.path.join(pages, "*.json").replace("'", "''")
    out_sql = out.replace("'", "''")
    # read_json infers DATE and TIMESTAMP WITH TIME ZONE itself (DuckDB 2.0); the casts pin the
    # types kargo-export writes (DATE, TIMESTAMP(MICROS, UTC)) in case a sample ever says else.
    con.execute(
        f"""
        COPY (
            SELECT * REPLACE (
                CAST(date AS DATE) AS date,
                CAST(first_seen_at AS TIMESTAMPTZ) AS first_seen_at,
                CAST(last_updated_at AS TIMESTAMPTZ) AS last_updated_at)
            FROM (
                SELECT r.* FROM (
                    SELECT unnest(data.rows) AS r
                    FROM read_json('{glob}', maximum_object_size = {max(2 * largest, 16 << 20)})))
        ) TO '{out_sql}' (FORMAT parquet, PARTITION_BY (date), COMPRESSION zstd)
        """
    )


def dataset(path: str) -> str:
    glob = os.path.join(path, "**", "*.parquet").replace("'", "''")
    return f"read_parquet('{glob}', hive_partitioning = true)"


def verify(kx: str, duck: str, rows: int) -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    failures = []

    def types(path):
        described = con.sql(f"DESCRIBE SELECT * FROM {dataset(path)}").fetchall()
        return {name: kind for name, kind, *_ in described}

    kx_types, duck_types = types(kx), types(duck)
    if kx_types != duck_types:
        diff = sorted(set(kx_types.items()) ^ set(duck_types.items()))
        failures.append(f"column types differ: {diff}")
    columns = sorted(set(kx_types) & set(duck_types))
    row_hash = "hash(" + ", ".join(f'"{c}"' for c in columns) + ")"
    query = f"""
        SELECT count(*), sum(impressions), sum(clicks), sum(CAST(spend AS DECIMAL(38, 6))),
               sum({row_hash}), count(DISTINCT date)
        FROM {{}}"""
    names = ["rows", "impressions", "clicks", "spend", "row-hash sum", "days"]
    kx_sums = con.sql(query.format(dataset(kx))).fetchall()[0]
    duck_sums = con.sql(query.format(dataset(duck))).fetchall()[0]
    for name, a, b in zip(names, kx_sums, duck_sums):
        if a != b:
            failures.append(f"{name}: kargo-export {a} vs duckdb {b}")
    if kx_sums[0] != rows:
        failures.append(f"rows: expected {rows}, kargo-export wrote {kx_sums[0]}")
    per_day = "SELECT date, count(*) FROM {} GROUP BY date ORDER BY date"
    if con.sql(per_day.format(dataset(kx))).fetchall() != con.sql(per_day.format(dataset(duck))).fetchall():
        failures.append("per-day row counts differ")
    if failures:
        for failure in failures:
            print(f"verify: FAIL: {failure}", file=sys.stderr)
        sys.exit(1)
    shown = ", ".join(f"{n} {v}" for n, v in zip(names, kx_sums) if n != "row-hash sum")
    print(f"verify: OK, both outputs hold the same rows ({shown}; {len(columns)} columns of equal types)")


def main() -> None:
    match sys.argv[1:]:
        case ["convert", pages, out]:
            convert(pages, out)
        case ["verify", kx, duck, rows]:
            verify(kx, duck, int(rows))
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main()
