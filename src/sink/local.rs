//! A local directory as a destination. Opening one has no side effects: the path is checked
//! (a directory, or nothing yet; anything else is a usage error) and a missing directory is
//! created only when the export first writes, remembering that this run created it so that a
//! failed export removes it again. Its store, a `LocalFileSystem` rooted at the directory with
//! symlinks resolved (so object_store's cleanup of empty folders stops there), is made once the
//! directory exists; until then the directory holds nothing to read or list.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

use crate::error::{Error, Result};

/// A local directory destination, shared by the clones of its `Destination`.
#[derive(Clone)]
pub(super) struct LocalDir {
    /// The directory as given, for messages.
    given: PathBuf,
    /// The directory made absolute when opened, so it does not depend on a later working
    /// directory.
    absolute: PathBuf,
    /// The directory once it exists: opened at most once, by whichever clone gets there first.
    existing: Arc<Mutex<Option<Arc<ExistingDir>>>>,
}

/// A local directory that exists, and the store over it.
pub(super) struct ExistingDir {
    /// The directory with symlinks resolved: the store's root, and what syncs and cleanups use.
    pub(super) path: PathBuf,
    /// Whether this run created it.
    pub(super) created: bool,
    pub(super) store: Arc<dyn ObjectStore>,
}

impl LocalDir {
    /// Checks `path` without creating anything: an existing directory is opened now, a missing
    /// one is left for the first write; anything else there is a usage error.
    pub(super) fn open(path: PathBuf) -> Result<Self> {
        let absolute = std::path::absolute(&path).map_err(|e| Error::io(path.display(), e))?;
        let local = LocalDir {
            given: path,
            absolute,
            existing: Arc::default(),
        };
        local.find()?;
        Ok(local)
    }

    /// The directory made absolute (symlinks not resolved).
    pub(super) fn absolute(&self) -> &std::path::Path {
        &self.absolute
    }

    /// The directory, created first when missing: for a write.
    pub(super) fn create(&self) -> Result<Arc<ExistingDir>> {
        let mut existing = self.existing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(dir) = existing.as_ref() {
            return Ok(Arc::clone(dir));
        }
        let created = !self.is_dir()? && self.create_dir()?;
        let dir = Arc::new(self.opened(created)?);
        *existing = Some(Arc::clone(&dir));
        Ok(dir)
    }

    /// Fails when the first write could not create or write the directory: the directory, or
    /// the nearest folder above it that exists, must be writable by this process (a file in
    /// the way already failed [`LocalDir::open`]). Creates nothing, so an export fails before
    /// it fetches a page.
    pub(super) fn check_writable(&self) -> Result<()> {
        let Some(existing) = self.absolute.ancestors().find(|dir| dir.exists()) else {
            return Ok(());
        };
        if !writable(existing) {
            return Err(Error::Usage(format!(
                "output {}: cannot write to {}",
                self.given.display(),
                existing.display()
            )));
        }
        Ok(())
    }

    /// The topmost folder of the directory's path that does not exist (the directory itself
    /// when only it is missing); `None` when the directory exists.
    pub(super) fn first_missing(&self) -> Option<PathBuf> {
        self.absolute
            .ancestors()
            .take_while(|dir| !dir.exists())
            .last()
            .map(PathBuf::from)
    }

    /// Removes the directory and the empty folders above it up to `top` (see
    /// [`LocalDir::first_missing`]) after a probe made them, and forgets the directory, so the
    /// next write creates it again. Stops at the first folder that is not empty.
    pub(super) fn remove_created(&self, top: &std::path::Path) {
        let mut existing = self.existing.lock().unwrap_or_else(PoisonError::into_inner);
        for dir in self.absolute.ancestors() {
            if std::fs::remove_dir(dir).is_err() || dir == top {
                break;
            }
        }
        if !self.absolute.exists() {
            *existing = None;
        }
    }

