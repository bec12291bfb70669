//! `inspect DEST`: the real binary reads back destinations that real exports wrote (a local
//! directory, and S3 on moto) and reports their reports, merged schema and schema differences,
//! as text and as JSON. Every value shown is compared with what the export printed and with the
//! manifests read back; the exit status is 0 only for a uniform destination, and a destination
//! that cannot be read is one `error:` line.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::runs::{SAMPLE_A, SAMPLE_B};
use crate::s3_support::*;
use crate::util::*;

/// Sample report `delivery_by_day` (1500 rows), and two of `delivery_by_site` (600 and 0).
const BY_DAY: &str = "rpt_7f3a9c21";
const BY_SITE: &str = "rpt_2b8e4d10";
const EMPTY_SITE: &str = "rpt_e5d90a47";

/// Runs `inspect DEST` (with `--json` when asked) through `command`.
fn inspect_with(mut command: Command, dest: &str, json: bool) -> Output {
    command.args(["inspect", dest]);
    if json {
        command.arg("--json");
    }
    command.output().expect("run kargo-export inspect")
}

fn inspect(dest: &Path, json: bool) -> Output {
    inspect_with(binary(), dest.to_str().expect("utf-8 path"), json)
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The rows an export printed for `report` (`exported ID: N rows, ...`).
fn exported_rows(stdout: &str, report: &str) -> u64 {
    let prefix = format!("exported {report}: ");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no line for {report} in {stdout:?}"));
    line.split_whitespace().next().unwrap().parse().unwrap()
}

/// `(name, type)` of each column of a manifest.
fn manifest_columns(manifest: &Value) -> Vec<(String, String)> {
    manifest["schema"]
        .as_array()
        .expect("schema")
        .iter()
        .map(|c| (text(&c["name"]), text(&c["type"])))
        .collect()
}

fn text(value: &Value) -> String {
    value.as_str().expect("a string").to_owned()
}

/// The cells of a text line (cells are two or more spaces apart; a type has single spaces).
fn cells(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The cells of the report table's row of `report`.
fn report_row(stdout: &str, report: &str) -> Vec<String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{report} ")))
        .unwrap_or_else(|| panic!("no row of {report} in {stdout}"));
    cells(line)
}

/// The schema lines of the text output: name, type and presence cells.
fn schema_lines(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("schema: "))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(cells)
        .collect()
}

/// Asserts that `stdout`'s table row of the report of `manifest` shows its real numbers.
fn assert_report_row(stdout: &str, manifest: &Value, partitions: &str) {
    let id = text(&manifest["report_id"]);
    let files = manifest["files"].as_array().unwrap().len();
    let expected = [
        id.clone(),
        manifest["rows"].to_string(),
        files.to_string(),
        manifest["bytes"].to_string(),
        manifest_columns(manifest).len().to_string(),
        partitions.to_owned(),
        text(&manifest["exported_at"]),
    ];
    assert_eq!(report_row(stdout, &id), expected, "{stdout}");
}

/// Asserts that a `--json` report entry holds the manifest's values.
fn assert_report_json(entry: &Value, manifest: &Value) {
    assert_eq!(entry["report_id"], manifest["report_id"]);
    assert_eq!(entry["rows"], manifest["rows"]);
    assert_eq!(entry["bytes"], manifest["bytes"]);
    assert_eq!(entry["files"], manifest["files"].as_array().unwrap().len());
    assert_eq!(entry["exported_at"], manifest["exported_at"]);
    assert_eq!(entry["partition_by"], manifest["partition_by"]);
    assert_eq!(entry["columns"], manifest_columns(manifest).len());
}

/// The `(column, type)` of each `change` entry of a `--json` difference list, sorted; each
/// must name exactly `reports`.
fn changed(differences: &Value, change: &str, reports: &[&str]) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = differences
        .as_array()
        .expect("differences")
        .iter()
        .filter(|d| d["change"] == change)
        .map(|d| {
            assert_eq!(d["reports"], serde_json::json!(reports), "{d}");
            (text(&d["column"]), text(&d["type"]))
        })
        .collect();
    found.sort();
    found
}

