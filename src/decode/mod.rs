//! Decoding the rows of one page into a "raw" Arrow batch, plus the kind of every column.
//!
//! This module owns the hot path from JSON bytes to Arrow builders, and the JSON scanner it
//! runs on (`Json`): a cursor that checks the bytes against the JSON grammar while it decodes
//! them, so a page is read once ([`crate::source::extract::decode_api_page`] walks the page
//! envelope with it and hands each row to [`RowDecoder`]). Keys are borrowed (unescaped only
//! when they hold a backslash), every value is dispatched on its first byte and appended to its
//! column's builder. No `serde_json::Value` trees, no allocation per row, no `String` for
//! strings without escapes. On the way it tracks each column's [`ColumnKind`] with one merge
//! lattice ([`ColumnKind::merge`]), shared with [`crate::infer`].
//!
//! It does not decide the export's schema. The raw batch keeps numbers as Int64/Float64, strings
//! (dates and timestamps included) as Utf8 and nested values as their JSON text; `infer` merges
//! the kinds of all pages and converts each batch to the final schema. Both modules use the text
//! and date/timestamp functions defined here (`parse_date`, `parse_timestamp_micros`,
//! `scalars_to_text`), so a value converts the same way whether its column's kind changed
//! inside a page or across pages.
//!
//! One concern per file, each using only the ones above it:
//! - `scanner.rs`: the JSON scanner (`Json`), why it stops (`Stop`, `Syntax`) and the values it
//!   decodes;
//! - `text.rs`: values as text, calendar dates and RFC 3339 timestamps;
//! - `kinds.rs`: the [`ColumnKind`] lattice and the Arrow types of nested values;
//! - `builders.rs`: each column's Arrow builder, widened when its kind grows;
//! - this file: [`RowDecoder`] (rows to columns, a key's column found from the previous row's
//!   key order) and the [`RawBatch`] it finishes; the tests that drive all the parts together.

mod builders;
mod kinds;
mod scanner;
mod text;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::{Field, Schema};
use serde_json::value::RawValue;

use crate::error::DecodeError;
use builders::Column;

pub use kinds::ColumnKind;
pub(crate) use kinds::has_empty_struct;
pub(crate) use scanner::{Json, Stop, Syntax};
pub(crate) use text::{parse_date, parse_timestamp_micros, scalars_to_text};

/// One decoded page: the raw batch and the kind of each of its columns.
#[derive(Debug)]
pub struct RawBatch {
    /// Columns in first-seen key order, typed by [`ColumnKind`]: Null, Boolean, Int64, Float64,
    /// or Utf8 (strings, nested JSON text, mixed text). All fields are nullable.
    pub batch: RecordBatch,
    /// `kinds[i]` describes `batch.column(i)`.
    pub kinds: Vec<ColumnKind>,
}

/// Decodes rows (JSON objects) into a [`RawBatch`], one page at a time.
///
/// ```
/// # use kargo_export::decode::{ColumnKind, RowDecoder};
/// let rows: Vec<Box<serde_json::value::RawValue>> =
///     serde_json::from_str(r#"[{"a": 1, "b": "x"}, {"a": 2.5}]"#).unwrap();
/// let mut decoder = RowDecoder::new();
/// for row in &rows {
///     decoder.push_row(row).unwrap();
/// }
/// let raw = decoder.finish().unwrap();
/// assert_eq!(raw.batch.num_rows(), 2);
/// assert_eq!(raw.kinds[0], ColumnKind::Float);
/// ```
///
/// Rows come either one by one as `&RawValue`s ([`push_row`](Self::push_row)) or straight from
/// a page's bytes, checked and decoded in the same pass
/// ([`crate::source::extract::decode_api_page`]). After an error the decoder is reset: the rows
/// pushed since the last [`finish`](Self::finish) are dropped. One decoder is meant to serve
/// page after page (one per thread).
///
/// # Memory usage
///
/// The decoder holds one builder per column with the values of the rows pushed since the last
/// `finish` (about the size of those values in Arrow form, plus one key per column);
/// `finish` hands the buffers to the batch. New builders start with room for as many rows as
/// the previous non-empty batch had and, for text, as many bytes as the same column held there
/// (plus an eighth), so a page like the previous one fills its builders without growing them.
/// Between pages the decoder keeps only those sizes (one key and one number per column).
#[derive(Debug, Default)]
pub struct RowDecoder {
    columns: Vec<Column>,
    index: HashMap<String, usize>,
    /// Column of the first key of the previous row: where the next row's lookup starts.
    first: usize,
    rows: usize,
    /// Rows of the last finished non-empty batch: the initial capacity of new builders.
    capacity: usize,
    /// Each column of the last finished non-empty batch, in order, with its text bytes: the
    /// initial byte capacity of the text builder of the same column at the same position.
    text_sizes: Vec<(String, usize)>,
}

