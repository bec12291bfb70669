//! Light transforms of an export, whatever it reads (completed reports, the report list, a
//! configured endpoint), applied to every batch after it is conformed to the export's inferred
//! schema and before it is partitioned and written, in this order:
//! `--select` (keep these columns, in this order), `--rename old=new`, `--add-column
//! name=value` (a string column holding `value` in every row, e.g. a report id) and
//! `--cast col=TYPE` (names after renaming and adding).
//!
//! A value that does not cast is an error naming its row and column, unless
//! [`OnCastError::Null`] turns it into null. Casts are checked on each page as it is decoded
//! ([`Transforms::check`]), so the error can name the page and the row within it; the same
//! cast is applied to the conformed batches when the files are written ([`Transforms::apply`]).
//! This module knows nothing about HTTP or files.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray, new_null_array};
use arrow::compute::{CastOptions, cast_with_options, nullif};
use arrow::datatypes::{
    DataType, Field, Float64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use crate::error::{DecodeError, Error, Result};

/// A type `--cast` converts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CastType {
    Int64,
    Float64,
    /// `decimal(precision, scale)`, precision 1..=38.
    Decimal(u8, i8),
    String,
    Bool,
    Date,
    /// Microseconds, UTC.
    Timestamp,
}

impl CastType {
    fn data_type(self) -> DataType {
        match self {
            CastType::Int64 => DataType::Int64,
            CastType::Float64 => DataType::Float64,
            CastType::Decimal(precision, scale) => DataType::Decimal128(precision, scale),
            CastType::String => DataType::Utf8,
            CastType::Bool => DataType::Boolean,
            CastType::Date => DataType::Date32,
            CastType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}

impl fmt::Display for CastType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CastType::Int64 => f.write_str("int64"),
            CastType::Float64 => f.write_str("float64"),
            CastType::Decimal(p, s) => write!(f, "decimal({p},{s})"),
            CastType::String => f.write_str("string"),
            CastType::Bool => f.write_str("bool"),
            CastType::Date => f.write_str("date"),
            CastType::Timestamp => f.write_str("timestamp"),
        }
    }
}

impl FromStr for CastType {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim().to_ascii_lowercase();
        let known = match text.as_str() {
            "int64" => Some(CastType::Int64),
            "float64" => Some(CastType::Float64),
            "string" => Some(CastType::String),
            "bool" => Some(CastType::Bool),
            "date" => Some(CastType::Date),
            "timestamp" => Some(CastType::Timestamp),
            _ => decimal(&text),
        };
        known.ok_or_else(|| {
            format!(
                "unknown type {text:?}: expected int64, float64, decimal(p,s), string, bool, date or timestamp"
            )
        })
    }
}

/// `decimal(p,s)` with 1 <= p <= 38 and 0 <= s <= p.
fn decimal(text: &str) -> Option<CastType> {
    let inner = text.strip_prefix("decimal(")?.strip_suffix(')')?;
    let (p, s) = inner.split_once(',')?;
    let (p, s): (u8, i8) = (p.trim().parse().ok()?, s.trim().parse().ok()?);
    ((1..=38).contains(&p) && (0..=p as i8).contains(&s)).then_some(CastType::Decimal(p, s))
}

/// What a value that does not cast becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnCastError {
    /// The export fails, naming the row and column.
    #[default]
    Fail,
    /// The value is written as null.
    Null,
}

/// The transforms of one export; empty unless asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transforms {
    pub select: Vec<String>,
    pub rename: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub cast: Vec<(String, CastType)>,
    pub on_cast_error: OnCastError,
}

impl Transforms {
    /// Whether batches pass unchanged.
    pub fn is_empty(&self) -> bool {
        self.select.is_empty()
            && self.rename.is_empty()
            && self.add.is_empty()
            && self.cast.is_empty()
    }

