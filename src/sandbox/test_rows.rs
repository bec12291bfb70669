//! `GET|POST /v1/test/rows`: a completed report's rows served in any pagination kind and
//! content format, for configured endpoints (`export url`, `kind = "endpoint"`) and their tests.
//!
//! Query parameters (all optional):
//! - `report=ID` (default `rpt_7f3a9c21`; a POST body `{"report": ID}` overrides it);
//! - `paging=next|page|offset|cursor|none` (default `next`): a next link, `page` (1-based), `offset` and
//!   `limit`, an opaque `cursor`, or every row at once; `size=N` rows a page (default the
//!   sandbox's page size; `limit` for offsets). Past the end a page is empty, unless
//!   `endless=1`, which serves the first rows again forever (only a stated total ends it);
//! - `format=json|ndjson|csv` (default `json`), with the matching `Content-Type`;
//! - `require_key=1`: answer 403 unless the request has `X-Api-Key: sandbox-key`.
//!
//! A JSON page is deliberately not the API's shape, so data, next, cursor and total paths are
//! exercised: `{"result": {"row sets": [{"items": [..]}]}, "paging": {"next": URL|null,
//! "next cursor": C|null}, "meta": {"total": N}}`. NDJSON is one row a line; CSV has a header of
//! the page's keys in first-seen order, strings as they are, other values as their JSON text and
//! null as an empty cell. Rows are written back byte for byte in JSON and NDJSON.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::http::request::Parts;
use reqwest::Url;
use serde_json::json;
use serde_json::value::RawValue;

use super::render::{Reply, bad_request, chunks_reply, json_reply};
use super::server::{MAX_LOGIN_BODY, Server};

/// The route of this module.
pub(super) const ROWS_PATH: &str = "/v1/test/rows";
/// The key `require_key=1` asks for in `X-Api-Key`.
pub const SANDBOX_API_KEY: &str = "sandbox-key";
/// The report served when none is named.
const DEFAULT_REPORT: &str = "rpt_7f3a9c21";

/// What the request asks for.
struct Ask {
    report: String,
    paging: String,
    format: String,
    size: usize,
    endless: bool,
    require_key: bool,
    /// The request's URL (absolute), for next links.
    url: Url,
}

/// Answers a request to [`ROWS_PATH`].
pub(super) async fn respond(server: &Server, parts: &Parts, body: Incoming) -> Reply {
    let url = match Url::parse(&format!("{}{}", server.origin(&parts.headers), parts.uri)) {
        Ok(url) => url,
        Err(e) => return bad_request(&format!("bad URL: {e}")),
    };
    let mut ask = match parse(url, server.options.page_size) {
        Ok(ask) => ask,
        Err(message) => return bad_request(&message),
    };
    let key = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if ask.require_key && key != Some(SANDBOX_API_KEY) {
        return json_reply(
            StatusCode::FORBIDDEN,
            &json!({"error": "missing or wrong X-Api-Key"}),
        );
    }
    if parts.method == hyper::Method::POST {
        match report_from_body(body).await {
            Ok(Some(report)) => ask.report = report,
            Ok(None) => {}
            Err(message) => return bad_request(&message),
        }
    }
    let Some(rows) = server.options.data.completed_rows(&ask.report) else {
        return json_reply(StatusCode::NOT_FOUND, &json!({"error": "report not found"}));
    };
    let (page, next, cursor) = match select(&ask, rows) {
        Ok(selected) => selected,
        Err(message) => return bad_request(&message),
    };
    let (content_type, body) = match ask.format.as_str() {
        "ndjson" => ("application/x-ndjson", ndjson(page)),
        "csv" => ("text/csv; charset=utf-8", csv(page)),
        _ => (
            "application/json",
            json_page(page, next, cursor, rows.len()),
        ),
    };
    let mut reply = chunks_reply(StatusCode::OK, [Bytes::from(body)]);
    reply
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    reply
}

fn parse(url: Url, default_size: usize) -> Result<Ask, String> {
    let mut ask = Ask {
        report: DEFAULT_REPORT.to_owned(),
        paging: "next".to_owned(),
        format: "json".to_owned(),
        size: default_size,
        endless: false,
        require_key: false,
        url: url.clone(),
    };
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "report" => ask.report = value.into_owned(),
            "paging" if ["next", "page", "offset", "cursor", "none"].contains(&value.as_ref()) => {
                ask.paging = value.into_owned()
            }
            "format" if ["json", "ndjson", "csv"].contains(&value.as_ref()) => {
                ask.format = value.into_owned()
            }
            "size" => ask.size = positive(&key, &value)?,
            "endless" => ask.endless = value == "1",
            "require_key" => ask.require_key = value == "1",
            "paging" | "format" => return Err(format!("unknown {key} {value:?}")),
            _ => {}
        }
    }
    Ok(ask)
}

fn positive(key: &str, value: &str) -> Result<usize, String> {
    value
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{key}: expected a positive integer, found {value:?}"))
}

/// The number in query parameter `name`, or `default`.
fn number(url: &Url, name: &str, default: usize) -> Result<usize, String> {
    match url.query_pairs().find(|(key, _)| key == name) {
        Some((_, value)) => value
            .parse()
            .map_err(|_| format!("{name}: expected a number, found {value:?}")),
        None => Ok(default),
    }
}

async fn report_from_body(body: Incoming) -> Result<Option<String>, String> {
    let bytes = Limited::new(body, MAX_LOGIN_BODY)
        .collect()
        .await
        .map_err(|_| "body too large".to_owned())?
        .to_bytes();
    if bytes.is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("body is not JSON: {e}"))?;
    Ok(value["report"].as_str().map(str::to_owned))
}

