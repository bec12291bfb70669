//! The jobs file (TOML): connection settings and a list of jobs, turned into the inputs of
//! [`crate::settings`] and checked by the same functions as the command line. Every mistake is
//! an [`Error::Usage`] naming the file, the line and the column of its key (from toml's spans,
//! through [`Keys`], this source's [`Origin`]), so a scheduler's log points at the fix.
//!
//! What only a file can get wrong is checked here: TOML types, keys of another kind of job,
//! and secrets written inline. Secrets are never inline: the connection names an environment
//! variable or a file, and an inline `password` or `token` is an error that does not repeat
//! the value; so is an inline header that looks like a credential. Nothing here talks to the
//! API or writes to a destination.

mod endpoint;
mod transform;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};
use toml::Spanned;

use super::out::{JobOutput, OutTemplate};
use crate::error::{Error, Result};
use crate::settings::connection::{self, ConnectionInput, Given, LimitsInput};
use crate::settings::field::{self, Field};
use crate::settings::output::{self, OutputInput};
use crate::settings::reports::{self, ReportFieldsInput};
use crate::settings::{Api, EndpointSpec, Origin, checked};
use crate::source::client::Limits;
use crate::source::reports::ReportFields;
use crate::transform::Transforms;

/// How long a submitted report is waited for when the job does not say.
const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(3600);
/// First pause between two looks at the report list when the job does not say.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// A checked jobs file.
#[derive(Debug)]
pub struct JobsFile {
    /// `[connection]`, when the file has one.
    pub connection: Option<ConnectionSection>,
    /// Reports exported at once over all jobs.
    pub concurrency: Option<usize>,
    /// `id_field`, `status_field`, `completed_statuses`: how to read the report list.
    pub report_fields: ReportFields,
    /// The jobs, in file order; names are unique.
    pub jobs: Vec<Job>,
    /// `retries`, `retry_max_time_secs`, `max_requests_per_second` (the flags override them).
    pub limits: Limits,
}

/// `[connection]`: where the API is and how to log in, secrets only by reference. Checked by
/// [`ConnectionSection::api`] when the run uses it (a `--sandbox` run does not).
#[derive(Debug)]
pub struct ConnectionSection {
    pub input: ConnectionInput,
    keys: Spans,
}

impl ConnectionSection {
    /// The checked API; `env` gives the variables the section names.
    pub fn api(&self, env: Env) -> Result<Api> {
        connection::api(&self.keys.origin(None, env), &self.input)
    }
}

/// One checked `[[job]]`.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub kind: JobKind,
    /// Where it writes: `out`, perhaps naming fields of the report request.
    pub output: JobOutput,
    /// `select`, `rename`, `cast`, `add_column`, `on_cast_error`: every kind takes them.
    pub transforms: Transforms,
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
    /// `kind = "endpoint"`: a configured endpoint (like `export url`), exported anew on every
    /// run under the job's name.
    Endpoint(Box<EndpointSpec>),
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
    api_base: Option<Spanned<String>>,
    auth_url: Option<Spanned<String>>,
    username: Option<Spanned<String>>,
    username_env: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<PathBuf>>,
    token_env: Option<Spanned<String>>,
    token_file: Option<Spanned<PathBuf>>,
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
    on_schema_change: Option<Spanned<String>>,
    table_format: Option<Spanned<String>>,
    // Any kind: the transforms (see `transform`).
    select: Option<Spanned<Vec<String>>>,
    rename: Option<Spanned<Map<String, Value>>>,
    cast: Option<Spanned<Map<String, Value>>>,
    add_column: Option<Spanned<Map<String, Value>>>,
    on_cast_error: Option<Spanned<String>>,
    // kind = "endpoint": the fields of `export url`, in snake_case (see `endpoint`).
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
}

