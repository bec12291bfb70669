//! Schema drift between the reports of one destination (`--on-schema-change`, jobs file
//! `on_schema_change`): `fail` publishes nothing and names every difference, `evolve` leaves
//! every file with the merged schema (read back value by value with pyarrow.dataset, given no
//! schema), `allow` publishes and records the drift; type conflicts; and a column added to a
//! report type between two runs of a job.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::runs::{jobs_file, run};
use crate::util::*;

/// Report of 20 columns (delivery_by_day) and one of 8 (delivery_by_site) in the sample data.
const BY_DAY: &str = "rpt_7f3a9c21";
const BY_SITE: &str = "rpt_2b8e4d10";

/// The sample data's rows of `report`.
fn sample_rows(report: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample_data/completed-reports")
        .join(format!("{report}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Reads `dest` with `pyarrow.dataset(dest, partitioning="hive")`, given no schema, and compares
/// it row by row with `expected` (every row padded with nulls to the dataset's columns); returns
/// the dataset's column names. Dates and timestamps compare as their ISO text, numbers by value.
fn pyarrow_matches(dest: &Path, expected: &[Value]) -> Vec<String> {
    const SCRIPT: &str = r#"
import collections, datetime, json, sys
import pyarrow.dataset as ds
table = ds.dataset(sys.argv[1], partitioning="hive", format="parquet").to_table()
expected = json.load(sys.stdin)
columns = table.schema.names
def norm(v):
    if v is None: return None
    if isinstance(v, bool): return ("b", v)
    if isinstance(v, (int, float)): return ("n", float(v))
    if isinstance(v, datetime.datetime): return ("s", v.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    if isinstance(v, datetime.date): return ("s", v.isoformat())
    if isinstance(v, str): return ("s", v)
    return ("j", json.dumps(v, sort_keys=True))
def key(row): return tuple(repr(norm(row.get(c))) for c in columns)
got = collections.Counter(key(r) for r in table.to_pylist())
want = collections.Counter(key(r) for r in expected)
missing = want - got
extra = got - want
print(json.dumps({"columns": columns, "rows": table.num_rows, "missing": len(missing), "extra": len(extra),
                  "example": [list(k) for k in list(missing)[:1] + list(extra)[:1]]}))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(dest)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with pyarrow (pip install pyarrow)");
    let input = Value::Array(expected.to_vec()).to_string();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["rows"], expected.len(), "{report}");
    assert_eq!(
        (report["missing"].as_u64(), report["extra"].as_u64()),
        (Some(0), Some(0)),
        "{report}"
    );
    report["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

/// Column names of a manifest's schema.
fn manifest_columns(dest: &Path, report: &str) -> Vec<(String, String)> {
    manifest(dest, report)["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn fail_publishes_nothing_and_names_every_difference_and_report() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("mix");
    success(&sandbox.export(&[BY_DAY], &dest, &["--partition-by", "date"]));
    let before = snapshot(&dest);
    let output = sandbox.export(&[BY_SITE], &dest, &["--partition-by", "date"]);
    let error = failure(&output, 1);
    for part in [
        "the schema of report rpt_2b8e4d10 differs from the other reports in",
        "new columns \"publisher_name\" (Utf8), \"deal_id\" (Utf8), \"viewability_rate\" (Float64) not in report rpt_7f3a9c21",
        "no columns \"advertiser_id\" (Int64), \"advertiser_name\" (Utf8)",
        "\"last_updated_at\" (Timestamp(µs, \"UTC\")) of report rpt_7f3a9c21",
        "nothing was published",
        "--on-schema-change evolve or allow",
    ] {
        assert!(error.contains(part), "{part}\n{error}");
    }
    assert_unchanged(&dest, &before);
    // A report that differs only by its rows (the same report again) is no drift.
    success(&sandbox.export(&[BY_DAY], &dest, &["--partition-by", "date"]));
}

#[test]
fn evolve_gives_every_file_the_merged_schema_and_pyarrow_reads_every_value() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("mix");
    success(&sandbox.export(&[BY_DAY], &dest, &["--partition-by", "date"]));
    let old_files = parquet_files(&dest);
    let stdout = success(&sandbox.export(
        &[BY_SITE],
        &dest,
        &["--partition-by", "date", "--on-schema-change", "evolve"],
    ));
    assert!(
        stdout.contains("exported rpt_2b8e4d10: 600 rows"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rewrote rpt_7f3a9c21 to the merged schema: 1500 rows, 30 files"),
        "{stdout}"
    );
    // Every file has one schema: the 23 non-partition columns of both reports.
    let schema = one_schema(&dest);
    assert_eq!(schema.fields().len(), 23, "{schema:?}");
    for file in &old_files {
        assert!(!file.exists(), "{} was not replaced", file.display());
    }
    let mut expected = sample_rows(BY_DAY);
    expected.extend(sample_rows(BY_SITE));
    let columns = pyarrow_matches(&dest, &expected);
    assert_eq!(columns.len(), 24);
    for column in [
        "advertiser_id",
        "publisher_name",
        "viewability_rate",
        "date",
    ] {
        assert!(columns.contains(&column.to_owned()), "{columns:?}");
    }
    // Both manifests hold the merged schema; the new report's records how it differed.
    assert_eq!(manifest_columns(&dest, BY_DAY).len(), 24);
    let merged = manifest_columns(&dest, BY_SITE);
    assert_eq!(merged.len(), 24);
    assert!(merged.contains(&("advertiser_id".into(), "Int64".into())));
    let drift = &manifest(&dest, BY_SITE)["schema_drift"];
    assert!(
        drift
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["change"] == "added"
                && d["column"] == "publisher_name"
                && d["reports"] == json!([BY_DAY])),
        "{drift}"
    );
    // Exporting the first report again joins the merged schema without rewriting the other.
    let site_files = parquet_files(&dest)
        .into_iter()
        .filter(|f| f.to_string_lossy().contains(BY_SITE))
        .collect::<Vec<_>>();
    let stdout = success(&sandbox.export(
        &[BY_DAY],
        &dest,
        &["--partition-by", "date", "--on-schema-change", "evolve"],
    ));
    assert!(!stdout.contains("rewrote"), "{stdout}");
    assert!(site_files.iter().all(|f| f.exists()));
    assert_eq!(one_schema(&dest).fields().len(), 23);
    pyarrow_matches(&dest, &expected);
}

#[test]
fn allow_publishes_and_records_the_drift_in_the_manifest() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("mix");
    success(&sandbox.export(&[BY_DAY], &dest, &[]));
    let stdout = success(&sandbox.export(&[BY_SITE], &dest, &["--on-schema-change", "allow"]));
    assert!(
        stdout.contains("exported rpt_2b8e4d10: 600 rows"),
        "{stdout}"
    );
    assert_eq!(manifest_columns(&dest, BY_DAY).len(), 21);
    assert_eq!(manifest_columns(&dest, BY_SITE).len(), 9);
    let drift = manifest(&dest, BY_SITE)["schema_drift"].clone();
    let changes: Vec<(String, String)> = drift
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["change"].as_str().unwrap().into(),
                d["column"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        changes.iter().filter(|(c, _)| c == "added").count(),
        3,
        "{drift}"
    );
    assert_eq!(
        changes.iter().filter(|(c, _)| c == "missing").count(),
        15,
        "{drift}"
    );
    assert!(changes.contains(&("missing".into(), "campaign_name".into())));
    assert!(manifest(&dest, BY_DAY).get("schema_drift").is_none());
    assert_eq!(read_dataset(&dest).len(), 2100);
}

#[test]
fn types_merge_by_the_export_rules_and_a_conflict_fails_even_evolve() {
    let fixture = Fixture::new();
    fixture
        .report_rows(
            "ints",
            &[json!({"k": "a", "x": 1}), json!({"k": "b", "x": 2})],
        )
        .report_rows("floats", &[json!({"k": "c", "x": 2.5})])
        .report_rows("texts", &[json!({"k": "d", "x": "seven"})])
        .report_rows("objects", &[json!({"k": "e", "x": {"y": 1}})]);
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("typed");
    let evolve = ["--on-schema-change", "evolve"];
    success(&sandbox.export(&["ints"], &dest, &[]));
    success(&sandbox.export(&["floats"], &dest, &evolve));
    let schema = one_schema(&dest);
    assert_eq!(
        fields(&schema)[1],
        ("x".to_owned(), arrow::datatypes::DataType::Float64)
    );
    let floats = [
        json!({"k": "a", "x": 1.0}),
        json!({"k": "b", "x": 2.0}),
        json!({"k": "c", "x": 2.5}),
    ];
    pyarrow_matches(&dest, &floats);
    // Numbers and text become text, numbers as their JSON text.
    success(&sandbox.export(&["texts"], &dest, &evolve));
    assert_eq!(
        fields(&one_schema(&dest))[1].1,
        arrow::datatypes::DataType::Utf8
    );
    let texts = [
        json!({"k": "a", "x": "1"}),
        json!({"k": "b", "x": "2"}),
        json!({"k": "c", "x": "2.5"}),
        json!({"k": "d", "x": "seven"}),
    ];
    pyarrow_matches(&dest, &texts);
    // A struct against text has no merged type: refused, nothing written.
    let before = snapshot(&dest);
    let error = failure(&sandbox.export(&["objects"], &dest, &evolve), 1);
    assert!(error.contains("column \"x\" is Struct"), "{error}");
    assert!(
        error.contains("but Utf8 in reports floats, ints, texts"),
        "{error}"
    );
    assert!(error.contains("no merged schema"), "{error}");
    assert_unchanged(&dest, &before);
    // Other partition columns never merge either.
    let error = failure(
        &sandbox.export(
            &["floats"],
            &dest,
            &["--partition-by", "k", "--on-schema-change", "evolve"],
        ),
        1,
    );
    assert!(
        error.contains("partitioned by [k] here but by [] in reports ints, texts"),
        "{error}"
    );
    assert_unchanged(&dest, &before);
}

#[test]
fn a_column_added_to_a_report_type_between_two_runs_fails_then_evolves() {
    let fixture = Fixture::new();
    let request = |id: &str| json!({"id": id, "report_type": "daily", "status": "completed"});
    fixture
        .reports(&json!([request("r1")]))
        .report_rows("r1", &[json!({"date": "2025-03-01", "n": 1})]);
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("daily");
    let job = |policy: &str| {
        format!(
            "[[job]]\nname = \"daily\"\nkind = \"new-reports\"\nout = \"{}\"\npartition_by = [\"date\"]\n{policy}",
            dest.display()
        )
    };
    let file = jobs_file(dir.path(), &sandbox, &job(""));
    let (output, _) = run(&file, &[]);
    success(&output);
    // The API adds a column to the report type (the sandbox reads its data when it starts).
    fixture
        .reports(&json!([request("r1"), request("r2")]))
        .report_rows(
            "r2",
            &[json!({"date": "2025-03-02", "n": 2, "extra": "new"})],
        );
    drop(sandbox);
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let file = jobs_file(dir.path(), &sandbox, &job(""));
    let (output, summary) = run(&file, &[]);
    let error = failure(&output, 1);
    assert!(
        error.contains("new column \"extra\" (Utf8) not in report r1"),
        "{error}"
    );
    assert_eq!(summary["jobs"][0]["status"], "failed");
    assert!(!dest.join("_manifests/r2.json").exists());
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &job("on_schema_change = \"evolve\"\n"),
    );
    let (output, summary) = run(&file, &[]);
    success(&output);
    let outcome = &summary["jobs"][0];
    assert_eq!(outcome["reports"], json!(["r2"]));
    assert_eq!(outcome["rewritten"], json!(["r1"]));
    assert_eq!(outcome["schema_drift"]["r2"][0]["change"], "added");
    assert_eq!(outcome["schema_drift"]["r2"][0]["column"], "extra");
    pyarrow_matches(
        &dest,
        &[
            json!({"date": "2025-03-01", "n": 1, "extra": null}),
            json!({"date": "2025-03-02", "n": 2, "extra": "new"}),
        ],
    );
}

#[test]
fn evolve_rewrites_the_other_reports_on_s3_and_fail_leaves_the_bucket_as_it_was() {
    use crate::s3_support::{Bucket, with_s3};
    let bucket = Bucket::create("evolve");
    let sandbox = Sandbox::start(&[]);
    let out = bucket.url("mix");
    let export = |report: &str, extra: &[&str]| {
        with_s3(sandbox.command())
            .args([
                "export",
                "report",
                report,
                "--out",
                &out,
                "--partition-by",
                "date",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    success(&export(BY_DAY, &[]));
    let before = bucket.objects();
    let error = failure(&export(BY_SITE, &[]), 1);
    assert!(error.contains("nothing was published"), "{error}");
    assert_eq!(bucket.objects(), before, "fail changed the bucket");
    let stdout = success(&export(BY_SITE, &["--on-schema-change", "evolve"]));
    assert!(
        stdout.contains("rewrote rpt_7f3a9c21 to the merged schema: 1500 rows, 30 files"),
        "{stdout}"
    );
    bucket.assert_no_leftovers();
    let local = bucket.download("mix");
    assert_eq!(one_schema(local.path()).fields().len(), 23);
    let mut expected = sample_rows(BY_DAY);
    expected.extend(sample_rows(BY_SITE));
    assert_eq!(pyarrow_matches(local.path(), &expected).len(), 24);
}
