//! Column statistics of a written file, for the `add` action of a Delta commit: readers (Spark,
//! Databricks, DuckDB, delta-rs) skip files whose bounds cannot match a filter.
//!
//! They are read from the Parquet footer the writer just produced, so no pass over the data is
//! made: the row count; for each top-level column that is not nested, its null count; and for
//! the columns whose bounds every reader compares the same way (integers, floats, strings,
//! dates) the minimum and maximum over the file's row groups. A bound that is not known for
//! every row group holding values is left out (null), never guessed. Timestamps get no bounds:
//! the Delta kernel writes them to the log with millisecond precision, which would cut a
//! microsecond maximum below the true one. Truncated string bounds stay bounds: the Parquet
//! writer shortens a minimum and rounds a shortened maximum up.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, Float64Array, Int64Array, StringArray, StructArray,
    UInt64Array,
};
use arrow::compute::{SortOptions, cast, sort_to_indices};
use arrow::datatypes::{
    DataType, Date32Type, Field, FieldRef, Fields, Float64Type, Int64Type, Schema,
};
use arrow::error::ArrowError;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::file::metadata::ParquetMetaData;

/// A file's statistics, compact (a few values per column, the fields shared with the schema):
/// a report of thousands of files keeps one of these per file until its commit, which turns
/// them into the `stats` column of its `add` actions ([`stats_array`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FileStats {
    rows: i64,
    /// One per top-level column that is not nested, in the file's order.
    columns: Vec<ColumnStats>,
}

/// Eq for [`super::StagedFile`]: no bound is ever NaN (JSON has none).
impl Eq for FileStats {}

#[derive(Debug, Clone, PartialEq)]
struct ColumnStats {
    field: FieldRef,
    null_count: Option<i64>,
    min: Option<Bound>,
    max: Option<Bound>,
}

/// One bound of a column, by the kind of its type (see [`has_bounds`]).
#[derive(Debug, Clone, PartialEq)]
enum Bound {
    Int(i64),
    Float(f64),
    Text(Box<str>),
    Date(i32),
}

/// The statistics of a file with `schema` whose footer is `metadata`.
pub fn file_stats(schema: &Schema, metadata: &ParquetMetaData) -> FileStats {
    let rows: i64 = metadata.row_groups().iter().map(|rg| rg.num_rows()).sum();
    let mut columns = Vec::new();
    for field in schema.fields() {
        if field.data_type().is_nested() {
            continue;
        }
        let Ok(converter) = StatisticsConverter::try_new(
            field.name(),
            schema,
            metadata.file_metadata().schema_descr(),
        ) else {
            continue;
        };
        let nulls = converter
            .row_group_null_counts(metadata.row_groups().iter())
            .ok();
        let (min, max) = match &nulls {
            Some(nulls) if has_bounds(field.data_type()) => {
                bounds(&converter, metadata, nulls, field.data_type())
            }
            _ => (None, None),
        };
        columns.push(ColumnStats {
            field: Arc::clone(field),
            null_count: nulls.as_ref().and_then(known_sum),
            min: min.as_ref().and_then(bound),
            max: max.as_ref().and_then(bound),
        });
    }
    FileStats { rows, columns }
}

/// The `stats` column of the `add` actions of `files` (files of one report: one schema):
/// `{numRecords, minValues, maxValues, nullCount}`, one row per file.
pub fn stats_array(files: &[&FileStats]) -> Result<StructArray, ArrowError> {
    let Some(first) = files.first() else {
        return Err(ArrowError::InvalidArgumentError("no files".into()));
    };
    let same_columns = files.iter().all(|f| {
        f.columns.len() == first.columns.len()
            && f.columns
                .iter()
                .zip(&first.columns)
                .all(|(a, b)| a.field == b.field)
    });
    if !same_columns {
        return Err(ArrowError::InvalidArgumentError(
            "the files' schemas differ".into(),
        ));
    }
    let (mut bounded, mut mins, mut maxes) = (Vec::new(), Vec::new(), Vec::new());
    let (mut counted, mut null_counts) = (Vec::new(), Vec::new());
    for (i, column) in first.columns.iter().enumerate() {
        let field = &column.field;
        counted.push(Field::new(field.name(), DataType::Int64, true));
        let counts: Int64Array = files.iter().map(|f| f.columns[i].null_count).collect();
        null_counts.push(Arc::new(counts) as ArrayRef);
        if has_bounds(field.data_type()) {
            bounded.push(Field::new(field.name(), field.data_type().clone(), true));
            mins.push(bound_array(files, i, |c| &c.min, field.data_type())?);
            maxes.push(bound_array(files, i, |c| &c.max, field.data_type())?);
        }
    }
    let rows: Int64Array = files.iter().map(|f| Some(f.rows)).collect();
    let len = files.len();
    let columns: Vec<(Arc<Field>, ArrayRef)> = vec![
        (
            Arc::new(Field::new("numRecords", DataType::Int64, true)),
            Arc::new(rows),
        ),
        struct_column("minValues", bounded.clone(), mins, len),
        struct_column("maxValues", bounded, maxes, len),
        struct_column("nullCount", counted, null_counts, len),
    ];
    Ok(StructArray::from(columns))
}

