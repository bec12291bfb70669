//! `out` naming fields of the report request (`out = "DEST/{report_type}"`): each report type
//! gets its own dataset, with its own state; a request that cannot fill `out` fails its report
//! (naming the field and the line of `out`) and nothing else; a value never leaves DEST; a
//! placeholder where there is no request is a jobs-file error; a submit job's destination comes
//! from its request body; and on S3 a value is one segment of the key, whatever it holds.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::runs::*;
use crate::s3_support::*;
use crate::util::*;

/// The 1-based line of the first `out = ` line of `file` that holds `needle`.
fn out_line(file: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(file).unwrap();
    1 + text
        .lines()
        .position(|line| line.starts_with("out = ") && line.contains(needle))
        .unwrap_or_else(|| panic!("no out line with {needle} in {text}"))
}

/// The completed report requests of `sandbox` as `reports --json` lists them, by id.
fn completed_requests(sandbox: &Sandbox) -> BTreeMap<String, Value> {
    let listed: Vec<Value> =
        serde_json::from_str(&success(&sandbox.run(&["reports", "--json"]))).unwrap();
    listed
        .into_iter()
        .filter(|r| r["status"] == "completed")
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r))
        .collect()
}

/// The ids of the reports with a manifest in `dest`, sorted.
fn manifests(dest: &Path) -> Vec<String> {
    files(dest)
        .into_iter()
        .filter_map(|f| {
            Some(
                f.strip_prefix("_manifests/")?
                    .strip_suffix(".json")?
                    .to_owned(),
            )
        })
        .collect()
}

/// The columns of `rows` in first-seen order.
fn first_seen_columns(rows: &[Row]) -> Vec<String> {
    let mut columns: Vec<String> = Vec::new();
    for key in rows.iter().flat_map(|row| row.keys()) {
        if !columns.contains(key) {
            columns.push(key.clone());
        }
    }
    columns
}

/// The column names a manifest records.
fn manifest_columns(manifest: &Value) -> Vec<String> {
    manifest["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn each_report_type_gets_its_own_dataset_with_its_own_state() {
    let sandbox = Sandbox::start(&["--page-size", "400"]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let template = format!("{}/{{report_type}}", data.display());
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            "[[job]]\nname = \"all\"\nkind = \"new-reports\"\nout = \"{template}\"\n\n\
             [[job]]\nname = \"site-again\"\nkind = \"reports\"\nids = [\"rpt_2b8e4d10\"]\nout = \"{template}\"\n"
        ),
    );
    let requests = completed_requests(&sandbox);
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, request) in &requests {
        let report_type = request["report_type"].as_str().unwrap().to_owned();
        by_type.entry(report_type).or_default().push(id.clone());
    }
    assert_eq!(
        by_type,
        BTreeMap::from([
            (
                "delivery_by_day".to_owned(),
                vec!["rpt_7f3a9c21".to_owned()]
            ),
            (
                "delivery_by_site".to_owned(),
                vec!["rpt_2b8e4d10".to_owned(), "rpt_e5d90a47".to_owned()]
            ),
        ])
    );

    let (output, first) = run(&file, &[]);
    success(&output);
    assert_eq!(
        reports_of(&first, "all"),
        ["rpt_2b8e4d10", "rpt_7f3a9c21", "rpt_e5d90a47"]
    );
    assert_eq!(job(&first, "all")["rows"], 2100);
    assert_eq!(job(&first, "all")["out"], template.as_str());
    // The same report into the same resolved destination: left to the earlier job.
    assert_eq!(reports_of(&first, "site-again"), Vec::<String>::new());
    assert_eq!(job(&first, "site-again")["status"], "ok");

    let folders: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(folders, by_type.keys().cloned().collect::<Vec<_>>());
    for (report_type, ids) in &by_type {
        let dest = data.join(report_type);
        assert_eq!(&manifests(&dest), ids, "{report_type}");
        for id in ids {
            let manifest = manifest(&dest, id);
            assert_eq!(manifest["rows"], requests[id]["row_count"], "{id}");
        }
        assert!(!dest.join("_staging").exists());
    }
    let by_day = data.join("delivery_by_day");
    let by_site = data.join("delivery_by_site");
    assert_rows_of(&by_day, SAMPLE_A, KEY_A);
    assert_rows_of(&by_site, SAMPLE_B, KEY_B);
    let columns = |dest: &Path| -> Vec<String> {
        one_schema(dest)
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    };
    let a_columns = first_seen_columns(&source_rows(SAMPLE_A));
    let b_columns = first_seen_columns(&source_rows(SAMPLE_B));
    assert_ne!(a_columns, b_columns);
    assert_eq!(columns(&by_day), a_columns);
    assert_eq!(columns(&by_site), b_columns);
    assert_eq!(
        manifest_columns(&manifest(&by_day, "rpt_7f3a9c21")),
        a_columns
    );
    assert_eq!(
        manifest_columns(&manifest(&by_site, "rpt_2b8e4d10")),
        b_columns
    );

    // The state is read per destination: nothing new.
    let before = snapshot(&data);
    let (output, second) = run(&file, &[]);
    success(&output);
    assert_nothing_exported(&second, &["all", "site-again"]);
    assert_unchanged(&data, &before);

    // A dry run lists the reports and writes nothing; -v logs each resolved destination.
    let (output, planned) = run(&file, &["--dry-run", "--full-refresh", "-v"]);
    let stdout = success(&output);
    assert_eq!(reports_of(&planned, "all").len(), 3);
    assert!(
        stdout.contains(&format!(
            "would export rpt_7f3a9c21 (job all) to {template}"
        )),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&by_day.display().to_string()), "{stderr}");
    assert_unchanged(&data, &before);

    // --full-refresh redoes every report, each in its own folder.
    let (output, third) = run(&file, &["--full-refresh"]);
    success(&output);
    assert_eq!(
        reports_of(&third, "all"),
        ["rpt_2b8e4d10", "rpt_7f3a9c21", "rpt_e5d90a47"]
    );
    assert_eq!(manifests(&by_day), ["rpt_7f3a9c21"]);
    assert_eq!(manifests(&by_site), ["rpt_2b8e4d10", "rpt_e5d90a47"]);
    assert_ne!(
        manifest(&by_day, "rpt_7f3a9c21")["run_id"],
        serde_json::from_slice::<Value>(
            before["delivery_by_day/_manifests/rpt_7f3a9c21.json"]
                .as_ref()
                .unwrap()
        )
        .unwrap()["run_id"]
    );
    assert_rows_of(&by_day, SAMPLE_A, KEY_A);
    assert_rows_of(&by_site, SAMPLE_B, KEY_B);
}

