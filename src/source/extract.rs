//! The export's hot path for pages of the API's own shape: locating the rows and the next link
//! inside one page and decoding the rows, in a single pass over its bytes.
//!
//! A page looks like `{"data": {"rows": [...]}, "links": {"next": URL}}`: the rows at
//! `$.data.rows`, the raw next link at `$.links.next` (a string, null or absent; `links` may
//! be null), keys in any order, other keys skipped. [`decode_api_page`] walks it once with the
//! JSON scanner of [`crate::decode`], checking that the page is JSON, finding both paths and
//! handing each row's bytes to the [`RowDecoder`], which decodes it into its Arrow builders as
//! it goes; [`decode_rows`] decodes the runs of rows of a page read as it arrives
//! ([`super::stream`]).
//!
//! It is an optimisation of the one general page reader, [`super::endpoint::for_each_row`]
//! over [`super::endpoint::Endpoint::preset`], which reads the report list: a property test
//! checks that both accept and reject the same pages, with the same rows and next link, and
//! names the pages where they differ, none of which the API sends (bodies that are not UTF-8
//! outside the values read, a broken page whose bad row comes first, and JSON outside the API's
//! shape, which this decoder refuses or reads as serde's derived structs did). A page that is
//! not JSON or holds the wrong kind of value on a path is an [`Error::Page`] naming where it
//! was, and a row that cannot be decoded is an [`Error::Row`].

use crate::decode::{Json, RawBatch, RowDecoder, RowFailure, Stop, Syntax};
use crate::error::{DecodeError, Error, PageLocation, Result};

/// One page decoded in a single pass: its rows as a raw Arrow batch, and its raw next link.
///
/// The next link is `None` when absent or null. `decoder` starts a fresh batch (rows it held
/// are dropped) and is left empty, ready for the next page, also after an error; keeping one
/// per thread lets each page's builders start at the previous page's size. Errors:
/// [`Error::Page`] when the body is not JSON (with the byte offset), has no array at
/// `$.data.rows` or holds the wrong kind of value on one of the two paths; [`Error::Row`] when
/// a row cannot be decoded (row index within the page, column).
pub fn decode_api_page(
    body: &[u8],
    at: &PageLocation,
    decoder: &mut RowDecoder,
) -> Result<(RawBatch, Option<String>)> {
    decoder.reset();
    let mut page = PageWalk {
        json: Json::new(body),
        decoder: &mut *decoder,
        rows: None,
        in_rows: false,
        next: None,
        top_keys: Vec::new(),
    };
    let walked = page.walk();
    let PageWalk {
        rows,
        in_rows,
        next,
        top_keys,
        ..
    } = page;
    let error = match walked {
        Ok(()) if rows.is_some() => {
            let raw = decoder.finish().map_err(|source| Error::Row {
                at: at.clone(),
                source,
            })?;
            return Ok((raw, next));
        }
        Ok(()) => missing_rows(at, &top_keys),
        Err(PageStop::Syntax(syntax)) => {
            let within = match rows {
                Some(row) if in_rows => format!(" (row {row} of $.data.rows)"),
                _ => String::new(),
            };
            page_error(at, format!("body is not valid JSON: {syntax}{within}"))
        }
        Err(PageStop::Shape(reason)) => page_error(at, reason),
        Err(PageStop::Row(source)) => Error::Row {
            at: at.clone(),
            source,
        },
    };
    decoder.reset();
    Err(error)
}

/// Decodes a run of `$.data.rows` cut at row boundaries by [`super::stream::RowSplitter`]:
/// `row, row, ...`, starting with a comma when `after_rows` (rows before it were decoded).
/// `first_row` is the index in the page of the run's first row, for messages. The rows are
/// appended to `decoder` (which may hold earlier rows of the page); returns how many.
pub fn decode_rows(
    run: &[u8],
    after_rows: bool,
    first_row: usize,
    at: &PageLocation,
    decoder: &mut RowDecoder,
) -> Result<usize> {
    let mut json = Json::new(run);
    let mut rows = 0;
    let held = decoder.len();
    let failed = |failure: RowFailure, rows: usize| match failure {
        RowFailure::Syntax(syntax) => page_error(
            at,
            format!(
                "body is not valid JSON: {syntax} (row {} of $.data.rows)",
                first_row + rows
            ),
        ),
        RowFailure::Decode(mut source) => {
            source.row = first_row + (source.row - held);
            Error::Row {
                at: at.clone(),
                source,
            }
        }
    };
    loop {
        json.skip_ws();
        if json.at_end() {
            return Ok(rows);
        }
        if after_rows || rows > 0 {
            json.expect(b',', "expected ',' or ']'")
                .map_err(|stop| match stop {
                    Stop::Syntax(syntax) => failed(RowFailure::Syntax(syntax), rows),
                    Stop::Invalid(reason) => page_error(at, reason),
                })?;
        }
        decoder
            .push_row_from(&mut json)
            .map_err(|failure| failed(failure, rows))?;
        rows += 1;
    }
}

/// State of one [`decode_api_page`] walk.
struct PageWalk<'a, 'd> {
    json: Json<'a>,
    decoder: &'d mut RowDecoder,
    /// Rows decoded so far, once an array was found at `$.data.rows`.
    rows: Option<usize>,
    /// Whether the cursor is inside `$.data.rows`.
    in_rows: bool,
    next: Option<String>,
    top_keys: Vec<String>,
}

/// Why a [`decode_api_page`] walk stopped.
enum PageStop {
    /// The body is not JSON.
    Syntax(Syntax),
    /// JSON, but not a page: the reason.
    Shape(String),
    /// A row cannot be decoded.
    Row(DecodeError),
}

