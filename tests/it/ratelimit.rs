//! Rate limits, from the server's side: a `429` with `Retry-After` holds every request to the
//! API, fetched ahead or not, for that long (the sandbox's request log shows none), the export
//! stays exact, `--max-requests-per-second N` never lets more than N requests into one second,
//! and `--retries` / `--retry-max-time` (or their jobs-file keys) bound a failing request.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::runs::{jobs_file, run};
use crate::util::*;

/// How long after a 429 was answered a request the client had already sent may arrive.
const IN_FLIGHT: f64 = 0.05;

/// One line of the sandbox's `--request-log`.
#[derive(Debug)]
struct Logged {
    /// Seconds since the sandbox started: when the request arrived, when its answer was ready.
    at: f64,
    done: f64,
    path: String,
    query: String,
    status: u64,
}

/// The request log at `path`, in arrival order.
fn request_log(path: &Path) -> Vec<Logged> {
    let text = std::fs::read_to_string(path).expect("request log");
    let mut lines: Vec<Logged> = text
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).expect("a JSON line");
            Logged {
                at: line["at"].as_f64().expect("at"),
                done: line["done"].as_f64().expect("done"),
                path: line["path"].as_str().expect("path").to_owned(),
                query: line["query"].as_str().expect("query").to_owned(),
                status: line["status"].as_u64().expect("status"),
            }
        })
        .collect();
    lines.sort_by(|a, b| a.at.total_cmp(&b.at));
    lines
}

/// The `page` query parameter of a logged request.
fn page(logged: &Logged) -> Option<u64> {
    logged
        .query
        .split('&')
        .find_map(|pair| pair.strip_prefix("page="))
        .and_then(|n| n.parse().ok())
}

/// Asserts that the log has exactly one 429 and that no request arrived in the `hold` seconds
/// after it was answered (but for those already on their way, [`IN_FLIGHT`]); returns the
/// 429's line.
fn assert_held_after_the_429(log: &[Logged], hold: f64) -> &Logged {
    let limited: Vec<&Logged> = log.iter().filter(|l| l.status == 429).collect();
    assert_eq!(limited.len(), 1, "one injected 429: {log:#?}");
    let limited = limited[0];
    // A request already on its way when the 429 was answered may still arrive just after it.
    let too_soon: Vec<&Logged> = log
        .iter()
        .filter(|l| l.at > limited.done + IN_FLIGHT && l.at < limited.done + hold)
        .collect();
    assert!(
        too_soon.is_empty(),
        "requests within {hold} s of the 429 at {:.3} s: {too_soon:#?}",
        limited.done
    );
    assert!(
        log.iter().any(|l| l.at >= limited.done + hold),
        "the client went on after the hold: {log:#?}"
    );
    limited
}

#[test]
fn a_429_with_retry_after_on_a_page_fetched_ahead_holds_every_request_and_the_export_is_exact() {
    let fixture = Fixture::new();
    let ids = ["first", "second"];
    let sources: Vec<Vec<Value>> = ids
        .iter()
        .map(|id| {
            (0..1_000)
                .map(|i| json!({"i": i, "report": id, "spend": i as f64 * 0.5}))
                .collect()
        })
        .collect();
    for (id, rows) in ids.iter().zip(&sources) {
        fixture.report_rows(id, rows);
    }
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("requests.jsonl");
    // Two reports of 100 pages at once: by the 8th request both are under way (and far from
    // done), and every page but a report's first is fetched ahead while an earlier one is
    // decoded.
    let sandbox = Sandbox::with_data(
        fixture.path(),
        &[
            "--page-size",
            "10",
            "--fail-request",
            "8",
            "--fail-status",
            "429",
            "--retry-after",
            "1",
            "--request-log",
            log_path.to_str().unwrap(),
        ],
    );
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let output = sandbox.export(&ids, &dest, &["--concurrency", "2", "-vvv"]);
    success(&output);
    let log = request_log(&log_path);
    let limited = assert_held_after_the_429(&log, 1.0);
    let limited_page = page(limited).unwrap_or(1);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.lines().any(|l| l.contains("fetch start, ahead")
            && l.contains(&limited.path)
            && l.contains(&format!("page={limited_page}"))),
        "the page answered 429 ({limited:?}) was fetched ahead: {stderr}"
    );
    let again = log
        .iter()
        .filter(|l| l.path == limited.path && page(l) == Some(limited_page))
        .count();
    assert_eq!(again, 2, "the page is fetched again once: {log:#?}");
    let other = log
        .iter()
        .filter(|l| l.path.starts_with("/v1/completed-reports/") && l.path != limited.path);
    // The other report is held with it (no request of any path inside the hold, checked
    // above) and goes on after it; whether it had sent a page before the 429 is up to the
    // scheduler, so it is not asserted.
    let after: Vec<&Logged> = other.filter(|l| l.at >= limited.done + 1.0).collect();
    assert!(
        !after.is_empty(),
        "the other report went on after the hold: {log:#?}"
    );
    let mut rows = read_dataset(&dest);
    rows.sort_by_key(|r| (r["report"].as_str().map(str::to_owned), r["i"].as_i64()));
    assert_same_rows(&rows, &as_rows(&sources.concat()));
}

