//! The export's spool folder in TMPDIR, named after the process that owns it
//! (`kargo-export-spool-<pid>-<random>`). An export removes its own at the end; a process that
//! was killed (SIGKILL, OOM) cannot, so each new export first removes the spool folders whose
//! owner is no longer running.

use std::io;
use std::path::Path;

use tempfile::TempDir;

const PREFIX: &str = "kargo-export-spool-";

/// A new spool folder in TMPDIR, after removing the folders killed exports left there.
pub fn create() -> io::Result<TempDir> {
    let tmp = std::env::temp_dir();
    remove_orphans(&tmp);
    tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{}-", std::process::id()))
        .tempdir_in(tmp)
}

/// Removes the spool folders in `dir` whose owning process has ended. Best effort: a folder
/// that cannot be removed is logged and left.
fn remove_orphans(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner) else {
            continue;
        };
        if process_is_running(pid) {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => {
                tracing::info!(folder = %entry.path().display(), pid, "removed the spool of an export that was killed")
            }
            Err(e) => {
                tracing::warn!(folder = %entry.path().display(), error = %e, "cannot remove the spool of an export that was killed")
            }
        }
    }
}

/// The pid in a spool folder's name.
fn owner(name: &str) -> Option<i32> {
    let (pid, _random) = name.strip_prefix(PREFIX)?.split_once('-')?;
    pid.parse().ok().filter(|pid| *pid > 0)
}

/// Whether a process `pid` exists (signal 0 checks without sending anything; EPERM means it
/// exists under another user).
fn process_is_running(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for the process; it has no other effect.
    let answer = unsafe { libc::kill(pid, 0) };
    answer == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_of_ended_processes_are_removed_and_others_kept() {
        let mut ended = std::process::Command::new("true").spawn().unwrap();
        let ended_pid = ended.id();
        ended.wait().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let names = [
            format!("{PREFIX}{ended_pid}-abc"),
            format!("{PREFIX}{}-def", std::process::id()),
            format!("{PREFIX}old"),
            "unrelated-1-x".to_string(),
        ];
        for name in &names {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("page.arrow"), b"x").unwrap();
        }
        remove_orphans(dir.path());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut kept = names[1..].to_vec();
        kept.sort();
        assert_eq!(left, kept);
    }

    #[test]
    fn the_owner_is_read_from_the_name() {
        assert_eq!(owner("kargo-export-spool-4242-Xy12"), Some(4242));
        assert_eq!(owner("kargo-export-spool-Xy12"), None);
        assert_eq!(owner("kargo-export-spool-0-Xy12"), None);
        assert_eq!(owner("other-4242-Xy12"), None);
    }
}
