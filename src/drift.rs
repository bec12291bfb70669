//! Schema drift between the reports of one destination: how an export's schema differs from
//! the schemas the other reports there were committed with (their manifests), the one schema
//! they can all converge on, and how a whole destination's reports differ from each other
//! (`inspect`).
//!
//! Types merge by the export's own rules ([`merge_types`]): equal types stay, Int64 and Float64
//! become Float64, any other two scalars become Utf8; nested types (lists, structs) merge only
//! with themselves. Partition columns must be the same everywhere. Nothing here reads or
//! writes files.

use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::decode::scalars_to_text;
use crate::error::{Error, Result};

/// What an export does when its schema differs from the other reports of its destination
/// (`--on-schema-change`, `on_schema_change`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnSchemaChange {
    /// Publish nothing; the error lists the differences and the reports involved.
    #[default]
    Fail,
    /// Converge: every file of the destination gets the merged schema (rewritten as needed).
    Evolve,
    /// Publish as is; the drift is recorded and logged.
    Allow,
}

/// The policies by name.
pub const ON_SCHEMA_CHANGE: &[(&str, OnSchemaChange)] = &[
    ("fail", OnSchemaChange::Fail),
    ("evolve", OnSchemaChange::Evolve),
    ("allow", OnSchemaChange::Allow),
];

/// The schema one committed report (or the export about to be) holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSchema {
    /// The report id, as manifests and messages name it.
    pub report: String,
    /// Columns in file order, partition columns included.
    pub columns: Vec<(String, DataType)>,
    /// Partition columns, outermost first.
    pub partition_by: Vec<String>,
}

impl ReportSchema {
    fn column(&self, name: &str) -> Option<&DataType> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }
}

/// One way an export's schema differs from other reports' schemas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Difference {
    /// A column of the export that these reports lack.
    Added {
        column: String,
        r#type: String,
        reports: Vec<String>,
    },
    /// A column of these reports that the export lacks.
    Missing {
        column: String,
        r#type: String,
        reports: Vec<String>,
    },
    /// A column whose type in these reports differs from the export's.
    Type {
        column: String,
        ours: String,
        theirs: String,
        reports: Vec<String>,
        /// The type both can become, if any.
        merged: Option<String>,
    },
    /// These reports are partitioned by other columns.
    Partition {
        ours: Vec<String>,
        theirs: Vec<String>,
        reports: Vec<String>,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Added {
                column,
                r#type,
                reports,
            } => write!(
                f,
                "new column {column:?} ({type}), not in {}",
                list(reports)
            ),
            Difference::Missing {
                column,
                r#type,
                reports,
            } => write!(f, "no column {column:?} ({type}) of {}", list(reports)),
            Difference::Type {
                column,
                ours,
                theirs,
                reports,
                ..
            } => write!(
                f,
                "column {column:?} is {ours} here but {theirs} in {}",
                list(reports)
            ),
            Difference::Partition {
                ours,
                theirs,
                reports,
            } => write!(
                f,
                "partitioned by [{}] here but by [{}] in {}",
                ours.join(", "),
                theirs.join(", "),
                list(reports)
            ),
        }
    }
}

/// `report a`, `reports a, b`.
fn list(reports: &[String]) -> String {
    let noun = if reports.len() == 1 {
        "report"
    } else {
        "reports"
    };
    format!("{noun} {}", reports.join(", "))
}

/// How an export differs from the other reports of its destination; empty when it does not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Drift {
    pub differences: Vec<Difference>,
}

impl Drift {
    /// Compares `ours` with every report of `others` (never itself: callers leave it out).
    pub fn compare(ours: &ReportSchema, others: &[ReportSchema]) -> Self {
        let mut differences = Vec::new();
        for (name, data_type) in &ours.columns {
            let lacking = reports_where(others, |other| other.column(name).is_none());
            if !lacking.is_empty() {
                differences.push(Difference::Added {
                    column: name.clone(),
                    r#type: data_type.to_string(),
                    reports: lacking,
                });
            }
            let mut theirs: Vec<&DataType> = others
                .iter()
                .filter_map(|other| other.column(name))
                .filter(|t| *t != data_type)
                .collect();
            theirs.dedup();
            for their in distinct(theirs) {
                differences.push(Difference::Type {
                    column: name.clone(),
                    ours: data_type.to_string(),
                    theirs: their.to_string(),
                    reports: reports_where(others, |o| o.column(name) == Some(their)),
                    merged: merge_types(data_type, their).map(|t| t.to_string()),
                });
            }
        }
        for (name, data_type) in union(others) {
            if ours.column(&name).is_none() {
                differences.push(Difference::Missing {
                    reports: reports_where(others, |o| o.column(&name).is_some()),
                    column: name,
                    r#type: data_type.to_string(),
                });
            }
        }
        let partitions: Vec<&Vec<String>> =
            distinct(others.iter().map(|o| &o.partition_by).collect());
        for theirs in partitions.into_iter().filter(|p| **p != ours.partition_by) {
            differences.push(Difference::Partition {
                ours: ours.partition_by.clone(),
                theirs: theirs.clone(),
                reports: reports_where(others, |o| &o.partition_by == theirs),
            });
        }
        Drift { differences }
    }

