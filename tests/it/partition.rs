//! Hive partitioning with hostile values: whatever a partition value holds, every file stays
//! inside DEST, nothing appears beside it, each `col=value` segment decodes back to the exact
//! value, null and "" share `__HIVE_DEFAULT_PARTITION__`, and the partition column lives only in
//! the path.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::util::*;

/// Values that would escape DEST, split a segment or confuse a Hive reader if written raw.
fn hostile_values() -> Vec<Value> {
    [
        json!(".."),
        json!("."),
        json!("../../etc"),
        json!("/abs"),
        json!("a/b"),
        json!("a\\b"),
        json!("%2e%2e"),
        json!("="),
        json!("x=y"),
        json!("ctl\u{1}\u{1f}\n\t\r\u{7f}"),
        json!("🦀 crab"),
        json!("..\\..\\windows"),
        json!("C:"),
        json!("~"),
        json!("?#*'\"{[]}^:"),
        json!(" "),
        json!(""),
        json!(null),
    ]
    .into()
}

/// Characters the README lists as always percent-encoded in a Hive segment (besides controls).
const ESCAPED: [char; 17] = [
    '"', '#', '%', '\'', '*', '/', ':', '=', '?', '\\', '{', '[', ']', '^', '}', '.', '\u{7f}',
];

/// `text` with its `%XX` escapes removed.
fn without_escapes(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            i += 3;
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Checks that `file`, symlinks resolved, is inside `dest`.
fn assert_inside(dest: &Path, file: &Path) {
    let canonical = file.canonicalize().expect("canonicalize file");
    let root = dest.canonicalize().expect("canonicalize dest");
    assert!(
        canonical.starts_with(&root),
        "{} is outside {}",
        canonical.display(),
        root.display()
    );
}

#[test]
fn hostile_partition_values_stay_inside_dest_and_decode_back_exactly() {
    let values = hostile_values();
    let rows: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"i": i, "p": v, "n": i * 10}))
        .collect();
    let fixture = Fixture::new();
    fixture.report_rows("hostile", &rows);
    let sandbox = Sandbox::with_data(fixture.path(), &["--page-size", "4"]);

    // DEST is nested two levels below a folder of its own, so escapes upwards are visible.
    let outer = tempfile::tempdir().unwrap();
    let dest = outer.path().join("a").join("b").join("dest");
    let abs_before = Path::new("/abs").exists();
    success(&sandbox.export(&["hostile"], &dest, &["--partition-by", "p"]));

    for entry in snapshot(outer.path()).keys() {
        assert!(
            ["a/", "a/b/", "a/b/dest/"].contains(&entry.as_str()) || entry.starts_with("a/b/dest/"),
            "{entry} was created outside DEST"
        );
    }
    assert_eq!(
        Path::new("/abs").exists(),
        abs_before,
        "/abs was created by the export"
    );

    let parquet = parquet_files(&dest);
    let schema = one_schema(&dest);
    assert_eq!(
        fields(&schema),
        [
            ("i".to_string(), arrow::datatypes::DataType::Int64),
            ("n".to_string(), arrow::datatypes::DataType::Int64),
        ],
        "the partition column lives only in the path"
    );
    // Distinct values minus the null/"" pair that shares one folder.
    assert_eq!(parquet.len(), values.len() - 1, "{parquet:?}");
    let mut by_segment: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for file in &parquet {
        assert_inside(&dest, file);
        let relative = file.strip_prefix(&dest).unwrap();
        let parts: Vec<&str> = relative.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(parts.len(), 2, "one p=... folder, then the file: {parts:?}");
        let segment = parts[0];
        let value = segment
            .strip_prefix("p=")
            .unwrap_or_else(|| panic!("segment {segment:?} is not p=..."));
        let raw = without_escapes(value);
        assert!(
            !raw.contains(ESCAPED) && !raw.chars().any(char::is_control),
            "segment {segment:?} holds a character the README says is percent-encoded"
        );
        assert!(
            !file_schema(file).fields().iter().any(|f| f.name() == "p"),
            "partition column inside {}",
            file.display()
        );
        let ids = read_file(&dest, file)
            .iter()
            .map(|r| r["i"].as_i64().unwrap())
            .collect();
        by_segment.insert(segment.to_string(), ids);
    }

    // Each row's partition value read back from its path is its exact source value.
    let read = rows_by(&dest, "i");
    assert_eq!(read.len(), rows.len());
    for (got, source) in read.iter().zip(&rows) {
        let want = match &source["p"] {
            Value::String(s) if s.is_empty() => Value::Null,
            other => other.clone(),
        };
        assert_eq!(got["p"], want, "row {}", source["i"]);
        assert_eq!(got["n"], source["n"], "row {}", source["i"]);
    }

    // null and "" both land in the default partition, and nothing else does.
    let default = by_segment
        .get("p=__HIVE_DEFAULT_PARTITION__")
        .unwrap_or_else(|| panic!("no default partition in {by_segment:?}"));
    let mut default = default.clone();
    default.sort();
    let n = values.len() as i64;
    assert_eq!(default, [n - 2, n - 1], "rows of \"\" and null");
}

#[test]
fn more_partitions_than_allowed_is_refused_while_pages_are_read_and_nothing_is_written() {
    let sandbox = Sandbox::start(&["--page-size", "100"]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let args = |max: &str| {
        let dest = dest.to_str().unwrap().to_string();
        vec![
            "export".to_string(),
            "report".into(),
            "rpt_7f3a9c21".into(),
            "--out".into(),
            dest,
            "--partition-by".into(),
            "date,site_domain".into(),
            "--max-partitions".into(),
            max.into(),
        ]
    };
    let run = |max: &str| {
        let args = args(max);
        sandbox.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let error = failure(&run("40"), 1);
    assert!(
        error.starts_with("error: cannot partition by column \"date,site_domain\": report \"rpt_7f3a9c21\" has more than 40 distinct partitions by page "),
        "{error}"
    );
    assert!(error.contains("raise --max-partitions"), "{error}");
    assert!(!dest.exists(), "nothing written");
    // The same export with room for its partitions writes one file per partition.
    success(&run("10000"));
    let folders: std::collections::BTreeSet<_> = parquet_files(&dest)
        .iter()
        .map(|f| f.parent().unwrap().to_path_buf())
        .collect();
    assert_eq!(
        folders.len(),
        parquet_files(&dest).len(),
        "one file per partition"
    );
    assert!(folders.len() > 40);
}
