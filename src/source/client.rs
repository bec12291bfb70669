//! Authenticated requests against the API (pages, and the one POST that submits a report). The bearer token is attached here and only
//! here, and only to URLs of the API base's origin (scheme, host, port): a next link or a
//! manually configured URL that points elsewhere is refused before anything is sent. A
//! [`Request`] adds a method, headers (all treated as secrets: marked sensitive, never logged)
//! and a body to the URL of each page. A 401 leads to one fresh login and one retry;
//! transient failures (5xx/408/429 answers, connection errors, timeouts, cut-off bodies) are
//! retried with backoff as [`RetryPolicy`] says. Every request passes the connection's
//! [`Gate`] first, and an answer that asks the client to back off (`429`, or `503` with
//! `Retry-After`) holds the gate for its whole origin ([`retry::origin_hold`]). A page fetched
//! ahead on a guess gets one attempt; its failure is handed back as a [`Deferred`] that the
//! confirmed fetch continues from, after its back-off.
//! Errors name the URL without its query string and never include a token.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};

use crate::error::{Error, PageLocation, Result, redact_url};
use crate::secret::Secret;
use crate::source::auth::{Auth, Credentials};
use crate::source::formats::ContentFormat;
use crate::source::gate::Gate;
use crate::source::retry::{self, RetryPolicy};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server may stay silent: before the answer's head, and between body chunks. A
/// slow but steady download is never cut off; a server that accepts and never answers costs one
/// attempt this long, so three of them use up the 90 s retry budget (an export that cannot make
/// progress fails within about 100 s).
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Hidden overrides of the two timeouts, in milliseconds, so tests need not wait half a minute.
const CONNECT_TIMEOUT_ENV: &str = "KARGO_EXPORT_CONNECT_TIMEOUT_MS";
const READ_TIMEOUT_ENV: &str = "KARGO_EXPORT_READ_TIMEOUT_MS";
/// How much of an error response body is quoted in the error message.
const ERROR_BODY_QUOTE: usize = 200;

/// Where the API is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The API base, e.g. `https://datasharingapi.prod.kargo.com`.
    pub api_base: Url,
    /// Token or login, and the token cache every client of this connection (and its clones)
    /// shares.
    pub auth: Arc<Auth>,
    /// How requests are retried.
    pub retry: RetryPolicy,
    /// The back-off holds and the rate limit every client of this connection (and its clones)
    /// shares.
    pub gate: Arc<Gate>,
}

/// Retry bounds and the request rate as chosen on the command line or in a jobs file; `None`
/// keeps the default (4 retries, 90 s, no rate limit).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// `--retries`: attempts after the first.
    pub retries: Option<u32>,
    /// `--retry-max-time`: no attempt starts later than this after a request's first.
    pub retry_max_time: Option<Duration>,
    /// `--max-requests-per-second`: request starts a second over the whole process.
    pub max_requests_per_second: Option<f64>,
}

impl Limits {
    /// Each limit chosen here, else the one of `fallback` (flags over the jobs file).
    pub fn or(self, fallback: Limits) -> Limits {
        Limits {
            retries: self.retries.or(fallback.retries),
            retry_max_time: self.retry_max_time.or(fallback.retry_max_time),
            max_requests_per_second: self
                .max_requests_per_second
                .or(fallback.max_requests_per_second),
        }
    }

    /// Checks a request rate; the error says what is wrong, for the caller to name its source.
    pub fn check_rate(rate: f64) -> std::result::Result<f64, String> {
        if rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0 {
            Ok(rate)
        } else {
            Err(format!(
                "must be a positive number of requests per second (e.g. 2.5), found {rate}"
            ))
        }
    }

    /// Checks a retry time in seconds (0: no attempt after the first one's time is up).
    pub fn check_retry_time(secs: f64) -> std::result::Result<Duration, String> {
        Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|time| *time <= Duration::from_secs(7 * 24 * 3600))
            .ok_or_else(|| format!("must be between 0 and 604800 seconds, found {secs}"))
    }

    /// Checks a number of retries.
    pub fn check_retries(retries: i64) -> std::result::Result<u32, String> {
        u32::try_from(retries)
            .ok()
            .filter(|n| *n <= 1000)
            .ok_or_else(|| format!("must be between 0 and 1000, found {retries}"))
    }
}

