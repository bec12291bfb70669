//! `run JOBS.toml`: jobs-file errors, incremental state (a second run exports nothing),
//! submit-and-wait, a failing job among good ones, N concurrent shards, dry runs and endpoint
//! jobs (a manual endpoint with a secret header from the environment).

use std::path::Path;

use kargo_export::sandbox::test_rows::SANDBOX_API_KEY;
use serde_json::{Value, json};

use crate::runs::*;
use crate::util::*;

/// Every file under `dir` with its modification time.
fn mtimes(dir: &Path) -> Vec<(String, std::time::SystemTime)> {
    files(dir)
        .into_iter()
        .map(|f| {
            let modified = std::fs::metadata(dir.join(&f)).unwrap().modified().unwrap();
            (f, modified)
        })
        .collect()
}

#[test]
fn jobs_file_errors_name_the_line_and_exit_2() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[job]]\nname = \"a\"\nkind = \"reports\"\nids = [\"x\"]\nout = \"o\"\ncompresion = \"zstd\"\n",
            "line 11, column 1",
            "compresion",
        ),
        (
            "[[job]]\nname = \"a\"\nkind = \"weekly\"\nout = \"o\"\n",
            "line 8, column 8",
            "unknown kind \"weekly\"",
        ),
        (
            "[[job]]\nname = \"a\"\nkind = \"reports\"\nids = [\"x\"\nout = \"o\"\n",
            "line 10, column 1",
            "missing comma between array elements",
        ),
    ];
    for (jobs, line, what) in cases {
        let file = jobs_file(dir.path(), &sandbox, jobs);
        let (output, summary) = run(&file, &[]);
        let error = failure(&output, 2);
        assert!(
            error.contains(&format!("{}, {line}", file.display())),
            "{error}"
        );
        assert!(error.contains(what), "{error}");
        assert!(output.stdout.is_empty(), "no partial output");
        assert_eq!(summary, Value::Null, "no summary for a bad file");
    }

    let inline = dir.path().join("inline.toml");
    std::fs::write(
        &inline,
        "[connection]\nusername = \"u\"\npassword = \"hunter2-secret\"\n\n[[job]]\nname = \"a\"\nkind = \"report-list\"\nout = \"o\"\n",
    )
    .unwrap();
    let (output, _) = run(&inline, &[]);
    let error = failure(&output, 2);
    assert!(error.contains("line 3, column 12"), "{error}");
    assert!(
        error.contains("an inline password is not allowed"),
        "{error}"
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains("hunter2"));

    let unset = jobs_file(
        dir.path(),
        &sandbox,
        "[[job]]\nname = \"a\"\nkind = \"report-list\"\nout = \"o\"\n",
    );
    let output = binary().arg("run").arg(&unset).output().unwrap();
    let error = failure(&output, 2);
    assert!(
        error.contains(&format!(
            "password_env names {PASSWORD_VAR}, which is not set"
        )),
        "{error}"
    );
}

#[test]
fn two_runs_export_each_report_once_and_full_refresh_redoes_them() {
    let sandbox = Sandbox::start(&["--page-size", "250"]);
    let dir = tempfile::tempdir().unwrap();
    let given = dir.path().join("given");
    let new = dir.path().join("new");
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &given_and_by_site(
            &given.display().to_string(),
            &format!("file://{}", new.display()),
        ),
    );

    let (output, first) = run(&file, &[]);
    let stdout = success(&output);
    assert!(stdout.contains("given"), "{stdout}");
    assert_given_and_by_site_exported(&first);
    assert_eq!(job(&first, "given")["rows"], 1500);
    assert_eq!(job(&first, "by-site")["rows"], 600);
    assert_eq!(job(&first, "given")["status"], "ok");
    assert_eq!(
        job(&first, "given")["files"].as_u64().unwrap() as usize,
        parquet_files(&given).len()
    );
    assert_rows_of(&given, SAMPLE_A, KEY_A);
    assert_rows_of(&new, SAMPLE_B, KEY_B);
    assert!(given.join("_manifests/rpt_7f3a9c21.json").is_file());
    assert!(
        new.join("_manifests/rpt_e5d90a47.json").is_file(),
        "an empty report counts too"
    );

    let before = (mtimes(&given), mtimes(&new));
    let (output, second) = run(&file, &[]);
    success(&output);
    assert_nothing_exported(&second, &["given", "by-site"]);
    assert_eq!(
        (mtimes(&given), mtimes(&new)),
        before,
        "the second run wrote nothing"
    );

    let (output, third) = run(&file, &["--full-refresh"]);
    success(&output);
    assert_given_and_by_site_exported(&third);
    let names_before: Vec<&String> = before.0.iter().map(|(f, _)| f).collect();
    let after = files(&given);
    assert_eq!(after.len(), names_before.len());
    assert!(
        after
            .iter()
            .filter(|f| f.ends_with(".parquet"))
            .all(|f| !names_before.contains(&f)),
        "every data file was replaced by the new run's"
    );
    assert_rows_of(&given, SAMPLE_A, KEY_A);

    // Deleting a manifest makes the next run export that report again.
    std::fs::remove_file(new.join("_manifests/rpt_2b8e4d10.json")).unwrap();
    let (output, fourth) = run(&file, &[]);
    success(&output);
    assert_eq!(reports_of(&fourth, "by-site"), ["rpt_2b8e4d10"]);
    assert_eq!(reports_of(&fourth, "given"), Vec::<String>::new());
}

