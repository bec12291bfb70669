//! Delta Lake tables (`--table-format delta`, jobs file `table_format = "delta"`), read back with
//! an independent reader, the Python `deltalake` package (delta-rs): each report's export is one
//! commit whose rows equal the source rows, value by value; earlier versions keep the earlier
//! rows (time travel); a new column evolves the table; a type or partition change is refused
//! and publishes nothing; concurrent shard workers commit every report exactly once, and exports
//! started together (into a new table, or of one report) all commit; SIGKILL shows readers the
//! old rows or the new, never a mix, and the next export deletes what killed runs left (never
//! what a run at work has); and the same table on S3 (moto).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kargo_export::sandbox::synthetic::SyntheticReport;
use kargo_export::sink::marker::RunMarker;
use serde_json::{Value, json};

use crate::runs::*;
use crate::util::*;

const DELTA: [&str; 2] = ["--table-format", "delta"];
/// The flags of every local export here: a Delta table partitioned by `date`.
const TABLE: [&str; 4] = ["--table-format", "delta", "--partition-by", "date"];

/// Reads a Delta table with `deltalake` and prints what the tests compare, as JSON: the latest
/// version, its partition columns and schema (Delta types), the history (version, operation,
/// operationParameters), and for each requested version its files (relative to the table when
/// local), its rows (dates as ISO dates, timestamps as RFC 3339 UTC, decimals as text) and/or a
/// digest (row count, sums, null counts, rows per value of one column). `os._exit` because the
/// package may abort at interpreter exit after printing.
const READER: &str = r#"
import datetime, decimal, json, os, sys
from deltalake import DeltaTable
import pyarrow.compute as pc
spec = json.loads(sys.argv[1])
uri = spec["table"]
opts = spec.get("storage_options")
def value(v):
    if isinstance(v, datetime.datetime):
        return v.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(v, datetime.date): return v.isoformat()
    if isinstance(v, decimal.Decimal): return str(v)
    if isinstance(v, dict): return {k: value(x) for k, x in v.items()}
    if isinstance(v, list): return [value(x) for x in v]
    return v
def relative(f):
    root = uri.rstrip("/") + "/"
    return f[len(root):] if f.startswith(root) else f
latest = DeltaTable(uri, storage_options=opts)
schema = json.loads(latest.schema().to_json())
out = {
    "version": latest.version(),
    "partition_columns": list(latest.metadata().partition_columns),
    "schema": [[f["name"], f["type"] if isinstance(f["type"], str) else json.dumps(f["type"])] for f in schema["fields"]],
    "history": sorted(({"version": h["version"], "operation": h.get("operation"),
                        "parameters": h.get("operationParameters") or {}} for h in latest.history()),
                      key=lambda h: h["version"]),
    "versions": {},
}
wanted = spec.get("versions", "latest")
if wanted == "latest": wanted = [latest.version()]
elif wanted == "all": wanted = list(range(latest.version() + 1))
for v in wanted:
    t = DeltaTable(uri, version=v, storage_options=opts)
    entry = {"files": sorted(relative(f) for f in t.file_uris())}
    if spec.get("rows"):
        entry["rows"] = [{k: value(x) for k, x in r.items()} for r in t.to_pyarrow_table().to_pylist()]
    d = spec.get("digest")
    if d:
        table = t.to_pyarrow_table(columns=d["sums"] + d["nulls"] + [d["by"]])
        by = {}
        for key in table.column(d["by"]).to_pylist():
            by[str(value(key))] = by.get(str(value(key)), 0) + 1
        entry["digest"] = {
            "rows": table.num_rows,
            "sums": {c: pc.sum(table.column(c)).as_py() or 0 for c in d["sums"]},
            "nulls": {c: table.column(c).null_count for c in d["nulls"]},
            "by": by,
        }
    out["versions"][str(v)] = entry
sys.stdout.write(json.dumps(out))
sys.stdout.flush()
os._exit(0)
"#;

/// What `deltalake` read of a table.
#[derive(Debug)]
struct Read {
    version: u64,
    partition_columns: Vec<String>,
    /// `(name, Delta type)` of each column of the latest schema.
    schema: Vec<(String, String)>,
    /// `(version, operation, operationParameters)`, oldest first.
    history: Vec<(u64, String, BTreeMap<String, String>)>,
    /// The requested versions: files, rows and digest as the reader printed them.
    versions: BTreeMap<u64, Value>,
}

impl Read {
    fn at(&self, version: u64) -> &Value {
        self.versions
            .get(&version)
            .unwrap_or_else(|| panic!("version {version} was not read"))
    }

    /// The rows of `version`, sorted by the integer column `key`.
    fn rows_by(&self, version: u64, key: &str) -> Vec<Row> {
        let mut rows: Vec<Row> = self.at(version)["rows"]
            .as_array()
            .expect("rows were read")
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect();
        rows.sort_by_key(|r| r[key].as_i64());
        rows
    }

