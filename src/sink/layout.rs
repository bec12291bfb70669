//! Names of a report's objects inside a destination, and reading those names back.
//!
//! This module owns the naming scheme only: data files `<partition dirs>/<key>.<run>.<seq>.parquet`,
//! staged files `_staging/<run>/<data file>.tmp` and the manifest `_manifests/<key>.json`, where
//! `<key>` is the report key encoded like a Hive value (so it never contains `.` or `/`). It does
//! not touch storage. Keeping both directions here means the writer that creates names and the
//! commit that retires old ones can never disagree about what belongs to a report.

use object_store::path::Path;

use super::marker::RunMarker;
use super::partition::encode_segment;
use crate::error::{Error, Result};

/// Top-level folder of files being written; `_` makes Hive readers skip it.
pub const STAGING_DIR: &str = "_staging";
/// Top-level folder of the per-report manifests.
pub const MANIFEST_DIR: &str = "_manifests";
const DATA_SUFFIX: &str = ".parquet";
const STAGED_SUFFIX: &str = ".tmp";
/// Longest file or folder name most filesystems accept.
const MAX_NAME_BYTES: usize = 255;

/// What an existing object is to the report being committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    /// A published data file of an earlier run.
    OlderData,
    /// A staged (`.tmp`) file of any run, left behind under `_staging/`.
    Staged,
}

/// The names of one report's objects in one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportNames {
    key: String,
    enc_key: String,
    run_id: String,
}

impl ReportNames {
    /// Validates the report key and run id (the run id must need no encoding and hold no `.`).
    pub fn new(report_key: &str, run_id: &str) -> Result<Self> {
        if report_key.is_empty() {
            return Err(Error::Usage("the report key is empty".into()));
        }
        if run_id.is_empty() || encode_segment(run_id) != run_id {
            return Err(Error::Usage(format!(
                "invalid run id {run_id:?}: expected letters, digits, '-' or '_' (no '.', '/', '%', ':')"
            )));
        }
        let names = Self {
            key: report_key.to_owned(),
            enc_key: encode_segment(report_key),
            run_id: run_id.to_owned(),
        };
        let longest = names.file_name(99_999).len() + STAGED_SUFFIX.len();
        if longest > MAX_NAME_BYTES {
            return Err(Error::Usage(format!(
                "report key {report_key:?} is too long: its file names would have {longest} bytes, the limit is {MAX_NAME_BYTES}"
            )));
        }
        Ok(names)
    }

    /// The report key as given.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The run id as given.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Data file `seq` in partition folder `dirs` (already encoded `col=value` segments).
    pub fn data_file(&self, dirs: &[String], seq: u32) -> Result<Path> {
        let mut text = dirs.join("/");
        if !text.is_empty() {
            text.push('/');
        }
        text.push_str(&self.file_name(seq));
        parse_path(&text)
    }

    /// The folder holding everything this run stages: `_staging/<run>`.
    pub fn run_staging(&self) -> Result<Path> {
        parse_path(&format!("{STAGING_DIR}/{}", self.run_id))
    }

    /// Where `data_file` is written before it is published.
    pub fn staged(&self, data_file: &Path) -> Result<Path> {
        parse_path(&format!(
            "{STAGING_DIR}/{}/{}{STAGED_SUFFIX}",
            self.run_id,
            data_file.as_ref()
        ))
    }

    /// The report's manifest.
    pub fn manifest(&self) -> Result<Path> {
        parse_path(&format!("{MANIFEST_DIR}/{}.json", self.enc_key))
    }

    /// Whether `rel` (relative to the destination root) is this report's and must be retired at
    /// commit: data files of other runs outside `_`/`.` folders, and staged files under
    /// `_staging/`. Anything else, including this run's data files, gives `None`.
    pub fn classify(&self, rel: &Path) -> Option<Owned> {
        let parts: Vec<_> = rel.parts().collect();
        let (file, dirs) = parts.split_last()?;
        let name = self.parse_file_name(file.as_ref())?;
        let first_dir = dirs.first().map(|d| d.as_ref());
        if first_dir == Some(STAGING_DIR) {
            return name.staged.then_some(Owned::Staged);
        }
        let hidden = dirs
            .iter()
            .any(|d| d.as_ref().starts_with('_') || d.as_ref().starts_with('.'));
        (!hidden && !name.staged && name.run_id != self.run_id).then_some(Owned::OlderData)
    }

