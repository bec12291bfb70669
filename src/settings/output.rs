//! The output of an export: the destination (opened, which checks it without writing), the
//! partition columns, the Parquet codec, the partition limit, the schema-change policy, and
//! how many reports run at once.

use std::collections::HashSet;
use std::str::FromStr;

use super::field;
use super::{Origin, checked, choice, invalid};
use crate::drift::{ON_SCHEMA_CHANGE, OnSchemaChange};
use crate::error::{Error, Result};
use crate::sink::partition::DEFAULT_MAX_PARTITIONS;
use crate::sink::{Codec, Destination, TABLE_FORMATS, TableFormat, WriteOptions};

/// Most reports exported at once.
pub const MAX_CONCURRENCY: usize = 64;

/// The output as given, unchecked.
#[derive(Debug, Default, Clone)]
pub struct OutputInput {
    /// A directory, a `file://` URL or `s3://bucket/prefix`.
    pub out: String,
    pub partition_by: Vec<String>,
    /// A codec as [`Codec`] parses it [default: zstd(3)].
    pub compression: Option<String>,
    /// [default: [`DEFAULT_MAX_PARTITIONS`]]
    pub max_partitions: Option<i64>,
    /// A policy of [`ON_SCHEMA_CHANGE`] [default: fail].
    pub on_schema_change: Option<String>,
    /// A format of [`TABLE_FORMATS`] [default: hive].
    pub table_format: Option<String>,
}

/// A checked output.
#[derive(Debug, Clone)]
pub struct Output {
    pub destination: Destination,
    pub partition_by: Vec<String>,
    pub write: WriteOptions,
    /// Most distinct partitions an export may have.
    pub max_partitions: usize,
    /// What to do when the export's schema differs from the destination's other reports.
    pub on_schema_change: OnSchemaChange,
    /// Plain Hive-partitioned Parquet, or a Delta table.
    pub table_format: TableFormat,
}

/// Checks an output and opens its destination.
pub fn output(origin: &dyn Origin, input: &OutputInput) -> Result<Output> {
    if input.out.trim().is_empty() {
        return Err(invalid(origin, field::OUT, "is empty"));
    }
    let partition_by = partition_columns(origin, &input.partition_by)?;
    let compression = match &input.compression {
        Some(text) => Codec::from_str(text).map_err(|e| {
            origin.error(
                field::COMPRESSION,
                format!("{}: {e}", origin.name(field::COMPRESSION)),
            )
        })?,
        None => Codec::default(),
    };
    let max_partitions = checked(
        origin,
        field::MAX_PARTITIONS,
        input.max_partitions,
        at_least_one,
    )?
    .unwrap_or(DEFAULT_MAX_PARTITIONS);
    let on_schema_change = match &input.on_schema_change {
        Some(text) => choice(origin, field::ON_SCHEMA_CHANGE, text, ON_SCHEMA_CHANGE)?,
        None => OnSchemaChange::default(),
    };
    let table_format = match &input.table_format {
        Some(text) => choice(origin, field::TABLE_FORMAT, text, TABLE_FORMATS)?,
        None => TableFormat::default(),
    };
    let destination = Destination::open(&input.out).map_err(|e| match e {
        Error::Usage(message) => origin.error(field::OUT, message),
        other => other,
    })?;
    Ok(Output {
        destination,
        partition_by,
        write: WriteOptions {
            compression,
            file_stats: table_format == TableFormat::Delta,
            ..WriteOptions::default()
        },
        max_partitions,
        on_schema_change,
        table_format,
    })
}

/// Partition columns: trimmed, non-empty, each named once.
fn partition_columns(origin: &dyn Origin, columns: &[String]) -> Result<Vec<String>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for column in columns {
        let column = column.trim();
        if column.is_empty() {
            return Err(invalid(
                origin,
                field::PARTITION_BY,
                "has an empty column name",
            ));
        }
        if !seen.insert(column) {
            return Err(invalid(
                origin,
                field::PARTITION_BY,
                format!("names {column:?} twice"),
            ));
        }
        out.push(column.to_string());
    }
    Ok(out)
}

/// A count of at least 1 (`--max-partitions`, `max_partitions`).
pub fn at_least_one(n: i64) -> std::result::Result<usize, String> {
    usize::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("must be a whole number of at least 1, found {n}"))
}

/// Reports at once, 1 to [`MAX_CONCURRENCY`] (`--concurrency`, `concurrency`).
pub fn concurrency(n: i64) -> std::result::Result<usize, String> {
    usize::try_from(n)
        .ok()
        .filter(|n| (1..=MAX_CONCURRENCY).contains(n))
        .ok_or_else(|| format!("must be between 1 and {MAX_CONCURRENCY}, found {n}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Flags;

    #[test]
    fn partition_columns_are_checked() {
        let cols = |v: &[&str]| {
            partition_columns(&Flags, &v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(cols(&["date", " country"]).unwrap(), ["date", "country"]);
        assert!(
            cols(&["date", "date"])
                .unwrap_err()
                .to_string()
                .contains("--partition-by names \"date\" twice")
        );
        assert!(cols(&[""]).is_err());
    }

    #[test]
    fn counts_are_checked_by_one_rule_each() {
        assert_eq!(at_least_one(1), Ok(1));
        for bad in [0, -3] {
            assert!(
                at_least_one(bad).unwrap_err().contains("at least 1"),
                "{bad}"
            );
        }
        assert_eq!(concurrency(64), Ok(64));
        for bad in [0, 65, -1] {
            assert!(
                concurrency(bad).unwrap_err().contains("between 1 and 64"),
                "{bad}"
            );
        }
    }
}