#[test]
fn one_failing_job_fails_the_run_while_the_others_complete() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    let bad = dir.path().join("bad");
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            "[[job]]\nname = \"bad\"\nkind = \"reports\"\nids = [\"rpt_missing\", \"rpt_2b8e4d10\"]\nout = \"{}\"\n\n\
             [[job]]\nname = \"good\"\nkind = \"reports\"\nids = [\"rpt_7f3a9c21\"]\nout = \"{}\"\n",
            bad.display(),
            good.display()
        ),
    );
    let (output, summary) = run(&file, &["--concurrency", "1"]);
    let error = failure(&output, 1);
    assert!(
        error.contains("1 of 2 jobs failed (job \"bad\")"),
        "{error}"
    );
    assert!(error.contains("rpt_missing"), "{error}");
    assert!(error.contains("404"), "{error}");
    assert_eq!(job(&summary, "bad")["status"], "failed");
    assert_eq!(
        reports_of(&summary, "bad"),
        ["rpt_2b8e4d10"],
        "its other report is done"
    );
    let bad_error = job(&summary, "bad")["error"].as_str().unwrap();
    assert!(bad_error.starts_with("rpt_missing: "), "{bad_error}");
    assert_eq!(job(&summary, "good")["status"], "ok");
    assert_eq!(job(&summary, "good")["error"], Value::Null);
    assert_rows_of(&good, SAMPLE_A, KEY_A);
    assert_eq!(
        files(&bad)
            .iter()
            .filter(|f| f.starts_with("_manifests/"))
            .collect::<Vec<_>>(),
        ["_manifests/rpt_2b8e4d10.json"]
    );
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("2 jobs, 1 failed"), "{table}");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).lines().count(),
        1,
        "one error line"
    );

    // The next run retries only what failed.
    let (output, again) = run(&file, &[]);
    failure(&output, 1);
    assert_eq!(reports_of(&again, "bad"), Vec::<String>::new());
    assert_eq!(reports_of(&again, "good"), Vec::<String>::new());
}

#[test]
fn the_reports_of_a_run_share_one_login() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest");
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            // Two report types in one destination: this test is about the login, not the schema.
            "[[job]]\nname = \"given\"\nkind = \"reports\"\nids = [\"rpt_7f3a9c21\", \"rpt_2b8e4d10\"]\nout = \"{0}\"\non_schema_change = \"allow\"\n\n\
             [[job]]\nname = \"list\"\nkind = \"report-list\"\nout = \"{0}/list\"\n",
            dest.display()
        ),
    );
    let (output, summary) = run(&file, &["-vv"]);
    success(&output);
    assert_eq!(
        reports_of(&summary, "given"),
        ["rpt_2b8e4d10", "rpt_7f3a9c21"]
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.matches("logged in").count(), 1, "{stderr}");
}