/// Columns of `a` whose name `b` lacks, sorted.
fn only_in(a: &[(String, String)], b: &[(String, String)]) -> Vec<(String, String)> {
    let names: BTreeSet<&String> = b.iter().map(|(n, _)| n).collect();
    let mut only: Vec<(String, String)> = a
        .iter()
        .filter(|(n, _)| !names.contains(n))
        .cloned()
        .collect();
    only.sort();
    only
}

#[test]
fn reports_of_one_type_are_uniform_with_their_real_numbers_and_schema() {
    let sandbox = Sandbox::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("by-site");
    let exported =
        success(&sandbox.export(&[BY_SITE, EMPTY_SITE], &dest, &["--partition-by", "date"]));
    let site = manifest(&dest, BY_SITE);
    let empty = manifest(&dest, EMPTY_SITE);
    assert_eq!(exported_rows(&exported, BY_SITE), 600);
    assert_eq!(
        site["rows"],
        source_rows(SAMPLE_B).len(),
        "the sample's rows"
    );
    assert_eq!(exported_rows(&exported, EMPTY_SITE), 0);
    assert_eq!(empty["rows"], 0);
    let columns = manifest_columns(&site);
    assert_eq!(
        columns,
        manifest_columns(&empty),
        "one report type, one schema"
    );
    assert!(columns.contains(&("publisher_name".into(), "Utf8".into())));

    let output = inspect(&dest, false);
    let stdout = success(&output);
    let files = site["files"].as_array().unwrap().len();
    assert_eq!(
        stdout.lines().next().unwrap(),
        format!(
            "{}: 2 reports, 600 rows in {files} files ({} bytes)",
            dest.display(),
            site["bytes"]
        )
    );
    assert_report_row(&stdout, &site, "date");
    assert_report_row(&stdout, &empty, "date");
    let schema: Vec<Vec<String>> = columns
        .iter()
        .map(|(n, t)| vec![n.clone(), t.clone()])
        .collect();
    assert_eq!(schema_lines(&stdout), schema, "{stdout}");
    assert!(stdout.contains(&format!("schema: {} columns\n", columns.len())));
    assert!(
        stdout.ends_with(
            "\nuniform: every report has the same columns, types and partition columns\n"
        ),
        "{stdout}"
    );
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let output = inspect(&dest, true);
    success(&output);
    let json = stdout_json(&output);
    assert_eq!(json["destination"], dest.to_str().unwrap());
    assert_eq!(json["uniform"], true);
    let reports = json["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 2);
    assert_report_json(&reports[0], &site);
    assert_report_json(&reports[1], &empty);
    let schema: Vec<(String, String, Value, Value)> = json["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                text(&c["name"]),
                text(&c["type"]),
                c["types"].clone(),
                c["reports"].clone(),
            )
        })
        .collect();
    let expected: Vec<(String, String, Value, Value)> = columns
        .iter()
        .map(|(n, t)| (n.clone(), t.clone(), serde_json::json!([t]), Value::from(2)))
        .collect();
    assert_eq!(schema, expected);
    assert_eq!(json["differences"], serde_json::json!([]));
}

#[test]
fn reports_of_two_shapes_are_not_uniform_and_every_column_difference_is_named() {
    let sandbox = Sandbox::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("mixed");
    let first = success(&sandbox.export(&[BY_DAY], &dest, &[]));
    let second = success(&sandbox.export(&[BY_SITE], &dest, &["--on-schema-change", "allow"]));
    assert_eq!(
        exported_rows(&first, BY_DAY),
        source_rows(SAMPLE_A).len() as u64
    );
    assert_eq!(exported_rows(&second, BY_SITE), 600);
    let day = manifest(&dest, BY_DAY);
    let site = manifest(&dest, BY_SITE);
    assert_drifted(&inspect(&dest, false), &inspect(&dest, true), &day, &site);
    // A file:// URL names the same destination.
    let url = reqwest::Url::from_directory_path(&dest).unwrap();
    let by_url = inspect_with(binary(), url.as_str(), true);
    failure(&by_url, 1);
    assert_eq!(stdout_json(&by_url)["reports"][1]["rows"], 1500);
}

