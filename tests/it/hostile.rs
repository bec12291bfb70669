//! Hostile and broken servers: 200 answers whose JSON does not parse are fetched again; next
//! links to another origin and pagination loops fail with one clear error before anything is
//! sent where it should not be; a server that accepts and never answers fails within the retry
//! budget. DEST stays as it was whenever the export fails.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::util::*;

/// A DEST that already holds a file, and its snapshot.
fn existing_dest(root: &std::path::Path) -> (std::path::PathBuf, Snapshot) {
    let dest = root.join("dest");
    std::fs::create_dir_all(dest.join("old")).unwrap();
    std::fs::write(dest.join("old/keep.txt"), "already here").unwrap();
    let before = snapshot(&dest);
    (dest, before)
}

#[test]
fn broken_json_answers_are_fetched_again_and_every_row_is_exact_once() {
    let fixture = Fixture::new();
    let source = numbered_rows(600);
    fixture.report_rows("broken", &source);
    let sandbox = Sandbox::with_data(
        fixture.path(),
        &["--page-size", "40", "--malformed-every", "3"],
    );
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let output = sandbox.export(&["broken"], &dest, &[]);
    let stdout = success(&output);
    assert_eq!(pages_in_summary(&stdout), 15, "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not valid JSON"), "{stderr}");
    let rows = rows_by(&dest, "i");
    let ids: Vec<i64> = rows.iter().map(|r| r["i"].as_i64().unwrap()).collect();
    assert_eq!(ids, (0..600).collect::<Vec<_>>(), "each row exactly once");
    assert_same_rows(&rows, &as_rows(&source));
}

#[test]
fn always_broken_json_gives_up_after_5_attempts() {
    let sandbox = Sandbox::start(&["--malformed-every", "1"]);
    let out = tempfile::tempdir().unwrap();
    let (dest, before) = existing_dest(out.path());
    let output = sandbox.export(&["rpt_7f3a9c21"], &dest, &[]);
    let error = failure(&output, 1);
    assert!(
        error.contains("/v1/completed-reports/rpt_7f3a9c21"),
        "{error}"
    );
    assert!(error.contains("not valid JSON"), "{error}");
    assert!(error.contains("after 5 attempts"), "{error}");
    assert_unchanged(&dest, &before);
}

/// A listener on another port of 127.0.0.1 that records whether anything connected.
struct Foreign {
    origin: String,
    connected: Arc<AtomicBool>,
}

impl Foreign {
    fn start() -> Foreign {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let connected = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&connected);
        // The thread ends with the test binary; it only ever flips the flag.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                seen.store(true, Ordering::SeqCst);
                drop(stream);
            }
        });
        Foreign { origin, connected }
    }
}

#[test]
fn a_next_link_to_another_origin_is_refused_before_connecting() {
    let foreign = Foreign::start();
    let sandbox = Sandbox::start(&["--page-size", "10", "--next-origin", &foreign.origin]);
    let out = tempfile::tempdir().unwrap();
    let (dest, before) = existing_dest(out.path());
    let output = sandbox.export(&["rpt_7f3a9c21"], &dest, &[]);
    let error = failure(&output, 1);
    let foreign_url = format!("{}/v1/completed-reports/rpt_7f3a9c21", foreign.origin);
    assert!(error.contains(&foreign_url), "{error}");
    assert!(error.contains("another origin"), "{error}");
    assert!(!error.contains("page_size="), "no query string: {error}");
    assert!(
        !foreign.connected.load(Ordering::SeqCst),
        "nothing may be sent to the foreign origin"
    );
    assert_unchanged(&dest, &before);
}

#[test]
fn a_pagination_loop_fails_naming_the_url() {
    let sandbox = Sandbox::start(&["--page-size", "10", "--loop-at", "3"]);
    let out = tempfile::tempdir().unwrap();
    let (dest, before) = existing_dest(out.path());
    let output = sandbox.export(&["rpt_7f3a9c21"], &dest, &[]);
    let error = failure(&output, 1);
    assert!(
        error.contains(&format!(
            "{}/v1/completed-reports/rpt_7f3a9c21",
            sandbox.base
        )),
        "{error}"
    );
    assert!(error.contains("pagination loop"), "{error}");
    assert_unchanged(&dest, &before);
}

#[test]
fn a_server_that_never_answers_fails_within_the_retry_budget() {
    let sandbox = Sandbox::start(&["--stall-first", "1000"]);
    let out = tempfile::tempdir().unwrap();
    let (dest, before) = existing_dest(out.path());
    let started = Instant::now();
    let output = sandbox
        .command()
        .env("KARGO_EXPORT_READ_TIMEOUT_MS", "300")
        .args(["export", "report", "rpt_7f3a9c21", "--out"])
        .arg(&dest)
        .output()
        .unwrap();
    let took = started.elapsed();
    let error = failure(&output, 1);
    assert!(error.contains("timed out"), "{error}");
    assert!(error.contains("after 5 attempts"), "{error}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_unchanged(&dest, &before);
}

#[test]
fn a_stalled_first_request_is_retried() {
    let sandbox = Sandbox::start(&["--page-size", "50", "--stall-first", "2"]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let output = sandbox
        .command()
        .env("KARGO_EXPORT_READ_TIMEOUT_MS", "300")
        .args(["export", "report", "rpt_7f3a9c21", "--out"])
        .arg(&dest)
        .output()
        .unwrap();
    success(&output);
    const SAMPLE_A: &str = include_str!("../../sample_data/completed-reports/rpt_7f3a9c21.json");
    assert_same_rows(&read_dataset(&dest), &source_rows(SAMPLE_A));
}
