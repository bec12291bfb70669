//! A Kargo-compatible Data Sharing API over bundled sample data, to try the tool without
//! credentials and to give the integration tests a real HTTP partner.
//!
//! It owns the HTTP server (hyper 1, HTTP/1.1 with keep-alive, one task per connection, graceful
//! shutdown), the token store, the routes, pagination and page rendering. It does not share code
//! with [`crate::source`]: the sandbox plays the remote side, so a bug in the client cannot hide
//! behind the same bug in the server.
//!
//! The API:
//! - `POST /v1/auth/token` with `{"username": .., "password": ..}` answers
//!   `{"access_token", "token_type": "Bearer", "expires_in"}`; wrong credentials 401
//!   `{"error": "invalid_credentials"}`; a body that is not that JSON (or over 64 KiB) 400.
//! - Every other route needs `Authorization: Bearer <token>` of an issued, unexpired token, else
//!   401 `{"error": "invalid_token"}`. Routes are matched before the token is checked, so an
//!   unknown path is 404 and a wrong method 405 even without a token.
//! - `GET /v1/reports` lists the report requests; `POST /v1/reports` submits a new one, which
//!   completes after a delay ([`submit`]); `GET /v1/completed-reports/{id}` serves a
//!   completed report's rows: 404 `{"error": "report not found"}` for an id that is neither in
//!   `reports.json` nor has a data file, 409 `{"error": "report not completed", "status": ..}` for
//!   a listed report without a data file (pending or failed).
//! - Both answer `{"data": {"rows": [..]}, "links": {"next": URL}}`, paginated by the query
//!   parameters `page` (1-based) and `page_size` (default [`SandboxOptions::page_size`], above
//!   [`MAX_PAGE_SIZE`], or above the default when that is larger, clamped to it: a large default
//!   serves huge pages for benchmarks). A page past the end has no rows and no next link; `page` or
//!   `page_size` that is not a positive integer is 400. How the next link is written and how the
//!   last page says "no more" are options ([`LinkStyle`], [`LastLink`]), because real servers
//!   differ and the client must handle each way.
//!
//! `GET|POST /v1/test/rows` ([`manual`]) serves a completed report's rows in every pagination
//! kind and content format, in a page shape of its own, for manually configured endpoints.
//!
//! Rows are kept as raw JSON and written back byte for byte, so tests can compare exported values
//! with the exact source text (`1.50` stays `1.50`) and can serve odd rows on purpose.
//!
//! Synthetic reports ([`synthetic`], `--synthetic ID=ROWS`) are served the same way: rows
//! generated from a seed instead of read from a file, listed in `GET /v1/reports` as completed.
//! They exist for benchmarks, so serving them must cost the sandbox next to no CPU:
//! [`SandboxData::add_synthetic`] renders every page for one page size up front (the default
//! `--page-size`, which the sandbox's own next links repeat), and a request for it is answered
//! with that page's shared [`Bytes`] plus a small links tail, written without copying. Other page
//! sizes are rendered on demand. The rows' order ([`synthetic::Order`]) is part of the report.
//!
//! Gzip ([`SandboxOptions::gzip`], `--gzip`, off by default): synthetic report pages (and
//! submitted reports' pages) are answered `Content-Encoding: gzip` to requests whose
//! `Accept-Encoding` accepts gzip, and identity bytes to the others (with `Vary:
//! Accept-Encoding` on both). [`Prerender::gzip`] compresses the pre-rendered pages up front
//! too, on all cores, as the start of a gzip member flushed to a byte boundary; a request only
//! appends its links tail as a stored deflate block and the trailer (CRC-32 continued over the
//! tail, length), so serving them costs no compression. Pages rendered on demand are compressed
//! on demand. Other answers are never compressed. An injected cut-off or broken page cuts the
//! compressed bytes.
//!
//! Requests are logged with `tracing::debug` (method, path and query, status, time); headers and
//! bodies never are, so neither the password nor a token reaches a log.
//!
//! Fault injection, for testing the client's retries (all off by default, [`Faults`]): the first
//! N authorized requests to completed-report pages answer an error status (503 unless told
//! otherwise) with `Retry-After: 0` (unless told otherwise), and every Nth page answer (report
//! list or completed report) is cut off mid-body: its `Content-Length` promises the whole page,
//! half of it is sent, then the connection is closed. Every Nth page answer may instead be a
//! complete 200 whose JSON is broken (only the first half of the page, with a `Content-Length`
//! that matches), and the first N completed-report requests may get no answer at all for
//! [`STALL`]. Two link faults play a hostile or buggy server: next links on another origin
//! (`--next-origin`), and page N linking back to page 1 (`--loop-at`). Chosen requests of any
//! route (`--fail-request [PATH:]N`: the Nth authorized request, or the Nth to PATH) answer the
//! error status too, e.g. `429` with `Retry-After: 1` (`--retry-after`), and a request log
//! ([`request_log`]) shows when each request arrived.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::request::Parts;
use hyper::http::uri::Authority;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::{Error, Result};

pub mod manual;
pub mod request_log;
pub mod submit;
pub mod synthetic;

use synthetic::SyntheticReport;

/// User name the sandbox accepts by default.
pub const SANDBOX_USERNAME: &str = "sandbox";
/// Password the sandbox accepts by default.
pub const SANDBOX_PASSWORD: &str = "sandbox-password";
/// Largest `page_size` served (unless [`SandboxOptions::page_size`] is larger); larger requests
/// are clamped to it.
pub const MAX_PAGE_SIZE: usize = 10_000;
/// The deflate level of gzip answers: the fastest, since compressing 1 GB of pages at start-up
/// must stay quick (synthetic pages get ~3.9x smaller; ~2 s on two cores for 2,000,000 rows,
/// rendering included).
const GZIP_LEVEL: u32 = 1;

/// Largest login body read; a bigger one is a 400.
const MAX_LOGIN_BODY: usize = 64 * 1024;
/// How long shutdown waits for requests in flight before dropping their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (e.g. out of file descriptors) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

const EMBEDDED_REPORTS: &str = include_str!("../../sample_data/reports.json");
/// Every completed report of `sample_data/completed-reports/`, one file each.
const EMBEDDED_COMPLETED: &[(&str, &str)] = &[
    (
        "rpt_7f3a9c21",
        include_str!("../../sample_data/completed-reports/rpt_7f3a9c21.json"),
    ),
    (
        "rpt_2b8e4d10",
        include_str!("../../sample_data/completed-reports/rpt_2b8e4d10.json"),
    ),
    (
        "rpt_e5d90a47",
        include_str!("../../sample_data/completed-reports/rpt_e5d90a47.json"),
    ),
];

/// Rows as their JSON text, in the order of the source file.
type Rows = Vec<Box<RawValue>>;

/// The data a sandbox serves: the report list and the rows of each completed report.
///
/// Layout (embedded and on disk): `reports.json` is a JSON array of report-request objects;
/// `completed-reports/<report_id>.json` is a JSON array of rows (any JSON values). A report is
/// served as completed exactly when its data file exists; `reports.json` only decides whether a
/// report without a data file is unknown (404) or not completed yet (409), through its `id` and
/// `status` fields. Entries without a string `id` are still listed, verbatim.
pub struct SandboxData {
    reports: Rows,
    /// Report id -> `status` from `reports.json` ("" when absent).
    statuses: HashMap<String, String>,
    completed: BTreeMap<String, Rows>,
    synthetic: BTreeMap<String, Synthetic>,
}

/// A synthetic report and its pre-rendered pages.
struct Synthetic {
    report: SyntheticReport,
    rendered: Option<Rendered>,
}

/// The pages of a synthetic report for one page size, rendered up front.
struct Rendered {
    page_size: usize,
    /// Each page up to its links: `{"data":{"rows":[..]},"links":`.
    pages: Vec<Bytes>,
    /// The same pages as the start of a gzip member, when [`Prerender::gzip`] asked for them
    /// (else empty).
    gzipped: Vec<GzipStart>,
}

/// What [`SandboxData::add_synthetic`] renders up front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prerender {
    /// Rows per page (at least 1); requests for another page size are rendered on demand.
    pub page_size: usize,
    /// Also gzip every page (for [`SandboxOptions::gzip`]).
    pub gzip: bool,
}

impl SandboxData {
    /// The bundled `sample_data/`, compiled into the binary.
    pub fn embedded() -> Self {
        let parse = |name: &str, text: &str| {
            // Checked by the tests; a failure here is a broken build, not bad input.
            parse_rows(name, text).unwrap_or_else(|e| panic!("embedded sample data: {e}"))
        };
        let reports = parse("reports.json", EMBEDDED_REPORTS);
        let completed = EMBEDDED_COMPLETED
            .iter()
            .map(|(id, text)| (id.to_string(), parse(&format!("{id}.json"), text)))
            .collect();
        Self::new(reports, completed)
    }

