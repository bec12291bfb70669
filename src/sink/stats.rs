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

use arrow::array::{Array, ArrayRef, Int64Array, StructArray, UInt64Array, new_null_array};
use arrow::compute::{SortOptions, sort_to_indices};
use arrow::datatypes::{DataType, Field, Fields, Schema};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::file::metadata::ParquetMetaData;

/// A file's statistics as one row of the `stats` struct of an `add` action:
/// `{numRecords, minValues, maxValues, nullCount}`. Files of one report have the same schema,
/// so their rows have one type and concatenate.
#[derive(Debug, Clone, PartialEq)]
pub struct FileStats(pub StructArray);

/// Eq for [`super::StagedFile`]: array equality is reflexive.
impl Eq for FileStats {}

/// The statistics of a file with `schema` whose footer is `metadata`.
pub fn file_stats(schema: &Schema, metadata: &ParquetMetaData) -> FileStats {
    let rows: i64 = metadata.row_groups().iter().map(|rg| rg.num_rows()).sum();
    let mut bounded = Vec::new();
    let (mut mins, mut maxes) = (Vec::new(), Vec::new());
    let mut counted = Vec::new();
    let mut null_counts: Vec<ArrayRef> = Vec::new();
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
        let total = nulls.as_ref().and_then(known_sum);
        counted.push(Field::new(field.name(), DataType::Int64, true));
        null_counts.push(Arc::new(Int64Array::from(vec![total])));
        if !has_bounds(field.data_type()) {
            continue;
        }
        let (min, max) = match nulls {
            Some(nulls) => bounds(&converter, metadata, &nulls, field.data_type()),
            None => (None, None),
        };
        bounded.push(Field::new(field.name(), field.data_type().clone(), true));
        mins.push(min.unwrap_or_else(|| new_null_array(field.data_type(), 1)));
        maxes.push(max.unwrap_or_else(|| new_null_array(field.data_type(), 1)));
    }
    let columns: Vec<(Arc<Field>, ArrayRef)> = vec![
        (
            Arc::new(Field::new("numRecords", DataType::Int64, true)),
            Arc::new(Int64Array::from(vec![rows])),
        ),
        one_row_struct("minValues", bounded.clone(), mins),
        one_row_struct("maxValues", bounded, maxes),
        one_row_struct("nullCount", counted, null_counts),
    ];
    FileStats(StructArray::from(columns))
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

/// A one-row struct column `name` of `fields` and their one-row `columns`.
fn one_row_struct(
    name: &str,
    fields: Vec<Field>,
    columns: Vec<ArrayRef>,
) -> (Arc<Field>, ArrayRef) {
    let fields = Fields::from(fields);
    let array: ArrayRef = if fields.is_empty() {
        Arc::new(StructArray::new_empty_fields(1, None))
    } else {
        Arc::new(StructArray::new(fields.clone(), columns, None))
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

    fn column<'a>(stats: &'a FileStats, part: &str, name: &str) -> &'a ArrayRef {
        stats
            .0
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
        let stats = file_stats(&first.schema(), &metadata);
        let rows = stats
            .0
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
        let min = stats.0.column_by_name("minValues").unwrap().as_struct();
        assert_eq!(min.num_columns(), 0);
        let nulls = stats.0.column_by_name("nullCount").unwrap().as_struct();
        assert_eq!(nulls.column_names(), ["at"]);
    }

    #[test]
    fn the_stats_of_two_files_concatenate() {
        let a = batch(vec![Some(1)], vec![Some("a")], vec![Some(1)]);
        let b = batch(vec![Some(2)], vec![None], vec![Some(2)]);
        let sa = file_stats(&a.schema(), &write(std::slice::from_ref(&a)));
        let sb = file_stats(&b.schema(), &write(&[b]));
        let both = arrow::compute::concat(&[&sa.0 as &dyn Array, &sb.0]).unwrap();
        assert_eq!(both.len(), 2);
    }
}
