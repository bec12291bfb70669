//! Parquet encoding of one report: an `ArrowWriter` per open partition, streamed to staged
//! objects through multipart uploads, rolled to a new file when one grows too large.
//!
//! This module owns file-level decisions: writer properties, row-group and file size caps, the
//! memory budget over all open files, and staging (files are written as
//! `_staging/<run>/<path>.tmp`, so nothing named `*.parquet` exists before commit). It runs on
//! blocking threads and reaches the async store through the runtime handle captured in
//! [`ReportWriter::new`]. It does not publish anything: that is [`super::StagedReport::commit`].
//!
//! # Memory usage
//! Each open file holds its in-progress row group (capped by `max_row_group_bytes`, and all of
//! them together by `memory_budget_bytes`: the largest is flushed when the sum exceeds it) plus
//! at most one unfinished upload part and [`MAX_PARTS_IN_FLIGHT`] parts being uploaded (1 MiB
//! parts locally, 5 MiB on other stores). No file is ever built whole in memory.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, FieldRef, SchemaRef};
use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use tokio::runtime::Handle;

use super::commit::{StagedFile, StagedReport};
use super::layout::ReportNames;
use super::partition::Partitioner;
use super::stats::file_stats;
use super::{Codec, Destination};
use crate::error::{Error, Result};
use crate::hash::{FNV_OFFSET, fnv1a};

/// Upload parts of one file that may be in flight before a write waits.
pub const MAX_PARTS_IN_FLIGHT: usize = 2;

/// How Parquet files are cut and compressed.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Compression codec of every column.
    pub compression: Codec,
    /// Most rows in one row group.
    pub max_row_group_rows: usize,
    /// Estimated encoded bytes at which a row group is flushed.
    pub max_row_group_bytes: usize,
    /// Bytes written at which a file is closed and the next one (seq + 1) started.
    pub max_file_bytes: usize,
    /// Cap on the in-progress row groups of all open files together.
    pub memory_budget_bytes: usize,
    /// Read each file's column statistics from its footer (a Delta commit records them).
    pub file_stats: bool,
}

impl Default for WriteOptions {
    /// zstd level 3, 1,048,576 rows or 64 MiB per row group, 256 MiB files, and 32 MiB for the
    /// encoders of all open files together (flushing the largest row group beyond it keeps peak
    /// memory flat however large the report; many open partitions mean smaller row groups).
    fn default() -> Self {
        Self {
            compression: Codec::default(),
            max_row_group_rows: 1_048_576,
            max_row_group_bytes: 64 * 1024 * 1024,
            max_file_bytes: 256 * 1024 * 1024,
            memory_budget_bytes: 32 * 1024 * 1024,
            file_stats: false,
        }
    }
}

impl WriteOptions {
    fn validate(&self) -> Result<()> {
        let limits = [
            ("max_row_group_rows", self.max_row_group_rows),
            ("max_row_group_bytes", self.max_row_group_bytes),
            ("max_file_bytes", self.max_file_bytes),
            ("memory_budget_bytes", self.memory_budget_bytes),
        ];
        match limits.iter().find(|(_, value)| *value == 0) {
            Some((name, _)) => Err(Error::Usage(format!(
                "write option {name} must be positive"
            ))),
            None => Ok(()),
        }
    }

    fn writer_properties(&self) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(self.compression.compression())
            .set_created_by(format!("kargo-export {}", env!("CARGO_PKG_VERSION")))
            .set_max_row_group_row_count(Some(self.max_row_group_rows))
            .set_max_row_group_bytes(Some(self.max_row_group_bytes))
            .build()
    }
}

/// Writes one report's files in one run, staged until committed.
///
/// `write`, `finish` and `abort` block: call them from `tokio::task::spawn_blocking`.
#[derive(Debug)]
pub struct ReportWriter {
    dest: Destination,
    handle: Handle,
    names: ReportNames,
    schema: SchemaRef,
    partitioner: Partitioner,
    props: WriterProperties,
    options: WriteOptions,
    /// Open files by partition folder.
    open: BTreeMap<Vec<String>, OpenFile>,
    /// Next file number per partition folder, shared by the writers of one report and run.
    numbers: FileNumbers,
    /// Files closed so far.
    closed: Vec<StagedFile>,
}

