//! The command line turned once into validated settings: URLs parsed, secrets wrapped in
//! [`Secret`], the destination opened, codecs chosen. Everything downstream takes these types
//! and never parses a raw flag again. Usage mistakes become [`Error::Usage`] (exit code 2).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::Url;

use crate::cli::{
    Cli, Command, ConnectionArgs, ExportTarget, LastLinkArg, LinkStyleArg, OutputArgs,
    ReportFieldArgs, SandboxArgs, SchemaTarget,
};
use crate::error::{Error, Result};
use crate::sandbox::request_log::RequestLog;
use crate::sandbox::{Faults, LastLink, LinkStyle, SandboxData, SandboxOptions};
use crate::secret::Secret;
use crate::sink::{Destination, WriteOptions};
use crate::source::auth::Credentials;
use crate::source::client::{Connection, Limits};
use crate::source::reports::ReportFields;

pub mod manual;

use manual::ManualJob;

/// Environment variable holding the password.
pub const PASSWORD_ENV: &str = "KARGO_PASSWORD";
/// Environment variable holding a ready bearer token.
pub const TOKEN_ENV: &str = "KARGO_TOKEN";

/// Which API to talk to.
#[derive(Debug, Clone)]
pub enum Api {
    /// A real (or test) API.
    Remote(Box<Connection>),
    /// An in-process sandbox over the bundled sample data, with these retry and rate limits.
    Sandbox(Limits),
}

impl Api {
    /// This API with `limits` (retries, retry time, request rate).
    pub fn with_limits(self, limits: Limits) -> Api {
        match self {
            Api::Remote(connection) => Api::Remote(Box::new(connection.with_limits(limits))),
            Api::Sandbox(_) => Api::Sandbox(limits),
        }
    }
}

/// One validated command.
pub enum Settings {
    /// `reports`.
    Reports {
        api: Api,
        json: bool,
        fields: ReportFields,
    },
    /// `export ...`.
    Export(ExportSettings),
    /// `schema report ID`.
    Schema { api: Api, report_id: String },
    /// `schema url URL ...`.
    SchemaUrl { api: Api, job: Box<ManualJob> },
    /// `run JOBS.toml`.
    Run(crate::jobs::RunSettings),
    /// `sandbox`.
    Sandbox {
        addr: SocketAddr,
        options: SandboxOptions,
    },
}

/// What an export reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportJob {
    /// Rows of these completed reports.
    CompletedReports(Vec<String>),
    /// The report requests themselves.
    ReportList,
    /// A manually configured endpoint.
    Endpoint(Box<ManualJob>),
}

/// A validated export.
pub struct ExportSettings {
    pub api: Api,
    pub job: ExportJob,
    pub destination: Destination,
    pub partition_by: Vec<String>,
    pub write: WriteOptions,
    /// Most distinct partitions an export may have.
    pub max_partitions: usize,
    /// Reports exported at once.
    pub concurrency: usize,
}

impl Settings {
    /// Validates the parsed command line.
    pub fn from_cli(cli: Cli) -> Result<Self> {
        match cli.command {
            Command::Reports { json, fields } => Ok(Settings::Reports {
                api: api(&cli.connection)?,
                json,
                fields: report_fields(&fields, None)?,
            }),
            Command::Schema {
                target: SchemaTarget::Report { id },
            } => Ok(Settings::Schema {
                api: api(&cli.connection)?,
                report_id: report_id(&id)?,
            }),
            Command::Schema {
                target: SchemaTarget::Url { manual },
            } => Ok(Settings::SchemaUrl {
                job: Box::new(manual::manual_job(&manual)?),
                api: api(&cli.connection)?,
            }),
            Command::Export { target } => {
                let (job, output) = match target {
                    ExportTarget::Report { ids, output } => {
                        let ids = ids
                            .iter()
                            .map(|id| report_id(id))
                            .collect::<Result<Vec<_>>>()?;
                        (ExportJob::CompletedReports(dedup(ids)), output)
                    }
                    ExportTarget::Reports { output } => (ExportJob::ReportList, output),
                    ExportTarget::Url { manual, output } => {
                        let job = manual::manual_job(&manual)?;
                        (ExportJob::Endpoint(Box::new(job)), output)
                    }
                };
                let api = api(&cli.connection)?;
                export_settings(api, job, output).map(Settings::Export)
            }
            Command::Run(args) => {
                crate::jobs::RunSettings::new(args, &cli.connection).map(Settings::Run)
            }
            Command::Sandbox(args) => sandbox_settings(args),
        }
    }
}

