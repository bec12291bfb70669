//! Commit protocol: staged files become visible all together or not at all, and a rerun
//! replaces a report's files instead of adding to them.
//!
//! This module owns what happens after a [`super::ReportWriter`] finished: publish (rename each
//! staged file to its final name; a local rename is atomic), make the published files durable
//! (in a local directory: each file synced, then each folder holding one), write the report's
//! manifest (the commit point; locally a synced temporary file renamed over it, then its folder
//! synced), retire the report's older files (data files of other runs anywhere outside
//! `_`/`.` folders, and staged leftovers of killed runs), and remove this run's staging. A
//! failure before the manifest is written removes what this run published, so earlier data stays
//! untouched and nothing is duplicated. It never touches objects of another report: ownership is
//! decided by file name alone ([`super::layout`]). It does not encode Parquet.

use arrow::datatypes::SchemaRef;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use std::collections::HashSet;
use std::sync::Arc;

use super::Destination;
use super::delta::{CommitRecord, Committed, DeltaTable, ReportCommit};
use super::layout::{self, Owned, ReportNames};
use super::manifest::{Manifest, ManifestColumn, ManifestFile};
use super::marker::RunMarker;
use super::stats::FileStats;
use crate::drift::Drift;
use crate::error::{Error, Result};

/// Files renamed at once when publishing: S3 copies run on the server, so a few in parallel
/// shorten the commit of a large export without loading the client.
const PUBLISH_AT_ONCE: usize = 8;

/// One staged file; paths are relative to the destination root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    /// Final name, e.g. `day=2024-01-05/<key>.<run>.00000.parquet`.
    pub path: Path,
    /// Where it is now: `_staging/<run>/<path>.tmp`.
    pub staged: Path,
    /// Rows in the file.
    pub rows: u64,
    /// Size of the file.
    pub bytes: u64,
    /// Its column statistics, from its footer (for a Delta commit's `add`).
    pub stats: Option<FileStats>,
}

/// One report's files of one run, staged and ready to commit or discard.
#[derive(Debug)]
#[must_use = "a staged report must be committed or discarded"]
pub struct StagedReport {
    names: ReportNames,
    files: Vec<StagedFile>,
    rows: u64,
    bytes: u64,
}

/// What the manifest records besides the files.
#[derive(Debug, Clone)]
pub struct ManifestInfo {
    /// Report id in the source API.
    pub report_id: String,
    /// Where the rows came from (no query string).
    pub source_url: String,
    /// The export's full schema, partition columns included.
    pub schema: SchemaRef,
    /// Partition columns, outermost first.
    pub partition_by: Vec<String>,
    /// Compression as shown to users, e.g. `zstd(3)`.
    pub compression: String,
    /// How the export's schema differs from the destination's other reports (empty: it does
    /// not, or it was not compared).
    pub schema_drift: Drift,
}

/// Outcome of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSummary {
    /// Report id from the [`ManifestInfo`].
    pub report_id: String,
    /// Rows in the published files.
    pub rows: u64,
    /// Published files.
    pub files: usize,
    /// Bytes in the published files.
    pub bytes: u64,
    /// Data files of earlier runs deleted.
    pub retired: usize,
    /// The schema drift the manifest records.
    pub schema_drift: Drift,
}

