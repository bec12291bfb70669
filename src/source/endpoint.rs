//! What one export reads: an [`Endpoint`] names the first URL, how each page is requested
//! ([`Request`]), where the rows are (a [`JsonPath`]), how pages follow ([`Paging`]) and,
//! optionally, where a page states the total number of rows. The templates (`export report`,
//! `export reports`) and the report list (`reports`, `run`) are presets of it
//! ([`Endpoint::preset`]); `export url` configures every part by hand.
//!
//! There is one reader for every page shape, [`for_each_row`]: a JSON page is walked with
//! [`JsonPath`]s over borrowed raw values, an NDJSON or CSV page is read by [`super::formats`],
//! and each row goes to a callback as a `&RawValue`, with the page's [`PageEnd`] returned.
//! [`decode_page`] turns one fetched page into a raw Arrow batch through it, except that pages
//! of the API's own shape (JSON, rows at `$.data.rows[*]`, next link at `$.links.next`, no
//! total) take the one-pass decoder of [`super::extract`], the export's hot path; a property
//! test there checks that it reads what [`for_each_row`] reads over [`Endpoint::preset`], and
//! names the pages (ones the API never sends) where the two differ.

use reqwest::Url;
use serde_json::value::RawValue;

use super::client::{Fetched, Request};
use super::formats::{self, ContentFormat};
use super::jsonpath::{self, JsonPath};
use super::paginate::{PageEnd, Paging};
use crate::decode::{RawBatch, RowDecoder};
use crate::error::{DecodeError, Error, PageLocation, Result};

/// A configured endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The first page, query parameters included.
    pub url: Url,
    pub request: Request,
    /// Where the rows are in a JSON page (every value it selects is a row).
    pub rows: JsonPath,
    pub paging: Paging,
    /// Where a JSON page states the total number of rows; reaching it ends the listing.
    pub total: Option<JsonPath>,
}

impl Endpoint {
    /// A GET of `url` in the API's own page shape: rows at `$.data.rows[*]`, next links at
    /// `$.links.next`.
    pub fn preset(url: Url) -> Self {
        Endpoint {
            url,
            request: Request::default(),
            rows: JsonPath::data_rows(),
            paging: Paging::default_next(),
            total: None,
        }
    }

    /// Whether pages of `format` can take the one-pass decoder of the API's own shape.
    pub fn is_api_shape(&self, format: ContentFormat) -> bool {
        format == ContentFormat::Json
            && self.rows == JsonPath::data_rows()
            && self.paging == Paging::default_next()
            && self.total.is_none()
    }

