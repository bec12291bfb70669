//! `schema report ID`: prints the schema an export would write, one `name: type` line per column,
//! and writes nothing (no DEST, no files in the working folder or TMPDIR).

use crate::util::*;

#[test]
fn schema_report_prints_each_column_with_its_type_and_writes_nothing() {
    let fixture = Fixture::new();
    fixture.report(
        "typed",
        r#"[{"n":1,"f":1,"d":"2025-03-01","ts":"2025-03-01T12:00:00Z","s":"a"},
            {"n":2,"f":0.5,"d":"2025-03-02","ts":"2025-03-01T14:00:00+02:00","s":"b"},
            {"n":3,"f":2,"d":"2025-03-03","ts":"2025-03-02T00:00:00.5Z","s":""}]"#,
    );
    let sandbox = Sandbox::with_data(fixture.path(), &["--page-size", "2"]);
    let fixture_before = snapshot(fixture.path());
    let cwd = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();

    let output = sandbox
        .command()
        .args(["schema", "report", "typed"])
        .current_dir(cwd.path())
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stdout = success(&output);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "n: Int64",
            "f: Float64",
            "d: Date32",
            "ts: Timestamp(µs, \"UTC\")",
            "s: Utf8",
        ]
    );
    assert_eq!(files(cwd.path()), Vec::<String>::new(), "working folder");
    assert_eq!(snapshot(tmp.path()), Snapshot::new(), "TMPDIR");
    assert_unchanged(fixture.path(), &fixture_before);
}

#[test]
fn schema_of_an_unknown_report_fails_naming_it() {
    let fixture = Fixture::new();
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let cwd = tempfile::tempdir().unwrap();
    let output = sandbox
        .command()
        .args(["schema", "report", "nope"])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    let error = failure(&output, 1);
    assert!(error.contains("/v1/completed-reports/nope"), "{error}");
    assert!(error.contains("404"), "{error}");
    assert_eq!(snapshot(cwd.path()), Snapshot::new());
}
