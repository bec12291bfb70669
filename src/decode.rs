//! Decoding the rows of one page into a "raw" Arrow batch, plus the kind of every column.
//!
//! This module owns the hot path from JSON bytes to Arrow builders, and the JSON scanner it
//! runs on (`Json`): a cursor that checks the bytes against the JSON grammar while it decodes
//! them, so a page is read once ([`crate::source::extract::decode_page`] walks the page
//! envelope with it and hands each row to [`RowDecoder`]). Keys are borrowed (unescaped only
//! when they hold a backslash), every value is dispatched on its first byte and appended to its
//! column's builder. No `serde_json::Value` trees, no allocation per row, no `String` for
//! strings without escapes. On the way it tracks each column's [`ColumnKind`] with one merge
//! lattice ([`ColumnKind::merge`]), shared with [`crate::infer`].
//!
//! It does not decide the export's schema. The raw batch keeps numbers as Int64/Float64, strings
//! (dates and timestamps included) as Utf8 and nested values as their JSON text; `infer` merges
//! the kinds of all pages and converts each batch to the final schema. Both modules use the text,
//! nested-type and date/timestamp functions defined here (`parse_date`,
//! `parse_timestamp_micros`, `scalars_to_text`, `merge_nested_types`), so a value converts
//! the same way whether its column's kind changed inside a page or across pages.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int64Array, Int64Builder, NullArray,
    RecordBatch, RecordBatchOptions, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Float64Type, Int64Type, Schema};
use chrono::DateTime;
use serde_json::value::RawValue;

use crate::error::DecodeError;

/// What the values of one column look like, as far as the rows seen so far tell.
///
/// Kinds form a join lattice ([`ColumnKind::merge`]): `Null` is the bottom, `Text` the top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnKind {
    /// Only nulls (or the key never had a value).
    Null,
    /// JSON booleans.
    Bool,
    /// JSON numbers without fraction or exponent that fit an i64.
    Int,
    /// Any other JSON number (and integers mixed with them).
    Float,
    /// JSON strings; the flags say whether every one is a calendar date (`YYYY-MM-DD`) or an
    /// RFC 3339 timestamp.
    Str { dates: bool, timestamps: bool },
    /// JSON objects or arrays whose values all fit this Arrow type (kept as JSON text).
    Nested(DataType),
    /// Mixed values, written as text: strings verbatim, scalars as their text, nested values as
    /// their JSON.
    Text,
}

impl ColumnKind {
    /// The least kind that covers both `self` and `other`.
    ///
    /// Commutative and associative (for nested kinds, up to the order of struct fields, which
    /// is first-seen). `Null ⊔ X = X`, `Int ⊔ Float = Float`, strings keep a flag only when both
    /// sides have it, nested types merge with `merge_nested_types` (a conflict gives `Text`), and
    /// every other pair of different kinds gives `Text`.
    pub fn merge(&self, other: &ColumnKind) -> ColumnKind {
        use ColumnKind::*;
        match (self, other) {
            (Null, kind) | (kind, Null) => kind.clone(),
            (Bool, Bool) => Bool,
            (Int, Int) => Int,
            (Int | Float, Int | Float) => Float,
            (
                Str {
                    dates: d1,
                    timestamps: t1,
                },
                Str {
                    dates: d2,
                    timestamps: t2,
                },
            ) => Str {
                dates: *d1 && *d2,
                timestamps: *t1 && *t2,
            },
            (Nested(a), Nested(b)) => merge_nested_types(a, b).map_or(Text, Nested),
            _ => Text,
        }
    }
}

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
/// ([`crate::source::extract::decode_page`]). After an error the decoder is reset: the rows
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

/// One column being built: its key, its values so far and where the key sits in rows.
#[derive(Debug)]
struct Column {
    name: String,
    store: Store,
    /// Rows covered so far (values and nulls).
    len: usize,
    /// The column whose key followed this one in the last row that had it.
    next: usize,
    /// Initial capacity (rows) of the column's builder.
    capacity: usize,
    /// Initial capacity (bytes) of the column's text builder.
    text_bytes: usize,
}

impl Column {
    fn new(name: &str, capacity: usize, text_bytes: usize) -> Self {
        Column {
            name: name.to_owned(),
            store: Store::Null,
            len: 0,
            next: usize::MAX,
            capacity,
            text_bytes,
        }
    }

    /// Sets the value of this column in `row`, widening the column's kind when needed.
    #[inline(always)]
    fn push(&mut self, row: usize, value: &Value<'_>) -> Result<(), String> {
        if self.len > row {
            return Err("duplicate key in the row".to_owned());
        }
        self.pad_to(row);
        if !self.store.try_append(value) {
            let kind = self.store.kind().merge(&value.kind());
            self.store
                .widen(&kind, self.len, self.capacity, self.text_bytes)?;
            if !self.store.try_append(value) {
                return Err(format!("internal: a {kind:?} column refused its own value"));
            }
        }
        self.len = row + 1;
        Ok(())
    }

    /// Fills the rows before `row` that had no value for this key with nulls.
    fn pad_to(&mut self, row: usize) {
        if self.len < row {
            self.store.append_nulls(row - self.len);
            self.len = row;
        }
    }
}

/// A column's builder, one variant per [`ColumnKind`] (so kind and storage never disagree).
#[derive(Debug)]
enum Store {
    Null,
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Str {
        text: StringBuilder,
        dates: bool,
        timestamps: bool,
    },
    Nested {
        text: StringBuilder,
        data_type: DataType,
    },
    Text(StringBuilder),
}

impl Store {
    fn kind(&self) -> ColumnKind {
        match self {
            Store::Null => ColumnKind::Null,
            Store::Bool(_) => ColumnKind::Bool,
            Store::Int(_) => ColumnKind::Int,
            Store::Float(_) => ColumnKind::Float,
            Store::Str {
                dates, timestamps, ..
            } => ColumnKind::Str {
                dates: *dates,
                timestamps: *timestamps,
            },
            Store::Nested { data_type, .. } => ColumnKind::Nested(data_type.clone()),
            Store::Text(_) => ColumnKind::Text,
        }
    }

