//! S3 destinations: the real binary exports to a real S3-compatible server (moto) over HTTP on
//! 127.0.0.1, and the tests read the objects back through the S3 API and compare them with the
//! source rows. Besides `export report`, the features that reach S3 through the destination:
//! `run JOBS.toml` (state read back from `_manifests/` and `_submissions/` on S3, `--shard`
//! workers sharing one prefix, `--dry-run`, `--full-refresh`) and `export url`.
//!
//! This file holds the scenarios and their data; the server, the buckets, the binary's S3
//! environment and the fault-injecting proxy are in `s3_support`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kargo_export::sandbox::test_rows::SANDBOX_API_KEY;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde_json::Value;

use crate::runs::*;
use crate::s3_support::*;
use crate::util::*;

#[test]
fn sample_report_round_trips_through_s3_under_a_prefix() {
    let bucket = Bucket::create("sample");
    let sandbox = Sandbox::start(&["--page-size", "97"]);
    let out = bucket.url("exports/kargo");
    success(
        &with_s3(sandbox.command())
            .args([
                "export",
                "report",
                "rpt_7f3a9c21",
                "--out",
                &out,
                "--partition-by",
                "date",
            ])
            .output()
            .unwrap(),
    );

    let keys = bucket.keys();
    assert!(
        keys.iter().all(|k| k.starts_with("exports/kargo/")),
        "{keys:?}"
    );
    assert!(!keys.iter().any(|k| k.contains("_staging")), "{keys:?}");
    let local = bucket.download("exports/kargo");
    let files = files(local.path());
    assert_eq!(files.len(), 31, "30 days and a manifest: {files:?}");
    assert!(files.contains(&"_manifests/rpt_7f3a9c21.json".to_owned()));
    one_schema(local.path());

    assert_rows_of(local.path(), SAMPLE_A, KEY_A);
    let manifest = manifest(local.path(), "rpt_7f3a9c21");
    assert_eq!(manifest["rows"], 1500);
    assert_eq!(bucket.uploads(), Vec::<String>::new());
}

#[test]
fn a_file_over_10_mib_streams_in_parts_and_reads_back_row_by_row() {
    let bucket = Bucket::create("large");
    let fixture = Fixture::new();
    let rows = incompressible_rows(14_000);
    fixture.report_rows("big", &rows);
    let sandbox = Sandbox::with_data(fixture.path(), &["--page-size", "2000"]);
    let output = with_s3(sandbox.command())
        .args(["export", "report", "big", "--out", &bucket.url("")])
        .args(["--compression", "none"])
        .output()
        .unwrap();
    success(&output);

    let sizes = bucket.sizes();
    let data: Vec<_> = sizes
        .iter()
        .filter(|(k, _)| k.ends_with(".parquet"))
        .collect();
    assert_eq!(data.len(), 1, "{sizes:?}");
    assert!(
        data[0].1 > 10 * 1024 * 1024,
        "{sizes:?}: the file must span several 5 MiB parts"
    );
    let local = bucket.download("");
    assert_same_rows(&rows_by(local.path(), "i"), &as_rows(&rows));
    assert_eq!(bucket.uploads(), Vec::<String>::new());
}