    /// The files of `version`, relative to the table.
    fn files(&self, version: u64) -> BTreeSet<String> {
        self.at(version)["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_owned())
            .collect()
    }

    /// `kargo.*` parameter `key` of the commit of `version`.
    fn param(&self, version: u64, key: &str) -> &str {
        let (_, _, params) = self
            .history
            .iter()
            .find(|(v, _, _)| *v == version)
            .unwrap_or_else(|| panic!("no version {version} in the history {:?}", self.history));
        params
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in version {version}: {params:?}"))
    }
}

/// Runs [`READER`] over `table` with `spec` (its `table` key is added).
fn read_delta_with(table: &str, mut spec: Value) -> Read {
    spec["table"] = json!(table);
    let output = Command::new("python3")
        .args(["-c", READER])
        .arg(spec.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("python3 with deltalake (pip install deltalake==1.6.6)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let parsed: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "deltalake reading {table}: {e}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let history = parsed["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let params = h["parameters"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            (
                h["version"].as_u64().unwrap(),
                h["operation"].as_str().unwrap_or_default().to_owned(),
                params,
            )
        })
        .collect();
    Read {
        version: parsed["version"].as_u64().unwrap(),
        partition_columns: serde_json::from_value(parsed["partition_columns"].clone()).unwrap(),
        schema: serde_json::from_value(parsed["schema"].clone()).unwrap(),
        history,
        versions: parsed["versions"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(v, entry)| (v.parse().unwrap(), entry.clone()))
            .collect(),
    }
}

/// Every version of the local table `dest`, rows included.
fn read_delta(dest: &Path) -> Read {
    read_delta_with(
        dest.to_str().unwrap(),
        json!({"versions": "all", "rows": true}),
    )
}

/// Rows `i` in `range`, spread over `days` dates of March 2025, with a text and a float column.
fn dated_rows(range: std::ops::Range<i64>, days: i64, scale: f64) -> Vec<Value> {
    range
        .map(|i| {
            json!({
                "i": i,
                "date": format!("2025-03-{:02}", 1 + i % days),
                "name": format!("row {i}"),
                "amount": i as f64 * scale,
            })
        })
        .collect()
}

/// The `.parquet` files under `dest`, relative, outside `_delta_log` and `_staging`.
fn data_files(dest: &Path) -> BTreeSet<String> {
    files(dest)
        .into_iter()
        .filter(|f| f.ends_with(".parquet") && !f.starts_with('_'))
        .collect()
}

/// The run id in a data file name `<report>.<run>.<n>.parquet`.
fn run_of(file: &str) -> &str {
    let name = file.rsplit('/').next().unwrap();
    name.split('.').nth_back(2).unwrap()
}

#[test]
fn an_export_is_version_0_and_deltalake_reads_every_source_value() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("table");
    let stdout = success(&sandbox.export(&["rpt_7f3a9c21"], &dest, &TABLE));
    assert!(
        stdout.contains("exported rpt_7f3a9c21: 1500 rows, 30 files"),
        "{stdout}"
    );

    let read = read_delta(&dest);
    assert_eq!(read.version, 0);
    assert_eq!(read.partition_columns, ["date"]);
    // The rows read back are the source rows, value by value (`date` from the partition).
    assert_same_rows(
        &sorted(read.rows_by(0, "line_item_id"), KEY_A),
        &sorted(source_rows(SAMPLE_A), KEY_A),
    );
    let source = source_rows(SAMPLE_A);
    let columns: Vec<&String> = source[0].keys().collect();
    let names: Vec<&String> = read.schema.iter().map(|(n, _)| n).collect();
    assert_eq!(names, columns);
    let types: BTreeMap<&str, &str> = read
        .schema
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    assert_eq!(types["date"], "date");
    assert_eq!(types["impressions"], "long");
    assert_eq!(types["spend"], "double");
    assert_eq!(types["site_domain"], "string");
    assert_eq!(types["first_seen_at"], "timestamp");

    // One commit, recording the export.
    assert_eq!(read.history.len(), 1, "{:?}", read.history);
    assert_eq!(read.history[0].1, "CREATE TABLE");
    assert_eq!(read.param(0, "kargo.reportId"), "rpt_7f3a9c21");
    assert_eq!(read.param(0, "kargo.rows"), "1500");
    assert_eq!(
        read.param(0, "kargo.sourceUrl"),
        format!("{}/v1/completed-reports/rpt_7f3a9c21", sandbox.base)
    );
    let run_id = read.param(0, "kargo.runId").to_owned();

