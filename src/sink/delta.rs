//! Delta Lake tables (`--table-format delta`): the destination is a Delta table, and each
//! report's export is one Delta commit that removes the report's earlier files and adds its new
//! ones, so a reader sees the old rows or the new rows, never both and never neither.
//!
//! This module owns the table: reading its latest version (schema, partition columns, live
//! files), checking an export's schema against it ([`evolution`]), building and committing the
//! transaction through the Delta kernel (`delta_kernel`; we never write the log ourselves),
//! a checkpoint every [`CHECKPOINT_INTERVAL`] versions, and reading back what was exported
//! (each report's domain metadata; the commit history when a killed run must be judged). It
//! does not write Parquet: the files are the writer's, published by [`super::commit`] before
//! the commit names them, so until then no table reader sees them.
//!
//! Concurrency: the kernel commits version N+1 with a put-if-absent (local: an atomic create;
//! S3: a conditional `If-None-Match` put). A writer that loses the race reads the new version
//! and rebuilds its commit on it ([`COMMIT_ATTEMPTS`]); other reports' files are never touched.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, MapBuilder, MapFieldNames, RecordBatch, StringArray,
    StringBuilder, StructArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use delta_kernel::commit_range::{CommitRange, DeltaAction};
use delta_kernel::committer::FileSystemCommitter;
use delta_kernel::engine::arrow_conversion::{TryFromArrow, TryFromKernel};
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::error::KernelError;
use delta_kernel::schema::{StructField, StructType};
use delta_kernel::transaction::UpdateTableOperation;
use delta_kernel::transaction::create_table::create_table;
use delta_kernel::transaction::data_layout::DataLayout;
use delta_kernel::transaction::{CommitResult, Transaction};
use delta_kernel::{Engine, EngineData, FilteredEngineData, Snapshot, SnapshotRef};
use delta_kernel_default_engine::DefaultEngineBuilder;
use delta_kernel_default_engine::executor::tokio::TokioMultiThreadExecutor;
use object_store::path::Path;
use url::Url;

use super::Destination;
use super::commit::StagedFile;
use super::layout::ReportNames;
use super::partition::{HIVE_DEFAULT_PARTITION, decode_segment};
use super::stats::{FileStats, stats_array};
use crate::drift::merge_types;
use crate::error::{Error, Result};

/// Folder of the table's log, beside the data.
pub const LOG_DIR: &str = "_delta_log";
/// `engineInfo` of our commits.
const ENGINE_INFO: &str = concat!("kargo-export/", env!("CARGO_PKG_VERSION"));
/// Commits tried before a lost race is an error: each attempt reads the newer version first.
const COMMIT_ATTEMPTS: u32 = 20;
/// Keys of `commitInfo.operationParameters` our commits record.
const PARAM_REPORT_ID: &str = "kargo.reportId";
const PARAM_RUN_ID: &str = "kargo.runId";
const PARAM_ROWS: &str = "kargo.rows";
const PARAM_SOURCE_URL: &str = "kargo.sourceUrl";
/// Each report's latest commit is also kept as domain metadata `kargo-export/report/<key>`
/// (a writer feature, `domainMetadata`, that readers ignore): a checkpoint holds it, so what the
/// table exported is read without replaying its whole history.
const REPORT_DOMAIN_PREFIX: &str = "kargo-export/report/";
/// A checkpoint every this many versions (Delta's default interval), so that loading the
/// table reads one Parquet file and at most this many commits, however long its history.
const CHECKPOINT_INTERVAL: u64 = 10;

/// A destination opened as a Delta table (which may not exist yet).
pub struct DeltaTable {
    engine: Arc<dyn Engine>,
    url: Url,
    display: String,
}

/// What one commit records in `commitInfo` (and in the report's domain metadata), and reads
/// back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitRecord {
    pub report_id: String,
    pub run_id: String,
    pub rows: u64,
    pub source_url: String,
}

/// How an export's schema joins the table's: the schema its files are written with (the
/// table's type where the export's widens into it), and the columns its commit adds.
#[derive(Debug, Clone, PartialEq)]
pub struct Evolution {
    pub schema: SchemaRef,
    pub added: Vec<Field>,
}

/// One report's commit: the files to add (published, under their final names), and what the
/// commit records.
pub struct ReportCommit<'a> {
    pub names: &'a ReportNames,
    pub files: &'a [StagedFile],
    pub schema: &'a SchemaRef,
    pub partition_by: &'a [String],
    pub record: CommitRecord,
}

