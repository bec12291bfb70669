"""Exports sandbox reports as a Delta table (--table-format delta), reads it back with DuckDB's
delta extension (delta_scan), and compares the rows' values with the sample data they came from
(sample_data/completed-reports, which the sandbox serves): once in a local directory, once on the
S3 server at KARGO_TEST_S3_ENDPOINT (moto), through a DuckDB S3 secret for that endpoint.

At each location, for each state of the table:
  1. rpt_7f3a9c21 exported: the table has that report's columns and exactly its rows;
  2. rpt_7f3a9c21 exported again: still each row exactly once (the commit replaced its files);
  3. rpt_2b8e4d10 (another shape) exported into the same table: the table gains its columns, the
     rows of rpt_7f3a9c21 read them as NULL and the other way round, both reports' rows are there;
  4. rpt_7f3a9c21 exported again into the evolved table: the same rows as in 3.
"The rows" means the multiset of whole rows, every column of the table (dates as text,
timestamps as epoch milliseconds, everything else as DuckDB returns it, columns a report does not
have as NULL), equal to the source rows; the per-report row counts (by data file name), the
totals of impressions, clicks and spend, and the NULLs of the columns each report lacks are
checked and printed as well.

Needs duckdb==1.4.4, duckdb-ext-delta==1.4.4.20260205 and duckdb-ext-httpfs==1.4.4.20260205 (the
extensions as wheels: there is no download here), so .ci/run gives it a venv of its own.

usage: KARGO_TEST_S3_ENDPOINT=http://127.0.0.1:PORT python3 .ci/duckdb_delta_check.py BINARY
"""
import collections
import datetime
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import uuid

import duckdb
import duckdb_ext

binary = sys.argv[1]
endpoint = os.environ["KARGO_TEST_S3_ENDPOINT"]
sample = pathlib.Path(__file__).resolve().parent.parent / "sample_data" / "completed-reports"
first, second = "rpt_7f3a9c21", "rpt_2b8e4d10"
source = {r: json.loads((sample / f"{r}.json").read_text()) for r in (first, second)}
columns_of = {r: list(rows[0]) for r, rows in source.items()}
bucket = "kargo-duckdb-delta-check"

# The wheels' directory holds v1.4.4/linux_amd64/{delta,httpfs}.duckdb_extension, the layout
# DuckDB expects in its extension_directory, so INSTALL/LOAD find them there.
extensions = pathlib.Path(next(iter(duckdb_ext.__path__)), "extensions")
con = duckdb.connect(config={"extension_directory": str(extensions)})
con.execute("INSTALL httpfs; LOAD httpfs; INSTALL delta; LOAD delta;")
con.execute(f"""CREATE SECRET (TYPE s3, KEY_ID 'test', SECRET 'test', REGION 'us-east-1',
                ENDPOINT '{urllib.parse.urlsplit(endpoint).netloc}', URL_STYLE 'path', USE_SSL false)""")


def fail(where, message):
    sys.exit(f"duckdb delta check failed ({where}): {message}")


def export(report, dest, env=None):
    subprocess.run([binary, "--sandbox", "export", "report", report, "--out", dest, "--partition-by", "date",
                    "--table-format", "delta"], env=env, check=True)