    /// An empty store of `kind` holding `len` nulls, with room for `capacity` rows (and
    /// `text_bytes` bytes of text).
    fn nulls(kind: &ColumnKind, len: usize, capacity: usize, text_bytes: usize) -> Store {
        let text = || StringBuilder::with_capacity(capacity, text_bytes);
        let mut store = match kind {
            ColumnKind::Null => Store::Null,
            ColumnKind::Bool => Store::Bool(BooleanBuilder::with_capacity(capacity)),
            ColumnKind::Int => Store::Int(Int64Builder::with_capacity(capacity)),
            ColumnKind::Float => Store::Float(Float64Builder::with_capacity(capacity)),
            ColumnKind::Str { dates, timestamps } => Store::Str {
                text: text(),
                dates: *dates,
                timestamps: *timestamps,
            },
            ColumnKind::Nested(data_type) => Store::Nested {
                text: text(),
                data_type: data_type.clone(),
            },
            ColumnKind::Text => Store::Text(text()),
        };
        if len > 0 {
            store.append_nulls(len);
        }
        store
    }

    fn append_nulls(&mut self, n: usize) {
        match self {
            Store::Null => {}
            Store::Bool(b) => b.append_nulls(n),
            Store::Int(b) => b.append_nulls(n),
            Store::Float(b) => b.append_nulls(n),
            Store::Str { text, .. } | Store::Nested { text, .. } | Store::Text(text) => {
                text.append_nulls(n)
            }
        }
    }

    /// Appends `value` if it fits this store's kind (updating string flags and the nested
    /// type); returns false, appending nothing, when the kind must widen first.
    #[inline(always)]
    fn try_append(&mut self, value: &Value<'_>) -> bool {
        match (self, value) {
            (store, Value::Null) => store.append_nulls(1),
            (Store::Bool(b), Value::Bool(v)) => b.append_value(*v),
            (Store::Int(b), Value::Int(v)) => b.append_value(*v),
            (Store::Float(b), Value::Int(v)) => b.append_value(*v as f64),
            (Store::Float(b), Value::Float(v)) => b.append_value(*v),
            (
                Store::Str {
                    text,
                    dates,
                    timestamps,
                },
                Value::Str(s),
            ) => {
                *dates = *dates && is_date(s);
                *timestamps = *timestamps && is_timestamp(s);
                text.append_value(s);
            }
            (Store::Nested { text, data_type }, Value::Nested(raw)) => {
                match json_type(raw).and_then(|t| merge_nested_types(data_type, &t)) {
                    Some(merged) => *data_type = merged,
                    None => return false,
                }
                text.append_value(raw);
            }
            (Store::Text(text), value) => append_text(text, value),
            _ => return false,
        }
        true
    }

    /// Bytes of text held so far (0 for stores without text).
    fn text_bytes(&self) -> usize {
        match self {
            Store::Str { text, .. } | Store::Nested { text, .. } | Store::Text(text) => {
                text.values_slice().len()
            }
            _ => 0,
        }
    }

    /// Converts the `len` values so far to a store of `kind` (a kind at least as wide as this
    /// one); a new builder gets room for `capacity` rows and `text_bytes` bytes of text.
    fn widen(
        &mut self,
        kind: &ColumnKind,
        len: usize,
        capacity: usize,
        text_bytes: usize,
    ) -> Result<(), String> {
        let old = std::mem::replace(self, Store::Null);
        *self = match (old, kind) {
            (Store::Null, kind) => Store::nulls(kind, len, capacity, text_bytes),
            (Store::Int(mut ints), ColumnKind::Float) => {
                Store::Float(ints_to_floats(&ints.finish()))
            }
            (Store::Bool(mut b), ColumnKind::Text) => Store::Text(text_builder(&b.finish())),
            (Store::Int(mut b), ColumnKind::Text) => Store::Text(text_builder(&b.finish())),
            (Store::Float(mut b), ColumnKind::Text) => Store::Text(text_builder(&b.finish())),
            (
                Store::Str { text, .. } | Store::Nested { text, .. } | Store::Text(text),
                ColumnKind::Text,
            ) => Store::Text(text),
            (old, kind) => {
                return Err(format!(
                    "internal: cannot widen a {:?} column to {kind:?}",
                    old.kind()
                ));
            }
        };
        Ok(())
    }

    /// The finished array of `len` rows and the column's kind. A nested type Parquet cannot
    /// store (a struct without fields) makes the column `Text`.
    fn finish(self, len: usize) -> (ArrayRef, ColumnKind) {
        match self {
            Store::Null => (Arc::new(NullArray::new(len)), ColumnKind::Null),
            Store::Bool(mut b) => (Arc::new(b.finish()), ColumnKind::Bool),
            Store::Int(mut b) => (Arc::new(b.finish()), ColumnKind::Int),
            Store::Float(mut b) => (Arc::new(b.finish()), ColumnKind::Float),
            Store::Str {
                mut text,
                dates,
                timestamps,
            } => (
                Arc::new(text.finish()),
                ColumnKind::Str { dates, timestamps },
            ),
            Store::Nested {
                mut text,
                data_type,
            } => {
                let kind = if has_empty_struct(&data_type) {
                    ColumnKind::Text
                } else {
                    ColumnKind::Nested(data_type)
                };
                (Arc::new(text.finish()), kind)
            }
            Store::Text(mut text) => (Arc::new(text.finish()), ColumnKind::Text),
        }
    }
}

/// One decoded JSON value of a row.
#[derive(Debug)]
enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    /// An object or array, as its JSON text.
    Nested(&'a str),
}

impl<'a> Value<'a> {
    /// The kind of a column holding only this value.
    fn kind(&self) -> ColumnKind {
        match self {
            Value::Null => ColumnKind::Null,
            Value::Bool(_) => ColumnKind::Bool,
            Value::Int(_) => ColumnKind::Int,
            Value::Float(_) => ColumnKind::Float,
            Value::Str(s) => ColumnKind::Str {
                dates: is_date(s),
                timestamps: is_timestamp(s),
            },
            Value::Nested(raw) => json_type(raw).map_or(ColumnKind::Text, ColumnKind::Nested),
        }
    }
}