/// A report's domain metadata: its latest commit's record and time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportDomain {
    #[serde(flatten)]
    record: CommitRecord,
    /// Milliseconds since the epoch, when the commit was built.
    committed_at: i64,
}

impl ReportDomain {
    fn now(record: &CommitRecord) -> (String, String) {
        let domain = ReportDomain {
            record: record.clone(),
            committed_at: chrono::Utc::now().timestamp_millis(),
        };
        let config = serde_json::to_string(&domain).unwrap_or_default();
        (
            format!("{REPORT_DOMAIN_PREFIX}{}", record.report_id),
            config,
        )
    }
}

/// A report's commit, done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub version: u64,
    /// The report's files the commit removed from the table.
    pub removed: usize,
    /// The runs whose files of the report the commit removed: committed runs.
    pub replaced_runs: HashSet<String>,
}

/// What `inspect` shows of a table: its latest version and, per report, its latest commit and
/// live files.
#[derive(Debug, Clone, PartialEq)]
pub struct TableContents {
    pub version: u64,
    pub schema: Schema,
    pub partition_by: Vec<String>,
    /// In report id order.
    pub reports: Vec<TableReport>,
}

/// One report of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    /// What its latest commit recorded.
    pub record: CommitRecord,
    /// When that commit was made (milliseconds since the epoch).
    pub committed_at_ms: i64,
    /// Its files in the latest version.
    pub files: usize,
    pub bytes: u64,
}

/// The latest version of a table: its schema and partition columns.
struct TableShape {
    schema: Schema,
    partition_by: Vec<String>,
}

impl DeltaTable {
    /// Opens `dest` as a table; nothing is read yet. Must run inside the multi-threaded runtime.
    pub fn open(dest: &Destination) -> Result<Arc<Self>> {
        let (url, store) = dest.table_location()?;
        let executor = TokioMultiThreadExecutor::new(tokio::runtime::Handle::current());
        let engine = DefaultEngineBuilder::new(store)
            .with_task_executor(Arc::new(executor))
            .build();
        Ok(Arc::new(Self {
            engine: Arc::new(engine),
            url,
            display: dest.display().to_owned(),
        }))
    }