    // The log holds version 0 only; the table's files are every data file on disk, one per
    // date folder, named by the run the commit records.
    let log: Vec<String> = files(&dest.join("_delta_log"));
    assert_eq!(log, ["00000000000000000000.json"]);
    let in_table = read.files(0);
    assert_eq!(in_table, data_files(&dest));
    assert_eq!(in_table.len(), 30);
    for file in &in_table {
        let (folder, name) = file.split_once('/').expect("a date folder");
        assert!(folder.starts_with("date=2025-03-"), "{file}");
        assert_eq!(name, format!("rpt_7f3a9c21.{run_id}.00000.parquet"));
    }
    assert!(!dest.join("_staging").exists(), "{:?}", files(&dest));
}

#[test]
fn a_reexport_is_a_new_version_and_older_versions_keep_the_older_rows() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("table");
    let old_a = dated_rows(0..40, 4, 1.25);
    let b = dated_rows(1000..1012, 3, 0.5);
    let first = Fixture::new();
    first.report_rows("a", &old_a).report_rows("b", &b);
    {
        let sandbox = Sandbox::with_data(first.path(), &[]);
        success(&sandbox.export(&["a"], &dest, &TABLE));
        success(&sandbox.export(&["b"], &dest, &TABLE));
    }
    let b_files: Snapshot = snapshot(&dest)
        .into_iter()
        .filter(|(name, _)| name.contains("/b."))
        .collect();
    assert_eq!(b_files.len(), 3, "{:?}", b_files.keys());

    // The same report id now serves other rows, over other dates.
    let new_a = dated_rows(500..530, 2, 2.5);
    let second = Fixture::new();
    second.report_rows("a", &new_a);
    let sandbox = Sandbox::with_data(second.path(), &[]);
    let stdout = success(&sandbox.export(&["a"], &dest, &TABLE));
    assert!(stdout.contains("exported a: 30 rows, 2 files"), "{stdout}");

    let read = read_delta(&dest);
    assert_eq!(read.version, 2);
    let with = |a: &[Value], b: &[Value]| -> Vec<Row> {
        let mut rows = as_rows(a);
        rows.extend(as_rows(b));
        rows.sort_by_key(|r| r["i"].as_i64());
        rows
    };
    assert_same_rows(&read.rows_by(0, "i"), &as_rows(&old_a));
    assert_same_rows(&read.rows_by(1, "i"), &with(&old_a, &b));
    assert_same_rows(&read.rows_by(2, "i"), &with(&new_a, &b));
    assert_eq!(read.param(2, "kargo.reportId"), "a");
    assert_eq!(read.param(2, "kargo.rows"), "30");
    assert_eq!(read.history[2].1, "WRITE");

    // Version 2 removed a's 4 files and added 2; b's files are the same files, byte for byte.
    let b_names: BTreeSet<String> = b_files.keys().cloned().collect();
    let a_then: BTreeSet<String> = read.files(1).difference(&b_names).cloned().collect();
    let a_now: BTreeSet<String> = read.files(2).difference(&b_names).cloned().collect();
    assert_eq!(a_then.len(), 4, "{a_then:?}");
    assert_eq!(a_now.len(), 2, "{a_now:?}");
    assert!(a_then.is_disjoint(&a_now));
    assert!(b_names.is_subset(&read.files(2)));
    let now = snapshot(&dest);
    for (name, bytes) in &b_files {
        assert!(now.get(name) == Some(bytes), "{name} changed");
    }
    // The removed files stay on disk for readers of versions 0 and 1.
    let everything: BTreeSet<String> = a_then.union(&a_now).chain(&b_names).cloned().collect();
    assert_eq!(data_files(&dest), everything);
}

#[test]
fn a_report_with_a_new_column_evolves_the_table_and_older_rows_read_it_as_null() {
    let fixture = Fixture::new();
    // `x` is a float in the table; the second report's integers widen into it.
    let a: Vec<Value> = (0..6)
        .map(|i| json!({"i": i, "date": format!("2025-03-0{}", 1 + i % 2), "x": i as f64 + 0.5}))
        .collect();
    let b: Vec<Value> = (10..14)
        .map(|i| json!({"i": i, "date": "2025-03-02", "x": i, "extra": format!("e{i}")}))
        .collect();
    fixture.report_rows("a", &a).report_rows("b", &b);
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("table");
    success(&sandbox.export(&["a"], &dest, &TABLE));
    success(&sandbox.export(&["b"], &dest, &TABLE));

    let read = read_delta(&dest);
    assert_eq!(read.version, 1);
    assert_eq!(
        read.schema,
        [
            ("i".to_owned(), "long".to_owned()),
            ("date".to_owned(), "date".to_owned()),
            ("x".to_owned(), "double".to_owned()),
            ("extra".to_owned(), "string".to_owned()),
        ]
    );
    let mut want = as_rows(&a);
    for row in &mut want {
        row.insert("extra".into(), Value::Null);
    }
    for row in &b {
        let mut row = row.as_object().unwrap().clone();
        let x = row["x"].as_i64().unwrap() as f64;
        row.insert("x".into(), json!(x));
        want.push(row);
    }
    let got = read.rows_by(1, "i");
    assert_same_rows(&got, &want);
    assert!(got[..6].iter().all(|r| r["extra"].is_null()), "{got:?}");
    assert!(got[6..].iter().all(|r| r["x"].is_f64()), "{got:?}");
    // Version 0 had no `extra` column.
    assert_same_rows(&read.rows_by(0, "i"), &as_rows(&a));
    assert!(!read.rows_by(0, "i")[0].contains_key("extra"));
}