fn export_settings(api: Api, job: ExportJob, output: OutputArgs) -> Result<ExportSettings> {
    let partition_by = partition_columns(&output.partition_by)?;
    let destination = Destination::open(&output.out)?;
    Ok(ExportSettings {
        api,
        job,
        destination,
        partition_by,
        write: WriteOptions {
            compression: output.compression,
            ..WriteOptions::default()
        },
        max_partitions: output.max_partitions,
        concurrency: usize::from(output.concurrency),
    })
}

/// The API and credentials from the connection flags and environment.
pub(crate) fn api(args: &ConnectionArgs) -> Result<Api> {
    let limits = limits(args)?;
    if args.sandbox {
        return Ok(Api::Sandbox(limits));
    }
    let api_base = http_url("--api-base", &args.api_base)?;
    let credentials = credentials(args, &api_base)?;
    let connection = Connection::new(api_base, credentials).with_limits(limits);
    Ok(Api::Remote(Box::new(connection)))
}

/// `--retries`, `--retry-max-time` and `--max-requests-per-second`, checked; those not given
/// are `None`.
pub(crate) fn limits(args: &ConnectionArgs) -> Result<Limits> {
    let usage = |flag: &str, message: String| Error::Usage(format!("{flag} {message}"));
    Ok(Limits {
        retries: args
            .retries
            .map(|n| Limits::check_retries(n).map_err(|m| usage("--retries", m)))
            .transpose()?,
        retry_max_time: args
            .retry_max_time
            .map(|secs| Limits::check_retry_time(secs).map_err(|m| usage("--retry-max-time", m)))
            .transpose()?,
        max_requests_per_second: args
            .max_requests_per_second
            .map(|rate| Limits::check_rate(rate).map_err(|m| usage("--max-requests-per-second", m)))
            .transpose()?,
    })
}

fn credentials(args: &ConnectionArgs, api_base: &Url) -> Result<Credentials> {
    if let Some(path) = &args.token_file {
        let token =
            Secret::from_file(path).map_err(|e| Error::Usage(format!("--token-file: {e}")))?;
        return Ok(Credentials::Token(token));
    }
    if let Some(token) = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(Credentials::Token(Secret::new(token.trim())));
    }
    let Some(username) = args.username.clone().filter(|u| !u.is_empty()) else {
        return Err(Error::Usage(
            "no credentials: set KARGO_TOKEN or --token-file, or KARGO_USERNAME with \
             KARGO_PASSWORD or --password-file (or try --sandbox)"
                .into(),
        ));
    };
    let password = match &args.password_file {
        Some(path) => {
            Secret::from_file(path).map_err(|e| Error::Usage(format!("--password-file: {e}")))?
        }
        None => std::env::var(PASSWORD_ENV)
            .ok()
            .filter(|p| !p.is_empty())
            .map(Secret::new)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "no password for user {username:?}: set {PASSWORD_ENV} or --password-file"
                ))
            })?,
    };
    let auth_url = match &args.auth_url {
        Some(url) => http_url("--auth-url", url)?,
        None => default_auth_url(api_base),
    };
    Ok(Credentials::Login {
        auth_url,
        username,
        password,
    })
}

/// `{api_base}/v1/auth/token`, the login endpoint when none is given.
pub(crate) fn default_auth_url(api_base: &Url) -> Url {
    let mut url = api_base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(["v1", "auth", "token"]);
    }
    url
}