#[test]
fn a_rerun_replaces_exactly_that_reports_files() {
    let bucket = Bucket::create("rerun");
    let out = bucket.url("data");
    let first = Fixture::new();
    first.report_rows("a", &dated_rows(0..40, 4));
    first.report_rows("b", &dated_rows(100..110, 2));
    {
        let sandbox = Sandbox::with_data(first.path(), &[]);
        success(
            &with_s3(sandbox.command())
                .args(["export", "report", "a", "b", "--out", &out])
                .args(["--partition-by", "day"])
                .output()
                .unwrap(),
        );
    }
    let before = bucket.keys();
    let b_files: Vec<&String> = before.iter().filter(|k| is_data_of(k, "b")).collect();
    assert_eq!(b_files.len(), 2, "{before:?}");
    assert_eq!(before.iter().filter(|k| is_data_of(k, "a")).count(), 4);

    let second = Fixture::new();
    let new_a = dated_rows(500..530, 2);
    second.report_rows("a", &new_a);
    let sandbox = Sandbox::with_data(second.path(), &[]);
    let stdout = success(
        &with_s3(sandbox.command())
            .args(["export", "report", "a", "--out", &out])
            .args(["--partition-by", "day"])
            .output()
            .unwrap(),
    );
    assert!(stdout.contains("exported a: 30 rows, 2 files"), "{stdout}");

    let after = bucket.keys();
    let local = bucket.download("data");
    let run_id = manifest(local.path(), "a")["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a_files: Vec<&String> = after.iter().filter(|k| is_data_of(k, "a")).collect();
    assert_eq!(a_files.len(), 2, "{after:?}");
    assert!(
        a_files.iter().all(|k| k.contains(&format!(".{run_id}."))),
        "{after:?}"
    );
    let b_after: Vec<&String> = after.iter().filter(|k| is_data_of(k, "b")).collect();
    assert_eq!(b_after, b_files, "report b untouched");
    assert!(!after.iter().any(|k| k.contains("_staging")), "{after:?}");

    let mut a_rows: Vec<Row> = read_dataset(local.path())
        .into_iter()
        .filter(|r| r["i"].as_i64().unwrap() >= 500)
        .collect();
    a_rows.sort_by_key(|r| r["i"].as_i64());
    assert_same_rows(&a_rows, &as_rows(&new_a));
    assert_eq!(
        read_dataset(local.path()).len(),
        30 + 10,
        "no stale rows of a"
    );
}

#[test]
fn a_server_error_mid_upload_aborts_it_and_leaves_earlier_data_intact() {
    let bucket = Bucket::create("fault");
    let out = bucket.url("p");
    export_numbered(&out, 50);
    let earlier = bucket.download("p");
    let earlier_snapshot = snapshot(earlier.path());

    // The same report, now large, through a proxy that refuses the second part of any upload.
    let large = Fixture::new();
    large.report_rows("big", &incompressible_rows(14_000));
    let sandbox = Sandbox::with_data(large.path(), &["--page-size", "2000"]);
    let proxy = FaultProxy::start(endpoint(), 2, Fault::Refuse);
    let output = with_s3(sandbox.command())
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .args([
            "-vvv",
            "export",
            "report",
            "big",
            "--out",
            &out,
            "--compression",
            "none",
        ])
        .output()
        .unwrap();
    let line = failure(&output, 1);
    assert!(line.contains("injected failure"), "{line}");
    assert!(line.contains("s3://"), "{line}");
    assert!(!line.contains('<'), "no XML body: {line}");
    assert!(proxy.hits() >= 1, "the proxy refused no part");
    assert_no_secret(&output, None, &S3_SECRETS);

    bucket.assert_no_leftovers();
    let now = bucket.download("p");
    assert_unchanged(now.path(), &earlier_snapshot);
    assert_same_rows(&rows_by(now.path(), "i"), &as_rows(&numbered_rows(50)));
}

#[test]
fn sigterm_during_an_upload_leaves_no_parts_and_earlier_data_intact() {
    let bucket = Bucket::create("sigterm");
    let out = bucket.url("p");
    export_numbered(&out, 20);
    let earlier = snapshot(bucket.download("p").path());

    // Part 2 of the upload is held back by the proxy: the export is caught mid-upload.
    let large = Fixture::new();
    large.report_rows("big", &incompressible_rows(14_000));
    let sandbox = Sandbox::with_data(large.path(), &["--page-size", "2000"]);
    let proxy = FaultProxy::start(endpoint(), 2, Fault::Delay(Duration::from_secs(3)));
    let mut export = with_s3(sandbox.command());
    export.env("AWS_ENDPOINT_URL", &proxy.endpoint).args([
        "export",
        "report",
        "big",
        "--out",
        &out,
        "--compression",
        "none",
    ]);
    sigterm_mid_upload(export, &proxy, &bucket);
    assert_unchanged(bucket.download("p").path(), &earlier);
}

#[test]
fn a_rerun_aborts_the_uploads_a_killed_run_left() {
    let bucket = Bucket::create("sigkill");
    let out = bucket.url("p");
    // Another report's unfinished upload, which this report's export must leave alone.
    let other = ObjectPath::from("p/_staging/r0/other.r0.00000.parquet.tmp");
    runtime()
        .block_on(bucket.store.put_multipart(&other))
        .unwrap();
    let fixture = Fixture::new();
    let rows = incompressible_rows(14_000);
    fixture.report_rows("big", &rows);
    let sandbox = Sandbox::with_data(fixture.path(), &["--page-size", "2000"]);
    let export = |endpoint: &str| {
        let mut command = with_s3(sandbox.command());
        command.env("AWS_ENDPOINT_URL", endpoint).args([
            "export",
            "report",
            "big",
            "--out",
            &out,
            "--compression",
            "none",
        ]);
        command
    };

    // Killed while part 2 of its upload is held back by the proxy.
    let proxy = FaultProxy::start(endpoint(), 2, Fault::Delay(Duration::from_secs(30)));
    let mut child = export(&proxy.endpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    proxy.wait_for_hit();
    child.kill().unwrap();
    child.wait().unwrap();
    let orphans = bucket.uploads();
    assert_eq!(orphans.len(), 2, "{orphans:?}");
    assert!(
        orphans
            .iter()
            .any(|k| k.starts_with("p/_staging/") && k.contains("/big.")),
        "{orphans:?}"
    );

    success(&export(endpoint()).output().unwrap());
    assert_eq!(
        bucket.uploads(),
        vec![other.to_string()],
        "only the other report's upload is left"
    );
    let keys = bucket.keys();
    assert!(!keys.iter().any(|k| k.contains("_staging")), "{keys:?}");
    assert_same_rows(&rows_by(bucket.download("p").path(), "i"), &as_rows(&rows));
}

#[test]
fn wrong_credentials_fail_before_fetching_with_one_line_and_no_secret() {
    let started = Instant::now();
    let output = with_s3(offline_api())
        .env("AWS_ENDPOINT_URL", auth_endpoint())
        .args([
            "-vvv",
            "export",
            "report",
            "r",
            "--out",
            "s3://kargo-auth/prefix",
        ])
        .output()
        .unwrap();
    let line = failure(&output, 1);
    assert!(
        line.contains("access to bucket \"kargo-auth\" denied"),
        "{line}"
    );
    assert!(line.contains(auth_endpoint()), "names the endpoint: {line}");
    assert!(line.contains("s3://kargo-auth/prefix"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_no_secret(&output, None, &S3_SECRETS);
}

#[test]
fn a_missing_bucket_fails_before_fetching() {
    let output = with_s3(offline_api())
        .args([
            "export",
            "report",
            "r",
            "--out",
            "s3://kargo-no-such-bucket/x",
        ])
        .output()
        .unwrap();
    let line = failure(&output, 1);
    assert!(
        line.contains("bucket \"kargo-no-such-bucket\" does not exist"),
        "{line}"
    );
    assert!(line.contains(endpoint()), "{line}");
}

#[test]
fn an_unreachable_endpoint_fails_in_seconds() {
    let closed = closed_port_url();
    let started = Instant::now();
    let output = with_s3(offline_api())
        .env("AWS_ENDPOINT_URL", &closed)
        .args(["export", "report", "r", "--out", "s3://bucket/x"])
        .output()
        .unwrap();
    let line = failure(&output, 1);
    assert!(line.contains("cannot reach the endpoint"), "{line}");
    assert!(line.contains(&closed), "{line}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn verbose_logs_of_an_export_hold_no_aws_secret() {
    let bucket = Bucket::create("verbose");
    let sandbox = Sandbox::start(&[]);
    let output = with_s3(sandbox.command())
        .args([
            "-vvv",
            "export",
            "report",
            "rpt_7f3a9c21",
            "--out",
            &bucket.url("v"),
        ])
        .output()
        .unwrap();
    success(&output);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("TRACE"),
        "trace logs are on"
    );
    assert_no_secret(&output, None, &S3_SECRETS);
    assert_eq!(
        bucket
            .sizes()
            .iter()
            .filter(|(k, _)| k.ends_with(".parquet"))
            .count(),
        1
    );

    // The same as JSON logs: every line an event, trace events included, still no secret.
    let output = with_s3(sandbox.command())
        .args(["-vvv", "--log-format", "json", "export", "report"])
        .args(["rpt_7f3a9c21", "--out", &bucket.url("json")])
        .output()
        .unwrap();
    success(&output);
    let events = json_events(&output);
    assert!(
        events.iter().any(|e| e["level"] == "TRACE"),
        "trace logs are on"
    );
    assert_no_secret(&output, None, &S3_SECRETS);
}

#[test]
fn on_a_terminal_progress_counts_export_pages_and_json_logs_stay_whole_lines() {
    let bucket = Bucket::create("tty");
    let sandbox = Sandbox::start(&["--page-size", "97"]);
    // `script` runs the binary on a pseudo-terminal and copies what it draws to stdout.
    let command = format!(
        "{} --api-base {} -v --log-format json export report rpt_7f3a9c21 --out {}",
        env!("CARGO_BIN_EXE_kargo-export"),
        sandbox.base,
        bucket.url("tty")
    );
    let mut script = Command::new("script");
    script
        .args(["-qec", &command, "/dev/null"])
        .env("KARGO_USERNAME", USERNAME)
        .env("KARGO_PASSWORD", PASSWORD)
        .stdin(Stdio::null());
    let output = with_s3(script)
        .output()
        .expect("script (util-linux) runs the binary on a pseudo-terminal");
    let screen = success(&output);
    // Pieces between carriage returns and newlines, without the "clear line" sequence.
    let pieces: Vec<&str> = screen
        .split(['\r', '\n'])
        .map(|piece| piece.trim_start_matches("\u{1b}[2K"))
        .collect();
    assert!(
        pieces
            .iter()
            .any(|p| p.contains(" pages, ") && p.contains(" rows, ")),
        "the progress line counts the export's pages: {screen:?}"
    );
    let logs: Vec<&&str> = pieces
        .iter()
        .filter(|p| p.contains("\"timestamp\""))
        .collect();
    assert!(!logs.is_empty(), "{screen:?}");
    for line in logs {
        let event: Value = serde_json::from_str(line.trim_end())
            .unwrap_or_else(|e| panic!("{e}: a log line shares its line: {line:?}"));
        assert!(event["level"].is_string(), "{event}");
    }
    assert!(
        screen.contains("exported rpt_7f3a9c21: 1500 rows"),
        "{screen:?}"
    );
}

#[test]
fn run_exports_each_report_once_into_s3_and_full_refresh_replaces_it() {
    let bucket = Bucket::create("run");
    let sandbox = Sandbox::start(&["--page-size", "250"]);
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &given_and_by_site(&bucket.url("runs/given"), &bucket.url("runs/site")),
    );

    let (output, first) = run_s3(&file, &[]);
    success(&output);
    assert_given_and_by_site_exported(&first);
    assert_eq!(job(&first, "given")["rows"], 1500);
    assert_eq!(job(&first, "by-site")["rows"], 600);
    let given = bucket.download("runs/given");
    assert_eq!(
        job(&first, "given")["files"].as_u64().unwrap() as usize,
        parquet_files(given.path()).len()
    );
    assert_rows_of(given.path(), SAMPLE_A, KEY_A);
    let site = bucket.download("runs/site");
    assert_rows_of(site.path(), SAMPLE_B, KEY_B);
    let keys = bucket.keys();
    let manifests: Vec<&String> = keys.iter().filter(|k| k.contains("/_manifests/")).collect();
    assert_eq!(
        manifests,
        [
            "runs/given/_manifests/rpt_7f3a9c21.json",
            "runs/site/_manifests/rpt_2b8e4d10.json",
            "runs/site/_manifests/rpt_e5d90a47.json",
        ],
        "an empty report counts too"
    );
    assert!(!keys.iter().any(|k| k.contains("_staging")), "{keys:?}");
    assert_eq!(bucket.uploads(), Vec::<String>::new());

    // The state is read back from S3: nothing to do, not one object written again.
    let before = bucket.objects();
    let (output, second) = run_s3(&file, &[]);
    success(&output);
    assert_nothing_exported(&second, &["given", "by-site"]);
    assert_eq!(bucket.objects(), before, "keys, etags and dates unchanged");

    let (output, third) = run_s3(&file, &["--full-refresh"]);
    success(&output);
    assert_given_and_by_site_exported(&third);
    let old: Vec<&String> = before
        .iter()
        .map(|(key, ..)| key)
        .filter(|k| k.ends_with(".parquet"))
        .collect();
    let after = bucket.keys();
    assert_eq!(after.len(), before.len(), "{after:?}");
    assert!(
        after
            .iter()
            .filter(|k| k.ends_with(".parquet"))
            .all(|k| !old.contains(&k)),
        "every data file was replaced by the new run's: {after:?}"
    );
    let given = bucket.download("runs/given");
    assert_rows_of(given.path(), SAMPLE_A, KEY_A);
}

#[test]
fn shards_of_concurrent_workers_cover_every_report_once_in_one_s3_prefix() {
    let bucket = Bucket::create("shards");
    // Each report has its own row count, so the rows read back tell the reports apart.
    let reports: Vec<(String, u64)> = (0..12u64)
        .map(|n| (format!("syn{n:02}"), 20 + 7 * n))
        .collect();
    let specs: Vec<String> = reports
        .iter()
        .map(|(id, rows)| format!("{id}={rows}"))
        .collect();
    let flags: Vec<&str> = specs
        .iter()
        .flat_map(|spec| ["--synthetic", spec.as_str()])
        .collect();
    let sandbox = Sandbox::start(&flags);
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            "[[job]]\nname = \"all\"\nkind = \"new-reports\"\nwhere = {{ requested_by = \"synthetic@example.com\" }}\nout = \"{}\"\n",
            bucket.url("shared")
        ),
    );
    let workers: Vec<_> = (0..3)
        .map(|k| {
            let summary = dir.path().join(format!("worker{k}.json"));
            let child = run_command(with_s3(binary()), &file, &summary)
                .args(["--shard", &format!("{k}/3")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (child, summary)
        })
        .collect();
    let mut seen: Vec<String> = Vec::new();
    for (child, summary) in workers {
        success(&child.wait_with_output().unwrap());
        let summary = read_summary(&summary);
        let mine = reports_of(&summary, "all");
        assert!(
            !mine.is_empty() && mine.len() < reports.len(),
            "each worker gets a share: {mine:?}"
        );
        seen.extend(mine);
    }
    seen.sort();
    let ids: Vec<&String> = reports.iter().map(|(id, _)| id).collect();
    assert_eq!(
        seen.iter().collect::<Vec<_>>(),
        ids,
        "every report exactly once"
    );

    let keys = bucket.keys();
    let manifests = keys.iter().filter(|k| k.starts_with("shared/_manifests/"));
    assert_eq!(manifests.count(), reports.len(), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains("_staging")), "{keys:?}");
    assert_eq!(bucket.uploads(), Vec::<String>::new());
    let local = bucket.download("shared");
    let data = parquet_files(local.path());
    for (id, rows) in &reports {
        let mine: Vec<&PathBuf> = data
            .iter()
            .filter(|p| is_data_of(&p.to_string_lossy(), id))
            .collect();
        assert_eq!(mine.len(), 1, "{id}: {data:?}");
        assert_same_rows(&read_file(local.path(), mine[0]), &synthetic_rows(*rows, 1));
    }

    // Every worker runs again: the state on S3 leaves nothing for any of them.
    let before = bucket.objects();
    for k in 0..3 {
        let (output, summary) = run_s3(&file, &["--shard", &format!("{k}/3")]);
        success(&output);
        assert_eq!(reports_of(&summary, "all"), Vec::<String>::new());
    }
    assert_eq!(bucket.objects(), before);
}

#[test]
fn a_dry_run_into_s3_writes_no_object_and_posts_nothing() {
    let bucket = Bucket::create("dry");
    let sandbox = Sandbox::start(&["--complete-after-ms", "100"]);
    let dir = tempfile::tempdir().unwrap();
    let dest = bucket.url("dest");
    let fresh = bucket.url("fresh");
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            "[[job]]\nname = \"given\"\nkind = \"reports\"\nids = [\"rpt_7f3a9c21\", \"rpt_2b8e4d10\"]\nout = \"{dest}\"\n\n\
             [[job]]\nname = \"fresh\"\nkind = \"submit\"\nrequest = {{ report_type = \"x\" }}\nout = \"{fresh}\"\n"
        ),
    );
    success(
        &with_s3(sandbox.command())
            .args(["export", "report", "rpt_2b8e4d10", "--out", &dest])
            .output()
            .unwrap(),
    );
    let before = bucket.objects();
    assert!(!before.is_empty());

    let (output, summary) = run_s3(&file, &["--dry-run"]);
    let stdout = success(&output);
    assert!(
        stdout.contains(&format!("would export rpt_7f3a9c21 (job given) to {dest}")),
        "{stdout}"
    );
    assert!(!stdout.contains("would export rpt_2b8e4d10"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "would export a new report request (job fresh) to {fresh}"
        )),
        "{stdout}"
    );
    assert_eq!(job(&summary, "given")["status"], "planned");
    assert_eq!(reports_of(&summary, "given"), ["rpt_7f3a9c21"]);
    assert_eq!(bucket.objects(), before, "no object written");

    let (output, summary) = run_s3(&file, &["--dry-run", "--full-refresh"]);
    success(&output);
    assert_eq!(
        reports_of(&summary, "given"),
        ["rpt_2b8e4d10", "rpt_7f3a9c21"]
    );
    assert_eq!(bucket.objects(), before, "no object written");
    assert_eq!(bucket.uploads(), Vec::<String>::new());
    assert_eq!(submitted(&sandbox), 0, "no POST");
}