    /// Reads the same layout from `dir`. `completed-reports/` may be missing (no completed
    /// reports); files in it that do not end in `.json` are ignored.
    pub fn load(dir: &Path) -> Result<Self> {
        let reports_path = dir.join("reports.json");
        let reports = parse_rows(&reports_path.display().to_string(), &read(&reports_path)?)?;
        let folder = dir.join("completed-reports");
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::new(reports, BTreeMap::new()));
            }
            Err(e) => return Err(Error::io(folder.display(), e)),
        };
        let mut completed = BTreeMap::new();
        for entry in entries {
            let path = entry.map_err(|e| Error::io(folder.display(), e))?.path();
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            let name = path.display().to_string();
            let id = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .ok_or_else(|| Error::Sandbox(format!("{name}: file name is not valid UTF-8")))?;
            completed.insert(id.to_owned(), parse_rows(&name, &read(&path)?)?);
        }
        Ok(Self::new(reports, completed))
    }

    fn new(reports: Rows, completed: BTreeMap<String, Rows>) -> Self {
        #[derive(Deserialize)]
        struct Head {
            id: String,
            #[serde(default)]
            status: Option<String>,
        }
        let statuses = reports
            .iter()
            .filter_map(|raw| serde_json::from_str::<Head>(raw.get()).ok())
            .map(|head| (head.id, head.status.unwrap_or_default()))
            .collect();
        Self {
            reports,
            statuses,
            completed,
            synthetic: BTreeMap::new(),
        }
    }

    /// Adds synthetic report `id` (served as completed and listed in the report list). With
    /// `prerender`, every page for its page size is rendered now (and gzipped, if asked), on all
    /// cores, and kept in memory (~490 bytes a row, and ~1/4 of that gzipped); other page sizes
    /// are rendered per request. An id that is already served or listed is an [`Error::Usage`].
    pub fn add_synthetic(
        &mut self,
        id: &str,
        report: SyntheticReport,
        prerender: Option<Prerender>,
    ) -> Result<()> {
        if self.completed.contains_key(id)
            || self.synthetic.contains_key(id)
            || self.statuses.contains_key(id)
        {
            return Err(Error::Usage(format!(
                "synthetic report {id:?}: a report with that id already exists"
            )));
        }
        let (start, end) = report.date_range();
        let listed = json!({
            "id": id,
            "report_type": "delivery_by_day",
            "status": "completed",
            "created_at": "2025-04-01T00:00:00Z",
            "completed_at": "2025-04-01T00:05:00Z",
            "date_range": {"start": start, "end": end},
            "requested_by": "synthetic@example.com",
            "synthetic": {"seed": report.seed(), "order": report.order().name()},
            "row_count": report.rows(),
        });
        let listed = RawValue::from_string(listed.to_string())
            .map_err(|e| Error::Internal(format!("synthetic report entry: {e}")))?;
        let rendered = prerender.map(|Prerender { page_size, gzip }| {
            let page_size = page_size.max(1);
            let (pages, gzipped) = prerender_pages(&report, page_size, gzip);
            Rendered {
                page_size,
                pages,
                gzipped,
            }
        });
        self.reports.push(listed);
        self.statuses.insert(id.to_owned(), "completed".to_owned());
        self.synthetic
            .insert(id.to_owned(), Synthetic { report, rendered });
        Ok(())
    }

    /// The synthetic report `id`, if there is one.
    pub fn synthetic(&self, id: &str) -> Option<&SyntheticReport> {
        self.synthetic.get(id).map(|s| &s.report)
    }

    /// The report list, as served by `GET /v1/reports`.
    pub fn reports(&self) -> &[Box<RawValue>] {
        &self.reports
    }

    /// Ids of the reports served from data files (not the synthetic ones), in sorted order.
    pub fn completed_ids(&self) -> impl Iterator<Item = &str> {
        self.completed.keys().map(String::as_str)
    }

    /// The rows of a completed report, as served by `GET /v1/completed-reports/{id}`.
    pub fn completed_rows(&self, report_id: &str) -> Option<&[Box<RawValue>]> {
        self.completed.get(report_id).map(Vec::as_slice)
    }
}

impl fmt::Debug for SandboxData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let completed: BTreeMap<_, _> = self
            .completed
            .iter()
            .map(|(id, rows)| (id, rows.len()))
            .collect();
        let synthetic: BTreeMap<_, _> = self
            .synthetic
            .iter()
            .map(|(id, s)| (id, s.report.rows()))
            .collect();
        f.debug_struct("SandboxData")
            .field("reports", &self.reports.len())
            .field("completed_rows", &completed)
            .field("synthetic_rows", &synthetic)
            .finish()
    }
}

/// Every page of `report` for `page_size`, rendered up to its links, and with `gzip` each one
/// also as the start of a gzip member (else none), on all cores: each core renders and
/// compresses a run of pages.
fn prerender_pages(
    report: &SyntheticReport,
    page_size: usize,
    gzip: bool,
) -> (Vec<Bytes>, Vec<GzipStart>) {
    let rows = report.rows();
    let page_rows = page_size as u64;
    let pages = rows.div_ceil(page_rows) as usize;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, pages.max(1));
    let render = |page: usize| {
        let start = page as u64 * page_rows;
        let head = Bytes::from(synthetic_head(report, start..(start + page_rows).min(rows)));
        let gzipped = gzip.then(|| GzipStart::new(&head));
        (head, gzipped)
    };
    let (heads, gzipped): (Vec<Bytes>, Vec<Option<GzipStart>>) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let pages = pages * t / threads..pages * (t + 1) / threads;
                scope.spawn(move || pages.map(render).collect::<Vec<_>>())
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .unzip()
    });
    (heads, gzipped.into_iter().flatten().collect())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))
}

fn parse_rows(name: &str, text: &str) -> Result<Rows> {
    serde_json::from_str(text)
        .map_err(|e| Error::Sandbox(format!("{name}: expected a JSON array: {e}")))
}

/// How a page's next link is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkStyle {
    /// `http://127.0.0.1:P/v1/reports?page=2&page_size=N`, with the request's `Host`.
    #[default]
    Absolute,
    /// `/v1/reports?page=2&page_size=N`.
    RootRelative,
    /// `?page=2&page_size=N`.
    QueryRelative,
}

/// How the last page says there is no next page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LastLink {
    /// `"links": {}`.
    Absent,
    /// `"links": {"next": null}`.
    #[default]
    Null,
    /// `"links": {"next": ""}`.
    Empty,
}

/// How long a stalled request (`Faults::stall_first`) waits before it is answered: longer than
/// any client should wait.
pub const STALL: Duration = Duration::from_secs(600);

/// What a sandbox serves and how. No `Debug`: it holds the password.
#[derive(Clone)]
pub struct SandboxOptions {
    pub data: Arc<SandboxData>,
    pub username: String,
    pub password: String,
    /// Rows per page when the request has no `page_size` (at least 1; above [`MAX_PAGE_SIZE`] it
    /// is also the largest page size served).
    pub page_size: usize,
    pub link_style: LinkStyle,
    pub last_link: LastLink,
    /// Lifetime of issued tokens; 0 issues tokens that are already expired.
    pub token_ttl_secs: u64,
    /// Errors and cut-off bodies served on purpose.
    pub faults: Faults,
    /// `scheme://host[:port]` every next link is written with (always absolute) instead of the
    /// sandbox's own origin; `None` writes links as `link_style` says.
    pub next_origin: Option<String>,
    /// How reports submitted with `POST /v1/reports` behave.
    pub submit: submit::SubmitOptions,
    /// Where to log every request with its arrival time (`--request-log`).
    pub request_log: Option<Arc<request_log::RequestLog>>,
    /// Answer synthetic report pages gzip-compressed to requests that accept gzip (pre-rendered
    /// pages should be added with [`Prerender::gzip`], else they are compressed per request).
    pub gzip: bool,
}

/// Faults the sandbox injects on purpose; the default injects none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Faults {
    /// The first this many authorized requests to completed-report pages answer `fail_status`
    /// with `Retry-After: 0`.
    pub fail_first: u64,
    /// Every request for this page of a completed report answers `fail_status` (0: never): a
    /// permanent failure in the middle of an export.
    pub fail_page: usize,
    /// The status of those answers (503 by default).
    pub fail_status: StatusCode,
    /// These authorized requests answer `fail_status`.
    pub fail_requests: Vec<FailRequest>,
    /// The `Retry-After` header of every injected failure (`None`: no header).
    pub retry_after: Option<HeaderValue>,
    /// Every this many-th page answer is cut off mid-body and its connection closed (0: never).
    pub truncate_every: u64,
    /// Every this many-th page answer is a complete 200 whose body is only the first half of the
    /// page, so its JSON does not parse (0: never; a cut-off answer takes precedence).
    pub malformed_every: u64,
    /// The first this many authorized requests to completed-report pages get no answer for
    /// [`STALL`].
    pub stall_first: u64,
    /// Page this many's next link points back to page 1 (the path without a query), a pagination
    /// loop (0: never; nothing happens when that page is the last one).
    pub loop_at: usize,
}

/// One authorized request chosen to fail: the `nth` (1-based, in the order they arrive) of all
/// (every route but the login), or of those to `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailRequest {
    pub path: Option<String>,
    pub nth: u64,
}