#[test]
fn submit_and_wait_exports_the_new_report_once() {
    let sandbox = Sandbox::start(&["--complete-after-ms", "400"]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("fresh");
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            "[[job]]\nname = \"fresh\"\nkind = \"submit\"\npoll_interval_secs = 0.05\nout = \"{}\"\npartition_by = [\"date\"]\n\
             request = {{ report_type = \"delivery_by_day\", date_range = {{ start = \"${{today-7}}\", end = \"${{yesterday}}\" }} }}\n",
            dest.display()
        ),
    );
    let today = chrono::Utc::now().date_naive();
    let started = std::time::Instant::now();
    let (output, summary) = run(&file, &[]);
    success(&output);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(400),
        "it waited"
    );
    assert_eq!(reports_of(&summary, "fresh"), ["rpt_sub0001"]);
    assert_eq!(job(&summary, "fresh")["rows"], 240);
    let requests = submissions(&sandbox);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["status"], "completed");
    assert_eq!(requests[0]["report_type"], "delivery_by_day");
    // The run's day filled in the relative dates.
    let day = |days: u64| (today - chrono::Days::new(days)).to_string();
    assert_eq!(
        requests[0]["date_range"],
        json!({"start": day(7), "end": day(1)})
    );
    assert_same_rows(
        &sorted(read_dataset(&dest), SUBMITTED_KEY),
        &sorted(synthetic_rows(240, 1000), SUBMITTED_KEY),
    );
    let record: Value =
        serde_json::from_slice(&std::fs::read(dest.join("_submissions/fresh.json")).unwrap())
            .unwrap();
    assert_eq!(record["report_id"], "rpt_sub0001");

    // The same request again: nothing submitted, nothing exported.
    let (output, second) = run(&file, &[]);
    success(&output);
    assert_eq!(reports_of(&second, "fresh"), Vec::<String>::new());
    assert_eq!(submitted(&sandbox), 1, "no second POST");
}

#[test]
fn submit_and_wait_fails_clearly_on_failure_and_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let job_toml = |timeout: &str| {
        format!(
            "[[job]]\nname = \"fresh\"\nkind = \"submit\"\npoll_interval_secs = 0.05\n{timeout}out = \"{}\"\nrequest = {{ report_type = \"x\" }}\n",
            dir.path().join("out").display()
        )
    };
    let failing = Sandbox::start(&["--complete-after-ms", "100", "--fail-submissions"]);
    let file = jobs_file(dir.path(), &failing, &job_toml(""));
    let (output, summary) = run(&file, &[]);
    let error = failure(&output, 1);
    assert!(
        error.contains("report request rpt_sub0001: the API reports status \"failed\""),
        "{error}"
    );
    assert_eq!(job(&summary, "fresh")["status"], "failed");
    // A failed request is not waited for again: the next run submits a new one.
    let (output, _) = run(&file, &[]);
    let error = failure(&output, 1);
    assert!(
        error.contains("report request rpt_sub0002: the API reports status \"failed\""),
        "{error}"
    );

    let slow = Sandbox::start(&["--complete-after-ms", "2500"]);
    let file = jobs_file(dir.path(), &slow, &job_toml("wait_timeout_secs = 0.4\n"));
    let started = std::time::Instant::now();
    let (output, _) = run(&file, &["--full-refresh"]);
    let error = failure(&output, 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert!(
        error.contains("report request rpt_sub0001: still \"pending\" after"),
        "{error}"
    );
    assert!(error.contains("wait_timeout_secs = 0.4"), "{error}");
    assert!(parquet_files(&dir.path().join("out")).is_empty());

    // The next run waits for the same report instead of submitting it again.
    let file = jobs_file(dir.path(), &slow, &job_toml("wait_timeout_secs = 30\n"));
    let (output, summary) = run(&file, &[]);
    success(&output);
    assert_eq!(reports_of(&summary, "fresh"), ["rpt_sub0001"]);
    assert_eq!(job(&summary, "fresh")["rows"], 240);
    assert_eq!(submitted(&slow), 1, "no second POST");
}

/// A fixture with `count` completed reports `r00`.. of 5 numbered rows each (`i` unique overall).
fn many_reports(count: i64) -> Fixture {
    let fixture = Fixture::new();
    let list: Vec<Value> = (0..count)
        .map(|n| json!({"id": format!("r{n:02}"), "status": "completed", "report_type": "t"}))
        .collect();
    fixture.reports(&Value::Array(list));
    for n in 0..count {
        let rows: Vec<Value> = numbered_rows(5)
            .into_iter()
            .map(|mut row| {
                row["i"] = json!(n * 5 + row["i"].as_i64().unwrap());
                row
            })
            .collect();
        fixture.report_rows(&format!("r{n:02}"), &rows);
    }
    fixture
}

