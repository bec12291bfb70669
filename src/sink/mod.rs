//! The storage side of an export: where files go, how they are named, written and committed.
//!
//! A [`Destination`] is an `Arc<dyn ObjectStore>` plus a root prefix; every read, write, rename
//! and delete of data goes through it, so a local directory and an S3 bucket behave the same.
//! A [`ReportWriter`] splits one report's batches by partition ([`partition`]) and streams
//! Parquet files under a hidden staging prefix (`writer.rs`); [`StagedReport::commit`]
//! publishes them, writes the report's manifest and retires the report's older files
//! (`commit.rs`); [`StagedReport::commit_delta`] publishes them and commits them to a Delta
//! table instead ([`delta`]: the table, through the Delta kernel; [`marker`]: which runs of a
//! report are at work, so a commit deletes only what killed runs left). Object names live in one place (`layout.rs`); what is specific to S3 (building
//! the store from the environment, the bucket check, safe error text) in `s3.rs`; a local
//! directory, which opening does not create (the first write does, and a failed export that
//! created it removes it again), in `local.rs`; what makes a local commit survive a power loss
//! (fsync of files, folders and the manifest) in `durable.rs`; proving a destination usable
//! without leaving anything in it (`check`) in `probe.rs`. On S3 the same protocol runs:
//! files stream as multipart uploads (invisible until completed, aborted on failure) to staged
//! names and are published by server-side copy, so the commit semantics do not depend on the
//! store. This module does not fetch, decode or infer anything, and it does
//! not decide the schema: it writes the schema it is given.

mod codec;
mod commit;
pub mod delta;
mod durable;
mod layout;
mod local;
pub mod manifest;
pub mod marker;
pub mod partition;
mod probe;
mod rewrite;
mod s3;
mod stats;
mod writer;

#[cfg(test)]
mod test_util;

use std::io::ErrorKind;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Error, Result};
use local::LocalDir;

pub use codec::Codec;

/// How a destination's files are organised for readers (`--table-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TableFormat {
    /// Parquet files in Hive partition folders, with a manifest per report.
    #[default]
    Hive,
    /// The same files as a Delta Lake table: each report's export is one commit.
    Delta,
}

/// The table formats by name.
pub const TABLE_FORMATS: &[(&str, TableFormat)] =
    &[("hive", TableFormat::Hive), ("delta", TableFormat::Delta)];
pub use commit::{CommitSummary, ManifestInfo, StagedFile, StagedReport, mark_run};
pub use layout::MANIFEST_DIR;
pub use probe::Probed;
pub(crate) use rewrite::{Rewrite, rewrite_report};
pub use writer::{FileNumbers, ReportWriter, WriteOptions};

/// Multipart part size for remote stores: S3 refuses smaller parts (except the last).
const REMOTE_PART_BYTES: usize = 5 * 1024 * 1024;
/// Multipart part size for a local directory, where parts are plain writes.
const LOCAL_PART_BYTES: usize = 1024 * 1024;

/// Where an export writes: a store, a root prefix inside it, and how to show it in errors.
#[derive(Clone)]
pub struct Destination {
    storage: Storage,
    root: Path,
    display: String,
    /// Set for `s3://` destinations.
    s3: Option<s3::S3Target>,
    /// Set once [`Destination::check`] succeeded (shared by clones): a run of many reports
    /// checks its bucket once.
    checked: Arc<tokio::sync::OnceCell<()>>,
    part_bytes: usize,
}

/// Shows the destination as given, never the store's configuration (which may hold
/// credentials once remote stores arrive).
impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("display", &self.display)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// Cleans up what a failed export left of its destination when dropped (see
/// [`Destination::cleanup_guard`]), so every way out of an export is covered by one value.
#[must_use = "dropping the guard at once cleans the destination up"]
pub struct CleanupGuard<'a> {
    dest: &'a Destination,
    keep: bool,
}

impl CleanupGuard<'_> {
    /// The export committed: leave the destination as it is.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for CleanupGuard<'_> {
    fn drop(&mut self) {
        if !self.keep {
            self.dest.cleanup_after_failure();
        }
    }
}

