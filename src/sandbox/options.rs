//! What a sandbox serves and how: [`SandboxOptions`], the faults it injects on purpose
//! ([`Faults`], [`FailRequest`], [`STALL`]), how its next links and last pages are written
//! ([`LinkStyle`], [`LastLink`]), the default credentials and the largest page size. Plain values
//! that the command line and the tests fill in: acting on them is the server's job (`server.rs`),
//! and the data served is [`SandboxData`]'s (`data.rs`).

use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use hyper::header::HeaderValue;

use super::data::SandboxData;
use super::{request_log, submit};

/// User name the sandbox accepts by default.
pub const SANDBOX_USERNAME: &str = "sandbox";
/// Password the sandbox accepts by default.
pub const SANDBOX_PASSWORD: &str = "sandbox-password";
/// Largest `page_size` served (unless [`SandboxOptions::page_size`] is larger); larger requests
/// are clamped to it.
pub const MAX_PAGE_SIZE: usize = 10_000;

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
    /// pages should be added with [`Prerender::gzip`](super::Prerender::gzip), else they are
    /// compressed per request).
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