#[test]
fn a_changed_type_or_partitioning_is_refused_and_publishes_nothing() {
    let fixture = Fixture::new();
    let rows = |x: Value| -> Vec<Value> {
        (0..4)
            .map(|i| json!({"i": i, "date": "2025-03-01", "x": x.clone()}))
            .collect()
    };
    fixture
        .report_rows("ints", &rows(json!(7)))
        .report_rows("texts", &rows(json!("seven")))
        .report_rows("floats", &rows(json!(7.5)))
        .report_rows("more", &rows(json!(8)));
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("table");
    success(&sandbox.export(&["ints"], &dest, &TABLE));
    let before = snapshot(&dest);

    let cases: [(&str, &[&str], &str); 4] = [
        (
            "texts",
            &TABLE,
            "column \"x\" is Utf8 here but Int64 in the table",
        ),
        // A float does not widen into an integer column.
        (
            "floats",
            &TABLE,
            "column \"x\" is Float64 here but Int64 in the table",
        ),
        (
            "more",
            &DELTA,
            "partitioned by [] here but by [date] in the table",
        ),
        (
            "more",
            &["--table-format", "delta", "--partition-by", "i"],
            "partitioned by [i] here but by [date] in the table",
        ),
    ];
    for (report, flags, difference) in cases {
        let error = failure(&sandbox.export(&[report], &dest, flags), 1);
        assert!(
            error.contains(&format!(
                "the schema of report {report} does not fit the Delta table"
            )),
            "{error}"
        );
        assert!(error.contains(difference), "{difference}\n{error}");
        assert!(error.contains("nothing was published"), "{error}");
        assert_unchanged(&dest, &before);
    }
    let read = read_delta(&dest);
    assert_eq!(read.version, 0);
    assert_same_rows(&read.rows_by(0, "i"), &as_rows(&rows(json!(7))));
    // The same shape still commits.
    success(&sandbox.export(&["more"], &dest, &TABLE));
    assert_eq!(read_delta(&dest).version, 1);
}

/// `count` completed reports `r00`…: report `n` has rows `i` in `n*5..n*5+5` over two dates.
fn numbered_reports(count: i64) -> (Fixture, Vec<Value>) {
    let fixture = Fixture::new();
    let list: Vec<Value> = (0..count)
        .map(|n| json!({"id": format!("r{n:02}"), "status": "completed", "report_type": "t"}))
        .collect();
    fixture.reports(&Value::Array(list));
    let mut all = Vec::new();
    for n in 0..count {
        let rows = dated_rows(n * 5..n * 5 + 5, 2, 0.25);
        fixture.report_rows(&format!("r{n:02}"), &rows);
        all.extend(rows);
    }
    (fixture, all)
}