/// What a destination's objects live in.
#[derive(Clone)]
enum Storage {
    /// A store given whole: S3, or InMemory in unit tests.
    Store(Arc<dyn ObjectStore>),
    /// A local directory, created at the first write; its store is made once it exists.
    Local(LocalDir),
}

impl Destination {
    /// Opens `out`: an `s3://bucket/prefix` (or `s3a://`) URL, configured from the `AWS_*`
    /// environment (nothing is sent before [`Destination::check`]), or a directory path
    /// (relative or absolute) or `file://` URL; other schemes, and a path that exists but is
    /// not a directory, are a usage error. Nothing is created or sent: a missing directory is
    /// created by the export's first write (see [`Destination::cleanup_after_failure`]).
    pub fn open(out: &str) -> Result<Self> {
        if is_s3_url(out) {
            let (store, root, target) = s3::S3Target::open(out)?;
            return Ok(Self {
                storage: Storage::Store(store),
                root,
                display: out.trim_end_matches('/').to_owned(),
                s3: Some(target),
                checked: Arc::default(),
                part_bytes: REMOTE_PART_BYTES,
            });
        }
        Ok(Self {
            storage: Storage::Local(LocalDir::open(local_path(out)?)?),
            root: Path::ROOT,
            display: out.to_owned(),
            s3: None,
            checked: Arc::default(),
            part_bytes: LOCAL_PART_BYTES,
        })
    }

    /// A destination over any store, rooted at the store's root (InMemory in unit tests).
    pub fn from_store(store: Arc<dyn ObjectStore>, display: String) -> Self {
        Self {
            storage: Storage::Store(store),
            root: Path::ROOT,
            display,
            s3: None,
            checked: Arc::default(),
            part_bytes: REMOTE_PART_BYTES,
        }
    }

    /// Where a Delta table at this destination lives, for the Delta kernel: its URL (ending in
    /// `/`) and a store that resolves that URL's path (local: the file system's root; S3: the
    /// bucket). Only local and `s3://` destinations can hold one.
    pub(crate) fn table_location(&self) -> Result<(url::Url, Arc<dyn ObjectStore>)> {
        let unusable = || {
            Error::Usage(format!(
                "output {}: a Delta table needs a local directory or an s3:// location",
                self.display
            ))
        };
        match (&self.storage, &self.s3) {
            (Storage::Store(store), Some(target)) => {
                let mut text = format!("s3://{}/", target.bucket());
                if !self.root.is_root() {
                    text.push_str(self.root.as_ref());
                    text.push('/');
                }
                let url = url::Url::parse(&text).map_err(|_| unusable())?;
                Ok((url, Arc::clone(store)))
            }
            (Storage::Local(local), _) => {
                let dir = match local.find()? {
                    Some(dir) => dir.path.clone(),
                    None => local.absolute().to_path_buf(),
                };
                let url = url::Url::from_directory_path(&dir).map_err(|()| unusable())?;
                let store: Arc<dyn ObjectStore> =
                    Arc::new(object_store::local::LocalFileSystem::new());
                Ok((url, store))
            }
            (Storage::Store(_), None) => Err(unusable()),
        }
    }

    /// Refuses a destination that holds the other table format: a Hive export into a Delta
    /// table would delete files the table's versions name, and a Delta table over a Hive
    /// dataset would leave that dataset's files outside the table.
    pub async fn check_format(&self, format: TableFormat) -> Result<()> {
        let (other, folder, hint) = match format {
            TableFormat::Hive => (
                "a Delta table",
                delta::LOG_DIR,
                "pass --table-format delta (jobs file: table_format = \"delta\")",
            ),
            TableFormat::Delta => (
                "a Hive dataset",
                MANIFEST_DIR,
                "a Delta table needs a destination of its own",
            ),
        };
        if self.list_folder(folder).await?.is_empty() {
            return Ok(());
        }
        Err(Error::Usage(format!(
            "output {} is {other} ({folder}/ exists): {hint}",
            self.display
        )))
    }

