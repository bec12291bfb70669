//! When and how long [`crate::source::client::ApiClient::get`] waits before trying a request
//! again. It owns the rules only: which answers are worth another attempt (408, 429, 500, 502,
//! 503, 504, and transport failures: connection errors, timeouts, bodies cut off mid-stream),
//! exponential backoff with full jitter, `Retry-After` as the minimum wait, and the attempt and
//! time budget per request. It sends nothing itself; the client runs the loop.
//!
//! A 401 is not a retryable status: the client logs in again once and retries once, as before.
//! Any other 4xx is final. Waiting uses `tokio::time`, so tests can run it on a paused clock.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How often and how long a request is retried. The defaults are what every request uses; there
/// are no command-line flags for them yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first one included.
    pub max_attempts: u32,
    /// Time from the first attempt after which no further attempt starts; waits are cut to it.
    pub deadline: Duration,
    /// Backoff ceiling before the first retry; it doubles with each retry.
    pub base: Duration,
    /// Largest backoff ceiling.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            deadline: Duration::from_secs(90),
            base: Duration::from_millis(250),
            cap: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The most the backoff may wait before retry number `retry` (0 for the first retry):
    /// `base * 2^retry`, at most `cap`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// How long to wait before retry number `retry`: a uniformly random duration up to
    /// [`RetryPolicy::ceiling`] (full jitter), at least `retry_after` when the server sent one,
    /// and never past the deadline (`remaining` is the time left until it).
    pub fn wait(&self, retry: u32, retry_after: Option<Duration>, remaining: Duration) -> Duration {
        let ceiling = self.ceiling(retry).as_millis() as u64;
        let jittered = Duration::from_millis(fastrand::u64(0..=ceiling));
        jittered.max(retry_after.unwrap_or_default()).min(remaining)
    }
}

/// Whether an HTTP status is worth another attempt (401 is handled by a re-login instead).
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// A `Retry-After` header value as a duration from `now`: delay-seconds, or an HTTP date (RFC
/// 2822 form, e.g. `Wed, 21 Oct 2015 07:28:00 GMT`; a date in the past is no wait). `None` when
/// the value is neither.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy::default();
        let ceilings: Vec<u128> = (0..8).map(|r| policy.ceiling(r).as_millis()).collect();
        assert_eq!(ceilings, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(policy.ceiling(u32::MAX), Duration::from_secs(10));
        let far = Duration::from_secs(1000);
        for retry in 0..10 {
            for _ in 0..100 {
                assert!(policy.wait(retry, None, far) <= policy.ceiling(retry));
            }
        }
    }

    #[test]
    fn retry_after_is_the_minimum_and_the_deadline_the_maximum() {
        let policy = RetryPolicy::default();
        let far = Duration::from_secs(1000);
        let at_least = Duration::from_secs(3);
        for _ in 0..100 {
            assert!(policy.wait(0, Some(at_least), far) >= at_least);
        }
        let remaining = Duration::from_millis(100);
        assert_eq!(
            policy.wait(0, Some(Duration::from_secs(60)), remaining),
            remaining
        );
        assert_eq!(policy.wait(0, None, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means no wait"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn only_transient_statuses_retry() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(status), "{status}");
        }
        for status in [200, 301, 400, 401, 403, 404, 405, 409, 410, 422, 501, 505] {
            assert!(!retryable_status(status), "{status}");
        }
    }
}
