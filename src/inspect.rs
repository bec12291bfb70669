//! `inspect DEST`: what a destination holds, read from its manifests alone (no data file is
//! opened): each report's rows, files, bytes, partition columns and export time; the one schema
//! the reports merge into by the export's widening rules ([`drift::merge_types`]), a column
//! whose types have no merged type marked as a conflict; and every way the reports' schemas
//! differ from each other ([`drift::dataset_differences`]). A destination is uniform when they
//! do not differ at all (same columns, types and partition columns), so every reader sees one
//! schema; one that holds no report is uniform too. A report exported with no rows on its own
//! has no schema (its manifest lists no column) and no file: it is left out of the comparison
//! rather than reported as lacking every column. This module gathers and judges; printing is
//! [`crate::output`]'s, and it never writes to the destination.

use arrow::datatypes::DataType;
use serde::{Serialize, Serializer};

use crate::drift::{self, Drift, ReportSchema};
use crate::error::{Error, Result};
use crate::sink::delta::{DeltaTable, LOG_DIR};
use crate::sink::manifest::{self, Manifest};
use crate::sink::partition::encode_segment;
use crate::sink::{Destination, MANIFEST_DIR};

/// What a destination holds; serialized as is by `inspect --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// DEST as given.
    pub destination: String,
    /// No two reports' schemas differ (true when there are no reports).
    pub uniform: bool,
    /// One entry per manifest, in report key order.
    pub reports: Vec<ReportEntry>,
    /// The merged schema: every column of any report, first seen first.
    pub schema: Vec<Column>,
    /// For each report whose schema differs from the others', how it differs; empty when
    /// uniform.
    pub differences: Vec<ReportDrift>,
    /// The latest version when DEST is a Delta table (`null` for a Hive dataset).
    pub delta_version: Option<u64>,
}

/// One committed report, as its manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportEntry {
    pub report_id: String,
    pub rows: u64,
    /// How many data files it has.
    pub files: usize,
    pub bytes: u64,
    /// RFC 3339, UTC.
    pub exported_at: String,
    pub partition_by: Vec<String>,
    /// How many columns its manifest lists (0: no schema, so left out of the comparison).
    pub columns: usize,
}

/// A column of the merged schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    pub name: String,
    /// The type every report's column merges into; `None` (JSON `null`) for a conflict.
    #[serde(rename = "type", serialize_with = "type_text")]
    pub merged: Option<DataType>,
    /// Each type the reports hold it as, first seen first (one unless they differ).
    #[serde(serialize_with = "types_text")]
    pub types: Vec<DataType>,
    /// How many reports have it.
    pub reports: usize,
}

/// How one report's schema differs from the other reports'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportDrift {
    pub report: String,
    /// Serialized as an array of `{"change": "added" | "missing" | "type" | "partition", ...}`.
    pub differences: Drift,
}

impl Column {
    fn new(name: &str, data_type: &DataType) -> Self {
        Column {
            name: name.to_owned(),
            merged: Some(data_type.clone()),
            types: vec![data_type.clone()],
            reports: 1,
        }
    }

    /// Adds one more report's type of this column.
    fn add(&mut self, data_type: &DataType) {
        if !self.types.contains(data_type) {
            self.types.push(data_type.clone());
        }
        self.merged = self
            .merged
            .take()
            .and_then(|merged| drift::merge_types(&merged, data_type));
        self.reports += 1;
    }
}

/// Opens `out` for reading and reads what it holds: an S3 prefix is checked like an export's
/// destination (a wrong endpoint, credentials or bucket fail here); a local directory must
/// exist (a typo is an error, not an empty dataset) but need not be writable.
pub async fn inspect(out: &str) -> Result<Inspection> {
    let dest = Destination::open(out)?;
    dest.check_readable().await?;
    Inspection::read(&dest).await
}

impl Inspection {
    /// Reads every manifest of `dest`; one that cannot be read fails the whole inspection. A
    /// Delta table is read from its log instead: its one schema, and each report's latest
    /// commit and live files.
    pub async fn read(dest: &Destination) -> Result<Self> {
        if !dest.list_folder(LOG_DIR).await?.is_empty() {
            return Self::read_delta(dest).await;
        }
        let manifests = manifest::read_all(dest).await?;
        let mut schemas = manifests
            .iter()
            .map(|(key, manifest)| manifest.report_schema(&manifest_path(dest, key)))
            .collect::<Result<Vec<_>>>()?;
        schemas.retain(|schema| !schema.columns.is_empty());
        let differences: Vec<ReportDrift> = drift::dataset_differences(&schemas)
            .into_iter()
            .map(|(report, differences)| ReportDrift {
                report,
                differences,
            })
            .collect();
        Ok(Inspection {
            destination: dest.display().to_owned(),
            uniform: differences.is_empty(),
            reports: manifests.iter().map(|(_, m)| ReportEntry::of(m)).collect(),
            schema: merged_columns(&schemas),
            differences,
            delta_version: None,
        })
    }