/// A JSON number: `Int` when it has no fraction or exponent and fits an i64 (exact, also
/// beyond 2^53), otherwise `Float`.
fn parse_number(text: &str) -> Result<Value<'static>, String> {
    let integral = !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'));
    if integral && let Ok(v) = text.parse::<i64>() {
        return Ok(Value::Int(v));
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Value::Float(v)),
        Ok(_) => Err(format!("number {text} is out of range for a 64-bit float")),
        Err(_) => Err(format!("invalid number {text:?}")),
    }
}

/// Appends the text of `value` (the same text `scalars_to_text` gives arrays).
fn append_text(out: &mut StringBuilder, value: &Value<'_>) {
    match value {
        Value::Null => out.append_null(),
        Value::Bool(v) => out.append_value(bool_text(*v)),
        Value::Int(v) => {
            let _ = write!(out, "{v}");
            out.append_value("");
        }
        Value::Float(v) => {
            let _ = write_float(out, *v);
            out.append_value("");
        }
        Value::Str(s) => out.append_value(s),
        Value::Nested(raw) => out.append_value(raw),
    }
}

fn bool_text(v: bool) -> &'static str {
    if v { "true" } else { "false" }
}

/// Writes a float as text: integral values in the i64 range as that integer (so `1` stays "1"
/// whether or not its column had become Float first), others in Rust's shortest round-trip
/// form (`1.5`, `1e300`).
fn write_float(out: &mut impl std::fmt::Write, v: f64) -> std::fmt::Result {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if v.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&v) {
        write!(out, "{}", v as i64)
    } else {
        write!(out, "{v:?}")
    }
}

/// Converts a Boolean, Int64 or Float64 array to text ("true"/"false", decimal integers, floats
/// as `write_float` writes them); None for any other type. Used for kind changes inside a
/// page (here) and across pages (`infer::conform`), so the text never depends on page bounds.
pub(crate) fn scalars_to_text(array: &dyn Array) -> Option<StringArray> {
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * 8);
    append_scalars_as_text(&mut out, array).then(|| out.finish())
}

fn append_scalars_as_text(out: &mut StringBuilder, array: &dyn Array) -> bool {
    if let Some(bools) = array.as_boolean_opt() {
        for v in bools {
            out.append_option(v.map(bool_text));
        }
    } else if let Some(ints) = array.as_primitive_opt::<Int64Type>() {
        for v in ints {
            append_text(out, &v.map_or(Value::Null, Value::Int));
        }
    } else if let Some(floats) = array.as_primitive_opt::<Float64Type>() {
        for v in floats {
            append_text(out, &v.map_or(Value::Null, Value::Float));
        }
    } else {
        return false;
    }
    true
}

/// A text builder holding the text of a finished scalar array.
fn text_builder(array: &dyn Array) -> StringBuilder {
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * 8);
    append_scalars_as_text(&mut out, array);
    out
}

/// A float builder holding the values of a finished Int64 array.
fn ints_to_floats(ints: &Int64Array) -> Float64Builder {
    let mut out = Float64Builder::with_capacity(ints.len());
    for v in ints {
        out.append_option(v.map(|v| v as f64));
    }
    out
}

/// Parses exactly `YYYY-MM-DD` (10 bytes, a real calendar date) into days since 1970-01-01.
/// Decides the `dates` flag and converts date columns, so the two never disagree.
pub(crate) fn parse_date(text: &str) -> Option<i32> {
    parse_date_bytes(text.as_bytes())
}

fn parse_date_bytes(b: &[u8]) -> Option<i32> {
    match b {
        [y1, y2, y3, y4, b'-', m1, m2, b'-', d1, d2] => {
            let year = two_digits(*y1, *y2)? * 100 + two_digits(*y3, *y4)?;
            civil_days(year, two_digits(*m1, *m2)?, two_digits(*d1, *d2)?)
        }
        _ => None,
    }
}

