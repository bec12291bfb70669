//! Fetching ahead: pages are fetched in order while earlier pages are still being processed on
//! blocking threads, so network, decoding and the next request overlap and both cores work.
//!
//! A page's real next link is only known once the page is decoded, so the page to fetch ahead
//! is guessed ([`Pagination::guess`]: from the end of the page, or the next page number). Guesses are verified in page
//! order against the decoded link through [`Pagination`] (which keeps the loop guard): a wrong
//! guess throws away the pages fetched on it and continues from the real link. At most `depth`
//! pages are in flight, which bounds memory.
//!
//! Every fetch, guessed or not, passes the connection's back-off gate, so a page is never
//! fetched ahead while the server has asked the client to wait. A page fetched on a guess gets
//! one attempt; when it fails, nothing more is fetched ahead, and once the guess is confirmed
//! the page is fetched again only after that failure's back-off (at least its `Retry-After`),
//! the failed attempt counting toward the retry bounds.
//!
//! A 200 answer whose body turns out not to be valid JSON (cut short, or corrupted on the way)
//! is a transient failure like a cut-off body: the page is fetched again with the client's
//! [`RetryPolicy`](super::retry::RetryPolicy) backoff, the first fetch counting as one attempt.
//! Only broken JSON is retried; a page that parses but has a bad row or no rows at the data
//! path fails at once. Each page in flight keeps its (shared) body until it is consumed, for that check.

use std::collections::VecDeque;
use std::sync::Arc;

use reqwest::Url;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::client::{ApiClient, Deferred, Fetched};
use super::endpoint::Endpoint;
use super::formats::ContentFormat;
use super::paginate::{PageEnd, Pagination};
use crate::error::{Error, PageLocation, Result, redact_url};

/// A page fetched and being processed.
struct InFlight<T> {
    url: Url,
    at: PageLocation,
    /// The answer being processed, to tell broken JSON from other page errors.
    page: Fetched,
    task: JoinHandle<Result<(T, PageEnd)>>,
}

/// Fetches every page of `endpoint`, runs `process` on each (on a blocking thread; it returns
/// its result and how the page ends) and hands the results to `consume` in page order.
/// Results of pages fetched on a wrong guess go to `discard`. Returns the number of pages.
pub async fn process_pages<T, P>(
    client: &ApiClient,
    endpoint: &Endpoint,
    depth: usize,
    process: P,
    mut consume: impl FnMut(T, &PageLocation) -> Result<()>,
    mut discard: impl FnMut(T),
) -> Result<u64>
where
    T: Send + 'static,
    P: Fn(Fetched, &PageLocation) -> Result<(T, PageEnd)> + Send + Sync + 'static,
{
    let process = Arc::new(process);
    let mut pages = Pagination::new(endpoint.url.clone(), endpoint.paging.clone());
    let mut queue: VecDeque<InFlight<T>> = VecDeque::new();
    let mut ahead = pages.next_page();
    let mut failed: Option<(Url, Deferred)> = None;
    let result = async {
        loop {
            let mut next = Next {
                ahead: &mut ahead,
                failed: &mut failed,
            };
            fill(
                client,
                endpoint,
                &process,
                &pages,
                &mut queue,
                &mut next,
                depth.max(1),
            )
            .await?;
            let Some(head) = queue.pop_front() else {
                return Ok(pages.pages_fetched());
            };
            let (value, end) = match join(head.task).await {
                Err(error) if is_broken_json(&error, &head.page) => {
                    refetch(client, endpoint, &process, &head.url, &head.at, error).await?
                }
                processed => processed?,
            };
            tracing::trace!(page = head.at.page, "processed");
            pages.advance(&head.url, &end, &head.at)?;
            consume(value, &head.at)?;
            let confirmed = pages.next_page();
            let guessed_right = match (&confirmed, queue.front()) {
                (Some((url, _)), Some(queued)) => *url == queued.url,
                _ => false,
            };
            if !guessed_right {
                drain(&mut queue, &mut discard).await;
                ahead = confirmed;
            }
        }
    }
    .await;
    drain(&mut queue, &mut discard).await;
    result
}

/// The page to fetch next, and the page whose fetch on a guess failed (with its back-off).
struct Next<'a> {
    ahead: &'a mut Option<(Url, PageLocation)>,
    failed: &'a mut Option<(Url, Deferred)>,
}