#[test]
fn a_manual_endpoint_exports_to_s3_and_reads_back_row_by_row() {
    let bucket = Bucket::create("manual");
    let sandbox = Sandbox::start(&[]);
    let export = |out: &str, extra: &[&str]| {
        let output = with_s3(sandbox.command())
            .args([
                "export",
                "url",
                "/v1/test/rows?report=rpt_2b8e4d10&paging=next&size=70",
                "--out",
                out,
                "--data-path",
                "$.result['row sets'][0].items[*]",
                "--next-path",
                "$.paging.next",
            ])
            .args(extra)
            .output()
            .unwrap();
        success(&output)
    };

    let stdout = export(&bucket.url("manual/rows"), &[]);
    assert_eq!(pages_in_summary(&stdout), 9, "{stdout}");
    let keys = bucket.keys();
    assert_eq!(keys.len(), 2, "one data file and its manifest: {keys:?}");
    assert!(
        keys.iter().all(|k| k.starts_with("manual/rows/")),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .any(|k| k.starts_with("manual/rows/_manifests/")),
        "{keys:?}"
    );
    let local = bucket.download("manual/rows");
    assert_same_rows(&read_dataset(local.path()), &source_rows(SAMPLE_B));

    export(&bucket.url("manual/by-date"), &["--partition-by", "date"]);
    let local = bucket.download("manual/by-date");
    one_schema(local.path());
    assert_rows_of(local.path(), SAMPLE_B, KEY_B);
    let keys = bucket.keys();
    assert!(!keys.iter().any(|k| k.contains("_staging")), "{keys:?}");
    assert_eq!(bucket.uploads(), Vec::<String>::new());
}

