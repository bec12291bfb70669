//! Helpers shared by the sink's unit tests: destinations over a temp dir or memory, a sample
//! schema and batches, running a writer on a blocking thread, and listing what is on disk.

use std::path::Path as FsPath;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use object_store::ObjectStore;
use object_store::memory::InMemory;

use super::{Destination, ReportWriter, StagedReport, WriteOptions};
use crate::error::Result;

/// A destination over a fresh temp dir (kept alive by the returned guard).
pub fn local_dest() -> (tempfile::TempDir, Destination) {
    let tmp = tempfile::tempdir().unwrap();
    let dest = Destination::open(tmp.path().to_str().unwrap()).unwrap();
    (tmp, dest)
}

/// A destination over an in-memory store.
pub fn memory_dest() -> (Arc<dyn ObjectStore>, Destination) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    (
        Arc::clone(&store),
        Destination::from_store(store, "memory://".into()),
    )
}

/// Every path in `store`, sorted.
pub async fn store_paths(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    use futures::TryStreamExt;
    let mut paths: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    paths.sort();
    paths
}

/// `day: Utf8, n: Int64, at: Timestamp(us, UTC), name: Utf8`.
pub fn sample_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("day", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("name", DataType::Utf8, true),
    ]))
}

/// Microseconds of row `n`'s timestamp: 2024-01-05T10:00:00Z plus `n` seconds.
pub fn micros(n: i64) -> i64 {
    1_704_448_800_000_000 + n * 1_000_000
}

/// One row per entry of `days` (`""` is kept as an empty string); `n` counts from `first`.
pub fn sample_batch(days: &[&str], first: i64) -> RecordBatch {
    let n: Vec<i64> = (first..first + days.len() as i64).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(days.to_vec())),
        Arc::new(Int64Array::from(n.clone())),
        Arc::new(
            TimestampMicrosecondArray::from(n.iter().map(|&i| micros(i)).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from(
            n.iter().map(|i| format!("name {i}")).collect::<Vec<_>>(),
        )),
    ];
    RecordBatch::try_new(sample_schema(), columns).unwrap()
}

/// Writes `batches` as report `key` of run `run` on a blocking thread, like the pipeline does.
pub async fn stage(
    dest: &Destination,
    key: &str,
    run: &str,
    batches: Vec<RecordBatch>,
    partition_by: &[&str],
    options: WriteOptions,
) -> Result<StagedReport> {
    let dest = dest.clone();
    let (key, run) = (key.to_owned(), run.to_owned());
    let partition_by: Vec<String> = partition_by.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut writer =
            ReportWriter::new(&dest, &key, &run, sample_schema(), &partition_by, options)?;
        for batch in &batches {
            writer.write(batch)?;
        }
        writer.finish()
    })
    .await
    .unwrap()
}

/// Files under `root`, relative, with `/` separators, sorted.
pub fn list_files(root: &FsPath) -> Vec<String> {
    walk(root, false)
}

/// Folders under `root`, relative, sorted.
pub fn list_dirs(root: &FsPath) -> Vec<String> {
    walk(root, true)
}

fn walk(root: &FsPath, dirs: bool) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let is_dir = path.is_dir();
            if is_dir == dirs {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                found.push(rel);
            }
            if is_dir {
                pending.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Parses a JSON file.
pub fn read_json(path: &FsPath) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}
