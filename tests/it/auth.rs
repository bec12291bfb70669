//! Logging in and bearer tokens: short-lived tokens are renewed during an export, and a token the
//! API rejects ends the export with an authentication error that does not repeat the token.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

#[test]
fn tokens_that_expire_during_an_export_are_renewed() {
    // One-second tokens and one row a page: the export outlives several tokens.
    let fixture = Fixture::new();
    let source: Vec<Value> = (0..1_500).map(|i| json!({"i": i})).collect();
    fixture.report_rows("slow", &source);
    let sandbox = Sandbox::with_data(fixture.path(), &["--page-size", "1", "--token-ttl", "1"]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let started = Instant::now();
    let stdout = success(&sandbox.export(&["slow"], &dest, &[]));
    if started.elapsed() < Duration::from_millis(1_100) {
        eprintln!("note: the export took less than a token's lifetime; renewal was not needed");
    }
    assert_eq!(pages_in_summary(&stdout), 1_500, "{stdout}");
    let ids: Vec<i64> = rows_by(&dest, "i")
        .iter()
        .map(|r| r["i"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (0..1_500).collect::<Vec<_>>());
}

#[test]
fn a_rejected_bearer_token_fails_with_exit_1_without_echoing_it() {
    let fixture = Fixture::new();
    fixture.report_rows("r", &[json!({"i": 1})]);
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let token = "sbx_NotIssuedByThisSandboxAtAll0123";
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let output = binary()
        .args(["--api-base", &sandbox.base])
        .env("KARGO_TOKEN", token)
        .args(["export", "report", "r", "--out", dest.to_str().unwrap()])
        .output()
        .unwrap();
    let error = failure(&output, 1);
    assert!(error.contains("authentication"), "{error}");
    assert!(error.contains("401"), "{error}");
    for stream in [&output.stdout, &output.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains(token),
            "the token is echoed: {error}"
        );
    }
    assert!(!dest.exists(), "DEST was created");
}