#[test]
fn a_submit_job_keeps_its_submission_on_s3_and_never_posts_twice() {
    let bucket = Bucket::create("submit");
    let sandbox = Sandbox::start(&["--complete-after-ms", "2500"]);
    let dir = tempfile::tempdir().unwrap();
    let out = bucket.url("fresh");
    let jobs = |timeout: &str| {
        jobs_file(
            dir.path(),
            &sandbox,
            &format!(
                "[[job]]\nname = \"fresh\"\nkind = \"submit\"\npoll_interval_secs = 0.05\n{timeout}out = \"{out}\"\n\
                 partition_by = [\"date\"]\nrequest = {{ report_type = \"delivery_by_day\" }}\n"
            ),
        )
    };

    // The first run gives up before the report is ready; its submission is recorded on S3.
    let (output, _) = run_s3(&jobs("wait_timeout_secs = 0.3\n"), &[]);
    let error = failure(&output, 1);
    assert!(
        error.contains("report request rpt_sub0001: still \"pending\""),
        "{error}"
    );
    assert_eq!(bucket.keys(), ["fresh/_submissions/fresh.json"]);
    let record: Value =
        serde_json::from_slice(&bucket.get("fresh/_submissions/fresh.json")).unwrap();
    assert_eq!(record["report_id"], "rpt_sub0001");

    // The next run reads that record back from S3 and waits for the same report.
    let file = jobs("wait_timeout_secs = 30\n");
    let (output, summary) = run_s3(&file, &["-vvv", "--log-format", "json"]);
    success(&output);
    assert_eq!(submitted(&sandbox), 1, "no second POST");
    assert_eq!(reports_of(&summary, "fresh"), ["rpt_sub0001"]);
    assert_eq!(job(&summary, "fresh")["rows"], 240);
    assert!(
        json_events(&output)
            .iter()
            .any(|e| e["fields"]["message"] == "job done"),
        "the run logs as JSON"
    );
    assert_no_secret(&output, None, &S3_SECRETS);
    let local = bucket.download("fresh");
    assert_same_rows(
        &sorted(read_dataset(local.path()), SUBMITTED_KEY),
        &sorted(synthetic_rows(240, 1000), SUBMITTED_KEY),
    );

    // Exported: the next run has nothing to do and leaves S3 as it is.
    let before = bucket.objects();
    let (output, third) = run_s3(&file, &[]);
    success(&output);
    assert_eq!(reports_of(&third, "fresh"), Vec::<String>::new());
    assert_eq!(submitted(&sandbox), 1, "no second POST");
    assert_eq!(bucket.objects(), before);
}

