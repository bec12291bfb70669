//! The jobs file (TOML): connection settings and a list of jobs, checked once into
//! [`JobsFile`]. Every mistake is an [`Error::Usage`] naming the file, the line and the column
//! (from toml's spans), so a scheduler's log points at the fix. Secrets are never inline: the
//! connection names an environment variable or a file, and an inline `password` or `token` is an
//! error that does not repeat the value. Nothing here talks to the API or opens a destination.
//! An `endpoint` job's keys are turned into the flags of `export url` ([`endpoint`]) and checked
//! by the same code as the command line.

mod endpoint;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};
use toml::Spanned;

use crate::error::{Error, Result};
use crate::settings::manual::ManualJob;
use crate::sink::Codec;
use crate::sink::partition::DEFAULT_MAX_PARTITIONS;
use crate::source::client::Limits;
use crate::source::reports::ReportFields;

/// How long a submitted report is waited for when the job does not say.
const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(3600);
/// First pause between two looks at the report list when the job does not say.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// A checked jobs file.
#[derive(Debug)]
pub struct JobsFile {
    /// `[connection]`, when the file has one.
    pub connection: Option<ConnectionSpec>,
    /// Reports exported at once over all jobs.
    pub concurrency: Option<usize>,
    /// `id_field`, `status_field`, `completed_statuses`: how to read the report list.
    pub report_fields: ReportFields,
    /// The jobs, in file order; names are unique.
    pub jobs: Vec<JobSpec>,
    /// `retries`, `retry_max_time_secs`, `max_requests_per_second` (the flags override them).
    pub limits: Limits,
}

/// `[connection]`: where the API is and how to log in. Secrets only by reference.
#[derive(Debug, Default)]
pub struct ConnectionSpec {
    pub api_base: Option<String>,
    pub auth_url: Option<String>,
    pub username: Option<String>,
    /// Environment variable holding the username.
    pub username_env: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding a ready bearer token.
    pub token_env: Option<String>,
    /// File holding a ready bearer token.
    pub token_file: Option<PathBuf>,
    /// Run against the in-process sandbox.
    pub sandbox: bool,
}

/// One `[[job]]`.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub name: String,
    pub kind: JobKind,
    /// Destination as `--out` takes it.
    pub out: String,
    pub partition_by: Vec<String>,
    pub compression: Codec,
    pub max_partitions: usize,
}

/// What a job exports.
#[derive(Debug, Clone, PartialEq)]
pub enum JobKind {
    /// `kind = "reports"`: these completed reports.
    Reports(Vec<String>),
    /// `kind = "new-reports"`: every completed report whose request has these field values.
    NewReports(Map<String, Value>),
    /// `kind = "report-list"`: the report requests themselves.
    ReportList,
    /// `kind = "submit"`: request a new report, wait until it is completed, export it.
    Submit(SubmitSpec),
    /// `kind = "endpoint"`: a manually configured endpoint (like `export url`), exported anew on
    /// every run under the job's name.
    Endpoint(Box<ManualJob>),
}

impl JobKind {
    /// The `kind` value, for messages and the summary.
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::Reports(_) => "reports",
            JobKind::NewReports(_) => "new-reports",
            JobKind::ReportList => "report-list",
            JobKind::Submit(_) => "submit",
            JobKind::Endpoint(_) => "endpoint",
        }
    }
}

/// A report request to submit and how long to wait for it.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitSpec {
    /// JSON body of `POST /v1/reports`.
    pub request: Map<String, Value>,
    /// The wait ends with an error after this long.
    pub wait_timeout: Duration,
    /// First pause between polls; it grows by half each time, up to a minute.
    pub poll_interval: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    concurrency: Option<Spanned<i64>>,
    id_field: Option<Spanned<String>>,
    status_field: Option<Spanned<String>>,
    completed_statuses: Option<Spanned<Vec<String>>>,
    connection: Option<Spanned<RawConnection>>,
    #[serde(default)]
    job: Vec<Spanned<RawJob>>,
    max_requests_per_second: Option<Spanned<f64>>,
    retries: Option<Spanned<i64>>,
    retry_max_time_secs: Option<Spanned<f64>>,
}