#[test]
fn shards_of_concurrent_workers_cover_every_report_exactly_once() {
    let fixture = many_reports(24);
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("shared");
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            "[[job]]\nname = \"all\"\nkind = \"new-reports\"\nout = \"{}\"\n",
            dest.display()
        ),
    );
    let workers: Vec<_> = (0..3)
        .map(|k| {
            let summary = dir.path().join(format!("worker{k}.json"));
            let mut command = run_command(binary(), &file, &summary);
            command.stdout(std::process::Stdio::null());
            if k == 2 {
                // Kubernetes Indexed Job style: the index from the environment.
                command
                    .env("JOB_COMPLETION_INDEX", "2")
                    .args(["--shards", "3"]);
            } else {
                command.args(["--shard", &format!("{k}/3")]);
            }
            (command.spawn().unwrap(), summary)
        })
        .collect();
    let mut seen: Vec<String> = Vec::new();
    for (mut child, summary) in workers {
        assert!(child.wait().unwrap().success());
        let summary = read_summary(&summary);
        let mine = reports_of(&summary, "all");
        assert!(
            !mine.is_empty() && mine.len() < 24,
            "each worker gets a share: {mine:?}"
        );
        seen.extend(mine);
    }
    seen.sort();
    let all: Vec<String> = (0..24).map(|n| format!("r{n:02}")).collect();
    assert_eq!(seen, all, "every report exactly once");
    let manifests: Vec<String> = files(&dest)
        .into_iter()
        .filter(|f| f.starts_with("_manifests/"))
        .collect();
    assert_eq!(manifests.len(), 24);
    assert!(!dest.join("_staging").exists());
    let rows = rows_by(&dest, "i");
    assert_eq!(
        column(&rows, "i"),
        (0..120).map(|i| json!(i)).collect::<Vec<_>>()
    );

    // Every worker runs again: nothing left for any of them.
    for k in 0..3 {
        let (output, summary) = run(&file, &["--shard", &format!("{k}/3")]);
        success(&output);
        assert_eq!(reports_of(&summary, "all"), Vec::<String>::new());
    }
}

#[test]
fn dry_run_lists_the_work_and_touches_nothing() {
    let sandbox = Sandbox::start(&["--complete-after-ms", "100"]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest");
    let fresh = dir.path().join("fresh");
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            "[[job]]\nname = \"given\"\nkind = \"reports\"\nids = [\"rpt_7f3a9c21\", \"rpt_2b8e4d10\"]\nout = \"{}\"\n\n\
             [[job]]\nname = \"fresh\"\nkind = \"submit\"\nrequest = {{ report_type = \"x\" }}\nout = \"{}\"\n",
            dest.display(),
            fresh.display()
        ),
    );
    success(&sandbox.export(&["rpt_2b8e4d10"], &dest, &[]));
    let before = snapshot(&dest);
    let (output, summary) = run(&file, &["--dry-run"]);
    let stdout = success(&output);
    assert!(
        stdout.contains("would export rpt_7f3a9c21 (job given)"),
        "{stdout}"
    );
    assert!(!stdout.contains("would export rpt_2b8e4d10"), "{stdout}");
    assert!(
        stdout.contains("would export a new report request (job fresh)"),
        "{stdout}"
    );
    assert_eq!(job(&summary, "given")["status"], "planned");
    assert_eq!(reports_of(&summary, "given"), ["rpt_7f3a9c21"]);
    assert_unchanged(&dest, &before);
    assert!(
        !fresh.exists(),
        "a destination the dry run opened is not left behind"
    );
    assert_eq!(submitted(&sandbox), 0, "no POST");

    let (output, _) = run(&file, &["--dry-run", "--full-refresh"]);
    let stdout = success(&output);
    assert!(
        stdout.contains("would export rpt_2b8e4d10 (job given)"),
        "{stdout}"
    );
    assert_unchanged(&dest, &before);
}