/// Checks the text and `--json` output of `inspect` over a destination holding the day report
/// (`day`, its manifest) and the site report (`site`): both reports with their real numbers,
/// the union of their columns, each column only one has named as added to it and missing from
/// the other, exit 1 with one `error:` line after the whole report.
fn assert_drifted(text_output: &Output, json_output: &Output, day: &Value, site: &Value) {
    let day_columns = manifest_columns(day);
    let site_columns = manifest_columns(site);
    let only_day = only_in(&day_columns, &site_columns);
    let only_site = only_in(&site_columns, &day_columns);
    assert!(
        only_day.contains(&("advertiser_id".into(), "Int64".into())),
        "{only_day:?}"
    );
    assert!(
        only_site.contains(&("publisher_name".into(), "Utf8".into())),
        "{only_site:?}"
    );
    let shared = day_columns.len() - only_day.len();
    assert!(shared > 0 && !only_site.is_empty());

    let error = failure(text_output, 1);
    assert!(
        error.contains("not uniform: its 2 reports do not all have the same columns"),
        "{error}"
    );
    let stdout = String::from_utf8(text_output.stdout.clone()).unwrap();
    assert_report_row(&stdout, day, "-");
    assert_report_row(&stdout, site, "-");
    let schema = schema_lines(&stdout);
    assert_eq!(
        schema.len(),
        day_columns.len() + only_site.len(),
        "{stdout}"
    );
    for (name, data_type) in &day_columns {
        let mut line = vec![name.clone(), data_type.clone()];
        if only_day.iter().any(|(n, _)| n == name) {
            line.push("in 1 of 2 reports".into());
        }
        assert!(schema.contains(&line), "{line:?} not in {schema:?}");
    }
    for (name, data_type) in &only_site {
        let line = vec![name.clone(), data_type.clone(), "in 1 of 2 reports".into()];
        assert!(schema.contains(&line), "{line:?} not in {schema:?}");
    }
    assert!(stdout.contains("\nnot uniform: 2 of 2 reports differ from the others\n"));
    for (name, data_type) in &only_site {
        let added = format!("\n    new column {name:?} ({data_type}), not in report {BY_DAY}\n");
        let missing = format!("\n    no column {name:?} ({data_type}) of report {BY_SITE}\n");
        assert!(
            stdout.contains(&added) && stdout.contains(&missing),
            "{name}: {stdout}"
        );
    }
    for (name, data_type) in &only_day {
        let added = format!("\n    new column {name:?} ({data_type}), not in report {BY_SITE}\n");
        let missing = format!("\n    no column {name:?} ({data_type}) of report {BY_DAY}\n");
        assert!(
            stdout.contains(&added) && stdout.contains(&missing),
            "{name}: {stdout}"
        );
    }

    let error = failure(json_output, 1);
    assert!(error.contains("not uniform"), "{error}");
    let json = stdout_json(json_output);
    assert_eq!(json["uniform"], false);
    // Reports in key order: rpt_2b8e4d10 (site) before rpt_7f3a9c21 (day).
    assert_report_json(&json["reports"][0], site);
    assert_report_json(&json["reports"][1], day);
    let columns: Vec<(String, Value, Value)> = json["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (text(&c["name"]), c["type"].clone(), c["reports"].clone()))
        .collect();
    assert_eq!(columns.len(), schema.len());
    for (name, data_type) in day_columns.iter().chain(&only_site) {
        let in_both = !only_day.contains(&(name.clone(), data_type.clone()))
            && !only_site.contains(&(name.clone(), data_type.clone()));
        let reports = Value::from(if in_both { 2 } else { 1 });
        let column = (name.clone(), Value::from(data_type.clone()), reports);
        assert!(columns.contains(&column), "{column:?} not in {columns:?}");
    }
    let differences = json["differences"].as_array().unwrap();
    assert_eq!(differences.len(), 2, "{differences:?}");
    assert_eq!(differences[0]["report"], BY_SITE);
    assert_eq!(differences[1]["report"], BY_DAY);
    let of_site = &differences[0]["differences"];
    let of_day = &differences[1]["differences"];
    assert_eq!(changed(of_site, "added", &[BY_DAY]), only_site);
    assert_eq!(changed(of_site, "missing", &[BY_DAY]), only_day);
    assert_eq!(changed(of_day, "added", &[BY_SITE]), only_day);
    assert_eq!(changed(of_day, "missing", &[BY_SITE]), only_site);
    let count = |d: &Value| d.as_array().unwrap().len();
    assert_eq!(
        count(of_site),
        only_day.len() + only_site.len(),
        "no type or partition change"
    );
    assert_eq!(count(of_day), only_day.len() + only_site.len());
}

#[test]
fn widened_conflicting_and_repartitioned_columns_are_shown_with_their_merged_types() {
    let fixture = Fixture::new();
    fixture.report_rows(
        "a",
        &[
            serde_json::json!({"day": "2024-01-01", "n": 1, "v": 1, "tags": [1, 2]}),
            serde_json::json!({"day": "2024-01-02", "n": 2, "v": 3, "tags": []}),
        ],
    );
    fixture.report_rows(
        "b",
        &[serde_json::json!({"day": "2024-01-03", "n": "x", "v": 2.5, "tags": 5})],
    );
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("types");
    success(&sandbox.export(&["a"], &dest, &["--partition-by", "day"]));
    success(&sandbox.export(&["b"], &dest, &["--on-schema-change", "allow"]));

    let output = inspect(&dest, false);
    failure(&output, 1);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        report_row(&stdout, "a")[..6],
        [
            "a",
            "2",
            "2",
            manifest(&dest, "a")["bytes"].to_string().as_str(),
            "4",
            "day"
        ]
    );
    assert_eq!(
        report_row(&stdout, "b")[..6],
        [
            "b",
            "1",
            "1",
            manifest(&dest, "b")["bytes"].to_string().as_str(),
            "4",
            "-"
        ]
    );
    assert_eq!(
        schema_lines(&stdout),
        [
            vec!["day", "Date32"],
            vec!["n", "Utf8 (merged from Int64, Utf8)"],
            vec!["v", "Float64 (merged from Int64, Float64)"],
            vec!["tags", "conflict: List(Int64), Int64"],
        ]
    );
    let verdict: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("not uniform"))
        .collect();
    assert_eq!(
        verdict,
        [
            "not uniform: 2 of 2 reports differ from the others",
            "  a:",
            "    column \"n\" is Int64 here but Utf8 in report b",
            "    column \"v\" is Int64 here but Float64 in report b",
            "    column \"tags\" is List(Int64) here but Int64 in report b",
            "    partitioned by [day] here but by [] in report b",
            "  b:",
            "    column \"n\" is Utf8 here but Int64 in report a",
            "    column \"v\" is Float64 here but Int64 in report a",
            "    column \"tags\" is Int64 here but List(Int64) in report a",
            "    partitioned by [] here but by [day] in report a",
        ]
    );

    let output = inspect(&dest, true);
    failure(&output, 1);
    let json = stdout_json(&output);
    assert_eq!(
        json["schema"],
        serde_json::json!([
            {"name": "day", "type": "Date32", "types": ["Date32"], "reports": 2},
            {"name": "n", "type": "Utf8", "types": ["Int64", "Utf8"], "reports": 2},
            {"name": "v", "type": "Float64", "types": ["Int64", "Float64"], "reports": 2},
            {"name": "tags", "type": null, "types": ["List(Int64)", "Int64"], "reports": 2},
        ])
    );
    assert_eq!(
        json["differences"][0],
        serde_json::json!({"report": "a", "differences": [
            {"change": "type", "column": "n", "ours": "Int64", "theirs": "Utf8",
             "reports": ["b"], "merged": "Utf8"},
            {"change": "type", "column": "v", "ours": "Int64", "theirs": "Float64",
             "reports": ["b"], "merged": "Float64"},
            {"change": "type", "column": "tags", "ours": "List(Int64)", "theirs": "Int64",
             "reports": ["b"], "merged": null},
            {"change": "partition", "ours": ["day"], "theirs": [], "reports": ["b"]},
        ]})
    );
    assert_eq!(json["differences"][1]["report"], "b");
    assert_eq!(
        json["reports"][0]["partition_by"],
        serde_json::json!(["day"])
    );
    assert_eq!(json["reports"][0]["rows"], 2);
    assert_eq!(json["reports"][1]["rows"], 1);
}

