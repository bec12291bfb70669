//! Authenticated requests against the API (pages, and the one POST that submits a report). The bearer token is attached here and only
//! here, and only to URLs of the API base's origin (scheme, host, port): a next link or a
//! manually configured URL that points elsewhere is refused before anything is sent. A
//! [`Request`] adds a method, headers (all treated as secrets: marked sensitive, never logged)
//! and a body to the URL of each page. A 401 leads to one fresh login and one retry;
//! transient failures (5xx/408/429 answers, connection errors, timeouts, cut-off bodies) are
//! retried with backoff as [`RetryPolicy`] says.
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
}

impl Connection {
    /// A connection to `api_base` authenticating with `credentials`; nothing is sent yet.
    pub fn new(api_base: Url, credentials: Credentials) -> Self {
        Connection {
            api_base,
            auth: Arc::new(Auth::new(credentials)),
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
}

impl Default for Request {
    /// A plain GET whose answers are read by their `Content-Type`.
    fn default() -> Self {
        Request {
            method: Method::GET,
            headers: HeaderMap::new(),
            body: None,
            format: None,
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
    pub body: Bytes,
    pub format: ContentFormat,
}

/// An HTTP client bound to one API origin.
pub struct ApiClient {
    http: reqwest::Client,
    api_base: Url,
    auth: Arc<Auth>,
    retry: RetryPolicy,
}

impl ApiClient {
    /// A client for `connection`; nothing is sent yet.
    pub fn new(connection: &Connection) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("kargo-export/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout_from_env(CONNECT_TIMEOUT_ENV, CONNECT_TIMEOUT))
            .read_timeout(timeout_from_env(READ_TIMEOUT_ENV, READ_TIMEOUT))
            .build()
            .map_err(|e| Error::Usage(format!("cannot build the HTTP client: {e}")))?;
        Ok(ApiClient {
            http,
            api_base: connection.api_base.clone(),
            auth: Arc::clone(&connection.auth),
            retry: RetryPolicy::default(),
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

    /// GETs `url` with the bearer token and returns the body of a 2xx answer. Transient
    /// failures are retried as [`RetryPolicy`] says; a 401 leads to one fresh login and one
    /// retry. An error after more than one attempt says how many there were and how long they
    /// took.
    pub async fn get(&self, url: &Url, at: &PageLocation) -> Result<Bytes> {
        let fetched = self.fetch(&Request::default(), url, at).await?;
        Ok(fetched.body)
    }

    /// Sends `request` to `url` like [`ApiClient::get`] and returns the body of a 2xx answer
    /// with the format it is read in.
    pub async fn fetch(&self, request: &Request, url: &Url, at: &PageLocation) -> Result<Fetched> {
        self.fetch_within(request, url, at, self.retry.max_attempts)
            .await
    }

    /// Like [`ApiClient::fetch`] with a single attempt (a 401 still gets its re-login): for
    /// pages fetched ahead on a guess, whose failure only means the page is fetched again, with
    /// retries, once the guess is confirmed.
    pub async fn fetch_once(
        &self,
        request: &Request,
        url: &Url,
        at: &PageLocation,
    ) -> Result<Fetched> {
        self.fetch_within(request, url, at, 1).await
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
        Ok(self.fetch_within(&request, url, at, 1).await?.body)
    }

    async fn fetch_within(
        &self,
        request: &Request,
        url: &Url,
        at: &PageLocation,
        max_attempts: u32,
    ) -> Result<Fetched> {
        self.check_origin(url, at)?;
        let policy = &self.retry;
        let started = Instant::now();
        let mut relogged = false;
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(request, url, at, &mut relogged).await {
                Ok(body) => return Ok(body),
                Err(failure) => failure,
            };
            let elapsed = started.elapsed();
            let remaining = policy.deadline.saturating_sub(elapsed);
            let (error, retry_after) = match failure {
                Failure::Transient { error, retry_after }
                    if attempt < max_attempts && !remaining.is_zero() =>
                {
                    (error, retry_after)
                }
                Failure::Transient { error, .. } | Failure::Final(error) => {
                    return Err(with_attempts(error, attempt, elapsed));
                }
            };
            let wait = policy.wait(attempt - 1, retry_after, remaining);
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

    /// One attempt: send, re-login once on the first 401, read the body.
    async fn attempt(
        &self,
        request: &Request,
        url: &Url,
        at: &PageLocation,
        relogged: &mut bool,
    ) -> Result<Fetched, Failure> {
        let mut token = self.auth.token(&self.http).await.map_err(Failure::Final)?;
        let mut response = self.send(request, url, &token, at).await?;
        if response.status() == StatusCode::UNAUTHORIZED && !*relogged {
            *relogged = true;
            token = self
                .auth
                .renew(&self.http, &token)
                .await
                .map_err(Failure::Final)?;
            response = self.send(request, url, &token, at).await?;
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
        let body = response.bytes().await.map_err(|e| transport_error(at, e))?;
        Ok(Fetched { body, format })
    }

    async fn send(
        &self,
        request: &Request,
        url: &Url,
        token: &Secret,
        at: &PageLocation,
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
        builder.send().await.map_err(|e| transport_error(at, e))
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

fn transport_http_error(at: &PageLocation, error: reqwest::Error) -> Error {
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