    /// The schema written for an export whose inferred schema is `inferred`. Every column a
    /// transform names must exist there (or be added before it is cast), and no two columns may
    /// end with the same name: otherwise an [`Error::Schema`] names the column.
    /// An export without rows (no columns) stays without columns.
    pub fn schema(&self, inferred: &SchemaRef) -> Result<SchemaRef> {
        if self.is_empty() || inferred.fields().is_empty() {
            return Ok(inferred.clone());
        }
        let has = |name: &str| inferred.field_with_name(name).is_ok();
        let known = || {
            let names: Vec<&str> = inferred
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            names.join(", ")
        };
        for (flag, name) in self
            .select
            .iter()
            .map(|n| ("--select", n))
            .chain(self.rename.iter().map(|(old, _)| ("--rename", old)))
        {
            if !has(name) {
                return Err(schema_error(
                    name,
                    format!(
                        "{flag} names a column the export does not have (it has: {})",
                        known()
                    ),
                ));
            }
        }
        let fields = self.reshape_fields(inferred);
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = fields.iter().find(|f| !seen.insert(f.name().clone())) {
            return Err(schema_error(
                twice.name(),
                "two columns would have this name after --rename / --add-column".into(),
            ));
        }
        if let Some((name, _)) = self
            .cast
            .iter()
            .find(|(name, _)| !fields.iter().any(|f| f.name() == name))
        {
            return Err(schema_error(
                name,
                "--cast names a column that is not written (after --select, --rename and --add-column)"
                    .into(),
            ));
        }
        let fields: Vec<Field> = fields
            .into_iter()
            .map(|field| match self.cast_of(field.name()) {
                Some(to) => Field::new(field.name(), to.data_type(), true),
                None => field,
            })
            .collect();
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Fields after select, rename and add, before casts.
    fn reshape_fields(&self, inferred: &Schema) -> Vec<Field> {
        let kept: Vec<Field> = if self.select.is_empty() {
            inferred
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect()
        } else {
            self.select
                .iter()
                .filter_map(|name| inferred.field_with_name(name).ok().cloned())
                .collect()
        };
        kept.into_iter()
            .map(|field| {
                let name = self.renamed(field.name()).to_owned();
                field.with_name(name)
            })
            .chain(
                self.add
                    .iter()
                    .map(|(name, _)| Field::new(name, DataType::Utf8, true)),
            )
            .collect()
    }

    /// The inferred column that output column `name` comes from: `name` before `--rename`,
    /// or `None` for a column `--add-column` adds.
    pub fn source_of<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        if self.add.iter().any(|(added, _)| added == name) {
            return None;
        }
        Some(
            self.rename
                .iter()
                .find(|(_, new)| new == name)
                .map_or(name, |(old, _)| old.as_str()),
        )
    }

    fn renamed<'a>(&'a self, name: &'a str) -> &'a str {
        self.rename
            .iter()
            .find(|(old, _)| old == name)
            .map_or(name, |(_, new)| new.as_str())
    }

    fn cast_of(&self, name: &str) -> Option<CastType> {
        self.cast.iter().find(|(n, _)| n == name).map(|(_, to)| *to)
    }

    /// A batch conformed to the inferred schema, transformed to `schema` (from
    /// [`Transforms::schema`]). A value that does not cast (with [`OnCastError::Fail`]) is an
    /// [`Error::Schema`] naming the column and the row within this batch.
    pub fn apply(&self, batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
        if self.is_empty() {
            return Ok(batch.clone());
        }
        let columns = self
            .transform(batch)
            .map_err(|e| schema_error(&e.column, format!("row {}: {}", e.row, e.reason)))?;
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        RecordBatch::try_new_with_options(schema.clone(), columns, &options)
            .map_err(|e| Error::arrow("transform", e))
    }

    /// Checks that every value of one decoded page casts, so that a failure can name the page
    /// and the row within it (0-based, as [`DecodeError`] counts).
    pub fn check(&self, batch: &RecordBatch) -> Result<(), DecodeError> {
        if self.cast.is_empty() || self.on_cast_error == OnCastError::Null {
            return Ok(());
        }
        self.transform(batch).map(drop)
    }