/// No `Debug`: an inline secret may sit in it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    api_base: Option<String>,
    auth_url: Option<String>,
    username: Option<String>,
    username_env: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    #[serde(default)]
    sandbox: bool,
    /// Refused: only read to point at the line, its value is never kept.
    password: Option<Spanned<IgnoredAny>>,
    /// Refused like `password`.
    token: Option<Spanned<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    ids: Option<Spanned<Vec<String>>>,
    #[serde(rename = "where")]
    filter: Option<Spanned<Map<String, Value>>>,
    request: Option<Spanned<Map<String, Value>>>,
    wait_timeout_secs: Option<Spanned<f64>>,
    poll_interval_secs: Option<Spanned<f64>>,
    out: Option<Spanned<String>>,
    partition_by: Option<Spanned<Vec<String>>>,
    compression: Option<Spanned<String>>,
    max_partitions: Option<Spanned<i64>>,
    // kind = "endpoint": the flags of `export url`, in snake_case (see `endpoint`).
    url: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    query: Option<Spanned<Map<String, Value>>>,
    headers: Option<Spanned<Map<String, Value>>>,
    headers_env: Option<Spanned<Map<String, Value>>>,
    body: Option<Spanned<String>>,
    body_file: Option<Spanned<String>>,
    data_path: Option<Spanned<String>>,
    paginate: Option<Spanned<String>>,
    next_path: Option<Spanned<String>>,
    page_param: Option<Spanned<String>>,
    page_start: Option<Spanned<i64>>,
    offset_param: Option<Spanned<String>>,
    limit_param: Option<Spanned<String>>,
    limit: Option<Spanned<i64>>,
    cursor_path: Option<Spanned<String>>,
    cursor_param: Option<Spanned<String>>,
    total_path: Option<Spanned<String>>,
    content_format: Option<Spanned<String>>,
    select: Option<Spanned<Vec<String>>>,
    rename: Option<Spanned<Map<String, Value>>>,
    cast: Option<Spanned<Map<String, Value>>>,
    add_column: Option<Spanned<Map<String, Value>>>,
    on_cast_error: Option<Spanned<String>>,
}

/// Fields only some kinds take, and the kind that takes each (`endpoint`'s are listed in
/// [`endpoint::fields`]).
const KIND_FIELDS: &[(&str, &str)] = &[
    ("ids", "reports"),
    ("where", "new-reports"),
    ("request", "submit"),
    ("wait_timeout_secs", "submit"),
    ("poll_interval_secs", "submit"),
];

/// Looks up an environment variable (the process environment, or a stand-in in tests).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl JobsFile {
    /// Reads and checks the jobs file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Usage(format!("cannot read jobs file {}: {e}", path.display())))?;
        Self::parse(&path.display().to_string(), &text, &|var| {
            std::env::var(var).ok()
        })
    }

    /// Checks the text of a jobs file; `name` is how errors show the file, `env` gives the
    /// variables `headers_env` names.
    pub fn parse(name: &str, text: &str, env: Env) -> Result<Self> {
        let at = Locator { name, text };
        let raw: RawFile =
            toml::from_str(text).map_err(|e| at.error(e.span().unwrap_or(0..0), e.message()))?;
        let concurrency = raw
            .concurrency
            .map(|n| match usize::try_from(*n.get_ref()) {
                Ok(value @ 1..=64) => Ok(value),
                _ => Err(at.error(n.span(), "concurrency must be between 1 and 64")),
            })
            .transpose()?;
        let report_fields =
            report_fields(&at, raw.id_field, raw.status_field, raw.completed_statuses)?;
        let connection = raw.connection.map(|c| connection(&at, c)).transpose()?;
        if raw.job.is_empty() {
            return Err(at.error(0..0, "no jobs: add at least one [[job]] table"));
        }
        let mut jobs: Vec<JobSpec> = Vec::new();
        for job in raw.job {
            let span = job.span();
            let job = self::job(&at, job.into_inner(), span.clone(), env)?;
            if jobs.iter().any(|j| j.name == job.name) {
                return Err(at.error(span, &format!("job name {:?} is used twice", job.name)));
            }
            jobs.push(job);
        }
        let limits = Limits {
            retries: check(&at, raw.retries, "retries", Limits::check_retries)?,
            retry_max_time: check(
                &at,
                raw.retry_max_time_secs,
                "retry_max_time_secs",
                Limits::check_retry_time,
            )?,
            max_requests_per_second: check(
                &at,
                raw.max_requests_per_second,
                "max_requests_per_second",
                Limits::check_rate,
            )?,
        };
        Ok(Self {
            connection,
            concurrency,
            report_fields,
            jobs,
            limits,
        })
    }
}