/// Why a row pushed from page bytes was not appended.
#[derive(Debug)]
pub(crate) enum RowFailure {
    /// The row is not JSON (offset in the page).
    Syntax(Syntax),
    /// The row is JSON but cannot be decoded.
    Decode(DecodeError),
}

impl RowDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one row; `row` must be a JSON object.
    pub fn push_row(&mut self, row: &RawValue) -> Result<(), DecodeError> {
        let index = self.rows;
        let mut json = Json::new(row.get().as_bytes());
        let pushed = self.push_row_from(&mut json).and_then(|()| {
            json.skip_ws();
            if json.at_end() {
                return Ok(());
            }
            self.reset();
            Err(RowFailure::Syntax(Syntax {
                at: json.pos(),
                what: "trailing characters after the row",
            }))
        });
        pushed.map_err(|failure| match failure {
            RowFailure::Decode(error) => error,
            RowFailure::Syntax(syntax) => row_error(index, "", format!("malformed JSON: {syntax}")),
        })
    }

    /// Appends the row at the cursor (leading whitespace allowed), moving past it. The row's
    /// bytes are checked in the same pass; a row that is JSON but cannot be decoded is checked
    /// to its end before it is reported, so malformed bytes are always a `Syntax` failure, as
    /// they are for `serde_json` (which checks a row before anyone decodes it).
    pub(crate) fn push_row_from(&mut self, json: &mut Json<'_>) -> Result<(), RowFailure> {
        json.skip_ws();
        let start = json.pos;
        match self.decode_row(json) {
            Ok(()) => {
                self.rows += 1;
                Ok(())
            }
            Err(RowFailure::Syntax(syntax)) => {
                self.reset();
                Err(RowFailure::Syntax(syntax))
            }
            Err(RowFailure::Decode(error)) => {
                self.reset();
                json.pos = start;
                match json.skip_value(true) {
                    Err(Stop::Syntax(syntax)) => Err(RowFailure::Syntax(syntax)),
                    Ok(()) | Err(Stop::Invalid(_)) => Err(RowFailure::Decode(error)),
                }
            }
        }
    }

    /// Number of rows pushed since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was pushed since the last [`finish`](Self::finish).
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Builds the batch of all rows pushed so far (columns in first-seen key order) and resets
    /// the decoder.
    pub fn finish(&mut self) -> Result<RawBatch, DecodeError> {
        let rows = self.rows;
        let mut columns = std::mem::take(&mut self.columns);
        self.reset();
        if rows > 0 {
            self.capacity = rows;
            self.text_sizes.clear();
        }
        let mut fields = Vec::with_capacity(columns.len());
        let mut arrays = Vec::with_capacity(columns.len());
        let mut kinds = Vec::with_capacity(columns.len());
        for mut column in columns.drain(..) {
            column.pad_to(rows);
            if rows > 0 {
                self.text_sizes
                    .push((column.name.clone(), column.store.text_bytes()));
            }
            let (array, kind) = column.store.finish(rows);
            fields.push(Field::new(column.name, array.data_type().clone(), true));
            arrays.push(array);
            kinds.push(kind);
        }
        // Keep the (empty) vector's room for the next batch's columns.
        self.columns = columns;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let batch =
            RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
                .map_err(|error| DecodeError {
                    row: rows,
                    column: String::new(),
                    reason: format!("cannot build the batch: {error}"),
                })?;
        Ok(RawBatch { batch, kinds })
    }

    /// Drops the rows pushed since the last [`finish`](Self::finish).
    pub(crate) fn reset(&mut self) {
        self.columns.clear();
        self.index.clear();
        self.first = 0;
        self.rows = 0;
    }

    /// Walks one row object (the cursor at its first byte) and appends its values; the row
    /// index is `self.rows`.
    #[inline(always)]
    fn decode_row(&mut self, json: &mut Json<'_>) -> Result<(), RowFailure> {
        let row = self.rows;
        let in_row = |stop: Stop, column: &str| match stop {
            Stop::Syntax(syntax) => RowFailure::Syntax(syntax),
            Stop::Invalid(reason) => RowFailure::Decode(row_error(row, column, reason)),
        };
        if !json.eat(b'{') {
            // Not JSON at all is a syntax error, found when the row is checked to its end.
            let found = json.found().unwrap_or("invalid JSON");
            return Err(RowFailure::Decode(row_error(row, "", not_an_object(found))));
        }
        json.skip_ws();
        if json.eat(b'}') {
            return Ok(());
        }
        let mut previous = None;
        loop {
            json.skip_ws();
            if json.peek() != Some(b'"') {
                return Err(in_row(json.error("expected a string key"), ""));
            }
            let name = json.string().map_err(|stop| in_row(stop, ""))?;
            let index = self.column_index(name, previous);
            previous = Some(index);
            let Some(column) = self.columns.get_mut(index) else {
                return Err(RowFailure::Decode(row_error(
                    row,
                    "",
                    "internal: lost a column",
                )));
            };
            json.skip_ws();
            json.expect(b':', "expected ':'")
                .map_err(|stop| in_row(stop, &column.name))?;
            json.skip_ws();
            let value = json.value().map_err(|stop| in_row(stop, &column.name))?;
            if let Err(reason) = column.push(row, &value) {
                return Err(RowFailure::Decode(row_error(row, &column.name, reason)));
            }
            json.skip_ws();
            match json.peek() {
                Some(b',') => json.pos += 1,
                Some(b'}') => {
                    json.pos += 1;
                    return Ok(());
                }
                _ => return Err(in_row(json.error("expected ',' or '}'"), "")),
            }
        }
    }

    /// The column of `name`, created if new. Rows usually repeat the previous row's key order,
    /// so the column that followed `previous` last time is tried before the hash map.
    #[inline(always)]
    fn column_index(&mut self, name: &str, previous: Option<usize>) -> usize {
        let expected = match previous {
            None => self.first,
            Some(p) => self.columns.get(p).map_or(usize::MAX, |c| c.next),
        };
        let index = match self.columns.get(expected) {
            Some(column) if same_key(&column.name, name) => expected,
            _ => match self.index.get(name) {
                Some(&index) => index,
                None => self.add_column(name),
            },
        };
        match previous.and_then(|p| self.columns.get_mut(p)) {
            Some(column) => column.next = index,
            None => self.first = index,
        }
        index
    }

    fn add_column(&mut self, name: &str) -> usize {
        let index = self.columns.len();
        let text_bytes = match self.text_sizes.get(index) {
            Some((previous, bytes)) if previous == name && *bytes > 0 => bytes + bytes / 8,
            _ => self.capacity * 16,
        };
        self.columns
            .push(Column::new(name, self.capacity, text_bytes));
        self.index.insert(name.to_owned(), index);
        index
    }
}

