//! Phase 2 of an export: staging Parquet files from the spool once the export's schema is known.
//! One writer thread per core, process-wide, takes the next bucket of rows of any report (a few
//! partitions), conforms and transforms them and writes each partition whole, so a partition is
//! one file with one row group whatever order its rows came in; a bucket larger than the
//! gather budget is read in passes. Nothing is published here: that is the commit's job.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::cancel::Cancel;
use crate::drift::conform_to;
use crate::error::{Error, Result};
use crate::infer::conform;
use crate::settings::ExportSettings;
use crate::sink::{Destination, FileNumbers, ReportWriter, StagedReport};
use crate::spool::{self, Router, Segment, SpooledReport};
use crate::transform::Transforms;

/// The schema inferred over every page, the transforms, the schema they make and the schema
/// written (the same, or the destination's merged schema under `--on-schema-change evolve`).
pub(crate) struct Shape {
    pub(crate) inferred: SchemaRef,
    pub(crate) transforms: Arc<Transforms>,
    pub(crate) transformed: SchemaRef,
    pub(crate) schema: SchemaRef,
    /// How the spool routed rows to buckets.
    pub(crate) router: Router,
}

/// Phase 2: stages every report on one writer thread per core, each taking the next bucket of
/// rows (a few partitions, written whole) until none is left; on any failure discards what was
/// staged. Memory is one budget for all of them: each worker gathers at most
/// [`GATHER_BYTES`] of rows before a write and keeps `memory_budget_bytes / workers` of
/// encoded row groups.
pub(crate) async fn stage_all(
    settings: &ExportSettings,
    spooled: &[SpooledReport],
    shape: &Shape,
    run_id: &str,
    cancel: &Cancel,
) -> Result<Vec<StagedReport>> {
    let workers = write_workers();
    let mut options = settings.output.write.clone();
    options.memory_budget_bytes = (options.memory_budget_bytes / workers).max(1);
    let partition_by = if shape.schema.fields().is_empty() {
        Vec::new()
    } else {
        settings.output.partition_by.clone()
    };
    let mut queue = VecDeque::new();
    for (index, report) in spooled.iter().enumerate() {
        let numbers = FileNumbers::default();
        for task in report_tasks(report, &shape.router, workers) {
            queue.push_back(WriteTask {
                report: index,
                destination: settings.output.destination.clone(),
                key: report.key.clone(),
                run_id: run_id.to_string(),
                inferred: shape.inferred.clone(),
                transforms: shape.transforms.clone(),
                transformed: shape.transformed.clone(),
                schema: shape.schema.clone(),
                partition_by: partition_by.clone(),
                options: options.clone(),
                numbers: numbers.clone(),
                router: shape.router.clone(),
                task,
                cancel: cancel.clone(),
            });
        }
    }
    let queue = Arc::new(Mutex::new(queue));
    let failure: Arc<Mutex<Option<Error>>> = Arc::default();
    let threads: Vec<_> = (0..workers.min(queue_len(&queue)).max(1))
        .map(|_| {
            let (queue, failure, cancel) = (queue.clone(), failure.clone(), cancel.clone());
            tokio::task::spawn_blocking(move || work_queue(&queue, &failure, &cancel))
        })
        .collect();
    let mut parts: Vec<Vec<StagedReport>> = spooled.iter().map(|_| Vec::new()).collect();
    for thread in threads {
        match thread.await {
            Ok(done) => {
                for (report, part) in done {
                    parts[report].push(part);
                }
            }
            Err(e) => {
                let mut failure = failure.lock().unwrap_or_else(|p| p.into_inner());
                failure.get_or_insert(Error::Internal(format!("writer task failed: {e}")));
            }
        }
    }
    let failure = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(e) = failure {
        for part in parts.into_iter().flatten() {
            part.discard(&settings.output.destination).await;
        }
        return Err(e);
    }
    parts
        .into_iter()
        .map(|parts| {
            StagedReport::merge(parts).ok_or_else(|| Error::Internal("no writer ran".into()))
        })
        .collect()
}

