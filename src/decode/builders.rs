//! The Arrow builders of the page being decoded: a [`Column`] per key (its builder, the rows it
//! covers, the key that followed it) and its [`Store`], one builder variant per [`ColumnKind`],
//! so kind and storage never disagree. A value that does not fit its column's kind widens the
//! kind ([`ColumnKind::merge`]) and converts the values so far (ints to floats, scalars to
//! text); missing keys become nulls.
//!
//! It reads no JSON (values come decoded from the scanner) and defines no conversion (`text`
//! and `kinds` do); the row decoder (`super`) finds each value's column and finishes the batch.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Array, Int64Builder, NullArray, StringBuilder,
};
use arrow::datatypes::DataType;

use super::kinds::{ColumnKind, has_empty_struct, json_type, merge_nested_types};
use super::scanner::Value;
use super::text::{append_text, is_date, is_timestamp, text_builder};

/// One column being built: its key, its values so far and where the key sits in rows.
#[derive(Debug)]
pub(super) struct Column {
    pub(super) name: String,
    pub(super) store: Store,
    /// Rows covered so far (values and nulls).
    len: usize,
    /// The column whose key followed this one in the last row that had it.
    pub(super) next: usize,
    /// Initial capacity (rows) of the column's builder.
    capacity: usize,
    /// Initial capacity (bytes) of the column's text builder.
    text_bytes: usize,
}

impl Column {
    pub(super) fn new(name: &str, capacity: usize, text_bytes: usize) -> Self {
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
    pub(super) fn push(&mut self, row: usize, value: &Value<'_>) -> Result<(), String> {
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
    pub(super) fn pad_to(&mut self, row: usize) {
        if self.len < row {
            self.store.append_nulls(row - self.len);
            self.len = row;
        }
    }
}

/// A column's builder, one variant per [`ColumnKind`] (so kind and storage never disagree).
#[derive(Debug)]
pub(super) enum Store {
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
    pub(super) fn text_bytes(&self) -> usize {
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
    pub(super) fn finish(self, len: usize) -> (ArrayRef, ColumnKind) {
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

/// A float builder holding the values of a finished Int64 array.
fn ints_to_floats(ints: &Int64Array) -> Float64Builder {
    let mut out = Float64Builder::with_capacity(ints.len());
    for v in ints {
        out.append_option(v.map(|v| v as f64));
    }
    out
}