impl std::str::FromStr for FailRequest {
    type Err = String;

    /// `N` or `PATH:N`, e.g. `/v1/reports:2`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (path, nth) = match text.rsplit_once(':') {
            Some((path, nth)) if path.starts_with('/') => (Some(path.to_owned()), nth),
            Some(_) => return Err(format!("expected N or /PATH:N, found {text:?}")),
            None => (None, text),
        };
        match nth.trim().parse::<u64>() {
            Ok(nth) if nth > 0 => Ok(FailRequest { path, nth }),
            _ => Err(format!("expected a request number from 1, found {text:?}")),
        }
    }
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            fail_first: 0,
            fail_page: 0,
            fail_status: StatusCode::SERVICE_UNAVAILABLE,
            fail_requests: Vec::new(),
            retry_after: Some(HeaderValue::from_static("0")),
            truncate_every: 0,
            malformed_every: 0,
            stall_first: 0,
            loop_at: 0,
        }
    }
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            data: Arc::new(SandboxData::embedded()),
            username: SANDBOX_USERNAME.to_owned(),
            password: SANDBOX_PASSWORD.to_owned(),
            page_size: 100,
            link_style: LinkStyle::default(),
            last_link: LastLink::default(),
            token_ttl_secs: 3600,
            faults: Faults::default(),
            next_origin: None,
            submit: submit::SubmitOptions::default(),
            request_log: None,
            gzip: false,
        }
    }
}

/// Serves the API on `listener` until `shutdown` resolves, then stops accepting, lets requests in
/// flight finish (up to 5 s) and returns. Failed `accept`s are logged and retried.
pub async fn run(
    listener: TcpListener,
    options: SandboxOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let local = listener
        .local_addr()
        .map_err(|e| Error::Sandbox(format!("cannot read the listener's address: {e}")))?;
    let server = Arc::new(Server {
        fallback_origin: format!("http://{local}"),
        submissions: submit::Submissions::new(options.submit.clone()),
        options,
        tokens: Mutex::new(HashMap::new()),
        completed_requests: AtomicU64::new(0),
        authorized_requests: Mutex::new(HashMap::new()),
        pages_served: AtomicU64::new(0),
        stalled_requests: AtomicU64::new(0),
    });
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    tracing::debug!(%local, "sandbox listening");
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let server = Arc::clone(&server);
                    connections.spawn(serve_connection(stream, server, stopped.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sandbox: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => log_join(joined),
        }
    }
    drop(listener);
    stop.send_replace(true);
    let drain = async {
        while let Some(joined) = connections.join_next().await {
            log_join(joined);
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!("sandbox: connections still open after the grace period, dropping them");
        connections.shutdown().await;
    }
    tracing::debug!(%local, "sandbox stopped");
    Ok(())
}

fn log_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined {
        tracing::warn!(error = %e, "sandbox: connection task failed");
    }
}

/// Serves one connection until the client closes it or shutdown is signalled; on shutdown the
/// request in flight is answered, then the connection closes.
async fn serve_connection(stream: TcpStream, server: Arc<Server>, mut stop: watch::Receiver<bool>) {
    let service = service_fn(move |request| {
        let server = Arc::clone(&server);
        async move { Ok::<_, Infallible>(server.handle(request).await) }
    });
    let connection = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    // Dropped sender or `true`: either way, time to stop (the watch guard must not be held).
    let stopping = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopping => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "sandbox: connection ended with an error");
    }
}

type Reply = Response<Chunks>;

/// A response body of ready chunks (a pre-rendered page and its links tail), handed to hyper
/// as they are: no copy, and an exact length for `Content-Length`.
struct Chunks {
    chunks: std::collections::VecDeque<Bytes>,
    remaining: u64,
}

impl Chunks {
    fn new(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        let chunks: std::collections::VecDeque<Bytes> =
            chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        Self { chunks, remaining }
    }

    /// Keeps the first half of the bytes but still announces the whole length, so hyper sends
    /// a `Content-Length` for all of it, runs out of body and closes the connection.
    fn truncate_half(&mut self) {
        let mut keep = self.remaining / 2;
        let mut kept = std::collections::VecDeque::new();
        while keep > 0
            && let Some(mut chunk) = self.chunks.pop_front()
        {
            let take = (chunk.len() as u64).min(keep);
            kept.push_back(chunk.split_to(take as usize));
            keep -= take;
        }
        self.chunks = kept;
    }