fn queue_len(queue: &Mutex<VecDeque<WriteTask>>) -> usize {
    queue.lock().map_or(0, |q| q.len())
}

/// One writer thread: runs tasks from `queue` until it is empty or a task failed (the first
/// failure is kept in `failure`, and the export's `cancel` stops the other threads).
fn work_queue(
    queue: &Mutex<VecDeque<WriteTask>>,
    failure: &Mutex<Option<Error>>,
    cancel: &Cancel,
) -> Vec<(usize, StagedReport)> {
    let mut done = Vec::new();
    loop {
        let task = queue.lock().ok().and_then(|mut q| q.pop_front());
        let Some(task) = task else { break };
        let _slot = WRITE_SLOTS.acquire();
        if cancel.is_cancelled() {
            break;
        }
        let report = task.report;
        match task.run() {
            Ok(part) => done.push((report, part)),
            Err(e) => {
                let mut failure = failure.lock().unwrap_or_else(|p| p.into_inner());
                if failure.is_none() && !cancel.is_cancelled() {
                    *failure = Some(e);
                }
                cancel.cancel();
                break;
            }
        }
    }
    done
}

/// Writer threads at work at once in the whole process, however many exports run (`run`
/// with a concurrency above 1): one per core, so the encoding memory is one budget.
static WRITE_SLOTS: Slots = Slots::new();

/// A counting semaphore for blocking threads.
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    const fn new() -> Self {
        Self {
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Waits until fewer than [`write_workers`] slots are taken, then takes one until the
    /// guard is dropped.
    fn acquire(&self) -> SlotGuard<'_> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used >= write_workers() {
            used = self.freed.wait(used).unwrap_or_else(|p| p.into_inner());
        }
        *used += 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.used.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.0.freed.notify_one();
    }
}

/// Reports smaller than this are encoded by one writer when unpartitioned, so they get one file.
const PARALLEL_WRITE_MIN_ROWS: usize = 100_000;

/// The rows one writer thread stages at a time: spooled segments of one report, read in
/// `passes` passes that each keep a disjoint share of its partitions.
#[derive(Debug, Default)]
struct TaskRows {
    segments: Vec<(Arc<Path>, Segment)>,
    passes: u32,
}

/// The tasks of one report. Partitioned: one per bucket (a partition lives in one bucket, so it
/// gets one file), read in as many passes as it takes for each pass to hold about
/// [`GATHER_BYTES`] (never more passes than the bucket has partitions), so a pass's partitions
/// are written whole and closed before the next pass. Not partitioned: contiguous runs of pages
/// of about equal rows, one per core for a large report. Always at least one task, so that a
/// report without rows is staged (and committed) too.
fn report_tasks(report: &SpooledReport, router: &Router, workers: usize) -> Vec<TaskRows> {
    let segments = report
        .pages
        .iter()
        .flat_map(|page| page.segments.iter().map(|s| (page.file.clone(), s.clone())));
    let mut tasks: Vec<TaskRows> = if router.buckets() > 1 {
        let mut buckets: BTreeMap<u32, TaskRows> = BTreeMap::new();
        for (file, segment) in segments {
            buckets
                .entry(segment.bucket)
                .or_default()
                .segments
                .push((file, segment));
        }
        let mut keys: BTreeMap<u32, HashSet<u64>> = BTreeMap::new();
        for &key in &report.partitions {
            keys.entry(router.bucket_of(key)).or_default().insert(key);
        }
        for (bucket, task) in &mut buckets {
            let bytes: u64 = task.segments.iter().map(|(_, s)| s.len()).sum();
            let partitions = keys.get(bucket).map_or(1, HashSet::len) as u64;
            let passes = bytes
                .div_ceil(GATHER_BYTES as u64)
                .clamp(1, partitions.max(1));
            task.passes = u32::try_from(passes).unwrap_or(u32::MAX);
        }
        buckets.into_values().collect()
    } else {
        let total: usize = report.pages.iter().map(|p| p.rows).sum();
        let runs = if total < PARALLEL_WRITE_MIN_ROWS {
            1
        } else {
            workers.max(1)
        };
        let mut tasks: Vec<TaskRows> = (0..runs).map(|_| TaskRows::default()).collect();
        let mut seen = 0;
        for (file, segment) in segments {
            let rows = segment.rows;
            tasks[(seen * runs / total.max(1)).min(runs - 1)]
                .segments
                .push((file, segment));
            seen += rows;
        }
        tasks.retain(|task| !task.segments.is_empty());
        tasks.iter_mut().for_each(|task| task.passes = 1);
        tasks
    };
    if tasks.is_empty() {
        tasks.push(TaskRows {
            segments: Vec::new(),
            passes: 1,
        });
    }
    tasks
}