    async fn read_delta(dest: &Destination) -> Result<Self> {
        let contents = DeltaTable::open(dest)?
            .blocking(|table| table.contents())
            .await?;
        let Some(contents) = contents else {
            return Err(Error::Delta {
                table: dest.display().to_owned(),
                message: format!("{LOG_DIR}/ holds no commit"),
            });
        };
        let reports = contents
            .reports
            .iter()
            .map(|report| ReportEntry {
                report_id: report.record.report_id.clone(),
                rows: report.record.rows,
                files: report.files,
                bytes: report.bytes,
                exported_at: chrono::DateTime::from_timestamp_millis(report.committed_at_ms)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
                partition_by: contents.partition_by.clone(),
                columns: contents.schema.fields().len(),
            })
            .collect::<Vec<_>>();
        let schema = contents
            .schema
            .fields()
            .iter()
            .map(|field| Column {
                reports: reports.len(),
                ..Column::new(field.name(), field.data_type())
            })
            .collect();
        Ok(Inspection {
            destination: dest.display().to_owned(),
            uniform: true,
            reports,
            schema,
            differences: Vec::new(),
            delta_version: Some(contents.version),
        })
    }

    /// `Ok` when uniform; otherwise the error that makes `inspect` exit 1.
    pub fn verdict(&self) -> Result<()> {
        if self.uniform {
            return Ok(());
        }
        Err(Error::NotUniform {
            dest: self.destination.clone(),
            reports: self.reports.len(),
        })
    }
}

impl ReportEntry {
    fn of(manifest: &Manifest) -> Self {
        ReportEntry {
            report_id: manifest.report_id.clone(),
            rows: manifest.rows,
            files: manifest.files.len(),
            bytes: manifest.bytes,
            exported_at: manifest.exported_at.clone(),
            partition_by: manifest.partition_by.clone(),
            columns: manifest.schema.len(),
        }
    }
}

/// How a manifest is named in errors, as [`manifest::read_all`] names it.
fn manifest_path(dest: &Destination, key: &str) -> String {
    format!(
        "{}/{MANIFEST_DIR}/{}.json",
        dest.display().trim_end_matches('/'),
        encode_segment(key)
    )
}

/// Every column of `schemas`, first seen first, with the type they all merge into.
fn merged_columns(schemas: &[ReportSchema]) -> Vec<Column> {
    let mut columns: Vec<Column> = Vec::new();
    for (name, data_type) in schemas.iter().flat_map(|s| &s.columns) {
        match columns.iter_mut().find(|c| &c.name == name) {
            Some(column) => column.add(data_type),
            None => columns.push(Column::new(name, data_type)),
        }
    }
    columns
}

fn type_text<S: Serializer>(data_type: &Option<DataType>, s: S) -> Result<S::Ok, S::Error> {
    match data_type {
        Some(data_type) => s.serialize_some(&data_type.to_string()),
        None => s.serialize_none(),
    }
}

