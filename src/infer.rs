//! One schema per export, and conforming every batch to it.
//!
//! This module owns the schema policy: it merges the [`ColumnKind`]s that [`crate::decode`]
//! observed on every page (first-seen column order over all pages, all fields nullable) into the
//! export's final Arrow schema, records schema drift (a column added after the first page, a
//! type that widens), and converts each raw batch to exactly that schema ([`conform`]). Kinds
//! merge with [`ColumnKind::merge`], the lattice `decode` uses inside a page, and conversions use
//! the same text and date/timestamp functions as `decode`, so the result never depends on where
//! a page boundary fell.
//!
//! It does not decode JSON rows (see [`crate::decode`]) nor rewrite files already written with
//! an older schema (the pipeline decides that from [`SchemaInference::drift`]).
//!
//! Final types: a column only ever null is Utf8; Bool -> Boolean; Int -> Int64; Float ->
//! Float64; strings that are all dates -> Date32, all RFC 3339 timestamps ->
//! Timestamp(Microsecond, "UTC"), other strings -> Utf8; nested values -> their inferred
//! struct/list type with Null parts as Utf8; mixed values -> Utf8 (JSON text for nested values).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, RecordBatch, RecordBatchOptions, StringArray,
    TimestampMicrosecondArray, new_null_array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::json::ReaderBuilder;

use crate::decode::{
    ColumnKind, RawBatch, has_empty_struct, parse_date, parse_timestamp_micros, scalars_to_text,
};
use crate::error::{Error, Result};

/// The merged column kinds of every page of an export (or of several reports exported together).
#[derive(Debug, Default)]
pub struct SchemaInference {
    /// Columns in first-seen order with their merged kind.
    columns: Vec<(String, ColumnKind)>,
    positions: HashMap<String, usize>,
    drift: Vec<SchemaDrift>,
}

/// A change of the schema after the first page: a column added or a type that widened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaDrift {
    /// The column that changed.
    pub column: String,
    /// The 1-based page where the change was seen.
    pub page: u64,
    /// What changed, e.g. "added" or "widened from int64 to float64".
    pub change: String,
}

impl SchemaInference {
    /// An inference that has seen no column.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges one page's column kinds (`page` is 1-based). Columns new after a page that had
    /// columns are recorded (and logged) as "added"; a column whose final type changes as
    /// "widened from .. to ..". A column that was only null getting its first type is not drift.
    pub fn observe(&mut self, batch: &RawBatch, page: u64) {
        let had_columns = !self.columns.is_empty();
        let schema = batch.batch.schema();
        for (field, kind) in schema.fields().iter().zip(&batch.kinds) {
            match self.positions.get(field.name()) {
                Some(&index) => self.widen(index, kind, page),
                None => {
                    if had_columns {
                        self.record(field.name(), page, "added".to_owned());
                    }
                    self.add(field.name(), kind.clone());
                }
            }
        }
    }

    /// Merges another report's inference into this one: known columns merge their kinds,
    /// unknown ones are appended in `other`'s order; `other`'s drift records are kept.
    pub fn merge(&mut self, other: &SchemaInference) {
        for (name, kind) in &other.columns {
            match self.positions.get(name) {
                Some(&index) => {
                    if let Some((_, known)) = self.columns.get_mut(index) {
                        *known = known.merge(kind);
                    }
                }
                None => self.add(name, kind.clone()),
            }
        }
        self.drift.extend(other.drift.iter().cloned());
    }

    /// The drift recorded so far, in the order it was seen.
    pub fn drift(&self) -> &[SchemaDrift] {
        &self.drift
    }