impl ReportWriter {
    /// Prepares the files of report `report_key` in run `run_id`. `schema` is the export's full
    /// schema; `partition_by` names scalar columns of it, which become folders and leave the
    /// files.
    ///
    /// # Panics
    /// When called outside a Tokio runtime (the handle is captured here).
    pub fn new(
        dest: &Destination,
        report_key: &str,
        run_id: &str,
        schema: SchemaRef,
        partition_by: &[String],
        options: WriteOptions,
    ) -> Result<Self> {
        options.validate()?;
        let names = ReportNames::new(report_key, run_id)?;
        let partitioner = Partitioner::new(&schema, partition_by)?;
        // Refuse types Parquet cannot hold now, before any upload is started.
        ArrowSchemaConverter::new()
            .convert(partitioner.file_schema())
            .map_err(|source| Error::Parquet {
                path: format!("{} (report {report_key:?})", dest.display()),
                source,
            })?;
        Ok(Self {
            dest: dest.clone(),
            handle: Handle::current(),
            names,
            schema,
            partitioner,
            props: options.writer_properties(),
            options,
            open: BTreeMap::new(),
            numbers: FileNumbers::default(),
            closed: Vec::new(),
        })
    }

    /// Makes this writer one of several writing the same report and run in parallel: they
    /// draw file numbers from `numbers`, so two files of one partition never share a name.
    /// Combine their results with [`StagedReport::merge`].
    pub fn with_file_numbers(mut self, numbers: FileNumbers) -> Self {
        self.numbers = numbers;
        self
    }

    /// The schema of every file: the full schema without the partition columns.
    pub fn file_schema(&self) -> &SchemaRef {
        self.partitioner.file_schema()
    }

