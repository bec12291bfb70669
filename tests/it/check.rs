//! `check report`, `check url` and `run --check` against the sandbox, with local and S3
//! destinations: every step that passes is printed with what it found (the token's expiry, the
//! rows of the first page, the columns it implies, the probe), each failing step is one
//! `error:` line naming it, and nothing is ever left in a destination or sent but the login
//! and first pages.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::runs::*;
use crate::s3_support::*;
use crate::util::*;

const REPORT: &str = "rpt_7f3a9c21";

/// The columns and types the first 100 rows of [`REPORT`] imply.
const FIRST_PAGE_COLUMNS: &str = "\
columns: ok: 21 from the first page alone (later pages may add columns or widen types)
  date: Date32
  advertiser_id: Int64
  advertiser_name: Utf8
  campaign_id: Int64
  campaign_name: Utf8
  line_item_id: Int64
  creative_id: Int64
  creative_size: Utf8
  site_domain: Utf8
  device_type: Utf8
  country: Utf8
  impressions: Int64
  viewable_impressions: Int64
  clicks: Int64
  conversions: Int64
  spend: Float64
  currency: Utf8
  cpm: Float64
  ctr: Float64
  first_seen_at: Timestamp(µs, \"UTC\")
  last_updated_at: Timestamp(µs, \"UTC\")
";

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The lines of a passing `check report REPORT` before its columns and destination.
fn first_steps(sandbox: &Sandbox, ttl: u64, rows: usize) -> Vec<String> {
    vec![
        format!(
            "login: ok ({}/v1/auth/token): the token expires in {ttl} s, at ",
            sandbox.base
        ),
        format!(
            "page: ok (GET {}/v1/completed-reports/{REPORT}, page 1): ",
            sandbox.base
        ),
        format!(
            "data path: ok ($.data.rows[*]): {rows} rows on the first page; a next link at \
             $.links.next, no total: more pages follow"
        ),
    ]
}

/// Asserts that `out` starts with `lines`, each line with its expected start.
fn assert_starts(out: &str, lines: &[String]) {
    let got: Vec<&str> = out.lines().collect();
    assert!(got.len() >= lines.len(), "{out}");
    for (got, want) in got.iter().zip(lines) {
        assert!(
            got.starts_with(want.as_str()),
            "{got:?} does not start with {want:?}\n{out}"
        );
    }
}

#[test]
fn a_passing_check_prints_every_step_and_leaves_a_missing_directory_missing() {
    let sandbox = Sandbox::start(&["--page-size", "100", "--token-ttl", "120"]);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    let before = snapshot(tmp.path());
    let dest = tmp.path().join("new/deeper/out");
    let output = sandbox.run(&["check", "report", REPORT, "--out", dest.to_str().unwrap()]);
    let out = success(&output);
    assert_starts(&out, &first_steps(&sandbox, 120, 100));
    assert!(out.contains(FIRST_PAGE_COLUMNS), "{out}");
    let last = out.lines().last().unwrap();
    let want = format!(
        "destination: ok ({}): wrote and deleted _staging/check-",
        dest.display()
    );
    assert!(last.starts_with(&want), "{last}");
    assert!(
        last.ends_with(
            "; the directory did not exist: it was created for the check and removed again"
        ),
        "{last}"
    );
    assert_eq!(out.lines().count(), 3 + 22 + 1, "{out}");
    assert_unchanged(tmp.path(), &before);

    // An existing directory keeps exactly what it held.
    let dest = tmp.path();
    let out = success(&sandbox.run(&["check", "report", REPORT, "--out", dest.to_str().unwrap()]));
    assert!(!out.contains("did not exist"), "{out}");
    assert_unchanged(tmp.path(), &before);
}

#[test]
fn a_passing_check_into_s3_leaves_no_object_and_no_upload() {
    let sandbox = Sandbox::start(&["--page-size", "45"]);
    let bucket = Bucket::create("check");
    let out_url = bucket.url("data/kargo");
    let output = with_s3(sandbox.command())
        .args(["-vvv", "check", "report", REPORT, "--out", &out_url])
        .output()
        .unwrap();
    let out = success(&output);
    assert_starts(&out, &first_steps(&sandbox, 3600, 45));
    let last = out.lines().last().unwrap();
    let want = format!("destination: ok ({out_url}): wrote and deleted _staging/check-");
    assert!(last.starts_with(&want) && last.ends_with(".tmp"), "{last}");
    assert_eq!(bucket.keys(), Vec::<String>::new());
    assert_eq!(bucket.uploads(), Vec::<String>::new());
    assert_no_secret(&output, None, &[&S3_SECRETS[..], &[PASSWORD]].concat());
}

#[test]
fn check_url_reads_the_first_page_of_any_shape_through_its_transforms() {
    let sandbox = Sandbox::start(&[]);
    let url = "/v1/test/rows?report=rpt_2b8e4d10&paging=page&size=70";
    let out = success(&sandbox.run(&[
        "check",
        "url",
        url,
        "--data-path",
        "$.result['row sets'][0].items[*]",
        "--paginate",
        "page",
        "--select",
        "date,impressions",
        "--rename",
        "impressions=imps",
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[2],
        "data path: ok ($.result['row sets'][0].items[*]): 70 rows on the first page; page \
         numbers in query parameter page, no total: more pages follow"
    );
    assert_eq!(
        lines[3..],
        [
            "columns: ok: 2 from the first page alone (later pages may add columns or widen types)",
            "  date: Date32",
            "  imps: Int64"
        ]
    );
}

#[test]
fn a_ready_token_has_no_login_and_a_refused_one_fails_the_login_step() {
    let sandbox = Sandbox::start(&[]);
    let token = fetch_token(&sandbox);
    let output = binary()
        .args(["--api-base", &sandbox.base, "check", "report", REPORT])
        .env("KARGO_TOKEN", &token)
        .output()
        .unwrap();
    let out = success(&output);
    assert!(
        out.starts_with(
            "login: no login (a ready bearer token): when it expires is not known; the page \
             step shows whether the API accepts it\npage: ok ("
        ),
        "{out}"
    );
    assert!(!out.contains(&token));

    let output = binary()
        .args(["--api-base", &sandbox.base, "check", "report", REPORT])
        .env("KARGO_TOKEN", "sbx_not-a-token-the-sandbox-issued")
        .output()
        .unwrap();
    let error = failure(&output, 1);
    assert_eq!(
        error,
        "error: check failed at the login step (bearer token): the API rejected the given \
         token (HTTP 401); it may have expired"
    );
}

/// Runs `check ARGS --out DEST` against `sandbox` with `command` and returns the error line
/// and stdout; DEST must not exist before nor after.
fn failing(command: std::process::Command, args: &[&str], dest: &Path) -> (String, String) {
    let mut command = command;
    let output = command
        .arg("check")
        .args(args)
        .args(["--out", dest.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!dest.exists(), "{} was left behind", dest.display());
    (failure(&output, 1), stdout(&output))
}

#[test]
fn a_wrong_password_fails_the_login_step() {
    let sandbox = Sandbox::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let mut command = sandbox.command();
    command.env("KARGO_PASSWORD", "wrong-password");
    let (error, out) = failing(command, &["report", REPORT], &tmp.path().join("out"));
    assert_eq!(
        error,
        format!(
            "error: check failed at the login step ({}/v1/auth/token): the API rejected the \
             username or password (HTTP 401)",
            sandbox.base
        )
    );
    assert_eq!(out, "");
}

#[test]
fn a_missing_report_and_a_failing_page_fail_the_page_step() {
    let sandbox = Sandbox::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let (error, out) = failing(sandbox.command(), &["report", "rpt_missing"], &dest);
    assert_eq!(
        error,
        format!(
            "error: check failed at the page step ({}/v1/completed-reports/rpt_missing, page 1): \
             HTTP 404 Not Found: {{\"error\":\"report not found\"}}",
            sandbox.base
        )
    );
    assert_eq!(out.lines().count(), 1, "the login only: {out}");
    assert!(out.starts_with("login: ok ("), "{out}");

    let failing_page = Sandbox::start(&["--fail-page", "1", "--fail-status", "400"]);
    let (error, _) = failing(failing_page.command(), &["report", REPORT], &dest);
    let want = format!(
        "error: check failed at the page step ({}/v1/completed-reports/{REPORT}, page 1): HTTP 400",
        failing_page.base
    );
    assert!(error.starts_with(&want), "{error}");
}

#[test]
fn a_data_path_that_matches_nothing_fails_the_data_path_step() {
    let sandbox = Sandbox::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("/v1/completed-reports/{REPORT}");
    let (error, out) = failing(
        sandbox.command(),
        &["url", &url, "--data-path", "$.data.items[*]"],
        &tmp.path().join("out"),
    );
    assert_eq!(
        error,
        format!(
            "error: check failed at the data path step ({}{url}, page 1): $.data.items[*] \
             matched nothing; the page has keys data.rows, links.next",
            sandbox.base
        )
    );
    let steps: Vec<&str> = out.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(steps, ["login", "page"]);
}

#[test]
fn a_local_path_under_a_file_fails_the_destination_step() {
    let sandbox = Sandbox::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("file"), "x").unwrap();
    let before = snapshot(tmp.path());
    let dest = tmp.path().join("file/out");
    let (error, out) = failing(sandbox.command(), &["report", REPORT], &dest);
    assert_eq!(
        error,
        format!(
            "error: check failed at the destination step ({}): Not a directory (os error 20)",
            dest.display()
        )
    );
    let steps: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with("  "))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(steps, ["login", "page", "data path", "columns"]);
    assert_unchanged(tmp.path(), &before);
}

#[test]
fn an_absent_bucket_fails_the_destination_step() {
    let sandbox = Sandbox::start(&[]);
    let output = with_s3(sandbox.command())
        .args([
            "check",
            "report",
            REPORT,
            "--out",
            "s3://kargo-no-such-bucket/x",
        ])
        .output()
        .unwrap();
    let error = failure(&output, 1);
    let want = format!(
        "error: check failed at the destination step (s3://kargo-no-such-bucket/x, endpoint {}): \
         bucket \"kargo-no-such-bucket\" does not exist",
        endpoint()
    );
    assert!(error.starts_with(&want), "{error}");
}

/// The method and path of every request in a sandbox's request log.
fn requests(log: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).unwrap();
            let text = |key: &str| entry[key].as_str().unwrap().to_owned();
            (text("method"), text("path"))
        })
        .collect()
}