    /// Whether no column was seen.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The export's final schema: first-seen column order, all fields nullable.
    pub fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|(name, kind)| Field::new(name, final_type(kind), true))
            .collect();
        Arc::new(Schema::new(fields))
    }

    fn add(&mut self, name: &str, kind: ColumnKind) {
        self.positions.insert(name.to_owned(), self.columns.len());
        self.columns.push((name.to_owned(), kind));
    }

    /// Merges a page's kind into column `index`, recording a change of its final type.
    fn widen(&mut self, index: usize, kind: &ColumnKind, page: u64) {
        let Some((name, known)) = self.columns.get_mut(index) else {
            return;
        };
        let merged = known.merge(kind);
        if merged == *known {
            return;
        }
        let change = (*known != ColumnKind::Null)
            .then(|| (final_type(known), final_type(&merged)))
            .filter(|(from, to)| from != to)
            .map(|(from, to)| format!("widened from {} to {}", type_name(&from), type_name(&to)));
        *known = merged;
        if let Some(change) = change {
            let name = name.clone();
            self.record(&name, page, change);
        }
    }

    fn record(&mut self, column: &str, page: u64, change: String) {
        tracing::info!(column, page, change = %change, "schema drift");
        self.drift.push(SchemaDrift {
            column: column.to_owned(),
            page,
            change,
        });
    }
}

/// The final Arrow type of a column of this kind.
fn final_type(kind: &ColumnKind) -> DataType {
    match kind {
        ColumnKind::Null | ColumnKind::Text => DataType::Utf8,
        ColumnKind::Bool => DataType::Boolean,
        ColumnKind::Int => DataType::Int64,
        ColumnKind::Float => DataType::Float64,
        ColumnKind::Str { dates: true, .. } => DataType::Date32,
        ColumnKind::Str {
            timestamps: true, ..
        } => timestamp_type(),
        ColumnKind::Str { .. } => DataType::Utf8,
        ColumnKind::Nested(data_type) if has_empty_struct(data_type) => DataType::Utf8,
        ColumnKind::Nested(data_type) => nulls_as_text(data_type),
    }
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The nested type with every Null part replaced by Utf8 (Parquet needs a real type).
fn nulls_as_text(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Null => DataType::Utf8,
        DataType::List(item) => DataType::List(Arc::new(
            item.as_ref()
                .clone()
                .with_data_type(nulls_as_text(item.data_type())),
        )),
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| {
                    f.as_ref()
                        .clone()
                        .with_data_type(nulls_as_text(f.data_type()))
                })
                .collect::<Fields>(),
        ),
        other => other.clone(),
    }
}

/// A short lower-case name of a type for drift messages ("int64", "date32", ..).
fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "boolean".to_owned(),
        DataType::Int64 => "int64".to_owned(),
        DataType::Float64 => "float64".to_owned(),
        DataType::Utf8 => "utf8".to_owned(),
        DataType::Date32 => "date32".to_owned(),
        DataType::Timestamp(..) => "timestamp(us, UTC)".to_owned(),
        other => other.to_string(),
    }
}

/// Converts a raw batch (any page) to exactly `schema`: same fields, same order, same types.
/// A column of `schema` that the batch lacks becomes all nulls; a batch column that `schema`
/// lacks, a value that does not parse as the final type or an unsupported pair of types is an
/// [`Error::Schema`] naming the column.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let raw_schema = batch.schema();
    if let Some(extra) = raw_schema
        .fields()
        .iter()
        .find(|f| schema.field_with_name(f.name()).is_err())
    {
        return Err(schema_error(
            extra.name(),
            "the column is not in the export's schema".to_owned(),
        ));
    }
    let rows = batch.num_rows();
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) => conform_column(field.name(), column, field.data_type()),
            None => Ok(new_null_array(field.data_type(), rows)),
        })
        .collect::<Result<Vec<_>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
        .map_err(|error| Error::arrow("conforming a batch to the export's schema", error))
}

