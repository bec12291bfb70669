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

#[cfg(test)]
mod throughput {
    use super::*;
    use crate::decode::RowDecoder;
    use crate::sandbox::synthetic::SyntheticReport;
    use std::time::Instant;

    #[test]
    #[ignore]
    fn baseline_throughput() {
        let rows_per_page = 5_000u64;
        let report = SyntheticReport::new(205_000, 42);
        let mut pages = Vec::new();
        let mut start = 0;
        while start < report.rows() {
            let end = (start + rows_per_page).min(report.rows());
            let mut page = String::from(r#"{"data":{"rows":["#);
            report.write_rows(start..end, &mut page);
            page.push_str(r#"]},"links":{"next":"/v1/completed-reports/r?page=2"}}"#);
            pages.push(page.into_bytes());
            start = end;
        }
        let bytes: usize = pages.iter().map(Vec::len).sum();
        let at = PageLocation {
            url: "u".into(),
            page: 1,
        };
        for round in 0..5 {
            let t = Instant::now();
            let mut rows = 0;
            for page in &pages {
                let mut decoder = RowDecoder::new();
                let info = extract_page(page, &at, |row| decoder.push_row(row)).unwrap();
                rows += decoder.finish().unwrap().batch.num_rows();
                assert!(info.next.is_some());
            }
            let s = t.elapsed().as_secs_f64();
            println!(
                "round {round}: old {:.1} MB in {s:.3}s = {:.1} MB/s ({rows} rows)",
                bytes as f64 / 1e6,
                bytes as f64 / 1e6 / s
            );
            let t = Instant::now();
            let mut decoder = RowDecoder::new();
            for page in &pages {
                extract_page(page, &at, |row| decoder.push_row(row)).unwrap();
                decoder.finish().unwrap();
            }
            let s = t.elapsed().as_secs_f64();
            println!(
                "round {round}: old reused {:.1} MB/s",
                bytes as f64 / 1e6 / s
            );
            let t = Instant::now();
            for page in &pages {
                extract_page(page, &at, |_| Ok(())).unwrap();
            }
            let s = t.elapsed().as_secs_f64();
            println!(
                "round {round}: serde walk only {:.1} MB/s",
                bytes as f64 / 1e6 / s
            );
        }
    }
}