    pub fn is_empty(&self) -> bool {
        self.differences.is_empty()
    }

    /// The differences as one line: `a; b; c`, columns added to (or missing from) the same
    /// reports named together.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut grouped: Vec<(&str, &[String], Vec<String>)> = Vec::new();
        for difference in &self.differences {
            let (what, reports, column) = match difference {
                Difference::Added {
                    column,
                    r#type,
                    reports,
                } => ("new", reports, (column, r#type)),
                Difference::Missing {
                    column,
                    r#type,
                    reports,
                } => ("no", reports, (column, r#type)),
                other => {
                    parts.push(other.to_string());
                    continue;
                }
            };
            let text = format!("{:?} ({})", column.0, column.1);
            match grouped
                .iter_mut()
                .find(|(w, r, _)| *w == what && *r == reports.as_slice())
            {
                Some((_, _, columns)) => columns.push(text),
                None => grouped.push((what, reports, vec![text])),
            }
        }
        let columns = grouped.into_iter().map(|(what, reports, columns)| {
            let noun = if columns.len() == 1 {
                "column"
            } else {
                "columns"
            };
            let link = if what == "new" { "not in" } else { "of" };
            format!(
                "{what} {noun} {} {link} {}",
                columns.join(", "),
                list(reports)
            )
        });
        let mut all: Vec<String> = columns.collect();
        all.extend(parts);
        all.join("; ")
    }

    /// The differences that have no merged schema: a type pair without a merged type, or other
    /// partition columns.
    pub fn conflicts(&self) -> Vec<&Difference> {
        self.differences
            .iter()
            .filter(|d| match d {
                Difference::Type { merged, .. } => merged.is_none(),
                Difference::Partition { .. } => true,
                _ => false,
            })
            .collect()
    }
}

/// The one schema `ours` and `others` converge on: the columns the others have, in their
/// first-seen order (so a dataset keeps its column order), then the columns only `ours` has,
/// each of the type every report's merges into. `None` when some pair has no merged type.
pub fn merged_schema(
    ours: &ReportSchema,
    others: &[ReportSchema],
) -> Option<Vec<(String, DataType)>> {
    let mut columns: Vec<(String, DataType)> = Vec::new();
    for report in others.iter().chain(std::iter::once(ours)) {
        for (name, data_type) in &report.columns {
            match columns.iter_mut().find(|(n, _)| n == name) {
                Some((_, merged)) => *merged = merge_types(merged, data_type)?,
                None => columns.push((name.clone(), data_type.clone())),
            }
        }
    }
    Some(columns)
}

/// The type two reports' columns of one name become, by the export's widening rules.
pub fn merge_types(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    match (a, b) {
        (a, b) if a == b => Some(a.clone()),
        (Null, other) | (other, Null) => Some(other.clone()),
        (Int64, Float64) | (Float64, Int64) => Some(Float64),
        (a, b) if !a.is_nested() && !b.is_nested() => Some(Utf8),
        _ => None,
    }
}

/// `batch` with exactly the fields of `schema`, by name: a column it lacks becomes nulls, a
/// column of another type is converted by [`widen`]. `schema` must hold every column of
/// `batch` (it is a merged schema).
pub fn conform_to(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) => widen(field.name(), column, field.data_type()),
            None => Ok(new_null_array(field.data_type(), rows)),
        })
        .collect::<Result<Vec<_>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
        .map_err(|e| Error::arrow("conforming rows to the merged schema", e))
}

/// One column converted to the merged type `to` ([`merge_types`] of its type and another):
/// Int64 to Float64 by value, booleans and numbers to their JSON text (as an export writes a
/// column that mixes them), other scalars to text as Arrow prints them (dates `YYYY-MM-DD`).
pub fn widen(name: &str, column: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    let from = column.data_type();
    if from == to {
        return Ok(column.clone());
    }
    if *to == DataType::Utf8
        && let Some(text) = scalars_to_text(column.as_ref())
    {
        return Ok(Arc::new(text));
    }
    cast(column, to)
        .map_err(|e| Error::arrow(format!("converting column {name:?} from {from} to {to}"), e))
}

