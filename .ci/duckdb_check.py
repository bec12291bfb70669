"""Reads datasets exported from the sandbox with DuckDB, the way users do (hive partitioning,
no union_by_name), and checks row counts and sums against the sample data it came from.

usage: python3 .ci/duckdb_check.py BINARY WORKDIR
"""
import json
import pathlib
import subprocess
import sys

import duckdb

binary, work = sys.argv[1], pathlib.Path(sys.argv[2])
sample = pathlib.Path(__file__).resolve().parent.parent / "sample_data"
db = duckdb.connect()


def query(sql):
    return db.execute(sql).fetchall()


def export(*args):
    subprocess.run([binary, "--sandbox", "export", *args], check=True)


def check(name, got, want):
    print(f"{name}: duckdb={got} source={want}")
    if got != want:
        sys.exit(f"duckdb check failed: {name}")


rows = json.loads((sample / "completed-reports" / "rpt_7f3a9c21.json").read_text())
dest = work / "by-day"
export("report", "rpt_7f3a9c21", "--out", str(dest), "--partition-by", "date")
glob = f"{dest}/**/*.parquet"
count, impressions, clicks, spend, days, min_date = query(
    f"""SELECT count(*), sum(impressions), sum(clicks), round(sum(spend), 6),
               count(DISTINCT date), min(date)::VARCHAR
        FROM read_parquet('{glob}', hive_partitioning = true)"""
)[0]
check("rows", count, len(rows))
check("impressions", impressions, sum(r["impressions"] for r in rows))
check("clicks", clicks, sum(r["clicks"] for r in rows))
check("spend", spend, round(sum(r["spend"] for r in rows), 6))
check("days", days, len({r["date"] for r in rows}))
check("first day", min_date, min(r["date"] for r in rows))

# The same dataset again must replace, not duplicate.
export("report", "rpt_7f3a9c21", "--out", str(dest), "--partition-by", "date")
check("rows after re-export", query(f"SELECT count(*) FROM read_parquet('{glob}')")[0][0], len(rows))

reports = json.loads((sample / "reports.json").read_text())
dest = work / "reports"
export("reports", "--out", str(dest), "--partition-by", "status")
by_status = dict(
    query(
        f"""SELECT status, count(*) FROM read_parquet('{dest}/**/*.parquet', hive_partitioning = true)
            GROUP BY status"""
    )
)
want = {}
for r in reports:
    want[r["status"]] = want.get(r["status"], 0) + 1
check("reports by status", by_status, want)
print("duckdb check passed")