/// A top-level key's value checked by `rule`; its error names the key and its line.
fn check<T, U>(
    at: &Locator,
    value: Option<Spanned<T>>,
    key: &str,
    rule: fn(T) -> std::result::Result<U, String>,
) -> Result<Option<U>> {
    let Some(value) = value else { return Ok(None) };
    let span = value.span();
    rule(value.into_inner())
        .map(Some)
        .map_err(|message| at.error(span, &format!("{key} {message}")))
}

/// The top-level keys that say how to read the report list; empty text is an error.
fn report_fields(
    at: &Locator,
    id_field: Option<Spanned<String>>,
    status_field: Option<Spanned<String>>,
    completed_statuses: Option<Spanned<Vec<String>>>,
) -> Result<ReportFields> {
    let key = |value: Option<Spanned<String>>, name: &str| {
        value
            .map(|v| match v.get_ref().trim() {
                "" => Err(at.error(v.span(), &format!("{name} is empty"))),
                key => Ok(key.to_string()),
            })
            .transpose()
    };
    let completed_statuses = match completed_statuses {
        Some(statuses) => {
            let span = statuses.span();
            let statuses: Vec<String> = statuses
                .into_inner()
                .iter()
                .map(|s| s.trim().to_string())
                .collect();
            if statuses.is_empty() || statuses.iter().any(String::is_empty) {
                return Err(at.error(span, "completed_statuses needs non-empty statuses"));
            }
            statuses
        }
        None => Vec::new(),
    };
    Ok(ReportFields {
        id_field: key(id_field, "id_field")?,
        status_field: key(status_field, "status_field")?,
        completed_statuses,
    })
}

/// Turns byte offsets into `file, line L, column C` for messages.
struct Locator<'a> {
    name: &'a str,
    text: &'a str,
}

impl Locator<'_> {
    fn error(&self, span: Range<usize>, message: &str) -> Error {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Error::Usage(format!(
            "invalid jobs file ({}, line {line}, column {column}): {}",
            self.name,
            message.trim()
        ))
    }
}

fn connection(at: &Locator, raw: Spanned<RawConnection>) -> Result<ConnectionSpec> {
    let span = raw.span();
    let raw = raw.into_inner();
    for (secret, field) in [(&raw.password, "password"), (&raw.token, "token")] {
        if let Some(value) = secret {
            return Err(at.error(
                value.span(),
                &format!(
                    "an inline {field} is not allowed: name an environment variable \
                     ({field}_env = \"VAR\") or a file ({field}_file = \"PATH\")"
                ),
            ));
        }
    }
    if raw.username.is_some() && raw.username_env.is_some() {
        return Err(at.error(span, "give username or username_env, not both"));
    }
    if raw.password_env.is_some() && raw.password_file.is_some() {
        return Err(at.error(span, "give password_env or password_file, not both"));
    }
    if raw.token_env.is_some() && raw.token_file.is_some() {
        return Err(at.error(span, "give token_env or token_file, not both"));
    }
    Ok(ConnectionSpec {
        api_base: raw.api_base,
        auth_url: raw.auth_url,
        username: raw.username,
        username_env: raw.username_env,
        password_env: raw.password_env,
        password_file: raw.password_file,
        token_env: raw.token_env,
        token_file: raw.token_file,
        sandbox: raw.sandbox,
    })
}