impl Connection {
    /// A connection to `api_base` authenticating with `credentials`, with the default limits;
    /// nothing is sent yet.
    pub fn new(api_base: Url, credentials: Credentials) -> Self {
        Connection {
            api_base,
            auth: Arc::new(Auth::new(credentials)),
            retry: RetryPolicy::default(),
            gate: Arc::new(Gate::default()),
        }
    }

    /// This connection with `limits` (and a gate of its own for their rate).
    pub fn with_limits(self, limits: Limits) -> Self {
        Connection {
            retry: RetryPolicy::new(limits.retries, limits.retry_max_time),
            gate: Arc::new(Gate::new(limits.max_requests_per_second)),
            ..self
        }
    }

    /// How this connection authenticates.
    pub fn credentials(&self) -> &Credentials {
        self.auth.credentials()
    }
}

/// How each page of an endpoint is requested, besides its URL. Its `Debug` shows header
/// names only: values may be secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// Sent with every page, after (so replacing) the bearer token's `Authorization`.
    pub headers: HeaderMap,
    /// Sent with every page, as `application/json` unless a header says otherwise.
    pub body: Option<Bytes>,
    /// How answers are read; `None` follows their `Content-Type`.
    pub format: Option<ContentFormat>,
    /// An answer longer than this many bytes is handed on with only its first bytes read
    /// ([`Fetched::rest`] reads the others); `None` reads every answer whole.
    pub stream_from: Option<usize>,
}

impl Default for Request {
    /// A plain GET whose answers are read by their `Content-Type`.
    fn default() -> Self {
        Request {
            method: Method::GET,
            headers: HeaderMap::new(),
            body: None,
            format: None,
            stream_from: None,
        }
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_bytes", &self.body.as_ref().map(Bytes::len))
            .field("format", &self.format)
            .finish()
    }
}

/// A 2xx answer: its body and the format it is read in.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The body, or its first bytes when `rest` is set.
    pub body: Bytes,
    pub format: ContentFormat,
    /// The rest of a long body (see [`Request::stream_from`]), read as it is consumed.
    pub rest: Option<Arc<super::body::BodyRest>>,
}

/// A request that failed, with what its retries need to go on later: the attempts made, when
/// the first one started and when the next one may start (its back-off, at least any
/// `Retry-After`). [`ApiClient::fetch_ahead`] hands it out; [`ApiClient::fetch_after`] goes on
/// from it.
#[derive(Debug)]
pub struct Deferred {
    error: Error,
    attempts: u32,
    started: Instant,
    /// `None` when another attempt cannot help (a final error).
    retry_at: Option<Instant>,
}

impl Deferred {
    fn fatal(error: Error) -> Self {
        Deferred {
            error,
            attempts: 0,
            started: Instant::now(),
            retry_at: None,
        }
    }

    /// Why the request failed.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// How long until the request may be sent again (zero for a final error).
    pub fn wait(&self) -> Duration {
        self.retry_at.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        })
    }

    pub fn into_error(self) -> Error {
        self.error
    }
}

/// The production API base.
pub const DEFAULT_API_BASE: &str = "https://datasharingapi.prod.kargo.com";

/// An HTTP client bound to one API origin.
pub struct ApiClient {
    http: reqwest::Client,
    api_base: Url,
    auth: Arc<Auth>,
    retry: RetryPolicy,
    gate: Arc<Gate>,
}

