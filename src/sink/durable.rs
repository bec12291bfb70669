//! Durable local commits: what must reach stable storage before a manifest may say that an
//! export exists, and how a small file (a manifest, a submission record) is replaced so that
//! after a power loss it is either the old file or the new one, never a torn or empty one.
//!
//! A killed process needs none of this (the kernel still writes back what it was given); a
//! power loss or a kernel crash does: without a sync, a manifest can name Parquet files whose
//! bytes, or whose directory entries, never reached the disk, and the next run would believe
//! the report exported. So before a manifest is written, every published file is synced
//! (`File::sync_all`), then every directory holding one (its new entries: the renamed file, a
//! partition folder made for it), each once, up to the destination's root (and the root's
//! parent when this process made the root); the manifest itself is written to a temporary
//! file beside it, synced, renamed over the manifest, and its directory synced. One sync per
//! file and per directory at commit (each kind on a few threads, so the disk gets them
//! queued), none per write: the cost is the time the disk takes to receive what the kernel has
//! not written back yet.
//!
//! Only local directories need this: an object store (S3) acknowledges a put once it is
//! durable. This module knows nothing of object stores or manifests: it takes file-system
//! paths, and reports what it did as [`Step`]s, in order (the debug log and the tests read
//! them).

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};

/// Files synced at once: the disk queues the writes of several files better than one by one.
const SYNC_THREADS: usize = 4;

/// One step of a durable write, in the order it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `File::sync_all` of a file: its bytes and metadata are on disk.
    SyncFile(PathBuf),
    /// fsync of a directory: its entries (files renamed into it, folders made in it) are on
    /// disk.
    SyncDir(PathBuf),
    /// A rename (atomic: readers see the old file or the new one).
    Rename { from: PathBuf, to: PathBuf },
}

/// A failed step: the path it was about and why.
pub type Failure = (PathBuf, io::Error);

/// The steps that make `files` (paths relative to `root`) durable: each file synced, then each
/// directory holding one, deepest first, up to `root`; then `root`'s parent when `root_is_new`
/// (its entry for `root`). Every directory once, whatever the number of files in it.
pub fn sync_plan(root: &Path, files: &[PathBuf], root_is_new: bool) -> Vec<Step> {
    let mut steps: Vec<Step> = files.iter().map(|f| Step::SyncFile(root.join(f))).collect();
    let mut dirs: BTreeSet<(std::cmp::Reverse<usize>, PathBuf)> = BTreeSet::new();
    for file in files {
        let mut dir = file.parent();
        while let Some(rel) = dir.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert((
                std::cmp::Reverse(rel.components().count()),
                rel.to_path_buf(),
            ));
            dir = rel.parent();
        }
    }
    steps.extend(
        dirs.into_iter()
            .map(|(_, rel)| Step::SyncDir(root.join(rel))),
    );
    steps.push(Step::SyncDir(root.to_path_buf()));
    if root_is_new && let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        steps.push(Step::SyncDir(parent.to_path_buf()));
    }
    steps
}

/// Makes `files` (relative to `root`) durable as [`sync_plan`] says: first the files, then
/// the directories, each phase on [`SYNC_THREADS`] threads. Returns the steps taken; on
/// failure, the first failed step.
pub fn sync_files(root: &Path, files: &[PathBuf], root_is_new: bool) -> Result<Vec<Step>, Failure> {
    let steps = sync_plan(root, files, root_is_new);
    let (file_steps, dir_steps) = steps.split_at(files.len());
    run_on_threads(file_steps)?;
    run_on_threads(dir_steps)?;
    Ok(steps)
}

/// Takes `steps` (syncs, in any order) on up to [`SYNC_THREADS`] threads; returns once all
/// are done, with the first failure if any.
fn run_on_threads(steps: &[Step]) -> Result<(), Failure> {
    if steps.len() <= 1 {
        return steps.iter().try_for_each(run);
    }
    let chunk = steps.len().div_ceil(SYNC_THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = steps
            .chunks(chunk)
            .map(|steps| scope.spawn(move || steps.iter().try_for_each(run)))
            .collect();
        let results: Vec<Result<(), Failure>> = workers
            .into_iter()
            .map(|worker| {
                worker.join().unwrap_or_else(|_| {
                    Err((PathBuf::new(), io::Error::other("a sync thread panicked")))
                })
            })
            .collect();
        results.into_iter().collect()
    })
}