    /// Keeps the first half of the bytes and announces only those: a complete answer whose
    /// content is cut short.
    fn cut_half(&mut self) {
        self.truncate_half();
        self.remaining = self.chunks.iter().map(|c| c.len() as u64).sum();
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.chunks.pop_front().map(|chunk| {
            this.remaining -= chunk.len() as u64;
            Ok(Frame::data(chunk))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// The routes of the API.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Login,
    Reports,
    SubmitReport,
    CompletedReport(&'a str),
    /// [`manual::ROWS_PATH`].
    TestRows,
    WrongMethod {
        allow: &'static str,
    },
    NotFound,
}

fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    if path == manual::ROWS_PATH {
        return match *method {
            Method::GET | Method::POST => Route::TestRows,
            _ => Route::WrongMethod { allow: "GET, POST" },
        };
    }
    let (route, allow) = match path {
        "/v1/auth/token" => (Route::Login, "POST"),
        "/v1/reports" if method == Method::POST => return Route::SubmitReport,
        "/v1/reports" => (Route::Reports, "GET, POST"),
        _ => match path.strip_prefix("/v1/completed-reports/") {
            Some(id) if !id.is_empty() && !id.contains('/') => (Route::CompletedReport(id), "GET"),
            _ => return Route::NotFound,
        },
    };
    if allow.split(", ").any(|allowed| allowed == method.as_str()) {
        route
    } else {
        Route::WrongMethod { allow }
    }
}

/// State shared by all connections of one sandbox.
struct Server {
    options: SandboxOptions,
    /// `http://<listener address>`, for absolute links when a request has no usable `Host`.
    fallback_origin: String,
    /// Issued tokens and when they expire. Expired ones are dropped at each login.
    tokens: Mutex<HashMap<String, Instant>>,
    /// Authorized requests to completed-report pages so far (for `Faults::fail_first`).
    completed_requests: AtomicU64,
    /// Authorized requests so far, in all (under "") and per path (for `Faults::fail_requests`).
    authorized_requests: Mutex<HashMap<String, u64>>,
    /// Page answers so far (for `Faults::truncate_every`).
    pages_served: AtomicU64,
    /// Completed-report requests seen so far (for `Faults::stall_first`).
    stalled_requests: AtomicU64,
    /// Report requests submitted with `POST /v1/reports`.
    submissions: submit::Submissions,
}

impl Server {
    async fn handle(&self, request: Request<Incoming>) -> Reply {
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        let reply = self.respond(&parts, body).await;
        if let Some(log) = &self.options.request_log {
            log.record(started, &parts.method, &parts.uri, reply.status().as_u16());
        }
        tracing::debug!(
            method = %parts.method,
            uri = %parts.uri,
            status = reply.status().as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "sandbox request"
        );
        reply
    }

    async fn respond(&self, parts: &Parts, body: Incoming) -> Reply {
        let data = &self.options.data;
        match route(&parts.method, parts.uri.path()) {
            Route::NotFound => json_reply(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
            Route::WrongMethod { allow } => {
                let mut reply = json_reply(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &json!({"error": "method not allowed"}),
                );
                reply
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
                reply
            }
            Route::Login => self.login(body).await,
            _ if !self.authorized(&parts.headers) => {
                let mut reply =
                    json_reply(StatusCode::UNAUTHORIZED, &json!({"error": "invalid_token"}));
                let challenge = HeaderValue::from_static(r#"Bearer error="invalid_token""#);
                reply
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge);
                reply
            }
            _ if self.fail_this_request(parts.uri.path()) => self.injected_failure(),
            Route::TestRows => manual::respond(self, parts, body).await,
            Route::Reports => {
                let submitted = self.submissions.listed();
                if submitted.is_empty() {
                    self.page(parts, data.reports())
                } else {
                    self.page(parts, &[data.reports(), &submitted].concat())
                }
            }
            Route::SubmitReport => self.submissions.submit(body).await,
            Route::CompletedReport(_) if self.stall() => {
                tokio::time::sleep(STALL).await;
                json_reply(
                    StatusCode::GATEWAY_TIMEOUT,
                    &json!({"error": "injected stall"}),
                )
            }
            Route::CompletedReport(_) if self.inject_failure(parts) => self.injected_failure(),
            Route::CompletedReport(id) if data.synthetic.contains_key(id) => {
                self.synthetic_page(parts, &data.synthetic[id])
            }
            Route::CompletedReport(id) => match self.submissions.find(id) {
                Some(submit::Found::Completed(synthetic)) => self.synthetic_page(parts, &synthetic),
                Some(submit::Found::NotCompleted(status)) => json_reply(
                    StatusCode::CONFLICT,
                    &json!({"error": "report not completed", "status": status}),
                ),
                None => match (data.completed_rows(id), data.statuses.get(id)) {
                    (Some(rows), _) => self.page(parts, rows),
                    (None, Some(status)) => json_reply(
                        StatusCode::CONFLICT,
                        &json!({"error": "report not completed", "status": status}),
                    ),
                    (None, None) => {
                        json_reply(StatusCode::NOT_FOUND, &json!({"error": "report not found"}))
                    }
                },
            },
        }
    }

    async fn login(&self, body: Incoming) -> Reply {
        /// No `Debug`: it holds the password.
        #[derive(Deserialize)]
        struct Credentials {
            username: String,
            password: String,
        }
        let credentials = match Limited::new(body, MAX_LOGIN_BODY).collect().await {
            // Serde would also take `["user", "password"]` for a struct: insist on an object.
            Ok(collected) => serde_json::from_slice::<serde_json::Map<_, _>>(&collected.to_bytes())
                .ok()
                .and_then(|object| serde_json::from_value::<Credentials>(object.into()).ok()),
            Err(_) => None,
        };
        let Some(credentials) = credentials else {
            let expected = r#"expected a JSON body {"username": string, "password": string}"#;
            return bad_request(expected);
        };
        let options = &self.options;
        if credentials.username != options.username || credentials.password != options.password {
            return json_reply(
                StatusCode::UNAUTHORIZED,
                &json!({"error": "invalid_credentials"}),
            );
        }
        let body = json!({
            "access_token": self.issue_token(),
            "token_type": "Bearer",
            "expires_in": options.token_ttl_secs,
        });
        let mut reply = json_reply(StatusCode::OK, &body);
        reply
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        reply
    }

    /// Whether this completed-report request is one of the first `fail_first`, or asks for
    /// page `fail_page`.
    fn inject_failure(&self, parts: &Parts) -> bool {
        let faults = &self.options.faults;
        let page = PageRequest::parse(parts.uri.query(), self.options.page_size).map(|p| p.page);
        if faults.fail_page > 0 && page == Ok(faults.fail_page) {
            return true;
        }
        let fail_first = faults.fail_first;
        fail_first > 0 && self.completed_requests.fetch_add(1, Ordering::Relaxed) < fail_first
    }

    /// Whether this authorized request, to `path`, is one of `fail_requests` (counting it).
    fn fail_this_request(&self, path: &str) -> bool {
        let faults = &self.options.faults;
        if faults.fail_requests.is_empty() {
            return false;
        }
        let mut counts = self
            .authorized_requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut count = |key: &str| {
            let count = counts.entry(key.to_owned()).or_default();
            *count += 1;
            *count
        };
        let (all, here) = (count(""), count(path));
        faults.fail_requests.iter().any(|fail| match &fail.path {
            None => fail.nth == all,
            Some(only) => only == path && fail.nth == here,
        })
    }

    /// The answer of an injected failure: `fail_status` with the configured `Retry-After`.
    fn injected_failure(&self) -> Reply {
        let faults = &self.options.faults;
        let mut reply = json_reply(
            faults.fail_status,
            &json!({"error": "injected failure", "status": faults.fail_status.as_u16()}),
        );
        if let Some(after) = &faults.retry_after {
            reply
                .headers_mut()
                .insert(header::RETRY_AFTER, after.clone());
        }
        reply
    }

    /// Whether this completed-report request is one of the first `stall_first`.
    fn stall(&self) -> bool {
        let stall_first = self.options.faults.stall_first;
        stall_first > 0 && self.stalled_requests.fetch_add(1, Ordering::Relaxed) < stall_first
    }

    /// A page answer: cut off when it is every `truncate_every`-th one, else broken JSON when it
    /// is every `malformed_every`-th one.
    fn page_reply(&self, chunks: impl IntoIterator<Item = Bytes>) -> Reply {
        let faults = &self.options.faults;
        let served = self.pages_served.fetch_add(1, Ordering::Relaxed) + 1;
        let nth = |every: u64| every > 0 && served.is_multiple_of(every);
        let mut reply = chunks_reply(StatusCode::OK, chunks);
        if nth(faults.truncate_every) {
            reply.body_mut().truncate_half();
        } else if nth(faults.malformed_every) {
            reply.body_mut().cut_half();
        }
        reply
    }

    fn issue_token(&self) -> String {
        let token: String = (0..32).map(|_| fastrand::alphanumeric()).collect();
        let token = format!("sbx_{token}");
        let now = Instant::now();
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens.retain(|_, expires| *expires > now);
        tokens.insert(
            token.clone(),
            now + Duration::from_secs(self.options.token_ttl_secs),
        );
        token
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(token) = token else { return false };
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens
            .get(token)
            .is_some_and(|expires| Instant::now() < *expires)
    }

    /// One page of `rows` as the request's `page` and `page_size` ask.
    fn page(&self, parts: &Parts, rows: &[Box<RawValue>]) -> Reply {
        let wanted = match PageRequest::parse(parts.uri.query(), self.options.page_size) {
            Ok(wanted) => wanted,
            Err(message) => return bad_request(&message),
        };
        let (range, has_next) = wanted.bounds(rows.len());
        let next = has_next.then(|| self.next_link(parts, &wanted));
        let body = render_page(&rows[range], next.as_deref(), self.options.last_link);
        self.page_reply([Bytes::from(body)])
    }

    /// One page of a synthetic report: its pre-rendered bytes when the page size matches,
    /// else rendered now; gzip-compressed when the sandbox and the request both say so.
    fn synthetic_page(&self, parts: &Parts, synthetic: &Synthetic) -> Reply {
        let wanted = match PageRequest::parse(parts.uri.query(), self.options.page_size) {
            Ok(wanted) => wanted,
            Err(message) => return bad_request(&message),
        };
        let total = usize::try_from(synthetic.report.rows()).unwrap_or(usize::MAX);
        let (range, has_next) = wanted.bounds(total);
        let next = has_next.then(|| self.next_link(parts, &wanted));
        let tail = links_tail(next.as_deref(), self.options.last_link);
        let index = wanted.page - 1;
        let rendered = synthetic
            .rendered
            .as_ref()
            .filter(|r| r.page_size == wanted.page_size && !range.is_empty());
        let head = || {
            rendered
                .and_then(|r| r.pages.get(index).cloned())
                .unwrap_or_else(|| {
                    let rows = range.start as u64..range.end as u64;
                    Bytes::from(synthetic_head(&synthetic.report, rows))
                })
        };
        let gzip = self.options.gzip && accepts_gzip(&parts.headers);
        let mut reply = if gzip {
            let fresh;
            let start = match rendered.and_then(|r| r.gzipped.get(index)) {
                Some(start) => start,
                None => {
                    fresh = GzipStart::new(&head());
                    &fresh
                }
            };
            let mut reply = self.page_reply([start.bytes.clone(), start.finish(tail.as_bytes())]);
            reply
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            reply
        } else {
            self.page_reply([head(), Bytes::from(tail)])
        };
        if self.options.gzip {
            reply
                .headers_mut()
                .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        reply
    }

    fn next_link(&self, parts: &Parts, current: &PageRequest) -> String {
        let path = parts.uri.path();
        // The loop fault links to page 1 as the client first asked for it: the bare path.
        let query = if current.page == self.options.faults.loop_at {
            String::new()
        } else {
            format!("?page={}&page_size={}", current.page + 1, current.page_size)
        };
        if let Some(origin) = &self.options.next_origin {
            return format!("{origin}{path}{query}");
        }
        match self.options.link_style {
            LinkStyle::Absolute => format!("{}{path}{query}", self.origin(&parts.headers)),
            LinkStyle::RootRelative | LinkStyle::QueryRelative if query.is_empty() => {
                path.to_owned()
            }
            LinkStyle::RootRelative => format!("{path}{query}"),
            LinkStyle::QueryRelative => query,
        }
    }

    /// `http://<Host>` as the client addressed us (so `localhost` stays `localhost`), or the
    /// listener's address when `Host` is missing or not a plain authority.
    fn origin(&self, headers: &HeaderMap) -> String {
        headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .filter(|host| !host.contains('@') && host.parse::<Authority>().is_ok())
            .map_or_else(
                || self.fallback_origin.clone(),
                |host| format!("http://{host}"),
            )
    }
}

/// The page a request asks for.
#[derive(Debug, PartialEq, Eq)]
struct PageRequest {
    /// 1-based.
    page: usize,
    /// 1..=[`MAX_PAGE_SIZE`], or up to the sandbox's page size when that is larger.
    page_size: usize,
}

impl PageRequest {
    /// Reads `page` and `page_size` from a query string; other parameters are ignored. A
    /// `page_size` above [`MAX_PAGE_SIZE`] and `default_page_size` is clamped to the larger.
    fn parse(query: Option<&str>, default_page_size: usize) -> Result<Self, String> {
        let mut page = 1;
        let mut page_size = default_page_size;
        for pair in query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let target = match key {
                "page" => &mut page,
                "page_size" => &mut page_size,
                _ => continue,
            };
            let positive = value.parse().ok().filter(|n| *n > 0);
            *target = positive
                .ok_or_else(|| format!("{key}: expected a positive integer, found {value:?}"))?;
        }
        Ok(Self {
            page,
            page_size: page_size.clamp(1, MAX_PAGE_SIZE.max(default_page_size)),
        })
    }

    /// The indexes of this page's rows among `total` rows, and whether more rows follow.
    fn bounds(&self, total: usize) -> (Range<usize>, bool) {
        let start = (self.page - 1).saturating_mul(self.page_size).min(total);
        let end = start.saturating_add(self.page_size).min(total);
        (start..end, end < total)
    }
}

const PAGE_HEAD: &str = r#"{"data":{"rows":["#;
const ROWS_END: &str = r#"]},"links":"#;

/// The page body the sandbox serves for `rows` (their original bytes):
/// `{"data":{"rows":[..]},"links":{..}}`, with `next` as the next link, or the end of the
/// listing written as `last` says.
pub fn render_page(rows: &[Box<RawValue>], next: Option<&str>, last: LastLink) -> String {
    let rows_len: usize = rows.iter().map(|row| row.get().len() + 1).sum();
    let mut body = String::with_capacity(rows_len + 64 + next.map_or(0, str::len));
    body.push_str(PAGE_HEAD);
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(row.get());
    }
    body.push_str(ROWS_END);
    body.push_str(&links_tail(next, last));
    body
}

/// The page body the sandbox serves for rows `rows` of a synthetic report, like
/// [`render_page`].
pub fn render_synthetic_page(
    report: &SyntheticReport,
    rows: Range<u64>,
    next: Option<&str>,
    last: LastLink,
) -> String {
    let mut body = synthetic_head(report, rows);
    body.push_str(&links_tail(next, last));
    body
}

/// `{"data":{"rows":[..]},"links":` for rows `rows` of a synthetic report.
fn synthetic_head(report: &SyntheticReport, rows: Range<u64>) -> String {
    // ~490 bytes a row; one spare row avoids a reallocation for most pages.
    let estimate = (rows.end.saturating_sub(rows.start) as usize + 1) * 520;
    let mut body = String::with_capacity(estimate + PAGE_HEAD.len() + ROWS_END.len());
    body.push_str(PAGE_HEAD);
    report.write_rows(rows, &mut body);
    body.push_str(ROWS_END);
    body.shrink_to_fit();
    body
}

/// The value of `"links"` and the closing brace: `{"next":URL}}`, or the end of the listing.
fn links_tail(next: Option<&str>, last: LastLink) -> String {
    match (next, last) {
        (Some(url), _) => format!(r#"{{"next":{}}}}}"#, serde_json::Value::from(url)),
        (None, LastLink::Absent) => "{}}".to_owned(),
        (None, LastLink::Null) => r#"{"next":null}}"#.to_owned(),
        (None, LastLink::Empty) => r#"{"next":""}}"#.to_owned(),
    }
}

/// The start of a gzip member: the header and the deflate blocks of some bytes, flushed to a
/// byte boundary but not final, so that [`GzipStart::finish`] can append more bytes and the
/// trailer without compressing these again.
struct GzipStart {
    bytes: Bytes,
    /// CRC-32 of the uncompressed bytes.
    crc: u32,
    /// How many uncompressed bytes.
    len: u64,
}

/// A gzip member header: deflate, no flags, no time, "fastest" (level 1), unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 0xff];

impl GzipStart {
    /// Compresses `data` at [`GZIP_LEVEL`], ending with a sync flush.
    fn new(data: &[u8]) -> Self {
        use flate2::{Compress, Compression, FlushCompress};
        let mut deflate = Compress::new(Compression::new(GZIP_LEVEL), false);
        let mut out = Vec::with_capacity(GZIP_HEADER.len() + data.len() / 3 + 1024);
        out.extend_from_slice(&GZIP_HEADER);
        loop {
            // More than 6 bytes free, so that a flush marker never repeats (zlib's advice).
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.len() / 2 + 1024);
            }
            let consumed = usize::try_from(deflate.total_in()).unwrap_or(usize::MAX);
            let rest = data.get(consumed..).unwrap_or_default();
            if let Err(e) = deflate.compress_vec(rest, &mut out, FlushCompress::Sync) {
                // Only a misuse of the stream fails, and this is its only use.
                panic!("sandbox: deflate failed: {e}");
            }
            // The flush is complete once all input is in and the output was not filled.
            if deflate.total_in() == data.len() as u64 && out.len() < out.capacity() {
                break;
            }
        }
        // Kept for the sandbox's life: give back the spare capacity.
        out.shrink_to_fit();
        let mut crc = flate2::Crc::new();
        crc.update(data);
        Self {
            bytes: Bytes::from(out),
            crc: crc.sum(),
            len: data.len() as u64,
        }
    }

    /// The rest of the member after [`GzipStart::bytes`]: `tail` in stored deflate blocks (the
    /// last one final), then the trailer (CRC-32 and length of everything).
    fn finish(&self, tail: &[u8]) -> Bytes {
        const MAX_STORED: usize = u16::MAX as usize;
        let blocks = tail.len().div_ceil(MAX_STORED).max(1);
        let mut out = Vec::with_capacity(tail.len() + 5 * blocks + 8);
        for block in 0..blocks {
            let chunk = &tail[block * MAX_STORED..((block + 1) * MAX_STORED).min(tail.len())];
            // BFINAL on the last block, BTYPE 00 (stored): we are at a byte boundary.
            out.push(u8::from(block + 1 == blocks));
            let len = chunk.len() as u16;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(&crc32_update(self.crc, tail).to_le_bytes());
        // ISIZE is the length modulo 2^32.
        out.extend_from_slice(&((self.len + tail.len() as u64) as u32).to_le_bytes());
        Bytes::from(out)
    }
}

/// The CRC-32 (gzip's) of some bytes whose CRC-32 is `crc`, followed by `data`.
fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut n = 0;
        while n < 256 {
            let mut c = n as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[n] = c;
            n += 1;
        }
        table
    };
    let mut c = !crc;
    for &byte in data {
        c = TABLE[((c ^ u32::from(byte)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Whether `Accept-Encoding` accepts gzip (or x-gzip) with a weight above 0. `*` is not
/// taken as gzip: a client that wants it names it.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            let mut params = item.split(';');
            let coding = params.next().unwrap_or_default().trim();
            let refused = params.any(|param| {
                let (key, value) = param.split_once('=').unwrap_or((param, ""));
                key.trim().eq_ignore_ascii_case("q")
                    && value.trim().parse::<f64>().is_ok_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip"))
                && !refused
        })
}

fn bad_request(message: &str) -> Reply {
    json_reply(
        StatusCode::BAD_REQUEST,
        &json!({"error": "invalid_request", "message": message}),
    )
}

fn json_reply(status: StatusCode, body: &serde_json::Value) -> Reply {
    reply(status, body.to_string())
}

fn reply(status: StatusCode, body: String) -> Reply {
    chunks_reply(status, [Bytes::from(body)])
}

fn chunks_reply(status: StatusCode, chunks: impl IntoIterator<Item = Bytes>) -> Reply {
    let mut reply = Response::new(Chunks::new(chunks));
    *reply.status_mut() = status;
    let json = HeaderValue::from_static("application/json");
    reply.headers_mut().insert(header::CONTENT_TYPE, json);
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::Url;
    use tokio::sync::oneshot;

    /// A sandbox on 127.0.0.1:0, stopped (and checked to stop cleanly) by [`Running::stop`].
    struct Running {
        base: Url,
        http: reqwest::Client,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<Result<()>>,
    }

    impl Running {
        async fn start(options: SandboxOptions) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
            let (stop, stopped) = oneshot::channel();
            let task = tokio::spawn(run(listener, options, async {
                let _ = stopped.await;
            }));
            Self {
                base,
                http: reqwest::Client::new(),
                stop,
                task,
            }
        }

        async fn stop(self) {
            self.stop.send(()).unwrap();
            self.task.await.unwrap().unwrap();
        }

        fn url(&self, path: &str) -> Url {
            self.base.join(path).unwrap()
        }

        async fn login_with(&self, body: &str) -> reqwest::Response {
            self.http
                .post(self.url("/v1/auth/token"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.to_owned())
                .send()
                .await
                .unwrap()
        }

        async fn token(&self) -> String {
            let body = json!({"username": SANDBOX_USERNAME, "password": SANDBOX_PASSWORD});
            let reply = self.login_with(&body.to_string()).await;
            assert_eq!(reply.status(), 200);
            let body: serde_json::Value =
                serde_json::from_str(&reply.text().await.unwrap()).unwrap();
            body["access_token"].as_str().unwrap().to_owned()
        }

        async fn get(&self, url: Url, token: Option<&str>) -> (u16, String) {
            let mut request = self.http.get(url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let reply = request.send().await.unwrap();
            let content_type = reply.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .to_owned();
            assert_eq!(content_type, "application/json");
            (reply.status().as_u16(), reply.text().await.unwrap())
        }

        /// Follows next links from `first`; returns each page's body text.
        async fn walk(&self, first: Url, token: &str) -> Vec<String> {
            let mut pages = Vec::new();
            let mut url = Some(first);
            while let Some(current) = url.take() {
                let (status, body) = self.get(current.clone(), Some(token)).await;
                assert_eq!(status, 200, "{current}: {body}");
                let page: serde_json::Value = serde_json::from_str(&body).unwrap();
                if let Some(next) = page["links"]["next"]
                    .as_str()
                    .filter(|next| !next.is_empty())
                {
                    url = Some(current.join(next).unwrap());
                }
                pages.push(body);
                assert!(pages.len() < 100, "pagination does not end");
            }
            pages
        }
    }

    fn options_with(data: SandboxData) -> SandboxOptions {
        SandboxOptions {
            data: Arc::new(data),
            ..SandboxOptions::default()
        }
    }

    /// The rows of a page as their raw JSON text.
    fn page_rows(body: &str) -> Vec<String> {
        #[derive(Deserialize)]
        struct Page<'a> {
            #[serde(borrow)]
            data: Data<'a>,
        }
        #[derive(Deserialize)]
        struct Data<'a> {
            #[serde(borrow)]
            rows: Vec<&'a RawValue>,
        }
        let page: Page = serde_json::from_str(body).unwrap();
        page.data
            .rows
            .iter()
            .map(|row| row.get().to_owned())
            .collect()
    }

    fn raw_texts(rows: &[Box<RawValue>]) -> Vec<String> {
        rows.iter().map(|row| row.get().to_owned()).collect()
    }

    /// A data set on disk: one pending report, one completed with six odd rows.
    fn odd_dataset() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let reports = r#"[{"id": "r_done", "status": "completed"}, {"id": "r_wait", "status": "pending"}, 42]"#;
        std::fs::write(dir.path().join("reports.json"), reports).unwrap();
        std::fs::create_dir(dir.path().join("completed-reports")).unwrap();
        let rows = "[1, \"two\", null, {\"a\": [1, 2]},\n [], 1.50]";
        std::fs::write(dir.path().join("completed-reports/r_done.json"), rows).unwrap();
        std::fs::write(dir.path().join("completed-reports/notes.txt"), "not data").unwrap();
        dir
    }

    #[test]
    fn embedded_data_has_the_sample_reports() {
        let data = SandboxData::embedded();
        assert_eq!(data.reports().len(), 6);
        let ids: Vec<&str> = data.completed_ids().collect();
        assert_eq!(ids, ["rpt_2b8e4d10", "rpt_7f3a9c21", "rpt_e5d90a47"]);
        assert_eq!(data.completed_rows("rpt_7f3a9c21").unwrap().len(), 1500);
        assert_eq!(data.completed_rows("rpt_2b8e4d10").unwrap().len(), 600);
        assert_eq!(data.completed_rows("rpt_e5d90a47").unwrap().len(), 0);
        assert_eq!(data.statuses["rpt_4c1e88b3"], "failed");
        assert_eq!(data.statuses["rpt_a09b6f5d"], "pending");

        let first: serde_json::Value =
            serde_json::from_str(data.completed_rows("rpt_7f3a9c21").unwrap()[0].get()).unwrap();
        assert_eq!(first["date"], "2025-03-01");
        assert_eq!(first["advertiser_id"], 10231);
        assert_eq!(first["spend"], 4.5721);
        let by_site = data.completed_rows("rpt_2b8e4d10").unwrap();
        let deal = |i: usize| {
            serde_json::from_str::<serde_json::Value>(by_site[i].get()).unwrap()["deal_id"].clone()
        };
        assert!((0..200).all(|i| deal(i).is_null()));
        assert_eq!(deal(200), "PMP-5914-NEWS");
    }

    #[test]
    fn load_reads_a_directory_and_names_bad_files() {
        let dir = odd_dataset();
        let data = SandboxData::load(dir.path()).unwrap();
        assert_eq!(raw_texts(data.reports()).last().unwrap(), "42");
        let ids: Vec<&str> = data.completed_ids().collect();
        assert_eq!(ids, ["r_done"]);
        let rows = raw_texts(data.completed_rows("r_done").unwrap());
        assert_eq!(
            rows,
            ["1", "\"two\"", "null", r#"{"a": [1, 2]}"#, "[]", "1.50"]
        );

        std::fs::write(
            dir.path().join("completed-reports/r_bad.json"),
            r#"{"rows": []}"#,
        )
        .unwrap();
        let message = SandboxData::load(dir.path()).unwrap_err().to_string();
        assert!(message.starts_with("sandbox: "), "{message}");
        assert!(
            message.contains("r_bad.json: expected a JSON array"),
            "{message}"
        );

        let empty = tempfile::tempdir().unwrap();
        let message = SandboxData::load(empty.path()).unwrap_err().to_string();
        assert!(
            message.starts_with("i/o failed (") && message.contains("reports.json"),
            "{message}"
        );
        std::fs::write(empty.path().join("reports.json"), "[]").unwrap();
        let data = SandboxData::load(empty.path()).unwrap();
        assert_eq!((data.reports().len(), data.completed_ids().count()), (0, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn submitted_reports_are_pending_then_completed_with_rows() {
        let sandbox = Running::start(SandboxOptions {
            submit: submit::SubmitOptions {
                complete_after: Duration::from_millis(300),
                fail: false,
                rows: 7,
                ..submit::SubmitOptions::default()
            },
            ..SandboxOptions::default()
        })
        .await;
        let post = |token: Option<String>, body: &'static str| {
            let mut request = sandbox.http.post(sandbox.url("/v1/reports")).body(body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            async move {
                let reply = request.send().await.unwrap();
                (reply.status().as_u16(), reply.text().await.unwrap())
            }
        };
        assert_eq!(post(None, r#"{"report_type":"x"}"#).await.0, 401);
        let token = sandbox.token().await;
        for bad in ["[1]", "not json", ""] {
            assert_eq!(post(Some(token.clone()), bad).await.0, 400, "{bad}");
        }
        let (status, body) = post(Some(token.clone()), r#"{"report_type":"x","n":1}"#).await;
        assert_eq!(status, 201, "{body}");
        let created: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(created["id"], "rpt_sub0001");
        assert_eq!(created["status"], "pending");
        assert_eq!(created["report_type"], "x");
        assert_eq!(created["row_count"], 7);

        let report = sandbox.url("/v1/completed-reports/rpt_sub0001");
        let (status, body) = sandbox.get(report.clone(), Some(&token)).await;
        assert_eq!(
            (status, body.contains("\"pending\"")),
            (409, true),
            "{body}"
        );
        let (_, list) = sandbox.get(sandbox.url("/v1/reports"), Some(&token)).await;
        assert_eq!(page_rows(&list).len(), data_len() + 1);
        assert!(
            list.contains(r#""id":"rpt_sub0001","status":"pending""#),
            "{list}"
        );

        tokio::time::sleep(Duration::from_millis(350)).await;
        let (_, list) = sandbox.get(sandbox.url("/v1/reports"), Some(&token)).await;
        assert!(
            list.contains(r#""id":"rpt_sub0001","status":"completed""#),
            "{list}"
        );
        let pages = sandbox.walk(report, &token).await;
        let rows: Vec<String> = pages.iter().flat_map(|p| page_rows(p)).collect();
        let mut want = String::new();
        synthetic::SyntheticReport::new(7, 1000).write_rows(0..7, &mut want);
        assert_eq!(rows.join(","), want);
        sandbox.stop().await;
    }

    fn data_len() -> usize {
        SandboxData::embedded().reports().len()
    }

    #[test]
    fn routes_and_page_requests() {
        assert_eq!(route(&Method::POST, "/v1/auth/token"), Route::Login);
        assert_eq!(
            route(&Method::GET, "/v1/auth/token"),
            Route::WrongMethod { allow: "POST" }
        );
        assert_eq!(route(&Method::GET, "/v1/reports"), Route::Reports);
        assert_eq!(route(&Method::POST, "/v1/reports"), Route::SubmitReport);
        assert_eq!(
            route(&Method::PUT, "/v1/reports"),
            Route::WrongMethod { allow: "GET, POST" }
        );
        assert_eq!(
            route(&Method::GET, "/v1/completed-reports/x1"),
            Route::CompletedReport("x1")
        );
        assert_eq!(
            route(&Method::DELETE, "/v1/completed-reports/x1"),
            Route::WrongMethod { allow: "GET" }
        );
        for path in [
            "/",
            "/v1/reports/",
            "/v1/completed-reports/",
            "/v1/completed-reports/a/b",
        ] {
            assert_eq!(route(&Method::GET, path), Route::NotFound, "{path}");
        }

        let parse = |query| PageRequest::parse(query, 100);
        assert_eq!(
            parse(None),
            Ok(PageRequest {
                page: 1,
                page_size: 100
            })
        );
        assert_eq!(
            parse(Some("page=3&page_size=7&x=1")),
            Ok(PageRequest {
                page: 3,
                page_size: 7
            })
        );
        assert_eq!(
            parse(Some("page_size=20000")),
            Ok(PageRequest {
                page: 1,
                page_size: MAX_PAGE_SIZE
            })
        );
        // A default above MAX_PAGE_SIZE raises the limit to it (one huge page for benchmarks).
        assert_eq!(
            PageRequest::parse(Some("page_size=2000000"), 1_000_000),
            Ok(PageRequest {
                page: 1,
                page_size: 1_000_000
            })
        );
        assert_eq!(
            parse(Some("page=0")),
            Err(r#"page: expected a positive integer, found "0""#.into())
        );
        assert!(parse(Some("page_size=ten")).is_err());
        assert!(parse(Some("page")).is_err());
    }

    #[tokio::test]
    async fn login_issues_a_bearer_token() {
        let sandbox = Running::start(SandboxOptions::default()).await;
        let body = json!({"username": "sandbox", "password": "sandbox-password"}).to_string();
        let reply = sandbox.login_with(&body).await;
        assert_eq!(reply.status(), 200);
        assert_eq!(reply.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(reply.headers()[header::CACHE_CONTROL], "no-store");
        let body: serde_json::Value = serde_json::from_str(&reply.text().await.unwrap()).unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        let token = body["access_token"].as_str().unwrap();
        assert!(token.starts_with("sbx_") && token.len() == 36, "{token}");

        let (status, _) = sandbox.get(sandbox.url("/v1/reports"), Some(token)).await;
        assert_eq!(status, 200);
        sandbox.stop().await;
    }

    #[tokio::test]
    async fn login_refuses_wrong_credentials_and_bad_bodies() {
        let sandbox = Running::start(SandboxOptions::default()).await;
        let wrong = json!({"username": "sandbox", "password": "nope"}).to_string();
        let reply = sandbox.login_with(&wrong).await;
        assert_eq!(reply.status(), 401);
        assert_eq!(
            reply.text().await.unwrap(),
            r#"{"error":"invalid_credentials"}"#
        );

        for body in [
            "",
            "not json",
            r#"{"username": "sandbox"}"#,
            r#"["sandbox", "sandbox-password"]"#,
        ] {
            let reply = sandbox.login_with(body).await;
            assert_eq!(reply.status(), 400, "{body:?}");
            let body: serde_json::Value =
                serde_json::from_str(&reply.text().await.unwrap()).unwrap();
            assert_eq!(body["error"], "invalid_request");
        }
        sandbox.stop().await;
    }

    #[tokio::test]
    async fn requests_without_a_valid_token_are_refused() {
        let sandbox = Running::start(SandboxOptions::default()).await;
        for token in [None, Some("sbx_made_up"), Some("")] {
            let (status, body) = sandbox.get(sandbox.url("/v1/reports"), token).await;
            assert_eq!(
                (status, body.as_str()),
                (401, r#"{"error":"invalid_token"}"#),
                "{token:?}"
            );
        }
        let url = sandbox.url("/v1/completed-reports/rpt_7f3a9c21");
        let reply = sandbox
            .http
            .get(url)
            .header(header::AUTHORIZATION, "Basic c2FuZGJveDo=")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 401);
        assert_eq!(
            reply.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="invalid_token""#
        );
        sandbox.stop().await;
    }

    #[tokio::test]
    async fn expired_tokens_are_refused() {
        let options = SandboxOptions {
            token_ttl_secs: 0,
            ..SandboxOptions::default()
        };
        let sandbox = Running::start(options).await;
        let token = sandbox.token().await;
        let (status, body) = sandbox.get(sandbox.url("/v1/reports"), Some(&token)).await;
        assert_eq!(
            (status, body.as_str()),
            (401, r#"{"error":"invalid_token"}"#)
        );
        sandbox.stop().await;
    }

    #[tokio::test]
    async fn report_list_paginates_in_order() {
        let sandbox = Running::start(SandboxOptions::default()).await;
        let token = sandbox.token().await;
        let pages = sandbox
            .walk(sandbox.url("/v1/reports?page_size=2"), &token)
            .await;
        assert_eq!(pages.len(), 3);
        let rows: Vec<String> = pages.iter().flat_map(|page| page_rows(page)).collect();
        assert_eq!(rows, raw_texts(SandboxData::embedded().reports()));
        let first: serde_json::Value = serde_json::from_str(&rows[0]).unwrap();
        assert_eq!(first["id"], "rpt_7f3a9c21");
        assert_eq!(first["date_range"]["start"], "2025-03-01");

        let first_page: serde_json::Value = serde_json::from_str(&pages[0]).unwrap();
        let expected = format!("{}v1/reports?page=2&page_size=2", sandbox.base);
        assert_eq!(first_page["links"]["next"], expected.as_str());
        assert!(
            pages[2].ends_with(r#"]},"links":{"next":null}}"#),
            "{}",
            pages[2]
        );
        sandbox.stop().await;
    }

    #[tokio::test]
    async fn completed_report_pages_in_each_link_style() {
        let data = Arc::new(SandboxData::embedded());
        let expected_rows = raw_texts(data.completed_rows("rpt_7f3a9c21").unwrap());
        for style in [
            LinkStyle::Absolute,
            LinkStyle::RootRelative,
            LinkStyle::QueryRelative,
        ] {
            let options = SandboxOptions {
                data: Arc::clone(&data),
                page_size: 700,
                link_style: style,
                ..SandboxOptions::default()
            };
            let sandbox = Running::start(options).await;
            let token = sandbox.token().await;
            let first = sandbox.url("/v1/completed-reports/rpt_7f3a9c21");
            let pages = sandbox.walk(first, &token).await;
            assert_eq!(pages.len(), 3, "{style:?}");
            let rows: Vec<String> = pages.iter().flat_map(|page| page_rows(page)).collect();
            assert_eq!(rows, expected_rows, "{style:?}");

            let next = |page: &str| {
                serde_json::from_str::<serde_json::Value>(page).unwrap()["links"]["next"].clone()
            };
            let query = "?page=3&page_size=700";
            let expected = match style {
                LinkStyle::Absolute => {
                    format!("{}v1/completed-reports/rpt_7f3a9c21{query}", sandbox.base)
                }
                LinkStyle::RootRelative => format!("/v1/completed-reports/rpt_7f3a9c21{query}"),
                LinkStyle::QueryRelative => query.to_owned(),
            };
            assert_eq!(next(&pages[1]), expected.as_str(), "{style:?}");
            assert_eq!(next(&pages[2]), serde_json::Value::Null, "{style:?}");
            sandbox.stop().await;
        }
    }

    #[tokio::test]
    async fn last_page_shape_for_each_last_link() {
        let dir = odd_dataset();
        let data = Arc::new(SandboxData::load(dir.path()).unwrap());
        let cases = [
            (
                LastLink::Absent,
                r#"{"data":{"rows":[[],1.50]},"links":{}}"#,
            ),
            (
                LastLink::Null,
                r#"{"data":{"rows":[[],1.50]},"links":{"next":null}}"#,
            ),
            (
                LastLink::Empty,
                r#"{"data":{"rows":[[],1.50]},"links":{"next":""}}"#,
            ),
        ];
        for (last_link, expected_last) in cases {
            let options = SandboxOptions {
                data: Arc::clone(&data),
                page_size: 4,
                link_style: LinkStyle::QueryRelative,
                last_link,
                ..SandboxOptions::default()
            };
            let sandbox = Running::start(options).await;
            let token = sandbox.token().await;
            let pages = sandbox
                .walk(sandbox.url("/v1/completed-reports/r_done"), &token)
                .await;
            let first = r#"{"data":{"rows":[1,"two",null,{"a": [1, 2]}]},"links":{"next":"?page=2&page_size=4"}}"#;
            assert_eq!(pages, [first, expected_last], "{last_link:?}");

            let beyond = sandbox.url("/v1/completed-reports/r_done?page=9");
            let (status, body) = sandbox.get(beyond, Some(&token)).await;
            assert_eq!(status, 200);
            assert_eq!(
                body,
                expected_last.replace("[[],1.50]", "[]"),
                "{last_link:?}"
            );
            sandbox.stop().await;
        }
    }

    #[tokio::test]
    async fn unknown_pending_and_bad_requests() {
        let dir = odd_dataset();
        let sandbox = Running::start(options_with(SandboxData::load(dir.path()).unwrap())).await;
        let token = sandbox.token().await;
        let cases = [
            (
                "/v1/completed-reports/r_nope",
                404,
                r#"{"error":"report not found"}"#,
            ),
            (
                "/v1/completed-reports/r_wait",
                409,
                r#"{"error":"report not completed","status":"pending"}"#,
            ),
            ("/v1/nothing", 404, r#"{"error":"not found"}"#),
            (
                "/v1/reports?page=-1",
                400,
                r#"{"error":"invalid_request","message":"page: expected a positive integer, found \"-1\""}"#,
            ),
        ];
        for (path, status, body) in cases {
            assert_eq!(
                sandbox.get(sandbox.url(path), Some(&token)).await,
                (status, body.to_owned()),
                "{path}"
            );
        }
        let reply = sandbox
            .http
            .delete(sandbox.url("/v1/reports"))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 405);
        assert_eq!(reply.headers()[header::ALLOW], "GET, POST");
        sandbox.stop().await;
    }

    #[tokio::test]
    async fn synthetic_reports_are_served_prerendered_or_on_demand() {
        let report = SyntheticReport::new(2_345, 9);
        let mut data = SandboxData::embedded();
        let prerender = Prerender {
            page_size: 1_000,
            gzip: false,
        };
        data.add_synthetic("bench", report.clone(), Some(prerender))
            .unwrap();
        for taken in ["bench", "rpt_7f3a9c21", "rpt_a09b6f5d"] {
            let err = data
                .add_synthetic(taken, SyntheticReport::new(1, 1), None)
                .unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{taken}");
        }
        let expected: Vec<String> = (0..report.rows())
            .map(|i| {
                let mut row = String::new();
                report.write_row(i, &mut row);
                row
            })
            .collect();
        let options = SandboxOptions {
            page_size: 1_000,
            ..options_with(data)
        };
        let sandbox = Running::start(options).await;
        let token = sandbox.token().await;
        let rows = |pages: &[String]| -> Vec<String> {
            pages.iter().flat_map(|page| page_rows(page)).collect()
        };

        let first = sandbox.url("/v1/completed-reports/bench");
        let prerendered = sandbox.walk(first, &token).await;
        assert_eq!(prerendered.len(), 3);
        assert_eq!(rows(&prerendered), expected);
        let last = render_synthetic_page(&report, 2_000..2_345, None, LastLink::Null);
        assert_eq!(prerendered[2], last);

        let other_size = sandbox.url("/v1/completed-reports/bench?page_size=700");
        let on_demand = sandbox.walk(other_size, &token).await;
        assert_eq!(on_demand.len(), 4);
        assert_eq!(rows(&on_demand), expected);

        let beyond = sandbox.url("/v1/completed-reports/bench?page=4");
        let (status, body) = sandbox.get(beyond, Some(&token)).await;
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"data":{"rows":[]},"links":{"next":null}}"#)
        );

        let (_, list) = sandbox
            .get(sandbox.url("/v1/reports?page_size=100"), Some(&token))
            .await;
        let list: serde_json::Value = serde_json::from_str(&list).unwrap();
        let listed = list["data"]["rows"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(listed["id"], "bench");
        assert_eq!(listed["status"], "completed");
        assert_eq!(listed["row_count"], 2_345);
        assert_eq!(listed["date_range"]["end"], "2025-03-30");
        sandbox.stop().await;
    }

    #[test]
    fn gzip_starts_finish_into_valid_gzip() {
        let inflate = |member: &[u8]| {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(member), &mut text)
                .unwrap();
            text
        };
        let big: Vec<u8> = (0..200_000u32).flat_map(|n| n.to_le_bytes()).collect();
        for (head, tail) in [
            (&b"{\"data\":"[..], &b"{\"next\":null}}"[..]),
            (&b"x"[..], &b""[..]),
            (&big[..100_000], &big[100_000..]),
        ] {
            let start = GzipStart::new(head);
            let member = [&start.bytes[..], &start.finish(tail)].concat();
            assert_eq!(inflate(&member), [head, tail].concat());
        }
        let mut crc = flate2::Crc::new();
        crc.update(&big);
        assert_eq!(crc32_update(0, &big), crc.sum());
        assert_eq!(
            crc32_update(crc32_update(0, &big[..7]), &big[7..]),
            crc.sum()
        );

        let accepts = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
            accepts_gzip(&headers)
        };
        for yes in ["gzip", "br, GZip;q=0.5", "deflate, x-gzip", "gzip;q=1.0"] {
            assert!(accepts(yes), "{yes}");
        }
        for no in [
            "identity",
            "br, zstd",
            "*",
            "gzip;q=0",
            "gzip; q=0.000",
            "gzipx",
        ] {
            assert!(!accepts(no), "{no}");
        }
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn synthetic_pages_are_gzipped_for_clients_that_accept_it() {
        let report = SyntheticReport::new(2_345, 9).with_order(synthetic::Order::Random);
        let mut data = SandboxData::embedded();
        let prerender = Prerender {
            page_size: 1_000,
            gzip: true,
        };
        data.add_synthetic("bench", report.clone(), Some(prerender))
            .unwrap();
        let options = SandboxOptions {
            page_size: 1_000,
            gzip: true,
            ..options_with(data)
        };
        let sandbox = Running::start(options).await;
        let token = sandbox.token().await;
        // A client that decodes nothing itself, so the bytes on the wire are seen.
        let raw = reqwest::Client::builder()
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .build()
            .unwrap();
        let fetch = |path: &str, accept: Option<&'static str>| {
            let mut request = raw.get(sandbox.url(path)).bearer_auth(&token);
            if let Some(accept) = accept {
                request = request.header(header::ACCEPT_ENCODING, accept);
            }
            async move {
                let reply = request.send().await.unwrap();
                assert_eq!(reply.status(), 200);
                assert_eq!(reply.headers()[header::VARY], "accept-encoding");
                let encoding = reply
                    .headers()
                    .get(header::CONTENT_ENCODING)
                    .map(|v| v.to_str().unwrap().to_owned());
                (encoding, reply.bytes().await.unwrap().to_vec())
            }
        };
        let inflate = |member: &[u8]| {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(member), &mut text)
                .unwrap();
            text
        };
        // Pre-rendered pages (1..=3), a page rendered on demand and a page past the end.
        for path in [
            "/v1/completed-reports/bench",
            "/v1/completed-reports/bench?page=2&page_size=1000",
            "/v1/completed-reports/bench?page=3",
            "/v1/completed-reports/bench?page=2&page_size=700",
            "/v1/completed-reports/bench?page=9",
        ] {
            let (encoding, identity) = fetch(path, None).await;
            assert_eq!(encoding, None, "{path}");
            let (encoding, refused) = fetch(path, Some("gzip;q=0, br")).await;
            assert_eq!((encoding, &refused), (None, &identity), "{path}");
            let (encoding, gzipped) = fetch(path, Some("deflate, gzip")).await;
            assert_eq!(encoding.as_deref(), Some("gzip"), "{path}");
            assert!(
                gzipped.len() < identity.len() / 2 || identity.len() < 100,
                "{path}"
            );
            assert_eq!(inflate(&gzipped).as_bytes(), identity, "{path}");
        }

        // The client of kargo-export (reqwest with gzip) reads the same rows as ever.
        let pages = sandbox
            .walk(sandbox.url("/v1/completed-reports/bench"), &token)
            .await;
        let rows: Vec<String> = pages.iter().flat_map(|page| page_rows(page)).collect();
        let mut expected = String::new();
        report.write_rows(0..report.rows(), &mut expected);
        assert_eq!(rows.join(","), expected);
        let last = render_synthetic_page(&report, 2_000..2_345, None, LastLink::Null);
        assert_eq!(pages[2], last);

        // Other answers are never compressed.
        let reply = raw
            .get(sandbox.url("/v1/reports"))
            .bearer_auth(&token)
            .header(header::ACCEPT_ENCODING, "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.headers().get(header::CONTENT_ENCODING), None);
        sandbox.stop().await;
    }

    #[tokio::test]
    async fn a_page_size_above_the_limit_serves_huge_prerendered_pages() {
        let report = SyntheticReport::new(25_000, 3);
        let mut data = SandboxData::embedded();
        let prerender = Prerender {
            page_size: 20_000,
            gzip: true,
        };
        data.add_synthetic("huge", report.clone(), Some(prerender))
            .unwrap();
        let options = SandboxOptions {
            page_size: 20_000,
            gzip: true,
            ..options_with(data)
        };
        let sandbox = Running::start(options).await;
        let token = sandbox.token().await;
        let pages = sandbox
            .walk(sandbox.url("/v1/completed-reports/huge"), &token)
            .await;
        assert_eq!(pages.len(), 2);
        assert_eq!(page_rows(&pages[0]).len(), 20_000);
        let first: serde_json::Value = serde_json::from_str(&pages[0]).unwrap();
        let next = format!(
            "{}v1/completed-reports/huge?page=2&page_size=20000",
            sandbox.base
        );
        assert_eq!(first["links"]["next"], next.as_str());
        sandbox.stop().await;
    }

    #[tokio::test]
    async fn absolute_links_keep_the_host_the_client_used() {
        let sandbox = Running::start(SandboxOptions::default()).await;
        let token = sandbox.token().await;
        let port = sandbox.base.port().unwrap();
        let url = format!("http://localhost:{port}/v1/reports?page_size=5");
        let reply = sandbox
            .http
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(&reply.text().await.unwrap()).unwrap();
        let expected = format!("http://localhost:{port}/v1/reports?page=2&page_size=5");
        assert_eq!(body["links"]["next"], expected.as_str());
        sandbox.stop().await;
    }
}
