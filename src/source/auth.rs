//! Login and the bearer token. With a username and password, the token comes from
//! `POST {auth_url}` (JSON `{"username", "password"}`; the token at `access_token`, `token` or
//! `accessToken`; `expires_in` honoured by logging in again shortly before expiry). With a ready
//! token, that token is used as is. The client asks for a fresh token once after a 401.
//! A login is a request like any other: it passes the connection's [`Gate`], an answer that
//! asks to back off holds the gate for the login's origin, and transient failures are retried
//! as the connection's [`RetryPolicy`] says.
//! Secrets stay in [`Secret`]; no error here ever contains the password or a token.

use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::header::RETRY_AFTER;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::error::{Error, Result, redact_url};
use crate::secret::Secret;
use crate::source::gate::Gate;
use crate::source::retry::{self, RetryPolicy};

/// What a login is sent through: the HTTP client, and the gate and retry rules of the
/// connection.
pub struct Via<'a> {
    pub http: &'a reqwest::Client,
    pub gate: &'a Gate,
    pub retry: &'a RetryPolicy,
}

/// How the tool authenticates.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A ready bearer token (KARGO_TOKEN, `--token-file` or a jobs file's `token_env` /
    /// `token_file`): no login.
    Token(Secret),
    /// Username and password sent to the authentication endpoint.
    Login {
        auth_url: Url,
        username: String,
        password: Secret,
    },
}

/// The current token, when to stop using it, and the lifetime its login answer stated.
struct CachedToken {
    token: Secret,
    renew_at: Option<Instant>,
    lifetime: Option<Duration>,
}

/// Hands out bearer tokens, logging in when needed. Shared (through [`Connection`]) by every
/// client of one connection, so the reports of a run log in once, not once each.
///
/// [`Connection`]: crate::source::client::Connection
pub struct Auth {
    credentials: Credentials,
    cached: Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Authentication with the given credentials; nothing is sent until the first token is needed.
    pub fn new(credentials: Credentials) -> Self {
        Auth {
            credentials,
            cached: Mutex::new(None),
        }
    }

    /// How this authenticates.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// A token that is not known to be expired.
    pub async fn token(&self, via: &Via<'_>) -> Result<Secret> {
        let mut cached = self.cached.lock().await;
        if let Some(current) = cached.as_ref()
            && current.renew_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(current.token.clone());
        }
        let fresh = self.obtain(via).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Logs in now unless a token is at hand, and returns the lifetime the login answer stated
    /// for the current token (`expires_in`); `None` when it stated none, and for a ready token,
    /// whose expiry is not known.
    pub async fn lifetime(&self, via: &Via<'_>) -> Result<Option<Duration>> {
        self.token(via).await?;
        let cached = self.cached.lock().await;
        Ok(cached.as_ref().and_then(|current| current.lifetime))
    }