/// Converts one raw column to its final type.
fn conform_column(name: &str, column: &ArrayRef, target: &DataType) -> Result<ArrayRef> {
    let raw = column.data_type();
    match (raw, target) {
        (raw, target) if raw == target => Ok(column.clone()),
        (DataType::Null, target) => Ok(new_null_array(target, column.len())),
        (DataType::Int64, DataType::Float64) => cast(column, target)
            .map_err(|error| Error::arrow(format!("casting column {name:?} to float64"), error)),
        (DataType::Boolean | DataType::Int64 | DataType::Float64, DataType::Utf8) => {
            scalars_to_text(column.as_ref())
                .map(|text| Arc::new(text) as ArrayRef)
                .ok_or_else(|| mismatch(name, raw, target))
        }
        (DataType::Utf8, DataType::Date32) => parse_dates(name, column.as_string::<i32>()),
        (DataType::Utf8, DataType::Timestamp(TimeUnit::Microsecond, Some(tz)))
            if tz.as_ref() == "UTC" =>
        {
            parse_timestamps(name, column.as_string::<i32>())
        }
        (DataType::Utf8, DataType::List(_) | DataType::Struct(_)) => {
            decode_nested(name, column.as_string::<i32>(), target)
        }
        _ => Err(mismatch(name, raw, target)),
    }
}

fn parse_dates(name: &str, texts: &StringArray) -> Result<ArrayRef> {
    let days = texts
        .iter()
        .enumerate()
        .map(|(row, text)| match text {
            None => Ok(None),
            Some(text) => parse_date(text)
                .map(Some)
                .ok_or_else(|| bad_value(name, row, "a date (YYYY-MM-DD)", text)),
        })
        .collect::<Result<Date32Array>>()?;
    Ok(Arc::new(days))
}

fn parse_timestamps(name: &str, texts: &StringArray) -> Result<ArrayRef> {
    let micros = texts
        .iter()
        .enumerate()
        .map(|(row, text)| match text {
            None => Ok(None),
            Some(text) => parse_timestamp_micros(text)
                .map(Some)
                .ok_or_else(|| bad_value(name, row, "an RFC 3339 timestamp", text)),
        })
        .collect::<Result<TimestampMicrosecondArray>>()?;
    Ok(Arc::new(micros.with_timezone("UTC")))
}

/// Decodes JSON texts (one nested value per row, or null) into `target` with arrow-json, as
/// the field `v` of one-field objects `{"v":<text>}`.
fn decode_nested(name: &str, texts: &StringArray, target: &DataType) -> Result<ArrayRef> {
    let rows = texts.len();
    let schema = Arc::new(Schema::new(vec![Field::new("v", target.clone(), true)]));
    let mut decoder = ReaderBuilder::new(schema)
        .with_batch_size(rows.max(1))
        .build_decoder()
        .map_err(|error| Error::arrow(format!("decoding column {name:?}"), error))?;
    let mut lines = Vec::with_capacity(texts.value_data().len() + rows * 8);
    for text in texts {
        lines.extend_from_slice(b"{\"v\":");
        lines.extend_from_slice(text.unwrap_or("null").as_bytes());
        lines.extend_from_slice(b"}\n");
    }
    let invalid = |error: arrow::error::ArrowError| {
        schema_error(
            name,
            format!("expected JSON values of type {target}, found {error}"),
        )
    };
    let mut rest = lines.as_slice();
    while !rest.is_empty() {
        let read = decoder.decode(rest).map_err(invalid)?;
        if read == 0 {
            break;
        }
        rest = rest.get(read..).unwrap_or_default();
    }
    let decoded = decoder.flush().map_err(invalid)?;
    let values = match decoded {
        Some(batch) => batch.column(0).clone(),
        None => new_null_array(target, 0),
    };
    if values.len() != rows {
        return Err(schema_error(
            name,
            format!(
                "expected {rows} JSON values of type {target}, found {}",
                values.len()
            ),
        ));
    }
    Ok(values)
}

fn schema_error(column: &str, reason: String) -> Error {
    Error::Schema {
        column: column.to_owned(),
        reason,
    }
}