#[test]
fn an_endpoint_job_exports_to_s3_on_every_run_and_replaces_its_files() {
    let bucket = Bucket::create("endpoint");
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            r#"[[job]]
name = "rows"
kind = "endpoint"
url = "/v1/test/rows?report=rpt_2b8e4d10&paging=page&size=100&require_key=1"
data_path = "$.result['row sets'][0].items[*]"
paginate = "page"
headers_env = {{ "X-Api-Key" = "{KEY_VAR}" }}
partition_by = ["date"]
out = "{}"
"#,
            bucket.url("endpoint")
        ),
    );

    let (output, summary) = run_s3(&file, &["-vvv", "--log-format", "json"]);
    success(&output);
    assert_eq!(reports_of(&summary, "rows"), ["rows"]);
    assert_eq!(job(&summary, "rows")["rows"], 600);
    json_events(&output);
    assert_no_secret(&output, None, &S3_SECRETS);
    let everything = format!("{output:?}{summary}");
    assert!(!everything.contains(SANDBOX_API_KEY), "the header leaked");
    let first = bucket.keys();
    assert!(
        first.contains(&"endpoint/_manifests/rows.json".to_owned()),
        "{first:?}"
    );
    let local = bucket.download("endpoint");
    assert_rows_of(local.path(), SAMPLE_B, KEY_B);

    // An endpoint has no notion of "new": the next run exports it again, replacing its files.
    let (output, summary) = run_s3(&file, &[]);
    success(&output);
    assert_eq!(reports_of(&summary, "rows"), ["rows"]);
    let second = bucket.keys();
    assert_eq!(second.len(), first.len(), "replaced, not added to");
    assert!(
        second
            .iter()
            .filter(|k| k.ends_with(".parquet"))
            .all(|k| !first.contains(k)),
        "{second:?}"
    );
    assert!(!second.iter().any(|k| k.contains("_staging")), "{second:?}");
    assert_eq!(bucket.uploads(), Vec::<String>::new());
    let local = bucket.download("endpoint");
    assert_rows_of(local.path(), SAMPLE_B, KEY_B);
}

