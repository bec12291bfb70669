#!/usr/bin/env python3
"""The DuckDB side of benches/e2e.sh (python duckdb, in-process).

  e2e_duckdb.py convert PAGES_DIR OUT [PARTITION]
        JSON pages -> Parquet, zstd, Hive-partitioned by PARTITION (COL[,COL...], default date;
        timed by e2e.sh)
  e2e_duckdb.py verify KX_DIR DUCK_DIR ROWS [PARTITION]
        reads both datasets (hive_partitioning) and fails unless they hold ROWS rows, the same
        column types, the same partitions with the same row counts, the same per-day row counts,
        the same sums of impressions, clicks and spend (spend summed as DECIMAL(38,6), exact) and
        the same multiset of rows (sum of row hashes).

Partition columns exist only in folder names (neither tool writes them into the files), so both
datasets' partition columns are read the same way: as the folder text, with a null partition
(kargo-export and DuckDB 2.0 write `__HIVE_DEFAULT_PARTITION__`, which DuckDB reads as NULL; older
DuckDB wrote `NULL`, which it reads back as the text 'NULL') normalised to NULL, then cast to the
first of DATE, TIMESTAMP, BIGINT that all the column's values of that dataset cast to, else kept
as VARCHAR, as DuckDB's hive_types_autocast would. The other columns keep the types in the files.
"""

import os
import sys

import duckdb

# Folder names of a null partition value.
NULL_FOLDERS = ("__HIVE_DEFAULT_PARTITION__", "NULL")
# The types hive_types_autocast tries, in its order.
AUTOCAST = ("DATE", "TIMESTAMP", "BIGINT")


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def columns_of(partition: str) -> list:
    columns = [c.strip() for c in partition.split(",") if c.strip()]
    if not columns:
        sys.exit(f"e2e_duckdb.py: no partition column in {partition!r}")
    return columns


def convert(pages: str, out: str, partition: str) -> None:
    largest = max(os.path.getsize(os.path.join(pages, name)) for name in os.listdir(pages))
    con = duckdb.connect()
    # TIMESTAMPTZ values are instants; UTC keeps any cast from a naive TIMESTAMP unshifted.
    con.execute("SET TimeZone = 'UTC'")
    glob = literal(os.path.join(pages, "*.json"))
    by = ", ".join(quote(c) for c in columns_of(partition))
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
                    FROM read_json({glob}, maximum_object_size = {max(2 * largest, 16 << 20)})))
        ) TO {literal(out)} (FORMAT parquet, PARTITION_BY ({by}), COMPRESSION zstd)
        """
    )


def dataset(con, name: str, path: str, partition: list) -> tuple:
    """Creates view `name` over the dataset at `path` (partition columns normalised); returns
    its column types, and the partition columns' types as inferred from their folder names."""
    glob = literal(os.path.join(path, "**", "*.parquet"))
    raw = f"read_parquet({glob}, hive_partitioning = true, hive_types_autocast = false)"
    nulls = ", ".join(literal(n) for n in NULL_FOLDERS)
    text = {
        c: f"CASE WHEN {quote(c)} IN ({nulls}) THEN NULL ELSE CAST({quote(c)} AS VARCHAR) END"
        for c in partition
    }
    inferred = {}
    for column, value in text.items():
        kind = "VARCHAR"
        for candidate in AUTOCAST:
            ((fits,),) = con.sql(
                f"""SELECT coalesce(bool_and(TRY_CAST(v AS {candidate}) IS NOT NULL), false)
                    FROM (SELECT DISTINCT {value} AS v FROM {raw}) WHERE v IS NOT NULL"""
            ).fetchall()
            if fits:
                kind = candidate
                break
        inferred[column] = kind
    replace = ", ".join(f"CAST({text[c]} AS {inferred[c]}) AS {quote(c)}" for c in partition)
    con.execute(f"CREATE VIEW {name} AS SELECT * REPLACE ({replace}) FROM {raw}")
    described = con.sql(f"DESCRIBE SELECT * FROM {name}").fetchall()
    return {column: kind for column, kind, *_ in described}, inferred


def verify(kx: str, duck: str, rows: int, partition: str) -> None:
    partition = columns_of(partition)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    failures = []

    kx_types, kx_inferred = dataset(con, "kx", kx, partition)
    duck_types, duck_inferred = dataset(con, "duck", duck, partition)
    if kx_types != duck_types:
        diff = sorted(set(kx_types.items()) ^ set(duck_types.items()))
        failures.append(f"column types differ (kargo-export ^ duckdb): {diff}")
    columns = sorted(set(kx_types) & set(duck_types))
    row_hash = "hash(" + ", ".join(quote(c) for c in columns) + ")"
    query = f"""
        SELECT count(*), sum(impressions), sum(clicks), sum(CAST(spend AS DECIMAL(38, 6))),
               sum({row_hash}), count(DISTINCT date)
        FROM {{}}"""
    names = ["rows", "impressions", "clicks", "spend", "row-hash sum", "days"]
    kx_sums = con.sql(query.format("kx")).fetchall()[0]
    duck_sums = con.sql(query.format("duck")).fetchall()[0]
    for name, a, b in zip(names, kx_sums, duck_sums):
        if a != b:
            failures.append(f"{name}: kargo-export {a} vs duckdb {b}")
    if kx_sums[0] != rows:
        failures.append(f"rows: expected {rows}, kargo-export wrote {kx_sums[0]}")

    per_day = "SELECT date, count(*) FROM {} GROUP BY date ORDER BY date"
    if con.sql(per_day.format("kx")).fetchall() != con.sql(per_day.format("duck")).fetchall():
        failures.append("per-day row counts differ")
    by = ", ".join(quote(c) for c in partition)
    per_partition = f"SELECT {by}, count(*) FROM {{}} GROUP BY ALL ORDER BY ALL"
    kx_parts = con.sql(per_partition.format("kx")).fetchall()
    duck_parts = con.sql(per_partition.format("duck")).fetchall()
    if kx_parts != duck_parts:
        only_kx = sorted(set(kx_parts) - set(duck_parts), key=repr)[:5]
        only_duck = sorted(set(duck_parts) - set(kx_parts), key=repr)[:5]
        failures.append(
            f"partitions differ: {len(kx_parts)} vs {len(duck_parts)}; (values, rows) only in"
            f" kargo-export {only_kx}, only in duckdb {only_duck}"
        )
    null_partitions = sum(1 for part in kx_parts if None in part[:-1])

    if failures:
        for failure in failures:
            print(f"verify: FAIL: {failure}", file=sys.stderr)
        sys.exit(1)
    shown = ", ".join(f"{n} {v}" for n, v in zip(names, kx_sums) if n != "row-hash sum")
    kinds = ", ".join(f"{c} {kx_inferred[c]}" for c in partition)
    print(
        f"verify: OK, both outputs hold the same rows ({shown}; {len(columns)} columns of equal"
        f" types) in the same {len(kx_parts)} partitions ({kinds} from folder names;"
        f" {null_partitions} with a null value)"
    )


def main() -> None:
    match sys.argv[1:]:
        case ["convert", pages, out, *partition] if len(partition) <= 1:
            convert(pages, out, (partition or ["date"])[0])
        case ["verify", kx, duck, rows, *partition] if len(partition) <= 1:
            verify(kx, duck, int(rows), (partition or ["date"])[0])
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main()