    /// Runs `work` (which calls the kernel: its API is synchronous) on a blocking thread.
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&DeltaTable) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let table = Arc::clone(self);
        tokio::task::spawn_blocking(move || work(&table))
            .await
            .map_err(|e| Error::Internal(format!("delta table task: {e}")))?
    }

    /// The latest version, or `None` when there is no table yet (no commit in `_delta_log/`).
    fn latest(&self) -> Result<Option<SnapshotRef>> {
        // Asked first: the kernel logs an error for a table that is not there.
        if !self.has_commit()? {
            return Ok(None);
        }
        Snapshot::builder_for(self.url.as_str())
            .build(self.engine.as_ref())
            .map(Some)
            .map_err(|e| self.error(e))
    }

    /// Whether `_delta_log/` holds a commit or a checkpoint: the listing stops at the first
    /// (`00000000000000000000.json` of most tables), however long the log.
    fn has_commit(&self) -> Result<bool> {
        let log = self
            .url
            .join(&format!("{LOG_DIR}/"))
            .map_err(|e| self.error(e))?;
        let listed = self
            .engine
            .storage_handler()
            .list_from(&log)
            .map_err(|e| self.error(e))?;
        for file in listed {
            let path = file.map_err(|e| self.error(e))?.location;
            if path.path().ends_with(".json") || path.path().ends_with(".parquet") {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Checks an export of `reports` with `schema` and `partition_by` against the table.
    pub fn plan(
        &self,
        reports: &str,
        schema: &SchemaRef,
        partition_by: &[String],
    ) -> Result<Evolution> {
        match self.latest()? {
            None => Ok(Evolution {
                schema: schema.clone(),
                added: Vec::new(),
            }),
            Some(snapshot) => {
                let shape = self.shape(&snapshot)?;
                evolution(&shape.schema, &shape.partition_by, schema, partition_by)
                    .map_err(|problems| self.refused(reports, &problems))
            }
        }
    }

    /// Commits one report: creates the table at the first export, otherwise removes the
    /// report's live files and adds `commit.files`, evolving the schema by the columns the
    /// export adds. A lost race is retried on the newer version. Returns the version and how
    /// many files were removed.
    pub fn commit(&self, commit: &ReportCommit<'_>) -> Result<Committed> {
        for attempt in 1..=COMMIT_ATTEMPTS {
            let outcome = match self.latest()? {
                None if commit.schema.fields().is_empty() => {
                    tracing::debug!(report = %commit.record.report_id, "no rows and no table: nothing to commit");
                    return Ok(Committed {
                        version: 0,
                        removed: 0,
                        replaced_runs: HashSet::new(),
                    });
                }
                None => self.create(commit)?,
                Some(snapshot) => self.replace(&snapshot, commit)?,
            };
            match outcome {
                Attempt::Committed(committed) => {
                    tracing::debug!(report = %commit.record.report_id, version = committed.version, removed = committed.removed, attempt, "delta commit");
                    return Ok(committed);
                }
                Attempt::Lost(why) => {
                    tracing::debug!(report = %commit.record.report_id, attempt, %why, "delta commit lost a race; retrying");
                    std::thread::sleep(Duration::from_millis(
                        fastrand::u64(5..50) * u64::from(attempt),
                    ));
                }
            }
        }
        Err(Error::Delta {
            table: self.display.clone(),
            message: format!(
                "gave up committing report {} after {COMMIT_ATTEMPTS} attempts: other writers committed first each time",
                commit.record.report_id
            ),
        })
    }

    /// What every commit of the table recorded, oldest first (commits of other writers, which
    /// record no report, are left out).
    pub fn history(&self) -> Result<Vec<CommitRecord>> {
        Ok(self.dated_history()?.into_iter().map(|(_, r)| r).collect())
    }

    /// The latest version, its reports and their live files; `None` when there is no table.
    pub fn contents(&self) -> Result<Option<TableContents>> {
        let Some(snapshot) = self.latest()? else {
            return Ok(None);
        };
        let shape = self.shape(&snapshot)?;
        let mut latest: std::collections::BTreeMap<String, (i64, CommitRecord)> =
            Default::default();
        for (at, record) in self.dated_history()? {
            latest.insert(record.report_id.clone(), (at, record));
        }
        let files = self.live_files(&snapshot)?;
        let reports = latest
            .into_values()
            .map(|(committed_at_ms, record)| {
                let names = ReportNames::new(&record.report_id, "inspect")?;
                let theirs: Vec<u64> = files
                    .iter()
                    .filter(|(path, _)| report_file_run(&self.url, &names, path).is_some())
                    .map(|(_, size)| *size)
                    .collect();
                Ok(TableReport {
                    record,
                    committed_at_ms,
                    files: theirs.len(),
                    bytes: theirs.iter().sum(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(TableContents {
            version: snapshot.version(),
            schema: shape.schema,
            partition_by: shape.partition_by,
            reports,
        }))
    }

    /// Every live file of `snapshot`: its `add.path` and size.
    fn live_files(&self, snapshot: &SnapshotRef) -> Result<Vec<(String, u64)>> {
        let mut files = Vec::new();
        for (batch, selection) in self.scan_files(snapshot)? {
            let paths = batch
                .column_by_name("path")
                .and_then(|c| c.as_string_opt::<i32>());
            let sizes = batch
                .column_by_name("size")
                .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Int64Type>());
            let (Some(paths), Some(sizes)) = (paths, sizes) else {
                return Err(self.error("scan files have no path or size column"));
            };
            for row in (0..batch.num_rows()).filter(|&row| selection[row]) {
                files.push((paths.value(row).to_owned(), sizes.value(row).max(0) as u64));
            }
        }
        Ok(files)
    }

    /// The scan's file batches of `snapshot`, each with a selection of its live rows as long
    /// as the batch (the kernel's may be shorter: the rows after it are selected).
    fn scan_files(&self, snapshot: &SnapshotRef) -> Result<Vec<(RecordBatch, Vec<bool>)>> {
        let scan = Arc::clone(snapshot)
            .scan_builder()
            .build()
            .map_err(|e| self.error(e))?;
        let mut batches = Vec::new();
        for metadata in scan
            .scan_metadata(self.engine.as_ref())
            .map_err(|e| self.error(e))?
        {
            let (data, mut selection) =
                metadata.map_err(|e| self.error(e))?.scan_files.into_parts();
            let batch = arrow_batch(data)?;
            selection.resize(batch.num_rows(), true);
            batches.push((batch, selection));
        }
        Ok(batches)
    }

    /// [`DeltaTable::history`] with each commit's time (milliseconds since the epoch).
    fn dated_history(&self) -> Result<Vec<(i64, CommitRecord)>> {
        let Some(snapshot) = self.latest()? else {
            return Ok(Vec::new());
        };
        // The whole log, not the snapshot's segment (which starts at its checkpoint).
        let range = CommitRange::builder_for(self.url.as_str(), 0)
            .with_end_version(snapshot.version())
            .build(self.engine.as_ref())
            .map_err(|e| self.error(e))?;
        let commits = range
            .commits(Arc::clone(&self.engine), None, &[DeltaAction::CommitInfo])
            .map_err(|e| self.error(e))?;
        let mut records = Vec::new();
        for commit in commits {
            let commit = commit.map_err(|e| self.error(e))?;
            for data in commit
                .get_actions(self.engine.as_ref())
                .map_err(|e| self.error(e))?
            {
                let batch = arrow_batch(data.map_err(|e| self.error(e))?)?;
                let at = commit.timestamp();
                records.extend(commit_records(&batch).into_iter().map(|r| (at, r)));
            }
        }
        Ok(records)
    }

    fn create(&self, commit: &ReportCommit<'_>) -> Result<Attempt> {
        let schema =
            StructType::try_from_arrow(commit.schema.as_ref()).map_err(|e| self.error(e))?;
        let (domain, config) = ReportDomain::now(&commit.record);
        let built = create_table(self.url.as_str(), Arc::new(schema), ENGINE_INFO, true)
            .with_data_layout(partition_layout(commit.partition_by))
            .with_table_properties([("delta.feature.domainMetadata", "supported")])
            .with_operation_parameters(parameters(&commit.record))
            .with_domain_metadata(domain, config)
            .build(self.engine.as_ref(), Box::new(FileSystemCommitter::new()));
        let txn = match built {
            Ok(txn) => txn,
            // Another writer created it since we looked: commit on its version instead.
            Err(KernelError::TableAlreadyExistsAtPath(_)) => {
                return Ok(Attempt::Lost("the table was created meanwhile".into()));
            }
            Err(e) => return Err(self.error(e)),
        };
        self.finish(txn, commit, 0, HashSet::new())
    }

    fn replace(&self, snapshot: &SnapshotRef, commit: &ReportCommit<'_>) -> Result<Attempt> {
        let shape = self.shape(snapshot)?;
        let evolution = evolution(
            &shape.schema,
            &shape.partition_by,
            commit.schema,
            commit.partition_by,
        )
        .map_err(|problems| {
            self.refused(&format!("report {}", commit.record.report_id), &problems)
        })?;
        let mut builder = Arc::clone(snapshot)
            .update_table(UpdateTableOperation::Write, ENGINE_INFO, true)
            .with_operation_parameters(parameters(&commit.record));
        if has_report_domains(snapshot) {
            let (domain, config) = ReportDomain::now(&commit.record);
            builder = builder.with_domain_metadata(domain, config);
        }
        for field in &evolution.added {
            let field = StructField::try_from_arrow(field).map_err(|e| self.error(e))?;
            builder = builder.add_column(field);
        }
        let mut txn = builder
            .build(self.engine.as_ref(), Box::new(FileSystemCommitter::new()))
            .map_err(|e| self.error(e))?;
        let (removes, removed, replaced_runs) = self.live_files_of(snapshot, commit.names)?;
        for remove in removes {
            txn.remove_files(remove);
        }
        self.finish(txn, commit, removed, replaced_runs)
    }

    /// Adds the report's files to `txn` and commits it: a checkpoint follows now and then; a
    /// version another writer took first is a lost race.
    fn finish<S>(
        &self,
        mut txn: Transaction<S>,
        commit: &ReportCommit<'_>,
        removed: usize,
        replaced_runs: HashSet<String>,
    ) -> Result<Attempt> {
        if !commit.files.is_empty() {
            txn.add_files(self.add_actions(commit)?);
        }
        let result = txn
            .commit(self.engine.as_ref())
            .map_err(|e| self.error(e))?;
        Ok(match result {
            CommitResult::Committed(c) => {
                self.checkpoint_now_and_then(c.post_commit_snapshot(), c.commit_version());
                Attempt::Committed(Committed {
                    version: c.commit_version(),
                    removed,
                    replaced_runs,
                })
            }
            CommitResult::Conflicted(c) => {
                Attempt::Lost(format!("version {} exists", c.conflict_version()))
            }
            CommitResult::Retryable(r) => Attempt::Lost(r.error.to_string()),
        })
    }

    /// Writes a checkpoint at every [`CHECKPOINT_INTERVAL`]th version. The commit is done
    /// whatever happens here: a failure is logged, and a later commit writes the next one.
    fn checkpoint_now_and_then(&self, snapshot: Option<&SnapshotRef>, version: u64) {
        if version == 0 || !version.is_multiple_of(CHECKPOINT_INTERVAL) {
            return;
        }
        let snapshot = match snapshot {
            Some(snapshot) => Ok(Arc::clone(snapshot)),
            None => Snapshot::builder_for(self.url.as_str())
                .at_version(version)
                .build(self.engine.as_ref()),
        };
        let written = snapshot.and_then(|s| s.checkpoint(self.engine.as_ref(), None));
        match written {
            Ok(_) => tracing::debug!(version, "delta checkpoint written"),
            Err(e) => {
                tracing::warn!(table = %self.display, version, error = %e, "writing a delta checkpoint failed")
            }
        }
    }

    /// The reports the table's commits record: from the reports' domain metadata (held by the
    /// latest checkpoint and the commits after it), or, in a table without it (made by another
    /// writer), from the whole history.
    pub fn exported_reports(&self) -> Result<HashSet<String>> {
        let Some(snapshot) = self.latest()? else {
            return Ok(HashSet::new());
        };
        if !has_report_domains(&snapshot) {
            return Ok(self.history()?.into_iter().map(|r| r.report_id).collect());
        }
        Ok(self
            .report_domains(&snapshot)?
            .into_iter()
            .map(|d| d.record.report_id)
            .collect())
    }

    /// Every report's domain metadata.
    fn report_domains(&self, snapshot: &SnapshotRef) -> Result<Vec<ReportDomain>> {
        let all = snapshot
            .get_all_domain_metadata(self.engine.as_ref())
            .map_err(|e| self.error(e))?;
        all.iter()
            .filter(|d| d.domain().starts_with(REPORT_DOMAIN_PREFIX))
            .map(|d| {
                serde_json::from_str(d.configuration())
                    .map_err(|e| self.error(format!("domain metadata {}: {e}", d.domain())))
            })
            .collect()
    }

    fn shape(&self, snapshot: &SnapshotRef) -> Result<TableShape> {
        let schema =
            Schema::try_from_kernel(snapshot.schema().as_ref()).map_err(|e| self.error(e))?;
        let partition_by = snapshot
            .table_configuration()
            .metadata()
            .partition_columns()
            .to_vec();
        Ok(TableShape {
            schema,
            partition_by,
        })
    }

    /// The live files of the report `names` is for, as selections of the scan's file batches
    /// (what `remove_files` takes), how many there are, and the runs that wrote them.
    fn live_files_of(
        &self,
        snapshot: &SnapshotRef,
        names: &ReportNames,
    ) -> Result<(Vec<FilteredEngineData>, usize, HashSet<String>)> {
        let mut selected = Vec::new();
        let mut count = 0;
        let mut runs = HashSet::new();
        for (batch, mut selection) in self.scan_files(snapshot)? {
            let paths = batch
                .column_by_name("path")
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| self.error("scan files have no path column"))?;
            for (row, keep) in selection.iter_mut().enumerate() {
                let run = (*keep)
                    .then(|| report_file_run(&self.url, names, paths.value(row)))
                    .flatten();
                *keep = run.is_some();
                count += usize::from(*keep);
                runs.extend(run);
            }
            let data = Box::new(ArrowEngineData::new(batch));
            selected.push(FilteredEngineData::try_new(data, selection).map_err(|e| self.error(e))?);
        }
        Ok((selected, count, runs))
    }

    /// The `add` actions' rows for the kernel: path (relative, URL-encoded), partition values,
    /// size, time, and the row count as stats.
    fn add_actions(&self, commit: &ReportCommit<'_>) -> Result<Box<dyn EngineData>> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut paths = Vec::new();
        let mut partitions = MapBuilder::new(
            Some(MapFieldNames {
                entry: "key_value".into(),
                key: "key".into(),
                value: "value".into(),
            }),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        for file in commit.files {
            paths.push(add_path(&self.url, &file.path)?);
            for (column, value) in partition_values(&file.path, commit.partition_by, commit.schema)
            {
                partitions.keys().append_value(column);
                partitions.values().append_option(value);
            }
            partitions.append(true).map_err(|e| self.error(e))?;
        }
        let count = commit.files.len();
        let stats = self.stats_of(commit.files)?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(paths)),
            Arc::new(partitions.finish()),
            Arc::new(Int64Array::from_iter_values(
                commit.files.iter().map(|f| f.bytes as i64),
            )),
            Arc::new(Int64Array::from_value(now, count)),
            stats,
        ];
        let fields: Vec<Field> = vec![
            Field::new("path", DataType::Utf8, false),
            Field::new("partitionValues", columns[1].data_type().clone(), false),
            Field::new("size", DataType::Int64, false),
            Field::new("modificationTime", DataType::Int64, false),
            Field::new("stats", columns[4].data_type().clone(), true),
        ];
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| self.error(e))?;
        Ok(Box::new(ArrowEngineData::new(batch)))
    }

    /// The files' `stats`: their footers' statistics ([`super::stats`]), or the row counts
    /// alone when a file has none.
    fn stats_of(&self, files: &[StagedFile]) -> Result<ArrayRef> {
        let all: Option<Vec<&FileStats>> = files.iter().map(|f| f.stats.as_ref()).collect();
        if let Some(all) = all.filter(|all| !all.is_empty()) {
            return stats_array(&all)
                .map(|stats| Arc::new(stats) as ArrayRef)
                .map_err(|e| self.error(e));
        }
        Ok(Arc::new(StructArray::from(vec![(
            Arc::new(Field::new("numRecords", DataType::Int64, true)),
            Arc::new(Int64Array::from_iter_values(
                files.iter().map(|f| f.rows as i64),
            )) as ArrayRef,
        )])))
    }

    fn refused(&self, reports: &str, problems: &[String]) -> Error {
        Error::DeltaSchema {
            reports: reports.to_owned(),
            table: self.display.clone(),
            differences: problems.join("; "),
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Delta {
            table: self.display.clone(),
            message: e.to_string(),
        }
    }
}

/// How one commit attempt ended.
enum Attempt {
    Committed(Committed),
    /// Another writer committed that version first.
    Lost(String),
}

/// Checks an export's schema against the table's: partition columns must be the same; a
/// column the table has must have its type, or one that widens into it (then the files are
/// written with the table's); a new column is added to the table (older files read it as
/// null). Returns the problems otherwise, one per column.
pub fn evolution(
    table: &Schema,
    table_partition_by: &[String],
    ours: &SchemaRef,
    partition_by: &[String],
) -> std::result::Result<Evolution, Vec<String>> {
    let mut problems = Vec::new();
    if ours.fields().is_empty() {
        // A report without rows writes no file: nothing of it meets the table's schema.
        return Ok(Evolution {
            schema: ours.clone(),
            added: Vec::new(),
        });
    }
    if partition_by != table_partition_by {
        problems.push(format!(
            "partitioned by [{}] here but by [{}] in the table",
            partition_by.join(", "),
            table_partition_by.join(", ")
        ));
    }
    let mut fields = Vec::new();
    let mut added = Vec::new();
    for field in ours.fields() {
        let theirs = table
            .fields()
            .iter()
            .find(|t| t.name().eq_ignore_ascii_case(field.name()));
        match theirs {
            None => {
                let field = field.as_ref().clone().with_nullable(true);
                added.push(field.clone());
                fields.push(field);
            }
            Some(theirs) if theirs.name() != field.name() => problems.push(format!(
                "column {:?} is {:?} in the table (Delta column names ignore case)",
                field.name(),
                theirs.name()
            )),
            Some(theirs) => {
                let fits = merge_types(theirs.data_type(), field.data_type())
                    .is_some_and(|merged| &merged == theirs.data_type());
                if fits {
                    fields.push(
                        field
                            .as_ref()
                            .clone()
                            .with_data_type(theirs.data_type().clone()),
                    );
                } else {
                    problems.push(format!(
                        "column {:?} is {} here but {} in the table",
                        field.name(),
                        field.data_type(),
                        theirs.data_type()
                    ));
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Evolution {
        schema: Arc::new(Schema::new_with_metadata(fields, ours.metadata().clone())),
        added,
    })
}

/// `(column, value)` of each `col=value` folder of `path` as the Delta protocol writes
/// partition values (a timestamp as `2025-03-01 00:09:04.000000`, UTC); the Hive default
/// partition is null.
fn partition_values(
    path: &Path,
    partition_by: &[String],
    schema: &SchemaRef,
) -> Vec<(String, Option<String>)> {
    path.parts()
        .take(partition_by.len())
        .zip(partition_by)
        .map(|(segment, column)| {
            let value = segment
                .as_ref()
                .split_once('=')
                .map(|(_, v)| v)
                .filter(|v| *v != HIVE_DEFAULT_PARTITION)
                .map(decode_segment);
            let is_timestamp = schema
                .field_with_name(column)
                .is_ok_and(|f| matches!(f.data_type(), DataType::Timestamp(..)));
            let value = match value {
                Some(text) if is_timestamp => Some(protocol_timestamp(&text).unwrap_or(text)),
                other => other,
            };
            (column.clone(), value)
        })
        .collect()
}

/// An RFC 3339 timestamp (our folder text) as the protocol's `%Y-%m-%d %H:%M:%S%.6f`, in UTC.
fn protocol_timestamp(text: &str) -> Option<String> {
    let at = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(at.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string())
}

/// The `add.path` of a file: relative to the table, each segment URL-encoded (a Delta path is a
/// URI, so a `%` of our folder names is written `%25`).
fn add_path(table: &Url, path: &Path) -> Result<String> {
    let mut url = table.clone();
    url.path_segments_mut()
        .map_err(|()| Error::Usage(format!("table location {table} cannot hold files")))?
        .pop_if_empty()
        .extend(path.parts().map(|p| p.as_ref().to_owned()));
    table
        .make_relative(&url)
        .ok_or_else(|| Error::Usage(format!("file {path} is not under the table {table}")))
}

/// The run that wrote the file the `add.path` `encoded` names, when it is a data file of the
/// report `names` is for.
fn report_file_run(table: &Url, names: &ReportNames, encoded: &str) -> Option<String> {
    let url = table.join(encoded).ok()?;
    let rel = table.make_relative(&url)?;
    let decoded: Vec<String> = rel
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let path = super::layout::parse_path(&decoded.join("/")).ok()?;
    names.data_file_run(&path)
}

fn partition_layout(partition_by: &[String]) -> DataLayout {
    if partition_by.is_empty() {
        DataLayout::default()
    } else {
        DataLayout::partitioned(partition_by.iter().cloned())
    }
}

fn parameters(record: &CommitRecord) -> Vec<(&'static str, Option<String>)> {
    vec![
        (PARAM_REPORT_ID, Some(record.report_id.clone())),
        (PARAM_RUN_ID, Some(record.run_id.clone())),
        (PARAM_ROWS, Some(record.rows.to_string())),
        (PARAM_SOURCE_URL, Some(record.source_url.clone())),
    ]
}

fn arrow_batch(data: Box<dyn EngineData>) -> Result<RecordBatch> {
    ArrowEngineData::try_from_engine_data(data)
        .map(|data| data.record_batch().clone())
        .map_err(|e| Error::Delta {
            table: String::new(),
            message: e.to_string(),
        })
}

/// The records of the `commitInfo` rows of a batch of log actions (ours only).
fn commit_records(batch: &RecordBatch) -> Vec<CommitRecord> {
    let Some(info) = batch
        .column_by_name("commitInfo")
        .and_then(|c| c.as_struct_opt())
    else {
        return Vec::new();
    };
    let Some(params) = info
        .column_by_name("operationParameters")
        .and_then(|c| c.as_map_opt())
    else {
        return Vec::new();
    };
    (0..batch.num_rows())
        .filter(|&row| info.is_valid(row) && params.is_valid(row))
        .filter_map(|row| {
            let entries = params.value(row);
            let keys = entries.column(0).as_string_opt::<i32>()?;
            let values = entries.column(1).as_string_opt::<i32>()?;
            let map: HashMap<&str, &str> = (0..keys.len())
                .filter(|&i| values.is_valid(i))
                .map(|i| (keys.value(i), values.value(i)))
                .collect();
            Some(CommitRecord {
                report_id: map.get(PARAM_REPORT_ID)?.to_string(),
                run_id: map.get(PARAM_RUN_ID)?.to_string(),
                rows: map
                    .get(PARAM_ROWS)
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0),
                source_url: map.get(PARAM_SOURCE_URL).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// Whether the table keeps our reports' domain metadata (tables this tool created do).
fn has_report_domains(snapshot: &SnapshotRef) -> bool {
    snapshot
        .table_configuration()
        .is_feature_supported(&delta_kernel::table_features::TableFeature::DomainMetadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &[(&str, DataType)]) -> SchemaRef {
        Arc::new(Schema::new(
            fields
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true))
                .collect::<Vec<_>>(),
        ))
    }

    fn table() -> Schema {
        schema(&[
            ("date", DataType::Utf8),
            ("clicks", DataType::Int64),
            ("spend", DataType::Float64),
        ])
        .as_ref()
        .clone()
    }

    fn date() -> Vec<String> {
        vec!["date".to_string()]
    }

    #[test]
    fn new_columns_are_added_and_a_narrower_type_takes_the_tables() {
        let ours = schema(&[
            ("date", DataType::Utf8),
            ("spend", DataType::Int64),
            ("country", DataType::Utf8),
        ]);
        let evolution = evolution(&table(), &date(), &ours, &date()).unwrap();
        let written: Vec<(String, DataType)> = evolution
            .schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        assert_eq!(
            written,
            [
                ("date".to_string(), DataType::Utf8),
                ("spend".to_string(), DataType::Float64),
                ("country".to_string(), DataType::Utf8),
            ]
        );
        let added: Vec<&str> = evolution.added.iter().map(|f| f.name().as_str()).collect();
        assert_eq!(added, ["country"]);
    }

    #[test]
    fn other_types_case_only_names_and_other_partitions_are_refused_naming_each() {
        let ours = schema(&[
            ("date", DataType::Utf8),
            ("clicks", DataType::Utf8),
            ("Spend", DataType::Float64),
        ]);
        let problems = evolution(&table(), &date(), &ours, &["clicks".to_string()]).unwrap_err();
        assert_eq!(
            problems,
            [
                "partitioned by [clicks] here but by [date] in the table",
                "column \"clicks\" is Utf8 here but Int64 in the table",
                "column \"Spend\" is \"spend\" in the table (Delta column names ignore case)",
            ]
        );
    }

    #[test]
    fn an_export_without_columns_fits_any_table() {
        let empty = Arc::new(Schema::empty());
        let evolution = evolution(&table(), &date(), &empty, &[]).unwrap();
        assert!(evolution.added.is_empty());
        assert!(evolution.schema.fields().is_empty());
    }

    #[test]
    fn partition_values_decode_folders_and_the_default_partition_is_null() {
        let path = super::super::layout::parse_path(
            "country=A%2FB/date=__HIVE_DEFAULT_PARTITION__/r.run.00000.parquet",
        )
        .unwrap();
        let columns = ["country".to_string(), "date".to_string()];
        let schema = schema(&[("country", DataType::Utf8), ("date", DataType::Date32)]);
        assert_eq!(
            partition_values(&path, &columns, &schema),
            [
                ("country".to_string(), Some("A/B".to_string())),
                ("date".to_string(), None),
            ]
        );
    }

    #[test]
    fn timestamp_partition_values_take_the_protocols_form() {
        let path =
            super::super::layout::parse_path("at=2025-03-01T00%3A09%3A04.5Z/r.run.00000.parquet")
                .unwrap();
        let schema = schema(&[(
            "at",
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
        )]);
        assert_eq!(
            partition_values(&path, &["at".to_string()], &schema),
            [(
                "at".to_string(),
                Some("2025-03-01 00:09:04.500000".to_string())
            )]
        );
    }

    #[test]
    fn add_paths_are_uri_encoded_and_read_back_to_the_report_file() {
        let table = Url::parse("s3://bucket/some/table/").unwrap();
        let names = ReportNames::new("rpt 1", "20261203T000000Z-abc123").unwrap();
        let file = names
            .data_file(&["country=A%2FB c".to_string()], 0)
            .unwrap();
        let encoded = add_path(&table, &file).unwrap();
        assert_eq!(
            encoded,
            "country=A%252FB%20c/rpt%201.20261203T000000Z-abc123.00000.parquet"
        );
        assert_eq!(
            report_file_run(&table, &names, &encoded).as_deref(),
            Some("20261203T000000Z-abc123")
        );
        let other = ReportNames::new("rpt 2", "20261203T000000Z-abc123").unwrap();
        assert_eq!(report_file_run(&table, &other, &encoded), None);
    }

    #[test]
    fn commit_records_read_our_parameters_and_skip_other_commits() {
        let record = CommitRecord {
            report_id: "rpt_1".into(),
            run_id: "run-1".into(),
            rows: 42,
            source_url: "https://api/v1/completed-reports/rpt_1".into(),
        };
        let entries = |pairs: &[(&str, Option<String>)]| {
            let mut map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
            for (k, v) in pairs {
                map.keys().append_value(k);
                map.values().append_option(v.as_deref());
            }
            map
        };
        let mut map = entries(&parameters(&record));
        map.append(true).unwrap();
        map.keys().append_value("mode");
        map.values().append_value("Append");
        map.append(true).unwrap();
        let params: ArrayRef = Arc::new(map.finish());
        let info = StructArray::from(vec![(
            Arc::new(Field::new(
                "operationParameters",
                params.data_type().clone(),
                true,
            )),
            params,
        )]);
        let info: ArrayRef = Arc::new(info);
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "commitInfo",
                info.data_type().clone(),
                true,
            )])),
            vec![info],
        )
        .unwrap();
        assert_eq!(commit_records(&batch), [record]);
    }
}