#[test]
fn a_field_the_request_lacks_fails_its_reports_naming_the_field_and_line() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let nope = dir.path().join("nope");
    let typed = dir.path().join("typed");
    let good = dir.path().join("good");
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            "[[job]]\nname = \"nope\"\nkind = \"new-reports\"\nwhere = {{ report_type = \"delivery_by_site\" }}\nout = \"{}/{{nope}}\"\n\n\
             [[job]]\nname = \"typed\"\nkind = \"reports\"\nids = [\"rpt_missing\", \"rpt_2b8e4d10\"]\nout = \"{}/{{report_type}}\"\n\n\
             [[job]]\nname = \"good\"\nkind = \"reports\"\nids = [\"rpt_7f3a9c21\"]\nout = \"{}\"\n",
            nope.display(),
            typed.display(),
            good.display()
        ),
    );
    let place = |needle: &str| {
        format!(
            "invalid jobs file ({}, line {}, column 7)",
            file.display(),
            out_line(&file, needle)
        )
    };

    let (output, summary) = run(&file, &[]);
    let error = failure(&output, 1);
    assert!(
        error.contains("2 of 3 jobs failed (job \"nope\")"),
        "{error}"
    );
    let nope_error = job(&summary, "nope")["error"].as_str().unwrap();
    for id in ["rpt_2b8e4d10", "rpt_e5d90a47"] {
        let expected = format!(
            "{id}: {}: job \"nope\": out: the request of report {id} has no field \"nope\"",
            place("{nope}")
        );
        assert!(nope_error.contains(&expected), "{nope_error}");
    }
    assert_eq!(job(&summary, "nope")["status"], "failed");
    assert_eq!(reports_of(&summary, "nope"), Vec::<String>::new());
    assert!(
        !nope.exists(),
        "nothing written for a report without a destination"
    );

    // A given id the report list lacks fails; the other is exported into its type's folder.
    let typed_error = job(&summary, "typed")["error"].as_str().unwrap();
    assert_eq!(
        typed_error,
        format!(
            "rpt_missing: {}: job \"typed\": out: report rpt_missing is not a completed report of \
             the report list, so {{report_type}} cannot be filled",
            place("/{report_type}")
        )
    );
    assert_eq!(reports_of(&summary, "typed"), ["rpt_2b8e4d10"]);
    assert_rows_of(&typed.join("delivery_by_site"), SAMPLE_B, KEY_B);

    assert_eq!(job(&summary, "good")["status"], "ok");
    assert_eq!(job(&summary, "good")["rows"], 1500);
    assert_rows_of(&good, SAMPLE_A, KEY_A);

    // A dry run reports the same failures and writes nothing.
    let before = snapshot(dir.path());
    let (output, planned) = run(&file, &["--dry-run", "--full-refresh"]);
    failure(&output, 1);
    assert_eq!(job(&planned, "nope")["status"], "failed");
    assert!(
        job(&planned, "nope")["error"]
            .as_str()
            .unwrap()
            .contains("has no field \"nope\""),
        "{planned}"
    );
    assert_eq!(job(&planned, "good")["status"], "planned");
    let after: Vec<String> = snapshot(dir.path())
        .into_keys()
        .filter(|name| !name.starts_with("summary-"))
        .collect();
    let before: Vec<String> = before
        .into_keys()
        .filter(|name| !name.starts_with("summary-"))
        .collect();
    assert_eq!(after, before);
}

