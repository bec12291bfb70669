//! Following pages: a small state machine that knows which URL comes next. Its kinds
//! ([`Paging`]): a next link read from the page (the default, resolved against the URL of the
//! page it came from per RFC 3986, so absolute, root-relative and query-relative links all work;
//! it ends on a missing, null or empty link), a page number or an offset in a query parameter
//! (ending on an empty page), a cursor read from the page into a query parameter (ending on a
//! missing, null or empty cursor), or a single page. Any kind also ends once the rows seen reach
//! a total the pages state. Every kind refuses a URL it has already visited in this export, so
//! a looping API can never make an export run forever. It does not fetch anything;
//! [`super::readahead`] (an export's pages) and `session::report_requests` (the report list)
//! drive it.

use std::collections::HashSet;

use reqwest::Url;

use super::jsonpath::JsonPath;
use crate::error::{Error, PageLocation, Result, redact_url};

/// How one page leads to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paging {
    /// A link at `path` (`$.links.next` by default).
    NextUrl { path: JsonPath },
    /// Query parameter `param` counts pages from `start`.
    PageNumber { param: String, start: u64 },
    /// Query parameter `offset` advances by the rows of each page; `limit` is sent as the page
    /// size.
    Offset {
        offset: String,
        limit: String,
        size: u64,
    },
    /// The value at `path` is sent as query parameter `param` for the next page.
    Cursor { path: JsonPath, param: String },
    /// One page.
    None,
}

impl Paging {
    /// Next links at `$.links.next`, the API's own paging.
    pub fn default_next() -> Self {
        Paging::NextUrl {
            path: JsonPath::links_next(),
        }
    }

    /// Whether the next URL is counted (page numbers, offsets) rather than read from the page,
    /// so only the page's content can show that the server ignores the parameter.
    pub fn counts(&self) -> bool {
        matches!(self, Paging::PageNumber { .. } | Paging::Offset { .. })
    }

    /// The query parameter a counting kind moves.
    fn counted_param(&self) -> &str {
        match self {
            Paging::PageNumber { param, .. } => param,
            Paging::Offset { offset, .. } => offset,
            _ => "",
        }
    }
}

/// What a page says about its successor: the raw value at the next or cursor path, the rows it
/// held and the total it stated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageEnd {
    /// The raw next link or cursor (`None` when absent or null).
    pub next: Option<String>,
    /// Rows on the page.
    pub rows: usize,
    /// The total number of rows the page stated, when a total path is configured.
    pub total: Option<u64>,
    /// A digest of the page's body, for kinds that count ([`Paging::counts`]): a server that
    /// ignores the page or offset parameter serves the same page again and again.
    pub digest: Option<u64>,
}

/// Pagination state of one listing.
#[derive(Debug)]
pub struct Pagination {
    paging: Paging,
    next: Option<Url>,
    visited: HashSet<Url>,
    fetched: u64,
    rows: u64,
    /// [`PageEnd::digest`] of the previous page.
    last_digest: Option<u64>,
}

impl Pagination {
    /// Starts at `first`; page-number and offset paging put their parameters on it.
    pub fn new(first: Url, paging: Paging) -> Self {
        let first = match &paging {
            Paging::PageNumber { param, start } => with_param(&first, param, &start.to_string()),
            Paging::Offset {
                offset,
                limit,
                size,
            } => with_param(&with_param(&first, limit, &size.to_string()), offset, "0"),
            _ => first,
        };
        Pagination {
            paging,
            next: Some(first),
            visited: HashSet::new(),
            fetched: 0,
            rows: 0,
            last_digest: None,
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

    /// Records how the page at `current` ended and decides the next URL, if any.
    pub fn advance(&mut self, current: &Url, end: &PageEnd, at: &PageLocation) -> Result<()> {
        self.rows += end.rows as u64;
        if end.rows > 0 && end.digest.is_some() && end.digest == self.last_digest {
            return Err(Error::Page {
                at: at.clone(),
                reason: format!(
                    "the page is the same as the one before: the server seems to ignore query \
                     parameter {:?} (pagination loop)",
                    self.paging.counted_param()
                ),
            });
        }
        self.last_digest = end.digest;
        if end.total.is_some_and(|total| self.rows >= total) {
            return Ok(());
        }
        let next = match &self.paging {
            Paging::NextUrl { .. } => match end.next.as_deref().map(str::trim) {
                None | Some("") => return Ok(()),
                Some(link) => current.join(link).map_err(|e| Error::Page {
                    at: at.clone(),
                    reason: format!("next link is not a valid URL: {e}"),
                })?,
            },
            Paging::PageNumber { param, start } if end.rows > 0 => {
                let page = param_value(current, param).unwrap_or(*start);
                with_param(current, param, &(page + 1).to_string())
            }
            Paging::Offset { offset, .. } if end.rows > 0 => {
                let from = param_value(current, offset).unwrap_or(0);
                with_param(current, offset, &(from + end.rows as u64).to_string())
            }
            Paging::Cursor { param, .. } => match end.next.as_deref() {
                None | Some("") => return Ok(()),
                Some(cursor) => with_param(current, param, cursor),
            },
            Paging::PageNumber { .. } | Paging::Offset { .. } | Paging::None => return Ok(()),
        };
        if self.visited.contains(&next) {
            return Err(Error::Page {
                at: at.clone(),
                reason: format!(
                    "next page {} was already fetched in this export (pagination loop)",
                    redact_url(&next)
                ),
            });
        }
        self.next = Some(next);
        Ok(())
    }

    /// A cheap guess of the page after `current`, so it can be fetched while `current` (whose
    /// body is `body`) is still being decoded: the next link near the end of the body, or the
    /// next page number. `None` when the kind cannot guess (offsets, cursors, one page).
    pub fn guess(&self, current: &Url, body: &[u8]) -> Option<Url> {
        match &self.paging {
            Paging::NextUrl { .. } => {
                guess_next_link(body).and_then(|link| current.join(&link).ok())
            }
            Paging::PageNumber { param, start } => {
                let page = param_value(current, param).unwrap_or(*start);
                Some(with_param(current, param, &(page + 1).to_string()))
            }
            _ => None,
        }
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

/// `url` with query parameter `name` set to `value` (replacing it, other parameters kept in
/// order).
fn with_param(url: &Url, name: &str, value: &str) -> Url {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != name)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    let mut next = url.clone();
    next.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(name, value);
    next
}

/// The number in query parameter `name` of `url`.
fn param_value(url: &Url, name: &str) -> Option<u64> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| value.parse().ok())
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
        let ends: Vec<PageEnd> = links
            .iter()
            .map(|link| PageEnd {
                next: link.map(str::to_owned),
                ..PageEnd::default()
            })
            .collect();
        walk_kind(first, Paging::default_next(), &ends)
    }

