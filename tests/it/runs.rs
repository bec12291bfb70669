//! Helpers for the `run JOBS.toml` tests (`jobs`, `s3`): a jobs file that logs in to a sandbox,
//! running it with `--summary-json` and reading the summary back, the sample reports and the
//! rows of the reports a sandbox generates for submitted requests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kargo_export::sandbox::synthetic::SyntheticReport;
use kargo_export::sandbox::test_rows::SANDBOX_API_KEY;
use serde_json::Value;

use crate::util::*;

pub const SAMPLE_A: &str = include_str!("../../sample_data/completed-reports/rpt_7f3a9c21.json");
pub const SAMPLE_B: &str = include_str!("../../sample_data/completed-reports/rpt_2b8e4d10.json");
/// Columns that tell the rows of sample report A apart, and of B.
pub const KEY_A: &[&str] = &[
    "date",
    "line_item_id",
    "creative_id",
    "site_domain",
    "device_type",
];
pub const KEY_B: &[&str] = &["date", "site_domain", "deal_id", "device_type"];
/// Columns that tell the rows of a submitted (synthetic) report apart.
pub const SUBMITTED_KEY: &[&str] = &[
    "date",
    "line_item_id",
    "creative_id",
    "site_domain",
    "device_type",
    "country",
    "region",
    "impressions",
];

/// The environment variable the test jobs files name for the sandbox password.
pub const PASSWORD_VAR: &str = "KARGO_IT_PASSWORD";
/// The environment variable the endpoint jobs name for the sandbox's `X-Api-Key`.
pub const KEY_VAR: &str = "KARGO_IT_ENDPOINT_KEY";

/// A jobs file in `dir` that logs in to `sandbox` (the password from [`PASSWORD_VAR`]),
/// followed by `jobs`.
pub fn jobs_file(dir: &Path, sandbox: &Sandbox, jobs: &str) -> PathBuf {
    let path = dir.join("jobs.toml");
    let text = format!(
        "[connection]\napi_base = \"{}\"\nusername = \"{USERNAME}\"\npassword_env = \"{PASSWORD_VAR}\"\n\n{jobs}",
        sandbox.base
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `command` (the binary, perhaps with more environment) as `run FILE --summary-json SUMMARY`,
/// with the password in [`PASSWORD_VAR`].
pub fn run_command(mut command: Command, file: &Path, summary: &Path) -> Command {
    command
        .env(PASSWORD_VAR, PASSWORD)
        .arg("run")
        .arg(file)
        .arg("--summary-json")
        .arg(summary);
    command
}

/// The summary a run wrote to `path` (Null when none was written).
pub fn read_summary(path: &Path) -> Value {
    std::fs::read(path)
        .map(|bytes| serde_json::from_slice(&bytes).expect("summary json"))
        .unwrap_or(Value::Null)
}

/// Runs `run FILE --summary-json SUMMARY extra...`; returns the output and the summary (Null
/// when none was written).
pub fn run(file: &Path, extra: &[&str]) -> (Output, Value) {
    run_in(binary(), file, extra)
}

/// [`run`] through `command` (e.g. with more environment variables).
pub fn run_in(command: Command, file: &Path, extra: &[&str]) -> (Output, Value) {
    let summary = file.with_file_name(format!("summary-{}.json", fastrand::u64(..)));
    let output = run_command(command, file, &summary)
        .args(extra)
        .output()
        .expect("run kargo-export");
    (output, read_summary(&summary))
}

/// `command` with the sandbox's `X-Api-Key` in [`KEY_VAR`].
pub fn with_endpoint_key(mut command: Command) -> Command {
    command.env(KEY_VAR, SANDBOX_API_KEY);
    command
}

/// The summary row of job `name`.
pub fn job<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {summary}"))
}

/// The reports job `name` exported, sorted.
pub fn reports_of(summary: &Value, name: &str) -> Vec<String> {
    let mut ids: Vec<String> = job(summary, name)["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// `rows` sorted by the values of `keys`.
pub fn sorted(mut rows: Vec<Row>, keys: &[&str]) -> Vec<Row> {
    rows.sort_by_key(|r| keys.iter().map(|k| r[*k].to_string()).collect::<Vec<_>>());
    rows
}

/// Asserts that the dataset in `dest` holds exactly the rows of the report JSON `source`
/// (both sorted by `keys`).
pub fn assert_rows_of(dest: &Path, source: &str, keys: &[&str]) {
    assert_same_rows(
        &sorted(read_dataset(dest), keys),
        &sorted(source_rows(source), keys),
    );
}

/// The rows of a synthetic report of `rows` rows and seed `seed`, as the sandbox serves them
/// (submitted report number `n` has 240 rows and seed `999 + n`).
pub fn synthetic_rows(rows: u64, seed: u64) -> Vec<Row> {
    let mut text = String::from("[");
    SyntheticReport::new(rows, seed).write_rows(0..rows, &mut text);
    text.push(']');
    source_rows(&text)
}

/// The report requests submitted to `sandbox`, as it lists them.
pub fn submissions(sandbox: &Sandbox) -> Vec<Value> {
    let listed: Vec<Value> =
        serde_json::from_str(&success(&sandbox.run(&["reports", "--json"]))).unwrap();
    listed
        .into_iter()
        .filter(|r| r["id"].as_str().unwrap().starts_with("rpt_sub"))
        .collect()
}

/// How many report requests were submitted to `sandbox`.
pub fn submitted(sandbox: &Sandbox) -> usize {
    submissions(sandbox).len()
}

/// Every stderr line of `output` as a JSON log event (fails on any other line).
pub fn json_events(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// Two jobs: `given` exports sample report A into `given`, partitioned by date; `by-site`
/// exports every new `delivery_by_site` report (B and the empty E) into `by_site`, snappy.
pub fn given_and_by_site(given: &str, by_site: &str) -> String {
    format!(
        r#"
[[job]]
name = "given"
kind = "reports"
ids = ["rpt_7f3a9c21"]
out = "{given}"
partition_by = ["date"]

[[job]]
name = "by-site"
kind = "new-reports"
where = {{ report_type = "delivery_by_site" }}
out = "{by_site}"
compression = "snappy"
"#
    )
}

/// Asserts that a run of [`given_and_by_site`] exported every report of both jobs.
pub fn assert_given_and_by_site_exported(summary: &Value) {
    assert_eq!(reports_of(summary, "given"), ["rpt_7f3a9c21"]);
    assert_eq!(
        reports_of(summary, "by-site"),
        ["rpt_2b8e4d10", "rpt_e5d90a47"]
    );
}

/// Asserts that each job of `names` in `summary` is ok and exported nothing.
pub fn assert_nothing_exported(summary: &Value, names: &[&str]) {
    for name in names {
        assert_eq!(reports_of(summary, name), Vec::<String>::new(), "{summary}");
        assert_eq!(job(summary, name)["rows"], 0);
        assert_eq!(job(summary, name)["status"], "ok");
    }
}