impl From<Stop> for PageStop {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::Syntax(syntax) => PageStop::Syntax(syntax),
            Stop::Invalid(reason) => PageStop::Shape(reason),
        }
    }
}

impl PageWalk<'_, '_> {
    /// The whole body: one object, then only whitespace.
    fn walk(&mut self) -> Result<(), PageStop> {
        self.object("the page", |page, key| {
            match key {
                "data" => page.data()?,
                "links" => page.links()?,
                _ => page.json.skip_value(false)?,
            }
            page.top_keys.push(key.to_owned());
            Ok(())
        })?;
        self.json.skip_ws();
        if !self.json.at_end() {
            return Err(self.syntax("trailing characters after the page"));
        }
        Ok(())
    }

    /// `$.data`: an object; its `rows` are decoded, its other keys skipped.
    fn data(&mut self) -> Result<(), PageStop> {
        self.object("$.data", |page, key| match key {
            "rows" => page.rows(),
            _ => Ok(page.json.skip_value(false)?),
        })
    }

    /// `$.data.rows`: an array whose elements the decoder takes one by one.
    fn rows(&mut self) -> Result<(), PageStop> {
        if !self.json.eat(b'[') {
            return Err(self.wrong_kind("$.data.rows", "an array"));
        }
        let mut rows = self.rows.unwrap_or(0);
        self.rows = Some(rows);
        self.in_rows = true;
        self.json.skip_ws();
        if !self.json.eat(b']') {
            loop {
                match self.decoder.push_row_from(&mut self.json) {
                    Ok(()) => rows += 1,
                    Err(RowFailure::Syntax(syntax)) => return Err(PageStop::Syntax(syntax)),
                    Err(RowFailure::Decode(error)) => return Err(PageStop::Row(error)),
                }
                self.rows = Some(rows);
                self.json.skip_ws();
                if self.json.eat(b']') {
                    break;
                }
                if !self.json.eat(b',') {
                    return Err(self.syntax("expected ',' or ']'"));
                }
            }
        }
        self.in_rows = false;
        Ok(())
    }

    /// `$.links`: null, or an object whose `next` (a string or null) is kept. As serde's
    /// derived `Option<Links>` did, this also takes the struct as a one-element array `[next]`,
    /// rejects a second `next` in one object, and lets a later `links` replace an earlier one.
    fn links(&mut self) -> Result<(), PageStop> {
        if self.json.null()? {
            self.next = None;
            return Ok(());
        }
        if self.json.eat(b'[') {
            self.json.skip_ws();
            if self.json.peek() == Some(b']') {
                return Err(PageStop::Shape("$.links is an empty array".to_owned()));
            }
            self.next = self.next_link()?;
            self.json.skip_ws();
            if !self.json.eat(b']') {
                return Err(PageStop::Shape(
                    "$.links is an array of more than one value".to_owned(),
                ));
            }
            return Ok(());
        }
        let mut next = None;
        self.object("$.links", |page, key| {
            if key != "next" {
                return Ok(page.json.skip_value(false)?);
            }
            if next.is_some() {
                return Err(PageStop::Shape(
                    "$.links has more than one \"next\" key".to_owned(),
                ));
            }
            next = Some(page.next_link()?);
            Ok(())
        })?;
        self.next = next.flatten();
        Ok(())
    }

    /// `$.links.next`: a string or null.
    fn next_link(&mut self) -> Result<Option<String>, PageStop> {
        if self.json.null()? {
            return Ok(None);
        }
        if self.json.peek() != Some(b'"') {
            return Err(self.wrong_kind("$.links.next", "a string or null"));
        }
        match self.json.string() {
            Ok(next) => Ok(Some(next.to_owned())),
            Err(Stop::Invalid(reason)) => Err(PageStop::Shape(format!(
                "cannot decode $.links.next: {reason}"
            ))),
            Err(stop) => Err(stop.into()),
        }
    }

    /// The object at the cursor (leading whitespace allowed): `on_key` is called for each key
    /// with the cursor at its value, and must move past the value.
    fn object(
        &mut self,
        path: &str,
        mut on_key: impl FnMut(&mut Self, &str) -> Result<(), PageStop>,
    ) -> Result<(), PageStop> {
        self.json.skip_ws();
        if !self.json.eat(b'{') {
            return Err(self.wrong_kind(path, "an object"));
        }
        self.json.skip_ws();
        if self.json.eat(b'}') {
            return Ok(());
        }
        loop {
            self.json.skip_ws();
            if self.json.peek() != Some(b'"') {
                return Err(self.syntax("expected a string key"));
            }
            let start = self.json.pos();
            let key = match self.json.string() {
                Ok(key) => key.to_owned(),
                // Keys on the paths are decoded, so they must be decodable (as for serde).
                Err(Stop::Invalid(reason)) => {
                    return Err(PageStop::Shape(format!(
                        "cannot decode the key at byte {start} in {path}: {reason}"
                    )));
                }
                Err(stop) => return Err(stop.into()),
            };
            self.json.skip_ws();
            self.json.expect(b':', "expected ':'")?;
            self.json.skip_ws();
            on_key(self, &key)?;
            self.json.skip_ws();
            if self.json.eat(b'}') {
                return Ok(());
            }
            if !self.json.eat(b',') {
                return Err(self.syntax("expected ',' or '}'"));
            }
        }
    }

    /// The error for a path holding the wrong kind of value, or no JSON value at all.
    fn wrong_kind(&self, path: &str, expected: &str) -> PageStop {
        match self.json.found() {
            Some(found) => PageStop::Shape(format!("{path} is {found}, expected {expected}")),
            None => self.syntax("expected a value"),
        }
    }