/// Parquet writer threads: one per core.
fn write_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Rows a writer thread gathers (in Arrow memory) before it conforms and writes them: large
/// enough that a partition of a bucket is written in few, large slices.
const GATHER_BYTES: usize = 16 * 1024 * 1024;

/// Everything a writer thread needs to stage one bucket (or run of pages) of one report.
struct WriteTask {
    /// Index of the report in the export.
    report: usize,
    destination: Destination,
    key: String,
    run_id: String,
    /// The schema every spooled batch is conformed to, before the transforms.
    inferred: SchemaRef,
    transforms: Arc<Transforms>,
    /// The schema the transforms make.
    transformed: SchemaRef,
    /// The schema written.
    schema: SchemaRef,
    partition_by: Vec<String>,
    options: crate::sink::WriteOptions,
    numbers: FileNumbers,
    /// How the spool routed rows, to tell a row's pass.
    router: Router,
    task: TaskRows,
    /// Checked before each spooled segment; when raised, the writer is aborted.
    cancel: Cancel,
}

impl WriteTask {
    fn run(self) -> Result<StagedReport> {
        let mut writer = ReportWriter::new(
            &self.destination,
            &self.key,
            &self.run_id,
            self.schema.clone(),
            &self.partition_by,
            self.options.clone(),
        )?
        .with_file_numbers(self.numbers.clone());
        match self.write_segments(&mut writer) {
            Ok(()) => writer.finish(),
            Err(e) => {
                writer.abort();
                Err(e)
            }
        }
    }

    /// Writes the task's rows pass by pass.
    fn write_segments(&self, writer: &mut ReportWriter) -> Result<()> {
        (0..self.task.passes).try_for_each(|pass| self.write_pass(writer, pass))
    }

    /// Reads the segments in order, keeping the rows of pass `pass`, gathering up to
    /// [`GATHER_BYTES`] before each write; the pass's last write closes the files of the
    /// partitions it holds.
    fn write_pass(&self, writer: &mut ReportWriter, pass: u32) -> Result<()> {
        let passes = self.task.passes;
        let mut gathered = Vec::new();
        let mut bytes = 0;
        for (file, segment) in &self.task.segments {
            self.cancel.check()?;
            for batch in spool::read_segment(file, segment)? {
                let batch = if passes > 1 {
                    self.router.keep_pass(&batch, pass, passes)?
                } else {
                    batch
                };
                // The IPC bytes are about the rows' Arrow size (a batch read back shares one
                // buffer among its columns, so its own memory size counts it per column).
                bytes += segment.len() as usize * batch.num_rows() / segment.rows.max(1);
                if batch.num_rows() > 0 {
                    gathered.push(batch);
                }
            }
            if bytes >= GATHER_BYTES {
                writer.write(&self.shape(std::mem::take(&mut gathered))?)?;
                bytes = 0;
            }
        }
        if !gathered.is_empty() {
            writer.write_last(&self.shape(gathered)?)?;
        }
        Ok(())
    }