    /// The columns of the transformed batch; a column a page lacks is null.
    fn transform(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>, DecodeError> {
        let rows = batch.num_rows();
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .unwrap_or_else(|| new_null_array(&DataType::Utf8, rows))
        };
        let kept: Vec<(String, ArrayRef)> = if self.select.is_empty() {
            let schema = batch.schema();
            schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), column(f.name())))
                .collect()
        } else {
            self.select.iter().map(|n| (n.clone(), column(n))).collect()
        };
        kept.into_iter()
            .map(|(name, array)| (self.renamed(&name).to_owned(), array))
            .chain(self.add.iter().map(|(name, value)| {
                let array: ArrayRef = Arc::new(StringArray::from(vec![value.as_str(); rows]));
                (name.clone(), array)
            }))
            .map(|(name, array)| match self.cast_of(&name) {
                Some(to) => self.cast(&name, &array, to),
                None => Ok(array),
            })
            .collect()
    }

    /// `array` cast to `to`; a non-null value that becomes null did not cast.
    fn cast(&self, name: &str, array: &ArrayRef, to: CastType) -> Result<ArrayRef, DecodeError> {
        let safe = CastOptions {
            safe: true,
            ..CastOptions::default()
        };
        // Arrow parses only offset time zones without chrono-tz: cast at +00:00, then label
        // the (identical) instants UTC, as inferred timestamps are.
        let target = match to {
            CastType::Timestamp => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
            }
            _ => to.data_type(),
        };
        let cast_error = |e: ArrowError| DecodeError {
            row: 0,
            column: name.to_owned(),
            reason: format!("cannot cast {} to {to}: {e}", array.data_type()),
        };
        let mut cast = match (array.data_type(), to) {
            // Through the shortest text that reads back as the same float (12.345, not
            // 12.3449999...), so rounding to the scale is decimal rounding of what was sent.
            (DataType::Float64, CastType::Decimal(..)) => {
                let text = cast_with_options(array, &DataType::Utf8, &safe).map_err(cast_error)?;
                cast_with_options(&text, &target, &safe).map_err(cast_error)?
            }
            // Arrow truncates 1.5 to 1: a float that is not a whole int64 does not cast.
            (DataType::Float64, CastType::Int64) => {
                let cast = cast_with_options(array, &target, &safe).map_err(cast_error)?;
                let floats = array.as_primitive::<Float64Type>();
                let lossy: BooleanArray = floats
                    .iter()
                    .map(|v| v.map(|v| v.fract() != 0.0 || !(-I64_BOUND..I64_BOUND).contains(&v)))
                    .collect();
                nullif(&cast, &lossy).map_err(cast_error)?
            }
            _ => cast_with_options(array, &target, &safe).map_err(cast_error)?,
        };
        if to == CastType::Timestamp {
            let utc = cast
                .as_primitive::<TimestampMicrosecondType>()
                .clone()
                .with_timezone("UTC");
            cast = Arc::new(utc);
        }
        if self.on_cast_error == OnCastError::Fail
            && let Some(row) = (0..array.len()).find(|&i| array.is_valid(i) && cast.is_null(i))
        {
            let text = arrow::compute::cast(&array.slice(row, 1), &DataType::Utf8)
                .ok()
                .and_then(|text| {
                    text.as_string_opt::<i32>()
                        .map(|t| format!("{:?}", t.value(0)))
                })
                .unwrap_or_else(|| "the value".into());
            return Err(DecodeError {
                row,
                column: name.to_owned(),
                reason: format!("{text} is not a valid {to}"),
            });
        }
        Ok(cast)
    }
}

/// 2^63: floats in `-I64_BOUND..I64_BOUND` are the ones that fit an int64.
const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;