    /// The run marker `marker` of this report and run: `_staging/<run>/<key>.<pid>.<host>.run`
    /// (see [`super::marker`]).
    pub fn run_marker(&self, marker: &RunMarker) -> Result<Path> {
        parse_path(&format!(
            "{STAGING_DIR}/{}/{}{}",
            self.run_id,
            self.enc_key,
            marker.file_suffix()
        ))
    }

    /// The run and marker of `rel` when it is a run marker of this report by another run.
    pub fn other_run_marker(&self, rel: &Path) -> Option<(String, RunMarker)> {
        let parts: Vec<_> = rel.parts().collect();
        let [staging, run, file] = parts.as_slice() else {
            return None;
        };
        let rest = file
            .as_ref()
            .strip_prefix(self.enc_key.as_str())?
            .strip_prefix('.')?;
        let marker = RunMarker::parse(rest)?;
        (staging.as_ref() == STAGING_DIR && run.as_ref() != self.run_id)
            .then(|| (run.as_ref().to_owned(), marker))
    }

    /// The run of `rel` when it is a staged file of this report (`_staging/<run>/...`).
    pub fn staged_run(&self, rel: &Path) -> Option<String> {
        (self.classify(rel) == Some(Owned::Staged))
            .then(|| rel.parts().nth(1).map(|run| run.as_ref().to_owned()))
            .flatten()
    }

    /// The run that wrote `rel`, when it is a published data file of this report.
    pub fn data_file_run(&self, rel: &Path) -> Option<String> {
        let file = rel.parts().next_back()?;
        let name = self.parse_file_name(file.as_ref())?;
        (!name.staged).then(|| name.run_id.to_owned())
    }

    /// The run of a local multipart leftover of this report named `<staged name>#<n>`.
    pub fn partial_upload_run(&self, file_name: &str) -> Option<String> {
        let (staged, n) = file_name.rsplit_once('#')?;
        let numbered = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
        let name = self.parse_file_name(staged)?;
        (numbered && name.staged).then(|| name.run_id.to_owned())
    }

    fn file_name(&self, seq: u32) -> String {
        format!("{}.{}.{seq:05}{DATA_SUFFIX}", self.enc_key, self.run_id)
    }

    /// Reads `<enc key>.<run>.<digits>.parquet[.tmp]`; other names give `None`.
    fn parse_file_name<'a>(&self, name: &'a str) -> Option<FileName<'a>> {
        let rest = name.strip_prefix(&self.enc_key)?.strip_prefix('.')?;
        let (rest, staged) = match rest.strip_suffix(STAGED_SUFFIX) {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let (run_id, seq) = rest.strip_suffix(DATA_SUFFIX)?.split_once('.')?;
        let valid =
            !run_id.is_empty() && !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit());
        valid.then_some(FileName { run_id, staged })
    }
}

/// The parts of a file name that decide whether it is retired.
struct FileName<'a> {
    run_id: &'a str,
    staged: bool,
}

