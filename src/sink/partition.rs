//! Hive partitioning: turning partition values into `col=value` path segments, and splitting a
//! batch into one batch per partition.
//!
//! This module owns the encoding rules (which bytes are percent-encoded, the default partition
//! for null and "", the 255-byte segment limit, how each Arrow type is written as text) and the
//! split itself, done with Arrow kernels (sort to indices, partition ranges, take) rather than row
//! by row. It does not know about files or storage. The encoding is stricter than Hive's own so
//! that no value can form `/`, `..` or `=` in a path, whatever the source sends.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{SortColumn, lexsort_to_indices, partition, take};
use arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{NaiveDateTime, SecondsFormat};

use crate::error::{Error, Result};

/// Folder value used by Hive, Spark and DuckDB for null and empty partition values.
pub const HIVE_DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";
/// Most distinct partitions an export may have unless told otherwise (`--max-partitions`, the
/// jobs file's `max_partitions`): each is a file, and an open encoder while it is written.
pub const DEFAULT_MAX_PARTITIONS: usize = 10_000;
/// Longest `col=value` segment accepted (most filesystems limit a name to 255 bytes).
pub const MAX_SEGMENT_BYTES: usize = 255;

/// Whether an ASCII byte is percent-encoded in a segment.
fn needs_escape(byte: u8) -> bool {
    byte < 0x20
        || byte == 0x7f
        || matches!(
            byte,
            b'"' | b'#'
                | b'%'
                | b'\''
                | b'*'
                | b'.'
                | b'/'
                | b':'
                | b'='
                | b'?'
                | b'['
                | b'\\'
                | b']'
                | b'^'
                | b'{'
                | b'}'
        )
}

/// Encodes a column name, partition value or report key for use inside one path segment:
/// control bytes and `"#%'*./:=?[\]^{}` become `%XX` (uppercase hex), everything else (including
/// non-ASCII UTF-8) is kept. The result never contains `/`, `.` or `=`.
pub fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() && needs_escape(c as u8) {
            let _ = write!(out, "%{:02X}", c as u8);
        } else {
            out.push(c);
        }
    }
    out
}

