//! `check`: the "Test" button of a connector. It proves that a configuration works, end to
//! end, while exporting nothing: it logs in (and tells when the token expires, when the login
//! answer says), fetches the first page only, reads its rows through the export's own decoder
//! ([`endpoint::decode_page`]) and infers the columns that page alone implies
//! ([`SchemaInference`], then the endpoint's transforms), and, given a destination, proves it
//! usable by writing one probe object and deleting it ([`Destination::probe`]).
//!
//! The steps run in that order (login, page, data path, columns, destination) and each is
//! reported as it passes; the first that fails ends the check as an [`Error::Check`] that
//! names it, and the steps after it do not run. `run JOBS.toml --check` ([`jobs`]) checks
//! every job of a jobs file after one login. Nothing is spooled, staged or committed, no state
//! is read or written, and nothing is sent but the login and GETs (or the configured method of
//! an endpoint) of first pages. The findings become text in `text.rs`.

mod jobs;
mod text;

use std::time::Duration;

use arrow::datatypes::{Schema, SchemaRef};

use crate::decode::{RawBatch, RowDecoder};
use crate::error::{Error, PageLocation, Result, redact_url};
use crate::infer::SchemaInference;
use crate::session::ApiSession;
use crate::settings::{Api, ExportSource};
use crate::sink::{Destination, Probed};
use crate::source::auth::Credentials;
use crate::source::client::{ApiClient, Fetched};
use crate::source::endpoint::{self, Endpoint};
use crate::source::formats::ContentFormat;
use crate::source::paginate::{PageEnd, Pagination, Paging};
use crate::transform::Transforms;

pub use jobs::{JobCheck, PageStep, jobs};