/// Parses already-encoded text into a [`Path`] without encoding it again (`Path::from` would turn
/// every `%` into `%25`), so the stored name is exactly the text.
pub fn parse_path(text: &str) -> Result<Path> {
    Path::parse(text).map_err(|source| Error::Storage {
        path: text.to_owned(),
        source: object_store::Error::InvalidPath { source },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> ReportNames {
        ReportNames::new("sales/daily v2", "20261129T141500Z-3fa9c2").unwrap()
    }

    #[test]
    fn run_markers_and_staged_files_tell_their_run() {
        let ours = names();
        let other = ReportNames::new("sales/daily v2", "20261130T000000Z-aaaaaa").unwrap();
        let marker = RunMarker {
            host: "db-1.local".into(),
            pid: 77,
        };
        let theirs = other.run_marker(&marker).unwrap();
        assert_eq!(
            ours.other_run_marker(&theirs),
            Some(("20261130T000000Z-aaaaaa".to_string(), marker.clone()))
        );
        assert_eq!(other.other_run_marker(&theirs), None, "its own run");
        let another_report = ReportNames::new("sales", "20261129T141500Z-3fa9c2").unwrap();
        assert_eq!(another_report.other_run_marker(&theirs), None);
        let file = other.data_file(&["day=2024-01-05".into()], 3).unwrap();
        let staged = other.staged(&file).unwrap();
        assert_eq!(
            ours.staged_run(&staged).as_deref(),
            Some("20261130T000000Z-aaaaaa")
        );
        assert_eq!(ours.staged_run(&file), None);
        assert_eq!(
            ours.data_file_run(&file).as_deref(),
            Some("20261130T000000Z-aaaaaa")
        );
    }

    fn path(text: &str) -> Path {
        Path::parse(text).unwrap()
    }

    #[test]
    fn names_are_encoded_and_not_re_encoded() {
        let names = names();
        let file = names.data_file(&["day=2024-01-05".into()], 7).unwrap();
        assert_eq!(
            file.as_ref(),
            "day=2024-01-05/sales%2Fdaily v2.20261129T141500Z-3fa9c2.00007.parquet"
        );
        assert_eq!(
            names.staged(&file).unwrap().as_ref(),
            "_staging/20261129T141500Z-3fa9c2/day=2024-01-05/sales%2Fdaily v2.20261129T141500Z-3fa9c2.00007.parquet.tmp"
        );
        assert_eq!(
            names.manifest().unwrap().as_ref(),
            "_manifests/sales%2Fdaily v2.json"
        );
        let root_file = names.data_file(&[], 0).unwrap();
        assert_eq!(
            root_file.as_ref(),
            "sales%2Fdaily v2.20261129T141500Z-3fa9c2.00000.parquet"
        );
    }

    #[test]
    fn invalid_run_ids_and_keys_are_usage_errors() {
        for run in ["", "a.b", "a/b", "50%", "x:y"] {
            assert!(
                matches!(ReportNames::new("k", run), Err(Error::Usage(_))),
                "{run:?}"
            );
        }
        assert!(matches!(ReportNames::new("", "r1"), Err(Error::Usage(_))));
        let long = "k".repeat(240);
        let err = ReportNames::new(&long, "r1").unwrap_err().to_string();
        assert!(err.contains("too long"), "{err}");
    }

    #[test]
    fn classify_finds_only_this_reports_older_files() {
        let names = names();
        let key = "sales%2Fdaily v2";
        let old = format!("{key}.20250101T000000Z-000000.00000.parquet");
        let cases = [
            (format!("day=1/{old}"), Some(Owned::OlderData)),
            (old.clone(), Some(Owned::OlderData)),
            (format!("a=1/b=2/{old}"), Some(Owned::OlderData)),
            (format!("_staging/r0/day=1/{old}.tmp"), Some(Owned::Staged)),
            (
                format!(
                    "_staging/20261129T141500Z-3fa9c2/{key}.20261129T141500Z-3fa9c2.00000.parquet.tmp"
                ),
                Some(Owned::Staged),
            ),
            (
                format!("day=1/{key}.20261129T141500Z-3fa9c2.00000.parquet"),
                None,
            ),
            (format!("_other/{old}"), None),
            (format!("day=1/.hidden/{old}"), None),
            (format!("_staging/r0/{old}"), None),
            (format!("day=1/{old}.tmp"), None),
            (format!("_manifests/{key}.json"), None),
            (format!("day=1/{key}.notes.txt"), None),
            (format!("day=1/{key}.r.x1.parquet"), None),
            ("day=1/sales%2Fdaily v2x.r.00000.parquet".to_owned(), None),
            ("day=1/other.r.00000.parquet".to_owned(), None),
        ];
        for (text, expected) in cases {
            assert_eq!(names.classify(&path(&text)), expected, "{text}");
        }
    }

    #[test]
    fn partial_uploads_of_older_runs_are_recognised() {
        let names = names();
        let run = "20261129T141500Z-3fa9c2";
        let key = "sales%2Fdaily v2";
        // Of an earlier run: a run is named, and it is not this one.
        let older = |run: Option<String>| run.is_some_and(|run| run != names.run_id());
        let staged = |text: &str| names.staged_run(&path(text));
        assert!(older(staged(&format!(
            "_staging/r0/day=1/{key}.r0.00000.parquet.tmp"
        ))));
        assert!(!older(staged(&format!(
            "_staging/{run}/day=1/{key}.{run}.00000.parquet.tmp"
        ))));
        assert!(!older(staged(
            "_staging/r0/day=1/other.r0.00000.parquet.tmp"
        )));
        assert!(!older(staged(&format!("day=1/{key}.r0.00000.parquet"))));
        let key = "sales%2Fdaily v2";
        let partial = |name: &str| names.partial_upload_run(name);
        assert!(older(partial(&format!("{key}.r0.00000.parquet.tmp#1"))));
        assert!(!older(partial(&format!(
            "{key}.20261129T141500Z-3fa9c2.00000.parquet.tmp#1"
        ))));
        assert!(!older(partial(&format!("{key}.r0.00000.parquet.tmp"))));
        assert!(!older(partial(&format!("{key}.r0.00000.parquet#1"))));
        assert!(!older(partial("other.r0.00000.parquet.tmp#1")));
    }
}
