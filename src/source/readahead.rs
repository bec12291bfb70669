//! Fetching ahead: pages are fetched in order while earlier pages are still being processed on
//! blocking threads, so network, decoding and the next request overlap and both cores work.
//!
//! A page's real next link is only known once the page is decoded, so the link to fetch ahead
//! is guessed from the end of the page ([`guess_next_link`]). Guesses are verified in page
//! order against the decoded link through [`Pagination`] (which keeps the loop guard): a wrong
//! guess throws away the pages fetched on it and continues from the real link. At most `depth`
//! pages are in flight, which bounds memory.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::Url;
use tokio::task::JoinHandle;

use super::client::ApiClient;
use super::paginate::{Pagination, guess_next_link};
use crate::error::{Error, PageLocation, Result, redact_url};

/// A page fetched and being processed.
struct InFlight<T> {
    url: Url,
    at: PageLocation,
    task: JoinHandle<Result<(T, Option<String>)>>,
}

/// Fetches every page from `first`, runs `process` on each (on a blocking thread; it returns
/// its result and the page's raw next link) and hands the results to `consume` in page order.
/// Results of pages fetched on a wrong guess go to `discard`. Returns the number of pages.
pub async fn process_pages<T, P>(
    client: &ApiClient,
    first: Url,
    depth: usize,
    process: P,
    mut consume: impl FnMut(T, &PageLocation) -> Result<()>,
    mut discard: impl FnMut(T),
) -> Result<u64>
where
    T: Send + 'static,
    P: Fn(Bytes, &PageLocation) -> Result<(T, Option<String>)> + Send + Sync + 'static,
{
    let process = Arc::new(process);
    let mut pages = Pagination::new(first);
    let mut queue: VecDeque<InFlight<T>> = VecDeque::new();
    let mut ahead = pages.next_page();
    let result = async {
        loop {
            fill(
                client,
                &process,
                &pages,
                &mut queue,
                &mut ahead,
                depth.max(1),
            )
            .await?;
            let Some(head) = queue.pop_front() else {
                return Ok(pages.pages_fetched());
            };
            let (value, next) = join(head.task).await?;
            tracing::trace!(page = head.at.page, "processed");
            pages.follow(&head.url, next.as_deref(), &head.at)?;
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

/// Fetches pages ahead until `depth` are in flight or no further page is known.
async fn fill<T, P>(
    client: &ApiClient,
    process: &Arc<P>,
    pages: &Pagination,
    queue: &mut VecDeque<InFlight<T>>,
    ahead: &mut Option<(Url, PageLocation)>,
    depth: usize,
) -> Result<()>
where
    T: Send + 'static,
    P: Fn(Bytes, &PageLocation) -> Result<(T, Option<String>)> + Send + Sync + 'static,
{
    while queue.len() < depth {
        let Some((url, at)) = ahead.take() else {
            return Ok(());
        };
        tracing::trace!(page = at.page, "fetch start");
        let body = match client.get(&url, &at).await {
            Ok(body) => body,
            // Only a guessed page may fail quietly: its confirmation will fetch it again.
            Err(_) if !queue.is_empty() => return Ok(()),
            Err(e) => return Err(e),
        };
        *ahead = guess_next_link(&body)
            .and_then(|link| url.join(&link).ok())
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
        let job = Arc::clone(process);
        let job_at = at.clone();
        let task = tokio::task::spawn_blocking(move || job(body, &job_at));
        queue.push_back(InFlight { url, at, task });
    }
    Ok(())
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
