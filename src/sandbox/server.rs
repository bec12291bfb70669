//! The sandbox's HTTP server: [`run`] accepts connections on a listener (hyper 1, HTTP/1.1 with
//! keep-alive, one task per connection, graceful shutdown), and the state shared by all of them
//! answers each request: the route's handler, the login and its token store, the injected faults,
//! and the page answers with their next links. What a request asks for is read in `routes.rs`;
//! bodies and replies are built in `render.rs` and `gzip.rs`; the test endpoint ([`test_rows`]) and
//! submitted reports ([`submit`]) have modules of their own.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::request::Parts;
use hyper::http::uri::Authority;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::data::Synthetic;
use super::gzip::{GzipStart, accepts_gzip};
use super::options::{LinkStyle, STALL, SandboxOptions};
use super::render::{
    Reply, bad_request, chunks_reply, json_reply, links_tail, render_page, synthetic_head,
};
use super::routes::{PageRequest, Route, route};
use super::{submit, test_rows};
use crate::error::{Error, Result};

/// Largest login body read; a bigger one is a 400.
pub(super) const MAX_LOGIN_BODY: usize = 64 * 1024;
/// How long shutdown waits for requests in flight before dropping their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (e.g. out of file descriptors) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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

/// State shared by all connections of one sandbox.
pub(super) struct Server {
    pub(super) options: SandboxOptions,
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
            Route::TestRows => test_rows::respond(self, parts, body).await,
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
    pub(super) fn origin(&self, headers: &HeaderMap) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::data::{Prerender, SandboxData};
    use crate::sandbox::options::LastLink;
    use crate::sandbox::render::render_synthetic_page;
    use crate::sandbox::synthetic::{self, SyntheticReport};
    use crate::sandbox::testing::{Running, odd_dataset, options_with, page_rows, raw_texts};

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
        let raw = crate::tls::http_client()
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