    fn syntax(&self, what: &'static str) -> PageStop {
        self.json.error(what).into()
    }
}

fn missing_rows(at: &PageLocation, top_keys: &[String]) -> Error {
    page_error(
        at,
        format!(
            "no rows at $.data.rows; the page has top-level keys [{}]",
            top_keys.join(", ")
        ),
    )
}

fn page_error(at: &PageLocation, reason: String) -> Error {
    Error::Page {
        at: at.clone(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::tests::json_value;
    use crate::source::client::Fetched;
    use crate::source::endpoint::{Endpoint, for_each_row};
    use crate::source::formats::ContentFormat;
    use arrow::array::AsArray;
    use bytes::Bytes;
    use proptest::prelude::*;
    use reqwest::Url;
    use serde_json::value::RawValue;

    fn at() -> PageLocation {
        PageLocation {
            url: "http://h/v1/reports".into(),
            page: 3,
        }
    }

    fn decoded(body: &str) -> Result<(RawBatch, Option<String>)> {
        decode_api_page(body.as_bytes(), &at(), &mut RowDecoder::new())
    }

    /// What the fast decoder must agree with: the general page reader over the preset endpoint
    /// of the API's shape, each row pushed to a fresh decoder.
    fn general(body: &[u8]) -> Result<(RawBatch, Option<String>)> {
        let endpoint = Endpoint::preset(Url::parse(&at().url).unwrap());
        let page = Fetched {
            body: Bytes::copy_from_slice(body),
            format: ContentFormat::Json,
            rest: None,
        };
        let mut decoder = RowDecoder::new();
        let end = for_each_row(&endpoint, &page, &at(), |row| decoder.push_row(row))?;
        let raw = decoder
            .finish()
            .map_err(|source| Error::Row { at: at(), source })?;
        Ok((raw, end.next))
    }

    fn page_reason(result: Result<(RawBatch, Option<String>)>) -> String {
        match result {
            Err(Error::Page { reason, .. }) => reason,
            other => panic!("expected a page error, got {other:?}"),
        }
    }

    fn row_error(result: Result<(RawBatch, Option<String>)>) -> DecodeError {
        match result {
            Err(Error::Row { source, .. }) => source,
            other => panic!("expected a row error, got {other:?}"),
        }
    }

    #[test]
    fn decode_api_page_finds_rows_and_next_in_any_key_order() {
        for body in [
            r#"{"links": {"next": "/v1/x?page=2", "self": "a"}, "meta": {"rows": [9]},
                "data": {"total": 2, "rows": [{"a": 1}, {"a": 2, "b": "\u00e9"}]}}"#,
            r#"{"data":{"rows":[{"a":1},{"a":2,"b":"é"}],"total":2},"links":{"next":"/v1/x?page=2"}}"#,
            "\n{ \"d\\u0061ta\" : { \"r\\u006fws\" : [ {\"a\" : 1} , {\"a\":2 ,\"b\":\"é\"} ] } ,\
             \"links\" : { \"prev\" : [ ] , \"next\" : \"/v1/x?page=2\" } }\r\n",
        ] {
            let (raw, next) = decoded(body).unwrap();
            assert_eq!(next.as_deref(), Some("/v1/x?page=2"), "{body}");
            assert_eq!(raw.batch.num_rows(), 2);
            assert_eq!(raw.kinds.len(), 2);
            let b = raw.batch.column(1).as_string::<i32>();
            assert_eq!(b.iter().collect::<Vec<_>>(), [None, Some("é")]);
        }
    }

    #[test]
    fn decode_api_page_next_may_be_absent_null_or_links_null() {
        for (body, next) in [
            (r#"{"data": {"rows": []}}"#, None),
            (r#"{"data": {"rows": []}, "links": {}}"#, None),
            (r#"{"data": {"rows": []}, "links": {"next": null}}"#, None),
            (r#"{"data": {"rows": []}, "links": null}"#, None),
            (
                r#"{"links": {"next": "n"}, "data": {"rows": []}}"#,
                Some("n"),
            ),
            (
                r#"{"links": {"next": "n"}, "data": {"rows": []}, "links": null}"#,
                None,
            ),
            // serde's derived struct also read `[next]`, and this decoder still does (the
            // general reader sees no next link there: a `Difference`).
            (r#"{"data": {"rows": []}, "links": ["n"]}"#, Some("n")),
        ] {
            let (raw, found) = decoded(body).unwrap();
            assert_eq!(raw.batch.num_rows(), 0);
            assert_eq!(found.as_deref(), next, "{body}");
            assert_same_outcome(body.as_bytes(), &mut RowDecoder::new()).unwrap();
        }
    }

    #[test]
    fn decode_api_page_missing_rows_names_the_path_and_what_was_there() {
        for body in [
            r#"{"result": [], "links": {}}"#,
            r#"{"result": [], "links": {}, "data": {}}"#,
        ] {
            let err = decoded(body).unwrap_err().to_string();
            assert!(
                err.starts_with(
                    "invalid page (http://h/v1/reports, page 3): no rows at $.data.rows; \
                     the page has top-level keys [result, links"
                ),
                "{err}"
            );
        }
        for (body, reason) in [
            (
                r#"{"data": {"rows": {"a": 1}}}"#,
                "$.data.rows is an object, expected an array",
            ),
            (
                r#"{"data": {"rows": null}}"#,
                "$.data.rows is null, expected an array",
            ),
            (
                r#"{"data": ["rows"]}"#,
                "$.data is an array, expected an object",
            ),
            (
                r#"[{"data": {"rows": []}}]"#,
                "the page is an array, expected an object",
            ),
            (
                r#"{"data": {"rows": []}, "links": 5}"#,
                "$.links is a number, expected an object",
            ),
            (
                r#"{"data": {"rows": []}, "links": {"next": 5}}"#,
                "$.links.next is a number, expected a string or null",
            ),
            (
                r#"{"data": {"rows": []}, "links": {"next": "a", "next": "b"}}"#,
                "$.links has more than one \"next\" key",
            ),
        ] {
            assert_eq!(page_reason(decoded(body)), reason, "{body}");
            assert_same_outcome(body.as_bytes(), &mut RowDecoder::new()).unwrap();
        }
    }

    #[test]
    fn decode_api_page_invalid_json_says_where() {
        for (body, reason) in [
            (
                r#"{"data": {"rows": [{"a": 1}"#,
                "body is not valid JSON: unexpected end of input at byte 27 (row 1 of $.data.rows)",
            ),
            (
                r#"{"data": {"rows": [{"a": 1} {"a": 2}]}}"#,
                "body is not valid JSON: expected ',' or ']' at byte 28 (row 1 of $.data.rows)",
            ),
            (
                r#"{"data": {"rows": [{"a": 01}]}}"#,
                "body is not valid JSON: invalid number at byte 26 (row 0 of $.data.rows)",
            ),
            (
                r#"{"data": {"rows": []}} x"#,
                "body is not valid JSON: trailing characters after the page at byte 23",
            ),
            (
                r#"{"data": {"rows": []}, "x": [1,]}"#,
                "body is not valid JSON: expected a value at byte 31",
            ),
            (
                "",
                "body is not valid JSON: unexpected end of input at byte 0",
            ),
            (
                "{\"data\": {\"rows\": [{\"a\": \"x\ty\"}]}}",
                "body is not valid JSON: control character in a string at byte 27 (row 0 of $.data.rows)",
            ),
        ] {
            assert_eq!(page_reason(decoded(body)), reason, "{body}");
            assert!(
                matches!(general(body.as_bytes()), Err(Error::Page { .. })),
                "{body}"
            );
        }
    }

    #[test]
    fn decode_api_page_bad_row_is_a_row_error_unless_it_is_malformed() {
        let error = row_error(decoded(
            r#"{"data": {"rows": [{"a": 1}, {"b": 2, "a": 1e400}]}}"#,
        ));
        assert_eq!((error.row, error.column.as_str()), (1, "a"));
        let error = row_error(decoded(r#"{"data": {"rows": [{"a": 1}, 7, {]}}"#));
        assert_eq!(
            error.to_string(),
            "row 1, column \"\": expected a JSON object, found a number"
        );
        let error = row_error(decoded(r#"{"data": {"rows": [{"a": "\ud800"}]}}"#));
        assert_eq!(error.column, "a");
        // The row cannot be decoded, but it is not JSON either: that comes first, as it did
        // when serde checked each row before the decoder saw it.
        let reason = page_reason(decoded(r#"{"data": {"rows": [{"a": 1e400, "b": tru}]}}"#));
        assert!(
            reason.starts_with("body is not valid JSON: expected a value at byte 37"),
            "{reason}"
        );
    }

    #[test]
    fn decode_api_page_checks_utf8_where_serde_does() {
        let in_row = b"{\"data\": {\"rows\": [{\"a\": \"\xff\"}]}}";
        let reason = page_reason(decode_api_page(in_row, &at(), &mut RowDecoder::new()));
        assert_eq!(
            reason,
            "body is not valid JSON: invalid UTF-8 in a string at byte 26 (row 0 of $.data.rows)"
        );
        let in_key = b"{\"\xff\": 1, \"data\": {\"rows\": []}}";
        assert!(decode_api_page(in_key, &at(), &mut RowDecoder::new()).is_err());
        assert!(general(in_key).is_err());
        // Skipped values are not decoded: neither their UTF-8 nor their escapes. The general
        // reader does not decode escapes there either, but takes only a body that is UTF-8
        // throughout (a `Difference`).
        let skipped = b"{\"x\": [\"\xff\", \"\\udc00\"], \"data\": {\"rows\": []}}";
        assert!(decode_api_page(skipped, &at(), &mut RowDecoder::new()).is_ok());
        assert!(general_lossy(skipped).is_ok());
        assert!(matches!(general(skipped), Err(Error::Page { .. })));
        let escape = br#"{"x": ["\udc00"], "data": {"rows": []}}"#;
        assert!(decode_api_page(escape, &at(), &mut RowDecoder::new()).is_ok());
        assert!(general(escape).is_ok());
    }

    #[test]
    fn decode_api_page_reuses_the_decoder_after_errors() {
        let mut decoder = RowDecoder::new();
        let good = br#"{"data": {"rows": [{"a": "x", "b": 1}, {"a": "y"}]}}"#;
        for body in [
            &good[..],
            br#"{"data": {"rows": [{"a": 1}, {"a": 1, "a": 2}]}}"#,
            br#"{"data": {"rows": [{"a": 1}, {"a": 2}"#,
            br#"{"data": {"rows": [{"c": 1}]}, "links": 1}"#,
            &good[..],
        ] {
            let _ = decode_api_page(body, &at(), &mut decoder);
            assert!(decoder.is_empty());
        }
        let (raw, _) = decode_api_page(good, &at(), &mut decoder).unwrap();
        let (expected, _) = general(good).unwrap();
        assert_eq!(raw.batch, expected.batch);
        assert_eq!(raw.kinds, expected.kinds);
    }

    #[test]
    fn decode_api_page_survives_deep_nesting() {
        let depth = 200_000;
        let body = format!(
            r#"{{"x": {open}{close}, "data": {{"rows": [{{"a": {open}{close}}}]}}}}"#,
            open = "[".repeat(depth),
            close = "]".repeat(depth)
        );
        let (raw, _) = decoded(&body).unwrap();
        assert_eq!(raw.kinds, [crate::decode::ColumnKind::Text]);
        // serde skips values without recursing, so the general reader reads it too.
        assert_same_outcome(body.as_bytes(), &mut RowDecoder::new()).unwrap();
        let unbalanced = body.replacen("]]", "}]", 1);
        assert!(matches!(decoded(&unbalanced), Err(Error::Page { .. })));
        assert!(matches!(
            general(unbalanced.as_bytes()),
            Err(Error::Page { .. })
        ));
    }

    #[test]
    fn decode_api_page_agrees_on_edge_cases() {
        let bodies: &[&[u8]] = &[
            br#"{"data":{"rows":[]},"links":[]}"#,
            br#"{"data":{"rows":[]},"links":["a","b"]}"#,
            br#"{"data":{"rows":[]},"links":["a",]}"#,
            br#"{"data":{"rows":[]},"links":[null]}"#,
            br#"{"data":{"rows":[]},"links":[1]}"#,
            br#"{"data":{"rows":[]},"links":{"n\u0065xt":"a"}}"#,
            br#"{"data":{"rows":[]},"links":{"next":"\ud800"}}"#,
            br#"{"data":{"rows":[]},"links":{"next":"\ud83d\ude00"}}"#,
            br#"{"\ud800":1,"data":{"rows":[]}}"#,
            br#"{"data":{"\udc00":1,"rows":[]}}"#,
            br#"{"data":{"rows":[{"\ud800":1}]}}"#,
            br#"{"data":{"rows":[{"a":"\ud800\ud800"}]}}"#,
            br#"{"data":{"rows":[{"a":"\ud83d\ude00\u0000\/\b\f\n\r\t"}]}}"#,
            br#"{"data":{"rows":[{"a":"\x"}]}}"#,
            br#"{"data":{"rows":[{"a":"\u12"}]}}"#,
            br#"{"data":{"rows":[{"a":"\u12G4"}]}}"#,
            br#"{"data":{"rows":[{"a":1}]},"data":{"rows":[{"a":"x"}]}}"#,
            br#"{"data":{"rows":[{"a":1}],"rows":[{"b":2}]}}"#,
            br#"{"data":null}"#,
            br#"{"data":{"rows":[]},}"#,
            br#"{"data":{"rows":[ ]}}garbage"#,
            b" \t{\"data\":{\"rows\":[]}}\r\n ",
            b"\xef\xbb\xbf{\"data\":{\"rows\":[]}}",
            br#"{"data":{"rows":[{"a":-0},{"a":1E5},{"a":1e-400},{"a":123456789012345678901234}]}}"#,
            br#"{"data":{"rows":[{"a":1e400}]}}"#,
            br#"{"data":{"rows":[{"a":[1e400]}]}}"#,
            br#"{"data":{"rows":[{"a":[{"b":"\ud800"}]}]}}"#,
            br#"{"data":{"rows":[{"a":nul}]}}"#,
            br#"{"data":{"rows":[{"a":1,}]}}"#,
            br#"{"data":{"rows":[{,}]}}"#,
            br#"{"data":{"rows":[{"":1,"a\u0000":2}]}}"#,
            b"{\"data\":{\"rows\":[{\"a\":\"\x7f\"}]}}",
            b"{\"data\":{\"rows\":[{\"a\":\"\xc3\xa9\xe2\x82\"}]}}",
            b"{\"data\":{\"rows\":[{\"a\":[\"\xed\xa0\x80\"]}]}}",
        ];
        for body in bodies {
            assert_same_outcome(body, &mut RowDecoder::new())
                .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(body)));
        }
    }

    /// `result` in a few words: rows and next link, or the error.
    fn outcome(result: Result<(RawBatch, Option<String>)>) -> String {
        match result {
            Ok((raw, next)) => format!("{} rows, next {next:?}", raw.batch.num_rows()),
            Err(Error::Page { reason, .. }) => format!("page: {reason}"),
            Err(Error::Row { source, .. }) => format!("row: {source}"),
            Err(other) => format!("other: {other}"),
        }
    }

    #[test]
    fn the_readers_differ_only_on_pages_the_api_never_sends() {
        use Difference::*;
        let bodies: &[(&[u8], Difference, &str, &str)] = &[
            (
                b"{\"x\": [\"\xff\"], \"data\": {\"rows\": []}}",
                NotUtf8,
                "page: body is not valid JSON: invalid unicode code point at line 1 column 9",
                "0 rows, next None",
            ),
            (
                br#"{"data": {"rows": [7, {"a": 1}]}, "x": tru}"#,
                RowBeforeSyntax,
                "page: body is not valid JSON: expected ident at line 1 column 43",
                "row: row 0, column \"\": expected a JSON object, found a number",
            ),
            (
                br#"{"data": {"rows": {"b": {"x": 1}, "a": {"x": 2}}}}"#,
                OutsideTheShape,
                "2 rows, next None",
                "page: $.data.rows is an object, expected an array",
            ),
            (
                br#"{"data": {"rows": {"a": 1}}}"#,
                OutsideTheShape,
                "row: row 0, column \"\": expected a JSON object, found a number",
                "page: $.data.rows is an object, expected an array",
            ),
            (
                br#"{"data": {"rows": [{"a": 1}]}, "data": {"rows": [{"a": "x"}]}}"#,
                OutsideTheShape,
                "1 rows, next None",
                "2 rows, next None",
            ),
            (
                br#"{"data": {"rows": [{"a": 1}], "rows": [{"b": 2}]}}"#,
                OutsideTheShape,
                "1 rows, next None",
                "2 rows, next None",
            ),
            (
                br#"{"data": {"rows": []}, "links": ["n"]}"#,
                OutsideTheShape,
                "0 rows, next None",
                "0 rows, next Some(\"n\")",
            ),
            (
                br#"{"data": {"rows": []}, "links": []}"#,
                OutsideTheShape,
                "0 rows, next None",
                "page: $.links is an empty array",
            ),
            (
                br#"{"data": {"rows": []}, "links": "/v1/x?page=2"}"#,
                OutsideTheShape,
                "0 rows, next None",
                "page: $.links is a string, expected an object",
            ),
            (
                br#"{"links": 5, "links": {"next": "b"}, "data": {"rows": []}}"#,
                OutsideTheShape,
                "0 rows, next Some(\"b\")",
                "page: $.links is a number, expected an object",
            ),
            (
                br#"{"data": {"rows": []}, "links": {"next": 5}}"#,
                OutsideTheShape,
                "0 rows, next Some(\"5\")",
                "page: $.links.next is a number, expected a string or null",
            ),
            (
                br#"{"data": {"rows": []}, "links": {"next": "a", "next": "b"}}"#,
                OutsideTheShape,
                "0 rows, next Some(\"b\")",
                "page: $.links has more than one \"next\" key",
            ),
            (
                br#"{"data": {"rows": []}, "links": {"\ud800": 1, "next": "b"}}"#,
                OutsideTheShape,
                "0 rows, next None",
                "page: cannot decode the key at byte 33 in $.links: invalid string \"\\ud800\": \
                 lone leading surrogate in a \\u escape",
            ),
        ];
        for (body, difference, general_outcome, fast_outcome) in bodies {
            let text = String::from_utf8_lossy(body);
            let general = general(body);
            let fast = decode_api_page(body, &at(), &mut RowDecoder::new());
            assert_eq!(Difference::of(body, &fast), Some(*difference), "{text}");
            assert_eq!(outcome(general), *general_outcome, "{text}");
            assert_eq!(outcome(fast), *fast_outcome, "{text}");
            assert_same_outcome(body, &mut RowDecoder::new()).unwrap();
        }
    }

    /// Synthetic ad-report pages, like the ones the throughput is measured on.
    fn synthetic_pages(rows: u64, rows_per_page: u64) -> Vec<Vec<u8>> {
        let report = crate::sandbox::synthetic::SyntheticReport::new(rows, 42);
        (0..rows)
            .step_by(rows_per_page as usize)
            .map(|start| {
                let end = (start + rows_per_page).min(rows);
                let mut page = String::from(r#"{"data":{"rows":["#);
                report.write_rows(start..end, &mut page);
                page.push_str(r#"]},"links":{"next":"/v1/completed-reports/r?page=2"}}"#);
                page.into_bytes()
            })
            .collect()
    }

    #[test]
    fn decode_api_page_agrees_on_synthetic_pages() {
        let mut decoder = RowDecoder::new();
        for page in synthetic_pages(2_500, 1_000) {
            assert_same_outcome(&page, &mut decoder).unwrap();
        }
    }

    /// A row, a page or any bytes: both readers give the same batch and next link, or the same
    /// kind of error (row errors identical), unless the page is one of the [`Difference`]s.
    fn assert_same_outcome(body: &[u8], decoder: &mut RowDecoder) -> Result<(), TestCaseError> {
        let general = general(body);
        let fast = decode_api_page(body, &at(), decoder);
        prop_assert!(decoder.is_empty());
        let text = String::from_utf8_lossy(body);
        match Difference::of(body, &fast) {
            None => assert_agree(&general, &fast, &text),
            Some(Difference::NotUtf8) => {
                prop_assert!(matches!(general, Err(Error::Page { .. })), "{}", text);
                if fast.is_err() {
                    return Ok(());
                }
                // The invalid bytes sat in skipped values: with them replaced, the general
                // reader reads what the fast decoder read.
                assert_agree(&general_lossy(body), &fast, &text)
            }
            Some(Difference::RowBeforeSyntax) => {
                prop_assert!(matches!(general, Err(Error::Page { .. })), "{}", text);
                Ok(())
            }
            Some(Difference::OutsideTheShape) => Ok(()),
        }
    }

    /// The same batch and next link, or the same kind of error (row errors identical).
    fn assert_agree(
        general: &Result<(RawBatch, Option<String>)>,
        fast: &Result<(RawBatch, Option<String>)>,
        text: &str,
    ) -> Result<(), TestCaseError> {
        match (general, fast) {
            (Ok((general, general_next)), Ok((fast, fast_next))) => {
                prop_assert_eq!(&general.batch, &fast.batch, "{}", text);
                prop_assert_eq!(&general.kinds, &fast.kinds, "{}", text);
                prop_assert_eq!(general_next, fast_next, "{}", text);
            }
            (
                Err(Error::Row {
                    source: general, ..
                }),
                Err(Error::Row { source: fast, .. }),
            ) => {
                prop_assert_eq!(general, fast, "{}", text);
            }
            (Err(Error::Page { .. }), Err(Error::Page { .. })) => {}
            (general, fast) => prop_assert!(false, "{text}\ngeneral: {general:?}\nfast: {fast:?}"),
        }
        Ok(())
    }

    /// The general reader over `body` with every byte sequence that is not UTF-8 replaced.
    fn general_lossy(body: &[u8]) -> Result<(RawBatch, Option<String>)> {
        general(String::from_utf8_lossy(body).as_bytes())
    }

    /// Where the fast decoder and the general reader (over [`Endpoint::preset`]) may disagree:
    /// on pages the API never sends. Each is shown in
    /// `the_readers_differ_only_on_pages_the_api_never_sends`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Difference {
        /// The body is not UTF-8. The general reader refuses it whole (serde reads a
        /// `&RawValue` from text only); the fast decoder checks UTF-8 where it decodes (rows,
        /// keys on its paths, the next link), so invalid bytes inside a skipped value pass.
        NotUtf8,
        /// The body is not JSON, and a row before the point where it stops being JSON cannot be
        /// decoded: the fast decoder stops at that row ([`Error::Row`]), the general reader
        /// parses the whole body before it reads a row ([`Error::Page`]).
        RowBeforeSyntax,
        /// JSON outside the API's shape ([`in_api_shape`]). The fast decoder holds pages to
        /// that shape: `$.data.rows` an array, `$.links` null, an object or (as serde's
        /// derived structs read it) a one-element array `[next]`, `$.links.next` a string or
        /// null and given once per object, every key on those paths decodable; the rows of
        /// every `data` and `rows` key given twice are read. The general reader follows
        /// JSONPath: `[*]` also selects the member values of an object, a step that does not
        /// apply selects nothing (so `$.links` of another kind, or an object with a key that
        /// cannot be decoded, means no next link), a number at the next path is its text, and
        /// a key given twice keeps its last value.
        OutsideTheShape,
    }

    impl Difference {
        /// The difference the two readers may show on `body`, where the fast decoder gave
        /// `fast`; `None` when they must agree.
        fn of<T>(body: &[u8], fast: &Result<T>) -> Option<Self> {
            if std::str::from_utf8(body).is_err() {
                return Some(Difference::NotUtf8);
            }
            if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
                let row_first = matches!(fast, Err(Error::Row { .. }));
                return row_first.then_some(Difference::RowBeforeSyntax);
            }
            (!in_api_shape(body)).then_some(Difference::OutsideTheShape)
        }
    }

    /// A page as the API documents it, read strictly by serde: `data` and `links` objects
    /// (or null), `$.data.rows` an array, `$.links.next` a string or null, no key twice and
    /// every key decodable on those paths.
    #[derive(serde::Deserialize)]
    struct ApiPage<'a> {
        #[serde(borrow)]
        data: Option<&'a RawValue>,
        #[serde(borrow)]
        links: Option<&'a RawValue>,
    }

    /// `$.data`, checked only.
    #[derive(serde::Deserialize)]
    struct ApiData<'a> {
        #[serde(borrow, rename = "rows")]
        _rows: Option<Vec<&'a RawValue>>,
    }

    /// `$.links`, checked only.
    #[derive(serde::Deserialize)]
    struct ApiLinks {
        #[serde(rename = "next")]
        _next: Option<String>,
    }

    /// Whether `body` is JSON in the API's shape ([`ApiPage`]), where both readers must agree.
    fn in_api_shape(body: &[u8]) -> bool {
        fn object<'a, T: serde::Deserialize<'a>>(value: &'a RawValue) -> bool {
            value.get().starts_with('{') && serde_json::from_str::<T>(value.get()).is_ok()
        }
        serde_json::from_slice::<ApiPage>(body).is_ok_and(|page| {
            page.data.is_none_or(object::<ApiData>) && page.links.is_none_or(object::<ApiLinks>)
        })
    }

    fn json_text(value: &serde_json::Value, pretty: bool) -> String {
        if pretty {
            serde_json::to_string_pretty(value).expect("values serialize")
        } else {
            serde_json::to_string(value).expect("values serialize")
        }
    }

    /// `{` entries `}` with whitespace of one style.
    fn object_text(entries: &[(String, String)], ws: &str) -> String {
        let entries: Vec<String> = entries
            .iter()
            .map(|(key, value)| format!("{ws}{key}{ws}:{ws}{value}{ws}"))
            .collect();
        format!("{{{}}}", entries.join(","))
    }

    /// Extra keys with arbitrary values, as (quoted key, value text).
    fn extras(keys: Vec<&'static str>) -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec(
            (prop::sample::select(keys), json_value(), any::<bool>()),
            0..3,
        )
        .prop_map(|entries| {
            entries
                .into_iter()
                .map(|(key, value, pretty)| (key.to_owned(), json_text(&value, pretty)))
                .collect()
        })
    }

    /// Arbitrary pages: rows of arbitrary JSON values (mostly objects), the rows and links in
    /// any order among other keys, links absent, null or with a next link that is absent,
    /// null or a string, sometimes keys written with escapes, sometimes no rows at all.
    fn page() -> impl Strategy<Value = String> {
        let rows =
            proptest::collection::vec((json_value(), any::<bool>()), 0..6).prop_map(|rows| {
                let rows: Vec<String> = rows
                    .iter()
                    .map(|(row, pretty)| json_text(row, *pretty))
                    .collect();
                format!("[{}]", rows.join(", "))
            });
        let rows_value = prop_oneof![
            8 => rows,
            1 => json_value().prop_map(|v| json_text(&v, false)),
        ];
        let rows_key = prop::sample::select(vec![r#""rows""#, r#""r\u006fws""#]);
        let data = (
            rows_key,
            rows_value,
            extras(vec![r#""total""#, r#""meta""#, r#""Rows""#]),
        )
            .prop_flat_map(|(key, rows, extras)| {
                let mut entries = extras;
                entries.push((key.to_owned(), rows));
                Just(entries).prop_shuffle()
            });
        let next = prop_oneof![
            Just(None),
            Just(Some("null".to_owned())),
            "[a-z/?=&0-9é\"\\\\]{0,12}".prop_map(|s| Some(serde_json::Value::from(s).to_string())),
        ];
        let links =
            (next, extras(vec![r#""self""#, r#""prev""#])).prop_flat_map(|(next, extras)| {
                let mut entries = extras;
                entries.extend(next.map(|next| (r#""next""#.to_owned(), next)));
                Just(entries).prop_shuffle()
            });
        let ws = prop::sample::select(vec!["", " ", "\n  ", "\t\r\n"]);
        (
            ws,
            proptest::option::weighted(0.95, data),
            prop_oneof![
                1 => Just(None),
                1 => Just(Some(None)),
                3 => links.prop_map(|l| Some(Some(l))),
            ],
            extras(vec![r#""meta""#, r#""status""#, r#""rows""#, r#""links2""#]),
            prop::sample::select(vec![r#""data""#, r#""d\u0061ta""#]),
        )
            .prop_flat_map(|(ws, data, links, extras, data_key)| {
                let mut entries = extras;
                if let Some(data) = data {
                    entries.push((data_key.to_owned(), object_text(&data, ws)));
                }
                match links {
                    None => {}
                    Some(None) => entries.push((r#""links""#.to_owned(), "null".to_owned())),
                    Some(Some(links)) => {
                        entries.push((r#""links""#.to_owned(), object_text(&links, ws)));
                    }
                }
                (Just(ws), Just(entries).prop_shuffle())
            })
            .prop_map(|(ws, entries)| format!("{ws}{}{ws}", object_text(&entries, ws)))
    }

    /// A page with one change: cut short, a byte dropped, replaced or added.
    fn damaged_page() -> impl Strategy<Value = Vec<u8>> {
        let bytes =
            prop::sample::select(b"\"\\{}[],:0-.eEtfnu \x00\x1f\x7f\x80\xbf\xc3\xe9\xff".to_vec());
        (page(), any::<prop::sample::Index>(), 0..4u8, bytes).prop_map(|(page, at, how, byte)| {
            let mut page = page.into_bytes();
            let at = at.index(page.len() + 1);
            match how {
                0 => page.truncate(at),
                1 if at < page.len() => {
                    page.remove(at);
                }
                2 if at < page.len() => page[at] = byte,
                _ => page.insert(at, byte),
            }
            page
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn decode_api_page_agrees_with_the_general_reader(first in page(), second in page()) {
            // One decoder for both pages, as a worker thread keeps it.
            let mut decoder = RowDecoder::new();
            assert_same_outcome(first.as_bytes(), &mut decoder)?;
            assert_same_outcome(second.as_bytes(), &mut decoder)?;
        }

        #[test]
        fn decode_api_page_agrees_on_damaged_pages(body in damaged_page()) {
            assert_same_outcome(&body, &mut RowDecoder::new())?;
        }

        #[test]
        fn decode_api_page_agrees_on_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..48)) {
            assert_same_outcome(&body, &mut RowDecoder::new())?;
            let mut wrapped = br#"{"data": {"rows": [{"a": "#.to_vec();
            wrapped.extend_from_slice(&body);
            wrapped.extend_from_slice(b"}]}}");
            assert_same_outcome(&wrapped, &mut RowDecoder::new())?;
        }
    }

    /// Thread CPU time in seconds (on-CPU time from the scheduler, so other processes on the
    /// machine do not count), or None where `/proc` does not tell.
    fn thread_cpu_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let nanos: u64 = stat.split_whitespace().next()?.parse().ok()?;
        Some(nanos as f64 / 1e9)
    }

    /// MB/s of one core: ~100 MB of synthetic 22-column ad-report pages of 5,000 rows, the
    /// best of 9 rounds, each path measured in every round. Run with
    /// `cargo test --release --lib decode_api_page_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement; run it in release mode"]
    fn decode_api_page_throughput() {
        use std::time::Instant;
        const ROWS: usize = 205_000;
        let pages = synthetic_pages(ROWS as u64, 5_000);
        let megabytes = pages.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
        let measure = |run: &mut dyn FnMut() -> usize| {
            let (wall, cpu) = (Instant::now(), thread_cpu_seconds());
            assert_eq!(run(), ROWS);
            let wall = wall.elapsed().as_secs_f64();
            cpu.zip(thread_cpu_seconds())
                .map_or(wall, |(start, end)| end - start)
        };
        let rows = |page: Result<(RawBatch, Option<String>)>| {
            page.expect("pages decode").0.batch.num_rows()
        };
        let mut reused = RowDecoder::new();
        let mut general_reader = || pages.iter().map(|page| rows(general(page))).sum();
        let mut fresh = || {
            let decode = |page: &Vec<u8>| decode_api_page(page, &at(), &mut RowDecoder::new());
            pages.iter().map(|page| rows(decode(page))).sum()
        };
        let mut one_decoder = || {
            let mut decode = |page: &Vec<u8>| decode_api_page(page, &at(), &mut reused);
            pages.iter().map(|page| rows(decode(page))).sum()
        };
        let mut paths: [(&str, &mut dyn FnMut() -> usize); 3] = [
            (
                "the general reader (for_each_row + push_row), a decoder per page",
                &mut general_reader,
            ),
            ("decode_api_page, a decoder per page", &mut fresh),
            (
                "decode_api_page, one decoder for all pages",
                &mut one_decoder,
            ),
        ];
        let mut best = [f64::INFINITY; 3];
        for _ in 0..9 {
            for ((_, run), best) in paths.iter_mut().zip(&mut best) {
                *best = best.min(measure(&mut **run));
            }
        }
        for ((name, _), seconds) in paths.iter().zip(best) {
            println!(
                "{name}: {megabytes:.1} MB in {seconds:.3} s of CPU = {:.0} MB/s",
                megabytes / seconds
            );
        }
    }
}