impl ApiClient {
    /// A client for `connection`; nothing is sent yet.
    pub fn new(connection: &Connection) -> Result<Self> {
        let http = crate::tls::http_client()
            .user_agent(concat!("kargo-export/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout_from_env(CONNECT_TIMEOUT_ENV, CONNECT_TIMEOUT))
            .read_timeout(timeout_from_env(READ_TIMEOUT_ENV, READ_TIMEOUT))
            .build()
            .map_err(|e| Error::Usage(format!("cannot build the HTTP client: {e}")))?;
        Ok(ApiClient {
            http,
            api_base: connection.api_base.clone(),
            auth: Arc::clone(&connection.auth),
            retry: connection.retry.clone(),
            gate: Arc::clone(&connection.gate),
        })
    }

    /// The retry rules this client follows, for retries decided after a body arrived (a page
    /// whose JSON turns out to be broken).
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The API base: the one origin the token is sent to.
    pub fn api_base(&self) -> &Url {
        &self.api_base
    }

    /// `{api_base}/{segments...}`, each segment percent-encoded as a path segment.
    pub fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.api_base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Logs in (a ready token needs no login) and sends nothing else; returns the token's
    /// lifetime as the login answer stated it ([`Auth::lifetime`]). A login failure is an
    /// [`Error::Auth`].
    pub async fn log_in(&self) -> Result<Option<Duration>> {
        self.auth.lifetime(&self.via()).await
    }

    /// Sends `request` to `url` with the bearer token and returns the body of a 2xx answer
    /// with the format it is read in. Transient failures are retried as [`RetryPolicy`] says;
    /// a 401 leads to one fresh login and one retry. An error after more than one attempt says
    /// how many there were and how long they took.
    pub async fn fetch(&self, request: &Request, url: &Url, at: &PageLocation) -> Result<Fetched> {
        self.fetch_within(request, url, at, self.retry.max_attempts, None)
            .await
            .map_err(Deferred::into_error)
    }

    /// Like [`ApiClient::fetch`] with a single attempt (a 401 still gets its re-login): for
    /// pages fetched ahead on a guess, whose failure only means the page is fetched again once
    /// the guess is confirmed, with [`ApiClient::fetch_after`].
    pub async fn fetch_ahead(
        &self,
        request: &Request,
        url: &Url,
        at: &PageLocation,
    ) -> Result<Fetched, Deferred> {
        self.fetch_within(request, url, at, 1, None).await
    }

    /// [`ApiClient::fetch`] going on from the failure of [`ApiClient::fetch_ahead`]: it waits
    /// out that failure's back-off, and its attempts and time count toward the retry bounds.
    pub async fn fetch_after(
        &self,
        request: &Request,
        url: &Url,
        at: &PageLocation,
        failed: Deferred,
    ) -> Result<Fetched> {
        let resume = failed.retry_at.is_some().then_some(failed);
        self.fetch_within(request, url, at, self.retry.max_attempts, resume)
            .await
            .map_err(Deferred::into_error)
    }

    /// POSTs `json` (a JSON body) to `url` with the bearer token and returns the body of a 2xx
    /// answer. One attempt only (a 401 still gets its re-login): a request that creates
    /// something on the server is never repeated on a guess.
    pub async fn post_json(&self, url: &Url, json: Bytes, at: &PageLocation) -> Result<Bytes> {
        let request = Request {
            method: Method::POST,
            body: Some(json),
            ..Request::default()
        };
        let fetched = self.fetch_within(&request, url, at, 1, None).await;
        Ok(fetched.map_err(Deferred::into_error)?.body)
    }

    /// Up to `max_attempts` attempts (counting those of `resume`, which is waited out first)
    /// within the policy's time; each one passes the gate, and each failure that asks for it
    /// holds the gate for the origin.
    async fn fetch_within(
        &self,
        request: &Request,
        url: &Url,
        at: &PageLocation,
        max_attempts: u32,
        resume: Option<Deferred>,
    ) -> Result<Fetched, Deferred> {
        self.check_origin(url, at).map_err(Deferred::fatal)?;
        let policy = &self.retry;
        let (started, mut attempt) = match resume {
            Some(failed) => {
                if let Some(retry_at) = failed.retry_at {
                    tokio::time::sleep_until(retry_at).await;
                }
                (failed.started, failed.attempts + 1)
            }
            None => (Instant::now(), 1),
        };
        let deadline = started + policy.deadline;
        let mut relogged = false;
        loop {
            let failure = match self
                .attempt(request, url, at, deadline, &mut relogged)
                .await
            {
                Ok(body) => return Ok(body),
                Err(failure) => failure,
            };
            let elapsed = started.elapsed();
            let remaining = policy.deadline.saturating_sub(elapsed);
            let (error, retry_after) = match failure {
                Failure::Transient { error, retry_after } => (error, retry_after),
                Failure::Final(error) => {
                    return Err(Deferred::fatal(with_attempts(error, attempt, elapsed)));
                }
            };
            let backoff = policy.wait(attempt - 1, retry_after, Duration::MAX);
            self.hold_origin(url, &error, retry_after, backoff);
            // A `Retry-After` beyond the time left is not waited for just to be ignored at the
            // deadline: the request gives up now.
            let too_late = retry_after.is_some_and(|after| after > remaining);
            if attempt >= max_attempts || remaining.is_zero() || too_late {
                return Err(Deferred {
                    error: with_attempts(error, attempt, elapsed),
                    attempts: attempt,
                    started,
                    retry_at: Some(Instant::now() + backoff),
                });
            }
            let wait = backoff.min(remaining);
            tracing::warn!(
                url = %at.url,
                attempt,
                wait_ms = wait.as_millis() as u64,
                reason = %reason_of(&error),
                "request failed, retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// Holds the gate for `url`'s origin when the answer in `error` asks every request there
    /// to back off ([`retry::origin_hold`]).
    fn hold_origin(
        &self,
        url: &Url,
        error: &Error,
        retry_after: Option<Duration>,
        backoff: Duration,
    ) {
        let Error::Http {
            status: Some(status),
            ..
        } = error
        else {
            return;
        };
        if let Some(hold) = retry::origin_hold(*status, retry_after, backoff) {
            tracing::info!(
                origin = %url.origin().ascii_serialization(),
                status,
                hold_ms = hold.as_millis() as u64,
                "the API asked to back off; holding every request to it"
            );
            self.gate.hold(url, hold);
        }
    }

    /// One attempt: send, re-login once on the first 401, read the body.
    async fn attempt(
        &self,
        request: &Request,
        url: &Url,
        at: &PageLocation,
        deadline: Instant,
        relogged: &mut bool,
    ) -> Result<Fetched, Failure> {
        let mut token = self.token(None).await.map_err(Failure::Final)?;
        let mut response = self.send(request, url, &token, at, deadline).await?;
        if response.status() == StatusCode::UNAUTHORIZED && !*relogged {
            *relogged = true;
            token = self.token(Some(&token)).await.map_err(Failure::Final)?;
            response = self.send(request, url, &token, at, deadline).await?;
        }
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| retry::parse_retry_after(value, chrono::Utc::now()));
            let body = response.bytes().await.unwrap_or_default();
            let error = Error::Http {
                at: at.clone(),
                status: Some(status.as_u16()),
                reason: format!(
                    "HTTP {status}{}",
                    quote_body(&body, &token, &request.headers)
                ),
            };
            return Err(if retry::retryable_status(status.as_u16()) {
                Failure::Transient { error, retry_after }
            } else {
                Failure::Final(error)
            });
        }
        let format = request.format.unwrap_or_else(|| {
            let content_type = response.headers().get(CONTENT_TYPE);
            ContentFormat::from_content_type(content_type.and_then(|v| v.to_str().ok()))
        });
        let (body, rest) = super::body::read_body(response, request.stream_from, at)
            .await
            .map_err(|e| transport_error(at, e))?;
        Ok(Fetched {
            body,
            format,
            rest: rest.map(Arc::new),
        })
    }

    /// The current token, or a fresh one after `rejected` was answered 401; a login passes the
    /// gate like every request.
    async fn token(&self, rejected: Option<&Secret>) -> Result<Secret> {
        let via = self.via();
        match rejected {
            None => self.auth.token(&via).await,
            Some(rejected) => self.auth.renew(&via, rejected).await,
        }
    }

    /// What a login of this client is sent through.
    fn via(&self) -> crate::source::auth::Via<'_> {
        crate::source::auth::Via {
            http: &self.http,
            gate: &self.gate,
            retry: &self.retry,
        }
    }

    /// Passes the gate, then sends: a hold that lasts past `deadline` fails the request unsent.
    async fn send(
        &self,
        request: &Request,
        url: &Url,
        token: &Secret,
        at: &PageLocation,
        deadline: Instant,
    ) -> Result<reqwest::Response, Failure> {
        let mut bearer =
            HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                Failure::Final(Error::Auth {
                    url: at.url.clone(),
                    reason: "the token contains characters not allowed in a header".into(),
                })
            })?;
        bearer.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, bearer);
        if request.body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for name in request.headers.keys() {
            headers.remove(name);
        }
        for (name, value) in &request.headers {
            let mut value = value.clone();
            value.set_sensitive(true);
            headers.append(name, value);
        }
        let mut builder = self
            .http
            .request(request.method.clone(), url.clone())
            .headers(headers);
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let lease = match self.gate.pass(url, deadline).await {
            Ok(lease) => lease,
            Err(left) => return Err(Failure::Final(held_back(at, left))),
        };
        let response = builder.send().await;
        // The answer has begun (or the request failed): it counts one more second, from now.
        drop(lease);
        response.map_err(|e| transport_error(at, e))
    }

    /// Refuses to send the token to another origin than the API base's.
    fn check_origin(&self, url: &Url, at: &PageLocation) -> Result<()> {
        if url.origin() == self.api_base.origin() {
            return Ok(());
        }
        // Every page after the first was reached by a next link (or a cursor, page or offset
        // on the first page's URL, which cannot change the origin).
        let what = if at.page > 1 { "next link " } else { "" };
        Err(Error::Page {
            at: at.clone(),
            reason: format!(
                "{what}{} is on another origin than the API base {}; refusing to send credentials there",
                redact_url(url),
                redact_url(&self.api_base)
            ),
        })
    }
}