    /// Called after the API answered 401 to `rejected`: logs in again (once per rejected token).
    pub async fn renew(&self, via: &Via<'_>, rejected: &Secret) -> Result<Secret> {
        let mut cached = self.cached.lock().await;
        if let Some(current) = cached.as_ref()
            && current.token != *rejected
        {
            return Ok(current.token.clone());
        }
        if let Credentials::Token(_) = self.credentials {
            return Err(Error::Auth {
                url: "bearer token".into(),
                reason: "the API rejected the given token (HTTP 401); it may have expired".into(),
            });
        }
        let fresh = self.obtain(via).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    async fn obtain(&self, via: &Via<'_>) -> Result<CachedToken> {
        match &self.credentials {
            Credentials::Token(token) => Ok(CachedToken {
                token: token.clone(),
                renew_at: None,
                lifetime: None,
            }),
            Credentials::Login {
                auth_url,
                username,
                password,
            } => login(via, auth_url, username, password).await,
        }
    }
}

/// Why a login attempt failed, and whether another attempt may help.
enum LoginFailure {
    /// A retryable status (with its `Retry-After`) or a connection failure (no status).
    Transient {
        reason: String,
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
    Final(Error),
}

/// `POST auth_url` with the credentials, through the gate and with retries; reads the token
/// and its lifetime.
async fn login(
    via: &Via<'_>,
    auth_url: &Url,
    username: &str,
    password: &Secret,
) -> Result<CachedToken> {
    let fail = |reason: String| Error::Auth {
        url: redact_url(auth_url),
        reason,
    };
    let body = serde_json::json!({ "username": username, "password": password.expose() });
    let policy = via.retry;
    let started = tokio::time::Instant::now();
    let deadline = started + policy.deadline;
    let mut attempt = 1;
    loop {
        let lease = match via.gate.pass(auth_url, deadline).await {
            Ok(lease) => lease,
            Err(left) => {
                return Err(fail(format!(
                    "login not sent: the API asked (Retry-After) to wait {:.1} s more, beyond \
                     the retry time left (--retry-max-time)",
                    left.as_secs_f64()
                )));
            }
        };
        let answer = login_once(via.http, auth_url, &body).await;
        drop(lease);
        let (reason, status, retry_after) = match answer {
            Ok(token) => return Ok(token),
            Err(LoginFailure::Final(error)) => return Err(error),
            Err(LoginFailure::Transient {
                reason,
                status,
                retry_after,
            }) => (reason, status, retry_after),
        };
        let backoff = policy.wait(attempt - 1, retry_after, Duration::MAX);
        if let Some(hold) = status.and_then(|s| retry::origin_hold(s, retry_after, backoff)) {
            via.gate.hold(auth_url, hold);
        }
        let elapsed = started.elapsed();
        let remaining = policy.deadline.saturating_sub(elapsed);
        let too_late = retry_after.is_some_and(|after| after > remaining);
        if attempt >= policy.max_attempts || remaining.is_zero() || too_late {
            return Err(fail(if attempt > 1 {
                format!(
                    "{reason} after {attempt} attempts in {:.1} s",
                    elapsed.as_secs_f64()
                )
            } else {
                reason
            }));
        }
        let wait = backoff.min(remaining);
        tracing::warn!(
            url = %redact_url(auth_url),
            attempt,
            wait_ms = wait.as_millis() as u64,
            %reason,
            "login failed, retrying"
        );
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// One login attempt.
async fn login_once(
    http: &reqwest::Client,
    auth_url: &Url,
    body: &Value,
) -> std::result::Result<CachedToken, LoginFailure> {
    let fail = |reason: String| {
        LoginFailure::Final(Error::Auth {
            url: redact_url(auth_url),
            reason,
        })
    };
    let started = Instant::now();
    let response = match http.post(auth_url.clone()).json(body).send().await {
        Ok(response) => response,
        Err(e) => {
            let transient = e.is_connect() || e.is_timeout();
            let reason = format!("login request failed: {}", e.without_url());
            return Err(if transient {
                LoginFailure::Transient {
                    reason,
                    status: None,
                    retry_after: None,
                }
            } else {
                fail(reason)
            });
        }
    };
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(fail(format!(
            "the API rejected the username or password (HTTP {})",
            status.as_u16()
        )));
    }
    if !status.is_success() {
        let reason = format!("login answered HTTP {}", status.as_u16());
        if !retry::retryable_status(status.as_u16()) {
            return Err(fail(reason));
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| retry::parse_retry_after(value, chrono::Utc::now()));
        return Err(LoginFailure::Transient {
            reason,
            status: Some(status.as_u16()),
            retry_after,
        });
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| fail(format!("login response cut off: {}", e.without_url())))?;
    let reply: Value =
        serde_json::from_slice(&bytes).map_err(|_| fail("login response is not JSON".into()))?;
    let token = ["access_token", "token", "accessToken"]
        .iter()
        .find_map(|key| reply.get(key).and_then(Value::as_str))
        .filter(|token| !token.is_empty())
        .ok_or_else(|| fail("login response has no access_token".into()))?;
    let lifetime = expires_in(&reply);
    let renew_at = lifetime.map(|lifetime| started + renew_after(lifetime));
    tracing::debug!(expires_in = ?lifetime, "logged in");
    Ok(CachedToken {
        token: Secret::new(token),
        renew_at,
        lifetime,
    })
}

/// `expires_in` as a number or a numeric string, in seconds.
fn expires_in(reply: &Value) -> Option<Duration> {
    let value = reply.get("expires_in")?;
    let seconds = value
        .as_f64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// When to log in again: a tenth of the lifetime (at most a minute) before it ends.
fn renew_after(lifetime: Duration) -> Duration {
    lifetime.saturating_sub((lifetime / 10).min(Duration::from_secs(60)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A login endpoint on loopback whose first answer is `429` with `Retry-After: 1` and the
    /// next ones a token; returns its URL and when each login arrived.
    async fn rate_limited_login() -> (Url, Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/auth/token", listener.local_addr().unwrap());
        let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&arrivals);
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                // Head and body (the body is small JSON): read until the body is complete.
                while !complete(&request) {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let logins = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(tokio::time::Instant::now());
                    seen.len()
                };
                let reply = if logins == 1 {
                    "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\
                     Connection: close\r\n\r\n"
                        .to_owned()
                } else {
                    let body = r#"{"access_token": "t-1", "expires_in": 3600}"#;
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \
                         {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        });
        (Url::parse(&url).unwrap(), arrivals)
    }

    /// Whether `request` holds a whole HTTP request (head and `Content-Length` bytes of body).
    fn complete(request: &[u8]) -> bool {
        let text = String::from_utf8_lossy(request);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return false;
        };
        let length = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        body.len() >= length
    }

    #[tokio::test]
    async fn a_429_on_the_login_holds_its_origin_and_the_login_is_retried_after_it() {
        let (auth_url, arrivals) = rate_limited_login().await;
        let auth = Auth::new(Credentials::Login {
            auth_url: auth_url.clone(),
            username: "svc".into(),
            password: Secret::new("pw"),
        });
        let http = reqwest::Client::new();
        let gate = Gate::default();
        let retry = RetryPolicy::default();
        let via = Via {
            http: &http,
            gate: &gate,
            retry: &retry,
        };
        let held = async {
            while gate.held_for(&auth_url).is_none() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let (token, held) = tokio::join!(
            auth.token(&via),
            tokio::time::timeout(Duration::from_secs(2), held)
        );
        assert_eq!(token.unwrap().expose(), "t-1");
        assert!(held.is_ok(), "the 429 held the login's origin");
        let arrivals = arrivals.lock().unwrap().clone();
        assert_eq!(arrivals.len(), 2, "one 429, then the login");
        assert!(arrivals[1] - arrivals[0] >= Duration::from_secs(1));
    }

    #[test]
    fn renews_shortly_before_expiry() {
        assert_eq!(
            renew_after(Duration::from_secs(3600)),
            Duration::from_secs(3540)
        );
        assert_eq!(
            renew_after(Duration::from_secs(100)),
            Duration::from_secs(90)
        );
        assert_eq!(renew_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn reads_expires_in_as_number_or_string() {
        let secs = |v: Value| expires_in(&v).map(|d| d.as_secs());
        assert_eq!(secs(serde_json::json!({"expires_in": 30})), Some(30));
        assert_eq!(secs(serde_json::json!({"expires_in": "45"})), Some(45));
        assert_eq!(secs(serde_json::json!({"expires_in": -1})), None);
        assert_eq!(secs(serde_json::json!({})), None);
    }
}