/// Exact inverse of [`encode_segment`]: `%XX` (either case) becomes the byte, anything else is
/// kept. Bytes that do not form UTF-8 are replaced by U+FFFD.
pub fn decode_segment(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match escaped_byte(&bytes[i..]) {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The byte of a `%XX` escape at the start of `bytes`.
fn escaped_byte(bytes: &[u8]) -> Option<u8> {
    let [b'%', hi, lo, ..] = bytes else {
        return None;
    };
    let hex = |b: u8| (b as char).to_digit(16);
    Some((hex(*hi)? * 16 + hex(*lo)?) as u8)
}

/// The `COL=value` segment of one partition column; `None` and `""` give the Hive default.
pub fn hive_segment(column: &str, value: Option<&str>) -> Result<String> {
    let encoded = match value {
        Some(v) if !v.is_empty() => encode_segment(v),
        _ => HIVE_DEFAULT_PARTITION.to_owned(),
    };
    let segment = format!("{}={encoded}", encode_segment(column));
    if segment.len() > MAX_SEGMENT_BYTES {
        return Err(Error::Partition {
            column: column.to_owned(),
            reason: format!(
                "a value of {} bytes makes a path segment of {} bytes, the limit is {MAX_SEGMENT_BYTES}",
                value.map_or(0, str::len),
                segment.len()
            ),
        });
    }
    Ok(segment)
}

/// The text of one partition value (`None` for null): strings verbatim, numbers and booleans as
/// text, dates `YYYY-MM-DD`, timestamps RFC 3339 UTC with a fraction only when non-zero.
pub fn value_text(column: &str, array: &dyn Array, row: usize) -> Result<Option<String>> {
    if array.is_null(row) {
        return Ok(None);
    }
    let text = match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().value(row).to_owned(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_owned(),
        DataType::Utf8View => array.as_string_view().value(row).to_owned(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        // Debug keeps `1.0` and uses exponents for huge values, so the text stays short.
        DataType::Float64 => format!("{:?}", array.as_primitive::<Float64Type>().value(row)),
        DataType::Boolean => array.as_boolean().value(row).to_string(),
        DataType::Date32 => {
            let date = array.as_primitive::<Date32Type>().value_as_date(row);
            out_of_range(column, date)?.format("%Y-%m-%d").to_string()
        }
        DataType::Timestamp(unit, _) => {
            let time = out_of_range(column, timestamp(array, *unit, row))?;
            time.and_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true)
        }
        _ => ArrayFormatter::try_new(array, &FormatOptions::default())
            .map_err(|e| Error::arrow(format!("formatting partition column {column:?}"), e))?
            .value(row)
            .to_string(),
    };
    Ok(Some(text))
}

fn timestamp(array: &dyn Array, unit: TimeUnit, row: usize) -> Option<NaiveDateTime> {
    match unit {
        TimeUnit::Second => array
            .as_primitive::<TimestampSecondType>()
            .value_as_datetime(row),
        TimeUnit::Millisecond => array
            .as_primitive::<TimestampMillisecondType>()
            .value_as_datetime(row),
        TimeUnit::Microsecond => array
            .as_primitive::<TimestampMicrosecondType>()
            .value_as_datetime(row),
        TimeUnit::Nanosecond => array
            .as_primitive::<TimestampNanosecondType>()
            .value_as_datetime(row),
    }
}

fn out_of_range<T>(column: &str, value: Option<T>) -> Result<T> {
    value.ok_or_else(|| Error::Partition {
        column: column.to_owned(),
        reason: "a date or timestamp value is out of range".into(),
    })
}

/// The rows of one partition, without the partition columns.
#[derive(Debug, Clone)]
pub struct PartitionChunk {
    /// Encoded `COL=value` segments in `partition_by` order (empty when unpartitioned).
    pub dirs: Vec<String>,
    /// The rows, with the file schema.
    pub batch: RecordBatch,
}

/// Splits batches of an export's full schema into per-partition batches of the file schema.
#[derive(Debug, Clone)]
pub struct Partitioner {
    /// Partition columns: index in the full schema and name.
    keys: Vec<(usize, String)>,
    /// Indices of the columns that stay in the files.
    keep: Vec<usize>,
    file_schema: SchemaRef,
}

impl Partitioner {
    /// Checks `partition_by` against `schema`: each column must exist once, be scalar, and at
    /// least one column must remain for the files.
    pub fn new(schema: &SchemaRef, partition_by: &[String]) -> Result<Self> {
        let mut keys = Vec::with_capacity(partition_by.len());
        for name in partition_by {
            let index = key_index(schema, name)?;
            if keys.iter().any(|(i, _)| *i == index) {
                return Err(partition_error(name, "it is listed twice"));
            }
            keys.push((index, name.clone()));
        }
        let keep: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !keys.iter().any(|(k, _)| k == i))
            .collect();
        if keep.is_empty() && !partition_by.is_empty() {
            let last = partition_by.last().map_or("", String::as_str);
            return Err(partition_error(
                last,
                "every column would be a partition column; at least one must stay in the files",
            ));
        }
        let file_schema = Arc::new(
            schema
                .project(&keep)
                .map_err(|e| Error::arrow("file schema", e))?,
        );
        Ok(Self {
            keys,
            keep,
            file_schema,
        })
    }

    /// The schema of the files: the full schema without the partition columns.
    pub fn file_schema(&self) -> &SchemaRef {
        &self.file_schema
    }

    /// Splits `batch` (full schema) into one chunk per partition, in path order; within a chunk
    /// rows keep their original order. An empty batch gives no chunks.
    pub fn split(&self, batch: &RecordBatch) -> Result<Vec<PartitionChunk>> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        if self.keys.is_empty() {
            let batch = self.project(batch, None)?;
            return Ok(vec![PartitionChunk {
                dirs: Vec::new(),
                batch,
            }]);
        }
        let groups = self.group_rows(batch)?;
        if groups.len() == 1 {
            let dirs = groups.into_keys().next().unwrap_or_default();
            let batch = self.project(batch, None)?;
            return Ok(vec![PartitionChunk { dirs, batch }]);
        }
        groups
            .into_iter()
            .map(|(dirs, rows)| {
                let batch = self.project(batch, Some(&UInt32Array::from(rows)))?;
                Ok(PartitionChunk { dirs, batch })
            })
            .collect()
    }

    /// Row indices per partition folder: sort by the keys, find equal ranges, then merge ranges
    /// that map to the same folder (null and "" both become the default partition).
    fn group_rows(&self, batch: &RecordBatch) -> Result<BTreeMap<Vec<String>, Vec<u32>>> {
        let columns: Vec<SortColumn> = self
            .keys
            .iter()
            .map(|(i, _)| SortColumn {
                values: Arc::clone(batch.column(*i)),
                options: None,
            })
            .collect();
        let order = lexsort_to_indices(&columns, None)
            .map_err(|e| Error::arrow("sorting partition keys", e))?;
        let sorted = columns
            .iter()
            .map(|c| take(&c.values, &order, None))
            .collect::<Result<Vec<ArrayRef>, _>>()
            .map_err(|e| Error::arrow("sorting partition keys", e))?;
        let ranges = partition(&sorted)
            .map_err(|e| Error::arrow("finding partitions", e))?
            .ranges();
        let mut groups: BTreeMap<Vec<String>, Vec<u32>> = BTreeMap::new();
        for range in ranges {
            let dirs = self.dirs_at(&sorted, range.start)?;
            groups
                .entry(dirs)
                .or_default()
                .extend_from_slice(&order.values()[range]);
        }
        // The sort is not stable: restore the original row order inside each partition.
        groups.values_mut().for_each(|rows| rows.sort_unstable());
        Ok(groups)
    }

    /// The folder segments of the row at `row` of the sorted key columns.
    fn dirs_at(&self, sorted: &[ArrayRef], row: usize) -> Result<Vec<String>> {
        self.keys
            .iter()
            .zip(sorted)
            .map(|((_, name), array)| {
                let value = value_text(name, array.as_ref(), row)?;
                hive_segment(name, value.as_deref())
            })
            .collect()
    }

    /// The kept columns of `batch`, all rows or the rows at `rows`, with the file schema.
    fn project(&self, batch: &RecordBatch, rows: Option<&UInt32Array>) -> Result<RecordBatch> {
        let columns = self
            .keep
            .iter()
            .map(|i| match rows {
                Some(rows) => take(batch.column(*i), rows, None),
                None => Ok(Arc::clone(batch.column(*i))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::arrow("splitting a batch by partition", e))?;
        RecordBatch::try_new(Arc::clone(&self.file_schema), columns)
            .map_err(|e| Error::arrow("splitting a batch by partition", e))
    }
}

/// Index of partition column `name`, which must exist and be scalar.
fn key_index(schema: &Schema, name: &str) -> Result<usize> {
    let Ok(index) = schema.index_of(name) else {
        let available: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        return Err(partition_error(
            name,
            &format!("no such column; available: {}", available.join(", ")),
        ));
    };
    let data_type = schema.field(index).data_type();
    if data_type.is_nested() {
        return Err(partition_error(
            name,
            &format!("it is a nested column ({data_type}); only scalar columns can partition"),
        ));
    }
    Ok(index)
}

fn partition_error(column: &str, reason: &str) -> Error {
    Error::Partition {
        column: column.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        BooleanArray, Date32Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::Field;
    use proptest::prelude::*;

    #[test]
    fn escapes_path_tricks() {
        let cases = [
            ("..", "%2E%2E"),
            (".", "%2E"),
            ("a/b", "a%2Fb"),
            ("a\\b", "a%5Cb"),
            ("%2e%2e", "%252e%252e"),
            ("k=v", "k%3Dv"),
            ("\u{0}\n\t\u{1f}\u{7f}", "%00%0A%09%1F%7F"),
            ("\"#'*:?{[]^}", "%22%23%27%2A%3A%3F%7B%5B%5D%5E%7D"),
            ("😀 é-_~+,;@!$&()", "😀 é-_~+,;@!$&()"),
            ("report.v2", "report%2Ev2"),
            ("", ""),
        ];
        for (raw, encoded) in cases {
            assert_eq!(encode_segment(raw), encoded, "{raw:?}");
            assert_eq!(decode_segment(encoded), raw, "{encoded:?}");
        }
    }

    #[test]
    fn decode_is_lenient_on_foreign_text() {
        assert_eq!(decode_segment("%2e%2E"), "..");
        assert_eq!(decode_segment("100%"), "100%");
        assert_eq!(decode_segment("%zz%4"), "%zz%4");
        assert_eq!(decode_segment("%F0%9F%98%80"), "😀");
    }

    #[test]
    fn null_and_empty_go_to_the_default_partition() {
        let expected = format!("day={HIVE_DEFAULT_PARTITION}");
        assert_eq!(hive_segment("day", None).unwrap(), expected);
        assert_eq!(hive_segment("day", Some("")).unwrap(), expected);
        assert_eq!(hive_segment("a=b", Some("..")).unwrap(), "a%3Db=%2E%2E");
    }

    #[test]
    fn overlong_segments_are_refused_not_truncated() {
        assert_eq!(
            hive_segment("c", Some(&"x".repeat(253))).unwrap().len(),
            255
        );
        let err = hive_segment("c", Some(&"x".repeat(254))).unwrap_err();
        let Error::Partition { column, reason } = &err else {
            panic!("{err}");
        };
        assert_eq!(column, "c");
        assert!(
            reason.contains("254 bytes") && reason.contains("256 bytes"),
            "{reason}"
        );
        // Encoding counts: 100 slashes become 300 bytes.
        assert!(hive_segment("c", Some(&"/".repeat(100))).is_err());
    }

    #[test]
    fn values_are_written_as_text() {
        let text = |array: &dyn Array, row| value_text("c", array, row).unwrap();
        let ts =
            TimestampMicrosecondArray::from(vec![1_704_448_800_000_000, 1_704_448_800_123_000])
                .with_timezone("UTC");
        assert_eq!(text(&ts, 0).as_deref(), Some("2024-01-05T10:00:00Z"));
        assert_eq!(text(&ts, 1).as_deref(), Some("2024-01-05T10:00:00.123Z"));
        let date = Date32Array::from(vec![19_727]);
        assert_eq!(text(&date, 0).as_deref(), Some("2024-01-05"));
        let ints = Int64Array::from(vec![Some(-42), None]);
        assert_eq!(text(&ints, 0).as_deref(), Some("-42"));
        assert_eq!(text(&ints, 1), None);
        let floats = Float64Array::from(vec![1.0, 0.25, 1e300]);
        assert_eq!(text(&floats, 0).as_deref(), Some("1.0"));
        assert_eq!(text(&floats, 1).as_deref(), Some("0.25"));
        assert_eq!(text(&floats, 2).as_deref(), Some("1e300"));
        let bools = BooleanArray::from(vec![true]);
        assert_eq!(text(&bools, 0).as_deref(), Some("true"));
        let strings = StringArray::from(vec!["a b/c"]);
        assert_eq!(text(&strings, 0).as_deref(), Some("a b/c"));
    }

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("day", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("country", DataType::Utf8, true),
        ]));
        let day = StringArray::from(vec![
            Some("d2"),
            Some("d1"),
            None,
            Some("d2"),
            Some(""),
            Some("d1"),
        ]);
        let n = Int64Array::from(vec![0, 1, 2, 3, 4, 5]);
        let country = StringArray::from(vec!["US", "FR", "US", "FR", "US", "FR"]);
        RecordBatch::try_new(schema, vec![Arc::new(day), Arc::new(n), Arc::new(country)]).unwrap()
    }

    fn groups(partition_by: &[&str]) -> Vec<(String, Vec<i64>, Vec<String>)> {
        let batch = batch();
        let by: Vec<String> = partition_by.iter().map(|s| s.to_string()).collect();
        let partitioner = Partitioner::new(batch.schema_ref(), &by).unwrap();
        partitioner
            .split(&batch)
            .unwrap()
            .into_iter()
            .map(|chunk| {
                assert_eq!(chunk.batch.schema(), *partitioner.file_schema());
                let n = chunk
                    .batch
                    .column_by_name("n")
                    .unwrap()
                    .as_primitive::<Int64Type>();
                let names = chunk
                    .batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                (chunk.dirs.join("/"), n.values().to_vec(), names)
            })
            .collect()
    }

    #[test]
    fn splits_by_one_column_and_drops_it() {
        let default = format!("day={HIVE_DEFAULT_PARTITION}");
        let cols = vec!["n".to_string(), "country".to_string()];
        assert_eq!(
            groups(&["day"]),
            vec![
                (default, vec![2, 4], cols.clone()),
                ("day=d1".into(), vec![1, 5], cols.clone()),
                ("day=d2".into(), vec![0, 3], cols),
            ]
        );
    }

    #[test]
    fn splits_by_two_columns_and_drops_both() {
        let default = format!("day={HIVE_DEFAULT_PARTITION}/country=US");
        let cols = vec!["n".to_string()];
        assert_eq!(
            groups(&["day", "country"]),
            vec![
                (default, vec![2, 4], cols.clone()),
                ("day=d1/country=FR".into(), vec![1, 5], cols.clone()),
                ("day=d2/country=FR".into(), vec![3], cols.clone()),
                ("day=d2/country=US".into(), vec![0], cols),
            ]
        );
    }

    #[test]
    fn unpartitioned_and_single_partition_keep_all_rows_in_order() {
        assert_eq!(
            groups(&[]),
            vec![(
                String::new(),
                vec![0, 1, 2, 3, 4, 5],
                vec!["day".into(), "n".into(), "country".into()]
            )]
        );
        let batch = batch().slice(1, 1);
        let partitioner = Partitioner::new(batch.schema_ref(), &["country".into()]).unwrap();
        let chunks = partitioner.split(&batch).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].dirs, vec!["country=FR".to_string()]);
        assert_eq!(chunks[0].batch.num_rows(), 1);
        assert!(partitioner.split(&batch.slice(0, 0)).unwrap().is_empty());
    }

    #[test]
    fn bad_partition_columns_are_named() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("tags", DataType::new_list(DataType::Utf8, true), true),
        ]));
        let err = |by: &[&str]| {
            let by: Vec<String> = by.iter().map(|s| s.to_string()).collect();
            Partitioner::new(&schema, &by).unwrap_err().to_string()
        };
        assert_eq!(
            err(&["nope"]),
            "cannot partition by column \"nope\": no such column; available: id, tags"
        );
        assert!(
            err(&["tags"]).contains("nested column"),
            "{}",
            err(&["tags"])
        );
        assert!(err(&["id", "id"]).contains("listed twice"));
        let only = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        assert!(Partitioner::new(&only, &["id".into()]).is_err());
    }

    fn tricky_string() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[./=%\\\\#:?*\"'{}\\[\\]^\\x00-\\x1f\\x7f a-z0-9é😀]{0,24}",
        ]
    }

    proptest! {
        #[test]
        fn encoding_round_trips_and_is_path_safe(s in tricky_string()) {
            let encoded = encode_segment(&s);
            prop_assert_eq!(decode_segment(&encoded), s);
            prop_assert!(!encoded.contains('/'));
            prop_assert!(!encoded.contains(".."));
            prop_assert!(!encoded.contains('='));
            prop_assert!(!encoded.bytes().any(|b| b < 0x20 || b == 0x7f));
            let segment = format!("c={encoded}");
            prop_assert!(object_store::path::PathPart::parse(&segment).is_ok());
        }
    }
}