impl StagedReport {
    pub(super) fn new(names: ReportNames, mut files: Vec<StagedFile>) -> Self {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Self {
            rows: files.iter().map(|f| f.rows).sum(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            names,
            files,
        }
    }

    /// Combines the staged files of parallel shards of one report and run (see
    /// [`super::ReportWriter::with_file_numbers`]) into one report to commit.
    pub fn merge(parts: Vec<StagedReport>) -> Option<StagedReport> {
        let mut parts = parts.into_iter();
        let first = parts.next()?;
        let mut files = first.files;
        for part in parts {
            debug_assert_eq!(part.names.run_id(), first.names.run_id());
            files.extend(part.files);
        }
        Some(StagedReport::new(first.names, files))
    }

    /// The report key the files are named after.
    pub fn report_key(&self) -> &str {
        self.names.key()
    }

    /// The run that wrote the files.
    pub fn run_id(&self) -> &str {
        self.names.run_id()
    }

    /// Rows in all files.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes in all files.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The staged files, by final path.
    pub fn files(&self) -> &[StagedFile] {
        &self.files
    }

    /// Publishes the files (staged -> final names), makes them durable, writes the manifest,
    /// then retires this report's older files and removes its staging. `dest` must be the
    /// writer's destination.
    ///
    /// A failure while publishing, syncing or writing the manifest removes this run's files and leaves
    /// the earlier export as it was. A failure while retiring is returned after every older
    /// file was tried: the new files and manifest are in place, and the older files that could
    /// not be deleted are retired by the next commit.
    pub async fn commit(self, dest: &Destination, manifest: ManifestInfo) -> Result<CommitSummary> {
        self.publish(dest).await?;
        let published: Vec<Path> = self.files.iter().map(|f| f.path.clone()).collect();
        let durable = match dest.sync_files(&published).await {
            Ok(()) => self.write_manifest(dest, &manifest).await,
            Err(e) => Err(e),
        };
        if let Err(e) = durable {
            dest.delete_quietly(&published).await;
            dest.tidy_staging(&self.names).await;
            return Err(e);
        }
        let retired = retire(dest, &self.names).await;
        dest.tidy_staging(&self.names).await;
        dest.abort_older_uploads(&self.names).await;
        let retired = retired?;
        tracing::debug!(
            report = %manifest.report_id, rows = self.rows, files = self.files.len(),
            bytes = self.bytes, retired, "committed"
        );
        Ok(CommitSummary {
            report_id: manifest.report_id,
            rows: self.rows,
            files: self.files.len(),
            bytes: self.bytes,
            retired,
            schema_drift: manifest.schema_drift,
        })
    }

    /// Publishes the files and makes them durable, as [`StagedReport::commit`] does, then
    /// commits them to the Delta table at `dest` in one commit that also removes the report's
    /// earlier files from the table (they stay on disk for readers of older versions). Until the
    /// commit, table readers see none of the new files; a failure before it removes them again.
    /// Then deletes what killed runs of this report left (see [`delete_orphans`]) and this
    /// run's marker ([`mark_run`] wrote it before the first file was staged).
    pub async fn commit_delta(
        self,
        dest: &Destination,
        table: &Arc<DeltaTable>,
        manifest: ManifestInfo,
    ) -> Result<CommitSummary> {
        let marker = self.names.run_marker(&RunMarker::ours())?;
        if let Err(e) = self.publish(dest).await {
            dest.delete_quietly(std::slice::from_ref(&marker)).await;
            return Err(e);
        }
        let published: Vec<Path> = self.files.iter().map(|f| f.path.clone()).collect();
        let committed = match dest.sync_files(&published).await {
            Ok(()) => self.commit_to_table(table, &manifest).await,
            Err(e) => Err(e),
        };
        let committed = match committed {
            Ok(committed) => committed,
            Err(e) => {
                dest.delete_quietly(&published).await;
                dest.delete_quietly(std::slice::from_ref(&marker)).await;
                dest.tidy_staging_where(&self.names, |_| false).await;
                return Err(e);
            }
        };
        dest.delete_quietly(std::slice::from_ref(&marker)).await;
        let orphans = delete_orphans(dest, table, &self.names, &committed.replaced_runs).await?;
        tracing::debug!(
            report = %manifest.report_id, version = committed.version, rows = self.rows,
            files = self.files.len(), removed = committed.removed, orphans,
            "committed to the delta table"
        );
        Ok(CommitSummary {
            report_id: manifest.report_id,
            rows: self.rows,
            files: self.files.len(),
            bytes: self.bytes,
            retired: committed.removed,
            schema_drift: manifest.schema_drift,
        })
    }

    /// The Delta commit itself, on a blocking thread (the kernel's API is synchronous).
    async fn commit_to_table(
        &self,
        table: &Arc<DeltaTable>,
        manifest: &ManifestInfo,
    ) -> Result<Committed> {
        let names = self.names.clone();
        let files = self.files.clone();
        let schema = manifest.schema.clone();
        let partition_by = manifest.partition_by.clone();
        let record = CommitRecord {
            report_id: manifest.report_id.clone(),
            run_id: self.names.run_id().to_owned(),
            rows: self.rows,
            source_url: manifest.source_url.clone(),
        };
        table
            .blocking(move |table| {
                table.commit(&ReportCommit {
                    names: &names,
                    files: &files,
                    schema: &schema,
                    partition_by: &partition_by,
                    record,
                })
            })
            .await
    }

    /// Deletes the staged files (the export failed), and the run marker of a Delta export;
    /// the destination is left as it was.
    pub async fn discard(self, dest: &Destination) {
        let mut staged: Vec<Path> = self.files.iter().map(|f| f.staged.clone()).collect();
        staged.extend(self.names.run_marker(&RunMarker::ours()));
        dest.delete_quietly(&staged).await;
        dest.tidy_staging(&self.names).await;
    }

    /// Renames every staged file to its final name, [`PUBLISH_AT_ONCE`] at a time (on S3 a
    /// rename is a server-side copy and a delete); on failure, waits for the others, removes
    /// this run's files (published and staged) again and returns the first error.
    async fn publish(&self, dest: &Destination) -> Result<()> {
        let store = &dest.store_for_write()?;
        let renamed: Vec<_> = stream::iter(&self.files)
            .map(|file| async move {
                let (from, to) = (dest.full(&file.staged), dest.full(&file.path));
                (file, store.rename(&from, &to).await)
            })
            .buffer_unordered(PUBLISH_AT_ONCE)
            .collect()
            .await;
        let Some((file, e)) = renamed
            .into_iter()
            .find_map(|(file, result)| result.err().map(|e| (file, e)))
        else {
            return Ok(());
        };
        let published = self.files.iter().map(|f| f.path.clone());
        let staged = self.files.iter().map(|f| f.staged.clone());
        dest.delete_quietly(&published.chain(staged).collect::<Vec<_>>())
            .await;
        dest.tidy_staging(&self.names).await;
        Err(dest.storage_error(&file.staged, e))
    }

    async fn write_manifest(&self, dest: &Destination, info: &ManifestInfo) -> Result<()> {
        let path = self.names.manifest()?;
        let json = serde_json::to_vec_pretty(&self.manifest(info)).map_err(|e| Error::Storage {
            path: dest.show(&path),
            source: object_store::Error::Generic {
                store: "manifest",
                source: Box::new(e),
            },
        })?;
        dest.put_durably(&path, json).await
    }

    fn manifest(&self, info: &ManifestInfo) -> Manifest {
        Manifest {
            report_id: info.report_id.clone(),
            run_id: self.names.run_id().to_owned(),
            rows: self.rows,
            bytes: self.bytes,
            files: self
                .files
                .iter()
                .map(|f| ManifestFile {
                    path: f.path.to_string(),
                    rows: f.rows,
                    bytes: f.bytes,
                })
                .collect(),
            schema: ManifestColumn::of(&info.schema),
            partition_by: info.partition_by.clone(),
            compression: info.compression.clone(),
            source_url: info.source_url.clone(),
            exported_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            schema_drift: info.schema_drift.clone(),
        }
    }
}

/// Deletes this report's objects that are not part of the run (see [`ReportNames::classify`]);
/// returns how many older data files went. Tries every object, then reports the first error.
/// Marks run `run_id` of report `report_key` as alive in `dest` (a Delta table) before its
/// first file is staged: see [`super::marker`].
pub async fn mark_run(dest: &Destination, report_key: &str, run_id: &str) -> Result<()> {
    let names = ReportNames::new(report_key, run_id)?;
    dest.create_empty(&names.run_marker(&RunMarker::ours())?)
        .await
}

/// Deletes what killed runs of this report left in a Delta table, leaving runs still at work
/// alone. A run is killed when its marker stayed and [`RunMarker::is_dead`] says so; a run the
/// commit just replaced finished (its marker alone stayed). Of a killed run go its marker, its
/// staged files, its unfinished uploads and, unless a commit of the table records the run (it
/// was killed after its commit), its published data files: no commit names them. Staged files
/// of runs without a marker go too. Files of committed runs stay, live or not: readers of older
/// versions need them. The history is read only when a killed run must be judged, that is after
/// a crash. Last, the staging's empty folders go (locally). Returns the data files deleted.
async fn delete_orphans(
    dest: &Destination,
    table: &Arc<DeltaTable>,
    names: &ReportNames,
    replaced: &HashSet<String>,
) -> Result<usize> {
    // Markers and staged files live under `_staging/`: the whole destination is listed only
    // when a killed run may have published files.
    let staging = layout::parse_path(layout::STAGING_DIR)?;
    let mut objects = list_under(dest, &staging).await?;
    let now = Utc::now();
    let (mut finished, mut alive, mut killed) = (HashSet::new(), HashSet::new(), HashSet::new());
    for (rel, modified) in &objects {
        let Some((run, marker)) = names.other_run_marker(rel) else {
            continue;
        };
        if replaced.contains(&run) {
            finished.insert(run);
            continue;
        }
        if marker.is_dead(*modified, now) {
            killed.insert(run);
        } else {
            alive.insert(run);
        }
    }
    let mut uncommitted = killed.clone();
    if !uncommitted.is_empty() {
        let history = table.blocking(|table| table.history()).await?;
        for record in history.iter().filter(|r| r.report_id == names.key()) {
            uncommitted.remove(&record.run_id);
        }
    }
    if !uncommitted.is_empty() {
        objects = list_relative(dest).await?;
    }
    dest.abort_uploads_where(names, |run| killed.contains(run))
        .await;
    let paths = objects.into_iter().map(|(rel, _)| rel).collect();
    let deleted = delete_where(dest, paths, |rel| {
        if let Some((run, _)) = names.other_run_marker(rel) {
            return (finished.contains(&run) || killed.contains(&run)).then_some(false);
        }
        if let Some(run) = names.staged_run(rel) {
            return (!alive.contains(&run) && run != names.run_id()).then_some(false);
        }
        names
            .data_file_run(rel)
            .filter(|run| uncommitted.contains(run))
            .map(|_| true)
    })
    .await;
    dest.tidy_staging_where(names, move |run| killed.contains(run))
        .await;
    deleted
}

async fn retire(dest: &Destination, names: &ReportNames) -> Result<usize> {
    let objects = list_relative(dest)
        .await?
        .into_iter()
        .map(|(rel, _)| rel)
        .collect();
    delete_where(dest, objects, |rel| {
        names.classify(rel).map(|owned| owned == Owned::OlderData)
    })
    .await
}

/// Every object of `dest`, relative to its root, with its time (none for a local directory
/// not made yet).
async fn list_relative(dest: &Destination) -> Result<Vec<(Path, DateTime<Utc>)>> {
    list_under(dest, &Path::ROOT).await
}

/// [`list_relative`] for the objects under folder `rel` only.
async fn list_under(dest: &Destination, rel: &Path) -> Result<Vec<(Path, DateTime<Utc>)>> {
    let prefix = dest.full(rel);
    let prefix = (!prefix.is_root()).then_some(&prefix);
    let Some(store) = dest.store_for_read()? else {
        return Ok(Vec::new());
    };
    let objects: Vec<_> = store
        .list(prefix)
        .try_collect()
        .await
        .map_err(|e| dest.storage_error(&Path::ROOT, e))?;
    Ok(objects
        .iter()
        .filter_map(|object| Some((dest.relative(&object.location)?, object.last_modified)))
        .collect())
}

/// Deletes each of `objects` (relative to the root of `dest`) that `which` picks
/// (`Some(counted)`); returns how many counted ones went. Every object is tried; the first
/// error is returned after.
async fn delete_where(
    dest: &Destination,
    objects: Vec<Path>,
    which: impl Fn(&Path) -> Option<bool>,
) -> Result<usize> {
    let Some(store) = dest.store_for_read()? else {
        return Ok(0);
    };
    let mut retired = 0;
    let mut first_error = None;
    for rel in objects {
        let Some(counted) = which(&rel) else {
            continue;
        };
        match store.delete(&dest.full(&rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                tracing::debug!(file = %rel, "deleted");
                retired += usize::from(counted);
            }
            Err(e) => {
                first_error.get_or_insert(dest.storage_error(&rel, e));
            }
        }
    }
    first_error.map_or(Ok(retired), Err)
}

impl Destination {
    /// Deletes `rels` (relative paths); missing objects are fine, other failures are logged.
    pub(super) async fn delete_quietly(&self, rels: &[Path]) {
        let store = match self.store_for_read() {
            Ok(Some(store)) => store,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cleanup failed");
                return;
            }
        };
        for rel in rels {
            match store.delete(&self.full(rel)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(file = %self.show(rel), error = %self.error_text(&e), "cleanup failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::WriteOptions;
    use crate::sink::test_util::*;

    fn info(report_id: &str) -> ManifestInfo {
        ManifestInfo {
            report_id: report_id.into(),
            source_url: "http://127.0.0.1:1/reports/7".into(),
            schema: sample_schema(),
            partition_by: vec!["day".into()],
            compression: "zstd(3)".into(),
            schema_drift: Default::default(),
        }
    }

    async fn export(dest: &Destination, key: &str, run: &str, days: &[&str]) -> CommitSummary {
        let batch = sample_batch(days, 0);
        let staged = stage(
            dest,
            key,
            run,
            vec![batch],
            &["day"],
            WriteOptions::default(),
        )
        .await
        .unwrap();
        staged.commit(dest, info(key)).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commit_publishes_and_a_rerun_replaces_everything() {
        let (tmp, dest) = local_dest();
        let first = export(&dest, "rep", "r1", &["a", "b", "b"]).await;
        assert_eq!((first.rows, first.files, first.retired), (3, 2, 0));
        export(&dest, "other", "r1", &["a"]).await;
        std::fs::write(tmp.path().join("day=a/notes.txt"), "mine").unwrap();
        assert_eq!(
            list_files(tmp.path()),
            vec![
                "_manifests/other.json",
                "_manifests/rep.json",
                "day=a/notes.txt",
                "day=a/other.r1.00000.parquet",
                "day=a/rep.r1.00000.parquet",
                "day=b/rep.r1.00000.parquet",
            ]
        );

        let second = export(&dest, "rep", "r2", &["a", "c"]).await;
        assert_eq!((second.rows, second.files, second.retired), (2, 2, 2));
        assert_eq!(
            list_files(tmp.path()),
            vec![
                "_manifests/other.json",
                "_manifests/rep.json",
                "day=a/notes.txt",
                "day=a/other.r1.00000.parquet",
                "day=a/rep.r2.00000.parquet",
                "day=c/rep.r2.00000.parquet",
            ]
        );
        assert!(
            !tmp.path().join("day=b").exists(),
            "the emptied partition folder is gone"
        );
        assert!(!tmp.path().join("_staging").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commit_retires_leftovers_of_a_killed_run() {
        let (tmp, dest) = local_dest();
        export(&dest, "rep", "r1", &["a"]).await;
        let killed = tmp.path().join("_staging/r0/day=z");
        std::fs::create_dir_all(&killed).unwrap();
        std::fs::write(killed.join("rep.r0.00000.parquet.tmp"), "x").unwrap();
        std::fs::write(killed.join("rep.r0.00001.parquet.tmp#1"), "x").unwrap();
        std::fs::write(killed.join("other.r0.00000.parquet.tmp"), "x").unwrap();
        let summary = export(&dest, "rep", "r2", &["a"]).await;
        assert_eq!(summary.retired, 1);
        assert_eq!(
            list_files(tmp.path()),
            vec![
                "_manifests/rep.json",
                "_staging/r0/day=z/other.r0.00000.parquet.tmp",
                "day=a/rep.r2.00000.parquet",
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_local_manifest_replaces_the_old_one_through_a_temporary_file() {
        let (tmp, dest) = local_dest();
        export(&dest, "rep", "r1", &["a"]).await;
        // What a commit killed between writing its temporary manifest and renaming it leaves.
        let manifests = tmp.path().join("_manifests");
        std::fs::write(manifests.join("rep.json#1"), "{\"torn").unwrap();
        assert_eq!(
            crate::jobs::state::exported_reports(&dest, crate::sink::TableFormat::Hive)
                .await
                .unwrap(),
            std::collections::HashSet::from(["rep".to_string()]),
            "listings skip it"
        );
        export(&dest, "rep", "r2", &["a", "b"]).await;
        assert_eq!(
            list_files(tmp.path()),
            vec![
                "_manifests/rep.json",
                "day=a/rep.r2.00000.parquet",
                "day=b/rep.r2.00000.parquet",
            ],
            "the temporary file went with the rename, the leftover after it"
        );
        let manifest = read_json(&manifests.join("rep.json"));
        assert_eq!(
            (manifest["run_id"].as_str(), manifest["rows"].as_u64()),
            (Some("r2"), Some(2))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn zero_rows_write_a_manifest_and_still_retire() {
        let (tmp, dest) = local_dest();
        export(&dest, "rep", "r1", &["a", "b"]).await;
        let empty = stage(
            &dest,
            "rep",
            "r2",
            vec![],
            &["day"],
            WriteOptions::default(),
        )
        .await
        .unwrap();
        assert!(empty.files().is_empty());
        let summary = empty.commit(&dest, info("rep")).await.unwrap();
        assert_eq!(
            (summary.rows, summary.files, summary.bytes, summary.retired),
            (0, 0, 0, 2)
        );
        assert_eq!(list_files(tmp.path()), vec!["_manifests/rep.json"]);
        let manifest = read_json(&tmp.path().join("_manifests/rep.json"));
        assert_eq!(manifest["rows"], 0);
        assert_eq!(manifest["files"], serde_json::json!([]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn discard_leaves_the_directory_exactly_as_before() {
        let (tmp, dest) = local_dest();
        export(&dest, "rep", "r1", &["a"]).await;
        let files_before = list_files(tmp.path());
        let dirs_before = list_dirs(tmp.path());
        let staged = stage(
            &dest,
            "rep",
            "r2",
            vec![sample_batch(&["a", "b"], 0)],
            &["day"],
            WriteOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(staged.files().len(), 2);
        staged.discard(&dest).await;
        assert_eq!(list_files(tmp.path()), files_before);
        assert_eq!(list_dirs(tmp.path()), dirs_before);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn manifest_records_the_export() {
        let (tmp, dest) = local_dest();
        let batch = sample_batch(&["2024-01-05", "2024-01-05", "x/y"], 0);
        let staged = stage(
            &dest,
            "sales.daily",
            "r1",
            vec![batch],
            &["day"],
            WriteOptions::default(),
        )
        .await
        .unwrap();
        let files: Vec<(String, u64, u64)> = staged
            .files()
            .iter()
            .map(|f| (f.path.to_string(), f.rows, f.bytes))
            .collect();
        let summary = staged.commit(&dest, info("42")).await.unwrap();
        assert_eq!(summary.report_id, "42");

        let manifest = read_json(&tmp.path().join("_manifests/sales%2Edaily.json"));
        assert_eq!(manifest["report_id"], "42");
        assert_eq!(manifest["run_id"], "r1");
        assert_eq!(manifest["rows"], 3);
        assert_eq!(manifest["bytes"], files.iter().map(|f| f.2).sum::<u64>());
        let listed: Vec<(String, u64, u64)> = manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let text = f["path"].as_str().unwrap().to_owned();
                (
                    text,
                    f["rows"].as_u64().unwrap(),
                    f["bytes"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(listed, files);
        assert_eq!(listed[0].0, "day=2024-01-05/sales%2Edaily.r1.00000.parquet");
        assert_eq!(listed[1].0, "day=x%2Fy/sales%2Edaily.r1.00000.parquet");
        for (path, _, bytes) in &listed {
            assert_eq!(
                std::fs::metadata(tmp.path().join(path)).unwrap().len(),
                *bytes
            );
        }
        assert_eq!(
            manifest["schema"],
            serde_json::json!([
                {"name": "day", "type": "Utf8"},
                {"name": "n", "type": "Int64"},
                {"name": "at", "type": "Timestamp(µs, \"UTC\")"},
                {"name": "name", "type": "Utf8"},
            ])
        );
        assert_eq!(manifest["partition_by"], serde_json::json!(["day"]));
        assert_eq!(manifest["compression"], "zstd(3)");
        assert_eq!(manifest["source_url"], "http://127.0.0.1:1/reports/7");
        assert_eq!(manifest["tool_version"], env!("CARGO_PKG_VERSION"));
        let exported_at = manifest["exported_at"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(exported_at).is_ok());
        assert!(exported_at.ends_with('Z'), "{exported_at}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_publish_removes_this_runs_files_and_keeps_the_earlier_export() {
        let (store, dest) = memory_dest();
        export(&dest, "rep", "r1", &["a"]).await;
        let batch = sample_batch(&["a", "b", "c", "d"], 0);
        let staged = stage(
            &dest,
            "rep",
            "r2",
            vec![batch],
            &["day"],
            WriteOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(staged.files().len(), 4);
        // The third file's copy fails while the others are published around it.
        store.delete(&staged.files()[2].staged).await.unwrap();
        let err = staged.commit(&dest, info("rep")).await.unwrap_err();
        let Error::Storage { path, .. } = &err else {
            panic!("{err}");
        };
        assert!(
            path.ends_with("_staging/r2/day=c/rep.r2.00000.parquet.tmp"),
            "{path}"
        );
        assert_eq!(
            store_paths(&store).await,
            vec!["_manifests/rep.json", "day=a/rep.r1.00000.parquet"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commit_works_on_any_store() {
        let (store, dest) = memory_dest();
        export(&dest, "rep", "r1", &["a", "b"]).await;
        let summary = export(&dest, "rep", "r2", &["a"]).await;
        assert_eq!(summary.retired, 2);
        assert_eq!(
            store_paths(&store).await,
            vec!["_manifests/rep.json", "day=a/rep.r2.00000.parquet"]
        );
    }
}