/// `default`, or the positive number of milliseconds in the environment variable `name` (a
/// hidden test hook; anything else there is ignored).
fn timeout_from_env(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(default, Duration::from_millis)
}

/// Why an attempt failed, and whether another attempt may help.
enum Failure {
    /// A retryable status or a transport failure; `retry_after` from the answer's header.
    Transient {
        error: Error,
        retry_after: Option<Duration>,
    },
    /// Not worth retrying (other statuses, authentication, a bad request).
    Final(Error),
}

/// The error of a request not sent because its origin is held `left` longer than its retry
/// time allows.
pub(crate) fn held_back(at: &PageLocation, left: Duration) -> Error {
    Error::Http {
        at: at.clone(),
        status: None,
        reason: format!(
            "not sent: the API asked (Retry-After) to wait {:.1} s more, beyond the retry time \
             left (--retry-max-time)",
            left.as_secs_f64()
        ),
    }
}

/// `error` with the number of attempts and the time they took, when there was more than one.
fn with_attempts(error: Error, attempts: u32, elapsed: Duration) -> Error {
    match error {
        Error::Http { at, status, reason } if attempts > 1 => {
            let spent = format!(
                " after {attempts} attempts in {:.1} s",
                elapsed.as_secs_f64()
            );
            // "HTTP 503 Service Unavailable: {body}" -> "HTTP 503 ... after N attempts in T s: {body}"
            let reason = match reason.split_once(": ") {
                Some((head, rest)) => format!("{head}{spent}: {rest}"),
                None => format!("{reason}{spent}"),
            };
            Error::Http { at, status, reason }
        }
        other => other,
    }
}