/// Column `i`'s bounds (`which`) of every file, as an array of `data_type`.
fn bound_array(
    files: &[&FileStats],
    i: usize,
    which: impl Fn(&ColumnStats) -> &Option<Bound>,
    data_type: &DataType,
) -> Result<ArrayRef, ArrowError> {
    let bounds = files.iter().map(|f| which(&f.columns[i]).as_ref());
    let array: ArrayRef = match data_type {
        DataType::Float32 | DataType::Float64 => Arc::new(
            bounds
                .map(|b| match b {
                    Some(Bound::Float(v)) => Some(*v),
                    _ => None,
                })
                .collect::<Float64Array>(),
        ),
        DataType::Utf8 | DataType::LargeUtf8 => Arc::new(
            bounds
                .map(|b| match b {
                    Some(Bound::Text(v)) => Some(v.as_ref()),
                    _ => None,
                })
                .collect::<StringArray>(),
        ),
        DataType::Date32 => Arc::new(
            bounds
                .map(|b| match b {
                    Some(Bound::Date(v)) => Some(*v),
                    _ => None,
                })
                .collect::<Date32Array>(),
        ),
        _ => Arc::new(
            bounds
                .map(|b| match b {
                    Some(Bound::Int(v)) => Some(*v),
                    _ => None,
                })
                .collect::<Int64Array>(),
        ),
    };
    cast(&array, data_type)
}

/// A one-value array (a bound [`bounds`] found) as a [`Bound`].
fn bound(value: &ArrayRef) -> Option<Bound> {
    if value.is_null(0) {
        return None;
    }
    let as_type = |t: &DataType| cast(value, t).ok();
    Some(match value.data_type() {
        DataType::Float32 | DataType::Float64 => Bound::Float(
            as_type(&DataType::Float64)?
                .as_primitive::<Float64Type>()
                .value(0),
        ),
        DataType::Utf8 | DataType::LargeUtf8 => {
            Bound::Text(as_type(&DataType::Utf8)?.as_string::<i32>().value(0).into())
        }
        DataType::Date32 => Bound::Date(value.as_primitive::<Date32Type>().value(0)),
        t if t.is_integer() => Bound::Int(
            as_type(&DataType::Int64)?
                .as_primitive::<Int64Type>()
                .value(0),
        ),
        _ => return None,
    })
}

/// Whether a column of this type gets a minimum and a maximum (see the module docs).
fn has_bounds(data_type: &DataType) -> bool {
    use DataType::*;
    matches!(
        data_type,
        Int8 | Int16 | Int32 | Int64 | Float32 | Float64 | Utf8 | LargeUtf8 | Date32
    )
}

/// The file's minimum and maximum of one column, from the row groups that hold values; `None`
/// where one of them has no statistic.
fn bounds(
    converter: &StatisticsConverter<'_>,
    metadata: &ParquetMetaData,
    nulls: &UInt64Array,
    data_type: &DataType,
) -> (Option<ArrayRef>, Option<ArrayRef>) {
    let groups = metadata.row_groups();
    let with_values: Vec<u32> = (0..groups.len())
        .filter(|&i| nulls.is_valid(i) && (nulls.value(i) as i64) < groups[i].num_rows())
        .filter_map(|i| u32::try_from(i).ok())
        .collect();
    if with_values.is_empty() {
        return (None, None);
    }
    let pick = |values: parquet::errors::Result<ArrayRef>, descending: bool| -> Option<ArrayRef> {
        let values = values.ok()?;
        if values.data_type() != data_type {
            return None;
        }
        let indices = arrow::array::UInt32Array::from(with_values.clone());
        let candidates = arrow::compute::take(values.as_ref(), &indices, None).ok()?;
        if candidates.null_count() > 0 {
            return None;
        }
        let options = SortOptions {
            descending,
            nulls_first: false,
        };
        let order = sort_to_indices(candidates.as_ref(), Some(options), Some(1)).ok()?;
        arrow::compute::take(candidates.as_ref(), &order, None).ok()
    };
    (
        pick(converter.row_group_mins(groups.iter()), false),
        pick(converter.row_group_maxes(groups.iter()), true),
    )
}

/// The sum of the counts, when every row group's is known.
fn known_sum(counts: &UInt64Array) -> Option<i64> {
    (counts.null_count() == 0).then(|| counts.values().iter().map(|&n| n as i64).sum())
}