/// Keys only some kinds take, and the kind that takes each (`endpoint`'s are listed in
/// [`endpoint::keys`]).
const KIND_KEYS: &[(&str, &str)] = &[
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
        let at = Arc::new(Locator {
            name: name.to_owned(),
            text: text.to_owned(),
        });
        let raw: RawFile =
            toml::from_str(text).map_err(|e| at.error(e.span().unwrap_or(0..0), e.message()))?;
        let top = Spans {
            at: at.clone(),
            keys: vec![
                ("concurrency", span(&raw.concurrency)),
                ("id_field", span(&raw.id_field)),
                ("status_field", span(&raw.status_field)),
                ("completed_statuses", span(&raw.completed_statuses)),
                ("retries", span(&raw.retries)),
                ("retry_max_time_secs", span(&raw.retry_max_time_secs)),
                (
                    "max_requests_per_second",
                    span(&raw.max_requests_per_second),
                ),
            ],
            fallback: 0..0,
        };
        let origin = top.origin(None, env);
        let concurrency = checked(
            &origin,
            field::CONCURRENCY,
            raw.concurrency.map(Spanned::into_inner),
            output::concurrency,
        )?;
        let report_fields = reports::report_fields(
            &origin,
            &ReportFieldsInput {
                id_field: raw.id_field.map(Spanned::into_inner),
                status_field: raw.status_field.map(Spanned::into_inner),
                completed_statuses: raw.completed_statuses.map(Spanned::into_inner),
            },
        )?;
        let limits = connection::limits(
            &origin,
            &LimitsInput {
                retries: raw.retries.map(Spanned::into_inner),
                retry_max_time_secs: raw.retry_max_time_secs.map(Spanned::into_inner),
                max_requests_per_second: raw.max_requests_per_second.map(Spanned::into_inner),
            },
        )?;
        let connection = raw
            .connection
            .map(|c| self::connection(&at, c))
            .transpose()?;
        if raw.job.is_empty() {
            return Err(at.error(0..0, "no jobs: add at least one [[job]] table"));
        }
        let mut jobs: Vec<Job> = Vec::new();
        for job in raw.job {
            let span = job.span();
            let job = self::job(&at, job.into_inner(), span.clone(), env)?;
            if jobs.iter().any(|j| j.name == job.name) {
                return Err(at.error(span, &format!("job name {:?} is used twice", job.name)));
            }
            jobs.push(job);
        }
        Ok(Self {
            connection,
            concurrency,
            report_fields,
            jobs,
            limits,
        })
    }
}

/// The span of a key, when given.
fn span<T>(value: &Option<Spanned<T>>) -> Option<Range<usize>> {
    value.as_ref().map(Spanned::span)
}

/// Turns byte offsets into `file, line L, column C` for messages.
#[derive(Debug)]
struct Locator {
    name: String,
    text: String,
}

impl Locator {
    fn error(&self, span: Range<usize>, message: &str) -> Error {
        located(&self.place(span), message)
    }

    /// `FILE, line L, column C` of a span's start.
    fn place(&self, span: Range<usize>) -> String {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("{}, line {line}, column {column}", self.name)
    }
}

/// A usage error about the jobs file at `place` (`FILE, line L, column C`).
pub(super) fn located(place: &str, message: &str) -> Error {
    Error::Usage(format!("invalid jobs file ({place}): {}", message.trim()))
}

/// Where the keys of one table (the top level, `[connection]` or a job) are.
#[derive(Debug, Clone)]
struct Spans {
    at: Arc<Locator>,
    keys: Vec<(&'static str, Option<Range<usize>>)>,
    /// Where an error about a key that is not given points: the table.
    fallback: Range<usize>,
}

impl Spans {
    /// The origin of this table's inputs; errors of a job's table name the job.
    fn origin<'a>(&'a self, job: Option<&'a str>, env: Env<'a>) -> Keys<'a> {
        Keys {
            spans: self,
            job,
            env,
        }
    }

    fn of(&self, key: &str) -> Range<usize> {
        self.keys
            .iter()
            .find(|(name, _)| *name == key)
            .and_then(|(_, span)| span.clone())
            .unwrap_or_else(|| self.fallback.clone())
    }
}