/// `a == b`, inlined: keys are short, and a call to `memcmp` per key shows in profiles.
#[inline(always)]
fn same_key(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    if a.len() < 8 {
        return pack(a) == pack(b);
    }
    let last = a.len() - 8;
    (0..last)
        .step_by(8)
        .all(|at| word_at(a, at) == word_at(b, at))
        && word_at(a, last) == word_at(b, last)
}

/// The 8 bytes of `bytes` at `at` as a word (0 if there are fewer).
#[inline(always)]
fn word_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..)
        .and_then(|rest| rest.first_chunk::<8>())
        .map_or(0, |w| u64::from_ne_bytes(*w))
}

/// Up to 8 bytes packed into a word (equal words mean equal bytes for equal lengths).
#[inline(always)]
fn pack(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

fn row_error(row: usize, column: &str, reason: impl Into<String>) -> DecodeError {
    DecodeError {
        row,
        column: column.to_owned(),
        reason: reason.into(),
    }
}

#[cold]
fn not_an_object(found: &str) -> String {
    format!("expected a JSON object, found {found}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::kinds::list_of;
    use super::*;
    use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array};
    use arrow::datatypes::{DataType, Fields, Float64Type, Int64Type};
    use proptest::prelude::*;

    fn decode(rows: &[&str]) -> Result<RawBatch, DecodeError> {
        let mut decoder = RowDecoder::new();
        for row in rows {
            let raw = RawValue::from_string((*row).to_owned()).expect("test rows are valid JSON");
            decoder.push_row(&raw)?;
        }
        decoder.finish()
    }

    fn column<'a>(raw: &'a RawBatch, name: &str) -> (&'a ArrayRef, &'a ColumnKind) {
        let index = raw.batch.schema().index_of(name).expect("column exists");
        (raw.batch.column(index), &raw.kinds[index])
    }

    fn texts(array: &ArrayRef) -> Vec<Option<String>> {
        array
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect()
    }

    fn ints(array: &ArrayRef) -> Vec<Option<i64>> {
        array.as_primitive::<Int64Type>().iter().collect()
    }

    fn floats(array: &ArrayRef) -> Vec<Option<f64>> {
        array.as_primitive::<Float64Type>().iter().collect()
    }

    fn string_kind(dates: bool, timestamps: bool) -> ColumnKind {
        ColumnKind::Str { dates, timestamps }
    }

    #[test]
    fn missing_and_late_keys_are_null() {
        let raw = decode(&[r#"{"a": 1, "b": "x"}"#, r#"{"a": 2, "c": true}"#]).unwrap();
        let names: Vec<_> = raw
            .batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(raw.batch.num_rows(), 2);
        assert_eq!(ints(column(&raw, "a").0), [Some(1), Some(2)]);
        assert_eq!(texts(column(&raw, "b").0), [Some("x".to_owned()), None]);
        let (c, kind) = column(&raw, "c");
        assert_eq!(*kind, ColumnKind::Bool);
        let c: &BooleanArray = c.as_boolean();
        assert_eq!(c.iter().collect::<Vec<_>>(), [None, Some(true)]);
        assert!(raw.batch.schema().fields().iter().all(|f| f.is_nullable()));
    }

    #[test]
    fn key_order_changes_and_all_null_columns() {
        let raw = decode(&[
            r#"{"a": 1, "b": null}"#,
            r#"{"b": null, "a": 2}"#,
            r#"{"z": 0, "a": 3}"#,
        ])
        .unwrap();
        assert_eq!(ints(column(&raw, "a").0), [Some(1), Some(2), Some(3)]);
        let (b, kind) = column(&raw, "b");
        assert_eq!(*kind, ColumnKind::Null);
        assert_eq!(b.data_type(), &DataType::Null);
        assert_eq!(b.len(), 3);
        assert_eq!(ints(column(&raw, "z").0), [None, None, Some(0)]);
    }

    #[test]
    fn integers_are_exact_beyond_2_pow_53() {
        let raw = decode(&[
            r#"{"n": 9007199254740993}"#,
            r#"{"n": 9223372036854775807}"#,
            r#"{"n": -9223372036854775808}"#,
        ])
        .unwrap();
        let (n, kind) = column(&raw, "n");
        assert_eq!(*kind, ColumnKind::Int);
        assert_eq!(
            ints(n),
            [Some(9_007_199_254_740_993), Some(i64::MAX), Some(i64::MIN)]
        );
    }

    #[test]
    fn integers_beyond_i64_are_floats() {
        let raw = decode(&[r#"{"n": 9223372036854775808}"#]).unwrap();
        let (n, kind) = column(&raw, "n");
        assert_eq!(*kind, ColumnKind::Float);
        assert_eq!(floats(n), [Some(9_223_372_036_854_775_808.0)]);
    }

    #[test]
    fn ints_and_floats_in_one_batch_are_floats() {
        let raw = decode(&[
            r#"{"n": 1}"#,
            r#"{"n": 2.5}"#,
            r#"{"n": 3}"#,
            r#"{"n": 1e2}"#,
        ])
        .unwrap();
        let (n, kind) = column(&raw, "n");
        assert_eq!(*kind, ColumnKind::Float);
        assert_eq!(floats(n), [Some(1.0), Some(2.5), Some(3.0), Some(100.0)]);
    }

    #[test]
    fn int_then_string_is_text() {
        let raw = decode(&[
            r#"{"v": 1}"#,
            r#"{"v": null}"#,
            r#"{"v": "a"}"#,
            r#"{"v": 7}"#,
        ])
        .unwrap();
        let (v, kind) = column(&raw, "v");
        assert_eq!(*kind, ColumnKind::Text);
        let expected = [Some("1"), None, Some("a"), Some("7")].map(|v| v.map(str::to_owned));
        assert_eq!(texts(v), expected);
    }

    #[test]
    fn bool_and_number_is_text() {
        let raw = decode(&[
            r#"{"v": true}"#,
            r#"{"v": 2.5}"#,
            r#"{"v": false}"#,
            r#"{"v": 3}"#,
        ])
        .unwrap();
        let (v, kind) = column(&raw, "v");
        assert_eq!(*kind, ColumnKind::Text);
        let expected =
            [Some("true"), Some("2.5"), Some("false"), Some("3")].map(|v| v.map(str::to_owned));
        assert_eq!(texts(v), expected);
    }

    #[test]
    fn floats_as_text_match_ints_as_text() {
        // 1 becomes 1.0 when its column turns Float, and must still read "1" once it is text.
        let raw = decode(&[
            r#"{"v": 1}"#,
            r#"{"v": 0.5}"#,
            r#"{"v": "x"}"#,
            r#"{"v": 1e300}"#,
        ])
        .unwrap();
        let expected =
            [Some("1"), Some("0.5"), Some("x"), Some("1e300")].map(|v| v.map(str::to_owned));
        assert_eq!(texts(column(&raw, "v").0), expected);
        let floats = Float64Array::from(vec![Some(1.0), None, Some(-0.25), Some(1e20)]);
        let text = scalars_to_text(&floats).unwrap();
        let text: Vec<_> = text.iter().collect();
        assert_eq!(text, [Some("1"), None, Some("-0.25"), Some("1e20")]);
    }

    #[test]
    fn strings_are_byte_exact() {
        let rows = [
            r#"{"s": "plain"}"#,
            r#"{"s": "tab\there \"quoted\" back\\slash \/ \u00e9"}"#,
            r#"{"s": "emoji 😀 and \ud83d\ude00, CJK 日本語"}"#,
            r#"{"s": "line\nbreak\r\n"}"#,
        ];
        let raw = decode(&rows).unwrap();
        let (s, kind) = column(&raw, "s");
        assert_eq!(*kind, string_kind(false, false));
        let expected = [
            "plain",
            "tab\there \"quoted\" back\\slash / é",
            "emoji 😀 and 😀, CJK 日本語",
            "line\nbreak\r\n",
        ];
        assert_eq!(texts(s), expected.map(|v| Some(v.to_owned())));
    }

    #[test]
    fn escaped_keys_are_unescaped() {
        let raw = decode(&[r#"{"a\"b": 1, "caf\u00e9": 2}"#, r#"{"a\"b": 3}"#]).unwrap();
        assert_eq!(ints(column(&raw, "a\"b").0), [Some(1), Some(3)]);
        assert_eq!(ints(column(&raw, "café").0), [Some(2), None]);
    }

    #[test]
    fn empty_string_is_not_null() {
        let raw = decode(&[r#"{"s": ""}"#, r#"{"s": null}"#, r#"{}"#]).unwrap();
        let (s, kind) = column(&raw, "s");
        assert_eq!(*kind, string_kind(false, false));
        assert_eq!(texts(s), [Some(String::new()), None, None]);
        assert_eq!(s.null_count(), 2);
    }

    #[test]
    fn date_and_timestamp_flags() {
        let kind_of = |values: &[&str]| {
            let rows: Vec<String> = values
                .iter()
                .map(|v| format!(r#"{{"v": "{v}"}}"#))
                .collect();
            let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
            decode(&rows).unwrap().kinds[0].clone()
        };
        assert_eq!(
            kind_of(&["2024-02-29", "1999-12-31"]),
            string_kind(true, false)
        );
        assert_eq!(
            kind_of(&["2024-02-29", "2024-02-30"]),
            string_kind(false, false)
        );
        assert_eq!(kind_of(&["2023-02-29"]), string_kind(false, false));
        assert_eq!(kind_of(&["2024-1-05"]), string_kind(false, false));
        assert_eq!(kind_of(&["2024-01-05 "]), string_kind(false, false));
        assert_eq!(kind_of(&["2024-01-05", ""]), string_kind(false, false));
        assert_eq!(
            kind_of(&[
                "2025-03-01T02:25:47Z",
                "2025-03-01T02:25:47.123456789+02:00"
            ]),
            string_kind(false, true)
        );
        assert_eq!(kind_of(&["2025-03-01T02:25:47"]), string_kind(false, false));
        assert_eq!(
            kind_of(&["2025-03-01T02:25:47Z", "2025-03-01"]),
            string_kind(false, false)
        );
        let raw = decode(&[
            r#"{"d": "2024-01-05"}"#,
            r#"{"d": null}"#,
            r#"{"d": "2024-01-06"}"#,
        ])
        .unwrap();
        assert_eq!(raw.kinds[0], string_kind(true, false));
    }

    #[test]
    fn nested_values_keep_their_json_text() {
        let rows = [
            r#"{"o": {"x": 1, "y": ["a"]}, "l": [1, 2]}"#,
            r#"{"o": {"y": [], "z": {"w": true}, "x": 2.5}, "l": []}"#,
            r#"{"o": null, "l": [null, 3]}"#,
        ];
        let raw = decode(&rows).unwrap();
        let (o, kind) = column(&raw, "o");
        let expected = DataType::Struct(Fields::from(vec![
            Field::new("x", DataType::Float64, true),
            Field::new("y", list_of(DataType::Utf8), true),
            Field::new(
                "z",
                DataType::Struct(Fields::from(vec![Field::new("w", DataType::Boolean, true)])),
                true,
            ),
        ]));
        assert_eq!(*kind, ColumnKind::Nested(expected));
        assert_eq!(o.data_type(), &DataType::Utf8);
        assert_eq!(
            texts(o),
            [
                Some(r#"{"x": 1, "y": ["a"]}"#.to_owned()),
                Some(r#"{"y": [], "z": {"w": true}, "x": 2.5}"#.to_owned()),
                None
            ]
        );
        let (l, kind) = column(&raw, "l");
        assert_eq!(*kind, ColumnKind::Nested(list_of(DataType::Int64)));
        assert_eq!(texts(l)[2].as_deref(), Some("[null, 3]"));
    }

    #[test]
    fn empty_object_is_text() {
        let raw = decode(&[r#"{"o": {}}"#]).unwrap();
        assert_eq!(raw.kinds[0], ColumnKind::Text);
        assert_eq!(texts(raw.batch.column(0)), [Some("{}".to_owned())]);
        let raw = decode(&[r#"{"o": [{}]}"#]).unwrap();
        assert_eq!(raw.kinds[0], ColumnKind::Text);
        let raw = decode(&[r#"{"o": {}}"#, r#"{"o": {"a": 1}}"#]).unwrap();
        assert!(matches!(raw.kinds[0], ColumnKind::Nested(_)));
    }

    #[test]
    fn nested_conflicts_are_text() {
        let raw = decode(&[r#"{"o": [1, "a"]}"#]).unwrap();
        assert_eq!(raw.kinds[0], ColumnKind::Text);
        let raw = decode(&[r#"{"o": {"a": 1}}"#, r#"{"o": {"a": "x"}}"#, r#"{"o": 5}"#]).unwrap();
        assert_eq!(raw.kinds[0], ColumnKind::Text);
        let expected = [r#"{"a": 1}"#, r#"{"a": "x"}"#, "5"].map(|v| Some(v.to_owned()));
        assert_eq!(texts(raw.batch.column(0)), expected);
        let raw = decode(&[r#"{"o": "s"}"#, r#"{"o": [1]}"#]).unwrap();
        assert_eq!(raw.kinds[0], ColumnKind::Text);
        assert_eq!(
            texts(raw.batch.column(0)),
            ["s", "[1]"].map(|v| Some(v.to_owned()))
        );
    }

    #[test]
    fn non_object_row_is_an_error_with_its_index() {
        let ok = RawValue::from_string(r#"{"a": 1}"#.to_owned()).unwrap();
        for (text, found) in [
            ("42", "a number"),
            ("-1.5", "a number"),
            ("\"x\"", "a string"),
            ("[1]", "an array"),
            ("null", "null"),
            ("true", "a boolean"),
        ] {
            let mut decoder = RowDecoder::new();
            decoder.push_row(&ok).unwrap();
            decoder.push_row(&ok).unwrap();
            let row = RawValue::from_string(text.to_owned()).unwrap();
            let error = decoder.push_row(&row).unwrap_err();
            let expected = DecodeError {
                row: 2,
                column: String::new(),
                reason: format!("expected a JSON object, found {found}"),
            };
            assert_eq!(error, expected);
            assert!(decoder.is_empty(), "an error resets the decoder");
            decoder.push_row(&ok).unwrap();
            assert_eq!(decoder.finish().unwrap().batch.num_rows(), 1);
        }
    }

    #[test]
    fn duplicate_key_is_an_error_naming_the_column() {
        let error = decode(&[r#"{"a": 1}"#, r#"{"a": 1, "b": 2, "a": 3}"#]).unwrap_err();
        assert_eq!(error.row, 1);
        assert_eq!(error.column, "a");
        assert!(error.reason.contains("duplicate"), "{error}");
    }

    #[test]
    fn finish_resets_and_counts() {
        let mut decoder = RowDecoder::new();
        assert!(decoder.is_empty());
        for text in [r#"{"a": 1}"#, r#"{}"#, "  {\n \"b\" :\t\"x\" }  "] {
            decoder
                .push_row(&RawValue::from_string(text.to_owned()).unwrap())
                .unwrap();
        }
        assert_eq!(decoder.len(), 3);
        let raw = decoder.finish().unwrap();
        assert_eq!(raw.batch.num_rows(), 3);
        assert_eq!(raw.kinds, [ColumnKind::Int, string_kind(false, false)]);
        assert!(decoder.is_empty());
        let empty = decoder.finish().unwrap();
        assert_eq!((empty.batch.num_rows(), empty.batch.num_columns()), (0, 0));
        let only_empty_objects = decode(&["{}", "{}"]).unwrap();
        assert_eq!(only_empty_objects.batch.num_rows(), 2);
    }

    #[test]
    fn out_of_range_number_is_an_error() {
        let error = decode(&[r#"{"a": 1}"#, r#"{"a": 1e400}"#]).unwrap_err();
        assert_eq!((error.row, error.column.as_str()), (1, "a"));
    }

    proptest! {
        #[test]
        fn decoding_any_json_row_never_panics(rows in proptest::collection::vec(json_value(), 0..8)) {
            let mut decoder = RowDecoder::new();
            for row in &rows {
                let raw = serde_json::value::to_raw_value(row).expect("values serialize");
                let _ = decoder.push_row(&raw);
            }
            let raw = decoder.finish();
            prop_assert!(raw.is_ok());
        }
    }

    /// Arbitrary JSON values, with objects most of the time at the top.
    pub(crate) fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value as Json;
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<i64>().prop_map(Json::from),
            any::<u64>().prop_map(Json::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Json::from),
            ".{0,6}".prop_map(Json::String),
            prop::sample::select(vec!["2024-01-05", "2025-03-01T02:25:47Z", "", "\u{0}\"\\"])
                .prop_map(|s| Json::String(s.to_owned())),
        ];
        let value = leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                proptest::collection::vec(
                    (prop::sample::select(vec!["a", "b", "é\"", ""]), inner),
                    0..4
                )
                .prop_map(|pairs| Json::Object(
                    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        });
        prop_oneof![
            1 => value.clone(),
            4 => proptest::collection::vec((prop::sample::select(vec!["k", "l", "m", "n\n"]), value), 0..4)
                .prop_map(|pairs| Json::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    }
}