#[test]
fn a_429_with_retry_after_on_a_list_request_holds_every_request_and_the_run_is_exact() {
    let fixture = Fixture::new();
    let reports: Vec<Value> = (0..100)
        .map(|i| {
            json!({"id": format!("rpt_{i:03}"), "status": "completed",
                   "report_type": "delivery_by_day", "row_count": i})
        })
        .collect();
    fixture.reports(&Value::Array(reports.clone()));
    let big: Vec<Value> = (0..1_000)
        .map(|i| json!({"i": i, "name": format!("row {i}")}))
        .collect();
    fixture.report_rows("rpt_000", &big);
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("requests.jsonl");
    // The report list (10 pages) is exported while a report of 100 pages is; the 5th request
    // for a page of the list is answered 429.
    let sandbox = Sandbox::with_data(
        fixture.path(),
        &[
            "--page-size",
            "10",
            "--fail-request",
            "/v1/reports:5",
            "--fail-status",
            "429",
            "--retry-after",
            "1",
            "--request-log",
            log_path.to_str().unwrap(),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let (lists, rows) = (dir.path().join("lists"), dir.path().join("rows"));
    let jobs = format!(
        "[[job]]\nname = \"requests\"\nkind = \"report-list\"\nout = \"{}\"\n\n\
         [[job]]\nname = \"big\"\nkind = \"reports\"\nids = [\"rpt_000\"]\nout = \"{}\"\n",
        lists.display(),
        rows.display()
    );
    let file = jobs_file(dir.path(), &sandbox, &jobs);
    let (output, summary) = run(&file, &["--concurrency", "2"]);
    success(&output);
    assert_eq!(summary["jobs"][0]["status"], "ok", "{summary}");
    assert_eq!(summary["jobs"][1]["status"], "ok", "{summary}");
    let log = request_log(&log_path);
    let limited = assert_held_after_the_429(&log, 1.0);
    assert_eq!(limited.path, "/v1/reports");
    let listed = log.iter().filter(|l| l.path == "/v1/reports").count();
    assert_eq!(listed, 11, "10 pages, one of them twice: {log:#?}");
    // The other job's pages are held with the list (no request of any path inside the hold,
    // checked above) and go on after it. Whether its first page left before the 429 is up to
    // the scheduler (both jobs start at once), so it is not asserted.
    let pages: Vec<&Logged> = log
        .iter()
        .filter(|l| l.path == "/v1/completed-reports/rpt_000")
        .collect();
    assert!(
        pages.iter().any(|l| l.at >= limited.done + 1.0),
        "the report's pages went on after the hold: {log:#?}"
    );
    let mut requests = read_dataset(&lists);
    requests.sort_by_key(|r| r["id"].as_str().map(str::to_owned));
    assert_same_rows(&requests, &as_rows(&reports));
    assert_same_rows(&rows_by(&rows, "i"), &as_rows(&big));
}

/// Asserts that no window of one second holds more than `rate` of the logged arrivals.
fn assert_at_most_per_second(log: &[Logged], rate: usize) {
    for (i, first) in log.iter().enumerate() {
        if let Some(next) = log.get(i + rate) {
            assert!(
                next.at - first.at >= 1.0,
                "{} requests within {:.3} s, from {:.3} s: {:#?}",
                rate + 1,
                next.at - first.at,
                first.at,
                &log[i..=i + rate]
            );
        }
    }
}

#[test]
fn a_100_page_export_never_exceeds_max_requests_per_second() {
    let fixture = Fixture::new();
    let source = numbered_rows(1_000);
    fixture.report_rows("paced", &source);
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("requests.jsonl");
    let sandbox = Sandbox::with_data(
        fixture.path(),
        &[
            "--page-size",
            "10",
            "--request-log",
            log_path.to_str().unwrap(),
        ],
    );
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let rate = 25;
    let started = Instant::now();
    let output = sandbox.export(
        &["paced"],
        &dest,
        &["--max-requests-per-second", &rate.to_string()],
    );
    let took = started.elapsed();
    let stdout = success(&output);
    assert_eq!(pages_in_summary(&stdout), 100, "{stdout}");
    let log = request_log(&log_path);
    assert_eq!(log.len(), 101, "a login and 100 pages");
    assert_at_most_per_second(&log, rate);
    // Paced, not stalled: 101 requests 1.05/25 s apart take about 4.2 s.
    let span = log[100].at - log[0].at;
    assert!(
        (4.0..8.0).contains(&span),
        "requests spread over {span:.2} s"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_same_rows(&rows_by(&dest, "i"), &as_rows(&source));
}

#[test]
fn the_jobs_file_sets_the_rate_for_every_report_of_the_run() {
    let fixture = Fixture::new();
    let ids = ["r1", "r2", "r3"];
    let mut sources = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let rows: Vec<Value> = (0..60)
            .map(|i| json!({"i": i, "report": n, "name": format!("{id} row {i}")}))
            .collect();
        fixture.report_rows(id, &rows);
        sources.push(rows);
    }
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("requests.jsonl");
    let sandbox = Sandbox::with_data(
        fixture.path(),
        &[
            "--page-size",
            "5",
            "--request-log",
            log_path.to_str().unwrap(),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let jobs = format!(
        "[[job]]\nname = \"three\"\nkind = \"reports\"\nids = [\"r1\", \"r2\", \"r3\"]\nout = \"{}\"\n",
        out.display()
    );
    let file = jobs_file(dir.path(), &sandbox, &jobs);
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        format!("concurrency = 3\nmax_requests_per_second = 12\nretries = 2\n{text}"),
    )
    .unwrap();
    let (output, summary) = run(&file, &[]);
    success(&output);
    assert_eq!(summary["jobs"][0]["status"], "ok", "{summary}");
    let log = request_log(&log_path);
    let pages = log
        .iter()
        .filter(|l| l.path.starts_with("/v1/completed-reports/"))
        .count();
    assert_eq!(pages, 3 * 12, "12 pages of each report");
    assert_at_most_per_second(&log, 12);
    let mut rows = read_dataset(&out);
    rows.sort_by_key(|r| (r["report"].as_i64(), r["i"].as_i64()));
    let want: Vec<Value> = sources.concat();
    assert_same_rows(&rows, &as_rows(&want));
}

#[test]
fn retries_and_retry_max_time_bound_a_failing_request() {
    let sandbox = Sandbox::start(&["--fail-first", "1000"]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let output = sandbox.export(&["rpt_7f3a9c21"], &dest, &["--retries", "1"]);
    let error = failure(&output, 1);
    assert!(
        error.contains("503 Service Unavailable after 2 attempts"),
        "{error}"
    );

    // A Retry-After beyond the retry time left is not waited for: the request fails at once.
    let sandbox = Sandbox::start(&[
        "--fail-first",
        "1000",
        "--fail-status",
        "429",
        "--retry-after",
        "30",
    ]);
    let started = Instant::now();
    let output = sandbox.export(&["rpt_7f3a9c21"], &dest, &["--retry-max-time", "5"]);
    let error = failure(&output, 1);
    assert!(error.contains("429"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(4), "no 30 s wait");
    assert!(!dest.exists(), "nothing written");

    let output = sandbox.export(&["rpt_7f3a9c21"], &dest, &["--retries=-1"]);
    assert!(failure(&output, 2).contains("--retries"));
    let output = sandbox.export(
        &["rpt_7f3a9c21"],
        &dest,
        &["--max-requests-per-second", "0"],
    );
    assert!(failure(&output, 2).contains("--max-requests-per-second"));
}