/// The jobs file as an [`Origin`]: a field is its key, an error points at the key's line.
struct Keys<'a> {
    spans: &'a Spans,
    job: Option<&'a str>,
    env: Env<'a>,
}

impl Origin for Keys<'_> {
    fn name(&self, field: Field) -> &'static str {
        field.key
    }

    fn error(&self, field: Field, message: String) -> Error {
        let message = match self.job {
            Some(job) => format!("job {job:?}: {message}"),
            None => message,
        };
        self.spans.at.error(self.spans.of(field.key), &message)
    }

    fn env(&self, var: &str) -> Option<String> {
        (self.env)(var)
    }
}

fn connection(at: &Arc<Locator>, raw: Spanned<RawConnection>) -> Result<ConnectionSection> {
    let section = raw.span();
    let raw = raw.into_inner();
    for (secret, key) in [(&raw.password, "password"), (&raw.token, "token")] {
        if let Some(value) = secret {
            return Err(at.error(
                value.span(),
                &format!(
                    "an inline {key} is not allowed: name an environment variable \
                     ({key}_env = \"VAR\") or a file ({key}_file = \"PATH\")"
                ),
            ));
        }
    }
    for (one, other, message) in [
        (
            span(&raw.username),
            span(&raw.username_env),
            "give username or username_env, not both",
        ),
        (
            span(&raw.password_env),
            span(&raw.password_file),
            "give password_env or password_file, not both",
        ),
        (
            span(&raw.token_env),
            span(&raw.token_file),
            "give token_env or token_file, not both",
        ),
    ] {
        if let (Some(_), Some(second)) = (one, other) {
            return Err(at.error(second, message));
        }
    }
    let keys = Spans {
        at: at.clone(),
        keys: vec![
            ("api_base", span(&raw.api_base)),
            ("auth_url", span(&raw.auth_url)),
            ("username", span(&raw.username)),
            ("username_env", span(&raw.username_env)),
            ("password_env", span(&raw.password_env)),
            ("password_file", span(&raw.password_file)),
            ("token_env", span(&raw.token_env)),
            ("token_file", span(&raw.token_file)),
        ],
        fallback: section,
    };
    let env =
        |f: Field, var: Option<Spanned<String>>| var.map(|v| Given::env(f, v.into_inner(), true));
    let file =
        |f: Field, path: Option<Spanned<PathBuf>>| path.map(|p| Given::file(f, p.into_inner()));
    let input = ConnectionInput {
        sandbox: raw.sandbox,
        api_base: raw.api_base.map(Spanned::into_inner),
        auth_url: raw.auth_url.map(Spanned::into_inner),
        username: raw
            .username
            .map(|name| Given::text(field::USERNAME, name.into_inner()))
            .or_else(|| env(field::USERNAME_ENV, raw.username_env)),
        password: env(field::PASSWORD_ENV, raw.password_env)
            .or_else(|| file(field::PASSWORD_FILE, raw.password_file)),
        token: env(field::TOKEN_ENV, raw.token_env)
            .or_else(|| file(field::TOKEN_FILE, raw.token_file)),
    };
    Ok(ConnectionSection { input, keys })
}

/// Every key of a job with its span when given.
fn keys(raw: &RawJob) -> Vec<(&'static str, Option<Range<usize>>)> {
    let mut keys = vec![
        ("name", span(&raw.name)),
        ("kind", span(&raw.kind)),
        ("out", span(&raw.out)),
        ("partition_by", span(&raw.partition_by)),
        ("compression", span(&raw.compression)),
        ("max_partitions", span(&raw.max_partitions)),
        ("on_schema_change", span(&raw.on_schema_change)),
        ("table_format", span(&raw.table_format)),
        ("ids", span(&raw.ids)),
        ("where", span(&raw.filter)),
        ("request", span(&raw.request)),
        ("wait_timeout_secs", span(&raw.wait_timeout_secs)),
        ("poll_interval_secs", span(&raw.poll_interval_secs)),
    ];
    keys.extend(transform::keys(raw));
    keys.extend(endpoint::keys(raw));
    keys
}