fn types_text<S: Serializer>(types: &[DataType], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(types.iter().map(ToString::to_string))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::Field;

    use super::*;
    use crate::sink::manifest::{ManifestColumn, ManifestFile};

    fn manifest(id: &str, rows: u64, columns: &[(&str, &str)], partition_by: &[&str]) -> Manifest {
        Manifest {
            report_id: id.into(),
            run_id: "r1".into(),
            rows,
            bytes: rows * 10,
            files: vec![ManifestFile {
                path: format!("{id}.r1.00000.parquet"),
                rows,
                bytes: rows * 10,
            }],
            schema: columns
                .iter()
                .map(|(name, t)| ManifestColumn {
                    name: name.to_string(),
                    r#type: t.to_string(),
                })
                .collect(),
            partition_by: partition_by.iter().map(|p| p.to_string()).collect(),
            compression: "zstd(3)".into(),
            source_url: format!("http://h/v1/completed-reports/{id}"),
            exported_at: "2026-12-03T00:00:00Z".into(),
            tool_version: "0".into(),
            schema_drift: Drift::default(),
        }
    }

    async fn dest_with(manifests: &[Manifest]) -> Destination {
        let dest = Destination::from_store(
            Arc::new(object_store::memory::InMemory::new()),
            "mem".into(),
        );
        for m in manifests {
            let path = format!("{MANIFEST_DIR}/{}.json", encode_segment(&m.report_id));
            dest.write_object(&path, serde_json::to_vec(m).unwrap())
                .await
                .unwrap();
        }
        dest
    }

    #[tokio::test]
    async fn reports_of_one_schema_are_uniform() {
        let columns = [("date", "Date32"), ("n", "Int64")];
        let dest = dest_with(&[
            manifest("b", 3, &columns, &["date"]),
            manifest("a", 5, &columns, &["date"]),
        ])
        .await;
        let inspection = Inspection::read(&dest).await.unwrap();
        assert!(inspection.uniform);
        inspection.verdict().unwrap();
        let ids: Vec<(&str, u64, usize)> = inspection
            .reports
            .iter()
            .map(|r| (r.report_id.as_str(), r.rows, r.files))
            .collect();
        assert_eq!(ids, [("a", 5, 1), ("b", 3, 1)], "in key order");
        assert_eq!(
            inspection.schema,
            [
                Column {
                    name: "date".into(),
                    merged: Some(DataType::Date32),
                    types: vec![DataType::Date32],
                    reports: 2
                },
                Column {
                    name: "n".into(),
                    merged: Some(DataType::Int64),
                    types: vec![DataType::Int64],
                    reports: 2
                },
            ]
        );
        assert!(inspection.differences.is_empty());
    }

    #[tokio::test]
    async fn widened_added_and_conflicting_columns_make_it_not_uniform() {
        let list = DataType::List(Arc::new(Field::new("item", DataType::Int64, true)));
        let list_text = list.to_string();
        let dest = dest_with(&[
            manifest(
                "a",
                1,
                &[("n", "Int64"), ("x", &list_text), ("only_a", "Utf8")],
                &[],
            ),
            manifest("b", 2, &[("n", "Float64"), ("x", "Int64")], &[]),
        ])
        .await;
        let inspection = Inspection::read(&dest).await.unwrap();
        assert!(!inspection.uniform);
        let schema: Vec<(&str, Option<DataType>, usize)> = inspection
            .schema
            .iter()
            .map(|c| (c.name.as_str(), c.merged.clone(), c.reports))
            .collect();
        assert_eq!(
            schema,
            [
                ("n", Some(DataType::Float64), 2),
                ("x", None, 2),
                ("only_a", Some(DataType::Utf8), 1),
            ]
        );
        assert_eq!(inspection.schema[1].types, [list, DataType::Int64]);
        let reports: Vec<&str> = inspection
            .differences
            .iter()
            .map(|d| d.report.as_str())
            .collect();
        assert_eq!(reports, ["a", "b"]);
        let error = inspection.verdict().unwrap_err().to_string();
        assert!(error.contains("not uniform: its 2 reports"), "{error}");

        let json = serde_json::to_value(&inspection).unwrap();
        assert_eq!(json["uniform"], false);
        assert_eq!(json["schema"][0]["type"], "Float64");
        assert_eq!(
            json["schema"][0]["types"],
            serde_json::json!(["Int64", "Float64"])
        );
        assert!(json["schema"][1]["type"].is_null());
        let changes = &json["differences"][0]["differences"];
        assert_eq!(changes[0]["change"], "type");
        assert!(
            changes
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["change"] == "added" && c["column"] == "only_a"),
            "{changes}"
        );
    }

    #[tokio::test]
    async fn no_manifest_is_a_uniform_empty_dataset_and_a_bad_type_is_named() {
        let inspection = Inspection::read(&dest_with(&[]).await).await.unwrap();
        assert!(inspection.uniform && inspection.reports.is_empty());
        assert!(inspection.schema.is_empty());

        let dest = dest_with(&[manifest("a/b", 1, &[("n", "NoSuchType")], &[])]).await;
        let error = Inspection::read(&dest).await.unwrap_err().to_string();
        assert!(
            error.contains("mem/_manifests/a%2Fb.json") && error.contains("\"n\""),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_report_without_schema_is_left_out_of_the_comparison() {
        let columns = [("date", "Date32"), ("n", "Int64")];
        let mut empty = manifest("empty", 0, &[], &["date"]);
        empty.files.clear();
        let dest = dest_with(&[manifest("a", 5, &columns, &[]), empty]).await;
        let inspection = Inspection::read(&dest).await.unwrap();
        assert!(inspection.uniform, "{:?}", inspection.differences);
        let columns: Vec<(&str, usize, usize)> = inspection
            .reports
            .iter()
            .map(|r| (r.report_id.as_str(), r.files, r.columns))
            .collect();
        assert_eq!(columns, [("a", 1, 2), ("empty", 0, 0)]);
        assert_eq!(inspection.schema.len(), 2);
        assert!(inspection.schema.iter().all(|c| c.reports == 1));
    }
}
