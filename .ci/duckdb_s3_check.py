"""Exports two sandbox reports to the S3 server at KARGO_TEST_S3_ENDPOINT (moto), reads them back
with DuckDB's httpfs exactly as the README's S3 section shows, and checks the row count and the
per-date sums of impressions and spend against the sample data.

Needs duckdb==1.4.4 and duckdb-ext-httpfs==1.4.4.20260205 (the httpfs extension as a wheel: there
is no download here), so .ci/run gives it a venv of its own.

usage: KARGO_TEST_S3_ENDPOINT=http://127.0.0.1:PORT python3 .ci/duckdb_s3_check.py BINARY
"""
import json
import os
import pathlib
import subprocess
import sys
import urllib.parse
import urllib.request

import duckdb
import duckdb_ext

binary = sys.argv[1]
endpoint = os.environ["KARGO_TEST_S3_ENDPOINT"]
sample = pathlib.Path(__file__).resolve().parent.parent / "sample_data" / "completed-reports"
reports = ["rpt_7f3a9c21", "rpt_2b8e4d10"]
bucket = "kargo-duckdb-check"

# A bucket on moto: an unsigned PUT is enough.
urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"), timeout=10)
env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID="test",
           AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1")
subprocess.run([binary, "--sandbox", "export", "report", *reports, "--out", f"s3://{bucket}/prefix",
                "--partition-by", "date"], env=env, check=True)

# The wheel's directory holds v1.4.4/linux_amd64/httpfs.duckdb_extension, the layout DuckDB
# expects in its extension_directory, so the README's INSTALL/LOAD find it there.
extensions = pathlib.Path(next(iter(duckdb_ext.__path__)), "extensions")
con = duckdb.connect(config={"extension_directory": str(extensions)})
con.execute("INSTALL httpfs; LOAD httpfs;")
con.execute(f"""CREATE SECRET (TYPE s3, KEY_ID 'test', SECRET 'test', REGION 'us-east-1',
                ENDPOINT '{urllib.parse.urlsplit(endpoint).netloc}', URL_STYLE 'path', USE_SSL false)""")
glob = f"s3://{bucket}/prefix/**/*.parquet"
count = con.execute(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)").fetchall()[0][0]
by_date = {
    day: (impressions, spend)
    for day, impressions, spend in con.execute(
        f"""SELECT date::VARCHAR, sum(impressions), sum(spend)
            FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY date"""
    ).fetchall()
}

rows = [r for report in reports for r in json.loads((sample / f"{report}.json").read_text())]
want = {}
for r in rows:
    impressions, spend = want.get(r["date"], (0, 0.0))
    want[r["date"]] = (impressions + r["impressions"], spend + r["spend"])

errors = []
if count != len(rows):
    errors.append(f"rows: duckdb={count} source={len(rows)}")
if by_date.keys() != want.keys():
    errors.append(f"dates: duckdb={sorted(by_date)} source={sorted(want)}")
for day in sorted(want.keys() & by_date.keys()):
    (got_i, got_s), (want_i, want_s) = by_date[day], want[day]
    if got_i != want_i or abs(got_s - want_s) > 1e-6:
        errors.append(f"{day}: duckdb impressions={got_i} spend={got_s}, source {want_i} {want_s}")
if errors:
    sys.exit("duckdb S3 check failed (" + glob + "):\n  " + "\n  ".join(errors))
print(f"duckdb S3 check passed: {count} rows, {len(want)} days read back through httpfs from {glob}")