fn mismatch(column: &str, found: &DataType, expected: &DataType) -> Error {
    schema_error(
        column,
        format!(
            "expected {}, found {} values",
            type_name(expected),
            type_name(found)
        ),
    )
}

fn bad_value(column: &str, row: usize, expected: &str, found: &str) -> Error {
    schema_error(
        column,
        format!("expected {expected}, found {found:?} in row {row}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::RowDecoder;
    use arrow::array::{BooleanArray, Float64Array, Int64Array};
    use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
    use proptest::prelude::*;
    use serde_json::value::RawValue;

    fn page(rows: &[&str]) -> RawBatch {
        let mut decoder = RowDecoder::new();
        for row in rows {
            let raw = RawValue::from_string((*row).to_owned()).expect("test rows are valid JSON");
            decoder.push_row(&raw).expect("test rows decode");
        }
        decoder.finish().expect("test pages finish")
    }

    /// Observes the pages (numbered from 1) and conforms each to the final schema.
    fn export(pages: &[RawBatch]) -> (SchemaInference, Vec<RecordBatch>) {
        let mut inference = SchemaInference::new();
        for (i, raw) in pages.iter().enumerate() {
            inference.observe(raw, i as u64 + 1);
        }
        let schema = inference.schema();
        let batches = pages
            .iter()
            .map(|raw| conform(&raw.batch, &schema).expect("pages conform"))
            .collect();
        (inference, batches)
    }

    fn texts(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
        let column = batch.column_by_name(name).expect("column exists");
        column
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect()
    }

    fn field_type(schema: &SchemaRef, name: &str) -> DataType {
        schema
            .field_with_name(name)
            .expect("field exists")
            .data_type()
            .clone()
    }

    fn some(values: &[&str]) -> Vec<Option<String>> {
        values.iter().map(|v| Some((*v).to_owned())).collect()
    }

    #[test]
    fn int_page_then_float_page_widens_to_float64() {
        let pages = [
            page(&[r#"{"n": 1}"#, r#"{"n": 4503599627370497}"#]),
            page(&[r#"{"n": 2.5}"#]),
        ];
        let (inference, batches) = export(&pages);
        assert_eq!(field_type(&inference.schema(), "n"), DataType::Float64);
        let first = batches[0].column(0).as_primitive::<Float64Type>();
        assert_eq!(first.values().as_ref(), [1.0, 4_503_599_627_370_497.0]);
        assert_eq!(
            batches[1].column(0).as_primitive::<Float64Type>().value(0),
            2.5
        );
        assert_eq!(
            inference.drift(),
            [SchemaDrift {
                column: "n".to_owned(),
                page: 2,
                change: "widened from int64 to float64".to_owned(),
            }]
        );
    }

    #[test]
    fn int_columns_stay_exact() {
        let (inference, batches) = export(&[page(&[r#"{"n": 9223372036854775807}"#])]);
        assert_eq!(field_type(&inference.schema(), "n"), DataType::Int64);
        assert_eq!(
            batches[0].column(0).as_primitive::<Int64Type>().value(0),
            i64::MAX
        );
    }

    #[test]
    fn dates_then_other_strings_stay_text() {
        let pages = [
            page(&[r#"{"d": "2024-01-05"}"#, r#"{"d": "2024-02-29"}"#]),
            page(&[r#"{"d": "soon"}"#]),
        ];
        let (inference, batches) = export(&pages);
        assert_eq!(field_type(&inference.schema(), "d"), DataType::Utf8);
        assert_eq!(texts(&batches[0], "d"), some(&["2024-01-05", "2024-02-29"]));
        assert_eq!(inference.drift()[0].change, "widened from date32 to utf8");
    }

    #[test]
    fn dates_become_date32() {
        let pages = [
            page(&[r#"{"d": "1970-01-02"}"#, r#"{"d": null}"#]),
            page(&[r#"{"d": "2024-02-29"}"#]),
        ];
        let (inference, batches) = export(&pages);
        assert_eq!(field_type(&inference.schema(), "d"), DataType::Date32);
        let days: Vec<_> = batches[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Date32Type>()
            .iter()
            .collect();
        assert_eq!(days, [Some(1), None]);
        assert_eq!(
            batches[1]
                .column(0)
                .as_primitive::<arrow::datatypes::Date32Type>()
                .value(0),
            19_782
        );
    }

    #[test]
    fn timestamps_become_utc_micros() {
        let pages = [page(&[
            r#"{"t": "2025-03-01T02:25:47+02:00"}"#,
            r#"{"t": "2025-03-01T00:25:47.1234567Z"}"#,
            r#"{"t": null}"#,
        ])];
        let (inference, batches) = export(&pages);
        assert_eq!(field_type(&inference.schema(), "t"), timestamp_type());
        let micros = batches[0]
            .column(0)
            .as_primitive::<TimestampMicrosecondType>();
        let expected_seconds = 1_740_788_747; // 2025-03-01T00:25:47Z
        let values: Vec<_> = micros.iter().collect();
        assert_eq!(
            values,
            [
                Some(expected_seconds * 1_000_000),
                Some(expected_seconds * 1_000_000 + 123_456),
                None
            ]
        );
    }

    #[test]
    fn only_null_column_is_utf8_nulls() {
        let (inference, batches) =
            export(&[page(&[r#"{"x": null, "a": 1}"#]), page(&[r#"{"a": 2}"#])]);
        let schema = inference.schema();
        assert_eq!(field_type(&schema, "x"), DataType::Utf8);
        assert_eq!(texts(&batches[0], "x"), [None]);
        assert_eq!(texts(&batches[1], "x"), [None]);
        assert!(schema.fields().iter().all(|f| f.is_nullable()));
    }

    #[test]
    fn late_column_is_null_in_earlier_batches() {
        let pages = [
            page(&[r#"{"a": 1}"#, r#"{"a": 2}"#]),
            page(&[r#"{"a": 3, "b": true}"#]),
        ];
        let (inference, batches) = export(&pages);
        let names: Vec<_> = inference
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["a", "b"]);
        let b = batches[0].column(1).as_boolean();
        assert_eq!(b, &BooleanArray::from(vec![None, None]));
        assert!(batches[1].column(1).as_boolean().value(0));
        assert_eq!(
            inference.drift(),
            [SchemaDrift {
                column: "b".to_owned(),
                page: 2,
                change: "added".to_owned(),
            }]
        );
    }

    #[test]
    fn scalar_conflicts_across_pages_are_text() {
        let pages = [
            page(&[r#"{"v": 1, "w": true}"#]),
            page(&[r#"{"v": 1.5, "w": 5}"#]),
            page(&[r#"{"v": "x", "w": null}"#]),
        ];
        let (inference, batches) = export(&pages);
        let schema = inference.schema();
        assert_eq!(field_type(&schema, "v"), DataType::Utf8);
        assert_eq!(field_type(&schema, "w"), DataType::Utf8);
        let v: Vec<_> = batches.iter().flat_map(|b| texts(b, "v")).collect();
        assert_eq!(v, some(&["1", "1.5", "x"]));
        let w: Vec<_> = batches.iter().flat_map(|b| texts(b, "w")).collect();
        assert_eq!(w, [Some("true".to_owned()), Some("5".to_owned()), None]);
    }

    #[test]
    fn nested_structs_merge_across_pages() {
        let pages = [
            page(&[r#"{"o": {"a": 1, "l": []}}"#]),
            page(&[
                r#"{"o": {"b": "x", "a": 2.5, "l": [{"k": null}]}}"#,
                r#"{"o": null}"#,
            ]),
        ];
        let (inference, batches) = export(&pages);
        let item = DataType::Struct(Fields::from(vec![Field::new("k", DataType::Utf8, true)]));
        let expected = DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Float64, true),
            Field::new(
                "l",
                DataType::List(Arc::new(Field::new_list_field(item, true))),
                true,
            ),
            Field::new("b", DataType::Utf8, true),
        ]));
        assert_eq!(field_type(&inference.schema(), "o"), expected);
        let first = batches[0].column(0).as_struct();
        assert_eq!(first.column(0).as_primitive::<Float64Type>().value(0), 1.0);
        assert!(first.column(2).is_null(0));
        let second = batches[1].column(0).as_struct();
        assert_eq!(second.column(0).as_primitive::<Float64Type>().value(0), 2.5);
        assert_eq!(second.column(2).as_string::<i32>().value(0), "x");
        assert_eq!(second.column(1).as_list::<i32>().value(0).len(), 1);
        assert!(second.is_null(1));
    }

    #[test]
    fn nested_conflict_across_pages_is_json_text() {
        let pages = [
            page(&[r#"{"o": {"a": 1}}"#]),
            page(&[r#"{"o": {"a": [1]}}"#]),
        ];
        let (inference, batches) = export(&pages);
        assert_eq!(field_type(&inference.schema(), "o"), DataType::Utf8);
        assert_eq!(texts(&batches[0], "o"), some(&[r#"{"a": 1}"#]));
        assert_eq!(texts(&batches[1], "o"), some(&[r#"{"a": [1]}"#]));
    }

    #[test]
    fn merge_combines_reports() {
        let mut first = SchemaInference::new();
        first.observe(&page(&[r#"{"a": 1, "b": "x"}"#]), 1);
        let mut second = SchemaInference::new();
        second.observe(&page(&[r#"{"c": true, "a": 0.5}"#]), 1);
        assert!(SchemaInference::new().is_empty());
        first.merge(&second);
        assert!(!first.is_empty());
        let schema = first.schema();
        let fields: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().clone()))
            .collect();
        assert_eq!(
            fields,
            [
                ("a", DataType::Float64),
                ("b", DataType::Utf8),
                ("c", DataType::Boolean)
            ]
        );
    }

    #[test]
    fn conform_rejects_unknown_columns_and_bad_values() {
        let raw = page(&[r#"{"a": 1, "z": 2}"#]);
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let error = conform(&raw.batch, &schema).unwrap_err();
        assert!(
            matches!(&error, Error::Schema { column, .. } if column == "z"),
            "{error}"
        );

        let raw = page(&[r#"{"d": "2024-13-01"}"#]);
        let schema = Arc::new(Schema::new(vec![Field::new("d", DataType::Date32, true)]));
        let error = conform(&raw.batch, &schema).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"schema conflict in column "d": expected a date (YYYY-MM-DD), found "2024-13-01" in row 0"#
        );

        let raw = page(&[r#"{"d": true}"#]);
        let error = conform(&raw.batch, &schema).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"schema conflict in column "d": expected date32, found boolean values"#
        );
    }

    #[test]
    fn conform_keeps_values_of_unchanged_types() {
        let raw = page(&[r#"{"i": 3, "f": 0.25, "b": false, "s": "x"}"#]);
        let mut inference = SchemaInference::new();
        inference.observe(&raw, 1);
        let batch = conform(&raw.batch, &inference.schema()).unwrap();
        assert_eq!(
            batch.column(0).as_primitive::<Int64Type>(),
            &Int64Array::from(vec![3])
        );
        assert_eq!(
            batch.column(1).as_primitive::<Float64Type>(),
            &Float64Array::from(vec![0.25])
        );
        assert_eq!(
            batch.column(2).as_boolean(),
            &BooleanArray::from(vec![false])
        );
        assert_eq!(texts(&batch, "s"), some(&["x"]));
        assert!(inference.drift().is_empty());
    }

    fn scalar_json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value as Json;
        const EXACT: i64 = 1 << 53;
        prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            (-EXACT..=EXACT).prop_map(Json::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Json::from),
            (-1000.0..1000.0f64).prop_map(|f| Json::from(f.round())),
            ".{0,4}".prop_map(Json::String),
            prop::sample::select(vec![
                "2024-01-05",
                "2024-02-30",
                "2025-03-01T02:25:47Z",
                "2025-03-01T02:25:47.5-07:30",
                "",
            ])
            .prop_map(|s| Json::String(s.to_owned())),
        ]
    }

    fn scalar_row() -> impl Strategy<Value = serde_json::Value> {
        proptest::collection::btree_map(
            prop::sample::select(vec!["a", "b", "c", "d"]),
            scalar_json(),
            0..4,
        )
        .prop_map(|map| {
            serde_json::Value::Object(map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        })
    }

    /// Rows and the sorted points where pages end.
    fn paged<S: Strategy<Value = serde_json::Value>>(
        row: S,
    ) -> impl Strategy<Value = (Vec<String>, Vec<usize>)> {
        proptest::collection::vec(row, 0..24).prop_flat_map(|rows| {
            let texts: Vec<String> = rows.iter().map(|r| r.to_string()).collect();
            let len = texts.len();
            (Just(texts), proptest::collection::vec(0..=len, 0..5)).prop_map(|(texts, mut cuts)| {
                cuts.sort_unstable();
                (texts, cuts)
            })
        })
    }

    fn split<'a>(rows: &'a [String], cuts: &[usize]) -> Vec<&'a [String]> {
        let mut pages = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&rows.len())) {
            pages.push(&rows[start..cut]);
            start = cut;
        }
        pages
    }

    fn decode_rows(rows: &[String]) -> Result<RawBatch, crate::error::DecodeError> {
        let mut decoder = RowDecoder::new();
        for row in rows {
            let raw = RawValue::from_string(row.clone()).expect("generated rows are valid JSON");
            decoder.push_row(&raw)?;
        }
        decoder.finish()
    }

    proptest! {
        #[test]
        fn every_page_conforms_and_page_bounds_do_not_matter((rows, cuts) in paged(scalar_row())) {
            let pages: Vec<RawBatch> = split(&rows, &cuts)
                .into_iter()
                .map(|p| decode_rows(p).expect("scalar rows decode"))
                .collect();
            let mut inference = SchemaInference::new();
            for (i, raw) in pages.iter().enumerate() {
                inference.observe(raw, i as u64 + 1);
            }
            let schema = inference.schema();
            let mut conformed = Vec::new();
            for raw in &pages {
                let batch = conform(&raw.batch, &schema).expect("every page conforms");
                prop_assert_eq!(batch.schema(), schema.clone());
                prop_assert_eq!(batch.num_rows(), raw.batch.num_rows());
                conformed.push(batch);
            }
            // The same rows as one page give the same schema and the same values.
            let whole = decode_rows(&rows).expect("scalar rows decode");
            let mut single = SchemaInference::new();
            single.observe(&whole, 1);
            prop_assert_eq!(single.schema(), schema.clone());
            let whole = conform(&whole.batch, &schema).expect("the whole page conforms");
            let joined = arrow::compute::concat_batches(&schema, &conformed).expect("same schema");
            prop_assert_eq!(joined, whole);
        }

        #[test]
        fn any_json_rows_decode_or_fail_cleanly_and_then_conform(
            (rows, cuts) in paged(crate::decode::tests::json_value())
        ) {
            let decoded: Vec<_> = split(&rows, &cuts).into_iter().map(decode_rows).collect();
            if decoded.iter().all(Result::is_ok) {
                let pages: Vec<RawBatch> = decoded.into_iter().flatten().collect();
                let mut inference = SchemaInference::new();
                for (i, raw) in pages.iter().enumerate() {
                    inference.observe(raw, i as u64 + 1);
                }
                let schema = inference.schema();
                for raw in &pages {
                    let batch = conform(&raw.batch, &schema);
                    prop_assert!(batch.is_ok(), "{:?} for {:?}", batch.err(), rows);
                }
            }
        }
    }
}
