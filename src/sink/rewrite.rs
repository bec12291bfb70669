//! Rewriting a committed report's files to a wider schema (`--on-schema-change evolve`): each
//! Parquet file its manifest lists is downloaded to a temporary file, read a batch at a time,
//! given the partition values its folders hold, converted to the merged schema
//! ([`crate::drift::conform_to`]: missing columns as nulls, widened types) and written again
//! through a [`ReportWriter`] under this run's staging. The result is a [`StagedReport`] of that
//! report, committed like any other (its new manifest replaces the old one, and the commit
//! retires the old files), so until then readers see the report as it was.
//!
//! Memory: one decoded batch of [`BATCH_ROWS`] rows and the writer's encoders at a time; the
//! file being rewritten is on disk, not in memory.

use std::path::Path as FsPath;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio::io::AsyncWriteExt;

use super::manifest::{Manifest, ManifestFile};
use super::partition::{HIVE_DEFAULT_PARTITION, decode_segment};
use super::{Destination, ReportWriter, StagedReport, WriteOptions, layout};
use crate::cancel::Cancel;
use crate::drift::conform_to;
use crate::error::{Error, Result};

/// Rows decoded from a file at a time.
const BATCH_ROWS: usize = 8192;

/// How reports are rewritten: to which schema, with which writer options, as which run.
pub(crate) struct Rewrite<'a> {
    /// The merged schema, partition columns included.
    pub schema: &'a SchemaRef,
    pub options: &'a WriteOptions,
    pub run_id: &'a str,
    /// Where files are downloaded to.
    pub tmp: &'a FsPath,
    pub cancel: &'a Cancel,
}

/// Report `key` (committed as `manifest`) rewritten as `how` says. On error, what was staged
/// is removed again. The whole report is rewritten on one blocking thread (downloads included),
/// so the memory its batches and encoders take is reused from file to file rather than spread
/// over the allocator arenas of many threads.
pub(crate) async fn rewrite_report(
    dest: &Destination,
    key: &str,
    manifest: &Manifest,
    how: &Rewrite<'_>,
) -> Result<StagedReport> {
    let writer = ReportWriter::new(
        dest,
        key,
        how.run_id,
        how.schema.clone(),
        &manifest.partition_by,
        how.options.clone(),
    )?;
    let handle = tokio::runtime::Handle::current();
    let (dest, manifest, schema) = (dest.clone(), manifest.clone(), how.schema.clone());
    let (cancel, tmp) = (
        how.cancel.clone(),
        how.tmp.join(format!("rewrite-{key}.parquet")),
    );
    tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        for file in &manifest.files {
            let result = handle.block_on(download(&dest, file, &tmp)).and_then(|()| {
                rewrite_file(
                    &mut writer,
                    &tmp,
                    file,
                    &schema,
                    &manifest.partition_by,
                    &cancel,
                )
            });
            let _ = std::fs::remove_file(&tmp);
            if let Err(e) = result {
                writer.abort();
                return Err(e);
            }
        }
        writer.finish()
    })
    .await
    .map_err(|e| Error::Internal(format!("rewriting a report: {e}")))?
}

/// Copies data file `file` of the destination to `local`, chunk by chunk.
async fn download(dest: &Destination, file: &ManifestFile, local: &FsPath) -> Result<()> {
    let rel = layout::parse_path(&file.path)?;
    let store = dest.store_for_read()?.ok_or_else(|| {
        Error::io(
            dest.show(&rel),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })?;
    let mut stream = store
        .get(&dest.full(&rel))
        .await
        .map_err(|e| dest.storage_error(&rel, e))?
        .into_stream();
    let mut out = tokio::fs::File::create(local)
        .await
        .map_err(|e| Error::io(local.display(), e))?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| dest.storage_error(&rel, e))?;
        out.write_all(&chunk)
            .await
            .map_err(|e| Error::io(local.display(), e))?;
    }
    out.flush().await.map_err(|e| Error::io(local.display(), e))
}

/// One downloaded file's rows, with their partition values and the merged schema, into
/// `writer`; the file's partition is closed after its last rows. Blocking.
fn rewrite_file(
    writer: &mut ReportWriter,
    local: &FsPath,
    file: &ManifestFile,
    schema: &SchemaRef,
    partition_by: &[String],
    cancel: &Cancel,
) -> Result<()> {
    let failed = |e: parquet::errors::ParquetError| Error::Parquet {
        path: file.path.clone(),
        source: e,
    };
    let opened = std::fs::File::open(local).map_err(|e| Error::io(local.display(), e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(opened)
        .map_err(failed)?
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(failed)?;
    let values = partition_values(&file.path, partition_by)?;
    let mut pending: Option<RecordBatch> = None;
    for batch in reader {
        cancel.check()?;
        let batch = batch.map_err(|e| Error::arrow(format!("reading {}", file.path), e))?;
        let full = with_partitions(&batch, &values, schema)?;
        if let Some(previous) = pending.replace(full) {
            writer.write(&previous)?;
        }
    }
    match pending {
        Some(last) => writer.write_last(&last),
        None => Ok(()),
    }
}

/// The value of each partition column from the file's folders (`col=value/...`); the Hive
/// default partition is null.
fn partition_values(path: &str, partition_by: &[String]) -> Result<Vec<(String, Option<String>)>> {
    let folders: Vec<&str> = path.split('/').collect();
    partition_by
        .iter()
        .map(|column| {
            let prefix = format!("{}=", super::partition::encode_segment(column));
            let segment = folders
                .iter()
                .find_map(|f| f.strip_prefix(prefix.as_str()))
                .ok_or_else(|| Error::Partition {
                    column: column.clone(),
                    reason: format!("file {path} has no folder for it"),
                })?;
            let value = (segment != HIVE_DEFAULT_PARTITION).then(|| decode_segment(segment));
            Ok((column.clone(), value))
        })
        .collect()
}

/// `batch` (a file's columns) with the partition columns added and every column in `schema`'s
/// order and types.
fn with_partitions(
    batch: &RecordBatch,
    values: &[(String, Option<String>)],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let mut fields: Vec<Arc<arrow::datatypes::Field>> = batch.schema().fields().to_vec();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for (column, value) in values {
        let field = schema
            .field_with_name(column)
            .map_err(|e| Error::arrow(format!("partition column {column:?}"), e))?;
        let text: ArrayRef = Arc::new(StringArray::from(vec![value.as_deref(); batch.num_rows()]));
        let typed = cast(&text, field.data_type()).map_err(|e| {
            Error::arrow(
                format!("partition column {column:?} from its folder name"),
                e,
            )
        })?;
        fields.push(Arc::new(field.clone()));
        columns.push(typed);
    }
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    let with = RecordBatch::try_new_with_options(
        Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
        &options,
    )
    .map_err(|e| Error::arrow("adding partition columns", e))?;
    conform_to(&with, schema)
}
