//! The failure contract: the exit code, exactly one `error:` line on stderr naming what failed
//! (URL path without its query string, page, row, column), and DEST exactly as it was before
//! (an earlier successful export survives byte for byte; a DEST that did not exist stays absent).

use std::path::PathBuf;

use serde_json::json;

use crate::util::*;

/// A sandbox (two rows a page) over `good` (5 rows, 3 dates), `good2` and `bad3` (a number
/// instead of an object as the second row of page 3).
fn sandbox() -> (Fixture, Sandbox) {
    let fixture = Fixture::new();
    fixture
        .report_rows(
            "good",
            &[
                json!({"date": "2025-03-01", "n": 1}),
                json!({"date": "2025-03-01", "n": 2}),
                json!({"date": "2025-03-02", "n": 3}),
                json!({"date": "2025-03-03", "n": 4}),
                json!({"date": "2025-03-03", "n": 5}),
            ],
        )
        .report_rows(
            "good2",
            &[
                json!({"date": "2025-03-01", "n": 10}),
                json!({"date": "2025-03-04", "n": 11}),
            ],
        )
        .report(
            "bad3",
            r#"[{"date":"2025-03-01","n":1},{"date":"2025-03-01","n":2},
                {"date":"2025-03-02","n":3},{"date":"2025-03-02","n":4},
                {"date":"2025-03-03","n":5},42,
                {"date":"2025-03-04","n":7}]"#,
        );
    let sandbox = Sandbox::with_data(fixture.path(), &["--page-size", "2"]);
    (fixture, sandbox)
}

/// A DEST holding a committed export of `good` (partitioned by date), and its snapshot.
struct Prepared {
    _out: tempfile::TempDir,
    dest: PathBuf,
    before: Snapshot,
}

fn prepared(sandbox: &Sandbox) -> Prepared {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    success(&sandbox.export(&["good"], &dest, &["--partition-by", "date"]));
    let before = snapshot(&dest);
    assert_eq!(parquet_files(&dest).len(), 3, "{before:?}");
    Prepared {
        _out: out,
        dest,
        before,
    }
}

fn dest_arg(prepared: &Prepared) -> &str {
    prepared.dest.to_str().unwrap()
}

#[test]
fn a_wrong_password_exits_1_naming_authentication_and_leaves_dest_as_before() {
    let (_fixture, sandbox) = sandbox();
    let prepared = prepared(&sandbox);
    let output = sandbox
        .command()
        .env("KARGO_PASSWORD", "not-the-password")
        .args(["export", "report", "good", "--out", dest_arg(&prepared)])
        .args(["--partition-by", "date"])
        .output()
        .unwrap();
    let error = failure(&output, 1);
    assert!(error.contains("authentication"), "{error}");
    assert!(error.contains("/v1/auth/token"), "{error}");
    assert!(!error.contains("not-the-password"), "{error}");
    assert_unchanged(&prepared.dest, &prepared.before);
}

#[test]
fn a_wrong_password_does_not_create_a_missing_dest() {
    let (_fixture, sandbox) = sandbox();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let output = sandbox
        .command()
        .env("KARGO_PASSWORD", "not-the-password")
        .args(["export", "report", "good", "--out", dest.to_str().unwrap()])
        .output()
        .unwrap();
    let error = failure(&output, 1);
    assert!(error.contains("authentication"), "{error}");
    assert!(!dest.exists(), "DEST was created");
    assert_eq!(files(out.path()), Vec::<String>::new());
}

#[test]
fn an_unknown_report_exits_1_naming_its_url_path_and_404() {
    let (_fixture, sandbox) = sandbox();
    let prepared = prepared(&sandbox);
    let output = sandbox.export(&["nope"], &prepared.dest, &["--partition-by", "date"]);
    let error = failure(&output, 1);
    assert!(error.contains("/v1/completed-reports/nope"), "{error}");
    assert!(error.contains("page 1"), "{error}");
    assert!(error.contains("404"), "{error}");
    assert_unchanged(&prepared.dest, &prepared.before);
}

#[test]
fn an_unknown_report_does_not_create_a_missing_dest() {
    let (_fixture, sandbox) = sandbox();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    failure(&sandbox.export(&["nope"], &dest, &[]), 1);
    assert!(!dest.exists(), "DEST was created");
    assert_eq!(files(out.path()), Vec::<String>::new());
}