/// The kind that alone takes `key`, if only one does.
fn owner(key: &str) -> Option<&'static str> {
    KIND_KEYS
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, kind)| *kind)
        .or_else(|| {
            endpoint::keys_of_kind()
                .any(|name| name == key)
                .then_some("endpoint")
        })
}

fn job(at: &Arc<Locator>, raw: RawJob, span: Range<usize>, env: Env) -> Result<Job> {
    let name = raw
        .name
        .as_ref()
        .ok_or_else(|| at.error(span.clone(), "a job has no name"))?;
    let name_text = name.get_ref().trim();
    if name_text.is_empty() || name_text.chars().any(char::is_control) {
        return Err(at.error(name.span(), "a job name must be non-empty text"));
    }
    let name_text = name_text.to_string();
    let spans = Spans {
        at: at.clone(),
        keys: keys(&raw),
        fallback: span.clone(),
    };
    let origin = spans.origin(Some(&name_text), env);
    let fail = |span: Range<usize>, message: String| {
        at.error(span, &format!("job {name_text:?}: {message}"))
    };
    let kind = raw.kind.as_ref().ok_or_else(|| {
        fail(
            span.clone(),
            "no kind (reports, new-reports, report-list, submit or endpoint)".into(),
        )
    })?;
    for (key, key_span) in &spans.keys {
        if let (Some(key_span), Some(owner)) = (key_span, owner(key))
            && kind.get_ref() != owner
        {
            return Err(fail(
                key_span.clone(),
                format!("{key} is only for kind = {owner:?}"),
            ));
        }
    }
    let job_kind = match kind.get_ref().as_str() {
        "reports" => {
            let ids = raw
                .ids
                .as_ref()
                .ok_or_else(|| fail(kind.span(), "kind = \"reports\" needs ids = [..]".into()))?;
            JobKind::Reports(reports::report_ids(&origin, ids.get_ref())?)
        }
        "new-reports" => JobKind::NewReports(
            raw.filter
                .as_ref()
                .map(|f| f.get_ref().clone())
                .unwrap_or_default(),
        ),
        "report-list" => JobKind::ReportList,
        "submit" => JobKind::Submit(submit(&raw, kind.span(), &fail)?),
        "endpoint" => JobKind::Endpoint(Box::new(endpoint::endpoint(
            &raw, &name_text, &origin, &fail,
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
    let transforms = transform::transforms(&raw, &origin)?;
    let out = raw
        .out
        .as_ref()
        .ok_or_else(|| fail(span.clone(), "no out (the destination)".into()))?;
    let template = out_template(out, &job_kind, &fail)?;
    let checked = output::output(
        &origin,
        &OutputInput {
            out: template.base(),
            partition_by: raw
                .partition_by
                .as_ref()
                .map(|p| p.get_ref().clone())
                .unwrap_or_default(),
            compression: raw.compression.as_ref().map(|c| c.get_ref().clone()),
            max_partitions: raw.max_partitions.as_ref().map(|n| *n.get_ref()),
            on_schema_change: raw.on_schema_change.as_ref().map(|p| p.get_ref().clone()),
            table_format: raw.table_format.as_ref().map(|p| p.get_ref().clone()),
        },
    )?;
    Ok(Job {
        output: JobOutput::new(template, checked, at.place(out.span()), name_text.clone()),
        name: name_text,
        kind: job_kind,
        transforms,
    })
}

/// `out` as a template: its placeholders need a kind with a report request, and a submit
/// job's request must fill them (checked with its dates filled for any day).
fn out_template(out: &Spanned<String>, kind: &JobKind, fail: Fail) -> Result<OutTemplate> {
    let template =
        OutTemplate::parse(out.get_ref()).map_err(|e| fail(out.span(), format!("out {e}")))?;
    let Some(field) = template.fields().next() else {
        return Ok(template);
    };
    match kind {
        JobKind::Reports(_) | JobKind::NewReports(_) => {}
        JobKind::Submit(spec) => {
            let request = super::dates::fill(&spec.request, chrono::NaiveDate::default())
                .map_err(|e| fail(out.span(), format!("request: {e}")))?;
            template
                .render(&request, "this submit job")
                .map_err(|e| fail(out.span(), format!("out: {e}")))?;
        }
        JobKind::ReportList | JobKind::Endpoint(_) => {
            return Err(fail(
                out.span(),
                format!(
                    "out names {{{field}}}, but a job of kind {:?} has no report request to \
                     fill it (only reports, new-reports and submit jobs have one)",
                    kind.name()
                ),
            ));
        }
    }
    Ok(template)
}

/// A table as `(name, value)` pairs. Values are strings (`scalars` also lets numbers and
/// booleans through, as their TOML text).
fn pairs(
    table: &Option<Spanned<Map<String, Value>>>,
    field: Field,
    scalars: bool,
    origin: &dyn Origin,
) -> Result<Vec<(String, String)>> {
    let Some(table) = table else {
        return Ok(Vec::new());
    };
    table
        .get_ref()
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Value::String(text) => text.clone(),
                Value::Number(n) if scalars => n.to_string(),
                Value::Bool(b) if scalars => b.to_string(),
                _ => {
                    let expected = if scalars {
                        "text, a number or a boolean"
                    } else {
                        "text"
                    };
                    return Err(origin.error(
                        field,
                        format!(
                            "{}: the value of {name:?} must be {expected}",
                            origin.name(field)
                        ),
                    ));
                }
            };
            Ok((name.clone(), value))
        })
        .collect()
}

/// Builds an error for the job at a span (the job's name is added).
type Fail<'a> = &'a dyn Fn(Range<usize>, String) -> Error;

/// `kind = "submit"`: the request (its date placeholders checked) and the waits.
fn submit(raw: &RawJob, kind: Range<usize>, fail: Fail) -> Result<SubmitSpec> {
    let request = raw.request.as_ref().ok_or_else(|| {
        fail(
            kind,
            "kind = \"submit\" needs request = { .. }, the JSON body of POST /v1/reports".into(),
        )
    })?;
    let seconds = |value: &Option<Spanned<f64>>, key: &str, default: Duration| {
        let Some(value) = value else {
            return Ok(default);
        };
        Duration::try_from_secs_f64(*value.get_ref())
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                fail(
                    value.span(),
                    format!("{key} must be a positive number of seconds"),
                )
            })
    };
    // Checked against any day: only the placeholders' names can be wrong.
    if let Err(e) = super::dates::fill(request.get_ref(), chrono::NaiveDate::default()) {
        return Err(fail(request.span(), format!("request: {e}")));
    }
    Ok(SubmitSpec {
        request: request.get_ref().clone(),
        wait_timeout: seconds(
            &raw.wait_timeout_secs,
            "wait_timeout_secs",
            DEFAULT_WAIT_TIMEOUT,
        )?,
        poll_interval: seconds(
            &raw.poll_interval_secs,
            "poll_interval_secs",
            DEFAULT_POLL_INTERVAL,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::connection::ValueSource;

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
        assert_eq!(
            connection.input.api_base.as_deref(),
            Some("https://api.example")
        );
        let password = connection.input.password.as_ref().map(|p| &p.from);
        assert!(
            matches!(password, Some(ValueSource::Env { var, required: true }) if var == "PW"),
            "{password:?}"
        );
        assert!(!connection.input.sandbox);
        let names: Vec<&str> = file.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["given", "nightly", "list", "fresh"]);
        assert_eq!(
            file.jobs[0].kind,
            JobKind::Reports(vec!["a".into(), "b".into()])
        );
        let output = |job: usize| file.jobs[job].output.fixed().unwrap();
        assert_eq!(output(0).partition_by, ["date"]);
        assert_eq!(output(0).write.compression.to_string(), "snappy");
        assert_eq!(output(1).write.compression.to_string(), "zstd(3)");
        assert_eq!(output(1).destination.display(), "out/nightly");
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
    fn out_placeholders_are_checked_with_the_line_of_out() {
        let job =
            |kind: &str, out: &str| format!("[[job]]\nname = \"a\"\n{kind}\nout = \"{out}\"\n");
        let cases = [
            (
                job("kind = \"new-reports\"", "o/{report_type"),
                "without its \"}\"",
            ),
            (job("kind = \"new-reports\"", "o/{}"), "names no field"),
            (
                job("kind = \"new-reports\"", "o/{a b}"),
                "{a b} is not a field name",
            ),
            (
                job("kind = \"new-reports\"", "s3://{b}/o"),
                "cannot stand in the scheme, bucket or host",
            ),
            (
                job("kind = \"report-list\"", "o/{report_type}"),
                "out names {report_type}, but a job of kind \"report-list\" has no report request",
            ),
            (
                job(
                    "kind = \"submit\"\nrequest = { report_type = \"x\" }",
                    "o/{nope}",
                ),
                "out: the request of this submit job has no field \"nope\"",
            ),
            (
                job(
                    "kind = \"submit\"\nrequest = { t = \"a/${today}\" }",
                    "o/{t}",
                ),
                "field \"t\" of the request of this submit job is \"a/1970-01-01\"",
            ),
        ];
        for (text, what) in cases {
            let message = error(&text);
            let line = if text.contains("request") {
                "line 5"
            } else {
                "line 4"
            };
            assert!(message.contains(line), "{text}: {message}");
            assert!(message.contains("job \"a\""), "{text}: {message}");
            assert!(message.contains(what), "{text}: {message}");
        }
        let endpoint =
            "[[job]]\nname = \"a\"\nkind = \"endpoint\"\nurl = \"/v1/x\"\nout = \"o/{x}\"\n";
        assert!(
            error(endpoint).contains("line 5, column 7"),
            "{}",
            error(endpoint)
        );

        let file = parse(&format!(
            "{}\n{}",
            job("kind = \"new-reports\"", "o/{report_type}/{{x}}"),
            job("kind = \"report-list\"", "p/{{x}}").replace("\"a\"", "\"b\""),
        ))
        .unwrap();
        let templated = &file.jobs[0].output;
        assert_eq!(templated.destination.display(), "o/{report_type}/{{x}}");
        assert!(templated.has_fields() && templated.fixed().is_none());
        let fixed = file.jobs[1].output.fixed().unwrap();
        assert_eq!(fixed.destination.display(), "p/{x}");
    }

    #[test]
    fn a_request_that_cannot_fill_out_fails_with_the_line_of_out() {
        let file = parse(
            "[[job]]\nname = \"a\"\nkind = \"reports\"\nids = [\"r1\"]\npartition_by = [\"date\"]\nout = \"s3://bucket/k/{report_type}\"\n",
        )
        .unwrap();
        let output = &file.jobs[0].output;
        let mut resolver = output.resolver();
        let fields = |v: Value| v.as_object().unwrap().clone();
        let by_day = resolver
            .resolve(
                &fields(serde_json::json!({"report_type": "by day"})),
                "report r1",
            )
            .unwrap();
        assert_eq!(by_day.destination.display(), "s3://bucket/k/by day");
        assert_eq!(by_day.partition_by, ["date"]);
        let message = resolver
            .resolve(&fields(serde_json::json!({"type": "x"})), "report r2")
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "invalid jobs file (jobs.toml, line 6, column 7): job \"a\": out: the request of \
             report r2 has no field \"report_type\""
        );
        let message = output.unknown_request("r3", "is not listed").to_string();
        assert!(
            message.ends_with(
                "job \"a\": out: report r3 is not listed, so {report_type} cannot be filled"
            ),
            "{message}"
        );
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