#[test]
fn run_works_with_the_in_process_sandbox_and_keeps_secrets_out() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let file = dir.path().join("jobs.toml");
    std::fs::write(
        &file,
        format!(
            "[connection]\nsandbox = true\n\n[[job]]\nname = \"list\"\nkind = \"report-list\"\nout = \"{}\"\n\n\
             [[job]]\nname = \"fresh\"\nkind = \"submit\"\npoll_interval_secs = 0.1\nrequest = {{ report_type = \"x\" }}\nout = \"{}\"\n",
            dest.display(),
            dest.join("fresh").display()
        ),
    )
    .unwrap();
    let (output, summary) = run(&file, &["-vv", "--log-format", "json"]);
    success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let events = json_events(&output);
    let done: Vec<&Value> = events
        .iter()
        .filter(|e| e["fields"]["message"] == "job done")
        .collect();
    assert_eq!(done.len(), 2, "{stderr}");
    assert!(done.iter().all(|e| e["level"] == "INFO"));
    assert_eq!(reports_of(&summary, "list"), ["reports"]);
    assert_eq!(reports_of(&summary, "fresh"), ["rpt_sub0001"]);
    assert_eq!(job(&summary, "fresh")["rows"], 240);
    let everything = format!(
        "{}{}{summary}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!everything.contains(PASSWORD), "the password leaked");
    assert!(!everything.contains("sbx_"), "a token leaked");

    // No [connection]: the global --sandbox flag.
    let given = dir.path().join("given");
    std::fs::write(
        &file,
        format!(
            "[[job]]\nname = \"given\"\nkind = \"reports\"\nids = [\"rpt_7f3a9c21\"]\nout = \"{}\"\n",
            given.display()
        ),
    )
    .unwrap();
    let (output, summary) = run(&file, &["--sandbox"]);
    success(&output);
    assert_eq!(job(&summary, "given")["rows"], 1500);
    assert_rows_of(&given, SAMPLE_A, KEY_A);
}

#[test]
fn sigterm_stops_a_run_that_waits_for_a_report() {
    let sandbox = Sandbox::start(&["--complete-after-ms", "60000"]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("fresh");
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            "[[job]]\nname = \"fresh\"\nkind = \"submit\"\npoll_interval_secs = 0.05\nrequest = {{ report_type = \"x\" }}\nout = \"{}\"\n",
            dest.display()
        ),
    );
    let child = binary()
        .env(PASSWORD_VAR, PASSWORD)
        .arg("run")
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let record = dest.join("_submissions/fresh.json");
    let started = std::time::Instant::now();
    while !record.exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "never submitted"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: sends a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let output = child.wait_with_output().unwrap();
    let error = failure(&output, 143);
    assert_eq!(error, "error: interrupted (SIGTERM)");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(parquet_files(&dest).is_empty());
}

#[test]
fn a_report_two_jobs_share_in_one_destination_is_exported_once() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("shared");
    let job = |name: &str| {
        format!(
            "[[job]]\nname = \"{name}\"\nkind = \"reports\"\nids = [\"rpt_7f3a9c21\"]\nout = \"{}\"\n\n",
            dest.display()
        )
    };
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!("{}{}", job("first"), job("second")),
    );
    let (output, summary) = run(&file, &["--concurrency", "2"]);
    success(&output);
    assert_eq!(reports_of(&summary, "first"), ["rpt_7f3a9c21"]);
    assert_eq!(reports_of(&summary, "second"), Vec::<String>::new());
    assert_rows_of(&dest, SAMPLE_A, KEY_A);
}

/// An endpoint job over the sandbox's `/v1/test/rows` (report B by page numbers, 100 rows a
/// page, the key required) with a rename, a cast and an added column.
fn endpoint_job(dest: &Path) -> String {
    format!(
        r#"[[job]]
name = "rows"
kind = "endpoint"
url = "/v1/test/rows?report=rpt_2b8e4d10&paging=page&size=100&require_key=1"
data_path = "$.result['row sets'][0].items[*]"
paginate = "page"
headers = {{ Accept = "application/json" }}
headers_env = {{ "X-Api-Key" = "{KEY_VAR}" }}
rename = {{ site_domain = "site" }}
cast = {{ clicks = "string" }}
add_column = {{ source = "sandbox" }}
out = "{}"
"#,
        dest.display()
    )
}

/// Report B's rows as [`endpoint_job`] shapes them.
fn endpoint_rows() -> Vec<Row> {
    source_rows(SAMPLE_B)
        .into_iter()
        .map(|mut row| {
            let site = row.remove("site_domain").expect("site_domain");
            row.insert("site".into(), site);
            let clicks = row["clicks"].to_string();
            row.insert("clicks".into(), Value::String(clicks));
            row.insert("source".into(), json!("sandbox"));
            row
        })
        .collect()
}