#[test]
fn a_non_object_row_on_page_3_exits_1_naming_the_page_and_row() {
    let (_fixture, sandbox) = sandbox();
    let prepared = prepared(&sandbox);
    let output = sandbox.export(&["bad3"], &prepared.dest, &["--partition-by", "date"]);
    let error = failure(&output, 1);
    assert!(error.contains("/v1/completed-reports/bad3"), "{error}");
    assert!(error.contains("page 3"), "{error}");
    // The second row of page 3: "row 1" counted from 0 within the page, "row 2" from 1.
    assert!(
        error.contains("row 1") || error.contains("row 2"),
        "the row is not named: {error}"
    );
    assert!(
        !error.contains('?') && !error.contains("page_size"),
        "query string in {error}"
    );
    assert_unchanged(&prepared.dest, &prepared.before);
}

#[test]
fn partitioning_by_a_missing_column_exits_1_naming_the_column() {
    let (_fixture, sandbox) = sandbox();
    let prepared = prepared(&sandbox);
    let output = sandbox.export(
        &["good"],
        &prepared.dest,
        &["--partition-by", "no_such_column"],
    );
    let error = failure(&output, 1);
    assert!(error.contains("no_such_column"), "{error}");
    assert_unchanged(&prepared.dest, &prepared.before);
}

#[test]
fn export_report_without_out_is_a_usage_error() {
    let (_fixture, sandbox) = sandbox();
    let cwd = tempfile::tempdir().unwrap();
    let output = sandbox
        .command()
        .args(["export", "report", "good"])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    let error = failure(&output, 2);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("--out"),
        "the error line does not name --out: {error}\nstderr: {stderr}"
    );
    assert_eq!(files(cwd.path()), Vec::<String>::new());
}

#[test]
fn no_credentials_at_all_is_a_usage_error() {
    let (_fixture, sandbox) = sandbox();
    let prepared = prepared(&sandbox);
    let output = binary()
        .args(["--api-base", &sandbox.base])
        .args(["export", "report", "good", "--out", dest_arg(&prepared)])
        .output()
        .unwrap();
    let error = failure(&output, 2);
    assert!(error.contains("credentials"), "{error}");
    assert_unchanged(&prepared.dest, &prepared.before);
}

#[test]
fn a_second_report_failing_late_commits_neither_report() {
    let (_fixture, sandbox) = sandbox();
    let prepared = prepared(&sandbox);
    // One report at a time: `good` is complete before `bad3` fails on page 3.
    let output = sandbox.export(
        &["good", "bad3"],
        &prepared.dest,
        &["--partition-by", "date", "--concurrency", "1"],
    );
    let error = failure(&output, 1);
    assert!(error.contains("/v1/completed-reports/bad3"), "{error}");
    assert_unchanged(&prepared.dest, &prepared.before);
}

#[test]
fn a_second_report_that_is_unknown_commits_neither_report() {
    let (_fixture, sandbox) = sandbox();
    let prepared = prepared(&sandbox);
    let output = sandbox.export(
        &["good2", "nope"],
        &prepared.dest,
        &["--partition-by", "date"],
    );
    let error = failure(&output, 1);
    assert!(error.contains("/v1/completed-reports/nope"), "{error}");
    assert_unchanged(&prepared.dest, &prepared.before);
}

#[test]
fn a_partition_segment_over_255_bytes_is_an_error_not_truncated() {
    let (fixture, _) = sandbox();
    // 200 slashes encode to 600 bytes (`%2F` each): far over the 255-byte segment limit.
    fixture.report_rows(
        "long_values",
        &[
            json!({"p": "ok", "n": 1}),
            json!({"p": "/".repeat(200), "n": 2}),
        ],
    );
    let sandbox = Sandbox::with_data(fixture.path(), &["--page-size", "2"]);
    let prepared = prepared(&sandbox);
    let output = sandbox.export(&["long_values"], &prepared.dest, &["--partition-by", "p"]);
    let error = failure(&output, 1);
    assert!(error.contains("\"p\""), "the column is not named: {error}");
    assert_unchanged(&prepared.dest, &prepared.before);
}
