//! Run markers of Delta exports: which runs of a report are still alive.
//!
//! A Delta export creates `_staging/<run>/<report>.<pid>.<host>.run` (empty: its name says
//! which process made it, so it is whole the moment it exists) before it stages the report's
//! first file, and deletes it when its commit is done (or its files discarded). The report's
//! next commit can then tell a run that was killed
//! (its published files are orphans no commit names, to delete) from one still working (whose
//! files must stay): on this host a run is dead when its process is gone; a run of another host
//! is taken for dead once its marker is older than [`STALE_AFTER`]. It owns that judgement
//! only; naming is [`super::layout`]'s, deleting [`super::commit`]'s.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::partition::{decode_segment, encode_segment};

const SUFFIX: &str = ".run";

/// How old a marker of another host must be before its run is taken for dead: far longer than
/// any export's publish and commit take.
pub const STALE_AFTER: Duration = Duration::from_secs(6 * 60 * 60);

/// Who wrote a run marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMarker {
    pub host: String,
    pub pid: u32,
}

impl RunMarker {
    /// This process's marker.
    pub fn ours() -> Self {
        RunMarker {
            host: host_name(),
            pid: std::process::id(),
        }
    }

    /// The end of a marker's file name: `.<pid>.<host>.run`, the host encoded like a Hive
    /// value (so it holds no `.` or `/`).
    pub fn file_suffix(&self) -> String {
        format!(".{}.{}{SUFFIX}", self.pid, encode_segment(&self.host))
    }

    /// Reads [`RunMarker::file_suffix`] back from `<pid>.<host>.run`.
    pub fn parse(text: &str) -> Option<Self> {
        let (pid, host) = text.strip_suffix(SUFFIX)?.split_once('.')?;
        let pid = pid.parse().ok()?;
        (!host.contains('.')).then(|| RunMarker {
            host: decode_segment(host),
            pid,
        })
    }

    /// Whether the run of this marker (last modified at `modified`) is over: its process is
    /// gone (this host), or the marker is older than [`STALE_AFTER`] (another host).
    pub fn is_dead(&self, modified: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        if self.host == host_name() {
            let pid = i32::try_from(self.pid).unwrap_or(i32::MAX);
            return !crate::spool::process_is_running(pid);
        }
        (now - modified)
            .to_std()
            .is_ok_and(|age| age >= STALE_AFTER)
    }
}

/// This machine's host name ("" when it cannot be read).
fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let answer = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if answer != 0 {
        return String::new();
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_name_reads_back_whatever_the_host_is_called() {
        let marker = RunMarker {
            host: "build-01.example.com/x".into(),
            pid: 4242,
        };
        let suffix = marker.file_suffix();
        assert_eq!(suffix.matches('.').count(), 3, "{suffix}");
        assert_eq!(RunMarker::parse(&suffix[1..]), Some(marker));
        assert_eq!(RunMarker::parse("x.host.run"), None);
        assert_eq!(RunMarker::parse("12.host.tmp"), None);
    }

    #[test]
    fn a_run_of_this_host_is_dead_when_its_process_is_gone() {
        let now = Utc::now();
        assert!(!RunMarker::ours().is_dead(now, now), "this process runs");
        let gone = RunMarker {
            host: host_name(),
            pid: i32::MAX as u32,
        };
        assert!(gone.is_dead(now, now));
    }

    #[test]
    fn a_run_of_another_host_is_dead_once_its_marker_is_stale() {
        let now = Utc::now();
        let theirs = RunMarker {
            host: format!("{}-elsewhere", host_name()),
            pid: std::process::id(),
        };
        assert!(!theirs.is_dead(now - chrono::Duration::minutes(5), now));
        assert!(theirs.is_dead(now - chrono::Duration::hours(7), now));
    }
}
