//! Committing into a DEST that already holds exports: a re-export replaces exactly that report's
//! files (stale partitions included) and rewrites its manifest, other reports stay byte-identical,
//! and an empty report commits a manifest without data files.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::json;

use crate::util::*;

/// Relative paths of the `.parquet` files of `report` under `dest`.
fn report_files(dest: &Path, report: &str) -> BTreeSet<String> {
    files(dest)
        .into_iter()
        .filter(|f| f.ends_with(".parquet"))
        .filter(|f| {
            Path::new(f)
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&format!("{report}."))
        })
        .collect()
}

#[test]
fn re_exporting_a_report_replaces_exactly_its_files_and_manifest() {
    let old_rows = vec![
        json!({"id": 1, "date": "2025-03-01", "v": "old-1"}),
        json!({"id": 2, "date": "2025-03-02", "v": "old-2"}),
        json!({"id": 3, "date": "2025-03-02", "v": "old-3"}),
        json!({"id": 4, "date": "2025-03-03", "v": "old-4"}),
    ];
    // 2025-03-01 is gone, 2025-03-04 is new, the others hold different rows.
    let new_rows = vec![
        json!({"id": 12, "date": "2025-03-02", "v": "new-12"}),
        json!({"id": 13, "date": "2025-03-03", "v": "new-13"}),
        json!({"id": 14, "date": "2025-03-03", "v": "new-14"}),
        json!({"id": 15, "date": "2025-03-04", "v": "new-15"}),
        json!({"id": 16, "date": "2025-03-04", "v": "new-16"}),
    ];
    // Another report sharing the partition 2025-03-02 and owning 2025-03-09.
    let other_rows = vec![
        json!({"id": 100, "date": "2025-03-02", "v": "other"}),
        json!({"id": 101, "date": "2025-03-09", "v": "other"}),
    ];
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let by_date = ["--partition-by", "date"];

    let first = Fixture::new();
    first
        .report_rows("R", &old_rows)
        .report_rows("O", &other_rows);
    let first_run = {
        let sandbox = Sandbox::with_data(first.path(), &["--page-size", "2"]);
        success(&sandbox.export(&["O"], &dest, &by_date));
        success(&sandbox.export(&["R"], &dest, &by_date));
        manifest(&dest, "R")
    };
    assert_eq!(first_run["rows"], json!(old_rows.len()));
    let other_before: Vec<(String, Vec<u8>)> = files(&dest)
        .into_iter()
        .filter(|f| f.contains("/O.") || f == "_manifests/O.json")
        .map(|f| {
            let bytes = std::fs::read(dest.join(&f)).unwrap();
            (f, bytes)
        })
        .collect();
    assert_eq!(other_before.len(), 3, "two data files and a manifest of O");

    let second = Fixture::new();
    second
        .report_rows("R", &new_rows)
        .report_rows("O", &other_rows);
    let sandbox = Sandbox::with_data(second.path(), &["--page-size", "2"]);
    success(&sandbox.export(&["R"], &dest, &by_date));

    // R's dataset is exactly the new rows.
    let r_files = report_files(&dest, "R");
    let mut r_rows: Vec<Row> = r_files
        .iter()
        .flat_map(|f| read_file(&dest, &dest.join(f)))
        .collect();
    r_rows.sort_by_key(|r| r["id"].as_i64());
    assert_same_rows(&r_rows, &as_rows(&new_rows));

    // The gone date's folder holds no data file.
    let gone: Vec<String> = files(&dest)
        .into_iter()
        .filter(|f| f.starts_with("date=2025-03-01/") && f.ends_with(".parquet"))
        .collect();
    assert!(gone.is_empty(), "stale files: {gone:?}");

    // O is untouched, byte for byte, and still reads back as its rows.
    for (file, bytes) in &other_before {
        let now = std::fs::read(dest.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(now == *bytes, "{file} changed");
    }
    let mut o_rows: Vec<Row> = report_files(&dest, "O")
        .iter()
        .flat_map(|f| read_file(&dest, &dest.join(f)))
        .collect();
    o_rows.sort_by_key(|r| r["id"].as_i64());
    assert_same_rows(&o_rows, &as_rows(&other_rows));

    // Every data file under DEST belongs to R's new run or to O.
    let all: BTreeSet<String> = files(&dest)
        .into_iter()
        .filter(|f| f.ends_with(".parquet"))
        .collect();
    let o_files = report_files(&dest, "O");
    assert_eq!(all, r_files.union(&o_files).cloned().collect());
    assert!(
        !files(&dest).iter().any(|f| f.starts_with("_staging")),
        "staging left behind: {:?}",
        files(&dest)
    );

    // The manifest describes the new run.
    let manifest = manifest(&dest, "R");
    assert_eq!(manifest["report_id"], json!("R"));
    assert_eq!(manifest["rows"], json!(new_rows.len()));
    let run = manifest["run_id"].as_str().expect("run_id");
    assert_ne!(Some(run), first_run["run_id"].as_str(), "a new run id");
    let listed: BTreeSet<String> = manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path").to_string())
        .collect();
    assert_eq!(listed, r_files, "manifest files are the files on disk");
    for file in &r_files {
        assert!(file.contains(run), "{file} is not of run {run}");
    }
    let listed_rows: u64 = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rows"].as_u64().expect("rows"))
        .sum();
    assert_eq!(listed_rows, new_rows.len() as u64);
    assert_eq!(manifest["partition_by"], json!(["date"]));
}

#[test]
fn an_empty_report_commits_a_manifest_with_zero_rows_and_no_data_files() {
    let fixture = Fixture::new();
    fixture.report("empty", "[]");
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");

    let stdout = success(&sandbox.export(&["empty"], &dest, &[]));
    assert!(stdout.contains("exported empty: 0 rows"), "{stdout}");
    assert_eq!(parquet_files(&dest), Vec::<std::path::PathBuf>::new());
    let manifest = manifest(&dest, "empty");
    assert_eq!(manifest["report_id"], json!("empty"));
    assert_eq!(manifest["rows"], json!(0));
    assert_eq!(manifest["files"], json!([]));
}