#[test]
fn sigterm_during_a_runs_upload_leaves_no_parts_and_the_earlier_export_intact() {
    let bucket = Bucket::create("run-sigterm");
    let dir = tempfile::tempdir().unwrap();
    let jobs = |sandbox: &Sandbox| {
        jobs_file(
            dir.path(),
            sandbox,
            &format!(
                "[[job]]\nname = \"big\"\nkind = \"reports\"\nids = [\"big\"]\ncompression = \"none\"\nout = \"{}\"\n",
                bucket.url("p")
            ),
        )
    };
    let small = Fixture::new();
    small.report_rows("big", &numbered_rows(20));
    {
        let sandbox = Sandbox::with_data(small.path(), &[]);
        success(&run_s3(&jobs(&sandbox), &[]).0);
    }
    let earlier = snapshot(bucket.download("p").path());

    // Part 2 of the upload is held back by the proxy: the run is caught mid-upload.
    let large = Fixture::new();
    large.report_rows("big", &incompressible_rows(14_000));
    let sandbox = Sandbox::with_data(large.path(), &["--page-size", "2000"]);
    let proxy = FaultProxy::start(endpoint(), 2, Fault::Delay(Duration::from_secs(3)));
    let mut run = with_s3(binary());
    run.env(PASSWORD_VAR, PASSWORD)
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .arg("run")
        .arg(jobs(&sandbox))
        .arg("--full-refresh");
    sigterm_mid_upload(run, &proxy, &bucket);
    assert_unchanged(bucket.download("p").path(), &earlier);
}

