//! When and how long [`crate::source::client::ApiClient::fetch`] waits before trying a request
//! again. It owns the rules only: which answers are worth another attempt (408, 429, 500, 502,
//! 503, 504, and transport failures: connection errors, timeouts, bodies cut off mid-stream),
//! exponential backoff with full jitter, `Retry-After` as the minimum wait, the attempt and
//! time budget per request (`--retries`, `--retry-max-time`), and which answers hold the whole
//! origin ([`origin_hold`], kept by [`super::gate`]). It sends nothing itself; the client runs
//! the loop.
//!
//! A 401 is not a retryable status: the client logs in again once and retries once, as before.
//! Any other 4xx is final. Waiting uses `tokio::time`, so tests can run it on a paused clock.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How often and how long a request is retried. The defaults (5 attempts, 90 s) apply unless
/// `--retries` and `--retry-max-time` (or the jobs file's `retries` and
/// `retry_max_time_secs`) say otherwise.
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
    /// The default backoff with `retries` retries after the first attempt (the default: 4) and
    /// no attempt starting later than `max_time` after the first (the default: 90 s).
    pub fn new(retries: Option<u32>, max_time: Option<Duration>) -> Self {
        let default = Self::default();
        Self {
            max_attempts: retries.map_or(default.max_attempts, |r| r.saturating_add(1)),
            deadline: max_time.unwrap_or(default.deadline),
            ..default
        }
    }

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

/// How long an answer with `status` holds every request to its origin, not only its own: a
/// `429` for its `Retry-After`, or without one for `backoff` (the retry schedule's wait); a
/// `503` for its `Retry-After` only. `None` for anything else: a server error without that
/// header delays only the request it answered.
pub fn origin_hold(
    status: u16,
    retry_after: Option<Duration>,
    backoff: Duration,
) -> Option<Duration> {
    match (status, retry_after) {
        (429, after) => Some(after.unwrap_or(backoff)),
        (503, Some(after)) => Some(after),
        _ => None,
    }
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
    fn retries_and_max_time_replace_the_defaults() {
        assert_eq!(RetryPolicy::new(None, None), RetryPolicy::default());
        let policy = RetryPolicy::new(Some(0), Some(Duration::from_secs(3)));
        assert_eq!(policy.max_attempts, 1);
        assert_eq!(policy.deadline, Duration::from_secs(3));
        assert_eq!(policy.base, RetryPolicy::default().base);
        assert_eq!(
            RetryPolicy::new(Some(u32::MAX), None).max_attempts,
            u32::MAX
        );
    }

    #[test]
    fn rate_limits_and_unavailable_with_retry_after_hold_the_origin() {
        let second = Some(Duration::from_secs(1));
        let backoff = Duration::from_millis(180);
        assert_eq!(origin_hold(429, second, backoff), second);
        assert_eq!(origin_hold(429, None, backoff), Some(backoff));
        assert_eq!(origin_hold(503, second, backoff), second);
        assert_eq!(origin_hold(503, None, backoff), None);
        for status in [408, 500, 502, 504] {
            assert_eq!(origin_hold(status, second, backoff), None, "{status}");
        }
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
