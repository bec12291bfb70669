//! Exporting the bundled sample reports end to end.

use serde_json::Value;

use crate::util::*;

const SAMPLE_A: &str = include_str!("../../sample_data/completed-reports/rpt_7f3a9c21.json");

#[test]
fn sample_report_round_trips_through_partitioned_parquet() {
    let sandbox = Sandbox::start(&["--page-size", "97"]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let stdout = success(&sandbox.run(&[
        "export",
        "report",
        "rpt_7f3a9c21",
        "--out",
        dest.to_str().unwrap(),
        "--partition-by",
        "date",
    ]));
    let source = source_rows(SAMPLE_A);
    assert!(
        stdout.contains(&format!("exported rpt_7f3a9c21: {} rows", source.len())),
        "{stdout}"
    );

    let files = parquet_files(&dest);
    let days: std::collections::BTreeSet<&str> =
        source.iter().map(|r| r["date"].as_str().unwrap()).collect();
    assert_eq!(files.len(), days.len(), "one file per day");
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("rpt_7f3a9c21."), "{name}");
        assert!(
            !file_schema(file)
                .fields()
                .iter()
                .any(|f| f.name() == "date"),
            "partition column is in the path"
        );
    }
    let read = read_dataset(&dest);
    assert_eq!(read.len(), source.len());
    let key = |row: &Row| {
        (
            row["date"].to_string(),
            row["line_item_id"].to_string(),
            row["creative_id"].to_string(),
            row["site_domain"].to_string(),
            row["device_type"].to_string(),
        )
    };
    let mut read = read;
    let mut source = source;
    read.sort_by_key(key);
    source.sort_by_key(key);
    for (got, want) in read.iter().zip(&source) {
        for (column, value) in want {
            let got_value = got.get(column).unwrap_or(&Value::Null);
            assert!(
                same_value(got_value, value),
                "column {column}: read {got_value}, source {value}"
            );
        }
    }
}

/// Compares a value read back with its source: numbers numerically, timestamps as instants.
fn same_value(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => {
            a.as_f64() == b.as_f64() && (a.as_i64() == b.as_i64())
        }
        (Value::String(a), Value::String(b)) if a != b => {
            match (
                chrono::DateTime::parse_from_rfc3339(a),
                chrono::DateTime::parse_from_rfc3339(b),
            ) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            }
        }
        _ => got == want,
    }
}