    /// The path read from the page to find the next one, if the paging reads one.
    fn next_path(&self) -> Option<&JsonPath> {
        match &self.paging {
            Paging::NextUrl { path } | Paging::Cursor { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// Decodes one page of `endpoint` into a raw batch (through `decoder`, left empty afterwards)
/// and reads how the page ends: pages of the API's own shape with the one-pass decoder of
/// [`super::extract`], every other page with [`for_each_row`]. Errors: [`Error::Page`] for a
/// body that is not in its format, a data path that matches nothing (naming the path and the
/// keys the page has instead), or a next, cursor or total path holding the wrong kind of value;
/// [`Error::Row`] for a row that cannot be decoded.
pub fn decode_page(
    endpoint: &Endpoint,
    page: &Fetched,
    at: &PageLocation,
    decoder: &mut RowDecoder,
) -> Result<(RawBatch, PageEnd)> {
    if endpoint.is_api_shape(page.format) {
        let (raw, next) = super::extract::decode_api_page(&page.body, at, decoder)?;
        let rows = raw.batch.num_rows();
        return Ok((
            raw,
            PageEnd {
                next,
                rows,
                ..PageEnd::default()
            },
        ));
    }
    decoder.reset();
    let end = for_each_row(endpoint, page, at, |row| decoder.push_row(row))?;
    let raw = decoder.finish().map_err(|source| row_error(at, source))?;
    Ok((raw, end))
}

/// The general page reader: hands each row of `page` to `on_row` in order, as a borrowed raw
/// value, and reads how the page ends. A JSON page is walked with the endpoint's paths (any
/// shape, the API's own included: this is how the report list is read); NDJSON and CSV pages
/// are read by [`super::formats`]. Errors as [`decode_page`]; a row `on_row` refuses is an
/// [`Error::Row`].
pub fn for_each_row(
    endpoint: &Endpoint,
    page: &Fetched,
    at: &PageLocation,
    mut on_row: impl FnMut(&RawValue) -> Result<(), DecodeError>,
) -> Result<PageEnd> {
    let end = match page.format {
        ContentFormat::Json => json_page(endpoint, &page.body, at, &mut on_row)?,
        format => {
            if let Some(path) = endpoint.next_path().or(endpoint.total.as_ref()) {
                return Err(page_error(
                    at,
                    format!("{path} cannot be read from a {format} page"),
                ));
            }
            let rows = match format {
                ContentFormat::Csv => formats::csv_rows(&page.body, on_row),
                _ => formats::ndjson_rows(&page.body, on_row),
            }
            .map_err(|source| row_error(at, source))?;
            PageEnd {
                rows,
                ..PageEnd::default()
            }
        }
    };
    Ok(PageEnd {
        digest: endpoint.paging.counts().then(|| digest(&page.body)),
        ..end
    })
}

/// A JSON page on the general path: every value at the data path goes to `on_row`, then the
/// next (or cursor) and total paths are read.
fn json_page(
    endpoint: &Endpoint,
    body: &[u8],
    at: &PageLocation,
    on_row: &mut impl FnMut(&RawValue) -> Result<(), DecodeError>,
) -> Result<PageEnd> {
    let root: &RawValue = serde_json::from_slice(body)
        .map_err(|e| page_error(at, format!("body is not valid JSON: {e}")))?;
    let rows = endpoint.rows.select(root);
    let empty_array = || {
        endpoint
            .rows
            .wildcard_parent()
            .and_then(|parent| parent.first(root))
            .is_some_and(|array| jsonpath::kind(array) == "an array")
    };
    if rows.is_empty() && !empty_array() {
        return Err(page_error(
            at,
            format!(
                "{} matched nothing; {}",
                endpoint.rows,
                jsonpath::describe(root)
            ),
        ));
    }
    for row in &rows {
        on_row(row).map_err(|source| row_error(at, source))?;
    }
    let next = match endpoint.next_path() {
        Some(path) => text_at(path, root, at)?,
        None => None,
    };
    let total = match &endpoint.total {
        Some(path) => Some(total_at(path, root, at)?),
        None => None,
    };
    Ok(PageEnd {
        next,
        rows: rows.len(),
        total,
        digest: None,
    })
}

/// A digest of a page's body, to notice a server that serves the same page again.
fn digest(body: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    hasher.finish()
}

/// The string (or number, as its text) at `path`; `None` when absent or null.
fn text_at(path: &JsonPath, root: &RawValue, at: &PageLocation) -> Result<Option<String>> {
    let Some(value) = path.first(root) else {
        return Ok(None);
    };
    match jsonpath::kind(value) {
        "null" => Ok(None),
        "a number" => Ok(Some(value.get().trim().to_owned())),
        "a string" => serde_json::from_str(value.get())
            .map(Some)
            .map_err(|e| page_error(at, format!("cannot decode {path}: {e}"))),
        kind => Err(page_error(
            at,
            format!("{path} is {kind}, expected a string, a number or null"),
        )),
    }
}

/// The non-negative integer at `path`.
fn total_at(path: &JsonPath, root: &RawValue, at: &PageLocation) -> Result<u64> {
    let value = path.first(root).ok_or_else(|| {
        page_error(
            at,
            format!("{path} matched nothing; {}", jsonpath::describe(root)),
        )
    })?;
    value.get().trim().parse().map_err(|_| {
        page_error(
            at,
            format!(
                "{path} is {} ({}), expected a row count",
                jsonpath::kind(value),
                value.get().trim()
            ),
        )
    })
}

fn page_error(at: &PageLocation, reason: String) -> Error {
    Error::Page {
        at: at.clone(),
        reason,
    }
}

fn row_error(at: &PageLocation, source: DecodeError) -> Error {
    Error::Row {
        at: at.clone(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use bytes::Bytes;

    fn at() -> PageLocation {
        PageLocation {
            url: "http://h/r".into(),
            page: 1,
        }
    }

    fn endpoint(rows: &str, paging: Paging, total: Option<&str>) -> Endpoint {
        Endpoint {
            rows: rows.parse().unwrap(),
            paging,
            total: total.map(|t| t.parse().unwrap()),
            ..Endpoint::preset(Url::parse("http://h/r").unwrap())
        }
    }

    fn decode(
        endpoint: &Endpoint,
        format: ContentFormat,
        body: &str,
    ) -> Result<(Vec<i64>, PageEnd)> {
        let page = Fetched {
            body: Bytes::from(body.to_owned()),
            format,
            rest: None,
        };
        let (raw, end) = decode_page(endpoint, &page, &at(), &mut RowDecoder::new())?;
        let a = raw
            .batch
            .column_by_name("a")
            .filter(|c| c.data_type() == &arrow::datatypes::DataType::Int64)
            .map(|c| {
                c.as_primitive::<Int64Type>()
                    .iter()
                    .map(|v| v.unwrap_or(-1))
                    .collect()
            });
        Ok((a.unwrap_or_default(), end))
    }

    #[test]
    fn the_api_shape_and_the_general_path_agree() {
        let body = r#"{"data": {"rows": [{"a": 1}, {"a": 2}]}, "links": {"next": "/r?p=2"}}"#;
        let preset = Endpoint::preset(Url::parse("http://h/r").unwrap());
        let general = endpoint("$['data']['rows'][*]", Paging::default_next(), None);
        for endpoint in [&preset, &general] {
            let (a, end) = decode(endpoint, ContentFormat::Json, body).unwrap();
            assert_eq!(a, [1, 2]);
            assert_eq!(
                end,
                PageEnd {
                    next: Some("/r?p=2".into()),
                    rows: 2,
                    ..PageEnd::default()
                }
            );
        }
    }

    /// The rows (raw) and the end of `body` read by the general reader over the preset.
    fn preset_rows(body: &str) -> Result<(Vec<String>, PageEnd)> {
        let preset = Endpoint::preset(Url::parse("http://h/r").unwrap());
        let page = Fetched {
            body: Bytes::from(body.to_owned()),
            format: ContentFormat::Json,
            rest: None,
        };
        let mut rows = Vec::new();
        let end = for_each_row(&preset, &page, &at(), |row| {
            rows.push(row.get().to_owned());
            Ok(())
        })?;
        Ok((rows, end))
    }

    #[test]
    fn the_preset_reads_raw_rows_and_next_in_any_key_order() {
        let body = r#"{"links": {"next": "/v1/x?page=2", "self": "a"}, "meta": {"rows": [9]},
                       "data": {"total": 2, "rows": [{"a": 1}, {"a": "\u00e9"}]}}"#;
        let (rows, end) = preset_rows(body).unwrap();
        assert_eq!(rows, [r#"{"a": 1}"#, r#"{"a": "\u00e9"}"#]);
        assert_eq!(end.rows, 2);
        assert_eq!(end.next.as_deref(), Some("/v1/x?page=2"));
    }

    #[test]
    fn the_preset_next_may_be_absent_null_or_links_null() {
        for body in [
            r#"{"data": {"rows": []}}"#,
            r#"{"data": {"rows": []}, "links": {}}"#,
            r#"{"data": {"rows": []}, "links": {"next": null}}"#,
            r#"{"data": {"rows": []}, "links": null}"#,
        ] {
            let (rows, end) = preset_rows(body).unwrap();
            assert!(rows.is_empty());
            assert_eq!(end.next, None, "{body}");
        }
    }

    #[test]
    fn the_preset_without_rows_names_the_path_and_what_was_there() {
        let err = preset_rows(r#"{"result": [], "links": {}}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid page (http://h/r, page 1): $.data.rows[*] matched nothing; \
             the page has keys links, result"
        );
    }

    #[test]
    fn the_preset_on_invalid_json_is_a_page_error() {
        let err = preset_rows(r#"{"data": {"rows": [{"a": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid page (http://h/r, page 1): body is not valid JSON"),
            "{err}"
        );
    }

    #[test]
    fn a_row_the_callback_refuses_is_a_row_error() {
        let preset = Endpoint::preset(Url::parse("http://h/r").unwrap());
        let page = Fetched {
            body: Bytes::from_static(br#"{"data": {"rows": [1, 2]}}"#),
            format: ContentFormat::Json,
            rest: None,
        };
        let err = for_each_row(&preset, &page, &at(), |_| {
            Err(DecodeError {
                row: 0,
                column: String::new(),
                reason: "expected a JSON object, found a number".into(),
            })
        })
        .unwrap_err();
        assert!(matches!(err, Error::Row { .. }));
        assert_eq!(
            err.to_string(),
            "cannot decode row 0, column \"\": expected a JSON object, found a number \
             (http://h/r, page 1)"
        );
    }

    #[test]
    fn cursors_and_totals_are_read_from_their_paths() {
        let kind = Paging::Cursor {
            path: "$.meta['next cursor']".parse().unwrap(),
            param: "c".into(),
        };
        let e = endpoint("$.items[*]", kind, Some("$.meta.total"));
        let body = r#"{"items": [{"a": 7}], "meta": {"next cursor": 42, "total": 9}}"#;
        let (a, end) = decode(&e, ContentFormat::Json, body).unwrap();
        assert_eq!(a, [7]);
        assert_eq!(
            end,
            PageEnd {
                next: Some("42".into()),
                rows: 1,
                total: Some(9),
                digest: None
            }
        );
        let err = decode(
            &e,
            ContentFormat::Json,
            r#"{"items": [], "meta": {"total": "x"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("$.meta.total is a string"), "{err}");
    }

    #[test]
    fn a_data_path_that_matches_nothing_says_what_the_page_has() {
        let e = endpoint("$.data.items[*]", Paging::None, None);
        let err = decode(
            &e,
            ContentFormat::Json,
            r#"{"data": {"rows": []}, "links": {}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("$.data.items[*] matched nothing; the page has keys data.rows, links"),
            "{err}"
        );
        let (a, end) = decode(
            &endpoint("$.data.rows[*]", Paging::None, None),
            ContentFormat::Json,
            r#"{"data": {"rows": []}}"#,
        )
        .unwrap();
        assert!(a.is_empty());
        assert_eq!(end.rows, 0);
    }

    #[test]
    fn a_top_level_array_is_read_with_a_wildcard_at_the_root() {
        let body = r#"[{"a": 5}, {"a": 6}, {"a": 7}]"#;
        let (a, end) = decode(
            &endpoint("$[*]", Paging::None, None),
            ContentFormat::Json,
            body,
        )
        .unwrap();
        assert_eq!((a, end.rows), (vec![5, 6, 7], 3));
        let (a, _) = decode(
            &endpoint("$[1]", Paging::None, None),
            ContentFormat::Json,
            body,
        )
        .unwrap();
        assert_eq!(a, [6]);
        let err = decode(
            &endpoint("$.data.rows[*]", Paging::None, None),
            ContentFormat::Json,
            body,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("$.data.rows[*] matched nothing; the page is an array"),
            "{err}"
        );
    }

    #[test]
    fn ndjson_and_csv_pages_decode_and_refuse_body_paths() {
        let e = endpoint("$", Paging::None, None);
        let (a, end) = decode(&e, ContentFormat::Ndjson, "{\"a\": 3}\n{\"a\": 4}\n").unwrap();
        assert_eq!((a, end.rows), (vec![3, 4], 2));
        let (_, end) = decode(&e, ContentFormat::Csv, "a,b\n1,x\n2,y\n3,z\n").unwrap();
        assert_eq!(end.rows, 3);
        let cursor = endpoint("$", Paging::default_next(), None);
        let err = decode(&cursor, ContentFormat::Csv, "a\n1\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("$.links.next cannot be read from a CSV page"),
            "{err}"
        );
        let err = decode(&e, ContentFormat::Ndjson, "{\"a\": 1}\n[2]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 1"), "{err}");
    }
}
