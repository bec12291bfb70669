//! Secrets never leak: with `-vvv` and `RUST_LOG=trace`, neither the password nor a bearer token
//! shows up in stdout, stderr or any file under DEST, whether the export succeeds or fails.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;

use crate::util::*;

/// Finds sandbox tokens (`sbx_` and 32 alphanumerics) in `haystack`.
fn sandbox_tokens(haystack: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(haystack);
    text.match_indices("sbx_")
        .filter_map(|(at, _)| {
            let candidate: String = text[at + 4..]
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            (candidate.len() >= 32).then(|| format!("sbx_{candidate}"))
        })
        .collect()
}

/// Asserts that none of `secrets` (nor any sandbox token) is in the output or under `dest`.
fn assert_no_secret(output: &Output, dest: &Path, secrets: &[&str]) {
    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("stdout".into(), output.stdout.clone()),
        ("stderr".into(), output.stderr.clone()),
    ];
    for file in files(dest) {
        let bytes = std::fs::read(dest.join(&file)).unwrap();
        places.push((file, bytes));
    }
    assert!(
        output.stderr.len() > 200,
        "trace logging produced almost nothing, the check would be vacuous: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (place, bytes) in &places {
        let text = String::from_utf8_lossy(bytes);
        for secret in secrets {
            assert!(!text.contains(secret), "{secret:?} appears in {place}");
        }
        let tokens = sandbox_tokens(bytes);
        assert!(tokens.is_empty(), "a bearer token appears in {place}");
    }
}

fn fixture() -> Fixture {
    let fixture = Fixture::new();
    fixture.report_rows(
        "r",
        &[
            json!({"date": "2025-03-01", "n": 1}),
            json!({"date": "2025-03-02", "n": 2}),
            json!({"date": "2025-03-02", "n": 3}),
        ],
    );
    fixture
}

fn traced(mut command: Command, args: &[&str], dest: &Path) -> Output {
    command
        .env("RUST_LOG", "trace")
        .arg("-vvv")
        .args(args)
        .args(["--out", dest.to_str().unwrap(), "--partition-by", "date"])
        .output()
        .unwrap()
}

/// The binary pointed at `sandbox` with only `KARGO_TOKEN` (no username or password).
fn with_token(sandbox: &Sandbox, token: &str) -> Command {
    let mut command = binary();
    command
        .arg("--api-base")
        .arg(&sandbox.base)
        .env("KARGO_TOKEN", token);
    command
}

#[test]
fn the_password_and_token_stay_out_of_trace_logs_and_files_of_a_successful_export() {
    let fixture = fixture();
    let sandbox = Sandbox::with_data(fixture.path(), &["--page-size", "1"]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let output = traced(sandbox.command(), &["export", "report", "r"], &dest);
    success(&output);
    assert_eq!(read_dataset(&dest).len(), 3);
    assert_no_secret(&output, out.path(), &[PASSWORD]);
}

#[test]
fn the_password_and_token_stay_out_of_trace_logs_of_a_failing_export() {
    let fixture = fixture();
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    success(&sandbox.export(&["r"], &dest, &["--partition-by", "date"]));
    let output = traced(sandbox.command(), &["export", "report", "r", "nope"], &dest);
    failure(&output, 1);
    assert_no_secret(&output, out.path(), &[PASSWORD]);
}

#[test]
fn a_given_token_stays_out_of_trace_logs_and_files_of_a_successful_export() {
    let fixture = fixture();
    let sandbox = Sandbox::with_data(fixture.path(), &["--page-size", "1"]);
    let token = fetch_token(&sandbox);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let output = traced(
        with_token(&sandbox, &token),
        &["export", "report", "r"],
        &dest,
    );
    success(&output);
    assert_eq!(read_dataset(&dest).len(), 3);
    assert_no_secret(&output, out.path(), &[&token]);
}

#[test]
fn a_given_token_stays_out_of_trace_logs_of_a_failing_export() {
    let fixture = fixture();
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let token = fetch_token(&sandbox);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    success(&sandbox.export(&["r"], &dest, &["--partition-by", "date"]));
    let output = traced(
        with_token(&sandbox, &token),
        &["export", "report", "nope"],
        &dest,
    );
    failure(&output, 1);
    assert_no_secret(&output, out.path(), &[&token]);
}