    /// The directory if it exists, without creating it: for a read (a missing directory holds
    /// nothing).
    pub(super) fn find(&self) -> Result<Option<Arc<ExistingDir>>> {
        let mut existing = self.existing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(dir) = existing.as_ref() {
            return Ok(Some(Arc::clone(dir)));
        }
        if !self.is_dir()? {
            return Ok(None);
        }
        let dir = Arc::new(self.opened(false)?);
        *existing = Some(Arc::clone(&dir));
        Ok(Some(dir))
    }

    /// The directory if this run has opened it (for cleanups: nothing else of this run's can
    /// be there).
    pub(super) fn opened_dir(&self) -> Option<Arc<ExistingDir>> {
        let existing = self.existing.lock().unwrap_or_else(PoisonError::into_inner);
        existing.clone()
    }

    /// Whether the directory exists (`false` when missing); a file there is a usage error.
    fn is_dir(&self) -> Result<bool> {
        match std::fs::metadata(&self.absolute) {
            Ok(meta) if meta.is_dir() => Ok(true),
            Ok(_) => Err(Error::Usage(format!(
                "output {} exists and is not a directory",
                self.given.display()
            ))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(self.given.display(), e)),
        }
    }

    /// Creates the missing directory (and its missing parents); returns whether this call
    /// made it, rather than another writer just before.
    fn create_dir(&self) -> Result<bool> {
        let failed = |e| Error::io(self.given.display(), e);
        if let Some(parent) = self.absolute.parent() {
            std::fs::create_dir_all(parent).map_err(failed)?;
        }
        match std::fs::create_dir(&self.absolute) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists && self.absolute.is_dir() => Ok(false),
            Err(e) => Err(failed(e)),
        }
    }

    /// The existing directory with its store.
    fn opened(&self, created: bool) -> Result<ExistingDir> {
        let path = std::fs::canonicalize(&self.absolute)
            .map_err(|e| Error::io(self.given.display(), e))?;
        let store = LocalFileSystem::new_with_prefix(&path)
            .map_err(|source| Error::Storage {
                path: self.given.display().to_string(),
                source,
            })?
            .with_automatic_cleanup(true);
        Ok(ExistingDir {
            path,
            created,
            store: Arc::new(store),
        })
    }
}

/// Whether this process may create entries in directory `dir` (write and search permission).
fn writable(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call; access(2) only
    // reads it.
    unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writable_check_creates_nothing_and_a_file_in_the_way_fails_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(LocalDir::open(file.join("a/b")).is_err());
        let fine = LocalDir::open(tmp.path().join("new/deeper")).unwrap();
        fine.check_writable().unwrap();
        assert!(!tmp.path().join("new").exists());
        assert!(writable(tmp.path()));
    }

    #[test]
    fn opening_a_missing_directory_creates_nothing_and_finds_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("new/out");
        let local = LocalDir::open(out.clone()).unwrap();
        assert!(local.find().unwrap().is_none());
        assert!(local.opened_dir().is_none());
        assert!(!tmp.path().join("new").exists());
        let dir = local.create().unwrap();
        assert!(out.is_dir());
        assert!(dir.created);
        assert_eq!(dir.path, out.canonicalize().unwrap());
        let again = local.clone().create().unwrap();
        assert!(Arc::ptr_eq(&dir, &again), "clones share the directory");
    }

    #[test]
    fn an_existing_directory_is_opened_at_once_and_not_created() {
        let tmp = tempfile::tempdir().unwrap();
        let local = LocalDir::open(tmp.path().to_path_buf()).unwrap();
        let dir = local.opened_dir().expect("opened at open");
        assert!(!dir.created);
        assert!(!local.create().unwrap().created);
    }

    #[test]
    fn a_directory_made_by_someone_else_is_found_but_not_created_by_this_run() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("later");
        let local = LocalDir::open(out.clone()).unwrap();
        std::fs::create_dir(&out).unwrap();
        assert!(!local.find().unwrap().expect("exists now").created);
        assert!(!local.create().unwrap().created);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_to_a_directory_is_resolved() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let dir = LocalDir::open(link).unwrap().find().unwrap().unwrap();
        assert_eq!(dir.path, target.canonicalize().unwrap());
        assert!(!dir.created);
    }
}