fn two_digits(tens: u8, ones: u8) -> Option<u32> {
    (tens.is_ascii_digit() && ones.is_ascii_digit())
        .then(|| u32::from(tens - b'0') * 10 + u32::from(ones - b'0'))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (years 0..=9999), None if it is not a
/// real date. Same results as chrono's `NaiveDate` (checked in the tests), without its cost.
fn civil_days(year: u32, month: u32, day: u32) -> Option<i32> {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if day == 0 || day > month_days || year > 9999 {
        return None;
    }
    // Howard Hinnant's days_from_civil, with years starting in March.
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * i64::from((month + 9) % 12) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    i32::try_from(era * 146_097 + day_of_era - 719_468).ok()
}

/// Parses an RFC 3339 timestamp (any offset) into microseconds since the epoch, UTC; digits
/// below a microsecond are dropped. Decides the `timestamps` flag and converts timestamp
/// columns, so the two never disagree. The common shapes are parsed here directly; anything
/// else goes to chrono's `DateTime::parse_from_rfc3339`, which defines the accepted set.
pub(crate) fn parse_timestamp_micros(text: &str) -> Option<i64> {
    common_timestamp_micros(text.as_bytes()).or_else(|| {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_micros())
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)` with in-range fields, else None.
fn common_timestamp_micros(b: &[u8]) -> Option<i64> {
    let (date, rest) = b.split_at_checked(10)?;
    let days = i64::from(parse_date_bytes(date)?);
    let [b'T', h1, h2, b':', m1, m2, b':', s1, s2, rest @ ..] = rest else {
        return None;
    };
    let (hour, minute, second) = (
        two_digits(*h1, *h2)?,
        two_digits(*m1, *m2)?,
        two_digits(*s1, *s2)?,
    );
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let (micros, rest) = fraction_micros(rest)?;
    let offset = offset_seconds(rest)?;
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset;
    Some(seconds * 1_000_000 + micros)
}

/// The microseconds of an optional `.digits` fraction (digits beyond 6 dropped), and the rest.
fn fraction_micros(b: &[u8]) -> Option<(i64, &[u8])> {
    let Some((b'.', rest)) = b.split_first() else {
        return Some((0, b));
    };
    let digits = rest.iter().take_while(|d| d.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let micros = rest
        .iter()
        .take(6)
        .take_while(|d| d.is_ascii_digit())
        .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
    let scale = 10i64.pow(6u32.saturating_sub(u32::try_from(digits).unwrap_or(6)));
    Some((micros * scale, rest.get(digits..)?))
}

/// Seconds east of UTC of a whole `Z`, `+HH:MM` or `-HH:MM`.
fn offset_seconds(b: &[u8]) -> Option<i64> {
    match b {
        [b'Z'] => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (hours, minutes) = (two_digits(*h1, *h2)?, two_digits(*m1, *m2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            Some(if *sign == b'-' { -seconds } else { seconds })
        }
        _ => None,
    }
}

fn is_date(text: &str) -> bool {
    parse_date(text).is_some()
}

fn is_timestamp(text: &str) -> bool {
    parse_timestamp_micros(text).is_some()
}

/// The least Arrow type covering both nested types, or None when they conflict.
///
/// Struct fields union by name (first-seen order, merged recursively), list elements merge,
/// `Int64 ⊔ Float64 = Float64`, `Null ⊔ X = X`, equal types stay; anything else conflicts.
pub(crate) fn merge_nested_types(a: &DataType, b: &DataType) -> Option<DataType> {
    match (a, b) {
        (DataType::Null, t) | (t, DataType::Null) => Some(t.clone()),
        (a, b) if a == b => Some(a.clone()),
        (DataType::Int64, DataType::Float64) | (DataType::Float64, DataType::Int64) => {
            Some(DataType::Float64)
        }
        (DataType::List(a), DataType::List(b)) => {
            let item = merge_nested_types(a.data_type(), b.data_type())?;
            Some(list_of(item))
        }
        (DataType::Struct(a), DataType::Struct(b)) => {
            merge_struct_fields(a, b).map(DataType::Struct)
        }
        _ => None,
    }
}

fn merge_struct_fields(a: &Fields, b: &Fields) -> Option<Fields> {
    let mut fields: Vec<Field> = a.iter().map(|f| f.as_ref().clone()).collect();
    for field in b.iter() {
        add_struct_field(&mut fields, field.name(), field.data_type())?;
    }
    Some(Fields::from(fields))
}

/// Adds a field to a struct's fields, merging its type with a same-named field's.
fn add_struct_field(fields: &mut Vec<Field>, name: &str, data_type: &DataType) -> Option<()> {
    match fields.iter_mut().find(|f| f.name() == name) {
        Some(field) => {
            let merged = merge_nested_types(field.data_type(), data_type)?;
            *field = Field::new(name, merged, true);
        }
        None => fields.push(Field::new(name, data_type.clone(), true)),
    }
    Some(())
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, true)))
}

/// Whether the type holds a struct without fields anywhere (Parquet cannot store one).
pub(crate) fn has_empty_struct(data_type: &DataType) -> bool {
    match data_type {
        DataType::Struct(fields) => {
            fields.is_empty() || fields.iter().any(|f| has_empty_struct(f.data_type()))
        }
        DataType::List(item) => has_empty_struct(item.data_type()),
        _ => false,
    }
}

/// Deepest nesting [`json_type`] types: a deeper value has no Arrow type (its column is `Text`).
/// Bounds the recursion, so a hostile page cannot overflow the stack.
const MAX_TYPED_DEPTH: usize = 128;

/// The Arrow type of one nested JSON value: objects are structs (first-seen field order),
/// arrays are lists of their merged element type, numbers follow `parse_number`. None when
/// the value's parts conflict (e.g. `[1, "a"]`), a string cannot be decoded, the value nests
/// deeper than [`MAX_TYPED_DEPTH`] or it is not valid JSON.
fn json_type(raw: &str) -> Option<DataType> {
    let mut json = Json::new(raw.as_bytes());
    let data_type = value_type(&mut json, MAX_TYPED_DEPTH)?;
    json.skip_ws();
    json.at_end().then_some(data_type)
}

fn value_type(json: &mut Json<'_>, depth: usize) -> Option<DataType> {
    json.skip_ws();
    match json.peek()? {
        b'{' => object_type(json, depth.checked_sub(1)?),
        b'[' => list_type(json, depth.checked_sub(1)?),
        _ => match json.value().ok()? {
            Value::Null => Some(DataType::Null),
            Value::Bool(_) => Some(DataType::Boolean),
            Value::Int(_) => Some(DataType::Int64),
            Value::Float(_) => Some(DataType::Float64),
            Value::Str(_) | Value::Nested(_) => Some(DataType::Utf8),
        },
    }
}

fn list_type(json: &mut Json<'_>, depth: usize) -> Option<DataType> {
    json.pos += 1;
    json.skip_ws();
    let mut item = DataType::Null;
    if !json.eat(b']') {
        loop {
            item = merge_nested_types(&item, &value_type(json, depth)?)?;
            json.skip_ws();
            if json.eat(b']') {
                break;
            }
            if !json.eat(b',') {
                return None;
            }
        }
    }
    Some(list_of(item))
}

fn object_type(json: &mut Json<'_>, depth: usize) -> Option<DataType> {
    json.pos += 1;
    json.skip_ws();
    let mut fields = Vec::new();
    if !json.eat(b'}') {
        loop {
            json.skip_ws();
            let name = json.string().ok()?.to_owned();
            json.skip_ws();
            if !json.eat(b':') {
                return None;
            }
            let data_type = value_type(json, depth)?;
            add_struct_field(&mut fields, &name, &data_type)?;
            json.skip_ws();
            if json.eat(b'}') {
                break;
            }
            if !json.eat(b',') {
                return None;
            }
        }
    }
    Some(DataType::Struct(Fields::from(fields)))
}

/// Why a scan stopped: the bytes are not JSON, or they are but cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Not JSON.
    Syntax(Syntax),
    /// Valid JSON that cannot be decoded (a string with a lone surrogate escape, a number
    /// beyond the f64 range): the reason, ready for a [`DecodeError`].
    Invalid(String),
}

/// Where and how bytes stop being JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Syntax {
    /// Byte offset (in the scanned bytes) of the first byte that does not fit.
    pub at: usize,
    /// What is wrong there, e.g. "expected ',' or '}'".
    pub what: &'static str,
}

impl fmt::Display for Syntax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

/// What a string's body held, as seen while moving past it.
#[derive(Clone, Copy)]
struct Body {
    escaped: bool,
    ascii: bool,
}

/// A cursor over JSON bytes that checks them against the JSON grammar (RFC 8259, as
/// `serde_json` reads it) while it decodes values where they start and finds where they end.
/// It never panics and never recurses: bytes that are not JSON stop it with a [`Syntax`]
/// error at their offset.
///
/// Strings are checked to be UTF-8 wherever they are decoded or when [`skip_value`] is asked
/// to; a string of ASCII bytes (known from the scan itself) needs no second look.
///
/// [`skip_value`]: Json::skip_value
pub(crate) struct Json<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// The text of the last decoded string that had escapes.
    scratch: String,
    /// The arrays (`[`) and objects (`{`) open while skipping a value.
    open: Vec<u8>,
}

impl<'a> Json<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Json {
            bytes,
            pos: 0,
            scratch: String::new(),
            open: Vec::new(),
        }
    }

    /// Byte offset of the cursor.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    #[inline(always)]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline(always)]
    pub(crate) fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    #[inline(always)]
    pub(crate) fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// A syntax error at the cursor.
    #[cold]
    pub(crate) fn error(&self, what: &'static str) -> Stop {
        self.syntax_at(self.pos, what)
    }

    #[cold]
    fn syntax<T>(&self, what: &'static str) -> Result<T, Stop> {
        Err(self.error(what))
    }

    #[cold]
    fn syntax_at(&self, at: usize, what: &'static str) -> Stop {
        let what = if at >= self.bytes.len() {
            "unexpected end of input"
        } else {
            what
        };
        Stop::Syntax(Syntax { at, what })
    }

    /// Moves past `byte`, or stops with `what`.
    #[inline(always)]
    pub(crate) fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), Stop> {
        if self.eat(byte) {
            Ok(())
        } else {
            self.syntax(what)
        }
    }

    /// What the value at the cursor is, judged by its first byte ("an object", "null", ...);
    /// None when no JSON value starts there.
    pub(crate) fn found(&self) -> Option<&'static str> {
        Some(match self.peek()? {
            b'{' => "an object",
            b'[' => "an array",
            b'"' => "a string",
            b't' | b'f' => "a boolean",
            b'n' => "null",
            b'-' | b'0'..=b'9' => "a number",
            _ => return None,
        })
    }

    /// Moves past `null` if the cursor is at one; true if it was.
    pub(crate) fn null(&mut self) -> Result<bool, Stop> {
        if self.peek() != Some(b'n') {
            return Ok(false);
        }
        self.literal(b"null")?;
        Ok(true)
    }

    /// The value at the cursor (no leading whitespace), decoded, moving past it.
    #[inline(always)]
    fn value(&mut self) -> Result<Value<'_>, Stop> {
        match self.peek() {
            Some(b'"') => self.string().map(Value::Str),
            Some(b'{' | b'[') => {
                let start = self.pos;
                self.skip_value(true)?;
                let raw = self.bytes.get(start..self.pos).unwrap_or_default();
                // Checked: every string in it is UTF-8 and every other byte ASCII.
                let raw =
                    std::str::from_utf8(raw).map_err(|_| self.syntax_at(start, INVALID_UTF8))?;
                Ok(Value::Nested(raw))
            }
            Some(b'n') => self.literal(b"null").map(|()| Value::Null),
            Some(b't') => self.literal(b"true").map(|()| Value::Bool(true)),
            Some(b'f') => self.literal(b"false").map(|()| Value::Bool(false)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.syntax(EXPECTED_VALUE),
        }
    }

    #[inline(always)]
    fn literal<const N: usize>(&mut self, word: &[u8; N]) -> Result<(), Stop> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        if rest.first_chunk::<N>() != Some(word) {
            return self.syntax(EXPECTED_VALUE);
        }
        self.pos += N;
        Ok(())
    }

    /// A number, checked against the JSON grammar. The common shapes are decoded while
    /// scanning: integers of up to 18 digits, and decimals without exponent of up to 15 digits
    /// (exact mantissa divided by an exact power of ten: correctly rounded, the same f64 as
    /// `str::parse`). Anything else goes through `parse_number`.
    #[inline(always)]
    fn number(&mut self) -> Result<Value<'static>, Stop> {
        let start = self.pos;
        let shape = self.number_shape()?;
        if !shape.exponent {
            if shape.frac_digits > 0 && shape.int_digits + shape.frac_digits <= 15 {
                let v = shape.mantissa as f64 / POWERS_OF_TEN[shape.frac_digits];
                return Ok(Value::Float(if shape.negative { -v } else { v }));
            }
            if !shape.fraction && shape.int_digits <= 18 {
                let v = shape.mantissa;
                return Ok(Value::Int(if shape.negative { -v } else { v }));
            }
        }
        let text = self.bytes.get(start..self.pos).unwrap_or_default();
        // A number is ASCII.
        let text = std::str::from_utf8(text).map_err(|_| self.syntax_at(start, INVALID_NUMBER))?;
        parse_number(text).map_err(Stop::Invalid)
    }

    /// Moves past a number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`), collecting its
    /// digits (wrapping: callers bound the count).
    #[inline(always)]
    fn number_shape(&mut self) -> Result<NumberShape, Stop> {
        let negative = self.eat(b'-');
        let first = self.pos;
        let (mut mantissa, int_digits) = self.digits(0);
        if int_digits == 0 {
            return self.syntax(INVALID_NUMBER);
        }
        if int_digits > 1 && self.bytes.get(first) == Some(&b'0') {
            return Err(self.syntax_at(first + 1, INVALID_NUMBER));
        }
        let fraction = self.eat(b'.');
        let mut frac_digits = 0;
        if fraction {
            (mantissa, frac_digits) = self.digits(mantissa);
            if frac_digits == 0 {
                return self.syntax(INVALID_NUMBER);
            }
        }
        let exponent = matches!(self.peek(), Some(b'e' | b'E'));
        if exponent {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits(0).1 == 0 {
                return self.syntax(INVALID_NUMBER);
            }
        }
        Ok(NumberShape {
            negative,
            mantissa,
            int_digits,
            fraction,
            frac_digits,
            exponent,
        })
    }

    /// Moves past decimal digits, appending them to `value` (wrapping); returns the new value
    /// and how many digits there were.
    #[inline(always)]
    fn digits(&mut self, mut value: i64) -> (i64, usize) {
        let start = self.pos;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            value = value.wrapping_mul(10).wrapping_add(i64::from(digit - b'0'));
            self.pos += 1;
        }
        (value, self.pos - start)
    }

    /// The string at the cursor, decoded, moving past its closing quote: borrowed from the
    /// bytes when it has no escapes, else unescaped into the cursor's scratch text.
    #[inline(always)]
    pub(crate) fn string(&mut self) -> Result<&str, Stop> {
        let start = self.pos;
        self.expect(b'"', "expected a string")?;
        let body = self.string_body()?;
        let raw = self.bytes.get(start + 1..self.pos - 1).unwrap_or_default();
        let Some(text) = as_text(raw, body.ascii) else {
            return Err(self.utf8_error(start + 1, raw));
        };
        if !body.escaped {
            return Ok(text);
        }
        unescape(text, &mut self.scratch).map_err(|reason| {
            let quoted = self.bytes.get(start..self.pos).unwrap_or_default();
            Stop::Invalid(format!(
                "invalid string {}: {reason}",
                String::from_utf8_lossy(quoted)
            ))
        })?;
        Ok(&self.scratch)
    }

    #[cold]
    fn utf8_error(&self, start: usize, raw: &[u8]) -> Stop {
        let valid = std::str::from_utf8(raw)
            .err()
            .map_or(raw.len(), |e| e.valid_up_to());
        self.syntax_at(start + valid, INVALID_UTF8)
    }

    /// Moves past the rest of a string and its closing quote (the cursor is just after the
    /// opening quote), checking its escapes and that it holds no control character. Looks at
    /// 8 bytes at a time.
    #[inline(always)]
    fn string_body(&mut self) -> Result<Body, Stop> {
        let bytes = self.bytes;
        let mut pos = self.pos;
        let mut escaped = false;
        let mut high = 0u64;
        loop {
            while let Some(chunk) = bytes.get(pos..).and_then(|rest| rest.first_chunk::<8>()) {
                let word = u64::from_le_bytes(*chunk);
                let stops = zero_bytes(word ^ QUOTES)
                    | zero_bytes(word ^ BACKSLASHES)
                    | (word.wrapping_sub(CONTROLS) & !word & HIGH_BITS);
                if stops != 0 {
                    // The high bits of the bytes before the first stop.
                    high |= word & HIGH_BITS & (stops & stops.wrapping_neg()).wrapping_sub(1);
                    pos += (stops.trailing_zeros() / 8) as usize;
                    break;
                }
                high |= word & HIGH_BITS;
                pos += 8;
            }
            match bytes.get(pos) {
                Some(b'"') => {
                    self.pos = pos + 1;
                    return Ok(Body {
                        escaped,
                        ascii: high == 0,
                    });
                }
                Some(b'\\') => {
                    escaped = true;
                    pos = self.escape_end(pos + 1)?;
                }
                Some(0..=0x1f) => {
                    self.pos = pos;
                    return self.syntax("control character in a string");
                }
                Some(&byte) => {
                    high |= u64::from(byte & 0x80);
                    pos += 1;
                }
                None => {
                    self.pos = pos;
                    return self.syntax("unterminated string");
                }
            }
        }
    }

    /// Checks the escape whose backslash is just before `pos`; returns the offset after it.
    #[inline]
    fn escape_end(&self, pos: usize) -> Result<usize, Stop> {
        match self.bytes.get(pos) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(pos + 1),
            Some(b'u') => match self.bytes.get(pos + 1..pos + 5) {
                Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => Ok(pos + 5),
                Some(_) => Err(self.syntax_at(pos + 1, "invalid \\u escape")),
                None => Err(self.syntax_at(self.bytes.len(), "")),
            },
            _ => Err(self.syntax_at(pos, "invalid escape")),
        }
    }

    /// Moves past the value at the cursor (leading whitespace allowed), checking its syntax.
    /// Its strings are checked to be UTF-8 only when `utf8`: `serde_json` checks the values it
    /// hands out (rows), not the ones it skips. Nesting depth is bounded by memory only, as in
    /// `serde_json`.
    pub(crate) fn skip_value(&mut self, utf8: bool) -> Result<(), Stop> {
        self.open.clear();
        loop {
            // At a value.
            self.skip_ws();
            match self.peek() {
                Some(b'"') => self.skip_string(utf8)?,
                Some(open @ (b'{' | b'[')) => {
                    self.pos += 1;
                    self.skip_ws();
                    let close = if open == b'{' { b'}' } else { b']' };
                    if !self.eat(close) {
                        self.open.push(open);
                        if open == b'{' {
                            self.object_key(utf8)?;
                        }
                        continue;
                    }
                }
                Some(b'n') => self.literal(b"null")?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'-' | b'0'..=b'9') => {
                    self.number_shape()?;
                }
                _ => return self.syntax(EXPECTED_VALUE),
            }
            // After a value: close what it ended.
            loop {
                let Some(&open) = self.open.last() else {
                    return Ok(());
                };
                self.skip_ws();
                match (open, self.peek()) {
                    (_, Some(b',')) => {
                        self.pos += 1;
                        if open == b'{' {
                            self.object_key(utf8)?;
                        }
                        break;
                    }
                    (b'[', Some(b']')) | (b'{', Some(b'}')) => {
                        self.pos += 1;
                        self.open.pop();
                    }
                    (b'[', _) => return self.syntax("expected ',' or ']'"),
                    _ => return self.syntax("expected ',' or '}'"),
                }
            }
        }
    }

    /// Moves past an object key and its colon.
    fn object_key(&mut self, utf8: bool) -> Result<(), Stop> {
        self.skip_ws();
        if self.peek() != Some(b'"') {
            return self.syntax("expected a string key");
        }
        self.skip_string(utf8)?;
        self.skip_ws();
        self.expect(b':', "expected ':'")
    }

    /// Moves past the string at the cursor, checking it.
    fn skip_string(&mut self, utf8: bool) -> Result<(), Stop> {
        let start = self.pos + 1;
        self.pos = start;
        let body = self.string_body()?;
        if utf8 && !body.ascii {
            let raw = self.bytes.get(start..self.pos - 1).unwrap_or_default();
            if std::str::from_utf8(raw).is_err() {
                return Err(self.utf8_error(start, raw));
            }
        }
        Ok(())
    }
}

