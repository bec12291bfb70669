//! Retries: error bursts, rate limits and bodies cut off mid-stream are survived with every row
//! exported exactly once; a failure that does not stop ends with one error line that says how
//! many attempts were made, and DEST stays as it was.

use std::time::{Duration, Instant};

use crate::util::*;

const SAMPLE_A: &str = include_str!("../../sample_data/completed-reports/rpt_7f3a9c21.json");

/// How many retries the client logged on stderr.
fn retries_logged(output: &std::process::Output) -> usize {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.contains("retrying"))
        .count()
}

#[test]
fn a_503_burst_is_retried_and_every_row_is_exact() {
    let sandbox = Sandbox::start(&["--page-size", "97", "--fail-first", "3"]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let output = sandbox.export(&["rpt_7f3a9c21"], &dest, &[]);
    let stdout = success(&output);
    let source = source_rows(SAMPLE_A);
    assert!(
        stdout.contains(&format!("exported rpt_7f3a9c21: {} rows", source.len())),
        "{stdout}"
    );
    assert_eq!(retries_logged(&output), 3, "one retry per injected 503");
    assert_same_rows(&read_dataset(&dest), &source);
}

#[test]
fn a_429_with_retry_after_is_waited_out() {
    let fixture = Fixture::new();
    let source = numbered_rows(300);
    fixture.report_rows("limited", &source);
    let sandbox = Sandbox::with_data(
        fixture.path(),
        &[
            "--page-size",
            "50",
            "--fail-first",
            "2",
            "--fail-status",
            "429",
        ],
    );
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let output = sandbox.export(&["limited"], &dest, &[]);
    let stdout = success(&output);
    assert_eq!(pages_in_summary(&stdout), 6, "{stdout}");
    assert_eq!(retries_logged(&output), 2);
    assert_same_rows(&rows_by(&dest, "i"), &as_rows(&source));
}

#[test]
fn truncated_bodies_are_fetched_again_without_duplicates() {
    let fixture = Fixture::new();
    let source = numbered_rows(1_000);
    fixture.report_rows("cut", &source);
    let sandbox = Sandbox::with_data(
        fixture.path(),
        &["--page-size", "40", "--truncate-every", "3"],
    );
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let output = sandbox.export(&["cut"], &dest, &[]);
    let stdout = success(&output);
    assert_eq!(pages_in_summary(&stdout), 25, "{stdout}");
    assert!(
        retries_logged(&output) >= 8,
        "every third answer was cut off"
    );
    let ids: Vec<i64> = rows_by(&dest, "i")
        .iter()
        .map(|r| r["i"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (0..1_000).collect::<Vec<_>>(), "each row exactly once");
    assert_same_rows(&rows_by(&dest, "i"), &as_rows(&source));
}

#[test]
fn a_permanent_failure_gives_up_after_5_attempts_and_leaves_dest_alone() {
    let sandbox = Sandbox::start(&["--fail-first", "1000"]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    std::fs::create_dir_all(dest.join("old")).unwrap();
    std::fs::write(dest.join("old/keep.txt"), "already here").unwrap();
    let before = snapshot(&dest);
    let started = Instant::now();
    let output = sandbox.export(&["rpt_7f3a9c21"], &dest, &[]);
    let took = started.elapsed();
    let error = failure(&output, 1);
    assert!(
        error.contains("/v1/completed-reports/rpt_7f3a9c21"),
        "{error}"
    );
    assert!(error.contains("503"), "{error}");
    assert!(error.contains("after 5 attempts"), "{error}");
    assert_eq!(retries_logged(&output), 4);
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_unchanged(&dest, &before);
}

#[test]
fn a_404_is_not_retried() {
    let sandbox = Sandbox::start(&[]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let output = sandbox.export(&["rpt_nope"], &dest, &[]);
    let error = failure(&output, 1);
    assert!(error.contains("404"), "{error}");
    assert!(!error.contains("attempts"), "{error}");
    assert_eq!(retries_logged(&output), 0);
}

#[test]
fn the_sandbox_refuses_a_fail_status_that_is_no_error() {
    let output = binary()
        .args(["sandbox", "--addr", "127.0.0.1:0", "--fail-status", "200"])
        .output()
        .unwrap();
    let error = failure(&output, 2);
    assert!(error.contains("--fail-status"), "{error}");
}

#[test]
fn a_permanent_500_on_page_4_fails_naming_the_page_and_keeps_the_earlier_export() {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let healthy = Sandbox::start(&["--page-size", "100"]);
    success(&healthy.export(&["rpt_7f3a9c21"], &dest, &["--partition-by", "date"]));
    let before = snapshot(&dest);
    let failing = Sandbox::start(&[
        "--page-size",
        "100",
        "--fail-page",
        "4",
        "--fail-status",
        "500",
    ]);
    let started = Instant::now();
    let output = failing.export(&["rpt_7f3a9c21"], &dest, &["--partition-by", "date"]);
    let took = started.elapsed();
    let error = failure(&output, 1);
    assert!(
        error.contains("/v1/completed-reports/rpt_7f3a9c21, page 4"),
        "{error}"
    );
    assert!(error.contains("500"), "{error}");
    assert!(error.contains("after 5 attempts"), "{error}");
    assert!(
        !error.contains("page=4"),
        "no query string in errors: {error}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_unchanged(&dest, &before);
    assert_eq!(
        read_dataset(&dest).len(),
        1500,
        "the earlier export is still complete"
    );
}