fn job(at: &Locator, raw: RawJob, span: Range<usize>, env: Env) -> Result<JobSpec> {
    let name = raw
        .name
        .as_ref()
        .ok_or_else(|| at.error(span.clone(), "a job has no name"))?;
    let name_text = name.get_ref().trim();
    if name_text.is_empty() || name_text.chars().any(char::is_control) {
        return Err(at.error(name.span(), "a job name must be non-empty text"));
    }
    let name_text = name_text.to_string();
    let fail = |span: Range<usize>, message: String| {
        at.error(span, &format!("job {name_text:?}: {message}"))
    };
    let kind = raw.kind.as_ref().ok_or_else(|| {
        fail(
            span.clone(),
            "no kind (reports, new-reports, report-list, submit or endpoint)".into(),
        )
    })?;
    let present = [
        raw.ids.as_ref().map(Spanned::span),
        raw.filter.as_ref().map(Spanned::span),
        raw.request.as_ref().map(Spanned::span),
        raw.wait_timeout_secs.as_ref().map(Spanned::span),
        raw.poll_interval_secs.as_ref().map(Spanned::span),
    ];
    let endpoint_fields = endpoint::fields(&raw).map(|(field, span)| (field, "endpoint", span));
    let kind_fields = KIND_FIELDS
        .iter()
        .zip(present)
        .map(|(&(field, owner), span)| (field, owner, span));
    for (field, owner, field_span) in kind_fields.chain(endpoint_fields) {
        if let Some(field_span) = field_span
            && kind.get_ref() != owner
        {
            return Err(fail(
                field_span,
                format!("{field} is only for kind = {owner:?}"),
            ));
        }
    }
    let job_kind = match kind.get_ref().as_str() {
        "reports" => {
            let ids = raw
                .ids
                .ok_or_else(|| fail(kind.span(), "kind = \"reports\" needs ids = [..]".into()))?;
            let ids_span = ids.span();
            let mut clean: Vec<String> = Vec::new();
            for id in ids.into_inner() {
                let id = id.trim().to_string();
                if id.is_empty() || id.chars().any(char::is_control) {
                    return Err(fail(ids_span, format!("invalid report id {id:?}")));
                }
                if !clean.contains(&id) {
                    clean.push(id);
                }
            }
            if clean.is_empty() {
                return Err(fail(ids_span, "ids is empty".into()));
            }
            JobKind::Reports(clean)
        }
        "new-reports" => {
            JobKind::NewReports(raw.filter.map(Spanned::into_inner).unwrap_or_default())
        }
        "report-list" => JobKind::ReportList,
        "submit" => {
            let request = raw.request.ok_or_else(|| {
                fail(
                    kind.span(),
                    "kind = \"submit\" needs request = { .. }, the JSON body of POST /v1/reports"
                        .into(),
                )
            })?;
            let seconds = |value: Option<Spanned<f64>>, field: &str, default: Duration| {
                let Some(value) = value else {
                    return Ok(default);
                };
                Duration::try_from_secs_f64(*value.get_ref())
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        fail(
                            value.span(),
                            format!("{field} must be a positive number of seconds"),
                        )
                    })
            };
            // Checked against any day: only the placeholders' names can be wrong.
            if let Err(e) = super::dates::fill(request.get_ref(), chrono::NaiveDate::default()) {
                return Err(fail(request.span(), format!("request: {e}")));
            }
            JobKind::Submit(SubmitSpec {
                request: request.into_inner(),
                wait_timeout: seconds(
                    raw.wait_timeout_secs,
                    "wait_timeout_secs",
                    DEFAULT_WAIT_TIMEOUT,
                )?,
                poll_interval: seconds(
                    raw.poll_interval_secs,
                    "poll_interval_secs",
                    DEFAULT_POLL_INTERVAL,
                )?,
            })
        }
        "endpoint" => JobKind::Endpoint(Box::new(endpoint::manual_job(
            &raw, &name_text, env, &fail,
        )?)),
        other => {
            return Err(fail(
                kind.span(),
                format!(
                    "unknown kind {other:?}: expected reports, new-reports, report-list, submit \
                     or endpoint"
                ),
            ));
        }
    };
    let out = raw
        .out
        .ok_or_else(|| fail(span.clone(), "no out (the destination)".into()))?;
    if out.get_ref().trim().is_empty() {
        return Err(fail(out.span(), "out is empty".into()));
    }
    let partition_by = match raw.partition_by {
        Some(columns) => crate::settings::partition_columns(columns.get_ref()).map_err(|e| {
            fail(
                columns.span(),
                e.to_string().replace("--partition-by", "partition_by"),
            )
        })?,
        None => Vec::new(),
    };
    let compression = match raw.compression {
        Some(codec) => Codec::from_str(codec.get_ref()).map_err(|e| fail(codec.span(), e))?,
        None => Codec::default(),
    };
    let max_partitions = match raw.max_partitions {
        Some(n) => usize::try_from(*n.get_ref())
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| fail(n.span(), "max_partitions must be a positive number".into()))?,
        None => DEFAULT_MAX_PARTITIONS,
    };
    Ok(JobSpec {
        name: name_text,
        kind: job_kind,
        out: out.into_inner(),
        partition_by,
        compression,
        max_partitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The environment of the tests: only `KARGO_API_KEY` is set.
    pub(super) fn env(var: &str) -> Option<String> {
        (var == "KARGO_API_KEY").then(|| "s3cret-from-env".to_owned())
    }

    pub(super) fn parse(text: &str) -> Result<JobsFile> {
        JobsFile::parse("jobs.toml", text, &env)
    }

    pub(super) fn error(text: &str) -> String {
        match parse(text) {
            Err(Error::Usage(message)) => message,
            Err(other) => panic!("not a usage error: {other}"),
            Ok(_) => panic!("accepted:\n{text}"),
        }
    }

    #[test]
    fn parses_every_kind_with_defaults() {
        let file = parse(
            r#"
concurrency = 3

[connection]
api_base = "https://api.example"
username = "svc"
password_env = "PW"

[[job]]
name = "given"
kind = "reports"
ids = ["a", " b ", "a"]
out = "out/given"
partition_by = ["date"]
compression = "snappy"

[[job]]
name = "nightly"
kind = "new-reports"
where = { report_type = "delivery_by_day" }
out = "out/nightly"

[[job]]
name = "list"
kind = "report-list"
out = "out/list"

[[job]]
name = "fresh"
kind = "submit"
request = { report_type = "delivery_by_day", date_range = { start = "2025-03-01", end = "2025-03-02" } }
poll_interval_secs = 0.5
out = "out/fresh"
"#,
        )
        .unwrap();
        assert_eq!(file.concurrency, Some(3));
        let connection = file.connection.unwrap();
        assert_eq!(connection.api_base.as_deref(), Some("https://api.example"));
        assert_eq!(connection.password_env.as_deref(), Some("PW"));
        assert!(!connection.sandbox);
        let names: Vec<&str> = file.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["given", "nightly", "list", "fresh"]);
        assert_eq!(
            file.jobs[0].kind,
            JobKind::Reports(vec!["a".into(), "b".into()])
        );
        assert_eq!(file.jobs[0].partition_by, ["date"]);
        assert_eq!(file.jobs[0].compression.to_string(), "snappy");
        assert_eq!(file.jobs[1].compression.to_string(), "zstd(3)");
        let JobKind::NewReports(filter) = &file.jobs[1].kind else {
            panic!("not new-reports")
        };
        assert_eq!(
            Value::Object(filter.clone()),
            serde_json::json!({"report_type": "delivery_by_day"})
        );
        assert_eq!(file.jobs[2].kind, JobKind::ReportList);
        let JobKind::Submit(submit) = &file.jobs[3].kind else {
            panic!("not submit")
        };
        assert_eq!(
            Value::Object(submit.request.clone()),
            serde_json::json!({"report_type": "delivery_by_day", "date_range": {"start": "2025-03-01", "end": "2025-03-02"}})
        );
        assert_eq!(submit.poll_interval, Duration::from_millis(500));
        assert_eq!(submit.wait_timeout, DEFAULT_WAIT_TIMEOUT);
    }

    #[test]
    fn the_readme_example_is_a_valid_jobs_file() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("```toml\nconcurrency = 4")
            .expect("the jobs file example in the README")
            + "```toml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let file = parse(&readme[start..end]).unwrap();
        let kinds: Vec<&str> = file.jobs.iter().map(|j| j.kind.name()).collect();
        assert_eq!(
            kinds,
            [
                "new-reports",
                "reports",
                "report-list",
                "submit",
                "endpoint"
            ]
        );
        assert_eq!(file.concurrency, Some(4));
    }

    #[test]
    fn syntax_errors_name_the_line_and_column() {
        let message = error("[[job]]\nname = \"a\"\nkind = \"reports\nout = 1\n");
        assert!(
            message.starts_with("invalid jobs file (jobs.toml, line 3, column "),
            "{message}"
        );
    }

    #[test]
    fn unknown_fields_name_their_line() {
        let message = error(
            "[[job]]\nname = \"a\"\nkind = \"report-list\"\nout = \"o\"\nparition_by = [\"x\"]\n",
        );
        assert!(message.contains("line 5, column 1"), "{message}");
        assert!(message.contains("parition_by"), "{message}");
    }

    #[test]
    fn inline_secrets_are_refused_without_echoing_them() {
        for field in ["password", "token"] {
            let message = error(&format!(
                "[connection]\nusername = \"u\"\n{field} = \"hunter2\"\n\n[[job]]\nname = \"a\"\nkind = \"report-list\"\nout = \"o\"\n"
            ));
            assert!(message.contains("line 3, column"), "{message}");
            assert!(
                message.contains(&format!("an inline {field} is not allowed")),
                "{message}"
            );
            assert!(message.contains(&format!("{field}_env")), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn semantic_errors_name_the_job_and_line() {
        let base = "[[job]]\nname = \"a\"\nout = \"o\"\n";
        let cases = [
            (
                "kind = \"everything\"\n",
                "line 4, column 8",
                "unknown kind \"everything\"",
            ),
            ("kind = \"reports\"\n", "line 4", "needs ids"),
            ("kind = \"reports\"\nids = []\n", "line 5", "ids is empty"),
            (
                "kind = \"report-list\"\nids = [\"x\"]\n",
                "line 5",
                "ids is only for kind = \"reports\"",
            ),
            ("kind = \"submit\"\n", "line 4", "needs request"),
            (
                "kind = \"submit\"\nrequest = { start = \"${today-x}\" }\n",
                "line 5, column 11",
                "request: unknown date ${today-x}",
            ),
            (
                "kind = \"submit\"\nrequest = {}\nwait_timeout_secs = -1\n",
                "line 6",
                "wait_timeout_secs must be a positive",
            ),
            (
                "kind = \"report-list\"\ncompression = \"brotli\"\n",
                "line 5",
                "unknown compression \"brotli\"",
            ),
            (
                "kind = \"report-list\"\npartition_by = [\"d\", \"d\"]\n",
                "line 5",
                "partition_by names \"d\" twice",
            ),
        ];
        for (extra, line, what) in cases {
            let message = error(&format!("{base}{extra}"));
            assert!(message.contains(line), "{extra}: {message}");
            assert!(message.contains("job \"a\""), "{extra}: {message}");
            assert!(message.contains(what), "{extra}: {message}");
        }
    }

    #[test]
    fn report_list_keys_are_read_and_checked() {
        let job = "[[job]]\nname = \"a\"\nkind = \"new-reports\"\nout = \"o\"\n";
        let file = parse(&format!(
            "id_field = \"uuid\"\nstatus_field = \" state \"\ncompleted_statuses = [\"done\", \"ready\"]\n{job}"
        ))
        .unwrap();
        assert_eq!(
            file.report_fields,
            ReportFields {
                id_field: Some("uuid".into()),
                status_field: Some("state".into()),
                completed_statuses: vec!["done".into(), "ready".into()],
            }
        );
        assert_eq!(parse(job).unwrap().report_fields, ReportFields::default());
        let cases = [
            (
                "id_field = \" \"\n",
                "line 1, column 12",
                "id_field is empty",
            ),
            (
                "status_field = \"\"\n",
                "line 1, column 16",
                "status_field is empty",
            ),
            (
                "completed_statuses = []\n",
                "line 1, column 22",
                "completed_statuses needs non-empty statuses",
            ),
            (
                "completed_statuses = [\"done\", \"\"]\n",
                "line 1",
                "completed_statuses needs non-empty statuses",
            ),
        ];
        for (top, line, what) in cases {
            let message = error(&format!("{top}{job}"));
            assert!(message.contains(line), "{top}: {message}");
            assert!(message.contains(what), "{top}: {message}");
        }
    }

    #[test]
    fn names_are_required_and_unique_and_a_file_needs_jobs() {
        assert!(error("concurrency = 2\n").contains("no jobs"));
        assert!(
            error("[[job]]\nkind = \"report-list\"\nout = \"o\"\n").contains("a job has no name")
        );
        let twice = "[[job]]\nname = \"a\"\nkind = \"report-list\"\nout = \"o\"\n";
        let message = error(&format!("{twice}\n{twice}"));
        assert!(message.contains("line 6"), "{message}");
        assert!(
            message.contains("job name \"a\" is used twice"),
            "{message}"
        );
        let message = error(&format!("concurrency = 0\n{twice}"));
        assert!(message.contains("line 1, column 15"), "{message}");
    }

    #[test]
    fn retry_and_rate_limits_are_read_and_checked_with_their_line() {
        let job = "[[job]]\nname = \"a\"\nkind = \"report-list\"\nout = \"/tmp/x\"\n";
        let file = parse(&format!(
            "max_requests_per_second = 2.5\nretries = 0\nretry_max_time_secs = 30\n{job}"
        ))
        .unwrap();
        assert_eq!(
            file.limits,
            Limits {
                retries: Some(0),
                retry_max_time: Some(Duration::from_secs(30)),
                max_requests_per_second: Some(2.5),
            }
        );
        assert_eq!(parse(job).unwrap().limits, Limits::default());
        let message = error(&format!("retries = 3\nmax_requests_per_second = 0\n{job}"));
        assert!(
            message.contains("line 2") && message.contains("max_requests_per_second must be"),
            "{message}"
        );
        let message = error(&format!("retries = -1\n{job}"));
        assert!(
            message.contains("retries must be between 0 and"),
            "{message}"
        );
        let message = error(&format!("retry_max_time_secs = \"soon\"\n{job}"));
        assert!(message.contains("line 1"), "{message}");
    }
}