/// What a check found, reported as it is found: a step that passed, or a checked job.
pub enum Report<'a> {
    Login(&'a Login),
    Page(&'a Page),
    Rows(&'a Rows),
    Columns(&'a Schema),
    Destination(&'a Probed),
    Job(&'a JobCheck),
}

/// How the session authenticated.
pub enum Login {
    /// A ready bearer token: nothing was sent, and when it expires is not known.
    Token,
    /// A login at `url` (the in-process sandbox's with `--sandbox`).
    LoggedIn {
        url: String,
        /// When the token expires, as the login answer stated it (`expires_in`).
        expires: Option<Expiry>,
    },
}

/// A token's stated lifetime, and the time it ends.
pub struct Expiry {
    pub lifetime: Duration,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// The first page as it arrived.
pub struct Page {
    /// Its URL (without the query string) and number.
    pub at: PageLocation,
    pub method: String,
    /// Body bytes (after any gzip).
    pub bytes: usize,
    pub format: ContentFormat,
}

/// The rows of the first page and what it says about the next.
pub struct Rows {
    /// Where the rows are: the data path of a JSON page; `None` for NDJSON and CSV.
    pub data_path: Option<String>,
    pub paging: Paging,
    /// Rows, next link or cursor, stated total.
    pub end: PageEnd,
    /// Whether an export would fetch another page after this one.
    pub more: bool,
}

/// The first page of a source, read through every step.
pub struct FirstPage {
    pub page: Page,
    pub rows: Rows,
    /// The columns the page alone implies, after the endpoint's transforms.
    pub schema: SchemaRef,
}

/// Checks `source` through `api` (login, then its first page) and then destination `out`
/// when given, which is opened at its step, so that whatever is wrong with it (a file in the
/// way, a scheme that is not supported) fails that step; `report` hears of each step as it
/// passes. Errors: [`Error::Check`] for the first step that failed; a usage error (an endpoint
/// URL that cannot be resolved) before any step.
pub async fn check(
    api: &Api,
    source: &ExportSource,
    transforms: &Transforms,
    out: Option<&str>,
    mut report: impl FnMut(Report<'_>) -> Result<()>,
) -> Result<()> {
    let session = ApiSession::start(api).await?;
    let endpoint = endpoint_of(&session.client, source)?;
    report(Report::Login(&login(api, &session.client).await?))?;
    first_page(&session.client, &endpoint, transforms, &mut report).await?;
    if let Some(out) = out {
        report(Report::Destination(&open_and_probe(out).await?))?;
    }
    Ok(())
}

/// The login step: logs in (a ready token needs none) and reads the token's stated lifetime.
async fn login(api: &Api, client: &ApiClient) -> Result<Login> {
    let url = match api {
        Api::Remote(connection) => match connection.credentials() {
            Credentials::Token(_) => None,
            Credentials::Login { auth_url, .. } => Some(redact_url(auth_url)),
        },
        Api::Sandbox(_) => Some("the in-process sandbox".to_owned()),
    };
    let lifetime = client
        .log_in()
        .await
        .map_err(|e| failed("login", url.as_deref().unwrap_or("bearer token"), e))?;
    let Some(url) = url else {
        return Ok(Login::Token);
    };
    let expires = lifetime.map(|lifetime| Expiry {
        lifetime,
        at: chrono::Utc::now() + lifetime,
    });
    Ok(Login::LoggedIn { url, expires })
}

/// The endpoint whose first page `source` starts with (the first report of several).
fn endpoint_of(client: &ApiClient, source: &ExportSource) -> Result<Endpoint> {
    match source {
        ExportSource::CompletedReports(ids) => {
            let id = ids
                .first()
                .ok_or_else(|| Error::Internal("no report to check".into()))?;
            Ok(Endpoint::preset(client.endpoint(&[
                "v1",
                "completed-reports",
                id,
            ])))
        }
        ExportSource::ReportList => Ok(Endpoint::preset(client.endpoint(&["v1", "reports"]))),
        ExportSource::Endpoint(spec) => spec.endpoint(client.api_base()),
    }
}

/// The page, data path and columns steps over the first page of `endpoint`, each reported as
/// it passes.
async fn first_page(
    client: &ApiClient,
    endpoint: &Endpoint,
    transforms: &Transforms,
    report: &mut impl FnMut(Report<'_>) -> Result<()>,
) -> Result<FirstPage> {
    let mut pages = Pagination::new(endpoint.url.clone(), endpoint.paging.clone());
    let (url, at) = pages
        .next_page()
        .ok_or_else(|| Error::Internal("a listing without a first page".into()))?;
    let fetched = client
        .fetch(&endpoint.request, &url, &at)
        .await
        .map_err(|e| match e {
            // A ready token the API refuses, or a login again after a 401.
            Error::Auth { .. } => failed("login", &at.url, e),
            e => failed("page", &at.url, e),
        })?;
    let page = Page {
        at: at.clone(),
        method: endpoint.request.method.to_string(),
        bytes: fetched.body.len(),
        format: fetched.format,
    };
    report(Report::Page(&page))?;
    let (raw, end) =
        read_rows(endpoint, &fetched, &at).map_err(|e| failed("data path", &at.url, e))?;
    pages
        .advance(&url, &end, &at)
        .map_err(|e| failed("data path", &at.url, e))?;
    let rows = Rows {
        data_path: (fetched.format == ContentFormat::Json).then(|| endpoint.rows.to_string()),
        paging: endpoint.paging.clone(),
        end,
        more: pages.next_page().is_some(),
    };
    report(Report::Rows(&rows))?;
    let schema = columns(&raw, transforms, &at).map_err(|e| failed("columns", &at.url, e))?;
    report(Report::Columns(&schema))?;
    Ok(FirstPage { page, rows, schema })
}

/// The rows of one page, decoded as an export decodes them.
fn read_rows(
    endpoint: &Endpoint,
    page: &Fetched,
    at: &PageLocation,
) -> Result<(RawBatch, PageEnd)> {
    endpoint::decode_page(endpoint, page, at, &mut RowDecoder::new())
}

/// The columns one page implies: its kinds merged as an export merges every page's, its values
/// checked against the casts, then the transforms applied.
fn columns(raw: &RawBatch, transforms: &Transforms, at: &PageLocation) -> Result<SchemaRef> {
    transforms.check(&raw.batch).map_err(|source| Error::Row {
        at: at.clone(),
        source,
    })?;
    let mut inference = SchemaInference::new();
    inference.observe(raw, at.page);
    transforms.schema(&inference.schema())
}

/// The destination step over `out` as given: opened, then probed.
async fn open_and_probe(out: &str) -> Result<Probed> {
    match Destination::open(out) {
        Ok(dest) => probe(&dest).await,
        Err(e) => Err(failed("destination", out, e)),
    }
}

/// The destination step over an opened destination.
async fn probe(dest: &Destination) -> Result<Probed> {
    dest.probe()
        .await
        .map_err(|e| failed("destination", dest.display(), e))
}

/// `e` as the failure of `step`: where it happened (the error's own place, else `at`) and why.
fn failed(step: &'static str, at: &str, e: Error) -> Error {
    let (at, reason) = match e {
        Error::Check { .. } => return e,
        Error::Auth { url, reason } => (url, reason),
        Error::Http { at, reason, .. } | Error::Page { at, reason } => (at.to_string(), reason),
        Error::Row { at, source } => (at.to_string(), format!("cannot decode {source}")),
        Error::Destination { dest, reason } => (dest, reason),
        Error::Storage { path, source } => (path, source.to_string()),
        Error::Io { path, source } => (path, source.to_string()),
        other => (at.to_owned(), other.to_string()),
    };
    Error::Check { step, at, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_the_place_its_error_names() {
        let at = PageLocation {
            url: "http://h/v1/x".into(),
            page: 1,
        };
        let page = failed(
            "data path",
            "http://h/v1/x",
            Error::Page {
                at,
                reason: "$.a[*] matched nothing".into(),
            },
        );
        assert_eq!(
            page.to_string(),
            "check failed at the data path step (http://h/v1/x, page 1): $.a[*] matched nothing"
        );
        let other = failed("destination", "./out", Error::Usage("cannot write".into()));
        assert_eq!(
            other.to_string(),
            "check failed at the destination step (./out): cannot write"
        );
        assert_eq!(other.exit_code(), 1);
        assert!(matches!(
            failed("page", "x", other),
            Error::Check {
                step: "destination",
                ..
            }
        ));
    }
}