#[test]
fn s3_destinations_are_inspected_through_the_s3_api() {
    let bucket = Bucket::create("inspect");
    let sandbox = Sandbox::start(&[]);
    let export = |report: &str, prefix: &str, extra: &[&str]| {
        success(
            &with_s3(sandbox.command())
                .args(["export", "report", report, "--out", &bucket.url(prefix)])
                .args(extra)
                .output()
                .unwrap(),
        )
    };
    export(BY_DAY, "mixed", &[]);
    export(BY_SITE, "mixed", &["--on-schema-change", "allow"]);
    let local = bucket.download("mixed");
    let day = manifest(local.path(), BY_DAY);
    let site = manifest(local.path(), BY_SITE);
    let url = bucket.url("mixed");
    assert_drifted(
        &inspect_with(with_s3(binary()), &url, false),
        &inspect_with(with_s3(binary()), &url, true),
        &day,
        &site,
    );

    export(BY_SITE, "site", &[]);
    let site = manifest(bucket.download("site").path(), BY_SITE);
    let output = inspect_with(with_s3(binary()), &bucket.url("site"), true);
    success(&output);
    let json = stdout_json(&output);
    assert_eq!(json["uniform"], true);
    assert_eq!(json["reports"].as_array().unwrap().len(), 1);
    assert_report_json(&json["reports"][0], &site);
    let names: Vec<(String, String)> = json["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (text(&c["name"]), text(&c["type"])))
        .collect();
    assert_eq!(names, manifest_columns(&site));

    let output = inspect_with(with_s3(binary()), &bucket.url("nothing/here"), false);
    let stdout = success(&output);
    assert!(
        stdout.contains(": no reports (no manifest in _manifests/)\n"),
        "{stdout}"
    );
    let before = bucket.keys();
    let output = inspect_with(with_s3(binary()), "s3://kargo-no-such-bucket/p", false);
    let error = failure(&output, 1);
    assert!(
        error.contains("cannot use destination (s3://kargo-no-such-bucket/p")
            && error.contains("bucket \"kargo-no-such-bucket\" does not exist"),
        "{error}"
    );
    assert!(output.stdout.is_empty());
    assert_eq!(bucket.keys(), before, "inspect writes nothing");
    assert_no_secret_text(&output);
}

/// No S3 secret in the output of a failed command (its stderr is short: no trace logs).
fn assert_no_secret_text(output: &Output) {
    for place in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(place);
        for secret in S3_SECRETS {
            assert!(!text.contains(secret), "{secret:?} in {text}");
        }
    }
}