def epoch_ms(text):
    return round(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def check_table(dest, reports, step):
    """The Delta table at dest holds exactly the source rows of reports, read through delta_scan."""
    where = f"{dest}, {step}"
    scan = f"delta_scan('{dest}')"
    try:
        schema = con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()
    except duckdb.Error as e:
        fail(where, f"delta_scan cannot read the table: {e}")
    types = {name: kind for name, kind, *_ in schema}
    names = list(types)

    want_names = []
    for r in reports:
        want_names += [c for c in columns_of[r] if c not in want_names]
    if set(names) != set(want_names):
        fail(where, f"columns: duckdb={names} source={want_names}")

    # Every row, every column: the multiset of rows read equals the multiset of source rows.
    select = []
    for name in names:
        if types[name] == "DATE":
            select.append(f'"{name}"::VARCHAR')
        elif types[name].startswith("TIMESTAMP"):
            select.append(f'epoch_ms("{name}")')
        else:
            select.append(f'"{name}"')
    got = collections.Counter(con.execute(f"SELECT {', '.join(select)} FROM {scan}").fetchall())

    def value(row, name):
        v = row.get(name)
        if v is not None and types[name].startswith("TIMESTAMP"):
            return epoch_ms(v)
        return v

    want = collections.Counter(tuple(value(row, n) for n in names) for r in reports for row in source[r])
    if got != want:
        missing, extra = want - got, got - want
        fail(where, f"rows differ: {sum(missing.values())} source rows not read (e.g. {list(missing)[:2]}), "
                    f"{sum(extra.values())} rows read that the source does not have, or more often than it has them "
                    f"(e.g. {list(extra)[:2]}); "
                    f"columns {names}")

    # The same, as numbers one can read: rows per report (by data file name), totals, and the
    # columns each report lacks reading as NULL on its rows.
    per_report = dict(con.execute(
        f"""SELECT regexp_extract(parse_filename(filename), '^(rpt_[0-9a-f]+)\\.', 1), count(*)
            FROM delta_scan('{dest}', filename = true) GROUP BY ALL""").fetchall())
    want_per_report = {r: len(source[r]) for r in reports}
    if per_report != want_per_report:
        fail(where, f"rows per report: duckdb={per_report} source={want_per_report}")
    count, impressions, clicks, spend = con.execute(
        f"SELECT count(*), sum(impressions), sum(clicks), sum(spend) FROM {scan}").fetchall()[0]
    rows = [row for r in reports for row in source[r]]
    totals = (len(rows), sum(r["impressions"] for r in rows), sum(r["clicks"] for r in rows),
              sum(r["spend"] for r in rows))
    if (count, impressions, clicks) != totals[:3] or abs(spend - totals[3]) > 1e-6:
        fail(where, f"count/impressions/clicks/spend: duckdb={(count, impressions, clicks, spend)} source={totals}")
    # Filters the delta extension can answer by skipping files on their statistics (min, max,
    # null count per file): each must count exactly the source rows that match.
    filters = {
        "impressions > 40000": lambda row: (row.get("impressions") or 0) > 40000,
        "clicks = 0": lambda row: row.get("clicks") == 0,
        "spend < 1.0": lambda row: row.get("spend") is not None and row["spend"] < 1.0,
        "site_domain >= 'v'": lambda row: row.get("site_domain") is not None and row["site_domain"] >= "v",
        "date = DATE '2025-03-07'": lambda row: row.get("date") == "2025-03-07",
    }
    for condition, matches in filters.items():
        got_count = con.execute(f"SELECT count(*) FROM {scan} WHERE {condition}").fetchall()[0][0]
        want_count = sum(1 for row in rows if matches(row))
        if got_count != want_count:
            fail(where, f"WHERE {condition}: duckdb counted {got_count} rows, the source has {want_count}")
    nulls = []
    for r in reports:
        lacking = [c for c in names if c not in columns_of[r]]
        if not lacking:
            continue
        non_null = con.execute(
            f"""SELECT {', '.join(f'count("{c}")' for c in lacking)} FROM delta_scan('{dest}', filename = true)
                WHERE parse_filename(filename) LIKE '{r}.%'""").fetchall()[0]
        if any(non_null):
            fail(where, f"rows of {r} have values in columns it lacks: {dict(zip(lacking, non_null))}")
        nulls.append(f"{r}'s rows NULL in {', '.join(lacking)}")
    print(f"  {step}: {len(names)} columns, rows {per_report}, every value as in the source; "
          f"impressions={impressions} clicks={clicks} spend={spend:.4f}; {len(filters)} filters count as the source"
          + ("; " + "; ".join(nulls) if nulls else ""))


def check_location(dest, env=None):
    print(f"delta table at {dest}:")
    export(first, dest, env)
    check_table(dest, [first], f"{first} exported")
    export(first, dest, env)
    check_table(dest, [first], f"{first} exported again")
    export(second, dest, env)
    check_table(dest, [first, second], f"{second} exported into the same table")
    export(first, dest, env)
    check_table(dest, [first, second], f"{first} exported again into the evolved table")


with tempfile.TemporaryDirectory() as work:
    check_location(str(pathlib.Path(work, "delta")))

# A bucket on moto: an unsigned PUT is enough. A prefix of this run's own, so that a second run
# against the same server starts from an empty table too.
urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"), timeout=10)
check_location(f"s3://{bucket}/delta-{uuid.uuid4().hex[:8]}",
               dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID="test",
                    AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1"))
print("duckdb delta check passed: local and S3 Delta tables read back through delta_scan")
