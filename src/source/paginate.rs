//! Following `links.next` from page to page: a small state machine that resolves each link
//! against the URL of the page it came from (RFC 3986, so absolute, root-relative and
//! query-relative links all work), stops on a missing, null or empty link, and refuses a link
//! it has already visited in this export, so a looping API can never make an export run forever.
//! It does not fetch anything; [`super::for_each_page`] and [`super::readahead`] drive it.

use std::collections::HashSet;

use reqwest::Url;

use crate::error::{Error, PageLocation, Result, redact_url};

/// Pagination state of one listing.
#[derive(Debug)]
pub struct Pagination {
    next: Option<Url>,
    visited: HashSet<Url>,
    fetched: u64,
}

impl Pagination {
    /// Starts at `first`.
    pub fn new(first: Url) -> Self {
        Pagination {
            next: Some(first),
            visited: HashSet::new(),
            fetched: 0,
        }
    }

    /// The next URL to fetch and its location (1-based page number), or `None` when done.
    pub fn next_page(&mut self) -> Option<(Url, PageLocation)> {
        let url = self.next.take()?;
        self.visited.insert(url.clone());
        self.fetched += 1;
        let at = PageLocation {
            url: redact_url(&url),
            page: self.fetched,
        };
        Some((url, at))
    }

    /// Records the next link of the page at `current`: `None` or "" ends the listing.
    pub fn follow(&mut self, current: &Url, link: Option<&str>, at: &PageLocation) -> Result<()> {
        let link = match link.map(str::trim) {
            None | Some("") => return Ok(()),
            Some(link) => link,
        };
        let next = current.join(link).map_err(|e| Error::Page {
            at: at.clone(),
            reason: format!("next link is not a valid URL: {e}"),
        })?;
        if self.visited.contains(&next) {
            return Err(Error::Page {
                at: at.clone(),
                reason: format!(
                    "next link {} was already fetched in this export (pagination loop)",
                    redact_url(&next)
                ),
            });
        }
        self.next = Some(next);
        Ok(())
    }

    /// Whether `url` was already handed out in this listing.
    pub fn visited(&self, url: &Url) -> bool {
        self.visited.contains(url)
    }

    /// Number of pages handed out so far.
    pub fn pages_fetched(&self) -> u64 {
        self.fetched
    }
}

/// How much of a page's end [`guess_next_link`] looks at.
const GUESS_WINDOW: usize = 4096;

/// A cheap guess of a page's `links.next`, read from the last few KiB of its body (where APIs
/// put `links`), so the next page can be fetched while this one is still being decoded. It is
/// only a guess: the caller compares it with the link the full decode finds, and a wrong guess
/// costs one wasted request, never a wrong page.
pub fn guess_next_link(body: &[u8]) -> Option<String> {
    let tail = &body[body.len().saturating_sub(GUESS_WINDOW)..];
    let key = b"\"next\"";
    let at = tail.windows(key.len()).rposition(|w| w == key)?;
    let rest = tail[at + key.len()..]
        .trim_ascii_start()
        .strip_prefix(b":")?;
    let mut value = serde_json::Deserializer::from_slice(rest.trim_ascii_start());
    serde::Deserialize::deserialize(&mut value).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_the_next_link_from_the_end_of_the_page() {
        let page = br#"{"data": {"rows": [{"next": "row"}]}, "links": {"next" : "/v1/r?page=2", "self": "x"}}"#;
        assert_eq!(guess_next_link(page).as_deref(), Some("/v1/r?page=2"));
        assert_eq!(
            guess_next_link(br#"{"data": {"rows": []}, "links": {"next": null}}"#),
            None
        );
        assert_eq!(guess_next_link(br#"{"data": {"rows": []}}"#), None);
        assert_eq!(
            guess_next_link(br#"{"links": {"next": "/p2"}, "data": {"rows": [{"next": 5}]}}"#),
            None
        );
    }

    fn walk(first: &str, links: &[Option<&str>]) -> Result<Vec<String>> {
        let mut pages = Pagination::new(Url::parse(first).unwrap());
        let mut seen = Vec::new();
        let mut links = links.iter();
        while let Some((url, at)) = pages.next_page() {
            seen.push(url.to_string());
            let link = links.next().copied().flatten();
            pages.follow(&url, link, &at)?;
        }
        Ok(seen)
    }

    #[test]
    fn resolves_absolute_and_relative_links() {
        let seen = walk(
            "http://h:1/v1/reports?page=1",
            &[
                Some("http://h:1/v1/reports?page=2"),
                Some("/v1/reports?page=3"),
                Some("?page=4"),
                Some("reports?page=5"),
                None,
            ],
        )
        .unwrap();
        assert_eq!(
            seen,
            [
                "http://h:1/v1/reports?page=1",
                "http://h:1/v1/reports?page=2",
                "http://h:1/v1/reports?page=3",
                "http://h:1/v1/reports?page=4",
                "http://h:1/v1/reports?page=5",
            ]
        );
    }

    #[test]
    fn empty_link_ends_the_listing() {
        let seen = walk("http://h/a", &[Some("")]).unwrap();
        assert_eq!(seen, ["http://h/a"]);
    }

    #[test]
    fn a_loop_is_an_error_naming_the_url() {
        let err = walk("http://h/a?p=1", &[Some("/a?p=2"), Some("/a?p=1")]).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("http://h/a"), "{message}");
        assert!(message.contains("page 2"), "{message}");
        assert!(message.contains("pagination loop"), "{message}");
        assert!(
            !message.contains("p=1"),
            "query strings are not shown: {message}"
        );
    }
}