    /// Splits `batch` (full schema) by partition and writes it. Blocking. After an error, call
    /// [`ReportWriter::abort`].
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.check_schema(batch)?;
        for chunk in self.partitioner.split(batch)? {
            self.write_chunk(chunk.dirs, &chunk.batch)?;
        }
        self.keep_memory_budget()
    }

    /// Like [`ReportWriter::write`] for the last rows of the partitions in `batch`: each
    /// partition's file is closed once its rows are written, so a writer fed whole partitions
    /// keeps one file open at a time, and each partition's rows form as few row groups as the
    /// caps allow.
    pub fn write_last(&mut self, batch: &RecordBatch) -> Result<()> {
        self.check_schema(batch)?;
        for chunk in self.partitioner.split(batch)? {
            self.write_chunk(chunk.dirs.clone(), &chunk.batch)?;
            self.close(&chunk.dirs)?;
        }
        Ok(())
    }

    /// Closes every open file and returns what was staged. Blocking. On error, everything this
    /// writer staged is removed again.
    pub fn finish(mut self) -> Result<StagedReport> {
        let dirs: Vec<_> = self.open.keys().cloned().collect();
        for dirs in dirs {
            if let Err(e) = self.close(&dirs) {
                self.abort();
                return Err(e);
            }
        }
        Ok(StagedReport::new(self.names, self.closed))
    }

    /// Aborts open uploads and deletes the files this writer staged. Blocking.
    pub fn abort(mut self) {
        for (_, mut file) in std::mem::take(&mut self.open) {
            file.writer.inner_mut().abort();
        }
        let staged: Vec<Path> = self.closed.iter().map(|f| f.staged.clone()).collect();
        let dest = self.dest.clone();
        let names = self.names.clone();
        self.handle.block_on(async move {
            dest.delete_quietly(&staged).await;
            dest.tidy_staging(&names).await;
        });
    }

    /// The batch must have the export's full schema (names and types, in order).
    fn check_schema(&self, batch: &RecordBatch) -> Result<()> {
        let expected = self.schema.fields();
        let found = batch.schema_ref().fields();
        for position in 0..expected.len().max(found.len()) {
            let (want, got) = (expected.get(position), found.get(position));
            let same = matches!((want, got),
                (Some(w), Some(g)) if w.name() == g.name() && w.data_type() == g.data_type());
            if !same {
                return Err(Error::Schema {
                    column: want.or(got).map(|f| f.name().clone()).unwrap_or_default(),
                    reason: format!(
                        "column {} of the batch: expected {}, found {}",
                        position + 1,
                        show_field(want),
                        show_field(got)
                    ),
                });
            }
        }
        Ok(())
    }

    /// Writes `batch` to partition `dirs` in slices that end where a row group ends, so a full
    /// file is closed between row groups even inside one large batch.
    fn write_chunk(&mut self, dirs: Vec<String>, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if !self.open.contains_key(&dirs) {
                let file =
                    self.open_file(&dirs, &batch.slice(offset, batch.num_rows() - offset))?;
                self.open.insert(dirs.clone(), file);
            }
            let file = self.open.get_mut(&dirs).expect("opened above");
            let room = self.options.max_row_group_rows - file.writer.in_progress_rows();
            let len = room.min(batch.num_rows() - offset);
            file.write(&batch.slice(offset, len), &self.dest)?;
            offset += len;
            self.roll_if_full(&dirs)?;
        }
        Ok(())
    }

    /// Starts the next file of partition `dirs`, whose first rows are `first`, with a multipart
    /// upload to its staged name.
    fn open_file(&mut self, dirs: &[String], first: &RecordBatch) -> Result<OpenFile> {
        let path = self.names.data_file(dirs, self.numbers.next(dirs))?;
        let staged = self.names.staged(&path)?;
        let full = self.dest.full(&staged);
        let store = self.dest.store_for_write()?;
        let upload = self
            .handle
            .block_on(store.put_multipart(&full))
            .map_err(|e| self.dest.storage_error(&staged, e))?;
        let sink = UploadSink {
            handle: self.handle.clone(),
            upload: Some(WriteMultipart::new_with_chunk_size(
                upload,
                self.dest.part_bytes,
            )),
            part_bytes: self.dest.part_bytes,
            pending: 0,
            written: 0,
        };
        let writer = ArrowWriter::try_new(
            sink,
            Arc::clone(self.file_schema()),
            Some(dictionary_where_values_repeat(self.props.clone(), first)),
        )
        .map_err(|e| parquet_error(&self.dest, &staged, e))?;
        tracing::debug!(file = %staged, "opened a staged file");
        Ok(OpenFile {
            writer,
            schema: Arc::clone(self.file_schema()),
            file: StagedFile {
                path,
                staged,
                rows: 0,
                bytes: 0,
                stats: None,
            },
        })
    }

    fn roll_if_full(&mut self, dirs: &[String]) -> Result<()> {
        let full = self
            .open
            .get(dirs)
            .is_some_and(|f| f.writer.bytes_written() >= self.options.max_file_bytes);
        if full { self.close(dirs) } else { Ok(()) }
    }

    /// Flushes the largest in-progress row group while all of them together exceed the budget.
    fn keep_memory_budget(&mut self) -> Result<()> {
        loop {
            let total: usize = self.open.values().map(|f| f.writer.memory_size()).sum();
            if total <= self.options.memory_budget_bytes {
                return Ok(());
            }
            let Some((dirs, file)) = self
                .open
                .iter_mut()
                .max_by_key(|(_, f)| f.writer.memory_size())
            else {
                return Ok(());
            };
            let dirs = dirs.clone();
            tracing::debug!(file = %file.file.staged, total, "memory budget reached, flushing the largest row group");
            file.writer
                .flush()
                .map_err(|e| parquet_error(&self.dest, &file.file.staged, e))?;
            self.roll_if_full(&dirs)?;
        }
    }

    /// Writes the footer of partition `dirs`' open file and completes its upload.
    fn close(&mut self, dirs: &[String]) -> Result<()> {
        let Some(file) = self.open.remove(dirs) else {
            return Ok(());
        };
        let staged = file.close(&self.dest, self.options.file_stats)?;
        tracing::debug!(file = %staged.staged, rows = staged.rows, bytes = staged.bytes, "staged a file");
        self.closed.push(staged);
        Ok(())
    }
}

/// File numbers by partition folder, shared by the writers of one report and run: each call
/// of [`FileNumbers::next`] for a folder gives the next number, from 0.
#[derive(Debug, Clone, Default)]
pub struct FileNumbers(Arc<Mutex<HashMap<Vec<String>, u32>>>);

impl FileNumbers {
    fn next(&self, dirs: &[String]) -> u32 {
        let mut numbers = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let next = numbers.entry(dirs.to_vec()).or_default();
        *next += 1;
        *next - 1
    }
}

/// One file being written.
#[derive(Debug)]
struct OpenFile {
    writer: ArrowWriter<UploadSink>,
    /// The file's schema, for its statistics.
    schema: SchemaRef,
    /// Names, and rows so far (bytes are known at close).
    file: StagedFile,
}

