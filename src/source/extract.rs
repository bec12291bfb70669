//! Locating the rows and the next link inside one page, in a single pass over its bytes.
//!
//! A page looks like `{"data": {"rows": [...]}, "links": {"next": URL}}`. The page is walked
//! with serde: only the keys on the way to `$.data.rows` and `$.links.next` are looked at,
//! everything else is skipped without building a value tree, and each row is handed to the
//! caller as a borrowed `&RawValue` slice of the page. Decoding the rows is the caller's job.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{DecodeError, Error, PageLocation, Result};

/// What one page held besides its rows.
#[derive(Debug, PartialEq, Eq)]
pub struct PageInfo {
    /// Rows handed to the callback.
    pub rows: usize,
    /// The raw next link (`None` when absent or null).
    pub next: Option<String>,
}

/// Walks one page: calls `on_row` for every element of `$.data.rows` in order and returns the
/// row count and the raw `$.links.next`.
pub fn extract_page(
    body: &[u8],
    at: &PageLocation,
    mut on_row: impl FnMut(&RawValue) -> Result<(), DecodeError>,
) -> Result<PageInfo> {
    let mut walk = Walk {
        on_row: &mut on_row,
        rows: None,
        next: None,
        row_error: None,
        top_keys: Vec::new(),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = PageSeed(&mut walk)
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    if let Some(source) = walk.row_error.take() {
        return Err(Error::Row {
            at: at.clone(),
            source,
        });
    }
    parsed.map_err(|e| page_error(at, format!("body is not valid JSON: {e}")))?;
    let Some(rows) = walk.rows else {
        return Err(page_error(
            at,
            format!(
                "no rows at $.data.rows; the page has top-level keys [{}]",
                walk.top_keys.join(", ")
            ),
        ));
    };
    Ok(PageInfo {
        rows,
        next: walk.next,
    })
}

fn page_error(at: &PageLocation, reason: String) -> Error {
    Error::Page {
        at: at.clone(),
        reason,
    }
}

/// State shared by the seeds while one page is walked.
struct Walk<'a, F> {
    on_row: &'a mut F,
    rows: Option<usize>,
    next: Option<String>,
    row_error: Option<DecodeError>,
    top_keys: Vec<String>,
}

/// Marker message for a row rejected by the callback; the real error sits in `Walk::row_error`.
const ROW_REJECTED: &str = "row rejected";

struct PageSeed<'w, 'a, F>(&'w mut Walk<'a, F>);
struct DataSeed<'w, 'a, F>(&'w mut Walk<'a, F>);
struct RowsSeed<'w, 'a, F>(&'w mut Walk<'a, F>);
struct LinksSeed<'w, 'a, F>(&'w mut Walk<'a, F>);

impl<'de, F> DeserializeSeed<'de> for PageSeed<'_, '_, F>
where
    F: FnMut(&RawValue) -> Result<(), DecodeError>,
{
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, F> Visitor<'de> for PageSeed<'_, '_, F>
where
    F: FnMut(&RawValue) -> Result<(), DecodeError>,
{
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with data.rows")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "data" => map.next_value_seed(DataSeed(&mut *self.0))?,
                "links" => map.next_value_seed(LinksSeed(&mut *self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            self.0.top_keys.push(key);
        }
        Ok(())
    }
}

impl<'de, F> DeserializeSeed<'de> for DataSeed<'_, '_, F>
where
    F: FnMut(&RawValue) -> Result<(), DecodeError>,
{
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, F> Visitor<'de> for DataSeed<'_, '_, F>
where
    F: FnMut(&RawValue) -> Result<(), DecodeError>,
{
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object at $.data")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "rows" {
                map.next_value_seed(RowsSeed(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl<'de, F> DeserializeSeed<'de> for RowsSeed<'_, '_, F>
where
    F: FnMut(&RawValue) -> Result<(), DecodeError>,
{
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F> Visitor<'de> for RowsSeed<'_, '_, F>
where
    F: FnMut(&RawValue) -> Result<(), DecodeError>,
{
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array at $.data.rows")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut count = 0;
        while let Some(row) = seq.next_element::<&'de RawValue>()? {
            if let Err(e) = (self.0.on_row)(row) {
                self.0.row_error = Some(e);
                return Err(de::Error::custom(ROW_REJECTED));
            }
            count += 1;
        }
        self.0.rows = Some(count);
        Ok(())
    }
}

impl<'de, F> DeserializeSeed<'de> for LinksSeed<'_, '_, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        #[derive(serde::Deserialize)]
        struct Links {
            next: Option<String>,
        }
        // `links` itself may be null; `next` may be absent or null.
        let links = Option::<Links>::deserialize(deserializer)?;
        self.0.next = links.and_then(|links| links.next);
        Ok(())
    }
}

use serde::Deserialize;

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> PageLocation {
        PageLocation {
            url: "http://h/v1/reports".into(),
            page: 3,
        }
    }

    fn rows_of(body: &str) -> Result<(Vec<String>, PageInfo)> {
        let mut rows = Vec::new();
        let info = extract_page(body.as_bytes(), &at(), |row| {
            rows.push(row.get().to_string());
            Ok(())
        })?;
        Ok((rows, info))
    }

    #[test]
    fn finds_rows_and_next_in_any_key_order() {
        let body = r#"{"links": {"next": "/v1/x?page=2", "self": "a"}, "meta": {"rows": [9]},
                       "data": {"total": 2, "rows": [{"a": 1}, {"a": "\u00e9"}]}}"#;
        let (rows, info) = rows_of(body).unwrap();
        assert_eq!(rows, [r#"{"a": 1}"#, r#"{"a": "\u00e9"}"#]);
        assert_eq!(info.rows, 2);
        assert_eq!(info.next.as_deref(), Some("/v1/x?page=2"));
    }

    #[test]
    fn next_may_be_absent_null_or_links_null() {
        for body in [
            r#"{"data": {"rows": []}}"#,
            r#"{"data": {"rows": []}, "links": {}}"#,
            r#"{"data": {"rows": []}, "links": {"next": null}}"#,
            r#"{"data": {"rows": []}, "links": null}"#,
        ] {
            let (rows, info) = rows_of(body).unwrap();
            assert!(rows.is_empty());
            assert_eq!(info.next, None, "{body}");
        }
    }

    #[test]
    fn missing_rows_names_the_path_and_what_was_there() {
        let err = rows_of(r#"{"result": [], "links": {}}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid page (http://h/v1/reports, page 3): no rows at $.data.rows; \
             the page has top-level keys [result, links]"
        );
    }

    #[test]
    fn invalid_json_is_a_page_error() {
        let err = rows_of(r#"{"data": {"rows": [{"a": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid page (http://h/v1/reports, page 3): body is not valid JSON"),
            "{err}"
        );
    }

    #[test]
    fn a_rejected_row_surfaces_the_callback_error() {
        let err = extract_page(br#"{"data": {"rows": [1, 2]}}"#, &at(), |_| {
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
             (http://h/v1/reports, page 3)"
        );
    }
}