    /// How the destination was given, for messages.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The store, for a write: a missing local directory is created first (and this run then
    /// removes it again after a failure).
    fn store_for_write(&self) -> Result<Arc<dyn ObjectStore>> {
        match &self.storage {
            Storage::Store(store) => Ok(Arc::clone(store)),
            Storage::Local(local) => Ok(Arc::clone(&local.create()?.store)),
        }
    }

    /// The store, for a read or a delete; `None` while the local directory does not exist (it
    /// holds nothing).
    fn store_for_read(&self) -> Result<Option<Arc<dyn ObjectStore>>> {
        match &self.storage {
            Storage::Store(store) => Ok(Some(Arc::clone(store))),
            Storage::Local(local) => Ok(local.find()?.map(|dir| Arc::clone(&dir.store))),
        }
    }

    /// A local directory this run opened (found or created), for its cleanups; `None` for
    /// other stores and for a directory this run never touched.
    fn opened_dir(&self) -> Option<Arc<local::ExistingDir>> {
        match &self.storage {
            Storage::Local(local) => local.opened_dir(),
            Storage::Store(_) => None,
        }
    }

    /// Fails early when the destination cannot be used: for S3, one listing request under the
    /// prefix (wrong endpoint, credentials or bucket fail here, before any page is fetched).
    /// A local directory is created by the first write; here it (or the folder it will be
    /// made in) must be writable.
    pub async fn check(&self) -> Result<()> {
        if let Storage::Local(local) = &self.storage {
            local.check_writable()?;
        }
        let Some(target) = &self.s3 else {
            return Ok(());
        };
        self.checked
            .get_or_try_init(|| target.check(&self.root, &self.display))
            .await
            .map(drop)
    }

    /// Fails when the destination cannot be read: for S3, the check of
    /// [`Destination::check`]; a local directory must exist (a typo is an error, not an empty
    /// dataset) but need not be writable.
    pub async fn check_readable(&self) -> Result<()> {
        match &self.storage {
            Storage::Local(local) => match local.find()? {
                Some(_) => Ok(()),
                None => Err(Error::Destination {
                    dest: self.display.clone(),
                    reason: "no such directory".into(),
                }),
            },
            Storage::Store(_) => self.check().await,
        }
    }

