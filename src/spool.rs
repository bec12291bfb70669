//! The export's spool: every decoded page as Arrow IPC in a folder of TMPDIR, its rows routed
//! to partition buckets on the way, so that the encode phase can write one bucket (a few
//! partitions) at a time with the whole memory budget, whatever order the rows came in.
//!
//! A page's file holds one IPC stream segment per bucket its rows fall into (the page's own
//! schema, then that bucket's rows in page order). The bucket of a row is a hash of its raw
//! partition values ([`Router`]), chosen so that values the export's schema makes equal hash
//! alike: numbers by value, booleans as their text, null and `""` together (both are the Hive
//! default partition). A partition therefore lives in one bucket (a value that two raw spellings
//! share, such as timestamps with different offsets, may land in two buckets: it then gets a file
//! from each, never a lost or duplicated row). The same hashes count the distinct partitions.
//!
//! The folder is named after the process that owns it (`kargo-export-spool-<pid>-<random>`).
//! An export removes its own at the end; a process that was killed (SIGKILL, OOM) cannot, so
//! each new export first removes the spool folders whose owner is no longer running.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{filter_record_batch, take_record_batch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use tempfile::TempDir;

use crate::error::{Error, Result};
use crate::hash::{FNV_OFFSET, fnv1a as mix};
use crate::infer::SchemaInference;

/// Buckets of a partitioned export: enough that a bucket of a large report fits the encode
/// budget, few enough that a page's segments stay large.
pub const PARTITION_BUCKETS: u32 = 64;

/// Routes rows to buckets by their partition values.
#[derive(Debug, Clone, Default)]
pub struct Router {
    /// Raw columns whose values make the partition key (missing ones count as null).
    columns: Vec<String>,
}

impl Router {
    /// Routes by the raw columns `columns` (none: every row to bucket 0).
    pub fn new(columns: Vec<String>) -> Self {
        Self { columns }
    }

    /// Number of buckets rows are routed to.
    pub fn buckets(&self) -> u32 {
        if self.columns.is_empty() {
            1
        } else {
            PARTITION_BUCKETS
        }
    }

    /// The bucket of a row whose partition key hashes to `key`.
    pub fn bucket_of(&self, key: u64) -> u32 {
        (key % u64::from(self.buckets())) as u32
    }

    /// The rows of `batch` (one bucket's, as spooled) that belong to pass `pass` of `passes`:
    /// passes split a bucket by the rest of the key hash, so each partition is in one pass.
    pub fn keep_pass(&self, batch: &RecordBatch, pass: u32, passes: u32) -> Result<RecordBatch> {
        let buckets = u64::from(self.buckets());
        let keep: BooleanArray = self
            .key_hashes(batch)
            .into_iter()
            .map(|hash| Some((hash / buckets) % u64::from(passes) == u64::from(pass)))
            .collect();
        filter_record_batch(batch, &keep).map_err(|e| Error::arrow("spool pass", e))
    }

    /// The hash of each row's partition key (all equal without partition columns).
    fn key_hashes(&self, batch: &RecordBatch) -> Vec<u64> {
        let mut hashes = vec![FNV_OFFSET; batch.num_rows()];
        for name in &self.columns {
            match batch.column_by_name(name) {
                Some(column) => hash_column(column.as_ref(), &mut hashes),
                None => hashes.iter_mut().for_each(|h| *h = mix(*h, NULL_TAG, &[])),
            }
        }
        hashes
    }
}

const NULL_TAG: u8 = 0;
const TEXT_TAG: u8 = 1;
const NUMBER_TAG: u8 = 2;

/// Folds one raw column (Null, Boolean, Int64, Float64 or Utf8) into the row hashes.
fn hash_column(column: &dyn Array, hashes: &mut [u64]) {
    fn fold(column: &dyn Array, hashes: &mut [u64], value: impl Fn(u64, usize) -> u64) {
        for (row, hash) in hashes.iter_mut().enumerate() {
            *hash = if column.is_null(row) {
                mix(*hash, NULL_TAG, &[])
            } else {
                value(*hash, row)
            };
        }
    }
    let number = |hash: u64, value: f64| {
        // -0.0 and 0.0 are one value.
        let value = if value == 0.0 { 0.0 } else { value };
        mix(hash, NUMBER_TAG, &value.to_bits().to_le_bytes())
    };
    match column.data_type() {
        DataType::Int64 => {
            let values = column.as_primitive::<Int64Type>();
            fold(column, hashes, |h, row| number(h, values.value(row) as f64));
        }
        DataType::Float64 => {
            let values = column.as_primitive::<Float64Type>();
            fold(column, hashes, |h, row| number(h, values.value(row)));
        }
        DataType::Boolean => {
            let values = column.as_boolean();
            fold(column, hashes, |h, row| {
                let text = if values.value(row) { "true" } else { "false" };
                mix(h, TEXT_TAG, text.as_bytes())
            });
        }
        DataType::Utf8 => {
            let values = column.as_string::<i32>();
            fold(column, hashes, |h, row| match values.value(row) {
                "" => mix(h, NULL_TAG, &[]),
                text => mix(h, TEXT_TAG, text.as_bytes()),
            });
        }
        _ => fold(column, hashes, |h, _| mix(h, NULL_TAG, &[])),
    }
}