/// The parts of a number that decide its value.
struct NumberShape {
    negative: bool,
    /// The digits before and after the point, as one integer (wrapped beyond 18 digits).
    mantissa: i64,
    int_digits: usize,
    fraction: bool,
    frac_digits: usize,
    exponent: bool,
}

const EXPECTED_VALUE: &str = "expected a value";
const INVALID_NUMBER: &str = "invalid number";
const INVALID_UTF8: &str = "invalid UTF-8 in a string";

/// `bytes` as text; bytes the scan found to be ASCII need no second look.
#[inline(always)]
fn as_text(bytes: &[u8], ascii: bool) -> Option<&str> {
    if ascii {
        debug_assert!(bytes.is_ascii());
        // SAFETY: ASCII bytes are UTF-8. `ascii` comes from `Json::string_body`, which saw the
        // high bit of every byte of the string body.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// Unescapes a string body whose escapes are known to be well formed into `out`, as
/// `serde_json` does for a `String`: a `\u` surrogate must be half of a pair.
fn unescape(text: &str, out: &mut String) -> Result<(), &'static str> {
    const BAD: &str = "invalid escape";
    out.clear();
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(rest.get(..at).ok_or(BAD)?);
        let escape = rest.as_bytes().get(at + 1..).ok_or(BAD)?;
        let (ch, len) = match escape.first().ok_or(BAD)? {
            b'"' => ('"', 1),
            b'\\' => ('\\', 1),
            b'/' => ('/', 1),
            b'b' => ('\u{8}', 1),
            b'f' => ('\u{c}', 1),
            b'n' => ('\n', 1),
            b'r' => ('\r', 1),
            b't' => ('\t', 1),
            b'u' => {
                let unit = hex4(escape.get(1..5)).ok_or(BAD)?;
                match unit {
                    0xD800..=0xDBFF => {
                        let low = match escape.get(5..7) {
                            Some(b"\\u") => hex4(escape.get(7..11)).ok_or(BAD)?,
                            _ => return Err("lone leading surrogate in a \\u escape"),
                        };
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err("lone leading surrogate in a \\u escape");
                        }
                        let code = 0x1_0000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        (char::from_u32(code).ok_or(BAD)?, 11)
                    }
                    0xDC00..=0xDFFF => return Err("lone trailing surrogate in a \\u escape"),
                    _ => (char::from_u32(unit).ok_or(BAD)?, 5),
                }
            }
            _ => return Err(BAD),
        };
        out.push(ch);
        rest = rest.get(at + 1 + len..).ok_or(BAD)?;
    }
    out.push_str(rest);
    Ok(())
}

