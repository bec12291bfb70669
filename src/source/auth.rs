//! Login and the bearer token. With a username and password, the token comes from
//! `POST {auth_url}` (JSON `{"username", "password"}`; the token at `access_token`, `token` or
//! `accessToken`; `expires_in` honoured by logging in again shortly before expiry). With a ready
//! token, that token is used as is. The client asks for a fresh token once after a 401.
//! Secrets stay in [`Secret`]; no error here ever contains the password or a token.

use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::error::{Error, Result, redact_url};
use crate::secret::Secret;

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

/// The current token and when to stop using it.
struct CachedToken {
    token: Secret,
    renew_at: Option<Instant>,
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
    pub async fn token(&self, http: &reqwest::Client) -> Result<Secret> {
        let mut cached = self.cached.lock().await;
        if let Some(current) = cached.as_ref()
            && current.renew_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(current.token.clone());
        }
        let fresh = self.obtain(http).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Called after the API answered 401 to `rejected`: logs in again (once per rejected token).
    pub async fn renew(&self, http: &reqwest::Client, rejected: &Secret) -> Result<Secret> {
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
        let fresh = self.obtain(http).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    async fn obtain(&self, http: &reqwest::Client) -> Result<CachedToken> {
        match &self.credentials {
            Credentials::Token(token) => Ok(CachedToken {
                token: token.clone(),
                renew_at: None,
            }),
            Credentials::Login {
                auth_url,
                username,
                password,
            } => login(http, auth_url, username, password).await,
        }
    }
}

/// `POST auth_url` with the credentials; reads the token and its lifetime.
async fn login(
    http: &reqwest::Client,
    auth_url: &Url,
    username: &str,
    password: &Secret,
) -> Result<CachedToken> {
    let fail = |reason: String| Error::Auth {
        url: redact_url(auth_url),
        reason,
    };
    let body = serde_json::json!({ "username": username, "password": password.expose() });
    let started = Instant::now();
    let response = http
        .post(auth_url.clone())
        .json(&body)
        .send()
        .await
        .map_err(|e| fail(format!("login request failed: {}", e.without_url())))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(fail(format!(
            "the API rejected the username or password (HTTP {})",
            status.as_u16()
        )));
    }
    if !status.is_success() {
        return Err(fail(format!("login answered HTTP {}", status.as_u16())));
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
    let renew_at = expires_in(&reply).map(|lifetime| started + renew_after(lifetime));
    tracing::debug!(expires_in = ?expires_in(&reply), "logged in");
    Ok(CachedToken {
        token: Secret::new(token),
        renew_at,
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
    use super::*;

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
