//! The schema check of one export against its destination (issue: one destination, one
//! readable dataset). Before anything is staged, the export's schema is compared with the
//! schemas the destination's other reports were committed with ([`crate::drift`]), and the
//! policy decides ([`OnSchemaChange`]): `fail` refuses any difference, `allow` records it,
//! `evolve` converges every report on the merged schema, the export's own files written with it
//! and each other report whose schema differs rewritten ([`crate::sink::rewrite_report`]) and
//! committed after the export. A difference without a merged type fails under every policy
//! but `allow`.
//!
//! Reports exported into one destination at the same moment see each other only once
//! committed: under `fail` the check runs again just before the commit, so the later of two
//! concurrent exports of different shapes fails then.

use std::path::Path;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::cancel::Cancel;
use crate::drift::{Drift, OnSchemaChange, ReportSchema, merged_schema};
use crate::error::{Error, Result};
use crate::settings::Output;
use crate::sink::manifest::{self, Manifest};
use crate::sink::{ManifestInfo, Rewrite, StagedReport, rewrite_report};

/// What the check decided for one export.
pub(crate) struct SchemaPlan {
    /// How the export differs from the destination's other reports (recorded in its manifest).
    pub(crate) drift: Drift,
    /// The schema the export writes: its own, or the merged one under `evolve`.
    pub(crate) schema: SchemaRef,
    /// Other reports to rewrite with [`SchemaPlan::schema`] (`evolve`), with their manifests.
    rewrites: Vec<(String, Manifest)>,
}

/// Checks the export of reports `keys` with `schema` against the other reports of `output`'s
/// destination, as `output.on_schema_change` says.
pub(crate) async fn check(
    output: &Output,
    keys: &[String],
    schema: &SchemaRef,
) -> Result<SchemaPlan> {
    let mut plan = SchemaPlan {
        drift: Drift::default(),
        schema: schema.clone(),
        rewrites: Vec::new(),
    };
    // A report without rows has no columns: it writes no file, so no reader sees its schema.
    if schema.fields().is_empty() {
        return Ok(plan);
    }
    let others = other_reports(output, keys).await?;
    let ours = ReportSchema {
        report: keys.join(", "),
        columns: columns(schema),
        partition_by: output.partition_by.clone(),
    };
    let schemas: Vec<ReportSchema> = others.iter().map(|(_, _, s)| s.clone()).collect();
    plan.drift = Drift::compare(&ours, &schemas);
    if plan.drift.is_empty() {
        return Ok(plan);
    }
    match output.on_schema_change {
        OnSchemaChange::Fail => Err(refused(output, &ours, &plan.drift, FAIL_HINT)),
        OnSchemaChange::Allow => {
            tracing::warn!(reports = %ours.report, differences = %plan.drift.describe(), "schema drift allowed");
            Ok(plan)
        }
        OnSchemaChange::Evolve => {
            let conflicts = Drift {
                differences: plan.drift.conflicts().into_iter().cloned().collect(),
            };
            let merged = match merged_schema(&ours, &schemas) {
                Some(merged) if conflicts.is_empty() => merged,
                _ => return Err(refused(output, &ours, &conflicts, EVOLVE_HINT)),
            };
            plan.schema = schema_of(&merged);
            plan.rewrites = others
                .into_iter()
                .filter(|(_, _, theirs)| !same_columns(&theirs.columns, &merged))
                .map(|(key, manifest, _)| (key, manifest))
                .collect();
            tracing::info!(
                reports = %ours.report, differences = %plan.drift.describe(),
                rewrites = plan.rewrites.len(), "schema evolved"
            );
            Ok(plan)
        }
    }
}

/// The plan of an export into a Delta table: its files are written with `schema` (the table
/// checked it, see [`crate::sink::delta`]); nothing else is compared or rewritten.
pub(crate) fn delta_plan(schema: SchemaRef) -> SchemaPlan {
    SchemaPlan {
        drift: Drift::default(),
        schema,
        rewrites: Vec::new(),
    }
}

/// Under `fail`, checks again just before the commit (another export may have committed since).
pub(crate) async fn check_again(output: &Output, keys: &[String], plan: &SchemaPlan) -> Result<()> {
    if output.on_schema_change != OnSchemaChange::Fail {
        return Ok(());
    }
    check(output, keys, &plan.schema).await.map(drop)
}

const FAIL_HINT: &str = "nothing was published; pass --on-schema-change evolve or allow (jobs file: \
    on_schema_change), or export it to a destination of its own (jobs file: out = \".../{report_type}\")";
const EVOLVE_HINT: &str = "these have no merged schema, so nothing was published; export it to a \
    destination of its own, or pass --on-schema-change allow";

/// The error of a refused export.
fn refused(output: &Output, ours: &ReportSchema, drift: &Drift, hint: &str) -> Error {
    Error::SchemaDrift {
        reports: format!("report {}", ours.report),
        dest: output.destination.display().to_owned(),
        differences: drift.describe(),
        hint: hint.to_owned(),
    }
}

/// Every other report of the destination that has columns: its key, manifest and schema.
async fn other_reports(
    output: &Output,
    keys: &[String],
) -> Result<Vec<(String, Manifest, ReportSchema)>> {
    let dest = &output.destination;
    manifest::read_all(dest)
        .await?
        .into_iter()
        .filter(|(key, _)| !keys.contains(key))
        .map(|(key, manifest)| {
            let at = format!(
                "{}/_manifests/{key}.json",
                dest.display().trim_end_matches('/')
            );
            let schema = manifest.report_schema(&at)?;
            Ok((key, manifest, schema))
        })
        .filter(|other| !matches!(other, Ok((_, _, schema)) if schema.columns.is_empty()))
        .collect()
}

fn columns(schema: &SchemaRef) -> Vec<(String, DataType)> {
    schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect()
}

/// Whether two schemas hold the same columns with the same types, in any order.
fn same_columns(a: &[(String, DataType)], b: &[(String, DataType)]) -> bool {
    a.len() == b.len() && a.iter().all(|column| b.contains(column))
}

/// A schema of nullable fields.
fn schema_of(columns: &[(String, DataType)]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, data_type)| Field::new(name, data_type.clone(), true))
        .collect();
    std::sync::Arc::new(Schema::new(fields))
}

impl SchemaPlan {
    /// Stages the rewrites of `evolve` under run `run_id` (files downloaded into `tmp`). On
    /// error, what was staged is discarded.
    pub(crate) async fn stage_rewrites(
        &self,
        output: &Output,
        run_id: &str,
        tmp: &Path,
        cancel: &Cancel,
    ) -> Result<Vec<(Manifest, StagedReport)>> {
        let how = Rewrite {
            schema: &self.schema,
            options: &output.write,
            run_id,
            tmp,
            cancel,
        };
        let mut staged = Vec::new();
        for (key, manifest) in &self.rewrites {
            match rewrite_report(&output.destination, key, manifest, &how).await {
                Ok(report) => staged.push((manifest.clone(), report)),
                Err(e) => {
                    for (_, report) in staged {
                        report.discard(&output.destination).await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(staged)
    }
}

/// What the manifest of a rewritten report records: as before, with the merged schema.
pub(crate) fn rewritten_manifest(
    manifest: &Manifest,
    plan: &SchemaPlan,
    output: &Output,
) -> ManifestInfo {
    ManifestInfo {
        report_id: manifest.report_id.clone(),
        source_url: manifest.source_url.clone(),
        schema: plan.schema.clone(),
        partition_by: manifest.partition_by.clone(),
        compression: output.write.compression.to_string(),
        schema_drift: manifest.schema_drift.clone(),
    }
}