/// Fetches pages ahead until `depth` are in flight or no further page is known.
async fn fill<T, P>(
    client: &ApiClient,
    endpoint: &Endpoint,
    process: &Arc<P>,
    pages: &Pagination,
    queue: &mut VecDeque<InFlight<T>>,
    next: &mut Next<'_>,
    depth: usize,
) -> Result<()>
where
    T: Send + 'static,
    P: Fn(Fetched, &PageLocation) -> Result<(T, PageEnd)> + Send + Sync + 'static,
{
    while queue.len() < depth {
        let Some((url, at)) = next.ahead.take() else {
            return Ok(());
        };
        // A page fetched on a guess gets one attempt and may fail quietly: once confirmed it is
        // fetched again, after its back-off, with retries. The confirmed head of the queue gets
        // the full policy.
        let guessed = !queue.is_empty();
        let request = &endpoint.request;
        let earlier = next.failed.take();
        let fetched = match earlier {
            Some((failed_url, failure)) if failed_url == url => {
                if guessed {
                    // Not confirmed yet: wait for that rather than for the back-off.
                    *next.failed = Some((failed_url, failure));
                    *next.ahead = Some((url, at));
                    return Ok(());
                }
                tracing::trace!(url = %at.url, page = at.page, "fetch start, after a failed fetch ahead");
                client.fetch_after(request, &url, &at, failure).await
            }
            _ if guessed => {
                tracing::trace!(url = %at.url, page = at.page, "fetch start, ahead");
                match client.fetch_ahead(request, &url, &at).await {
                    Ok(page) => Ok(page),
                    Err(failure) => {
                        tracing::warn!(
                            url = %at.url,
                            wait_ms = failure.wait().as_millis() as u64,
                            reason = %failure.error(),
                            "request failed, retrying"
                        );
                        *next.failed = Some((url, failure));
                        return Ok(());
                    }
                }
            }
            _ => {
                tracing::trace!(url = %at.url, page = at.page, "fetch start");
                client.fetch(request, &url, &at).await
            }
        };
        let page = fetched?;
        let ahead = &mut *next.ahead;
        *ahead = pages
            .guess(&url, &page.body)
            .filter(|next| {
                !pages.visited(next) && *next != url && !queue.iter().any(|q| q.url == *next)
            })
            .map(|next| {
                let at = PageLocation {
                    url: redact_url(&next),
                    page: at.page + 1,
                };
                (next, at)
            });
        tracing::trace!(page = at.page, guessed = ahead.is_some(), "fetched");
        let task = spawn_process(process, page.clone(), &at);
        queue.push_back(InFlight {
            url,
            at,
            page,
            task,
        });
    }
    Ok(())
}

fn spawn_process<T, P>(
    process: &Arc<P>,
    page: Fetched,
    at: &PageLocation,
) -> JoinHandle<Result<(T, PageEnd)>>
where
    T: Send + 'static,
    P: Fn(Fetched, &PageLocation) -> Result<(T, PageEnd)> + Send + Sync + 'static,
{
    let job = Arc::clone(process);
    let at = at.clone();
    tokio::task::spawn_blocking(move || job(page, &at))
}

/// Whether processing failed because a JSON `page` is not valid JSON at all (checked only after
/// a page error, so pages that decode pay nothing for it). A page read as it arrived cannot be
/// checked whole afterwards: its page errors, and a body cut off on the way, all count.
fn is_broken_json(error: &Error, page: &Fetched) -> bool {
    if page.rest.is_some() {
        return matches!(error, Error::Http { status: None, .. } | Error::Page { .. });
    }
    matches!(error, Error::Page { .. })
        && page.format == ContentFormat::Json
        && serde_json::from_slice::<serde::de::IgnoredAny>(&page.body).is_err()
}

/// Fetches and processes a page again after its body was broken JSON (`error`), with backoff,
/// until it processes or the retry policy's attempts (the first fetch included) or time run out;
/// then the last error says how many attempts were made.
async fn refetch<T, P>(
    client: &ApiClient,
    endpoint: &Endpoint,
    process: &Arc<P>,
    url: &Url,
    at: &PageLocation,
    mut error: Error,
) -> Result<(T, PageEnd)>
where
    T: Send + 'static,
    P: Fn(Fetched, &PageLocation) -> Result<(T, PageEnd)> + Send + Sync + 'static,
{
    let policy = client.retry_policy();
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        let remaining = policy.deadline.saturating_sub(started.elapsed());
        if attempt >= policy.max_attempts || remaining.is_zero() {
            return Err(with_attempts(error, attempt, started.elapsed()));
        }
        let wait = policy.wait(attempt - 1, None, remaining);
        tracing::warn!(
            url = %at.url,
            attempt,
            wait_ms = wait.as_millis() as u64,
            reason = "body is not valid JSON",
            "request failed, retrying"
        );
        tokio::time::sleep(wait).await;
        attempt += 1;
        let page = client.fetch(&endpoint.request, url, at).await?;
        match join(spawn_process(process, page.clone(), at)).await {
            Err(next) if is_broken_json(&next, &page) => error = next,
            processed => return processed,
        }
    }
}

/// A page error with the number of attempts made and the time the retries took.
fn with_attempts(error: Error, attempts: u32, elapsed: std::time::Duration) -> Error {
    match error {
        Error::Page { at, reason } if attempts > 1 => Error::Page {
            at,
            reason: format!(
                "{reason} (after {attempts} attempts in {:.1} s)",
                elapsed.as_secs_f64()
            ),
        },
        other => other,
    }
}

async fn join<T>(task: JoinHandle<Result<T>>) -> Result<T> {
    task.await
        .map_err(|e| Error::Internal(format!("page task failed: {e}")))?
}

/// Waits for every queued page and discards its result.
async fn drain<T>(queue: &mut VecDeque<InFlight<T>>, discard: &mut impl FnMut(T)) {
    for job in queue.drain(..) {
        if let Ok(Ok((value, _))) = job.task.await {
            discard(value);
        }
    }
}