    /// Raw spooled batches as one batch of the written schema: each run of batches with one
    /// raw schema (pages usually share it) is concatenated, conformed and transformed at once.
    /// Each run is freed once concatenated, so the rows are held about twice at most.
    fn shape(&self, raw: Vec<RecordBatch>) -> Result<RecordBatch> {
        let mut shaped = Vec::new();
        let mut raw = raw.into_iter().peekable();
        while let Some(first) = raw.next() {
            let schema = first.schema();
            let mut run = vec![first];
            while let Some(next) = raw.next_if(|b| b.schema() == schema) {
                run.push(next);
            }
            let batch = match run.len() {
                1 => run.swap_remove(0),
                _ => concat_batches(&schema, &run)
                    .map_err(|e| Error::arrow("gathering spooled rows", e))?,
            };
            drop(run);
            let conformed = conform(&batch, &self.inferred)?;
            let transformed = self.transforms.apply(&conformed, &self.transformed)?;
            shaped.push(if self.transformed == self.schema {
                transformed
            } else {
                conform_to(&transformed, &self.schema)?
            });
        }
        match shaped.as_slice() {
            [one] => Ok(one.clone()),
            _ => concat_batches(&self.schema, &shaped)
                .map_err(|e| Error::arrow("gathering spooled rows", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::SchemaInference;

    /// A report whose pages have `rows[i]` rows, spread over the given buckets.
    fn report(rows: &[usize], buckets: &[&[u32]]) -> SpooledReport {
        let pages = rows
            .iter()
            .zip(buckets)
            .enumerate()
            .filter(|(_, (rows, _))| **rows > 0)
            .map(|(i, (&rows, buckets))| spool::SpooledPage {
                file: Arc::from(Path::new(&format!("p{i}"))),
                rows,
                segments: buckets
                    .iter()
                    .map(|&bucket| Segment::for_test(bucket, rows / buckets.len()))
                    .collect(),
                keys: Vec::new(),
            })
            .collect();
        SpooledReport {
            key: "r".into(),
            source_url: String::new(),
            page_count: rows.len() as u64,
            pages,
            partitions: Vec::new(),
            inference: SchemaInference::new(),
            bytes_fetched: 0,
        }
    }

    fn names(tasks: &[TaskRows]) -> Vec<Vec<String>> {
        tasks
            .iter()
            .map(|task| {
                task.segments
                    .iter()
                    .map(|(file, s)| format!("{}:{}", file.display(), s.bucket))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_small_unpartitioned_report_is_one_task() {
        let unpartitioned = Router::default();
        let tasks = report_tasks(&report(&[10, 0, 20], &[&[0], &[], &[0]]), &unpartitioned, 2);
        assert_eq!(names(&tasks), [["p0:0", "p2:0"]]);
        let tasks = report_tasks(&report(&[], &[]), &unpartitioned, 2);
        assert_eq!(names(&tasks), [Vec::<String>::new()]);
    }

    #[test]
    fn a_large_unpartitioned_report_is_cut_into_contiguous_runs_of_equal_rows() {
        let one = &[0u32][..];
        let tasks = report_tasks(&report(&[50_000; 4], &[one; 4]), &Router::default(), 2);
        assert_eq!(names(&tasks), [["p0:0", "p1:0"], ["p2:0", "p3:0"]]);
        let tasks = report_tasks(
            &report(&[150_000, 10, 10], &[one; 3]),
            &Router::default(),
            2,
        );
        assert_eq!(names(&tasks), [vec!["p0:0"], vec!["p1:0", "p2:0"]]);
    }

    #[test]
    fn a_partitioned_report_is_one_task_per_bucket_with_pages_in_order() {
        let by_day = Router::new(vec!["day".into()]);
        let tasks = report_tasks(
            &report(&[4, 2, 6], &[&[3, 7], &[7], &[0, 3, 7]]),
            &by_day,
            2,
        );
        assert_eq!(
            names(&tasks),
            [
                vec!["p2:0"],
                vec!["p0:3", "p2:3"],
                vec!["p0:7", "p1:7", "p2:7"]
            ]
        );
        let tasks = report_tasks(&report(&[], &[]), &by_day, 2);
        assert_eq!(names(&tasks), [Vec::<String>::new()]);
    }

    #[test]
    fn a_bucket_larger_than_the_gather_budget_is_read_in_passes_but_never_more_than_its_partitions()
    {
        let router = Router::new(vec!["day".into()]);
        let page = |file: &str, segments: Vec<Segment>| spool::SpooledPage {
            file: Arc::from(Path::new(file)),
            rows: segments.iter().map(|s| s.rows).sum(),
            segments,
            keys: Vec::new(),
        };
        let mib = 1024 * 1024;
        // Bucket 5: 24 MiB, three partitions; bucket 6: 40 MiB, one partition.
        let mut report = report(&[], &[]);
        report.pages = vec![
            page(
                "p0",
                vec![
                    Segment::for_test_sized(5, 10, 12 * mib),
                    Segment::for_test_sized(6, 10, 20 * mib),
                ],
            ),
            page(
                "p1",
                vec![
                    Segment::for_test_sized(5, 10, 12 * mib),
                    Segment::for_test_sized(6, 10, 20 * mib),
                ],
            ),
        ];
        report.partitions = vec![5, 6, 69, 133];
        let tasks = report_tasks(&report, &router, 2);
        let passes: Vec<(Vec<String>, u32)> = names(&tasks)
            .into_iter()
            .zip(tasks.iter().map(|t| t.passes))
            .collect();
        assert_eq!(
            passes,
            [
                (vec!["p0:5".to_string(), "p1:5".into()], 2),
                (vec!["p0:6".into(), "p1:6".into()], 1)
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_write_every_partition_of_a_bucket_whole_and_every_row_once() {
        let spool_dir = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let destination = Destination::open(out.path().to_str().unwrap()).unwrap();
        let router = Router::new(vec!["day".into()]);
        let pages: Vec<spool::SpooledPage> = (0..3i64)
            .map(|p| {
                let n: Vec<i64> = (p * 600..(p + 1) * 600).collect();
                let days: Vec<String> = n.iter().map(|i| format!("d{:02}", i * 7 % 40)).collect();
                let batch = RecordBatch::try_from_iter([
                    (
                        "n",
                        Arc::new(arrow::array::Int64Array::from(n)) as arrow::array::ArrayRef,
                    ),
                    ("day", Arc::new(arrow::array::StringArray::from(days)) as _),
                ])
                .unwrap();
                spool::write_page(
                    &spool_dir.path().join(format!("{p}.arrow")),
                    &batch,
                    &router,
                )
                .unwrap()
            })
            .collect();
        let schema = arrow::ipc::reader::StreamReader::try_new(
            std::fs::File::open(&pages[0].file).unwrap(),
            None,
        )
        .unwrap()
        .schema();
        let mut report = report(&[], &[]);
        report.pages = pages;
        let numbers = FileNumbers::default();
        let mut parts = Vec::new();
        for mut task in report_tasks(&report, &router, 2) {
            task.passes = 3;
            let task = WriteTask {
                report: 0,
                destination: destination.clone(),
                key: "r".into(),
                run_id: "run".into(),
                inferred: schema.clone(),
                transforms: Arc::new(Transforms::default()),
                transformed: schema.clone(),
                schema: schema.clone(),
                partition_by: vec!["day".into()],
                options: crate::sink::WriteOptions::default(),
                numbers: numbers.clone(),
                router: router.clone(),
                task,
                cancel: Cancel::default(),
            };
            parts.push(
                tokio::task::spawn_blocking(move || task.run())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        let staged = StagedReport::merge(parts).unwrap();
        assert_eq!(staged.rows(), 1800);
        assert_eq!(staged.files().len(), 40, "one file per day");
        let mut seen = Vec::new();
        for file in staged.files() {
            assert!(
                file.path.as_ref().ends_with("/r.run.00000.parquet"),
                "{}",
                file.path
            );
            let day = file
                .path
                .as_ref()
                .split('/')
                .next()
                .unwrap()
                .strip_prefix("day=")
                .unwrap();
            let f = std::fs::File::open(out.path().join(file.staged.as_ref())).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
            assert_eq!(reader.metadata().num_row_groups(), 1);
            for batch in reader.build().unwrap() {
                let batch = batch.unwrap();
                let n = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .unwrap();
                for value in n.values() {
                    assert_eq!(format!("d{:02}", value * 7 % 40), day);
                    seen.push(*value);
                }
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..1800).collect::<Vec<i64>>());
    }
}
