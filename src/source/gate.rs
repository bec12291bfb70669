//! The back-off gate every request of a connection passes before it is sent: pages of every
//! report, pages fetched ahead, report lists, submissions and logins alike (clones of a
//! [`Connection`](super::client::Connection) share one gate, so it spans the whole process).
//!
//! It keeps two things. Per origin (scheme, host, port), an instant before which nothing is
//! sent there: a server that answers one request with `429` or `503` and `Retry-After` (or `429`
//! alone) has asked the client to back off, so the client ([`super::client`], [`super::auth`])
//! holds the origin and every request to it waits, not only the one that was answered.
//!
//! And the client-side rate limit (`--max-requests-per-second N`), in two rules. Request starts
//! are spaced 1/N s apart (no bursts; N a second in the long run). And a request counts from
//! the moment it passes until one second after its answer began (a [`Lease`]): no more than
//! ⌊N⌋ (at least 1) count at once. A request reaches the server after it passes and before its
//! answer begins, so whatever the network delays, no second of the server's clock sees more
//! than ⌊N⌋ of them; the price is that slow answers lower the rate below N.
//!
//! It decides nothing about retries ([`super::retry`]) and sends nothing. Waiting uses
//! `tokio::time`, so tests run it on a paused clock.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use reqwest::Url;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long after its answer began a request still counts against the rate limit.
const WINDOW: Duration = Duration::from_secs(1);

/// Holds per origin and the rate limit, shared by every request of a connection.
#[derive(Debug, Default)]
pub struct Gate {
    /// Origin (`scheme://host:port`) -> the instant before which nothing is sent there.
    held: Mutex<HashMap<String, Instant>>,
    /// The rate limit, when there is one.
    pace: Option<Pace>,
}

/// The rate limit: spaced starts, and at most `most` requests counting at once.
#[derive(Debug)]
struct Pace {
    interval: Duration,
    most: usize,
    state: Mutex<PaceState>,
    /// Signalled whenever a request stops being in flight.
    answered: Notify,
}

#[derive(Debug, Default)]
struct PaceState {
    /// The earliest start of the next request.
    next: Option<Instant>,
    /// Requests passed and not answered yet.
    in_flight: usize,
    /// When each request answered in the last [`WINDOW`] stops counting, in order.
    counted_until: VecDeque<Instant>,
}

/// A passed request's place in the rate limit: hold it until the answer begins (or the request
/// failed); dropping it starts the request's last [`WINDOW`] of counting.
#[must_use = "a request counts against the rate limit until its lease is dropped"]
pub struct Lease<'a> {
    pace: Option<&'a Pace>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(pace) = self.pace {
            pace.end(true);
        }
    }
}

impl Gate {
    /// A gate with nothing held and at most `max_requests_per_second` requests a second
    /// (`None`: no limit). The rate must be positive and finite; the settings check it.
    pub fn new(max_requests_per_second: Option<f64>) -> Self {
        let pace = max_requests_per_second
            .filter(|rate| rate.is_finite() && *rate > 0.0)
            .map(|rate| Pace {
                interval: Duration::try_from_secs_f64(1.0 / rate)
                    .unwrap_or(Duration::from_secs(u64::from(u32::MAX))),
                most: (rate.floor() as usize).max(1),
                state: Mutex::new(PaceState::default()),
                answered: Notify::new(),
            });
        Gate {
            held: Mutex::new(HashMap::new()),
            pace,
        }
    }

    /// Holds `url`'s origin for `wait` from now (a longer hold already in place stays).
    pub fn hold(&self, url: &Url, wait: Duration) {
        let until = Instant::now() + wait;
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = held.entry(origin(url)).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// How much longer `url`'s origin is held, if it is.
    pub fn held_for(&self, url: &Url) -> Option<Duration> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let until = *held.get(&origin(url))?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// Waits until a request to `url` may be sent: its origin is not held and the rate limit
    /// lets it start. The [`Lease`] is held until the answer begins. A hold that ends after
    /// `deadline` is not waited for: `Err` says how much longer it lasts, so the request can
    /// fail now instead of being sent when the server asked it not to be.
    pub async fn pass(&self, url: &Url, deadline: Instant) -> Result<Lease<'_>, Duration> {
        loop {
            if let Some(left) = self.held_for(url) {
                if Instant::now() + left > deadline {
                    return Err(left);
                }
                tracing::debug!(
                    origin = %origin(url),
                    wait_ms = left.as_millis() as u64,
                    "waiting for the origin's back-off"
                );
                tokio::time::sleep(left).await;
                continue;
            }
            let Some(pace) = &self.pace else {
                return Ok(Lease { pace: None });
            };
            pace.begin().await;
            // The origin may have been held while this request waited for the rate limit:
            // then it gives its place back unsent and waits again.
            if self.held_for(url).is_none() {
                return Ok(Lease { pace: Some(pace) });
            }
            pace.end(false);
        }
    }
}

impl Pace {
    /// Waits until fewer than `most` requests count, takes a place, then waits for the next
    /// start.
    async fn begin(&self) {
        loop {
            let answered = self.answered.notified();
            match self.try_begin() {
                Ok(start) => return tokio::time::sleep_until(start).await,
                // Every place is taken: the earliest answered one frees up first, unless all
                // are in flight, then one of them must be answered.
                Err(Some(until)) => tokio::time::sleep_until(until).await,
                Err(None) => answered.await,
            }
        }
    }