#[test]
fn run_check_prints_a_line_per_job_fails_on_a_bad_destination_and_posts_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("requests.jsonl");
    let sandbox = Sandbox::start(&["--request-log", log.to_str().unwrap()]);
    let bucket = Bucket::create("run-check");
    let local = tmp.path().join("local");
    let jobs = format!(
        "[[job]]\nname = \"good\"\nkind = \"reports\"\nids = [\"{REPORT}\", \"rpt_2b8e4d10\"]\nout = \"{}\"\n\n\
         [[job]]\nname = \"by-type\"\nkind = \"new-reports\"\nout = \"{}/{{report_type}}\"\n\n\
         [[job]]\nname = \"fresh\"\nkind = \"submit\"\nrequest = {{ report_type = \"x\" }}\nout = \"{}\"\n\n\
         [[job]]\nname = \"bad\"\nkind = \"reports\"\nids = [\"{REPORT}\"]\nout = \"s3://kargo-no-such-bucket/x\"\n",
        local.display(),
        bucket.url("by"),
        bucket.url("fresh"),
    );
    let file = jobs_file(tmp.path(), &sandbox, &jobs);
    let before = snapshot(tmp.path());
    let output = with_s3(binary())
        .env(PASSWORD_VAR, PASSWORD)
        .args(["run", file.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    let error = failure(&output, 1);
    assert!(
        error.starts_with(&format!(
            "error: 1 of 4 jobs failed (job \"bad\"): check failed at the destination step \
             (s3://kargo-no-such-bucket/x, endpoint {}): bucket \"kargo-no-such-bucket\" does not exist",
            endpoint()
        )),
        "{error}"
    );
    let out = stdout(&output);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines[0].starts_with(&format!(
        "login: ok ({}/v1/auth/token): the token expires in 3600 s",
        sandbox.base
    )));
    let report_page = format!(
        "page ok ({}/v1/completed-reports/{REPORT}, page 1): 100 rows, more pages follow, 21 columns",
        sandbox.base
    );
    let list_page = format!(
        "page ok ({}/v1/reports, page 1): 6 rows, the only page, 10 columns",
        sandbox.base
    );
    let want = [
        format!(
            "job \"good\" (reports): {report_page}; destination ok ({}): wrote and deleted _staging/check-",
            local.display()
        ),
        format!(
            "job \"by-type\" (new-reports): {list_page}; destination ok ({}): wrote and deleted _staging/check-",
            bucket.url("by")
        ),
        format!(
            "job \"fresh\" (submit): page skipped: a submit job's report exists only once it is submitted, and a check posts nothing; destination ok ({}): wrote and deleted _staging/check-",
            bucket.url("fresh")
        ),
        format!(
            "job \"bad\" (reports): {report_page}; destination FAILED: check failed at the destination step (s3://kargo-no-such-bucket/x, endpoint {}): bucket \"kargo-no-such-bucket\" does not exist",
            endpoint()
        ),
    ];
    for (line, want) in lines[1..].iter().zip(&want) {
        assert!(
            line.starts_with(want.as_str()),
            "{line:?}\ndoes not start with\n{want:?}"
        );
    }
    assert!(
        lines[1].ends_with("it was created for the check and removed again"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].ends_with("(out names request fields: the folder before the first was probed)"),
        "{}",
        lines[2]
    );

    // Nothing written anywhere; one login, then first pages only, and no other POST.
    assert_unchanged(tmp.path(), &before);
    assert_eq!(bucket.keys(), Vec::<String>::new());
    assert_eq!(bucket.uploads(), Vec::<String>::new());
    let report = format!("/v1/completed-reports/{REPORT}");
    let expected: Vec<(&str, &str)> = vec![
        ("POST", "/v1/auth/token"),
        ("GET", &report),
        ("GET", "/v1/reports"),
        ("GET", &report),
    ];
    let seen = requests(&log);
    let seen: Vec<(&str, &str)> = seen.iter().map(|(m, p)| (m.as_str(), p.as_str())).collect();
    assert_eq!(seen, expected);
}