pub(crate) fn http_url(flag: &str, text: &str) -> Result<Url> {
    let url = Url::parse(text.trim())
        .map_err(|e| Error::Usage(format!("{flag} {text:?} is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::Usage(format!(
            "{flag} {text:?} must be an http(s) URL with a host"
        )));
    }
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Usage(format!(
            "{flag} must not carry a query string or credentials"
        )));
    }
    Ok(url)
}

/// How to read report requests: the flags, else the jobs file's `file` keys, else the defaults.
pub(crate) fn report_fields(
    args: &ReportFieldArgs,
    file: Option<&ReportFields>,
) -> Result<ReportFields> {
    let key = |flag: &str, value: &Option<String>| -> Result<Option<String>> {
        value
            .as_deref()
            .map(|key| match key.trim() {
                "" => Err(Error::Usage(format!("{flag} is empty"))),
                key => Ok(key.to_string()),
            })
            .transpose()
    };
    let statuses: Vec<String> = args
        .completed_status
        .iter()
        .map(|s| s.trim().to_string())
        .collect();
    if statuses.iter().any(String::is_empty) {
        return Err(Error::Usage(
            "--completed-status has an empty status".into(),
        ));
    }
    let file = file.cloned().unwrap_or_default();
    Ok(ReportFields {
        id_field: key("--id-field", &args.id_field)?.or(file.id_field),
        status_field: key("--status-field", &args.status_field)?.or(file.status_field),
        completed_statuses: if statuses.is_empty() {
            file.completed_statuses
        } else {
            statuses
        },
    })
}

fn report_id(id: &str) -> Result<String> {
    let id = id.trim();
    if id.is_empty() || id.chars().any(char::is_control) {
        return Err(Error::Usage(format!("invalid report id {id:?}")));
    }
    Ok(id.to_string())
}

fn dedup(ids: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

pub(crate) fn partition_columns(columns: &[String]) -> Result<Vec<String>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for column in columns {
        let column = column.trim();
        if column.is_empty() {
            return Err(Error::Usage(
                "--partition-by has an empty column name".into(),
            ));
        }
        if !seen.insert(column.to_string()) {
            return Err(Error::Usage(format!(
                "--partition-by names {column:?} twice"
            )));
        }
        out.push(column.to_string());
    }
    Ok(out)
}

fn sandbox_settings(args: SandboxArgs) -> Result<Settings> {
    let mut data = match &args.data {
        Some(dir) => SandboxData::load(dir)?,
        None => SandboxData::embedded(),
    };
    if args.page_size == 0 {
        return Err(Error::Usage("--page-size must be at least 1".into()));
    }
    let specs = args
        .synthetic
        .iter()
        .map(|spec| crate::sandbox::synthetic::parse_spec(spec))
        .collect::<Result<Vec<_>>>()?;
    // Checked before rendering anything, since rendering a large report takes a while.
    let mut seen = HashSet::new();
    if let Some((id, _)) = specs.iter().find(|(id, _)| !seen.insert(id)) {
        return Err(Error::Usage(format!(
            "--synthetic names report {id:?} twice"
        )));
    }
    let prerender = crate::sandbox::Prerender {
        page_size: args.page_size,
        gzip: args.gzip,
    };
    for (id, rows) in specs {
        let report = crate::sandbox::synthetic::SyntheticReport::new(rows, args.seed)
            .with_order(args.synthetic_order);
        data.add_synthetic(&id, report, Some(prerender))?;
    }
    let link_style = match args.link_style {
        LinkStyleArg::Absolute => LinkStyle::Absolute,
        LinkStyleArg::RootRelative => LinkStyle::RootRelative,
        LinkStyleArg::QueryRelative => LinkStyle::QueryRelative,
    };
    let fail_status = hyper::StatusCode::from_u16(args.fail_status)
        .ok()
        .filter(|status| status.is_client_error() || status.is_server_error())
        .ok_or_else(|| {
            Error::Usage(format!(
                "--fail-status must be an error status (400-599), found {}",
                args.fail_status
            ))
        })?;
    let faults = Faults {
        fail_first: args.fail_first,
        fail_page: args.fail_page,
        fail_status,
        fail_requests: args.fail_request.clone(),
        retry_after: sandbox_retry_after(&args.retry_after)?,
        truncate_every: args.truncate_every,
        malformed_every: args.malformed_every,
        stall_first: args.stall_first,
        loop_at: args.loop_at,
    };
    let next_origin = args
        .next_origin
        .as_deref()
        .map(|raw| {
            Url::parse(raw)
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
                .map(|url| url.origin().ascii_serialization())
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "--next-origin must be an http(s) URL such as http://127.0.0.1:9000, found {raw:?}"
                    ))
                })
        })
        .transpose()?;
    Ok(Settings::Sandbox {
        addr: args.addr,
        options: SandboxOptions {
            data: Arc::new(data),
            page_size: args.page_size,
            link_style,
            last_link: match args.last_link {
                LastLinkArg::Absent => LastLink::Absent,
                LastLinkArg::Null => LastLink::Null,
                LastLinkArg::Empty => LastLink::Empty,
            },
            token_ttl_secs: args.token_ttl,
            faults,
            next_origin,
            request_log: match &args.request_log {
                Some(path) => Some(Arc::new(RequestLog::create(path)?)),
                None => None,
            },
            submit: crate::sandbox::submit::SubmitOptions {
                complete_after: std::time::Duration::from_millis(args.complete_after_ms),
                fail: args.fail_submissions,
                id_key: args.submit_id_key,
                numeric_ids: args.submit_numeric_ids,
                ..Default::default()
            },
            gzip: args.gzip,
            ..SandboxOptions::default()
        },
    })
}