/// A struct column `name` of `fields` and their `columns` of `len` rows.
fn struct_column(
    name: &str,
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
    len: usize,
) -> (Arc<Field>, ArrayRef) {
    let fields = Fields::from(fields);
    let array: ArrayRef = if fields.is_empty() {
        Arc::new(StructArray::new_empty_fields(len, None))
    } else {
        Arc::new(StructArray::new(fields, columns, None))
    };
    (
        Arc::new(Field::new(name, array.data_type().clone(), true)),
        array,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Date32Array, Float64Array, RecordBatch, StringArray};
    use arrow::datatypes::{Date32Type, Float64Type, Int64Type};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    /// Writes `batches` as one file, one row group each, and returns its footer.
    fn write(batches: &[RecordBatch]) -> ParquetMetaData {
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(1_000_000))
            .build();
        let mut writer =
            ArrowWriter::try_new(Vec::new(), batches[0].schema(), Some(props)).unwrap();
        for batch in batches {
            writer.write(batch).unwrap();
            writer.flush().unwrap();
        }
        writer.close().unwrap()
    }

    fn batch(
        ints: Vec<Option<i64>>,
        names: Vec<Option<&str>>,
        days: Vec<Option<i32>>,
    ) -> RecordBatch {
        let n = ints.len();
        RecordBatch::try_from_iter_with_nullable([
            ("n", Arc::new(Int64Array::from(ints)) as ArrayRef, true),
            ("name", Arc::new(StringArray::from(names)) as ArrayRef, true),
            ("day", Arc::new(Date32Array::from(days)) as ArrayRef, true),
            (
                "x",
                Arc::new(Float64Array::from(vec![None::<f64>; n])) as ArrayRef,
                true,
            ),
        ])
        .unwrap()
    }

    fn column<'a>(stats: &'a StructArray, part: &str, name: &str) -> &'a ArrayRef {
        stats
            .column_by_name(part)
            .unwrap()
            .as_struct()
            .column_by_name(name)
            .unwrap()
    }

    #[test]
    fn bounds_and_null_counts_span_every_row_group() {
        let first = batch(
            vec![Some(5), None, Some(9)],
            vec![Some("m"), Some("b"), None],
            vec![Some(3), Some(1), Some(2)],
        );
        let second = batch(
            vec![Some(-2), Some(7)],
            vec![Some("z"), None],
            vec![None, Some(10)],
        );
        let metadata = write(&[first.clone(), second]);
        assert_eq!(metadata.row_groups().len(), 2);
        let stats = stats_array(&[&file_stats(&first.schema(), &metadata)]).unwrap();
        let rows = stats
            .column_by_name("numRecords")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(rows.value(0), 5);
        let min = |name| column(&stats, "minValues", name).clone();
        let max = |name| column(&stats, "maxValues", name).clone();
        assert_eq!(min("n").as_primitive::<Int64Type>().value(0), -2);
        assert_eq!(max("n").as_primitive::<Int64Type>().value(0), 9);
        assert_eq!(min("name").as_string::<i32>().value(0), "b");
        assert_eq!(max("name").as_string::<i32>().value(0), "z");
        assert_eq!(min("day").as_primitive::<Date32Type>().value(0), 1);
        assert_eq!(max("day").as_primitive::<Date32Type>().value(0), 10);
        assert!(min("x").is_null(0), "an all-null column has no bounds");
        assert_eq!(max("x").as_primitive::<Float64Type>().len(), 1);
        let nulls = |name| {
            column(&stats, "nullCount", name)
                .as_primitive::<Int64Type>()
                .value(0)
        };
        assert_eq!(
            (nulls("n"), nulls("name"), nulls("day"), nulls("x")),
            (1, 2, 1, 5)
        );
    }

    #[test]
    fn timestamps_and_nested_columns_get_no_bounds() {
        let ts = arrow::array::TimestampMicrosecondArray::from(vec![Some(1), Some(2)])
            .with_timezone("UTC");
        let list = arrow::array::ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1)]),
            None,
        ]);
        let file = RecordBatch::try_from_iter([
            ("at", Arc::new(ts) as ArrayRef),
            ("l", Arc::new(list) as ArrayRef),
        ])
        .unwrap();
        let stats = file_stats(&file.schema(), &write(std::slice::from_ref(&file)));
        let stats = stats_array(&[&stats]).unwrap();
        let min = stats.column_by_name("minValues").unwrap().as_struct();
        assert_eq!(min.num_columns(), 0);
        let nulls = stats.column_by_name("nullCount").unwrap().as_struct();
        assert_eq!(nulls.column_names(), ["at"]);
    }

    #[test]
    fn the_stats_of_several_files_make_one_row_each() {
        let a = batch(vec![Some(1)], vec![Some("a")], vec![Some(1)]);
        let b = batch(vec![Some(2)], vec![None], vec![Some(2)]);
        let sa = file_stats(&a.schema(), &write(std::slice::from_ref(&a)));
        let sb = file_stats(&b.schema(), &write(&[b]));
        let both = stats_array(&[&sa, &sb]).unwrap();
        assert_eq!(both.len(), 2);
        let min = column(&both, "minValues", "name").as_string::<i32>();
        assert_eq!((min.value(0), min.is_null(1)), ("a", true));
        let n = column(&both, "maxValues", "n").as_primitive::<Int64Type>();
        assert_eq!((n.value(0), n.value(1)), (1, 2));
        let other =
            RecordBatch::try_from_iter([("m", Arc::new(Int64Array::from(vec![1])) as ArrayRef)])
                .unwrap();
        let so = file_stats(&other.schema(), &write(std::slice::from_ref(&other)));
        assert!(stats_array(&[&sa, &so]).is_err(), "files of two schemas");
    }
}