fn schema_error(column: &str, reason: String) -> Error {
    Error::Schema {
        column: column.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array};
    use arrow::datatypes::{Date32Type, Decimal128Type, Int64Type};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("amount", DataType::Utf8, true),
            Field::new("day", DataType::Utf8, true),
            Field::new("ok", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), Some(2), None])),
                Arc::new(StringArray::from(vec![Some("1.25"), Some("x"), None])),
                Arc::new(StringArray::from(vec![
                    Some("2025-03-01"),
                    Some("2025-03-02"),
                    None,
                ])),
                Arc::new(StringArray::from(vec![
                    Some("true"),
                    Some("false"),
                    Some("true"),
                ])),
            ],
        )
        .unwrap()
    }

    fn run(transforms: &Transforms) -> Result<RecordBatch> {
        let batch = batch();
        let schema = transforms.schema(&batch.schema())?;
        transforms.apply(&batch, &schema)
    }

    fn names(batch: &RecordBatch) -> Vec<String> {
        batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    #[test]
    fn cast_types_parse_and_print() {
        for text in [
            "int64",
            "float64",
            "decimal(12,2)",
            "string",
            "bool",
            "date",
            "timestamp",
        ] {
            assert_eq!(text.parse::<CastType>().unwrap().to_string(), text);
        }
        assert_eq!(
            "DECIMAL( 5 , 0 )".parse::<CastType>(),
            Ok(CastType::Decimal(5, 0))
        );
        for bad in [
            "int",
            "decimal(0,0)",
            "decimal(39,2)",
            "decimal(5,6)",
            "decimal(5)",
        ] {
            assert!(bad.parse::<CastType>().is_err(), "{bad}");
        }
    }

    #[test]
    fn select_keeps_the_given_columns_in_order() {
        let out = run(&Transforms {
            select: vec!["day".into(), "id".into()],
            ..Transforms::default()
        })
        .unwrap();
        assert_eq!(names(&out), ["day", "id"]);
        assert_eq!(out.column(1).as_primitive::<Int64Type>().value(1), 2);
        let err = run(&Transforms {
            select: vec!["nope".into()],
            ..Transforms::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("\"nope\"") && err.contains("it has: id, amount, day, ok"),
            "{err}"
        );
        let no_rows = Arc::new(Schema::empty());
        let select = Transforms {
            select: vec!["nope".into()],
            ..Transforms::default()
        };
        assert_eq!(select.schema(&no_rows).unwrap(), no_rows);
    }

    #[test]
    fn rename_and_add_column() {
        let out = run(&Transforms {
            rename: vec![("day".into(), "date".into())],
            add: vec![("report_id".into(), "rpt_1".into())],
            ..Transforms::default()
        })
        .unwrap();
        assert_eq!(names(&out), ["id", "amount", "date", "ok", "report_id"]);
        let added = out.column(4).as_string::<i32>();
        assert_eq!(added.iter().collect::<Vec<_>>(), [Some("rpt_1"); 3]);
        let clash = run(&Transforms {
            rename: vec![("day".into(), "id".into())],
            ..Transforms::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            clash.contains("\"id\"") && clash.contains("two columns"),
            "{clash}"
        );
    }

    #[test]
    fn casts_convert_values_and_name_the_row_and_column_that_fail() {
        let fail = Transforms {
            cast: vec![("amount".into(), CastType::Decimal(10, 2))],
            ..Transforms::default()
        };
        let err = run(&fail).unwrap_err().to_string();
        assert!(
            err.contains("\"amount\"")
                && err.contains("row 1")
                && err.contains("\"x\" is not a valid decimal(10,2)"),
            "{err}"
        );
        let check = fail.check(&batch()).unwrap_err();
        assert_eq!((check.row, check.column.as_str()), (1, "amount"));

        let null = Transforms {
            on_cast_error: OnCastError::Null,
            ..fail
        };
        let out = run(&null).unwrap();
        let amount = out.column(1).as_primitive::<Decimal128Type>();
        assert_eq!(amount.value(0), 125);
        assert!(amount.is_null(1) && amount.is_null(2));

        let out = run(&Transforms {
            cast: vec![
                ("day".into(), CastType::Date),
                ("ok".into(), CastType::Bool),
                ("id".into(), CastType::String),
            ],
            ..Transforms::default()
        })
        .unwrap();
        let day = out.column(2).as_primitive::<Date32Type>();
        assert_eq!(day.value(0), 20148); // 2025-03-01
        assert_eq!(
            out.column(3).as_boolean(),
            &BooleanArray::from(vec![true, false, true])
        );
        assert_eq!(out.column(0).as_string::<i32>().value(1), "2");
    }

    #[test]
    fn floats_cast_to_decimals_from_their_text_and_to_int64_only_when_whole() {
        let schema = Arc::new(Schema::new(vec![Field::new("f", DataType::Float64, true)]));
        let floats =
            Float64Array::from(vec![Some(12.345), Some(-0.125), Some(3.0), None, Some(1.5)]);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(floats)]).unwrap();
        let cast = |to: CastType, on_cast_error: OnCastError| {
            let t = Transforms {
                cast: vec![("f".into(), to)],
                on_cast_error,
                ..Transforms::default()
            };
            t.apply(&batch, &t.schema(&batch.schema()).unwrap())
        };
        // 12.345 as a float is 12.3449999...: its text rounds half away from zero.
        let out = cast(CastType::Decimal(10, 2), OnCastError::Fail).unwrap();
        let d = out.column(0).as_primitive::<Decimal128Type>();
        assert_eq!(
            d.iter().collect::<Vec<_>>(),
            [Some(1235), Some(-13), Some(300), None, Some(150)]
        );

        let err = cast(CastType::Int64, OnCastError::Fail)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("row 0") && err.contains("\"12.345\" is not a valid int64"),
            "{err}"
        );
        let out = cast(CastType::Int64, OnCastError::Null).unwrap();
        let i = out.column(0).as_primitive::<Int64Type>();
        assert_eq!(
            i.iter().collect::<Vec<_>>(),
            [None, None, Some(3), None, None]
        );
    }

    #[test]
    fn timestamps_and_numbers_cast_from_text() {
        let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec![
                "2025-03-01T10:00:00Z",
                "7",
            ]))],
        )
        .unwrap();
        let ts = Transforms {
            cast: vec![("t".into(), CastType::Timestamp)],
            ..Transforms::default()
        };
        let err = ts.check(&batch).unwrap_err();
        assert_eq!(
            (err.row, err.reason.as_str()),
            (1, "\"7\" is not a valid timestamp")
        );
        let int = Transforms {
            cast: vec![("t".into(), CastType::Int64)],
            on_cast_error: OnCastError::Null,
            ..Transforms::default()
        };
        let out = int
            .apply(&batch, &int.schema(&batch.schema()).unwrap())
            .unwrap();
        let t = out.column(0).as_primitive::<Int64Type>();
        assert!(t.is_null(0));
        assert_eq!(t.value(1), 7);
        let ts = Transforms {
            cast: vec![("t".into(), CastType::Timestamp)],
            on_cast_error: OnCastError::Null,
            ..Transforms::default()
        };
        let out = ts
            .apply(&batch, &ts.schema(&batch.schema()).unwrap())
            .unwrap();
        let t = out.column(0).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(t.value(0), 1_740_823_200_000_000);
        assert_eq!(
            out.schema().field(0).data_type(),
            &CastType::Timestamp.data_type()
        );
    }
}
