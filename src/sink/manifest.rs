//! `_manifests/<key>.json`: the record of one committed export (report id, run, rows, files,
//! schema, partition columns, codec, source, and the schema drift it was committed with). The
//! commit writes it as its last step; `run`'s state, the schema-drift check and `inspect` read
//! it back. A manifest that cannot be read is an error naming it, never skipped.

use std::str::FromStr;

use arrow::datatypes::{DataType, SchemaRef};
use serde::{Deserialize, Serialize};

use super::{Destination, MANIFEST_DIR};
use crate::drift::{Drift, ReportSchema};
use crate::error::{Error, Result};

/// What one committed export holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub report_id: String,
    pub run_id: String,
    pub rows: u64,
    pub bytes: u64,
    pub files: Vec<ManifestFile>,
    /// Every column, partition columns included, with its Arrow type.
    pub schema: Vec<ManifestColumn>,
    pub partition_by: Vec<String>,
    pub compression: String,
    pub source_url: String,
    /// RFC 3339, UTC.
    pub exported_at: String,
    pub tool_version: String,
    /// How the export's schema differed from the destination's other reports when it was
    /// committed (`--on-schema-change allow` or `evolve`); absent when it did not.
    #[serde(default, skip_serializing_if = "Drift::is_empty")]
    pub schema_drift: Drift,
}

/// One data file, relative to the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// One column: its name and its Arrow type as Arrow prints it (`Int64`, `Date32`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestColumn {
    pub name: String,
    pub r#type: String,
}

impl ManifestColumn {
    /// Every field of `schema`.
    pub fn of(schema: &SchemaRef) -> Vec<Self> {
        schema
            .fields()
            .iter()
            .map(|f| ManifestColumn {
                name: f.name().clone(),
                r#type: f.data_type().to_string(),
            })
            .collect()
    }
}

impl Manifest {
    /// The schema this report was committed with; `at` names the manifest in errors.
    pub fn report_schema(&self, at: &str) -> Result<ReportSchema> {
        let columns = self
            .schema
            .iter()
            .map(|column| {
                DataType::from_str(&column.r#type)
                    .map(|t| (column.name.clone(), t))
                    .map_err(|e| invalid(at, &format!("column {:?}: {e}", column.name)))
            })
            .collect::<Result<_>>()?;
        Ok(ReportSchema {
            report: self.report_id.clone(),
            columns,
            partition_by: self.partition_by.clone(),
        })
    }
}

/// Every manifest of `dest` with its report key (the file name without `.json`, decoded), in
/// key order.
pub async fn read_all(dest: &Destination) -> Result<Vec<(String, Manifest)>> {
    let mut names = dest.list_folder(MANIFEST_DIR).await?;
    names.sort();
    let mut manifests = Vec::new();
    for name in names {
        let Some(encoded) = name.strip_suffix(".json") else {
            continue;
        };
        let path = format!("{MANIFEST_DIR}/{name}");
        let Some(bytes) = dest.read_object(&path).await? else {
            continue;
        };
        let shown = format!("{}/{path}", dest.display().trim_end_matches('/'));
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(&shown, &format!("not a manifest ({e})")))?;
        manifests.push((super::partition::decode_segment(encoded), manifest));
    }
    Ok(manifests)
}

fn invalid(at: &str, reason: &str) -> Error {
    Error::io(
        at,
        std::io::Error::new(std::io::ErrorKind::InvalidData, reason.to_owned()),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{Field, Schema, TimeUnit};

    use super::*;

    #[tokio::test]
    async fn manifests_are_read_back_with_their_schema_and_a_broken_one_is_named() {
        let dest = Destination::from_store(
            Arc::new(object_store::memory::InMemory::new()),
            "mem".into(),
        );
        assert!(read_all(&dest).await.unwrap().is_empty());
        let schema = Arc::new(Schema::new(vec![
            Field::new("date", DataType::Date32, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("n", DataType::Int64, true),
        ]));
        let manifest = Manifest {
            report_id: "rpt/1".into(),
            run_id: "r1".into(),
            rows: 2,
            bytes: 10,
            files: vec![ManifestFile {
                path: "date=2024-01-05/x.parquet".into(),
                rows: 2,
                bytes: 10,
            }],
            schema: ManifestColumn::of(&schema),
            partition_by: vec!["date".into()],
            compression: "zstd(3)".into(),
            source_url: "http://h/v1/completed-reports/rpt%2F1".into(),
            exported_at: "2026-12-03T00:00:00Z".into(),
            tool_version: "0".into(),
            schema_drift: Drift::default(),
        };
        let json = serde_json::to_vec(&manifest).unwrap();
        assert!(!String::from_utf8_lossy(&json).contains("schema_drift"));
        dest.write_object("_manifests/rpt%2F1.json", json)
            .await
            .unwrap();
        let read = read_all(&dest).await.unwrap();
        assert_eq!(read, vec![("rpt/1".to_string(), manifest.clone())]);
        let report = read[0].1.report_schema("m").unwrap();
        let types: Vec<DataType> = report.columns.iter().map(|(_, t)| t.clone()).collect();
        let expected: Vec<DataType> = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(types, expected, "types survive their text");
        dest.write_object("_manifests/bad.json", b"{".to_vec())
            .await
            .unwrap();
        let error = read_all(&dest).await.unwrap_err().to_string();
        assert!(
            error.contains("mem/_manifests/bad.json") && error.contains("not a manifest"),
            "{error}"
        );
    }
}
