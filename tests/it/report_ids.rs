//! Report requests whatever their id is called: the report list and the answer to
//! `POST /v1/reports` with the id at `id`, `report_id` or `reportId`, as a string or an
//! integer, read alike by `reports`, `new-reports` jobs and `submit` jobs; `--id-field`,
//! `--status-field`, `--completed-status` and the jobs file's keys for other names; and a
//! listing (or an answer) with no recognisable id, or (for the jobs that go by status) no
//! status: one `error:` line naming the keys the rows do have and the setting to use, exit 1,
//! nothing written.

use std::path::Path;

use serde_json::{Value, json};

use crate::runs::*;
use crate::util::*;

/// A jobs file in `dir` with top-level keys `top` (before any table), a connection to
/// `sandbox`, and `jobs`.
fn jobs_file_with(dir: &Path, top: &str, sandbox: &Sandbox, jobs: &str) -> std::path::PathBuf {
    let path = dir.join("jobs.toml");
    let text = format!(
        "{top}\n[connection]\napi_base = \"{}\"\nusername = \"{USERNAME}\"\npassword_env = \"{PASSWORD_VAR}\"\n\n{jobs}",
        sandbox.base
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A `new-reports` job exporting every completed `by_day` report into `dest`.
fn by_day_job(dest: &Path) -> String {
    format!(
        "[[job]]\nname = \"by-day\"\nkind = \"new-reports\"\nwhere = {{ report_type = \"by_day\" }}\nout = \"{}\"\n",
        dest.display()
    )
}

/// Rows of report `id`: each row says which report it came from.
fn rows_of(id: &str, count: i64) -> Vec<Value> {
    (0..count).map(|n| json!({"report": id, "n": n})).collect()
}

/// A sandbox over four report requests whose ids are at `key`: `r_a` and the integer 7
/// (completed, `by_day`), `r_p` (pending, `by_day`) and `r_s` (completed, `by_site`).
fn sandbox_with_ids_at(key: &str) -> (Fixture, Sandbox) {
    let fixture = Fixture::new();
    let request = |id: Value, status: &str, kind: &str| {
        let mut row = serde_json::Map::new();
        row.insert(key.to_string(), id);
        row.insert("status".into(), json!(status));
        row.insert("report_type".into(), json!(kind));
        Value::Object(row)
    };
    fixture.reports(&json!([
        request(json!("r_a"), "completed", "by_day"),
        request(json!(7), "completed", "by_day"),
        request(json!("r_p"), "pending", "by_day"),
        request(json!("r_s"), "completed", "by_site"),
    ]));
    fixture.report_rows("r_a", &rows_of("r_a", 3));
    fixture.report_rows("7", &rows_of("7", 2));
    fixture.report_rows("r_s", &rows_of("r_s", 1));
    let sandbox = Sandbox::with_data(fixture.path(), &["--page-size", "2"]);
    (fixture, sandbox)
}

/// The rows under `dest`, sorted by report and number.
fn exported(dest: &Path) -> Vec<Row> {
    let mut rows = read_dataset(dest);
    rows.sort_by_key(|r| (r["report"].to_string(), r["n"].as_i64()));
    rows
}

#[test]
fn new_reports_jobs_read_ids_at_id_report_id_or_report_id_camel_as_strings_or_integers() {
    for key in ["id", "report_id", "reportId"] {
        let (_fixture, sandbox) = sandbox_with_ids_at(key);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let file = jobs_file(dir.path(), &sandbox, &by_day_job(&dest));
        let (output, summary) = run(&file, &[]);
        success(&output);
        assert_eq!(reports_of(&summary, "by-day"), ["7", "r_a"], "{key}");
        assert_eq!(job(&summary, "by-day")["rows"], 5, "{key}");
        let want: Vec<Row> = as_rows(&[rows_of("7", 2), rows_of("r_a", 3)].concat());
        assert_same_rows(&exported(&dest), &want);
        let manifests: Vec<String> = files(&dest)
            .into_iter()
            .filter(|f| f.starts_with("_manifests/"))
            .collect();
        assert_eq!(manifests, ["_manifests/7.json", "_manifests/r_a.json"]);

        // The state knows the integer id: the next run has nothing to do.
        let (output, again) = run(&file, &[]);
        success(&output);
        assert_nothing_exported(&again, &["by-day"]);

        // `reports` lists the same requests under the API's own key.
        let table = success(&sandbox.run(&["reports"]));
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with(&format!("{key} ")), "{table}");
        let first_cells: Vec<&str> = lines[1..5]
            .iter()
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(first_cells, ["r_a", "7", "r_p", "r_s"], "{table}");
        assert_eq!(lines[5], "(4 reports)");
    }
}

/// A sandbox whose report requests name their id `uuid` and their status `state` (`done` when
/// completed): `u1` and `u2` are done, `u3` is running.
fn sandbox_with_odd_keys() -> (Fixture, Sandbox) {
    let fixture = Fixture::new();
    fixture.reports(&json!([
        {"uuid": "u1", "state": "done", "report_type": "by_day"},
        {"uuid": "u2", "state": "done", "report_type": "by_site"},
        {"uuid": "u3", "state": "running", "report_type": "by_day"},
    ]));
    fixture.report_rows("u1", &rows_of("u1", 2));
    fixture.report_rows("u2", &rows_of("u2", 1));
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    (fixture, sandbox)
}

#[test]
fn a_listing_without_a_recognisable_id_is_an_error_naming_its_keys_and_nothing_is_written() {
    let (_fixture, sandbox) = sandbox_with_odd_keys();
    let want = format!(
        "error: invalid report list ({}/v1/reports): none of its 3 rows has a report id at id, \
         report_id or reportId (a non-empty string or an integer); the rows have keys \
         \"report_type\", \"state\", \"uuid\"; name the id's key with --id-field or the jobs \
         file's id_field",
        sandbox.base
    );
    for args in [&["reports"][..], &["reports", "--json"]] {
        let output = sandbox.run(args);
        assert_eq!(failure(&output, 1), want, "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }

    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let file = jobs_file(dir.path(), &sandbox, &by_day_job(&dest));
    let (output, summary) = run(&file, &[]);
    let error = failure(&output, 1);
    let reason = want.trim_start_matches("error: ");
    assert_eq!(
        error,
        format!("error: 1 of 1 jobs failed (job \"by-day\"): {reason}")
    );
    assert_eq!(job(&summary, "by-day")["status"], "failed");
    assert_eq!(job(&summary, "by-day")["error"], reason);
    assert_eq!(job(&summary, "by-day")["reports"], json!([]));
    assert_eq!(files(&dest), Vec::<String>::new(), "nothing written");
}

#[test]
fn a_listing_without_the_status_field_fails_the_jobs_that_go_by_status_naming_its_keys() {
    let fixture = Fixture::new();
    fixture.reports(&json!([
        {"id": "a", "state": "completed", "report_type": "by_day"},
        {"id": "b", "report_type": "by_day"},
    ]));
    fixture.report_rows("a", &rows_of("a", 1));
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    // Listing needs no status.
    let table = success(&sandbox.run(&["reports"]));
    assert_eq!(
        table,
        "id  state      report_type\na   completed  by_day\nb              by_day\n(2 reports)\n"
    );
    // Choosing the completed ones does.
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let file = jobs_file(dir.path(), &sandbox, &by_day_job(&dest));
    let (output, summary) = run(&file, &[]);
    let reason = format!(
        "invalid report list ({}/v1/reports): none of its 2 rows has the status field \
         \"status\"; the rows have keys \"id\", \"report_type\", \"state\"; name it with \
         --status-field or the jobs file's status_field",
        sandbox.base
    );
    assert_eq!(
        failure(&output, 1),
        format!("error: 1 of 1 jobs failed (job \"by-day\"): {reason}")
    );
    assert_eq!(job(&summary, "by-day")["status"], "failed");
    assert_eq!(job(&summary, "by-day")["error"], reason);
    assert_eq!(files(&dest), Vec::<String>::new(), "nothing written");

    // Named, it exports the completed one.
    let (output, summary) = run(&file, &["--status-field", "state"]);
    success(&output);
    assert_eq!(reports_of(&summary, "by-day"), ["a"]);
    assert_same_rows(&exported(&dest), &as_rows(&rows_of("a", 1)));
}

#[test]
fn flags_and_jobs_file_keys_name_the_id_status_and_completed_statuses() {
    let (_fixture, sandbox) = sandbox_with_odd_keys();
    let table =
        success(&sandbox.run(&["reports", "--id-field", "uuid", "--status-field", "state"]));
    assert_eq!(
        table,
        "uuid  state    report_type\nu1    done     by_day\nu2    done     by_site\nu3    running  by_day\n(3 reports)\n"
    );

    // The jobs file's keys.
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let file = jobs_file_with(
        dir.path(),
        "id_field = \"uuid\"\nstatus_field = \"state\"\ncompleted_statuses = [\"done\"]",
        &sandbox,
        &by_day_job(&dest),
    );
    let (output, summary) = run(&file, &[]);
    success(&output);
    assert_eq!(reports_of(&summary, "by-day"), ["u1"]);
    assert_same_rows(&exported(&dest), &as_rows(&rows_of("u1", 2)));

    // Flags override the file: here the file's keys are wrong, the flags right.
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let file = jobs_file_with(
        dir.path(),
        "id_field = \"id\"\nstatus_field = \"status\"\ncompleted_statuses = [\"completed\"]",
        &sandbox,
        &by_day_job(&dest),
    );
    let flags = [
        "--id-field",
        "uuid",
        "--status-field",
        "state",
        "--completed-status",
        "done,finished",
    ];
    let (output, summary) = run(&file, &flags);
    success(&output);
    assert_eq!(reports_of(&summary, "by-day"), ["u1"]);
    assert_same_rows(&exported(&dest), &as_rows(&rows_of("u1", 2)));
    // Without the flags the same file fails on its wrong id key, naming it.
    let (output, _) = run(&file, &["--full-refresh"]);
    let error = failure(&output, 1);
    assert!(
        error.contains("none of its 3 rows has a report id at \"id\""),
        "{error}"
    );
}

/// A submit job exporting into `dest`.
fn submit_job(dest: &Path) -> String {
    format!(
        "[[job]]\nname = \"fresh\"\nkind = \"submit\"\npoll_interval_secs = 0.05\nrequest = {{ report_type = \"x\" }}\nout = \"{}\"\n",
        dest.display()
    )
}

#[test]
fn submit_jobs_read_the_answer_and_the_list_with_each_id_spelling_and_integer_ids() {
    let cases = [
        ("id", true, "1"),
        ("report_id", true, "1"),
        ("reportId", false, "rpt_sub0001"),
        ("report_id", false, "rpt_sub0001"),
    ];
    for (key, numeric, want_id) in cases {
        let empty = Fixture::new();
        let mut flags = vec!["--complete-after-ms", "200", "--submit-id-key", key];
        if numeric {
            flags.push("--submit-numeric-ids");
        }
        let sandbox = Sandbox::with_data(empty.path(), &flags);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let file = jobs_file(dir.path(), &sandbox, &submit_job(&dest));
        let (output, summary) = run(&file, &[]);
        success(&output);
        let case = format!("{key}, numeric {numeric}");
        assert_eq!(reports_of(&summary, "fresh"), [want_id], "{case}");
        assert_same_rows(
            &sorted(read_dataset(&dest), SUBMITTED_KEY),
            &sorted(synthetic_rows(240, 1000), SUBMITTED_KEY),
        );
        let record: Value =
            serde_json::from_slice(&std::fs::read(dest.join("_submissions/fresh.json")).unwrap())
                .unwrap();
        assert_eq!(record["report_id"], want_id, "{case}");
        // The list holds the request under that key, completed.
        let listed: Value =
            serde_json::from_str(&success(&sandbox.run(&["reports", "--json"]))).unwrap();
        let want_value = if numeric { json!(1) } else { json!(want_id) };
        assert_eq!(listed[0][key], want_value, "{case}");
        assert_eq!(listed[0]["status"], "completed", "{case}");
    }
}

#[test]
fn a_submission_answer_without_a_recognisable_id_fails_until_id_field_names_it() {
    let empty = Fixture::new();
    let sandbox = Sandbox::with_data(
        empty.path(),
        &["--complete-after-ms", "200", "--submit-id-key", "uuid"],
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let file = jobs_file(dir.path(), &sandbox, &submit_job(&dest));
    let (output, summary) = run(&file, &[]);
    let error = failure(&output, 1);
    assert_eq!(
        error,
        format!(
            "error: 1 of 1 jobs failed (job \"fresh\"): a new report request: invalid page \
             ({}/v1/reports, page 1): the answer to the report request has no report id at id, report_id or reportId (a \
             non-empty string or an integer); it has keys \"created_at\", \"report_type\", \
             \"row_count\", \"status\", \"synthetic\", \"uuid\"; name the id's key with \
             --id-field or the jobs file's id_field",
            sandbox.base
        )
    );
    assert_eq!(job(&summary, "fresh")["status"], "failed");
    assert_eq!(
        files(&dest),
        Vec::<String>::new(),
        "no data, no manifest, no submission record"
    );

    let file = jobs_file_with(
        dir.path(),
        "id_field = \"uuid\"",
        &sandbox,
        &submit_job(&dest),
    );
    let (output, summary) = run(&file, &[]);
    success(&output);
    assert_eq!(reports_of(&summary, "fresh"), ["rpt_sub0002"]);
    assert_same_rows(
        &sorted(read_dataset(&dest), SUBMITTED_KEY),
        &sorted(synthetic_rows(240, 1001), SUBMITTED_KEY),
    );
}