#[test]
fn run_checks_each_s3_destination_before_reading_its_state() {
    let bucket = Bucket::create("checked");
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            "[[job]]\nname = \"lost\"\nkind = \"reports\"\nids = [\"rpt_2b8e4d10\"]\nout = \"s3://kargo-no-such-bucket/x\"\n\n\
             [[job]]\nname = \"good\"\nkind = \"reports\"\nids = [\"rpt_2b8e4d10\"]\nout = \"{}\"\n",
            bucket.url("good")
        ),
    );
    let (output, summary) = run_s3(&file, &["--concurrency", "1"]);
    let error = failure(&output, 1);
    assert!(
        error.contains("1 of 2 jobs failed (job \"lost\")"),
        "{error}"
    );
    assert!(
        error.contains("bucket \"kargo-no-such-bucket\" does not exist"),
        "{error}"
    );
    assert_eq!(job(&summary, "good")["rows"], 600);
    assert_eq!(job(&summary, "lost")["status"], "failed");

    // Keys the server refuses: one plain line per job, and no secret even in trace logs.
    let output = with_s3(binary())
        .env(PASSWORD_VAR, PASSWORD)
        .env("AWS_ENDPOINT_URL", auth_endpoint())
        .args(["-vvv", "--log-format", "json", "run"])
        .arg(&file)
        .output()
        .unwrap();
    let error = failure(&output, 1);
    assert!(error.contains("2 of 2 jobs failed"), "{error}");
    assert!(
        error.contains("access to bucket \"kargo-no-such-bucket\" denied"),
        "{error}"
    );
    assert_no_secret(&output, None, &S3_SECRETS);
}