    /// Takes a place and the next start when fewer than `most` requests count; else says when
    /// the first place frees up (`None`: when a request in flight is answered).
    fn try_begin(&self) -> Result<Instant, Option<Instant>> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while state
            .counted_until
            .front()
            .is_some_and(|until| *until <= now)
        {
            state.counted_until.pop_front();
        }
        if state.in_flight + state.counted_until.len() >= self.most {
            return Err(state.counted_until.front().copied());
        }
        state.in_flight += 1;
        let start = state.next.map_or(now, |next| next.max(now));
        state.next = Some(start + self.interval);
        Ok(start)
    }

    /// A request stops being in flight: `answered` (or failed after being sent), it counts for
    /// one more [`WINDOW`]; not sent, it stops counting now.
    fn end(&self, answered: bool) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.in_flight = state.in_flight.saturating_sub(1);
        if answered {
            state.counted_until.push_back(Instant::now() + WINDOW);
        }
        drop(state);
        self.answered.notify_waiters();
    }
}

/// `scheme://host:port` of `url`.
fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    /// Passes `gate` for `url` and counts the request as answered at once.
    async fn send(gate: &Gate, url: &Url) {
        drop(gate.pass(url, far()).await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_delays_every_request_to_its_origin_and_no_other() {
        let gate = Gate::new(None);
        let start = Instant::now();
        gate.hold(&url("http://a.example/v1/x?page=3"), Duration::from_secs(1));
        send(&gate, &url("http://b.example/v1/x")).await;
        send(&gate, &url("http://a.example:81/")).await;
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "other origins pass at once"
        );
        send(&gate, &url("http://a.example/v1/reports")).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        send(&gate, &url("http://a.example/")).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1), "the hold is over");
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_hold_never_shortens_a_longer_one() {
        let gate = Gate::new(None);
        let a = url("https://a.example/");
        gate.hold(&a, Duration::from_secs(5));
        gate.hold(&a, Duration::from_secs(1));
        assert_eq!(gate.held_for(&a), Some(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(gate.held_for(&a), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_past_the_deadline_is_refused_at_once() {
        let gate = Gate::new(None);
        let a = url("https://a.example/");
        gate.hold(&a, Duration::from_secs(120));
        let start = Instant::now();
        let left = gate
            .pass(&a, start + Duration::from_secs(90))
            .await
            .err()
            .unwrap();
        assert_eq!(left, Duration::from_secs(120));
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    /// Starts `count` requests at once over two origins through `gate`, each answered
    /// `latency` after it passes; returns when each passed, in order.
    async fn burst(gate: &Arc<Gate>, count: usize, latency: Duration) -> Vec<Duration> {
        let start = Instant::now();
        let tasks: Vec<_> = (0..count)
            .map(|i| {
                let gate = Arc::clone(gate);
                let host = if i % 2 == 0 { "a" } else { "b" };
                tokio::spawn(async move {
                    let lease = gate
                        .pass(&url(&format!("http://{host}.example/")), far())
                        .await
                        .unwrap();
                    let passed = start.elapsed();
                    tokio::time::sleep(latency).await;
                    drop(lease);
                    passed
                })
            })
            .collect();
        let mut passed = Vec::new();
        for task in tasks {
            passed.push(task.await.unwrap());
        }
        passed.sort();
        passed
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_spaces_requests_evenly() {
        let gate = Arc::new(Gate::new(Some(4.0)));
        let passed = burst(&gate, 9, Duration::ZERO).await;
        let ms: Vec<u128> = passed.iter().map(Duration::as_millis).collect();
        // 250 ms apart, and the 5th a second after the 1st was answered.
        assert_eq!(ms, [0, 250, 500, 750, 1000, 1250, 1500, 1750, 2000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_counts_until_a_second_after_its_answer() {
        // Answers take 400 ms: 4 a second would put the 5th start 400 ms after the 1st was
        // answered, so it waits until that answer is a second old.
        let gate = Arc::new(Gate::new(Some(4.0)));
        let passed = burst(&gate, 6, Duration::from_millis(400)).await;
        let ms: Vec<u128> = passed.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 250, 500, 750, 1400, 1650]);
        // A fraction is the average; at most ⌊N⌋ (here 1) count at once.
        let gate = Arc::new(Gate::new(Some(1.5)));
        let passed = burst(&gate, 3, Duration::from_millis(100)).await;
        let ms: Vec<u128> = passed.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 1100, 2200]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_while_waiting_for_the_rate_limit_is_waited_out_first() {
        let gate = Arc::new(Gate::new(Some(1.0)));
        let a = url("http://a.example/");
        let start = Instant::now();
        send(&gate, &a).await;
        let waiting = {
            let gate = Arc::clone(&gate);
            let a = a.clone();
            tokio::spawn(async move {
                send(&gate, &a).await;
                start.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        gate.hold(&a, Duration::from_secs(2));
        let passed = waiting.await.unwrap();
        // Its place (at 1 s) was given back unsent, so the next start after the hold is free.
        assert_eq!(
            passed,
            Duration::from_millis(2500),
            "not before the hold ends"
        );
    }
}
