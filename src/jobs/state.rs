//! Incremental state, kept at the destination next to the data so that a run on a fresh machine
//! knows what earlier runs did. Everything is read and written through the destination's
//! object store, so it works the same on a local directory and on S3.
//!
//! - A report counts as exported when its manifest `_manifests/<key>.json` exists (in a Delta
//!   table: when a commit of the table records it, see [`crate::sink::delta`]): the commit
//!   writes it as its last step, so it never exists for a partial export. Reading the state is
//!   one listing of `_manifests/`, after the destination's own check (on S3 a missing bucket,
//!   refused credentials or an unreachable endpoint fail there, in plain words and within the
//!   check's short retries, as they do for `export`); deleting a manifest makes the next run
//!   export that report again.
//! - A submit job records the report it requested in `_submissions/<job>.json` right after the
//!   API accepted it, with a hash of the request body: a run that finds the same request there
//!   waits for that report instead of submitting it again (after a crash or a timeout), and
//!   once its manifest exists the job has nothing left to do. A changed request, or one the API
//!   reports as failed or no longer lists, is submitted anew.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::shard::fnv1a64;
use crate::error::{Error, Result};
use crate::sink::delta::DeltaTable;
use crate::sink::partition::{decode_segment, encode_segment};
use crate::sink::{Destination, MANIFEST_DIR, TableFormat};

/// Folder of the submit jobs' records.
pub const SUBMISSIONS_DIR: &str = "_submissions";

/// Keys of the reports with a committed export in `dest`, once [`Destination::check`] passed:
/// in a Delta table, the reports its commits record.
pub async fn exported_reports(dest: &Destination, format: TableFormat) -> Result<HashSet<String>> {
    dest.check().await?;
    if format == TableFormat::Delta {
        return DeltaTable::open(dest)?
            .blocking(|table| table.exported_reports())
            .await;
    }
    let names = dest.list_folder(MANIFEST_DIR).await?;
    Ok(report_keys(&names))
}

/// Report keys from manifest file names (`<encoded key>.json`); other names are ignored.
fn report_keys(names: &[String]) -> HashSet<String> {
    names
        .iter()
        .filter_map(|name| name.strip_suffix(".json"))
        .map(decode_segment)
        .collect()
}

/// What a submit job requested last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// [`request_hash`] of the body that was posted.
    pub request_hash: String,
    /// The id the API gave the report request.
    pub report_id: String,
    /// RFC 3339, UTC.
    pub submitted_at: String,
}

/// A stable fingerprint of a request body (key order as written in the jobs file).
pub fn request_hash(request: &Map<String, Value>) -> String {
    let text = Value::Object(request.clone()).to_string();
    format!("{:016x}", fnv1a64(text.as_bytes()))
}

fn submission_path(job: &str) -> String {
    format!("{SUBMISSIONS_DIR}/{}.json", encode_segment(job))
}

/// The record of job `job`'s last submission, if any.
pub async fn read_submission(dest: &Destination, job: &str) -> Result<Option<Submission>> {
    let path = submission_path(job);
    let Some(bytes) = dest.read_object(&path).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        let reason = format!("not a submission record ({e}); delete it to submit again");
        Error::io(
            format!("{}/{path}", dest.display().trim_end_matches('/')),
            std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
        )
    })
}

/// Records job `job`'s submission (replacing the earlier record).
pub async fn write_submission(
    dest: &Destination,
    job: &str,
    submission: &Submission,
) -> Result<()> {
    let json = serde_json::to_vec_pretty(submission)
        .map_err(|e| Error::Internal(format!("submission record: {e}")))?;
    dest.write_object(&submission_path(job), json).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;

    fn memory() -> (Arc<InMemory>, Destination) {
        let store = Arc::new(InMemory::new());
        let dest = Destination::from_store(store.clone(), "mem://".into());
        (store, dest)
    }

    async fn put(store: &InMemory, path: &str) {
        store
            .put(&Path::parse(path).unwrap(), PutPayload::from_static(b"{}"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn exported_reports_are_the_manifests_keys() {
        let (store, dest) = memory();
        assert!(
            exported_reports(&dest, TableFormat::Hive)
                .await
                .unwrap()
                .is_empty()
        );
        put(&store, "_manifests/rpt_1.json").await;
        put(&store, "_manifests/sales%2Edaily.json").await;
        put(&store, "_manifests/notes.txt").await;
        put(&store, "_manifests/deeper/rpt_3.json").await;
        put(&store, "date=2025-03-01/rpt_9.r1.00000.parquet").await;
        let mut keys: Vec<String> = exported_reports(&dest, TableFormat::Hive)
            .await
            .unwrap()
            .into_iter()
            .collect();
        keys.sort();
        assert_eq!(keys, ["rpt_1", "sales.daily"]);
    }

    #[tokio::test]
    async fn exported_reports_of_a_local_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = Destination::open(tmp.path().to_str().unwrap()).unwrap();
        assert!(
            exported_reports(&dest, TableFormat::Hive)
                .await
                .unwrap()
                .is_empty()
        );
        std::fs::create_dir(tmp.path().join("_manifests")).unwrap();
        std::fs::write(tmp.path().join("_manifests/a%2Fb.json"), "{}").unwrap();
        let keys = exported_reports(&dest, TableFormat::Hive).await.unwrap();
        assert_eq!(keys, HashSet::from(["a/b".to_string()]));
    }

    #[tokio::test]
    async fn submissions_round_trip_per_job() {
        let (store, dest) = memory();
        assert_eq!(read_submission(&dest, "nightly/a").await.unwrap(), None);
        let record = Submission {
            request_hash: "00ff".into(),
            report_id: "rpt_s1".into(),
            submitted_at: "2026-11-29T00:00:00Z".into(),
        };
        write_submission(&dest, "nightly/a", &record).await.unwrap();
        assert_eq!(
            read_submission(&dest, "nightly/a").await.unwrap(),
            Some(record)
        );
        assert_eq!(read_submission(&dest, "other").await.unwrap(), None);
        assert!(
            store
                .get(&Path::parse("_submissions/nightly%2Fa.json").unwrap())
                .await
                .is_ok()
        );
        put(&store, "_submissions/broken.json").await;
        let err = read_submission(&dest, "broken")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("_submissions/broken.json"), "{err}");
    }

    #[test]
    fn request_hash_follows_the_body() {
        let body = |v: Value| v.as_object().unwrap().clone();
        let a = request_hash(&body(serde_json::json!({"report_type": "x", "days": 1})));
        assert_eq!(
            a,
            request_hash(&body(serde_json::json!({"report_type": "x", "days": 1})))
        );
        assert_ne!(
            a,
            request_hash(&body(serde_json::json!({"report_type": "x", "days": 2})))
        );
        assert_eq!(a.len(), 16);
    }
}