    /// A guard that runs [`Destination::cleanup_after_failure`] when dropped, unless
    /// [`CleanupGuard::keep`] says the export committed.
    pub fn cleanup_guard(&self) -> CleanupGuard<'_> {
        CleanupGuard {
            dest: self,
            keep: false,
        }
    }

    /// After a failed export: removes empty staging folders, then the directory itself if
    /// this run created it (at its first write) and it is empty now. Never removes a file.
    /// Opening a destination creates nothing, so one that was only opened needs no cleanup.
    pub fn cleanup_after_failure(&self) {
        let Some(dir) = self.opened_dir() else {
            return;
        };
        remove_empty_dirs(&dir.path.join(layout::STAGING_DIR), &|_| false);
        if dir.created && std::fs::remove_dir(&dir.path).is_ok() {
            tracing::debug!(dir = %dir.path.display(), "removed the destination directory created by this run");
        }
    }

    /// After a stopped or failed run: deletes everything run `run_id` staged under
    /// `_staging/<run>/` (of every report, including files of writers that finished but were
    /// never committed) and, for a local directory, the run's folder with any partial uploads
    /// the listing hides. Call only once no writer of the run is left. Best effort: failures are
    /// logged.
    pub async fn remove_run_staging(&self, run_id: &str) {
        // Any report key gives the same run folder.
        let Ok(folder) = layout::ReportNames::new("run", run_id).and_then(|n| n.run_staging())
        else {
            return;
        };
        let prefix = self.full(&folder);
        let store = match self.store_for_read() {
            Ok(Some(store)) => store,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(folder = %self.show(&folder), error = %e, "listing the staging failed");
                return;
            }
        };
        let listed: Vec<Path> = match store.list(Some(&prefix)).try_collect::<Vec<_>>().await {
            Ok(objects) => objects
                .into_iter()
                .filter_map(|o| self.relative(&o.location))
                .collect(),
            Err(e) => {
                tracing::warn!(folder = %self.show(&folder), error = %self.error_text(&e), "listing the staging failed");
                Vec::new()
            }
        };
        self.delete_quietly(&listed).await;
        let Some(local) = self.opened_dir() else {
            return;
        };
        let dir = local.path.join(layout::STAGING_DIR).join(run_id);
        let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = removed {
            tracing::warn!(run = run_id, error = %e, "removing the staging folder failed");
        }
    }

    /// Names of the objects directly inside folder `dir` (relative to the root); none when the
    /// folder (or the local directory) does not exist.
    pub async fn list_folder(&self, dir: &str) -> Result<Vec<String>> {
        let rel = layout::parse_path(dir)?;
        let Some(store) = self.store_for_read()? else {
            return Ok(Vec::new());
        };
        let listed = store
            .list_with_delimiter(Some(&self.full(&rel)))
            .await
            .map_err(|e| self.storage_error(&rel, e))?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|o| o.location.filename().map(str::to_owned))
            .collect())
    }

    /// The bytes of object `rel` (relative to the root), or `None` when it does not exist.
    pub async fn read_object(&self, rel: &str) -> Result<Option<bytes::Bytes>> {
        let rel = layout::parse_path(rel)?;
        let Some(store) = self.store_for_read()? else {
            return Ok(None);
        };
        let read = match store.get(&self.full(&rel)).await {
            Ok(got) => got.bytes().await,
            Err(e) => Err(e),
        };
        match read {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.storage_error(&rel, e)),
        }
    }

    /// Writes object `rel` (relative to the root) in one atomic put, durably (see
    /// [`Destination::put_durably`]).
    pub async fn write_object(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        let rel = layout::parse_path(rel)?;
        self.put_durably(&rel, bytes).await
    }

    /// Writes object `rel` (relative to the root) in one atomic put. In a local directory, the
    /// file is also durable when this returns: a synced temporary file renamed over it, then
    /// its folder synced ([`durable::write_file`]); other stores acknowledge a put once durable.
    async fn put_durably(&self, rel: &Path, bytes: Vec<u8>) -> Result<()> {
        let Storage::Local(local) = &self.storage else {
            return self
                .store_for_write()?
                .put(&self.full(rel), object_store::PutPayload::from(bytes))
                .await
                .map(drop)
                .map_err(|e| self.storage_error(rel, e));
        };
        let path = local.create()?.path.join(rel.as_ref());
        let steps = tokio::task::spawn_blocking(move || durable::write_file(&path, &bytes))
            .await
            .map_err(|e| Error::Internal(format!("durable write: {e}")))?
            .map_err(|(path, e)| Error::io(path.display(), e))?;
        tracing::trace!(file = %self.show(rel), ?steps, "written durably");
        Ok(())
    }

    /// Local directories: flushes the files `rels` (relative to the root) and every folder
    /// holding them, up to the root, to stable storage ([`durable::sync_files`]): what a
    /// manifest names must survive a power loss. The directory is created first when missing
    /// (a commit of no files still writes its manifest there). Other stores: nothing to do.
    async fn sync_files(&self, rels: &[Path]) -> Result<()> {
        let Storage::Local(local) = &self.storage else {
            return Ok(());
        };
        let dir = local.create()?;
        let root = dir.path.clone();
        let created = dir.created;
        let files: Vec<PathBuf> = rels.iter().map(|rel| PathBuf::from(rel.as_ref())).collect();
        let started = std::time::Instant::now();
        let steps =
            tokio::task::spawn_blocking(move || durable::sync_files(&root, &files, created))
                .await
                .map_err(|e| Error::Internal(format!("sync: {e}")))?
                .map_err(|(path, e)| Error::io(path.display(), e))?;
        tracing::debug!(
            syncs = steps.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "published files and their folders synced"
        );
        Ok(())
    }

    /// The full store path of `rel`, a path relative to the root.
    fn full(&self, rel: &Path) -> Path {
        Path::from_iter(self.root.parts().chain(rel.parts()))
    }

    /// `full` relative to the root, or `None` when it is outside.
    fn relative(&self, full: &Path) -> Option<Path> {
        full.prefix_match(&self.root).map(Path::from_iter)
    }

    /// A storage error about `rel`, shown as the destination followed by the path (S3 error
    /// bodies cut to their code and message, see [`Destination::error_text`]).
    fn storage_error(&self, rel: &Path, source: object_store::Error) -> Error {
        let source = match self.s3 {
            Some(_) => s3::sanitize(source),
            None => source,
        };
        Error::Storage {
            path: self.show(rel),
            source,
        }
    }

    /// `e` as text for logs: for S3 without the error body, which may echo the signed request.
    fn error_text(&self, e: &object_store::Error) -> String {
        match self.s3 {
            Some(_) => s3::clean_message(e),
            None => e.to_string(),
        }
    }

    /// `rel` as shown in messages.
    fn show(&self, rel: &Path) -> String {
        format!("{}/{rel}", self.display.trim_end_matches('/'))
    }

    /// S3 only: aborts the unfinished multipart uploads of this report's earlier runs under
    /// `_staging/` (a killed run leaves its uploads in flight behind; no listing shows them).
    async fn abort_older_uploads(&self, names: &layout::ReportNames) {
        let ours = names.run_id().to_owned();
        self.abort_uploads_where(names, move |run| run != ours)
            .await;
    }

    /// S3 only: aborts the unfinished multipart uploads of this report under `_staging/` by
    /// the runs `gone` picks.
    async fn abort_uploads_where(&self, names: &layout::ReportNames, gone: impl Fn(&str) -> bool) {
        let Some(target) = &self.s3 else {
            return;
        };
        let Ok(staging) = layout::parse_path(layout::STAGING_DIR) else {
            return;
        };
        let theirs = |key: &Path| {
            self.relative(key)
                .and_then(|rel| names.staged_run(&rel))
                .is_some_and(|run| gone(&run))
        };
        target.abort_uploads(&self.full(&staging), theirs).await;
    }

    /// Creates the empty object `rel` (relative to the root), whole the moment it exists: a
    /// local file is created in place, not through a temporary file a kill could leave.
    async fn create_empty(&self, rel: &Path) -> Result<()> {
        let Storage::Local(local) = &self.storage else {
            return self
                .store_for_write()?
                .put(&self.full(rel), object_store::PutPayload::default())
                .await
                .map(drop)
                .map_err(|e| self.storage_error(rel, e));
        };
        let path = local.create()?.path.join(rel.as_ref());
        let made = path.parent().map_or(Ok(()), std::fs::create_dir_all);
        made.and_then(|()| std::fs::File::create(&path).map(drop))
            .map_err(|e| Error::io(path.display(), e))
    }

    /// Local directories only: removes empty folders left under `_staging/` (renames and
    /// aborted uploads leave them, as only deletes clean up folders), and partial uploads of
    /// this report's earlier runs, which listings hide. Other stores have no folders.
    async fn tidy_staging(&self, names: &layout::ReportNames) {
        let ours = names.run_id().to_owned();
        self.tidy_staging_where(names, move |run| run != ours).await;
    }

    /// [`Destination::tidy_staging`] that removes the partial uploads of the runs `gone` picks
    /// only (other runs of the report may be at work).
    async fn tidy_staging_where(
        &self,
        names: &layout::ReportNames,
        gone: impl Fn(&str) -> bool + Send + 'static,
    ) {
        let Some(local) = self.opened_dir() else {
            return;
        };
        let staging = local.path.join(layout::STAGING_DIR);
        let names = names.clone();
        let theirs = move |file: &str| names.partial_upload_run(file).is_some_and(|run| gone(&run));
        let task = tokio::task::spawn_blocking(move || remove_empty_dirs(&staging, &theirs));
        if let Err(e) = task.await {
            tracing::warn!(error = %e, "tidying the staging folder failed");
        }
    }
}