/// Replaces `path` with `bytes` durably: writes a temporary file beside it, `<name>#<n>` (a
/// name object_store's listings skip, like its own uploads in progress), syncs it, renames it
/// over `path` and syncs the directory (and the directory's parent when the directory was made
/// here). Temporary files of earlier, killed writes of the same file are removed afterwards.
/// Returns the steps taken; on failure the temporary file is removed and `path` is as before.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<Vec<Step>, Failure> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |e: io::Error| (path, e)
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| (path.to_path_buf(), io::Error::other("no parent directory")))?;
    let name = path
        .file_name()
        .ok_or_else(|| (path.to_path_buf(), io::Error::other("no file name")))?;
    let made_dir = !dir.is_dir();
    if made_dir {
        std::fs::create_dir_all(dir).map_err(failed(dir))?;
    }
    let temp_name = |n: u32| {
        let mut temp = name.to_os_string();
        temp.push(format!("#{n}"));
        dir.join(temp)
    };
    let mut n = 1;
    let (mut file, temp) = loop {
        let temp = temp_name(n);
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(file) => break (file, temp),
            Err(e) if e.kind() == ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => return Err((temp, e)),
        }
    };
    let mut steps = Vec::new();
    let written = (|| {
        file.write_all(bytes).map_err(failed(&temp))?;
        file.sync_all().map_err(failed(&temp))?;
        drop(file);
        steps.push(Step::SyncFile(temp.clone()));
        std::fs::rename(&temp, path).map_err(failed(&temp))?;
        steps.push(Step::Rename {
            from: temp.clone(),
            to: path.to_path_buf(),
        });
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    let mut dirs = vec![dir.to_path_buf()];
    if made_dir && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        dirs.push(parent.to_path_buf());
    }
    for dir in dirs {
        let step = Step::SyncDir(dir);
        run(&step)?;
        steps.push(step);
    }
    // Leftovers of killed writes took the numbers below ours.
    for leftover in (1..n).map(temp_name) {
        if std::fs::remove_file(&leftover).is_ok() {
            tracing::debug!(file = %leftover.display(), "removed a temporary file of a killed write");
        }
    }
    Ok(steps)
}

/// Takes one sync step (renames are taken where they are planned).
fn run(step: &Step) -> Result<(), Failure> {
    let path = match step {
        Step::SyncFile(path) | Step::SyncDir(path) => path,
        Step::Rename { .. } => return Ok(()),
    };
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| (path.clone(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(paths: &[&str]) -> Vec<PathBuf> {
        paths.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn the_plan_syncs_every_file_then_every_directory_once_deepest_first() {
        let root = Path::new("/dest");
        let files = rel(&[
            "date=2025-03-01/country=DE/r.run.00000.parquet",
            "date=2025-03-01/country=FR/r.run.00000.parquet",
            "date=2025-03-02/country=DE/r.run.00000.parquet",
            "date=2025-03-01/country=DE/r.run.00001.parquet",
            "r.run.00000.parquet",
        ]);
        let file = |p: &str| Step::SyncFile(PathBuf::from(p));
        let dir = |p: &str| Step::SyncDir(PathBuf::from(p));
        assert_eq!(
            sync_plan(root, &files, false),
            [
                file("/dest/date=2025-03-01/country=DE/r.run.00000.parquet"),
                file("/dest/date=2025-03-01/country=FR/r.run.00000.parquet"),
                file("/dest/date=2025-03-02/country=DE/r.run.00000.parquet"),
                file("/dest/date=2025-03-01/country=DE/r.run.00001.parquet"),
                file("/dest/r.run.00000.parquet"),
                dir("/dest/date=2025-03-01/country=DE"),
                dir("/dest/date=2025-03-01/country=FR"),
                dir("/dest/date=2025-03-02/country=DE"),
                dir("/dest/date=2025-03-01"),
                dir("/dest/date=2025-03-02"),
                dir("/dest"),
            ]
        );
        // A destination this process made: its parent's entry for it too.
        assert_eq!(
            sync_plan(root, &[], true),
            [dir("/dest"), dir("/")],
            "an empty report still syncs the root, where the manifest folder lives"
        );
    }

    #[test]
    fn sync_files_syncs_what_the_plan_says_and_names_a_missing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("day=a")).unwrap();
        std::fs::write(root.join("day=a/f.parquet"), b"PAR1").unwrap();
        std::fs::write(root.join("g.parquet"), b"PAR1").unwrap();
        let files = rel(&["day=a/f.parquet", "g.parquet"]);
        assert_eq!(
            sync_files(root, &files, false).unwrap(),
            sync_plan(root, &files, false)
        );
        let (path, e) = sync_files(root, &rel(&["day=b/gone.parquet"]), false).unwrap_err();
        assert_eq!(path, root.join("day=b/gone.parquet"));
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn write_file_goes_through_a_synced_temporary_file_and_a_rename() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("_manifests");
        let path = dir.join("r.json");
        // The folder is made here, so its parent is synced too.
        let steps = write_file(&path, b"{\"rows\": 1}").unwrap();
        let temp = dir.join("r.json#1");
        assert_eq!(
            steps,
            [
                Step::SyncFile(temp.clone()),
                Step::Rename {
                    from: temp.clone(),
                    to: path.clone()
                },
                Step::SyncDir(dir.clone()),
                Step::SyncDir(tmp.path().to_path_buf()),
            ]
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"rows\": 1}");
        assert!(!temp.exists());

        // Replacing it; leftovers of killed writes (#1, #2) are taken around and removed.
        std::fs::write(dir.join("r.json#1"), "torn").unwrap();
        std::fs::write(dir.join("r.json#2"), "torn").unwrap();
        let steps = write_file(&path, b"{\"rows\": 2}").unwrap();
        let temp = dir.join("r.json#3");
        assert_eq!(
            steps,
            [
                Step::SyncFile(temp.clone()),
                Step::Rename {
                    from: temp,
                    to: path.clone()
                },
                Step::SyncDir(dir.clone()),
            ]
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"rows\": 2}");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["r.json"]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.json");
        std::fs::write(&path, "old").unwrap();
        // A directory where the file should be: the rename fails.
        let blocked = tmp.path().join("d.json");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("inside"), "x").unwrap();
        let (at, _) = write_file(&blocked, b"new").unwrap_err();
        assert_eq!(at, tmp.path().join("d.json#1"));
        assert!(!tmp.path().join("d.json#1").exists());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }
}