#[test]
fn concurrent_shard_workers_commit_every_report_exactly_once() {
    const REPORTS: i64 = 12;
    let (fixture, all) = numbered_reports(REPORTS);
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("shared");
    let ids: Vec<String> = (0..REPORTS).map(|n| format!("\"r{n:02}\"")).collect();
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            "[[job]]\nname = \"all\"\nkind = \"reports\"\nids = [{}]\nout = \"{}\"\n\
             partition_by = [\"date\"]\ntable_format = \"delta\"\n",
            ids.join(", "),
            dest.display()
        ),
    );
    let workers = |round: u32| -> Vec<String> {
        let workers: Vec<_> = (0..3)
            .map(|k| {
                let summary = dir.path().join(format!("worker{k}-{round}.json"));
                let mut command = run_command(binary(), &file, &summary);
                command
                    .args(["--shard", &format!("{k}/3")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                (command.spawn().unwrap(), summary)
            })
            .collect();
        let mut seen = Vec::new();
        for (child, summary) in workers {
            let output = child.wait_with_output().unwrap();
            success(&output);
            let mine = reports_of(&read_summary(&summary), "all");
            assert!(
                mine.len() < REPORTS as usize,
                "each worker a share: {mine:?}"
            );
            seen.extend(mine);
        }
        seen.sort();
        seen
    };
    let every: Vec<String> = (0..REPORTS).map(|n| format!("r{n:02}")).collect();
    assert_eq!(workers(1), every, "every report exactly once");

    let read = read_delta(&dest);
    assert_eq!(read.version, REPORTS as u64 - 1, "{:?}", read.history);
    let mut committed: Vec<&str> = read
        .history
        .iter()
        .map(|(_, _, p)| p["kargo.reportId"].as_str())
        .collect();
    committed.sort_unstable();
    assert_eq!(committed, every, "one commit per report");
    assert_same_rows(&read.rows_by(read.version, "i"), &as_rows(&all));
    assert_eq!(read.files(read.version), data_files(&dest));
    assert_eq!(read.files(read.version).len(), 2 * REPORTS as usize);
    assert!(!dest.join("_staging").exists(), "{:?}", files(&dest));

    // Again: the workers replace their reports concurrently (or find nothing left to do);
    // either way the latest version holds every row once and names every live file.
    let again = workers(2);
    let read = read_delta_with(dest.to_str().unwrap(), json!({"rows": true}));
    assert_eq!(
        read.version,
        REPORTS as u64 - 1 + again.len() as u64,
        "{again:?}"
    );
    assert_same_rows(&read.rows_by(read.version, "i"), &as_rows(&all));
    assert_eq!(read.files(read.version).len(), 2 * REPORTS as usize);
}

/// Starts `export report <report> --out dest` into a Delta table partitioned by date.
fn start_export(sandbox: &Sandbox, report: &str, dest: &Path) -> Child {
    sandbox
        .export_command(report, dest, &TABLE)
        .spawn()
        .expect("start export")
}

#[test]
fn exports_started_together_into_a_new_table_all_commit() {
    const REPORTS: i64 = 6;
    let (fixture, all) = numbered_reports(REPORTS);
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    // Each round races to create a new table: the writers that lose must commit on the table
    // the winner created.
    for round in 0..16 {
        let dest = dir.path().join(format!("table{round}"));
        let children: Vec<_> = (0..REPORTS)
            .map(|n| start_export(&sandbox, &format!("r{n:02}"), &dest))
            .collect();
        for child in children {
            success(&child.wait_with_output().unwrap());
        }
        let read = read_delta_with(dest.to_str().unwrap(), json!({"rows": true}));
        assert_eq!(read.version, REPORTS as u64 - 1, "round {round}");
        assert_same_rows(&read.rows_by(read.version, "i"), &as_rows(&all));
        assert_eq!(read.files(read.version), data_files(&dest), "round {round}");
    }
}

#[test]
fn exports_of_one_report_started_together_leave_a_readable_table() {
    let (fixture, all) = numbered_reports(1);
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("table");
    success(&sandbox.export(&["r00"], &dest, &TABLE));
    let table = dest.to_str().unwrap();
    let mut committed = 0;
    for round in 1..=3 {
        let children: Vec<_> = (0..4)
            .map(|_| start_export(&sandbox, "r00", &dest))
            .collect();
        for child in children {
            // Each export commits, or fails with its one error line and no commit.
            let output = child.wait_with_output().unwrap();
            if output.status.success() {
                committed += 1;
            } else {
                failure(&output, 1);
            }
        }
        // Every file the latest version names is still there, and it holds the rows once.
        let read = read_delta_with(table, json!({}));
        assert_eq!(read.version, committed, "{:?}", read.history);
        let on_disk = data_files(&dest);
        for file in read.files(read.version) {
            assert!(
                on_disk.contains(&file),
                "round {round}: version {} names {file}, which is gone; on disk: {on_disk:?}",
                read.version
            );
        }
        let read = read_delta_with(table, json!({"rows": true}));
        assert_same_rows(&read.rows_by(read.version, "i"), &as_rows(&all));
    }
}

/// Rows of the large synthetic report `big` in the SIGKILL test.
const BIG_ROWS: u64 = 100_000;
/// Rows of the earlier, committed export of `big`.
const EARLIER_ROWS: u64 = 20_000;

/// Row count, sums of `impressions` and `clicks`, null `conversions` and rows per date of the
/// synthetic report `(rows, seed 1)`, from the generator's rows; in the reader's digest form.
fn synthetic_digest(rows: u64) -> Value {
    let report = SyntheticReport::new(rows, 1);
    let (mut impressions, mut clicks, mut nulls) = (0_i64, 0_i64, 0_u64);
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    let mut text = String::new();
    for i in 0..rows {
        text.clear();
        report.write_row(i, &mut text);
        let row: Value = serde_json::from_str(&text).unwrap();
        impressions += row["impressions"].as_i64().unwrap();
        clicks += row["clicks"].as_i64().unwrap();
        nulls += u64::from(row["conversions"].is_null());
        *by.entry(row["date"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    json!({
        "rows": rows,
        "sums": {"impressions": impressions, "clicks": clicks},
        "nulls": {"conversions": nulls},
        "by": by,
    })
}

/// What a digest read asks for.
fn digest_spec(versions: Value) -> Value {
    json!({"versions": versions, "digest": {
        "sums": ["impressions", "clicks"], "nulls": ["conversions"], "by": "date"}})
}

/// Starts `export report big --out dest` into a Delta table partitioned by date.
fn start_big(sandbox: &Sandbox, dest: &Path, tmp: &Path) -> Child {
    sandbox
        .export_command("big", dest, &TABLE)
        .env("TMPDIR", tmp)
        .spawn()
        .expect("start export")
}

/// When to kill the export.
#[derive(Debug, Clone, Copy)]
enum Moment {
    After(Duration),
    /// A file exists under `DEST/_staging`.
    Staging,
    /// A data file the table does not name yet is published (outside `_staging`): between
    /// publishing and the commit.
    Published,
}

/// Waits for `moment` and kills the export with SIGKILL; returns whether it was still running
/// (a `Published` moment can be missed when the commit follows the publishing at once).
fn kill_at(mut child: Child, dest: &Path, known: &BTreeSet<String>, moment: Moment) -> bool {
    let started = Instant::now();
    loop {
        let reached = match moment {
            Moment::After(delay) => started.elapsed() >= delay,
            Moment::Staging => !files(&dest.join("_staging")).is_empty(),
            Moment::Published => !data_files(dest).is_subset(known),
        };
        if reached {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            assert!(
                matches!(moment, Moment::Published),
                "the export ended ({status}) before {moment:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            return false;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{moment:?} not reached"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Every data file under `dest` is named by some version of the table.
fn assert_every_file_in_some_version(dest: &Path) {
    let read = read_delta_with(dest.to_str().unwrap(), json!({"versions": "all"}));
    let named: BTreeSet<String> = (0..=read.version).flat_map(|v| read.files(v)).collect();
    let on_disk = data_files(dest);
    let stray: Vec<&String> = on_disk.difference(&named).collect();
    assert!(stray.is_empty(), "files no version names: {stray:?}");
    for file in files(dest) {
        assert!(
            !file.starts_with('_') || file.starts_with("_delta_log/"),
            "{file} left outside the table"
        );
    }
}

#[test]
fn sigkill_shows_readers_the_old_or_the_new_rows_and_the_next_export_deletes_orphans() {
    let expected = std::thread::spawn(|| synthetic_digest(BIG_ROWS));
    let sandbox = std::thread::spawn(|| {
        Sandbox::start(&[
            "--synthetic",
            &format!("big={BIG_ROWS}"),
            "--page-size",
            "5000",
        ])
    });
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let dest = tmp.path().join("table");
    {
        let small = Sandbox::start(&[
            "--synthetic",
            &format!("big={EARLIER_ROWS}"),
            "--page-size",
            "5000",
        ]);
        success(&small.export(&["big"], &dest, &TABLE));
    }
    let earlier = synthetic_digest(EARLIER_ROWS);
    let table = dest.to_str().unwrap().to_owned();
    let read = read_delta_with(&table, digest_spec(json!("latest")));
    assert_eq!(read.version, 0);
    assert_eq!(read.at(0)["digest"], earlier);
    let earlier_files = read.files(0);
    let expected = expected.join().unwrap();

    let sandbox = sandbox.join().unwrap();
    let moments = [
        Moment::After(Duration::from_millis(150)),
        Moment::Staging,
        Moment::Published,
        Moment::Published,
    ];
    for moment in moments {
        let known = data_files(&dest);
        let killed = kill_at(start_big(&sandbox, &dest, &spool), &dest, &known, moment);
        let read = read_delta_with(&table, digest_spec(json!("latest")));
        let digest = &read.at(read.version)["digest"];
        let rows = read.param(read.version, "kargo.rows");
        if *digest == earlier {
            assert_eq!(rows, EARLIER_ROWS.to_string(), "{moment:?}");
        } else {
            assert_eq!(*digest, expected, "a mix after SIGKILL at {moment:?}");
            assert_eq!(rows, BIG_ROWS.to_string(), "{moment:?}");
        }
        assert!(
            killed || *digest == expected,
            "{moment:?}: the export ended but did not commit"
        );
        // The table's live files all exist (the read above opened them) and nothing outside
        // the table's folders changed but new data files.
        for file in files(&dest) {
            assert!(
                file.starts_with("date=")
                    || file.starts_with("_delta_log/")
                    || file.starts_with("_staging/"),
                "{file}"
            );
        }
    }

    let output = start_big(&sandbox, &dest, &spool)
        .wait_with_output()
        .unwrap();
    success(&output);
    let read = read_delta_with(&table, digest_spec(json!("latest")));
    assert_eq!(read.at(read.version)["digest"], expected);
    assert_eq!(read.param(read.version, "kargo.rows"), BIG_ROWS.to_string());
    assert_every_file_in_some_version(&dest);
    assert!(!dest.join("_staging").exists(), "{:?}", files(&dest));
    assert_eq!(files(&spool), Vec::<String>::new(), "spool left in TMPDIR");
    // Version 0's files stay for time travel.
    assert!(earlier_files.is_subset(&data_files(&dest)));
    let old = read_delta_with(&table, digest_spec(json!([0])));
    assert_eq!(old.at(0)["digest"], earlier);

    // A data file of a run no commit records, with the run marker of a process that is gone
    // (as a killed run leaves them), goes with the next export; the files of every committed
    // run stay. A data file of a run still at work (its process runs: this one) stays.
    let live = read.files(read.version);
    let model = live.iter().next().unwrap();
    let folder = model.rsplit_once('/').unwrap().0;
    let orphan = format!("{folder}/big.20990101T000000Z-dead00.00000.parquet");
    std::fs::copy(dest.join(model), dest.join(&orphan)).unwrap();
    let at_work = format!("{folder}/big.20990101T000000Z-a11ve0.00000.parquet");
    std::fs::copy(dest.join(model), dest.join(&at_work)).unwrap();
    // A run marker, as an export makes it: `_staging/<run>/<report>.<pid>.<host>.run`.
    let marker = |run: &str, pid: u32| {
        let dir = dest.join("_staging").join(run);
        std::fs::create_dir_all(&dir).unwrap();
        let marker = RunMarker {
            pid,
            ..RunMarker::ours()
        };
        std::fs::write(dir.join(format!("big{}", marker.file_suffix())), "").unwrap();
    };
    marker("20990101T000000Z-dead00", i32::MAX as u32);
    marker("20990101T000000Z-a11ve0", std::process::id());
    // And each an upload in progress (a local one is `<staged name>#<n>`, hidden from listings).
    let partial = |run: &str| {
        let file = dest
            .join("_staging")
            .join(run)
            .join(folder)
            .join(format!("big.{run}.00001.parquet.tmp#1"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "PAR1").unwrap();
        file
    };
    let dead_upload = partial("20990101T000000Z-dead00");
    let live_upload = partial("20990101T000000Z-a11ve0");
    let before_rerun = data_files(&dest);
    success(
        &start_big(&sandbox, &dest, &spool)
            .wait_with_output()
            .unwrap(),
    );
    let after = data_files(&dest);
    assert!(!after.contains(&orphan), "{orphan} was not deleted");
    assert!(
        after.contains(&at_work),
        "{at_work} of a run at work was deleted"
    );
    assert_eq!(
        files(&dest.join("_staging")).len(),
        2,
        "the marker and the upload of a run at work stay, and only they"
    );
    assert!(
        live_upload.exists(),
        "the upload of a run at work was deleted"
    );
    assert!(!dead_upload.exists(), "the upload of a killed run stayed");
    assert!(
        !dest.join("_staging/20990101T000000Z-dead00").exists(),
        "the marker of a killed run stayed"
    );
    std::fs::remove_file(dest.join(&at_work)).unwrap();
    std::fs::remove_dir_all(dest.join("_staging")).unwrap();
    for file in before_rerun
        .iter()
        .filter(|f| **f != orphan && **f != at_work)
    {
        assert!(
            after.contains(file),
            "{file} of a committed run was deleted"
        );
    }
    assert_every_file_in_some_version(&dest);
    let read = read_delta_with(&table, digest_spec(json!("latest")));
    assert_eq!(read.at(read.version)["digest"], expected);
    assert!(run_of(&orphan) == "20990101T000000Z-dead00");
}

#[test]
fn a_table_on_s3_is_committed_twice_and_both_versions_read_back_over_s3() {
    use crate::s3_support::{Bucket, endpoint, with_s3};
    let bucket = Bucket::create("delta");
    let out = bucket.url("table");
    let old = dated_rows(0..30, 3, 1.5);
    let new = dated_rows(100..125, 5, 0.75);
    for rows in [&old, &new] {
        let fixture = Fixture::new();
        fixture.report_rows("a", rows);
        let sandbox = Sandbox::with_data(fixture.path(), &[]);
        success(
            &with_s3(sandbox.command())
                .args(["export", "report", "a", "--out", &out])
                .args(TABLE)
                .output()
                .unwrap(),
        );
    }
    bucket.assert_no_leftovers();
    let keys = bucket.keys();
    assert!(
        keys.contains(&"table/_delta_log/00000000000000000001.json".to_owned()),
        "{keys:?}"
    );
    // moto checks no signature: any key reads.
    let spec = json!({
        "versions": "all",
        "rows": true,
        "storage_options": {
            "AWS_ENDPOINT_URL": endpoint(),
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "reader",
            "AWS_SECRET_ACCESS_KEY": "reader",
            "AWS_REGION": "us-east-1",
        },
    });
    let read = read_delta_with(&out, spec);
    assert_eq!(read.version, 1);
    assert_eq!(read.partition_columns, ["date"]);
    assert_same_rows(&read.rows_by(0, "i"), &as_rows(&old));
    assert_same_rows(&read.rows_by(1, "i"), &as_rows(&new));
    assert_eq!(read.param(1, "kargo.rows"), "25");
    assert_eq!(read.files(0).len(), 3);
    assert_eq!(read.files(1).len(), 5);
    // Version 0's objects stay for time travel: 3 + 5 data objects.
    let data: Vec<&String> = keys.iter().filter(|k| k.ends_with(".parquet")).collect();
    assert_eq!(data.len(), 8, "{keys:?}");
}

/// Checks a table's file statistics with `deltalake` and pyarrow, printing JSON: for every live
/// file, the bounds and null counts its `add` records against the values the file holds
/// (`mismatches`, empty when they agree; a bound may be absent, never wrong), how many bounds
/// were compared, and for each filter the rows a stats-pruned dataset scan returns against the
/// rows of the whole table that match (`filtered`).
const STATS_CHECKER: &str = r#"
import json, os, sys
import pyarrow.compute as pc, pyarrow.dataset as ds, pyarrow.parquet as pq
from deltalake import DeltaTable
spec = json.loads(sys.argv[1])
t = DeltaTable(spec["table"])
import pyarrow as pa
adds = pa.table(t.get_add_actions(flatten=True)).to_pylist()
partitions = set(t.metadata().partition_columns)
mismatches, compared = [], 0
for add in adds:
    data = pq.read_table(os.path.join(spec["table"], add["path"]))
    if add["num_records"] != data.num_rows:
        mismatches.append([add["path"], "num_records", add["num_records"], data.num_rows])
    for name in data.column_names:
        column = data.column(name)
        if f"null_count.{name}" in add and add[f"null_count.{name}"] != column.null_count:
            mismatches.append([add["path"], "null_count." + name, add[f"null_count.{name}"], column.null_count])
        for kind, actual in (("min", pc.min(column).as_py()), ("max", pc.max(column).as_py())):
            recorded = add.get(f"{kind}.{name}")
            if recorded is None:
                continue
            compared += 1
            if recorded != actual:
                mismatches.append([add["path"], kind + "." + name, str(recorded), str(actual)])
whole = t.to_pyarrow_table()
filtered = {}
for text in spec["filters"]:
    expr = eval(text, {"pc": pc, "ds": ds})
    pruned = t.to_pyarrow_dataset().to_table(filter=expr).num_rows
    filtered[text] = [pruned, whole.filter(expr).num_rows]
sys.stdout.write(json.dumps({"files": len(adds), "compared": compared, "mismatches": mismatches, "filtered": filtered}))
sys.stdout.flush()
os._exit(0)
"#;

#[test]
fn every_files_statistics_hold_and_readers_that_skip_by_them_lose_no_row() {
    let sandbox = Sandbox::start(&["--synthetic", "big=20000", "--page-size", "5000"]);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("table");
    let mut args = vec!["--partition-by", "country"];
    args.extend(DELTA);
    success(&sandbox.export(&["big"], &dest, &args));
    let filters = [
        "pc.field('impressions') > 40000",
        "pc.field('clicks') == 0",
        "pc.field('spend') < 1.0",
        "pc.field('date') == pc.scalar(__import__('datetime').date(2025, 3, 7))",
        "pc.field('site_domain') >= 'w'",
        "pc.field('conversions').is_null()",
    ];
    let spec = json!({"table": dest.to_str().unwrap(), "filters": filters});
    let output = Command::new("python3")
        .args(["-c", STATS_CHECKER, &spec.to_string()])
        .output()
        .expect("python3 with deltalake (pip install deltalake)");
    let checked: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(checked["files"].as_u64().unwrap() > 10, "{checked}");
    assert!(
        checked["compared"].as_u64().unwrap() > 100,
        "the files record bounds: {checked}"
    );
    assert_eq!(
        checked["mismatches"],
        json!([]),
        "recorded statistics differ from the files"
    );
    for (filter, counts) in checked["filtered"].as_object().unwrap() {
        let (pruned, all) = (counts[0].as_u64().unwrap(), counts[1].as_u64().unwrap());
        assert_eq!(pruned, all, "{filter}: a stats-pruned scan lost rows");
        assert!(
            all > 0,
            "{filter} matches rows, so the comparison means something"
        );
    }
}