#[test]
fn a_submit_job_into_a_missing_bucket_posts_nothing() {
    // A POST whose record cannot be kept would be sent again on every run.
    let sandbox = Sandbox::start(&["--complete-after-ms", "100"]);
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        &sandbox,
        "[[job]]\nname = \"fresh\"\nkind = \"submit\"\nrequest = { report_type = \"x\" }\nout = \"s3://kargo-no-such-bucket/fresh\"\n",
    );
    for flags in [&[][..], &["--full-refresh"][..]] {
        let (output, summary) = run_s3(&file, flags);
        let error = failure(&output, 1);
        assert!(
            error.contains("bucket \"kargo-no-such-bucket\" does not exist"),
            "{error}"
        );
        assert_eq!(job(&summary, "fresh")["status"], "failed");
    }
    assert_eq!(submitted(&sandbox), 0, "no POST");
}

/// Exports report `big` of `count` numbered rows to `out`: the earlier export a later,
/// interrupted one must leave intact.
fn export_numbered(out: &str, count: i64) {
    let fixture = Fixture::new();
    fixture.report_rows("big", &numbered_rows(count));
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    success(
        &with_s3(sandbox.command())
            .args(["export", "report", "big", "--out", out])
            .output()
            .unwrap(),
    );
}

/// Starts `command`, which uploads to `bucket` through `proxy`, and sends it SIGTERM once the
/// proxy holds back the targeted part; asserts that it exits 143 with the one `interrupted`
/// line and leaves no multipart upload or staging object behind.
fn sigterm_mid_upload(mut command: Command, proxy: &FaultProxy, bucket: &Bucket) {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    proxy.wait_for_hit();
    assert_eq!(bucket.uploads().len(), 1, "an upload is in progress");
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill only sends a signal to our own child process, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let output = child.wait_with_output().unwrap();
    assert_eq!(failure(&output, 143), "error: interrupted (SIGTERM)");
    bucket.assert_no_leftovers();
}

/// Whether `key` is a data file of `report` (`.../<report>.<run>.<seq>.parquet`).
fn is_data_of(key: &str, report: &str) -> bool {
    let name = key.rsplit('/').next().unwrap();
    key.ends_with(".parquet") && name.starts_with(&format!("{report}."))
}

/// Rows `i` in `range` spread over `days` day partitions.
fn dated_rows(range: std::ops::Range<i64>, days: i64) -> Vec<Value> {
    range
        .map(|i| serde_json::json!({"i": i, "day": format!("2025-01-{:02}", 1 + i % days), "v": i * 3}))
        .collect()
}

/// Rows of about 900 bytes of random text each, so Parquet cannot shrink them.
fn incompressible_rows(count: i64) -> Vec<Value> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..count)
        .map(|i| {
            let text: String = (0..900).map(|_| rng.alphanumeric()).collect();
            serde_json::json!({"i": i, "text": text, "spend": i as f64 / 8.0})
        })
        .collect()
}