/// The value of 4 hex digits.
fn hex4(digits: Option<&[u8]>) -> Option<u32> {
    digits?.iter().try_fold(0, |acc, &d| {
        let digit = char::from(d).to_digit(16)?;
        Some(acc * 16 + digit)
    })
}

/// 10^0 ..= 10^15, all exact in f64.
const POWERS_OF_TEN: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = ONES << 7;
const QUOTES: u64 = ONES * b'"' as u64;
const BACKSLASHES: u64 = ONES * b'\\' as u64;
/// `word - CONTROLS & !word & HIGH_BITS` flags the bytes below 0x20.
const CONTROLS: u64 = ONES * 0x20;

/// The high bit of every zero byte of `word` set (exact for the lowest zero byte, which is
/// the only one used).
#[inline(always)]
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGH_BITS
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow::array::{BooleanArray, Float64Array};
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
    fn int_and_bool_text_matches_arrow_cast() {
        let ints = Int64Array::from(vec![
            Some(i64::MIN),
            None,
            Some(0),
            Some(42),
            Some(i64::MAX),
        ]);
        let bools = BooleanArray::from(vec![Some(true), None, Some(false)]);
        for array in [&ints as &dyn Array, &bools] {
            let ours = scalars_to_text(array).unwrap();
            let arrows = arrow::compute::cast(array, &DataType::Utf8).unwrap();
            assert_eq!(&ours, arrows.as_string::<i32>());
        }
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
    fn date_and_timestamp_values() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("2024-02-30"), None);
        assert_eq!(parse_date("2024-1-05"), None);
        assert_eq!(parse_date("+024-01-05"), None);
        assert_eq!(
            parse_timestamp_micros("1970-01-01T00:00:01Z"),
            Some(1_000_000)
        );
        assert_eq!(parse_timestamp_micros("1970-01-01T02:00:00+02:00"), Some(0));
        assert_eq!(
            parse_timestamp_micros("1970-01-01T00:00:00.0000019Z"),
            Some(1)
        );
        assert_eq!(parse_timestamp_micros("2025-03-01T02:25:47"), None);
        assert_eq!(parse_timestamp_micros(""), None);
    }

    #[test]
    fn dates_agree_with_chrono() {
        use chrono::{Datelike, NaiveDate};
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)
            .unwrap()
            .num_days_from_ce();
        for year in 0..=9999u32 {
            for month in 0..=13u32 {
                for day in [0, 1, 15, 28, 29, 30, 31, 32] {
                    let chrono = NaiveDate::from_ymd_opt(year as i32, month, day)
                        .map(|d| d.num_days_from_ce() - epoch);
                    assert_eq!(civil_days(year, month, day), chrono, "{year}-{month}-{day}");
                }
            }
        }
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
    fn numbers_take_the_fast_and_the_slow_path() {
        let cases = [
            ("0", Some(0.0), true),
            ("-0", Some(0.0), true),
            ("123456789012345678", Some(123_456_789_012_345_678.0), true),
            ("0.000782", Some(0.000782), false),
            ("-4.5721", Some(-4.5721), false),
            ("123456789.123456", Some(123_456_789.123_456), false),
            ("1.5e3", Some(1500.0), false),
            ("1E-2", Some(0.01), false),
            ("-0.0", Some(-0.0), false),
        ];
        for (text, expected, int) in cases {
            match Json::new(text.as_bytes()).value() {
                Ok(Value::Int(v)) => assert!(int && Some(v as f64) == expected, "{text}"),
                Ok(Value::Float(v)) => {
                    assert!(
                        !int && expected.map(f64::to_bits) == Some(v.to_bits()),
                        "{text}"
                    )
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        for text in ["-", "01", "-01", "1.", ".5", "1e", "1e+", "+1", "-a"] {
            assert!(
                matches!(Json::new(text.as_bytes()).value(), Err(Stop::Syntax(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn strings_agree_with_serde_at_every_offset() {
        let specials: [&[u8]; 10] = [
            b"\x00",
            b"\x1f",
            b"\\n",
            b"\\u00e9",
            b"\\ud83d\\ude00",
            "é日".as_bytes(),
            b"\xff",
            b"\xc3",
            b"\\x",
            b"\\ud800",
        ];
        for len in 0..20 {
            for at in 0..=len {
                for special in specials {
                    let mut text = b"\"".to_vec();
                    text.extend(std::iter::repeat_n(b'a', at));
                    text.extend_from_slice(special);
                    text.extend(std::iter::repeat_n(b'b', len - at));
                    text.push(b'"');
                    let shown = String::from_utf8_lossy(&text).into_owned();
                    let expected = serde_json::from_slice::<String>(&text).ok();
                    // What follows the string must not change how it reads.
                    let mut followed = text.clone();
                    followed.extend_from_slice("é\x00\"".as_bytes());
                    let mut json = Json::new(&followed);
                    assert_eq!(json.string().ok().map(str::to_owned), expected, "{shown}");
                    let raw = serde_json::from_slice::<&RawValue>(&text).is_ok();
                    assert_eq!(Json::new(&text).skip_value(true).is_ok(), raw, "{shown}");
                }
            }
        }
    }

    #[test]
    fn out_of_range_number_is_an_error() {
        let error = decode(&[r#"{"a": 1}"#, r#"{"a": 1e400}"#]).unwrap_err();
        assert_eq!((error.row, error.column.as_str()), (1, "a"));
    }

    /// Sorts struct fields by name, recursively: merge is commutative up to field order.
    fn normalized(kind: &ColumnKind) -> ColumnKind {
        fn sort(data_type: &DataType) -> DataType {
            match data_type {
                DataType::List(item) => list_of(sort(item.data_type())),
                DataType::Struct(fields) => {
                    let mut fields: Vec<Field> = fields
                        .iter()
                        .map(|f| Field::new(f.name(), sort(f.data_type()), true))
                        .collect();
                    fields.sort_by(|a, b| a.name().cmp(b.name()));
                    DataType::Struct(Fields::from(fields))
                }
                other => other.clone(),
            }
        }
        match kind {
            ColumnKind::Nested(t) => ColumnKind::Nested(sort(t)),
            other => other.clone(),
        }
    }

    fn nested_type() -> impl Strategy<Value = DataType> {
        let leaf = prop_oneof![
            Just(DataType::Null),
            Just(DataType::Boolean),
            Just(DataType::Int64),
            Just(DataType::Float64),
            Just(DataType::Utf8),
        ];
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                inner.clone().prop_map(list_of),
                proptest::collection::vec((prop::sample::select(vec!["a", "b", "c"]), inner), 0..3)
                    .prop_map(|fields| {
                        let mut out: Vec<Field> = Vec::new();
                        for (name, t) in fields {
                            if !out.iter().any(|f| f.name() == name) {
                                out.push(Field::new(name, t, true));
                            }
                        }
                        DataType::Struct(Fields::from(out))
                    }),
            ]
        })
    }

    fn kind() -> impl Strategy<Value = ColumnKind> {
        prop_oneof![
            Just(ColumnKind::Null),
            Just(ColumnKind::Bool),
            Just(ColumnKind::Int),
            Just(ColumnKind::Float),
            (any::<bool>(), any::<bool>())
                .prop_map(|(dates, timestamps)| ColumnKind::Str { dates, timestamps }),
            Just(ColumnKind::Text),
            nested_type()
                .prop_filter("nested kinds hold lists or structs", |t| {
                    matches!(t, DataType::List(_) | DataType::Struct(_))
                })
                .prop_map(ColumnKind::Nested),
        ]
    }

    fn fold(kinds: &[ColumnKind]) -> ColumnKind {
        kinds.iter().fold(ColumnKind::Null, |acc, k| acc.merge(k))
    }

    proptest! {
        #[test]
        fn merge_is_commutative_and_associative(a in kind(), b in kind(), c in kind()) {
            prop_assert_eq!(normalized(&a.merge(&b)), normalized(&b.merge(&a)));
            prop_assert_eq!(a.merge(&b).merge(&c), a.merge(&b.merge(&c)));
            prop_assert_eq!(a.merge(&a), a.clone());
        }

        #[test]
        fn folding_kinds_ignores_order(
            (kinds, shuffled) in proptest::collection::vec(kind(), 0..8)
                .prop_flat_map(|k| (Just(k.clone()), Just(k).prop_shuffle()))
        ) {
            prop_assert_eq!(normalized(&fold(&kinds)), normalized(&fold(&shuffled)));
        }

        #[test]
        fn timestamp_fast_path_agrees_with_chrono(
            text in "[0-9]{4}-[01][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{0,11})?(Z|z|[+-][0-2][0-9]:[0-6][0-9])"
        ) {
            let chrono = DateTime::parse_from_rfc3339(&text).ok().map(|t| t.timestamp_micros());
            if let Some(fast) = common_timestamp_micros(text.as_bytes()) {
                prop_assert_eq!(Some(fast), chrono);
            }
            prop_assert_eq!(parse_timestamp_micros(&text), chrono);
        }

        #[test]
        fn numbers_decode_like_std_parse(text in "-?(0|[1-9][0-9]{0,19})(\\.[0-9]{1,18})?([eE][+-]?[0-9]{1,3})?") {
            let mut json = Json::new(text.as_bytes());
            let decoded = json.value();
            let integral = !text.contains(['.', 'e', 'E']);
            match (text.parse::<i64>(), text.parse::<f64>()) {
                (Ok(int), _) if integral => prop_assert!(matches!(decoded, Ok(Value::Int(v)) if v == int)),
                (_, Ok(float)) if float.is_finite() => {
                    prop_assert!(matches!(decoded, Ok(Value::Float(v)) if v.to_bits() == float.to_bits()), "{:?}", decoded);
                }
                _ => prop_assert!(decoded.is_err()),
            }
        }

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
