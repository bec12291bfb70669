//! What a request asks for: its route (path and method, matched before any token is checked)
//! and the page it wants (`page` and `page_size` from the query). Parsing only, no state: what
//! to answer is the server's call (`server.rs`).

use std::ops::Range;

use hyper::Method;

use super::options::MAX_PAGE_SIZE;
use super::test_rows;

/// The routes of the API.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route<'a> {
    Login,
    Reports,
    SubmitReport,
    CompletedReport(&'a str),
    /// [`test_rows::ROWS_PATH`].
    TestRows,
    WrongMethod {
        allow: &'static str,
    },
    NotFound,
}

pub(super) fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    if path == test_rows::ROWS_PATH {
        return match *method {
            Method::GET | Method::POST => Route::TestRows,
            _ => Route::WrongMethod { allow: "GET, POST" },
        };
    }
    let (route, allow) = match path {
        "/v1/auth/token" => (Route::Login, "POST"),
        "/v1/reports" if method == Method::POST => return Route::SubmitReport,
        "/v1/reports" => (Route::Reports, "GET, POST"),
        _ => match path.strip_prefix("/v1/completed-reports/") {
            Some(id) if !id.is_empty() && !id.contains('/') => (Route::CompletedReport(id), "GET"),
            _ => return Route::NotFound,
        },
    };
    if allow.split(", ").any(|allowed| allowed == method.as_str()) {
        route
    } else {
        Route::WrongMethod { allow }
    }
}

/// The page a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct PageRequest {
    /// 1-based.
    pub(super) page: usize,
    /// 1..=[`MAX_PAGE_SIZE`], or up to the sandbox's page size when that is larger.
    pub(super) page_size: usize,
}

impl PageRequest {
    /// Reads `page` and `page_size` from a query string; other parameters are ignored. A
    /// `page_size` above [`MAX_PAGE_SIZE`] and `default_page_size` is clamped to the larger.
    pub(super) fn parse(query: Option<&str>, default_page_size: usize) -> Result<Self, String> {
        let mut page = 1;
        let mut page_size = default_page_size;
        for pair in query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let target = match key {
                "page" => &mut page,
                "page_size" => &mut page_size,
                _ => continue,
            };
            let positive = value.parse().ok().filter(|n| *n > 0);
            *target = positive
                .ok_or_else(|| format!("{key}: expected a positive integer, found {value:?}"))?;
        }
        Ok(Self {
            page,
            page_size: page_size.clamp(1, MAX_PAGE_SIZE.max(default_page_size)),
        })
    }

    /// The indexes of this page's rows among `total` rows, and whether more rows follow.
    pub(super) fn bounds(&self, total: usize) -> (Range<usize>, bool) {
        let start = (self.page - 1).saturating_mul(self.page_size).min(total);
        let end = start.saturating_add(self.page_size).min(total);
        (start..end, end < total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::options::MAX_PAGE_SIZE;

    #[test]
    fn routes_and_page_requests() {
        assert_eq!(route(&Method::POST, "/v1/auth/token"), Route::Login);
        assert_eq!(
            route(&Method::GET, "/v1/auth/token"),
            Route::WrongMethod { allow: "POST" }
        );
        assert_eq!(route(&Method::GET, "/v1/reports"), Route::Reports);
        assert_eq!(route(&Method::POST, "/v1/reports"), Route::SubmitReport);
        assert_eq!(
            route(&Method::PUT, "/v1/reports"),
            Route::WrongMethod { allow: "GET, POST" }
        );
        assert_eq!(
            route(&Method::GET, "/v1/completed-reports/x1"),
            Route::CompletedReport("x1")
        );
        assert_eq!(
            route(&Method::DELETE, "/v1/completed-reports/x1"),
            Route::WrongMethod { allow: "GET" }
        );
        for path in [
            "/",
            "/v1/reports/",
            "/v1/completed-reports/",
            "/v1/completed-reports/a/b",
        ] {
            assert_eq!(route(&Method::GET, path), Route::NotFound, "{path}");
        }

        let parse = |query| PageRequest::parse(query, 100);
        assert_eq!(
            parse(None),
            Ok(PageRequest {
                page: 1,
                page_size: 100
            })
        );
        assert_eq!(
            parse(Some("page=3&page_size=7&x=1")),
            Ok(PageRequest {
                page: 3,
                page_size: 7
            })
        );
        assert_eq!(
            parse(Some("page_size=20000")),
            Ok(PageRequest {
                page: 1,
                page_size: MAX_PAGE_SIZE
            })
        );
        // A default above MAX_PAGE_SIZE raises the limit to it (one huge page for benchmarks).
        assert_eq!(
            PageRequest::parse(Some("page_size=2000000"), 1_000_000),
            Ok(PageRequest {
                page: 1,
                page_size: 1_000_000
            })
        );
        assert_eq!(
            parse(Some("page=0")),
            Err(r#"page: expected a positive integer, found "0""#.into())
        );
        assert!(parse(Some("page_size=ten")).is_err());
        assert!(parse(Some("page")).is_err());
    }
}