/// One page's rows, its next link (paging `next`) and its next cursor (paging `cursor`).
type Page<'r> = (&'r [Box<RawValue>], Option<String>, Option<String>);

/// The page `ask` asks for among `rows`.
fn select<'r>(ask: &Ask, rows: &'r [Box<RawValue>]) -> Result<Page<'r>, String> {
    let window = |start: usize, len: usize| {
        let start = if ask.endless && start >= rows.len() {
            0
        } else {
            start
        };
        let start = start.min(rows.len());
        &rows[start..(start + len).min(rows.len())]
    };
    Ok(match ask.paging.as_str() {
        "next" => {
            let page = number(&ask.url, "page", 1)?.max(1);
            let start = (page - 1) * ask.size;
            let next = (start + ask.size < rows.len()).then(|| {
                let mut next = ask.url.clone();
                let kept: Vec<(String, String)> = next
                    .query_pairs()
                    .filter(|(k, _)| k != "page")
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                next.query_pairs_mut()
                    .clear()
                    .extend_pairs(kept)
                    .append_pair("page", &(page + 1).to_string());
                next.to_string()
            });
            (window(start, ask.size), next, None)
        }
        "page" => {
            let page = number(&ask.url, "page", 1)?.max(1);
            (window((page - 1) * ask.size, ask.size), None, None)
        }
        "offset" => {
            let limit = number(&ask.url, "limit", ask.size)?.max(1);
            (window(number(&ask.url, "offset", 0)?, limit), None, None)
        }
        "cursor" => {
            let start = match ask.url.query_pairs().find(|(k, _)| k == "cursor") {
                None => 0,
                Some((_, c)) => c
                    .strip_prefix("after ")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("cursor {c:?} was not issued here"))?,
            };
            let end = start + ask.size;
            let cursor = (end < rows.len()).then(|| format!("after {end}"));
            (window(start, ask.size), None, cursor)
        }
        _ => (rows, None, None),
    })
}

fn json_page(
    rows: &[Box<RawValue>],
    next: Option<String>,
    cursor: Option<String>,
    total: usize,
) -> String {
    let items: Vec<&str> = rows.iter().map(|row| row.get()).collect();
    format!(
        r#"{{"result": {{"row sets": [{{"items": [{}]}}]}}, "paging": {{"next": {}, "next cursor": {}}}, "meta": {{"total": {total}}}}}"#,
        items.join(","),
        json!(next),
        json!(cursor),
    )
}

fn ndjson(rows: &[Box<RawValue>]) -> String {
    rows.iter().map(|row| format!("{}\n", row.get())).collect()
}

fn csv(rows: &[Box<RawValue>]) -> String {
    let objects: Vec<serde_json::Map<String, serde_json::Value>> = rows
        .iter()
        .filter_map(|row| serde_json::from_str(row.get()).ok())
        .collect();
    let mut columns: Vec<&String> = Vec::new();
    for key in objects.iter().flat_map(|o| o.keys()) {
        if !columns.contains(&key) {
            columns.push(key);
        }
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record(&columns);
    for object in &objects {
        let cells = columns.iter().map(|c| match object.get(*c) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        });
        let _ = writer.write_record(cells);
    }
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<Box<RawValue>> {
        (0..n)
            .map(|i| RawValue::from_string(format!(r#"{{"i":{i},"s":"a,b","n":null}}"#)).unwrap())
            .collect()
    }

    /// A page as the `i` of each row, its next link and its cursor.
    type Served = (Vec<usize>, Option<String>, Option<String>);

    /// The page `query` asks for among `total` rows.
    fn page(query: &str, total: usize) -> Result<Served, String> {
        let ask = parse(
            Url::parse(&format!("http://h{ROWS_PATH}?{query}")).unwrap(),
            3,
        )?;
        let all = rows(total);
        let (rows, next, cursor) = select(&ask, &all)?;
        let ids = rows
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(r.get()).unwrap()["i"]
                    .as_u64()
                    .unwrap() as usize
            })
            .collect();
        Ok((ids, next, cursor))
    }

    #[test]
    fn each_paging_kind_serves_its_window() {
        let (ids, next, _) = page("paging=next&x=1", 7).unwrap();
        assert_eq!(ids, [0, 1, 2]);
        assert_eq!(
            next.as_deref(),
            Some("http://h/v1/test/rows?paging=next&x=1&page=2")
        );
        assert_eq!(page("paging=next&page=3", 7).unwrap().1, None);
        assert_eq!(page("paging=page&page=3", 7).unwrap().0, [6]);
        assert_eq!(
            page("paging=page&page=4", 7).unwrap().0,
            Vec::<usize>::new()
        );
        assert_eq!(
            page("paging=page&page=4&endless=1", 7).unwrap().0,
            [0, 1, 2]
        );
        assert_eq!(page("paging=offset&offset=5&limit=4", 7).unwrap().0, [5, 6]);
        let (ids, _, cursor) = page("paging=cursor&cursor=after+3", 7).unwrap();
        assert_eq!((ids, cursor.as_deref()), (vec![3, 4, 5], Some("after 6")));
        assert_eq!(page("paging=cursor&cursor=after+6", 7).unwrap().2, None);
        assert!(
            page("paging=cursor&cursor=bogus", 7)
                .unwrap_err()
                .contains("not issued")
        );
        assert_eq!(page("paging=none", 7).unwrap().0.len(), 7);
        assert!(page("paging=sideways", 7).is_err());
    }

    #[test]
    fn csv_writes_a_header_and_text_cells() {
        assert_eq!(csv(&rows(2)), "i,s,n\n0,\"a,b\",\n1,\"a,b\",\n");
        assert_eq!(ndjson(&rows(1)), "{\"i\":0,\"s\":\"a,b\",\"n\":null}\n");
    }
}