/// One bucket's rows of one page: an IPC stream at `offset..offset + len` of the page's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub bucket: u32,
    pub rows: usize,
    offset: u64,
    len: u64,
}

impl Segment {
    /// Bytes of the segment in its file: about the Arrow size of its rows.
    pub fn len(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
impl Segment {
    /// A segment that points nowhere, for tests of how segments are grouped.
    pub fn for_test(bucket: u32, rows: usize) -> Self {
        Self::for_test_sized(bucket, rows, 0)
    }

    /// A segment of `len` bytes that points nowhere.
    pub fn for_test_sized(bucket: u32, rows: usize, len: u64) -> Self {
        Self {
            bucket,
            rows,
            offset: 0,
            len,
        }
    }
}

/// A report whose pages are decoded and spooled.
pub struct SpooledReport {
    pub key: String,
    pub source_url: String,
    /// Pages fetched, with or without rows.
    pub page_count: u64,
    /// The spooled pages that had rows, in page order (their `keys` taken into `partitions`).
    pub pages: Vec<SpooledPage>,
    /// The distinct partition-key hashes of all rows.
    pub partitions: Vec<u64>,
    pub inference: SchemaInference,
    /// Body bytes received for the report's pages.
    pub bytes_fetched: u64,
}

/// What spooling one page wrote.
#[derive(Debug)]
pub struct SpooledPage {
    /// Shared by the page's segments in the tasks of phase 2.
    pub file: Arc<Path>,
    pub rows: usize,
    /// By bucket, only buckets that received rows.
    pub segments: Vec<Segment>,
    /// The distinct partition-key hashes of the page's rows, sorted.
    pub keys: Vec<u64>,
}

/// Writes `batch` (a raw page) to `path`, one segment per bucket its rows fall into.
pub fn write_page(path: &Path, batch: &RecordBatch, router: &Router) -> Result<SpooledPage> {
    let hashes = router.key_hashes(batch);
    let buckets = router.buckets();
    let (sorted, counts) = if buckets == 1 {
        (batch.clone(), vec![batch.num_rows()])
    } else {
        let (order, counts) = bucket_order(&hashes, buckets);
        let sorted =
            take_record_batch(batch, &order).map_err(|e| Error::arrow("spool routing", e))?;
        (sorted, counts)
    };
    let file = File::create(path).map_err(|e| Error::io(path.display(), e))?;
    let mut out = Counting::new(BufWriter::with_capacity(1 << 16, file));
    let mut segments = Vec::new();
    let mut start_row = 0;
    for (bucket, &rows) in counts.iter().enumerate() {
        if rows == 0 {
            continue;
        }
        let offset = out.written;
        let slice = sorted.slice(start_row, rows);
        let mut writer = StreamWriter::try_new(&mut out, &slice.schema())
            .map_err(|e| Error::arrow("spool write", e))?;
        writer
            .write(&slice)
            .and_then(|()| writer.finish())
            .map_err(|e| Error::arrow("spool write", e))?;
        drop(writer);
        segments.push(Segment {
            bucket: bucket as u32,
            rows,
            offset,
            len: out.written - offset,
        });
        start_row += rows;
    }
    out.inner
        .flush()
        .map_err(|e| Error::io(path.display(), e))?;
    let mut keys = hashes;
    keys.sort_unstable();
    keys.dedup();
    // A page's rows often share few keys: keep the few, not a slot per row.
    keys.shrink_to_fit();
    Ok(SpooledPage {
        file: Arc::from(path),
        rows: batch.num_rows(),
        segments,
        keys,
    })
}

/// Row indices grouped by bucket (rows keep their order inside a bucket: a counting sort), and
/// the number of rows of each bucket.
fn bucket_order(hashes: &[u64], buckets: u32) -> (UInt32Array, Vec<usize>) {
    let bucket_of = |hash: u64| (hash % u64::from(buckets)) as usize; // as Router::bucket_of
    let mut counts = vec![0usize; buckets as usize];
    for &hash in hashes {
        counts[bucket_of(hash)] += 1;
    }
    let mut next: Vec<usize> = counts
        .iter()
        .scan(0, |start, &n| {
            let at = *start;
            *start += n;
            Some(at)
        })
        .collect();
    let mut order = vec![0u32; hashes.len()];
    for (row, &hash) in hashes.iter().enumerate() {
        let slot = &mut next[bucket_of(hash)];
        order[*slot] = row as u32;
        *slot += 1;
    }
    (UInt32Array::from(order), counts)
}

/// The batches of one segment of the page file `path`.
pub fn read_segment(path: &Path, segment: &Segment) -> Result<Vec<RecordBatch>> {
    let mut file = File::open(path).map_err(|e| Error::io(path.display(), e))?;
    file.seek(SeekFrom::Start(segment.offset))
        .map_err(|e| Error::io(path.display(), e))?;
    let reader = StreamReader::try_new(BufReader::new(file.take(segment.len)), None)
        .map_err(|e| Error::arrow("spool read", e))?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::arrow("spool read", e))
}

/// A writer that counts the bytes written through it.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W> Counting<W> {
    fn new(inner: W) -> Self {
        Self { inner, written: 0 }
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

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
pub(crate) fn process_is_running(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for the process; it has no other effect.
    let answer = unsafe { libc::kill(pid, 0) };
    answer == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    fn strings(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    #[test]
    fn a_page_reads_back_bucket_by_bucket_with_every_row_once_in_page_order() {
        let dir = tempfile::tempdir().unwrap();
        let days: Vec<String> = (0..500)
            .map(|i| format!("2025-03-{:02}", 1 + i * 7 % 30))
            .collect();
        let page = batch(vec![
            (
                "n",
                Arc::new(Int64Array::from_iter_values(0..500)) as ArrayRef,
            ),
            ("day", Arc::new(StringArray::from(days.clone()))),
        ]);
        let router = Router::new(vec!["day".into()]);
        let spooled = write_page(&dir.path().join("p.arrow"), &page, &router).unwrap();
        assert_eq!(spooled.rows, 500);
        assert_eq!(spooled.keys.len(), 30, "30 distinct days");
        assert!(spooled.segments.len() > 1 && spooled.segments.len() <= 30);
        assert!(
            spooled
                .segments
                .windows(2)
                .all(|w| w[0].bucket < w[1].bucket)
        );
        let mut seen = Vec::new();
        let mut bucket_of_day = std::collections::HashMap::new();
        for segment in &spooled.segments {
            let batches = read_segment(&spooled.file, segment).unwrap();
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            assert_eq!(rows, segment.rows);
            let mut previous = -1;
            for b in &batches {
                assert_eq!(b.schema(), page.schema());
                let n = b.column(0).as_primitive::<Int64Type>();
                let day = b.column(1).as_string::<i32>();
                for row in 0..b.num_rows() {
                    assert!(n.value(row) > previous, "page order within a bucket");
                    previous = n.value(row);
                    seen.push(n.value(row));
                    let first = *bucket_of_day
                        .entry(day.value(row).to_owned())
                        .or_insert(segment.bucket);
                    assert_eq!(first, segment.bucket, "one day, one bucket");
                    assert_eq!(day.value(row), days[n.value(row) as usize]);
                }
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn values_the_schema_makes_equal_share_a_bucket() {
        let router = Router::new(vec!["k".into()]);
        let hash = |column: ArrayRef| router.key_hashes(&batch(vec![("k", column)]));
        // Numbers by value: an integer and the same float, 0 and -0.
        assert_eq!(
            hash(Arc::new(Int64Array::from(vec![1, 0]))),
            hash(Arc::new(Float64Array::from(vec![1.0, -0.0])))
        );
        // Booleans as their text (a mixed column writes both as "true").
        assert_eq!(
            hash(Arc::new(BooleanArray::from(vec![true]))),
            hash(strings(&[Some("true")]))
        );
        // Null and "" are both the default partition, also when the column is missing.
        let nulls = hash(strings(&[None, Some("")]));
        assert_eq!(nulls[0], nulls[1]);
        let missing = Router::new(vec!["absent".into()])
            .key_hashes(&batch(vec![("k", strings(&[Some("x")]))]));
        assert_eq!(missing[0], nulls[0]);
        // Different values, different keys; the order of partition columns matters.
        let two = hash(strings(&[Some("a"), Some("b")]));
        assert_ne!(two[0], two[1]);
        let ab = Router::new(vec!["a".into(), "b".into()]);
        let ba = Router::new(vec!["b".into(), "a".into()]);
        let page = batch(vec![
            ("a", strings(&[Some("x")])),
            ("b", strings(&[Some("y")])),
        ]);
        assert_ne!(ab.key_hashes(&page), ba.key_hashes(&page));
    }

    #[test]
    fn without_partition_columns_a_page_is_one_segment() {
        let dir = tempfile::tempdir().unwrap();
        let page = batch(vec![("s", strings(&[Some("a"), Some("b"), None]))]);
        let spooled = write_page(&dir.path().join("p.arrow"), &page, &Router::default()).unwrap();
        assert_eq!(Router::default().buckets(), 1);
        assert_eq!(spooled.segments.len(), 1);
        assert_eq!(spooled.keys.len(), 1);
        let read = read_segment(&spooled.file, &spooled.segments[0]).unwrap();
        assert_eq!(read, vec![page]);
    }

    #[test]
    fn bucket_order_is_a_stable_counting_sort() {
        let (order, counts) = bucket_order(&[5, 2, 7, 2, 5, 4], 4);
        // Buckets 1, 2, 3, 2, 1, 0.
        assert_eq!(counts, [1, 2, 2, 1]);
        assert_eq!(order.values().to_vec(), [5, 0, 4, 1, 3, 2]);
    }

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