    /// The URLs a listing of `kind` fetches when its pages end as `ends` say.
    fn walk_kind(first: &str, kind: Paging, ends: &[PageEnd]) -> Result<Vec<String>> {
        let mut pages = Pagination::new(Url::parse(first).unwrap(), kind);
        let mut seen = Vec::new();
        let mut ends = ends.iter();
        while let Some((url, at)) = pages.next_page() {
            seen.push(url.to_string());
            let end = ends.next().cloned().unwrap_or_default();
            pages.advance(&url, &end, &at)?;
        }
        Ok(seen)
    }

    fn rows(rows: usize) -> PageEnd {
        PageEnd {
            rows,
            ..PageEnd::default()
        }
    }

    #[test]
    fn page_numbers_count_up_until_an_empty_page() {
        let kind = Paging::PageNumber {
            param: "p".into(),
            start: 1,
        };
        let seen = walk_kind("http://h/r?p=9&x=1", kind, &[rows(2), rows(2), rows(0)]).unwrap();
        assert_eq!(
            seen,
            [
                "http://h/r?x=1&p=1",
                "http://h/r?x=1&p=2",
                "http://h/r?x=1&p=3"
            ]
        );
    }

    #[test]
    fn offsets_advance_by_the_rows_seen_until_an_empty_page() {
        let kind = Paging::Offset {
            offset: "offset".into(),
            limit: "limit".into(),
            size: 2,
        };
        let seen = walk_kind("http://h/r", kind, &[rows(2), rows(1), rows(0)]).unwrap();
        assert_eq!(
            seen,
            [
                "http://h/r?limit=2&offset=0",
                "http://h/r?limit=2&offset=2",
                "http://h/r?limit=2&offset=3",
            ]
        );
    }

    #[test]
    fn cursors_go_into_the_query_until_one_is_missing_and_a_repeat_is_a_loop() {
        let kind = Paging::Cursor {
            path: "$.c".parse().unwrap(),
            param: "after".into(),
        };
        let cursor = |c: Option<&str>| PageEnd {
            next: c.map(str::to_owned),
            rows: 1,
            ..PageEnd::default()
        };
        let seen = walk_kind(
            "http://h/r",
            kind.clone(),
            &[cursor(Some("a b")), cursor(Some("")), cursor(Some("x"))],
        )
        .unwrap();
        assert_eq!(seen, ["http://h/r", "http://h/r?after=a+b"]);
        let err = walk_kind(
            "http://h/r",
            kind,
            &[cursor(Some("a")), cursor(Some("b")), cursor(Some("a"))],
        )
        .unwrap_err();
        assert!(err.to_string().contains("pagination loop"), "{err}");
    }

    #[test]
    fn the_same_page_twice_in_a_row_is_a_loop() {
        let kind = Paging::PageNumber {
            param: "p".into(),
            start: 1,
        };
        let page = |digest| PageEnd {
            rows: 3,
            digest: Some(digest),
            ..PageEnd::default()
        };
        let seen = walk_kind("http://h/r", kind.clone(), &[page(1), page(2), rows(0)]).unwrap();
        assert_eq!(seen.len(), 3);
        let err = walk_kind("http://h/r", kind, &[page(1), page(1)]).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("page 2") && message.contains("\"p\""),
            "{message}"
        );
    }

    #[test]
    fn a_stated_total_ends_any_kind_and_none_is_one_page() {
        let kind = Paging::PageNumber {
            param: "page".into(),
            start: 1,
        };
        let total = |rows| PageEnd {
            rows,
            total: Some(5),
            ..PageEnd::default()
        };
        let seen = walk_kind(
            "http://h/r",
            kind,
            &[total(2), total(2), total(1), total(1)],
        )
        .unwrap();
        assert_eq!(seen.len(), 3);
        let seen = walk_kind("http://h/r", Paging::None, &[rows(5), rows(5)]).unwrap();
        assert_eq!(seen, ["http://h/r"]);
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