#[test]
fn a_placeholder_where_there_is_no_request_is_a_jobs_file_error() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest");
    let cases = [
        (
            format!(
                "[[job]]\nname = \"list\"\nkind = \"report-list\"\nout = \"{}/{{report_type}}\"\n",
                dest.display()
            ),
            "job \"list\": out names {report_type}, but a job of kind \"report-list\" has no report request",
        ),
        (
            format!(
                "[[job]]\nname = \"rows\"\nkind = \"endpoint\"\nurl = \"/v1/test/rows\"\nout = \"{}/{{id}}\"\n",
                dest.display()
            ),
            "job \"rows\": out names {id}, but a job of kind \"endpoint\" has no report request",
        ),
        (
            format!(
                "[[job]]\nname = \"open\"\nkind = \"new-reports\"\nout = \"{}/{{report_type\"\n",
                dest.display()
            ),
            "has a \"{\" without its \"}\"",
        ),
        (
            format!(
                "[[job]]\nname = \"fresh\"\nkind = \"submit\"\nrequest = {{ report_type = \"x\" }}\nout = \"{}/{{nope}}\"\n",
                dest.display()
            ),
            "job \"fresh\": out: the request of this submit job has no field \"nope\"",
        ),
    ];
    for (jobs, what) in cases {
        let file = jobs_file(dir.path(), &sandbox, &jobs);
        let (output, summary) = run(&file, &[]);
        let error = failure(&output, 2);
        assert!(
            error.contains(&format!(
                "invalid jobs file ({}, line {}, column 7)",
                file.display(),
                out_line(&file, "dest")
            )),
            "{error}"
        );
        assert!(error.contains(what), "{error}");
        assert_eq!(summary, Value::Null);
        assert!(output.stdout.is_empty());
        assert!(!dest.exists());
    }
    assert_eq!(submitted(&sandbox), 0);
}

#[test]
fn values_that_are_no_folder_name_are_refused_and_nothing_leaves_dest() {
    let fixture = Fixture::new();
    let types = [
        ("r_ok", json!("ok")),
        ("r_num", json!(7)),
        ("r_slash", json!("a/b")),
        ("r_up", json!("..")),
        ("r_back", json!("..\\..\\x")),
        ("r_null", Value::Null),
        ("r_obj", json!({"name": "x"})),
    ];
    let list: Vec<Value> = types
        .iter()
        .map(|(id, t)| json!({"id": id, "status": "completed", "report_type": t}))
        .collect();
    fixture.reports(&Value::Array(list));
    for (n, (id, _)) in types.iter().enumerate() {
        let rows: Vec<Value> = numbered_rows(3)
            .into_iter()
            .map(|mut row| {
                row["i"] = json!(n as i64 * 10 + row["i"].as_i64().unwrap());
                row
            })
            .collect();
        fixture.report_rows(id, &rows);
    }
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let dest = root.join("dest");
    std::fs::create_dir(&root).unwrap();
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            "[[job]]\nname = \"typed\"\nkind = \"new-reports\"\nout = \"{}/{{report_type}}\"\n",
            dest.display()
        ),
    );
    let (output, summary) = run(&file, &["--concurrency", "3"]);
    failure(&output, 1);
    assert_eq!(reports_of(&summary, "typed"), ["r_num", "r_ok"]);
    let error = job(&summary, "typed")["error"].as_str().unwrap();
    let field = |id: &str| {
        format!(
            "{id}: invalid jobs file ({}, line {}, column 7): job \"typed\": out: field \"report_type\" of the request of report {id}",
            file.display(),
            out_line(&file, "dest")
        )
    };
    for (id, problem) in [
        (
            "r_slash",
            " is \"a/b\", which cannot be one folder of out: it holds '/'",
        ),
        (
            "r_up",
            " is \"..\", which cannot be one folder of out: \"..\" is not a folder name",
        ),
        (
            "r_back",
            " is \"..\\\\..\\\\x\", which cannot be one folder of out: it holds '\\\\'",
        ),
        ("r_null", " is null"),
        ("r_obj", " is an object, not text, a number or a boolean"),
    ] {
        let expected = format!("{}{problem}", field(id));
        assert!(error.contains(&expected), "{expected}\n{error}");
    }
    assert_eq!(
        std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>(),
        ["dest"],
        "nothing beside DEST"
    );
    let mut folders: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    assert_eq!(folders, ["7", "ok"]);
    assert_eq!(manifests(&dest.join("ok")), ["r_ok"]);
    assert_eq!(manifests(&dest.join("7")), ["r_num"]);
    assert_eq!(
        column(&rows_by(&dest.join("7"), "i"), "i"),
        [json!(10), json!(11), json!(12)]
    );
    assert_eq!(
        column(&rows_by(&dest.join("ok"), "i"), "i"),
        [json!(0), json!(1), json!(2)]
    );
    let outside: Vec<String> = files(dir.path())
        .into_iter()
        .filter(|f| !f.starts_with("root/dest/") && !f.starts_with("summary-"))
        .collect();
    assert_eq!(outside, ["jobs.toml"]);
}