impl OpenFile {
    fn write(&mut self, batch: &RecordBatch, dest: &Destination) -> Result<()> {
        self.writer
            .write(batch)
            .map_err(|e| parquet_error(dest, &self.file.staged, e))?;
        self.file.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Footer, then upload completion; on failure the upload is aborted.
    fn close(mut self, dest: &Destination, with_stats: bool) -> Result<StagedFile> {
        match self.writer.finish() {
            Ok(metadata) if with_stats => {
                self.file.stats = Some(file_stats(&self.schema, &metadata));
            }
            Ok(_) => {}
            Err(e) => {
                self.writer.inner_mut().abort();
                return Err(parquet_error(dest, &self.file.staged, e));
            }
        }
        let sink = self.writer.inner_mut();
        sink.complete()
            .map_err(|e| dest.storage_error(&self.file.staged, e))?;
        self.file.bytes = sink.written;
        Ok(self.file)
    }
}

/// Rows of a file's first batch that decide which columns are dictionary-encoded.
const DICTIONARY_SAMPLE_ROWS: usize = 512;

/// `props` with dictionary encoding turned off for the columns whose values in `first` (the
/// file's first rows, usually the whole partition) are estimated to be mostly distinct: a
/// dictionary then holds nearly every value once more, plus an index per row, and its hash table
/// costs CPU, while plain values compress as well (DuckDB decides the same way). Columns whose
/// values repeat (dates, names, countries, small counts) keep it.
fn dictionary_where_values_repeat(
    props: WriterProperties,
    first: &RecordBatch,
) -> WriterProperties {
    let plain: Vec<&str> = first
        .schema_ref()
        .fields()
        .iter()
        .zip(first.columns())
        .filter(|(_, column)| mostly_distinct(column.as_ref()))
        .map(|(field, _)| field.name().as_str())
        .collect();
    if plain.is_empty() {
        return props;
    }
    let mut builder = props.into_builder();
    for name in plain {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(name), false);
    }
    builder.build()
}

/// Whether a scalar column's distinct values are estimated to be more than
/// [`PLAIN_DISTINCT_SHARE`] of its values, from [`DICTIONARY_SAMPLE_ROWS`] rows spread over it
/// (never for nested columns, booleans or fewer than 64 rows).
fn mostly_distinct(column: &dyn Array) -> bool {
    let rows = column.len();
    if rows < 64 {
        return false;
    }
    let data = column.to_data();
    let width = match column.data_type() {
        DataType::Utf8 => 0,
        DataType::Boolean => return false,
        other => match other.primitive_width() {
            Some(width) => width,
            None => return false,
        },
    };
    let strings = column.as_string_opt::<i32>();
    let value = |row: usize| match strings {
        Some(strings) => strings.value(row).as_bytes(),
        None => {
            let at = (data.offset() + row) * width;
            &data.buffers()[0].as_slice()[at..at + width]
        }
    };
    let sample = rows.min(DICTIONARY_SAMPLE_ROWS);
    let mut seen: Vec<u64> = (0..sample)
        .map(|i| i * rows / sample)
        .filter(|&row| column.is_valid(row))
        .map(|row| fnv1a(FNV_OFFSET, 0, value(row)))
        .collect();
    let sampled = seen.len();
    seen.sort_unstable();
    seen.dedup();
    let values = rows - column.null_count();
    sampled > 0
        && estimate_distinct(values, sampled, seen.len()) > PLAIN_DISTINCT_SHARE * values as f64
}

/// Distinct values a column has beyond which it is written plain.
const PLAIN_DISTINCT_SHARE: f64 = 0.5;

/// The number of distinct values `d` among `n` values that makes `seen` distinct values the
/// expected count in a sample of `k` of them, each value repeating equally: a value of
/// multiplicity `n/d` is missed by the sample with probability `(1 - k/n)^(n/d)`. Solved by
/// bisection (the expectation grows with `d`); `n` when even `d = n` expects fewer.
fn estimate_distinct(n: usize, k: usize, seen: usize) -> f64 {
    let (n, p, seen) = (n as f64, (k as f64 / n as f64).min(1.0), seen as f64);
    let expected = |d: f64| d * (1.0 - (1.0 - p).powf(n / d));
    if p >= 1.0 || expected(n) <= seen {
        return if p >= 1.0 { seen } else { n };
    }
    let (mut low, mut high) = (seen, n);
    for _ in 0..40 {
        let mid = (low + high) / 2.0;
        if expected(mid) < seen {
            low = mid
        } else {
            high = mid
        }
    }
    (low + high) / 2.0
}

fn show_field(field: Option<&FieldRef>) -> String {
    match field {
        Some(f) => format!("{:?} ({})", f.name(), f.data_type()),
        None => "no column".to_owned(),
    }
}

fn parquet_error(
    dest: &Destination,
    staged: &Path,
    source: parquet::errors::ParquetError,
) -> Error {
    Error::Parquet {
        path: dest.show(staged),
        source,
    }
}

