//! The HTTP side of an export: login ([`auth`]), authenticated requests ([`client`]) with
//! their retries ([`retry`]) and the back-off gate and rate limit every request of the process
//! passes ([`gate`]), what to fetch and how to read it ([`endpoint`]: the templates are presets
//! of a manual endpoint),
//! following pages ([`paginate`]), fetching pages ahead while earlier ones are processed
//! ([`readahead`]), walking a page of the default shape in one pass to find its rows and next
//! link ([`extract`], which feeds the rows to a [`crate::decode::RowDecoder`] or hands them out
//! raw), the general path for other shapes ([`jsonpath`], [`formats`]), and the typed reading of
//! report requests ([`reports`]). Nothing outside
//! this module knows about HTTP status codes or tokens.

pub mod auth;
pub mod body;
pub mod client;
pub mod endpoint;
pub mod extract;
pub mod formats;
pub mod gate;
pub mod jsonpath;
pub mod paginate;
pub mod readahead;
pub mod reports;
pub mod retry;
pub mod stream;

use bytes::Bytes;
use reqwest::Url;

use crate::error::{PageLocation, Result};
use client::ApiClient;
use paginate::{PageEnd, Pagination, Paging};

/// Fetches every page starting at `first`, handing each page's bytes to `handle`, which returns
/// the page's raw next link (`None` when the page has none). Returns the number of pages.
pub async fn for_each_page(
    client: &ApiClient,
    first: Url,
    mut handle: impl AsyncFnMut(Bytes, &PageLocation) -> Result<Option<String>>,
) -> Result<u64> {
    let mut pages = Pagination::new(first, Paging::default_next());
    while let Some((url, at)) = pages.next_page() {
        let body = client.get(&url, &at).await?;
        let next = handle(body, &at).await?;
        pages.advance(&url, &PageEnd::link(next), &at)?;
    }
    Ok(pages.pages_fetched())
}