#[test]
fn a_submit_job_writes_where_its_request_body_says() {
    let sandbox = Sandbox::start(&["--complete-after-ms", "200"]);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("submitted");
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            "[[job]]\nname = \"fresh\"\nkind = \"submit\"\npoll_interval_secs = 0.05\nout = \"{}/{{report_type}}/{{days}}\"\n\
             request = {{ report_type = \"delivery_by_day\", days = 7, date_range = {{ start = \"${{today-7}}\", end = \"${{yesterday}}\" }} }}\n",
            root.display()
        ),
    );
    let (output, summary) = run(&file, &[]);
    success(&output);
    assert_eq!(reports_of(&summary, "fresh"), ["rpt_sub0001"]);
    assert_eq!(job(&summary, "fresh")["rows"], 240);
    let dest = root.join("delivery_by_day").join("7");
    let record: Value =
        serde_json::from_slice(&std::fs::read(dest.join("_submissions/fresh.json")).unwrap())
            .unwrap();
    assert_eq!(record["report_id"], "rpt_sub0001");
    assert_eq!(manifests(&dest), ["rpt_sub0001"]);
    assert_same_rows(
        &sorted(read_dataset(&dest), SUBMITTED_KEY),
        &sorted(synthetic_rows(240, 1000), SUBMITTED_KEY),
    );
    let requests = submissions(&sandbox);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["report_type"], "delivery_by_day");
    assert_eq!(
        files(&root)
            .into_iter()
            .filter(|f| !f.starts_with("delivery_by_day/7/"))
            .collect::<Vec<_>>(),
        Vec::<String>::new()
    );

    // The record is found in the resolved destination: nothing submitted or exported again.
    let (output, second) = run(&file, &[]);
    success(&output);
    assert_eq!(reports_of(&second, "fresh"), Vec::<String>::new());
    assert_eq!(submitted(&sandbox), 1, "no second POST");
}

#[test]
fn on_s3_a_value_is_one_segment_of_the_key_whatever_it_holds() {
    let bucket = Bucket::create("templated");
    let fixture = Fixture::new();
    fixture.reports(&json!([
        {"id": "r1", "status": "completed", "report_type": "50%2F?#x y"},
        {"id": "r2", "status": "completed", "report_type": "by_day"},
    ]));
    fixture.report_rows("r1", &numbered_rows(4));
    fixture.report_rows("r2", &numbered_rows(2));
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            "[[job]]\nname = \"typed\"\nkind = \"new-reports\"\nout = \"{}/{{report_type}}\"\n",
            bucket.url("t")
        ),
    );
    let (output, summary) = run_s3(&file, &[]);
    success(&output);
    assert_eq!(reports_of(&summary, "typed"), ["r1", "r2"]);
    let manifests: Vec<String> = bucket
        .keys()
        .into_iter()
        .filter(|k| k.contains("/_manifests/"))
        .collect();
    assert_eq!(
        manifests,
        [
            "t/50%2F?#x y/_manifests/r1.json",
            "t/by_day/_manifests/r2.json"
        ]
    );
    assert_eq!(job(&summary, "typed")["rows"], 6);
    assert!(
        bucket
            .keys()
            .iter()
            .any(|k| k.starts_with("t/50%2F?#x y/") && k.ends_with(".parquet")),
        "{:?}",
        bucket.keys()
    );
    let by_day = bucket.download("t/by_day");
    assert_eq!(
        column(&rows_by(by_day.path(), "i"), "i"),
        [json!(0), json!(1)]
    );

    let before = bucket.objects();
    let (output, second) = run_s3(&file, &[]);
    success(&output);
    assert_nothing_exported(&second, &["typed"]);
    assert_eq!(bucket.objects(), before);
}