#[test]
fn an_empty_destination_is_uniform_and_a_missing_or_unreadable_one_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let stdout = success(&inspect(&empty, false));
    assert_eq!(
        stdout,
        format!(
            "{}: no reports (no manifest in _manifests/)\nuniform: no reports to compare\n",
            empty.display()
        )
    );
    let json = stdout_json(&inspect(&empty, true));
    assert_eq!(
        json,
        serde_json::json!({"destination": empty.to_str().unwrap(), "uniform": true,
            "reports": [], "schema": [], "differences": [], "delta_version": null})
    );

    let missing = tmp.path().join("never/made");
    let output = inspect(&missing, false);
    let error = failure(&output, 1);
    assert_eq!(
        error,
        format!(
            "error: cannot use destination ({}): no such directory",
            missing.display()
        )
    );
    assert!(output.stdout.is_empty());
    assert!(
        !tmp.path().join("never").exists(),
        "inspect creates nothing"
    );

    let sandbox = Sandbox::start(&[]);
    let dest = tmp.path().join("broken");
    success(&sandbox.export(&[BY_SITE], &dest, &[]));
    std::fs::write(dest.join("_manifests/x.json"), "garbage{").unwrap();
    for json in [false, true] {
        let output = inspect(&dest, json);
        let error = failure(&output, 1);
        let path = format!("{}/_manifests/x.json", dest.display());
        assert!(
            error.contains(&path) && error.contains("not a manifest"),
            "{error}"
        );
        assert!(
            output.stdout.is_empty(),
            "nothing is reported from half the manifests"
        );
    }

    let output = binary().arg("inspect").output().unwrap();
    let error = failure(&output, 2);
    assert!(error.contains("<DEST>"), "{error}");
}