#[test]
fn an_endpoint_job_exports_every_run_with_its_key_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("rows");
    let file = dir.path().join("jobs.toml");
    std::fs::write(&file, endpoint_job(&dest)).unwrap();

    let (output, summary) = run_in(with_endpoint_key(binary()), &file, &["--sandbox", "-vvv"]);
    success(&output);
    let row = job(&summary, "rows");
    assert_eq!(row["kind"], "endpoint");
    assert_eq!(row["status"], "ok");
    assert_eq!(reports_of(&summary, "rows"), ["rows"]);
    assert_eq!(row["rows"], 600);
    assert_same_rows(&read_dataset(&dest), &endpoint_rows());
    assert!(dest.join("_manifests/rows.json").exists());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TRACE"), "trace logs were on");
    let everything = format!(
        "{}{stderr}{summary}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        !everything.contains(SANDBOX_API_KEY),
        "the header value leaked"
    );

    // No notion of "new": the next run exports it again and replaces the earlier files.
    let first = mtimes(&dest);
    let (output, summary) = run_in(with_endpoint_key(binary()), &file, &["--sandbox"]);
    success(&output);
    assert_eq!(reports_of(&summary, "rows"), ["rows"]);
    let second = mtimes(&dest);
    assert_eq!(second.len(), first.len(), "replaced, not added to");
    assert_ne!(second, first);
    assert_same_rows(&read_dataset(&dest), &endpoint_rows());

    // A dry run lists it and writes nothing.
    let before = snapshot(&dest);
    let (output, summary) = run_in(
        with_endpoint_key(binary()),
        &file,
        &["--sandbox", "--dry-run"],
    );
    let stdout = success(&output);
    assert!(stdout.contains("would export rows (job rows)"), "{stdout}");
    assert_eq!(job(&summary, "rows")["status"], "planned");
    assert_unchanged(&dest, &before);

    // Shards: exactly one of two workers owns it.
    let owners: Vec<usize> = (0..2)
        .filter(|i| {
            let shard = format!("{i}/2");
            let (output, summary) = run_in(
                with_endpoint_key(binary()),
                &file,
                &["--sandbox", "--dry-run", "--shard", &shard],
            );
            success(&output);
            !reports_of(&summary, "rows").is_empty()
        })
        .collect();
    assert_eq!(owners.len(), 1, "{owners:?}");

    // Without the variable the run does not start, and says which variable is missing.
    let (output, summary) = run(&file, &["--sandbox"]);
    let error = failure(&output, 2);
    assert!(
        error.contains(&format!(
            "headers_env \"X-Api-Key\" names {KEY_VAR}, which is not set"
        )),
        "{error}"
    );
    assert!(error.contains("line 8, column 15"), "{error}");
    assert_eq!(summary, Value::Null);
    assert_unchanged(&dest, &before);
}

#[test]
fn a_bad_endpoint_key_names_its_line_and_never_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("rows");
    let file = dir.path().join("jobs.toml");
    let text = endpoint_job(&dest).replace(
        "data_path = \"$.result['row sets'][0].items[*]\"",
        "data_path = \"result.items\"",
    );
    std::fs::write(&file, text).unwrap();
    let (output, summary) = run_in(with_endpoint_key(binary()), &file, &["--sandbox", "-vvv"]);
    let error = failure(&output, 2);
    assert!(
        error.contains(&format!(
            "invalid jobs file ({}, line 5, column 13): job \"rows\": data_path: ",
            file.display()
        )),
        "{error}"
    );
    assert!(output.stdout.is_empty(), "no partial output");
    assert_eq!(summary, Value::Null);
    assert!(!dest.exists(), "nothing written");
    assert!(!String::from_utf8_lossy(&output.stderr).contains(SANDBOX_API_KEY));

    let inline = endpoint_job(&dest).replace(
        "headers = { Accept = \"application/json\" }",
        "headers = { \"X-Api-Key\" = \"inline-secret\" }",
    );
    std::fs::write(&file, inline).unwrap();
    let (output, _) = run(&file, &["--sandbox"]);
    let error = failure(&output, 2);
    assert!(
        error.contains("header \"X-Api-Key\" may hold a secret"),
        "{error}"
    );
    assert!(!error.contains("inline-secret"), "{error}");
}
