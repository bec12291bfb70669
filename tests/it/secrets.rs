//! Secrets never leak: with `-vvv` and `RUST_LOG=trace`, neither the password nor a bearer token
//! shows up in stdout, stderr or any file under DEST, whether the export succeeds or fails.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;

use crate::util::*;

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
    assert_no_secret(&output, Some(out.path()), &[PASSWORD]);
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
    assert_no_secret(&output, Some(out.path()), &[PASSWORD]);
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
    assert_no_secret(&output, Some(out.path()), &[&token]);
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
    assert_no_secret(&output, Some(out.path()), &[&token]);
}

/// The binary pointed at `sandbox` with only `--token-file PATH` (no username, password or
/// `KARGO_TOKEN`).
fn with_token_file(sandbox: &Sandbox, path: &Path) -> Command {
    let mut command = binary();
    command
        .arg("--api-base")
        .arg(&sandbox.base)
        .arg("--token-file")
        .arg(path);
    command
}

#[test]
fn a_token_file_replaces_the_login_and_stays_out_of_trace_logs_and_files() {
    let fixture = fixture();
    let sandbox = Sandbox::with_data(fixture.path(), &["--page-size", "1"]);
    let token = fetch_token(&sandbox);
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let output = traced(
        with_token_file(&sandbox, &token_file),
        &["export", "report", "r"],
        &dest,
    );
    success(&output);
    assert_eq!(read_dataset(&dest).len(), 3);
    assert_no_secret(&output, Some(out.path()), &[&token]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("logged in"), "no login with a token");

    // The file wins over KARGO_TOKEN (here a token the sandbox never issued).
    let mut command = with_token_file(&sandbox, &token_file);
    command.env("KARGO_TOKEN", "sbx_NotIssuedByThisSandboxAtAll0123");
    success(&command.args(["reports", "--json"]).output().unwrap());
}

#[test]
fn a_token_is_never_a_flag_value_and_a_bad_token_file_is_named_not_shown() {
    let token = "sbx_GivenOnTheCommandLine0123456789ab";
    let output = binary()
        .args([
            "--api-base",
            "http://127.0.0.1:9",
            "--token",
            token,
            "reports",
        ])
        .output()
        .unwrap();
    let error = failure(&output, 2);
    assert!(error.contains("--token"), "{error}");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!all.contains(token), "the value is echoed: {all}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-token");
    let error = failure(
        &binary()
            .args([
                "--api-base",
                "http://127.0.0.1:9",
                "reports",
                "--token-file",
            ])
            .arg(&missing)
            .output()
            .unwrap(),
        2,
    );
    assert!(
        error.starts_with(&format!(
            "error: --token-file: cannot read {}: ",
            missing.display()
        )),
        "{error}"
    );
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let error = failure(
        &binary()
            .args([
                "--api-base",
                "http://127.0.0.1:9",
                "reports",
                "--token-file",
            ])
            .arg(&empty)
            .output()
            .unwrap(),
        2,
    );
    assert_eq!(
        error,
        format!("error: --token-file: {} is empty", empty.display())
    );
}