/// `std::io::Write` over a multipart upload, for the blocking Parquet encoder: bytes are cut
/// into parts; after each full part it waits until fewer than [`MAX_PARTS_IN_FLIGHT`] parts are
/// uploading, so a slow store slows the encoder instead of filling memory.
#[derive(Debug)]
struct UploadSink {
    handle: Handle,
    /// `None` once completed or aborted.
    upload: Option<WriteMultipart>,
    part_bytes: usize,
    /// Bytes written since the last part boundary.
    pending: usize,
    written: u64,
}

impl Write for UploadSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let upload = self
            .upload
            .as_mut()
            .ok_or_else(|| io::Error::other("the upload was already completed or aborted"))?;
        // Parts are uploaded by tasks spawned on the runtime.
        let _runtime = self.handle.enter();
        upload.write(buf);
        self.written += buf.len() as u64;
        self.pending += buf.len();
        if self.pending >= self.part_bytes {
            self.pending %= self.part_bytes;
            self.handle
                .block_on(upload.wait_for_capacity(MAX_PARTS_IN_FLIGHT))
                // The text only: an S3 error body may echo the signed request.
                .map_err(|e| io::Error::other(super::s3::clean_message(&e)))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl UploadSink {
    /// Uploads the last part and completes the upload (the staged object appears atomically).
    fn complete(&mut self) -> object_store::Result<()> {
        let Some(upload) = self.upload.take() else {
            return Ok(());
        };
        self.handle.block_on(upload.finish()).map(drop)
    }

    /// Aborts the upload, so no part of it stays behind; errors are only logged.
    fn abort(&mut self) {
        let Some(upload) = self.upload.take() else {
            return;
        };
        if let Err(e) = self.handle.block_on(upload.abort()) {
            tracing::warn!(error = %super::s3::clean_message(&e), "aborting an upload failed");
        }
    }
}

/// An upload neither completed nor aborted (a panic unwinding through the encoder) is aborted
/// in the background, so it leaves no parts behind as long as the runtime lives on.
impl Drop for UploadSink {
    fn drop(&mut self) {
        let Some(upload) = self.upload.take() else {
            return;
        };
        self.handle.spawn(async move {
            if let Err(e) = upload.abort().await {
                tracing::warn!(error = %super::s3::clean_message(&e), "aborting a dropped upload failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::test_util::*;
    use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatchReader, StringArray};
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::{Compression, LogicalType, TimeUnit, Type as PhysicalType};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn written_files_read_back_with_int64_micros_timestamps() {
        let (tmp, dest) = local_dest();
        let batch = sample_batch(&["d1", "d2", "d1"], 0);
        let staged = stage(
            &dest,
            "rep",
            "r1",
            vec![batch.clone()],
            &["day"],
            WriteOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(staged.rows(), 3);
        assert_eq!(staged.files().len(), 2);
        assert_eq!(
            staged.bytes(),
            staged.files().iter().map(|f| f.bytes).sum::<u64>()
        );
        let d1 = &staged.files()[0];
        assert_eq!(d1.path.as_ref(), "day=d1/rep.r1.00000.parquet");
        assert_eq!(
            d1.staged.as_ref(),
            "_staging/r1/day=d1/rep.r1.00000.parquet.tmp"
        );
        assert_eq!(d1.rows, 2);
        let on_disk = tmp.path().join(d1.staged.as_ref());
        assert_eq!(std::fs::metadata(&on_disk).unwrap().len(), d1.bytes);

        let builder =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&on_disk).unwrap())
                .unwrap();
        let ts = builder.parquet_schema().column(1);
        assert_eq!(ts.name(), "at");
        assert_eq!(ts.physical_type(), PhysicalType::INT64);
        assert_eq!(
            ts.logical_type_ref(),
            Some(&LogicalType::timestamp(true, TimeUnit::MICROS))
        );
        let created_by = builder
            .metadata()
            .file_metadata()
            .created_by()
            .unwrap()
            .to_owned();
        assert_eq!(
            created_by,
            format!("kargo-export {}", env!("CARGO_PKG_VERSION"))
        );
        let compression = builder.metadata().row_group(0).column(0).compression();
        assert!(
            matches!(compression, Compression::ZSTD(_)),
            "{compression:?}"
        );

        let read: Vec<RecordBatch> = builder.build().unwrap().map(Result::unwrap).collect();
        assert_eq!(read.len(), 1);
        let read = &read[0];
        assert_eq!(
            read.schema().fields().len(),
            3,
            "day is in the path, not the file"
        );
        assert_eq!(
            read.column(0).as_primitive::<Int64Type>().values().to_vec(),
            vec![0, 2]
        );
        let at = read.column(1).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(at.timezone(), Some("UTC"));
        assert_eq!(at.values().to_vec(), vec![micros(0), micros(2)]);
        assert_eq!(read.column(2).as_string::<i32>().value(1), "name 2");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn write_last_closes_each_partition_and_writers_share_file_numbers() {
        let (tmp, dest) = local_dest();
        let numbers = FileNumbers::default();
        let parts = tokio::task::spawn_blocking(move || {
            let writer = || {
                ReportWriter::new(
                    &dest,
                    "rep",
                    "r1",
                    sample_schema(),
                    &["day".into()],
                    WriteOptions::default(),
                )
                .unwrap()
                .with_file_numbers(numbers.clone())
            };
            let mut first = writer();
            first.write(&sample_batch(&["a", "b"], 0)).unwrap();
            first.write_last(&sample_batch(&["a"], 2)).unwrap();
            assert_eq!(
                first.open.keys().collect::<Vec<_>>(),
                [&vec!["day=b".to_string()]]
            );
            let mut second = writer();
            second.write_last(&sample_batch(&["a", "c"], 3)).unwrap();
            assert!(second.open.is_empty());
            vec![first.finish().unwrap(), second.finish().unwrap()]
        })
        .await
        .unwrap();
        let staged = StagedReport::merge(parts).unwrap();
        let files: Vec<(&str, u64)> = staged
            .files()
            .iter()
            .map(|f| (f.path.as_ref(), f.rows))
            .collect();
        assert_eq!(
            files,
            [
                ("day=a/rep.r1.00000.parquet", 2),
                ("day=a/rep.r1.00001.parquet", 1),
                ("day=b/rep.r1.00000.parquet", 1),
                ("day=c/rep.r1.00000.parquet", 1),
            ]
        );
        let first = tmp.path().join(staged.files()[0].staged.as_ref());
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(first).unwrap()).unwrap();
        assert_eq!(
            builder.metadata().num_row_groups(),
            1,
            "rows of both writes in one row group"
        );
    }

    #[test]
    fn columns_of_mostly_distinct_values_are_written_without_a_dictionary() {
        let rows = 20_000;
        let unique = Int64Array::from_iter_values(0..rows);
        let repeating = Int64Array::from_iter_values((0..rows).map(|i| i * 7919 % 5_000));
        let few = StringArray::from_iter_values((0..rows).map(|i| format!("site{}", i % 300)));
        let names = StringArray::from_iter_values((0..rows).map(|i| format!("name {i}")));
        assert!(mostly_distinct(&unique));
        assert!(mostly_distinct(&names));
        assert!(!mostly_distinct(&repeating), "4 rows a value");
        assert!(!mostly_distinct(&few));
        assert!(
            !mostly_distinct(&Int64Array::from_iter_values(0..63)),
            "too few rows to judge"
        );
        let batch = RecordBatch::try_from_iter([
            ("unique", Arc::new(unique) as ArrayRef),
            ("few", Arc::new(few) as ArrayRef),
        ])
        .unwrap();
        let props =
            dictionary_where_values_repeat(WriteOptions::default().writer_properties(), &batch);
        assert!(!props.dictionary_enabled(&ColumnPath::from("unique")));
        assert!(props.dictionary_enabled(&ColumnPath::from("few")));
    }

    #[test]
    fn the_distinct_estimate_recovers_the_count_of_evenly_repeating_values() {
        // 100,000 values, 4,096 sampled (the estimate holds for any sample size).
        assert!(
            estimate_distinct(100_000, 4_096, 4_096) > 99_000.0,
            "all distinct"
        );
        // 20,000 values repeating 5 times each leave about 3,774 distinct in the sample.
        let d = estimate_distinct(100_000, 4_096, 3_774);
        assert!((19_500.0..20_500.0).contains(&d), "{d}");
        assert_eq!(
            estimate_distinct(5_000, 5_000, 1_234),
            1_234.0,
            "a full sample is exact"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_named_parquet_exists_before_commit() {
        let (tmp, dest) = local_dest();
        let batches = vec![sample_batch(&["a", "b"], 0), sample_batch(&["a", "c"], 2)];
        let staged = stage(
            &dest,
            "rep",
            "r1",
            batches,
            &["day"],
            WriteOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(staged.files().len(), 3);
        let files = list_files(tmp.path());
        assert!(
            files
                .iter()
                .all(|f| f.starts_with("_staging/r1/") && f.ends_with(".parquet.tmp")),
            "{files:?}"
        );
        assert_eq!(files.len(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_max_file_bytes_rolls_files_with_one_schema() {
        let (tmp, dest) = local_dest();
        let options = WriteOptions {
            max_row_group_rows: 2,
            max_file_bytes: 1,
            ..WriteOptions::default()
        };
        let batches = vec![sample_batch(&["x"; 5], 0), sample_batch(&["x"; 2], 5)];
        let staged = stage(&dest, "rep", "r1", batches, &["day"], options)
            .await
            .unwrap();
        let names: Vec<&str> = staged.files().iter().map(|f| f.path.as_ref()).collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert_eq!(names[0], "day=x/rep.r1.00000.parquet");
        assert_eq!(names[3], "day=x/rep.r1.00003.parquet");
        assert_eq!(
            staged.files().iter().map(|f| f.rows).collect::<Vec<_>>(),
            vec![2, 2, 1, 2]
        );
        let mut values = Vec::new();
        let mut schemas = Vec::new();
        for file in staged.files() {
            let f = std::fs::File::open(tmp.path().join(file.staged.as_ref())).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(f)
                .unwrap()
                .build()
                .unwrap();
            schemas.push(reader.schema());
            for batch in reader {
                let batch = batch.unwrap();
                values.extend(
                    batch
                        .column(0)
                        .as_primitive::<Int64Type>()
                        .values()
                        .iter()
                        .copied(),
                );
            }
        }
        assert_eq!(values, (0..7).collect::<Vec<i64>>());
        assert!(schemas.windows(2).all(|w| w[0] == w[1]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_files_stream_through_many_parts() {
        let (tmp, dest) = local_dest();
        let rows = 3_000;
        let text: Vec<String> = (0..rows)
            .map(|_| (0..1_000).map(|_| fastrand::alphanumeric()).collect())
            .collect();
        let mut batch = sample_batch(&vec!["x"; rows], 0);
        let names = Arc::new(StringArray::from(text.clone()));
        let mut columns = batch.columns().to_vec();
        columns[3] = names;
        batch = RecordBatch::try_new(batch.schema(), columns).unwrap();
        let options = WriteOptions {
            compression: "none".parse().unwrap(),
            max_row_group_rows: 500,
            ..WriteOptions::default()
        };
        let staged = stage(&dest, "rep", "r1", vec![batch], &["day"], options)
            .await
            .unwrap();
        assert_eq!(staged.files().len(), 1);
        let file = &staged.files()[0];
        assert!(
            file.bytes > 2 * crate::sink::LOCAL_PART_BYTES as u64,
            "{} bytes",
            file.bytes
        );
        let f = std::fs::File::open(tmp.path().join(file.staged.as_ref())).unwrap();
        assert_eq!(f.metadata().unwrap().len(), file.bytes);
        let builder = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
        assert_eq!(builder.metadata().num_row_groups(), 6);
        let mut read = Vec::new();
        for batch in builder.build().unwrap() {
            let batch = batch.unwrap();
            let names = batch.column(2).as_string::<i32>();
            read.extend(names.iter().map(|v| v.unwrap().to_owned()));
        }
        assert_eq!(read, text);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn row_groups_are_capped_by_bytes() {
        let (tmp, dest) = local_dest();
        let options = WriteOptions {
            max_row_group_bytes: 1,
            ..WriteOptions::default()
        };
        let batches = (0..3).map(|i| sample_batch(&["a"], i)).collect();
        let staged = stage(&dest, "rep", "r1", batches, &[], options)
            .await
            .unwrap();
        let file = tmp.path().join(staged.files()[0].staged.as_ref());
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap()).unwrap();
        assert_eq!(builder.metadata().num_row_groups(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_budget_flushes_row_groups() {
        let (tmp, dest) = local_dest();
        let options = WriteOptions {
            memory_budget_bytes: 1,
            ..WriteOptions::default()
        };
        let batches = vec![sample_batch(&["a", "b"], 0), sample_batch(&["a", "b"], 2)];
        let staged = stage(&dest, "rep", "r1", batches, &["day"], options)
            .await
            .unwrap();
        let first = tmp.path().join(staged.files()[0].staged.as_ref());
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(first).unwrap()).unwrap();
        assert_eq!(builder.metadata().num_row_groups(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partition_values_with_percent_and_slash_make_one_folder() {
        let (tmp, dest) = local_dest();
        let batch = sample_batch(&["50%/off", "..", ""], 0);
        let staged = stage(
            &dest,
            "rep",
            "r1",
            vec![batch],
            &["day"],
            WriteOptions::default(),
        );
        let info = crate::sink::ManifestInfo {
            report_id: "rep".into(),
            source_url: String::new(),
            schema: sample_schema(),
            partition_by: vec!["day".into()],
            compression: "zstd(3)".into(),
            schema_drift: Default::default(),
        };
        staged.await.unwrap().commit(&dest, info).await.unwrap();
        let mut top: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        let expected = [
            "_manifests",
            "day=%2E%2E",
            "day=50%25%2Foff",
            "day=__HIVE_DEFAULT_PARTITION__",
        ];
        assert_eq!(top, expected);
        let file = tmp.path().join("day=50%25%2Foff/rep.r1.00000.parquet");
        assert!(file.is_file());
        assert_eq!(file.parent().unwrap().parent().unwrap(), tmp.path());
        assert_eq!(
            list_dirs(&tmp.path().join("day=50%25%2Foff")),
            Vec::<String>::new()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abort_removes_open_and_closed_staged_files() {
        let (tmp, dest) = local_dest();
        std::fs::write(tmp.path().join("keep.txt"), "x").unwrap();
        let before = list_files(tmp.path());
        let task_dest = dest.clone();
        tokio::task::spawn_blocking(move || {
            let options = WriteOptions {
                max_file_bytes: 1,
                ..WriteOptions::default()
            };
            let mut writer = ReportWriter::new(
                &task_dest,
                "rep",
                "r1",
                sample_schema(),
                &["day".into()],
                options,
            )
            .unwrap();
            writer.write(&sample_batch(&["a", "b"], 0)).unwrap();
            assert!(!writer.closed.is_empty());
            let options = WriteOptions::default();
            let mut open =
                ReportWriter::new(&task_dest, "rep2", "r1", sample_schema(), &[], options).unwrap();
            open.write(&sample_batch(&["a"], 0)).unwrap();
            assert_eq!(open.open.len(), 1);
            writer.abort();
            open.abort();
        })
        .await
        .unwrap();
        assert_eq!(list_files(tmp.path()), before);
        assert_eq!(list_dirs(tmp.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn works_on_a_current_thread_runtime() {
        let (tmp, dest) = local_dest();
        let batches = vec![sample_batch(&["a", "b"], 0), sample_batch(&["a"], 2)];
        let staged = stage(
            &dest,
            "rep",
            "r1",
            batches,
            &["day"],
            WriteOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(staged.rows(), 3);
        staged.discard(&dest).await;
        assert_eq!(list_files(tmp.path()), Vec::<String>::new());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn works_on_any_store() {
        let (store, dest) = memory_dest();
        let staged = stage(
            &dest,
            "rep",
            "r1",
            vec![sample_batch(&["a"], 0)],
            &[],
            WriteOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(staged.files()[0].path.as_ref(), "rep.r1.00000.parquet");
        let bytes = store
            .get(&staged.files()[0].staged)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(bytes.len() as u64, staged.bytes());
        assert_eq!(&bytes[..4], b"PAR1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_input_is_refused_with_context() {
        let (_tmp, dest) = local_dest();
        let err = tokio::task::spawn_blocking(move || {
            let zero = WriteOptions {
                max_file_bytes: 0,
                ..WriteOptions::default()
            };
            let err =
                ReportWriter::new(&dest, "rep", "r1", sample_schema(), &[], zero).unwrap_err();
            assert!(err.to_string().contains("max_file_bytes"), "{err}");
            let err = ReportWriter::new(
                &dest,
                "rep",
                "r1",
                sample_schema(),
                &["nope".into()],
                WriteOptions::default(),
            )
            .unwrap_err();
            assert!(matches!(err, Error::Partition { .. }), "{err}");
            let mut writer = ReportWriter::new(
                &dest,
                "rep",
                "r1",
                sample_schema(),
                &[],
                WriteOptions::default(),
            )
            .unwrap();
            let other =
                RecordBatch::try_from_iter([("n", Arc::new(StringArray::from(vec!["x"])) as _)])
                    .unwrap();
            let err = writer.write(&other).unwrap_err();
            writer.abort();
            err
        })
        .await
        .unwrap();
        let Error::Schema { column, reason } = err else {
            panic!("{err}");
        };
        assert_eq!(column, "day");
        assert_eq!(
            reason,
            "column 1 of the batch: expected \"day\" (Utf8), found \"n\" (Utf8)"
        );
    }
}