/// The local directory named by `out`: a plain path or a `file://` URL.
fn local_path(out: &str) -> Result<PathBuf> {
    if out.trim().is_empty() {
        return Err(Error::Usage("the output destination is empty".into()));
    }
    let Some((scheme, _)) = out.split_once("://").filter(|_| is_url(out)) else {
        return Ok(PathBuf::from(out));
    };
    if !scheme.eq_ignore_ascii_case("file") {
        return Err(Error::Usage(format!(
            "output {out:?}: {scheme}:// destinations are not supported; use s3://bucket/prefix, a local directory or a file:// URL"
        )));
    }
    reqwest::Url::parse(out)
        .ok()
        .and_then(|url| url.to_file_path().ok())
        .ok_or_else(|| Error::Usage(format!("output {out:?} is not a valid file:// URL")))
}

/// Whether `out` is an `s3://` or `s3a://` URL.
fn is_s3_url(out: &str) -> bool {
    out.split_once("://").is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("s3") || scheme.eq_ignore_ascii_case("s3a")
    })
}

/// Whether destination `out` is a `scheme://...` URL rather than a path.
pub fn is_url(out: &str) -> bool {
    out.split_once("://").is_some_and(|(scheme, _)| {
        let mut chars = scheme.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

/// Removes empty folders under `dir` (and `dir` itself) bottom-up, without following symlinks.
/// With `names`, also removes that report's partial uploads of earlier runs (`<staged>#<n>`).
/// Best effort: a folder that is not empty, or any error, leaves things as they are.
fn remove_empty_dirs(dir: &FsPath, remove_file: &dyn Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            remove_empty_dirs(&path, remove_file);
        } else if kind.is_file()
            && remove_file(&entry.file_name().to_string_lossy())
            && std::fs::remove_file(&path).is_ok()
        {
            tracing::debug!(file = %path.display(), "removed a partial upload of an earlier run");
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opening_a_missing_directory_and_reading_it_create_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("new/out");
        let dest = Destination::open(out.to_str().unwrap()).unwrap();
        // What planning and a dry run do: check, list the manifests, read a submission record.
        dest.check().await.unwrap();
        assert_eq!(
            dest.list_folder(MANIFEST_DIR).await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(dest.read_object("_submissions/a.json").await.unwrap(), None);
        dest.remove_run_staging("r1").await;
        assert!(!tmp.path().join("new").exists(), "nothing was created");
        // Nothing to clean up either: cleanup_after_failure is not needed after a mere open.
        dest.cleanup_after_failure();
        assert!(!tmp.path().join("new").exists());
    }

    #[test]
    fn the_first_write_creates_the_directory_and_cleanup_removes_it_when_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("new/out");
        let dest = Destination::open(out.to_str().unwrap()).unwrap();
        assert!(!out.exists());
        dest.store_for_write().unwrap();
        assert!(out.is_dir());
        assert_eq!(dest.display(), out.to_str().unwrap());
        std::fs::create_dir_all(out.join("_staging/run/day=1")).unwrap();
        dest.cleanup_after_failure();
        assert!(!out.exists());
    }

    #[test]
    fn the_guard_cleans_up_when_dropped_and_not_when_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("failed");
        let dest = Destination::open(out.to_str().unwrap()).unwrap();
        dest.store_for_write().unwrap();
        drop(dest.cleanup_guard());
        assert!(!out.exists(), "a failed export's new directory goes");
        let out = tmp.path().join("committed");
        let dest = Destination::open(out.to_str().unwrap()).unwrap();
        dest.store_for_write().unwrap();
        dest.cleanup_guard().keep();
        assert!(
            out.is_dir(),
            "a committed export's directory stays, even empty"
        );
    }

    #[test]
    fn cleanup_keeps_a_directory_that_existed_or_holds_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = Destination::open(tmp.path().to_str().unwrap()).unwrap();
        dest.cleanup_after_failure();
        assert!(tmp.path().is_dir());

        let out = tmp.path().join("made");
        let dest = Destination::open(out.to_str().unwrap()).unwrap();
        dest.store_for_write().unwrap();
        std::fs::write(out.join("keep.txt"), "x").unwrap();
        dest.cleanup_after_failure();
        assert!(out.join("keep.txt").is_file());
    }

    /// Stages report `rep` of run `run` (two partitions) in `dest`, as an export does before
    /// it fails.
    async fn stage_two_days(dest: &Destination, run: &str) {
        let batch = test_util::sample_batch(&["a", "b"], 0);
        let options = WriteOptions::default();
        // The export fails before its commit: the staged report is dropped.
        let _never_committed = test_util::stage(dest, "rep", run, vec![batch], &["day"], options)
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_export_removes_only_what_it_created() {
        let tmp = tempfile::tempdir().unwrap();
        // A new directory: the first staged file creates it, the failure removes it again.
        let out = tmp.path().join("new");
        let dest = Destination::open(out.to_str().unwrap()).unwrap();
        let guard = dest.cleanup_guard();
        stage_two_days(&dest, "r1").await;
        assert_eq!(test_util::list_files(&out).len(), 2);
        dest.remove_run_staging("r1").await;
        drop(guard);
        assert!(!out.exists());
        // A directory that existed: the staging goes, the directory and its files stay.
        std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
        let dest = Destination::open(tmp.path().to_str().unwrap()).unwrap();
        let guard = dest.cleanup_guard();
        stage_two_days(&dest, "r2").await;
        dest.remove_run_staging("r2").await;
        drop(guard);
        assert_eq!(test_util::list_files(tmp.path()), ["notes.txt"]);
        assert_eq!(test_util::list_dirs(tmp.path()), Vec::<String>::new());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_of_no_files_creates_the_directory_for_its_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("empty");
        let dest = Destination::open(out.to_str().unwrap()).unwrap();
        let staged = test_util::stage(
            &dest,
            "rep",
            "r1",
            Vec::new(),
            &["day"],
            WriteOptions::default(),
        )
        .await
        .unwrap();
        assert!(!out.exists(), "no rows, no file yet");
        let info = ManifestInfo {
            report_id: "rep".into(),
            source_url: "http://127.0.0.1:1/reports/rep".into(),
            schema: test_util::sample_schema(),
            partition_by: vec!["day".into()],
            compression: "zstd(3)".into(),
            schema_drift: Default::default(),
        };
        let summary = staged.commit(&dest, info).await.unwrap();
        assert_eq!((summary.rows, summary.files), (0, 0));
        assert_eq!(test_util::list_files(&out), ["_manifests/rep.json"]);
        assert!(dest.opened_dir().unwrap().created);
    }

    #[tokio::test]
    async fn a_submission_record_creates_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("records");
        let dest = Destination::open(out.to_str().unwrap()).unwrap();
        dest.write_object("_submissions/a.json", b"{}".to_vec())
            .await
            .unwrap();
        assert_eq!(test_util::list_files(&out), ["_submissions/a.json"]);
        assert_eq!(dest.list_folder("_submissions").await.unwrap(), ["a.json"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn remove_run_staging_removes_that_run_only_with_its_partial_uploads() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = Destination::open(tmp.path().to_str().unwrap()).unwrap();
        let run = tmp.path().join("_staging/r1/day=a");
        let other = tmp.path().join("_staging/r0/day=a");
        for dir in [&run, &other] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("k.r.00000.parquet.tmp"), "x").unwrap();
            std::fs::write(dir.join("k.r.00001.parquet.tmp#1"), "x").unwrap();
        }
        dest.remove_run_staging("r1").await;
        assert!(!tmp.path().join("_staging/r1").exists());
        assert!(other.join("k.r.00000.parquet.tmp").is_file());
        assert!(other.join("k.r.00001.parquet.tmp#1").is_file());
        dest.remove_run_staging("never-ran").await;
    }

    #[test]
    fn file_urls_are_directories_and_other_schemes_are_usage_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let url = reqwest::Url::from_directory_path(tmp.path().join("via url")).unwrap();
        let dest = Destination::open(url.as_str()).unwrap();
        assert!(!tmp.path().join("via url").exists());
        dest.store_for_write().unwrap();
        assert!(tmp.path().join("via url").is_dir());

        for out in ["gs://b/p", "", "s3:///no-bucket"] {
            let err = Destination::open(out).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{out}: {err}");
        }
        let err = Destination::open("gs://bucket/prefix")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not supported"), "{err}");

        let file = tmp.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let err = Destination::open(file.to_str().unwrap()).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
    }
}