/// `--retry-after`: delay-seconds or an HTTP date as the header, or `none` for no header.
fn sandbox_retry_after(value: &str) -> Result<Option<hyper::header::HeaderValue>> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let valid = value.parse::<u64>().is_ok() || chrono::DateTime::parse_from_rfc2822(value).is_ok();
    valid
        .then(|| hyper::header::HeaderValue::from_str(value).ok())
        .flatten()
        .map(Some)
        .ok_or_else(|| {
            Error::Usage(format!(
                "--retry-after must be seconds, an HTTP date or none, found {value:?}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_must_be_plain_http() {
        assert!(http_url("--api-base", "https://h.example").is_ok());
        for bad in ["ftp://h", "not a url", "https://h?token=x", "https://u:p@h"] {
            let err = http_url("--api-base", bad).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{bad}");
        }
    }

    #[test]
    fn partition_columns_are_checked() {
        let cols =
            |v: &[&str]| partition_columns(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(cols(&["date", " country"]).unwrap(), ["date", "country"]);
        assert!(cols(&["date", "date"]).is_err());
        assert!(cols(&[""]).is_err());
    }

    #[test]
    fn report_field_flags_override_the_jobs_file_key_by_key() {
        let file = ReportFields {
            id_field: Some("uuid".into()),
            status_field: Some("state".into()),
            completed_statuses: vec!["done".into()],
        };
        let flags = |id: Option<&str>, statuses: &[&str]| ReportFieldArgs {
            id_field: id.map(str::to_string),
            status_field: None,
            completed_status: statuses.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(report_fields(&flags(None, &[]), Some(&file)).unwrap(), file);
        assert_eq!(
            report_fields(&flags(Some(" key "), &["ok", "fine"]), Some(&file)).unwrap(),
            ReportFields {
                id_field: Some("key".into()),
                status_field: Some("state".into()),
                completed_statuses: vec!["ok".into(), "fine".into()],
            }
        );
        assert_eq!(
            report_fields(&flags(None, &[]), None).unwrap(),
            ReportFields::default()
        );
        for bad in [flags(Some(""), &[]), flags(None, &["ok", " "])] {
            assert!(matches!(report_fields(&bad, None), Err(Error::Usage(_))));
        }
    }

    #[test]
    fn password_file_loses_only_its_line_break() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, " s3cret \n").unwrap();
        assert_eq!(Secret::from_file(&path).unwrap().expose(), " s3cret ");
        std::fs::write(&path, "\n").unwrap();
        assert!(
            Secret::from_file(&path)
                .unwrap_err()
                .ends_with("pw is empty")
        );
    }
}