/// The short reason of an error for the retry log (no body quote).
fn reason_of(error: &Error) -> String {
    match error {
        Error::Http { reason, .. } => reason
            .split_once(": ")
            .map_or(reason.as_str(), |(head, _)| head)
            .to_owned(),
        other => other.to_string(),
    }
}

/// A transport failure; connection errors, timeouts and bodies cut off are transient, anything
/// else (a request that cannot be built, a redirect loop) is final.
fn transport_error(at: &PageLocation, error: reqwest::Error) -> Failure {
    let transient = error.is_timeout()
        || error.is_connect()
        || error.is_body()
        || error.is_decode()
        || error.is_request();
    let error = transport_http_error(at, error);
    if transient {
        Failure::Transient {
            error,
            retry_after: None,
        }
    } else {
        Failure::Final(error)
    }
}

pub(super) fn transport_http_error(at: &PageLocation, error: reqwest::Error) -> Error {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_body() || error.is_decode() {
        "response body cut off"
    } else {
        "transport error"
    };
    let detail = std::error::Error::source(&error)
        .map(|source| format!(": {source}"))
        .unwrap_or_default();
    Error::Http {
        at: at.clone(),
        status: None,
        reason: format!("{kind}{detail}"),
    }
}

/// A short, single-line quote of an error body with the token and the values of the request's
/// own headers blanked out (a server may echo them).
fn quote_body(body: &[u8], token: &Secret, headers: &HeaderMap) -> String {
    let text = String::from_utf8_lossy(body);
    let mut text = text.replace(token.expose(), "[redacted]");
    for value in headers.values().filter_map(|v| v.to_str().ok()) {
        if !value.trim().is_empty() {
            text = text.replace(value.trim(), "[redacted]");
        }
    }
    let mut quote: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if quote.is_empty() {
        return String::new();
    }
    if quote.len() > ERROR_BODY_QUOTE {
        let cut = (0..=ERROR_BODY_QUOTE)
            .rev()
            .find(|&i| quote.is_char_boundary(i))
            .unwrap_or(0);
        quote.truncate(cut);
        quote.push('…');
    }
    format!(": {quote}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{FailRequest, Faults, SandboxOptions};

    /// A client of an in-process sandbox whose first authorized request answers `status` with
    /// `retry_after`; the sandbox stops when the sender is dropped.
    async fn failing_once(
        status: u16,
        retry_after: Option<&'static str>,
    ) -> (ApiClient, Arc<Gate>, tokio::sync::oneshot::Sender<()>) {
        let options = SandboxOptions {
            faults: Faults {
                fail_requests: vec![FailRequest { path: None, nth: 1 }],
                fail_status: hyper::StatusCode::from_u16(status).unwrap(),
                retry_after: retry_after.map(HeaderValue::from_static),
                ..Faults::default()
            },
            ..SandboxOptions::default()
        };
        let (connection, stop) = crate::session::start_sandbox(options).await.unwrap();
        let client = ApiClient::new(&connection).unwrap();
        (client, Arc::clone(&connection.gate), stop)
    }

    fn located(url: &Url) -> PageLocation {
        PageLocation {
            url: redact_url(url),
            page: 2,
        }
    }

    #[tokio::test]
    async fn a_429_fetched_ahead_holds_every_request_and_is_fetched_again_after_it() {
        let (client, gate, _stop) = failing_once(429, Some("1")).await;
        let page = client.endpoint(&["v1", "completed-reports", "rpt_7f3a9c21"]);
        let started = Instant::now();
        let failed = client
            .fetch_ahead(&Request::default(), &page, &located(&page))
            .await
            .unwrap_err();
        assert!(
            failed.error().to_string().contains("429"),
            "{:?}",
            failed.error()
        );
        let wait = failed.wait();
        assert!(wait > Duration::from_millis(900), "{wait:?}");
        assert!(gate.held_for(&page).is_some(), "the origin is held");
        // Any other request to the origin waits for the hold too.
        let list = client.endpoint(&["v1", "reports"]);
        client
            .fetch(&Request::default(), &list, &located(&list))
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_secs(1));
        let fetched = client
            .fetch_after(&Request::default(), &page, &located(&page), failed)
            .await
            .unwrap();
        assert!(fetched.body.starts_with(b"{"));
    }

    #[tokio::test]
    async fn a_503_without_retry_after_delays_only_its_own_request() {
        let (client, gate, _stop) = failing_once(503, None).await;
        let page = client.endpoint(&["v1", "completed-reports", "rpt_7f3a9c21"]);
        let failed = client
            .fetch_ahead(&Request::default(), &page, &located(&page))
            .await
            .unwrap_err();
        assert!(failed.error().to_string().contains("503"));
        assert!(failed.wait() <= RetryPolicy::default().base);
        assert_eq!(gate.held_for(&page), None);
        client
            .fetch_after(&Request::default(), &page, &located(&page), failed)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_retry_time_fails_at_once_and_holds_the_origin() {
        // Longer than the default retry time of 90 s.
        let (client, gate, _stop) = failing_once(429, Some("120")).await;
        let page = client.endpoint(&["v1", "completed-reports", "rpt_7f3a9c21"]);
        let started = Instant::now();
        let error = client
            .fetch(&Request::default(), &page, &located(&page))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("HTTP 429"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(gate.held_for(&page) > Some(Duration::from_secs(115)));
        // Nothing more is sent there: the next request fails unsent.
        let list = client.endpoint(&["v1", "reports"]);
        let error = client
            .fetch(&Request::default(), &list, &located(&list))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("not sent"), "{error}");
    }

    #[test]
    fn error_bodies_are_quoted_short_and_without_the_token() {
        let token = Secret::new("tok-123");
        assert_eq!(
            quote_body(b"{\"error\":\n \"bad tok-123\"}", &token, &HeaderMap::new()),
            ": {\"error\": \"bad [redacted]\"}"
        );
        assert_eq!(quote_body(b"", &token, &HeaderMap::new()), "");
        let none = HeaderMap::new();
        assert!(quote_body("é".repeat(300).as_bytes(), &token, &none).ends_with('…'));
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("k-42"));
        assert_eq!(
            quote_body(b"wrong key k-42", &token, &headers),
            ": wrong key [redacted]"
        );
    }

    #[test]
    fn endpoints_keep_the_base_path_and_encode_ids() {
        let connection = Connection::new(
            Url::parse("https://h.example/api/").unwrap(),
            Credentials::Token(Secret::new("t")),
        );
        let client = ApiClient::new(&connection).unwrap();
        assert_eq!(
            client
                .endpoint(&["v1", "completed-reports", "a/b c"])
                .as_str(),
            "https://h.example/api/v1/completed-reports/a%2Fb%20c"
        );
    }
}