/// Columns of `reports` in first-seen order, each with its first-seen type.
fn union(reports: &[ReportSchema]) -> Vec<(String, DataType)> {
    let mut columns: Vec<(String, DataType)> = Vec::new();
    for report in reports {
        for (name, data_type) in &report.columns {
            if !columns.iter().any(|(n, _)| n == name) {
                columns.push((name.clone(), data_type.clone()));
            }
        }
    }
    columns
}

/// The ids of the reports where `matches` holds, sorted.
fn reports_where(reports: &[ReportSchema], matches: impl Fn(&ReportSchema) -> bool) -> Vec<String> {
    let mut ids: Vec<String> = reports
        .iter()
        .filter(|r| matches(r))
        .map(|r| r.report.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// `items` without repeats, first seen first.
fn distinct<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// How the reports of one destination differ from each other (for `inspect`): each report
/// compared with all the others.
pub fn dataset_differences(reports: &[ReportSchema]) -> Vec<(String, Drift)> {
    reports
        .iter()
        .enumerate()
        .map(|(i, report)| {
            let others: Vec<ReportSchema> = reports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, r)| r.clone())
                .collect();
            (report.report.clone(), Drift::compare(report, &others))
        })
        .filter(|(_, drift)| !drift.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, columns: &[(&str, DataType)], partition_by: &[&str]) -> ReportSchema {
        ReportSchema {
            report: id.into(),
            columns: columns
                .iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect(),
            partition_by: partition_by.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn same_schemas_do_not_drift() {
        let a = report(
            "a",
            &[("date", DataType::Date32), ("n", DataType::Int64)],
            &["date"],
        );
        let b = report(
            "b",
            &[("date", DataType::Date32), ("n", DataType::Int64)],
            &["date"],
        );
        assert!(Drift::compare(&a, std::slice::from_ref(&b)).is_empty());
        assert!(Drift::compare(&a, &[]).is_empty());
        assert!(dataset_differences(&[a, b]).is_empty());
    }

    #[test]
    fn every_added_missing_and_retyped_column_is_named_with_its_reports() {
        let ours = report(
            "new",
            &[
                ("date", DataType::Date32),
                ("n", DataType::Int64),
                ("extra", DataType::Utf8),
            ],
            &["date"],
        );
        let old = report(
            "old",
            &[
                ("date", DataType::Date32),
                ("n", DataType::Float64),
                ("gone", DataType::Boolean),
            ],
            &["date"],
        );
        let other = report(
            "other",
            &[("date", DataType::Date32), ("n", DataType::Int64)],
            &["site"],
        );
        let drift = Drift::compare(&ours, &[old.clone(), other.clone()]);
        assert_eq!(
            drift.describe(),
            "new column \"extra\" (Utf8) not in reports old, other; \
             no column \"gone\" (Boolean) of report old; \
             column \"n\" is Int64 here but Float64 in report old; \
             partitioned by [date] here but by [site] in report other"
        );
        assert_eq!(
            drift.conflicts().len(),
            1,
            "only the partition columns conflict"
        );
        assert_eq!(
            merged_schema(&ours, std::slice::from_ref(&old)).unwrap(),
            vec![
                ("date".to_string(), DataType::Date32),
                ("n".to_string(), DataType::Float64),
                ("gone".to_string(), DataType::Boolean),
                ("extra".to_string(), DataType::Utf8),
            ]
        );
        assert_eq!(dataset_differences(&[ours, old, other]).len(), 3);
    }

    #[test]
    fn types_merge_by_the_export_rules() {
        use DataType::*;
        assert_eq!(merge_types(&Int64, &Float64), Some(Float64));
        assert_eq!(merge_types(&Date32, &Utf8), Some(Utf8));
        assert_eq!(merge_types(&Boolean, &Int64), Some(Utf8));
        assert_eq!(merge_types(&Null, &Date32), Some(Date32));
        let list = List(std::sync::Arc::new(arrow::datatypes::Field::new(
            "item", Int64, true,
        )));
        assert_eq!(merge_types(&list, &list), Some(list.clone()));
        assert_eq!(merge_types(&list, &Int64), None);
        let ours = report("a", &[("x", list)], &[]);
        let theirs = report("b", &[("x", Int64)], &[]);
        let drift = Drift::compare(&ours, std::slice::from_ref(&theirs));
        assert_eq!(drift.conflicts().len(), 1);
        assert!(merged_schema(&ours, &[theirs]).is_none());
    }
}
