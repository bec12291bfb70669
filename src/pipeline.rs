//! One export command from pages to committed files.
//!
//! Phase 1 (per report, several reports at once): fetch pages ahead ([`process_pages`]), decode
//! each page into a raw Arrow batch ([`endpoint::decode_page`], one [`RowDecoder`] per
//! blocking thread; a page past 32 MiB in runs of rows as it arrives, [`stream_page`]), check
//! that its values cast as `--cast` asks, record the column kinds ([`SchemaInference`]) in page
//! order and spool the batch to a local Arrow IPC file, its rows routed to buckets by their
//! partition values ([`spool`]). Nothing is written to the destination yet, because the export's
//! schema is only known once every page has been seen. Phase 2: merge the inferences into the
//! one schema of the export; one writer thread per core (process-wide) takes the next bucket of
//! any report, conforms its rows, applies the [`Transforms`] of a manual endpoint and stages
//! Parquet files ([`ReportWriter`]), a partition's whole rows at a time; when every report is
//! staged, commit them. Any failure discards what was staged, so the destination is left as it
//! was. The spool is a temporary folder (TMPDIR) removed at the end.
//!
//! Interruption ([`export_until`]): SIGINT or SIGTERM before the commit drops the export's
//! future (no further fetch), raises a `Cancel` flag that the blocking decode and staging jobs
//! check between pages (a staging job then aborts its open uploads), waits until every blocking
//! job has returned, and only then deletes this run's staging and the spool, so nothing writes
//! into the destination after the cleanup. The commit itself (renames and a manifest) is not
//! interrupted: a signal arriving then is ignored and the export completes.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use reqwest::Url;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::decode::{RawBatch, RowDecoder};
use crate::error::{Error, PageLocation, Result, redact_url};
use crate::infer::{SchemaInference, conform};
use crate::sandbox::{self, SANDBOX_PASSWORD, SANDBOX_USERNAME, SandboxOptions};
use crate::settings::manual::ManualJob;
use crate::settings::{Api, ExportJob, ExportSettings};
use crate::sink::{
    CommitSummary, Destination, FileNumbers, ManifestInfo, ReportWriter, StagedReport,
};
use crate::source::auth::Credentials;
use crate::source::body::BodyRest;
use crate::source::client::{ApiClient, Connection, Fetched};
use crate::source::endpoint::{self, Endpoint};
use crate::source::extract::{self, extract_page};
use crate::source::for_each_page;
use crate::source::paginate::PageEnd;
use crate::source::readahead::process_pages;
use crate::source::reports::{ReportFields, ReportList};
use crate::source::stream::RowSplitter;
use crate::spool::{self, Router, Segment};
use crate::transform::Transforms;

/// What an export did.
#[derive(Debug)]
pub struct ExportSummary {
    /// One entry per report, in command order.
    pub reports: Vec<CommitSummary>,
    /// Pages fetched over all reports.
    pub pages: u64,
    /// JSON bytes received over all reports.
    pub json_bytes: u64,
    /// Wall time of the whole export.
    pub elapsed: Duration,
}

/// Runs an export; on failure the destination is left as it was.
pub async fn export(settings: &ExportSettings) -> Result<ExportSummary> {
    export_until(settings, std::future::pending())
        .await
        .map_err(|stop| match stop {
            Stopped::Failed(e) => e,
            Stopped::Interrupted(signal) => signal.into(),
        })
}

/// A termination signal that stops an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl From<Signal> for Error {
    fn from(signal: Signal) -> Self {
        Error::Interrupted {
            signal: signal.to_string(),
            exit_code: signal.exit_code(),
        }
    }
}

impl Signal {
    /// The conventional exit status of a process ended by this signal: 128 + its number.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }

    /// Starts catching SIGINT and SIGTERM (from now on they no longer end the process) and
    /// returns a future that resolves with the first one received.
    pub fn listen() -> Result<impl Future<Output = Signal> + Send + 'static> {
        use tokio::signal::unix::{SignalKind, signal};
        let catch = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| Error::io(format!("{name} handler"), e))
        };
        let mut interrupt = catch(SignalKind::interrupt(), "SIGINT")?;
        let mut terminate = catch(SignalKind::terminate(), "SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => Signal::Interrupt,
                _ = terminate.recv() => Signal::Terminate,
            }
        })
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        })
    }
}

/// Why an interruptible export did not complete.
#[derive(Debug)]
pub enum Stopped {
    /// The export failed.
    Failed(Error),
    /// A signal arrived before the commit.
    Interrupted(Signal),
}

impl From<Error> for Stopped {
    fn from(e: Error) -> Self {
        Stopped::Failed(e)
    }
}

/// Runs an export that stops when `interrupt` resolves before the commit starts. However it
/// ends without committing, this run's staging and spool are removed once no blocking job is
/// left, and the destination is as it was (removed again if the export created it).
pub async fn export_until(
    settings: &ExportSettings,
    interrupt: impl Future<Output = Signal>,
) -> std::result::Result<ExportSummary, Stopped> {
    // A destination that cannot be used fails now, not after every page was fetched.
    if let Err(e) = settings.destination.check().await {
        settings.destination.cleanup_after_failure();
        return Err(e.into());
    }
    let cancel = Cancel::default();
    let run_id = run_id();
    let spool = match crate::spool::create() {
        Ok(spool) => spool,
        Err(e) => {
            settings.destination.cleanup_after_failure();
            return Err(Error::io("temporary spool folder", e).into());
        }
    };
    let result = run_export(settings, spool.path(), &run_id, &cancel, interrupt).await;
    if result.is_err() {
        cancel.cancel();
    }
    cancel.wait_for_jobs().await;
    if let Err(e) = spool.close() {
        tracing::warn!(error = %e, "removing the spool folder failed");
    }
    if result.is_err() {
        settings.destination.remove_run_staging(&run_id).await;
        settings.destination.cleanup_after_failure();
    }
    result
}

/// Cancellation shared by one export and its blocking jobs. Every blocking job holds a clone,
/// so the export can wait until none is left ([`Cancel::wait_for_jobs`]).
#[derive(Debug, Clone, Default)]
struct Cancel(Arc<AtomicBool>);

impl Cancel {
    fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err` when cancelled, for the checks between pages.
    fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::Internal("export cancelled".into()));
        }
        Ok(())
    }

    /// Waits until this is the last clone: every blocking job that held one has returned.
    /// Call after the export's future is gone (it holds clones too).
    async fn wait_for_jobs(&self) {
        while Arc::strong_count(&self.0) > 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Every row of report `report_id` decoded, and the schema an export of it would write.
pub async fn report_schema(api: &Api, report_id: &str) -> Result<SchemaRef> {
    let source = |client: &ApiClient| Ok(Source::completed_report(client, report_id));
    source_schema(api, source, Transforms::default()).await
}

/// Every row of a manual endpoint decoded, and the schema an export of it would write (after
/// its transforms).
pub async fn manual_schema(api: &Api, job: &ManualJob) -> Result<SchemaRef> {
    let source = |client: &ApiClient| Source::manual(client, job);
    source_schema(api, source, job.transforms.clone()).await
}

/// Phase 1 without a spool for one source, and the schema its export would write.
async fn source_schema(
    api: &Api,
    source: impl FnOnce(&ApiClient) -> Result<Source>,
    transforms: Transforms,
) -> Result<SchemaRef> {
    let session = ApiSession::start(api).await?;
    let source = source(&session.client)?;
    let transforms = Arc::new(transforms);
    let cancel = Cancel::default();
    let spooled = spool_report(&session.client, source, &transforms, None, &cancel).await?;
    transforms.schema(&spooled.inference.schema())
}

/// Every report request, read with `fields` (see [`ReportFields`]).
pub async fn list_reports(api: &Api, fields: &ReportFields) -> Result<ReportList> {
    let session = ApiSession::start(api).await?;
    report_requests(&session.client, fields).await
}

/// Every report request (all pages of `GET /v1/reports`), read with `fields`; each keeps the
/// raw JSON the API sent. A listing with rows but no recognisable id is an
/// [`Error::ReportList`].
pub async fn report_requests(client: &ApiClient, fields: &ReportFields) -> Result<ReportList> {
    let first = client.endpoint(&["v1", "reports"]);
    let mut rows: Vec<Box<RawValue>> = Vec::new();
    for_each_page(
        client,
        first.clone(),
        async |body: Bytes, at: &PageLocation| {
            let before = rows.len();
            let info = extract_page(&body, at, |row| {
                rows.push(row.to_owned());
                Ok(())
            })?;
            crate::progress::page((rows.len() - before) as u64, body.len() as u64);
            Ok(info.next)
        },
    )
    .await?;
    ReportList::read(redact_url(&first), rows, fields)
}

/// Both phases, raced against `interrupt`, then the commit, which is not.
async fn run_export(
    settings: &ExportSettings,
    spool: &Path,
    run_id: &str,
    cancel: &Cancel,
    interrupt: impl Future<Output = Signal>,
) -> std::result::Result<ExportSummary, Stopped> {
    let started = Instant::now();
    let prepared = tokio::select! {
        prepared = prepare(settings, spool, run_id, cancel) => prepared?,
        signal = interrupt => {
            tracing::debug!(%signal, "interrupted");
            return Err(Stopped::Interrupted(signal));
        }
    };
    let (spooled, staged, schema) = prepared;
    let pages = spooled.iter().map(|r| r.page_count).sum();
    let json_bytes = spooled.iter().map(|r| r.json_bytes).sum();
    let reports = commit_all(settings, staged, &spooled, &schema).await?;
    Ok(ExportSummary {
        reports,
        pages,
        json_bytes,
        elapsed: started.elapsed(),
    })
}

/// Phases 1 and 2: every report spooled and staged, not committed.
async fn prepare(
    settings: &ExportSettings,
    spool: &Path,
    run_id: &str,
    cancel: &Cancel,
) -> Result<(Vec<SpooledReport>, Vec<StagedReport>, SchemaRef)> {
    let session = ApiSession::start(&settings.api).await?;
    let (sources, transforms): (Vec<Source>, Transforms) = match &settings.job {
        ExportJob::CompletedReports(ids) => (
            ids.iter()
                .map(|id| Source::completed_report(&session.client, id))
                .collect(),
            Transforms::default(),
        ),
        ExportJob::ReportList => (
            vec![Source::report_list(&session.client)],
            Transforms::default(),
        ),
        ExportJob::Endpoint(job) => (
            vec![Source::manual(&session.client, job)?],
            job.transforms.clone(),
        ),
    };
    let spool = SpoolTo {
        dir: spool.to_path_buf(),
        router: Router::new(raw_partition_columns(&settings.partition_by, &transforms)),
        partition_by: settings.partition_by.clone(),
        max_partitions: settings.max_partitions,
    };
    let transforms = Arc::new(transforms);
    let spooled: Vec<SpooledReport> = stream::iter(sources)
        .map(|source| spool_report(&session.client, source, &transforms, Some(&spool), cancel))
        .buffered(settings.concurrency)
        .try_collect()
        .await?;
    let mut inference = SchemaInference::new();
    for report in &spooled {
        inference.merge(&report.inference);
    }
    let shape = Shape {
        inferred: inference.schema(),
        schema: transforms.schema(&inference.schema())?,
        transforms,
        router: spool.router,
    };
    let staged = stage_all(settings, &spooled, &shape, run_id, cancel).await?;
    Ok((spooled, staged, shape.schema))
}

/// A report to read: its key in file names and manifests, and its endpoint. The templates are
/// presets of the endpoint a manual export configures.
struct Source {
    key: String,
    endpoint: Arc<Endpoint>,
}

impl Source {
    fn completed_report(client: &ApiClient, id: &str) -> Self {
        Source::preset(id, client.endpoint(&["v1", "completed-reports", id]))
    }

    fn report_list(client: &ApiClient) -> Self {
        Source::preset("reports", client.endpoint(&["v1", "reports"]))
    }

    /// The API's own shape; a huge page is read as it arrives.
    fn preset(key: &str, url: Url) -> Self {
        let mut endpoint = Endpoint::preset(url);
        endpoint.request.stream_from = Some(stream_pages_from());
        Source {
            key: key.to_string(),
            endpoint: Arc::new(endpoint),
        }
    }

    fn manual(client: &ApiClient, job: &ManualJob) -> Result<Self> {
        Ok(Source {
            key: job.key.clone(),
            endpoint: Arc::new(job.endpoint(client.api_base())?),
        })
    }
}

/// The schema inferred over every page, the transforms and the schema they write.
struct Shape {
    inferred: SchemaRef,
    transforms: Arc<Transforms>,
    schema: SchemaRef,
    /// How the spool routed rows to buckets.
    router: Router,
}

/// The inferred columns whose values route rows to partition buckets: the partition columns
/// as they are named before the transforms (a column the transforms add holds one value, so it
/// routes nothing).
fn raw_partition_columns(partition_by: &[String], transforms: &Transforms) -> Vec<String> {
    partition_by
        .iter()
        .filter_map(|name| transforms.source_of(name))
        .map(str::to_owned)
        .collect()
}

/// Where and how phase 1 spools pages.
struct SpoolTo {
    dir: PathBuf,
    router: Router,
    /// The partition columns (for the message when there are too many partitions).
    partition_by: Vec<String>,
    max_partitions: usize,
}

/// A report whose pages are decoded and spooled.
struct SpooledReport {
    key: String,
    source_url: String,
    /// Pages fetched, with or without rows.
    page_count: u64,
    /// The spooled pages that had rows, in page order.
    pages: Vec<spool::SpooledPage>,
    inference: SchemaInference,
    json_bytes: u64,
}

/// Pages of one report being processed at once: bounds memory to a few pages while keeping
/// both cores busy decoding.
const PAGES_IN_FLIGHT: usize = 3;

/// One page after decoding: the columns and kinds of its batches (without their rows, which
/// are in the spool), its spool files, its rows and its size. A page read whole is one batch;
/// a page read as it arrives is one batch per [`STREAM_BATCH_ROWS`] rows.
#[derive(Default)]
struct DecodedPage {
    kinds: Vec<RawBatch>,
    spooled: Vec<spool::SpooledPage>,
    rows: usize,
    json_bytes: u64,
}

/// What the blocking threads of one report need to spool its pages.
struct PageSpool {
    /// `None`: pages are decoded and dropped (schema only).
    dir: Option<PathBuf>,
    router: Router,
    /// Names this report's files in the spool folder.
    slot: u64,
    transforms: Arc<Transforms>,
    cancel: Cancel,
}

impl DecodedPage {
    /// Adds the next decoded batch of the page: checks its casts, spools it, keeps its kinds.
    fn add(&mut self, raw: RawBatch, to: &PageSpool, at: &PageLocation) -> Result<()> {
        let rows = raw.batch.num_rows();
        to.transforms.check(&raw.batch).map_err(|mut source| {
            source.row += self.rows;
            Error::Row {
                at: at.clone(),
                source,
            }
        })?;
        if let Some(dir) = &to.dir
            && rows > 0
        {
            let name = format!(
                "{:016x}-{:06}-{:04}.arrow",
                to.slot,
                at.page,
                self.spooled.len()
            );
            self.spooled
                .push(spool::write_page(&dir.join(name), &raw.batch, &to.router)?);
        }
        self.kinds.push(RawBatch {
            batch: RecordBatch::new_empty(raw.batch.schema()),
            kinds: raw.kinds,
        });
        self.rows += rows;
        Ok(())
    }
}

/// Pages longer than this are read as they arrive (the API's own shape only), so a report sent
/// as one huge page never sits whole in memory. `KARGO_EXPORT_STREAM_PAGES_FROM` (bytes) sets
/// it, for tests.
fn stream_pages_from() -> usize {
    std::env::var("KARGO_EXPORT_STREAM_PAGES_FROM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32 * 1024 * 1024)
}

/// Rows of a page read as it arrives that make one spooled batch.
const STREAM_BATCH_ROWS: usize = 65_536;

/// Reads a page whose first bytes are `page.body` and the rest in `rest` as they arrive:
/// rows are decoded in runs, spooled every [`STREAM_BATCH_ROWS`], and the page without its
/// rows is read last for its next link.
fn stream_page(
    endpoint: &Endpoint,
    page: &Fetched,
    rest: &BodyRest,
    at: &PageLocation,
    to: &PageSpool,
    decoded: &mut DecodedPage,
) -> Result<PageEnd> {
    if !endpoint.is_api_shape(page.format) {
        return Err(Error::Page {
            at: at.clone(),
            reason: format!(
                "a page of more than {} bytes is only read in the API's own shape ($.data.rows, $.links.next)",
                stream_pages_from()
            ),
        });
    }
    tracing::debug!(
        page = at.page,
        first_bytes = page.body.len(),
        "reading a page as it arrives"
    );
    DECODER.with_borrow_mut(|decoder| {
        decoder.reset();
        let mut splitter = RowSplitter::new();
        let mut seen = 0;
        let mut on_rows = |run: &[u8], after_rows: bool| -> Result<()> {
            seen += extract::decode_rows(run, after_rows, seen, at, decoder)?;
            if decoder.len() >= STREAM_BATCH_ROWS {
                let raw = decoder.finish().map_err(|source| Error::Row {
                    at: at.clone(),
                    source,
                })?;
                decoded.add(raw, to, at)?;
            }
            Ok(())
        };
        let shape_error = |reason: String| Error::Page {
            at: at.clone(),
            reason,
        };
        let mut piece = page.body.clone();
        let mut more_bytes = 0;
        loop {
            to.cancel.check()?;
            splitter.push(&piece, &mut on_rows).map_err(shape_error)?;
            match rest.next_chunk()? {
                Some(next) => {
                    more_bytes += next.len() as u64;
                    piece = next;
                }
                None => break,
            }
        }
        let skeleton = splitter.finish(&mut on_rows)?;
        decoded.json_bytes += more_bytes;
        if !decoder.is_empty() {
            let raw = decoder.finish().map_err(|source| Error::Row {
                at: at.clone(),
                source,
            })?;
            decoded.add(raw, to, at)?;
        }
        let skeleton = Fetched {
            body: skeleton.into(),
            format: page.format,
            rest: None,
        };
        let (_, end) = endpoint::decode_page(endpoint, &skeleton, at, decoder)?;
        Ok(PageEnd { rows: seen, ..end })
    })
}

/// Phase 1 for one report. With no spool, pages are decoded and dropped (schema only).
async fn spool_report(
    client: &ApiClient,
    source: Source,
    transforms: &Arc<Transforms>,
    spool: Option<&SpoolTo>,
    cancel: &Cancel,
) -> Result<SpooledReport> {
    let mut inference = SchemaInference::new();
    let mut pages = Vec::new();
    let mut page_count = 0;
    let mut json_bytes = 0;
    let mut partitions = HashSet::new();
    let endpoint = source.endpoint.clone();
    let to = PageSpool {
        dir: spool.map(|s| s.dir.clone()),
        router: spool.map(|s| s.router.clone()).unwrap_or_default(),
        slot: fastrand::u64(..),
        transforms: transforms.clone(),
        cancel: cancel.clone(),
    };
    let process = move |page: Fetched, at: &PageLocation| {
        to.cancel.check()?;
        let mut decoded = DecodedPage {
            json_bytes: page.body.len() as u64,
            ..DecodedPage::default()
        };
        let end = match &page.rest {
            Some(rest) => stream_page(&endpoint, &page, rest, at, &to, &mut decoded)?,
            None => {
                let (raw, end) = DECODER.with_borrow_mut(|decoder| {
                    endpoint::decode_page(&endpoint, &page, at, decoder)
                })?;
                decoded.add(raw, &to, at)?;
                end
            }
        };
        Ok((decoded, end))
    };
    let consume = |page: DecodedPage, at: &PageLocation| {
        for raw in &page.kinds {
            inference.observe(raw, at.page);
        }
        json_bytes += page.json_bytes;
        page_count += 1;
        crate::progress::page(page.rows as u64, page.json_bytes);
        for spooled in page.spooled {
            if let Some(spool) = spool.filter(|s| !s.partition_by.is_empty()) {
                partitions.extend(spooled.keys.iter().copied());
                check_partition_count(spool, partitions.len(), &source.key, at)?;
            }
            pages.push(spooled);
        }
        Ok(())
    };
    let discard = |page: DecodedPage| {
        for spooled in page.spooled {
            let _ = std::fs::remove_file(spooled.file);
        }
    };
    process_pages(
        client,
        &source.endpoint,
        PAGES_IN_FLIGHT,
        process,
        consume,
        discard,
    )
    .await?;
    tracing::info!(report = %source.key, pages = page_count, json_bytes, partitions = partitions.len(), "fetched");
    Ok(SpooledReport {
        key: source.key,
        source_url: redact_url(&source.endpoint.url),
        page_count,
        pages,
        inference,
        json_bytes,
    })
}

/// More distinct partitions than `--max-partitions` is refused while the pages are read,
/// before anything is encoded: each partition is a file (and an open encoder while its
/// bucket is written).
fn check_partition_count(
    spool: &SpoolTo,
    count: usize,
    report: &str,
    at: &PageLocation,
) -> Result<()> {
    if count <= spool.max_partitions {
        return Ok(());
    }
    Err(Error::Partition {
        column: spool.partition_by.join(","),
        reason: format!(
            "report {report:?} has more than {} distinct partitions by page {} ({count} so far); \
             raise --max-partitions (jobs file: max_partitions) or partition by fewer columns",
            spool.max_partitions, at.page
        ),
    })
}

thread_local! {
    /// One decoder per blocking thread, reused from page to page.
    static DECODER: RefCell<RowDecoder> = RefCell::new(RowDecoder::new());
}

/// Phase 2: stages every report on one writer thread per core, each taking the next bucket of
/// rows (a few partitions, written whole) until none is left; on any failure discards what was
/// staged. Memory is one budget for all of them: each worker gathers at most
/// [`GATHER_BYTES`] of rows before a write and keeps `memory_budget_bytes / workers` of
/// encoded row groups.
async fn stage_all(
    settings: &ExportSettings,
    spooled: &[SpooledReport],
    shape: &Shape,
    run_id: &str,
    cancel: &Cancel,
) -> Result<Vec<StagedReport>> {
    let workers = write_workers();
    let mut options = settings.write.clone();
    options.memory_budget_bytes = (options.memory_budget_bytes / workers).max(1);
    let partition_by = if shape.schema.fields().is_empty() {
        Vec::new()
    } else {
        settings.partition_by.clone()
    };
    let mut queue = VecDeque::new();
    for (index, report) in spooled.iter().enumerate() {
        let numbers = FileNumbers::default();
        for task in report_tasks(report, &shape.router, workers) {
            queue.push_back(StageJob {
                report: index,
                destination: settings.destination.clone(),
                key: report.key.clone(),
                run_id: run_id.to_string(),
                inferred: shape.inferred.clone(),
                transforms: shape.transforms.clone(),
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
            part.discard(&settings.destination).await;
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

fn queue_len(queue: &Mutex<VecDeque<StageJob>>) -> usize {
    queue.lock().map_or(0, |q| q.len())
}

/// One writer thread: runs jobs from `queue` until it is empty or a job failed (the first
/// failure is kept in `failure`, and the export's `cancel` stops the other threads).
fn work_queue(
    queue: &Mutex<VecDeque<StageJob>>,
    failure: &Mutex<Option<Error>>,
    cancel: &Cancel,
) -> Vec<(usize, StagedReport)> {
    let mut done = Vec::new();
    loop {
        let job = queue.lock().ok().and_then(|mut q| q.pop_front());
        let Some(job) = job else { break };
        let _slot = WRITE_SLOTS.acquire();
        if cancel.is_cancelled() {
            break;
        }
        let report = job.report;
        match job.run() {
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
struct Task {
    segments: Vec<(PathBuf, Segment)>,
    passes: u32,
}

/// The tasks of one report. Partitioned: one per bucket (a partition lives in one bucket, so it
/// gets one file), read in as many passes as it takes for each pass to hold about
/// [`GATHER_BYTES`] (never more passes than the bucket has partitions), so a pass's partitions
/// are written whole and closed before the next pass. Not partitioned: contiguous runs of pages
/// of about equal rows, one per core for a large report. Always at least one task, so that a
/// report without rows is staged (and committed) too.
fn report_tasks(report: &SpooledReport, router: &Router, workers: usize) -> Vec<Task> {
    let segments = report
        .pages
        .iter()
        .flat_map(|page| page.segments.iter().map(|s| (page.file.clone(), s.clone())));
    let mut tasks: Vec<Task> = if router.buckets() > 1 {
        let mut buckets: BTreeMap<u32, Task> = BTreeMap::new();
        for (file, segment) in segments {
            buckets
                .entry(segment.bucket)
                .or_default()
                .segments
                .push((file, segment));
        }
        let mut keys: BTreeMap<u32, HashSet<u64>> = BTreeMap::new();
        for page in &report.pages {
            for &key in &page.keys {
                keys.entry(router.bucket_of(key)).or_default().insert(key);
            }
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
        let mut tasks: Vec<Task> = (0..runs).map(|_| Task::default()).collect();
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
        tasks.push(Task {
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
struct StageJob {
    /// Index of the report in the export.
    report: usize,
    destination: Destination,
    key: String,
    run_id: String,
    /// The schema every spooled batch is conformed to, before the transforms.
    inferred: SchemaRef,
    transforms: Arc<Transforms>,
    /// The schema written.
    schema: SchemaRef,
    partition_by: Vec<String>,
    options: crate::sink::WriteOptions,
    numbers: FileNumbers,
    /// How the spool routed rows, to tell a row's pass.
    router: Router,
    task: Task,
    /// Checked before each spooled segment; when raised, the writer is aborted.
    cancel: Cancel,
}

impl StageJob {
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
            shaped.push(self.transforms.apply(&conformed, &self.schema)?);
        }
        match shaped.as_slice() {
            [one] => Ok(one.clone()),
            _ => concat_batches(&self.schema, &shaped)
                .map_err(|e| Error::arrow("gathering spooled rows", e)),
        }
    }
}

/// Commits every staged report, in command order.
async fn commit_all(
    settings: &ExportSettings,
    staged: Vec<StagedReport>,
    spooled: &[SpooledReport],
    schema: &SchemaRef,
) -> Result<Vec<CommitSummary>> {
    let mut summaries = Vec::new();
    let mut pending = staged.into_iter();
    for report in spooled {
        let Some(staged) = pending.next() else { break };
        let manifest = ManifestInfo {
            report_id: report.key.clone(),
            source_url: report.source_url.clone(),
            schema: schema.clone(),
            partition_by: settings.partition_by.clone(),
            compression: settings.write.compression.to_string(),
        };
        match staged.commit(&settings.destination, manifest).await {
            Ok(summary) => summaries.push(summary),
            Err(e) => {
                for rest in pending {
                    rest.discard(&settings.destination).await;
                }
                return Err(e);
            }
        }
    }
    Ok(summaries)
}

/// `20261129T141500Z-3fa9c2`: sortable by time, unique per run, no dots.
fn run_id() -> String {
    format!(
        "{}-{:06x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        fastrand::u32(..0x100_0000)
    )
}

/// An API client, plus the in-process sandbox it talks to when `--sandbox` is given.
struct ApiSession {
    client: ApiClient,
    _sandbox: Option<oneshot::Sender<()>>,
}

impl ApiSession {
    async fn start(api: &Api) -> Result<Self> {
        match api {
            Api::Remote(connection) => Ok(ApiSession {
                client: ApiClient::new(connection)?,
                _sandbox: None,
            }),
            Api::Sandbox(limits) => {
                let (connection, stop) = start_sandbox(SandboxOptions::default()).await?;
                Ok(ApiSession {
                    client: ApiClient::new(&connection.with_limits(*limits))?,
                    _sandbox: Some(stop),
                })
            }
        }
    }
}

/// Starts a sandbox serving `options` on a free loopback port and returns a connection that
/// logs in to it; it stops when the returned sender is dropped.
pub async fn start_sandbox(options: SandboxOptions) -> Result<(Connection, oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::Sandbox(format!("cannot bind 127.0.0.1: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Sandbox(format!("no local address: {e}")))?;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(sandbox::run(listener, options, async move {
        let _ = stopped.await;
    }));
    let api_base =
        Url::parse(&format!("http://{addr}")).map_err(|e| Error::Sandbox(e.to_string()))?;
    let auth_url = api_base
        .join("/v1/auth/token")
        .map_err(|e| Error::Sandbox(e.to_string()))?;
    let connection = Connection::new(
        api_base,
        Credentials::Login {
            auth_url,
            username: SANDBOX_USERNAME.to_string(),
            password: crate::secret::Secret::new(SANDBOX_PASSWORD),
        },
    );
    Ok((connection, stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report whose pages have `rows[i]` rows, spread over the given buckets.
    fn report(rows: &[usize], buckets: &[&[u32]]) -> SpooledReport {
        let pages = rows
            .iter()
            .zip(buckets)
            .enumerate()
            .filter(|(_, (rows, _))| **rows > 0)
            .map(|(i, (&rows, buckets))| spool::SpooledPage {
                file: PathBuf::from(format!("p{i}")),
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
            inference: SchemaInference::new(),
            json_bytes: 0,
        }
    }

    fn names(tasks: &[Task]) -> Vec<Vec<String>> {
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wait_for_jobs_returns_once_every_blocking_job_has_returned() {
        let cancel = Cancel::default();
        let done = Arc::new(AtomicBool::new(false));
        let job = {
            let (cancel, done) = (cancel.clone(), done.clone());
            move || {
                while !cancel.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                std::thread::sleep(Duration::from_millis(30));
                done.store(true, Ordering::SeqCst);
                cancel.check()
            }
        };
        drop(tokio::task::spawn_blocking(job));
        cancel.cancel();
        cancel.wait_for_jobs().await;
        assert!(done.load(Ordering::SeqCst));
    }

    #[test]
    fn a_small_unpartitioned_report_is_one_job() {
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
    fn a_partitioned_report_is_one_job_per_bucket_with_pages_in_order() {
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
        let page = |file: &str, segments: Vec<Segment>, keys: Vec<u64>| spool::SpooledPage {
            file: PathBuf::from(file),
            rows: segments.iter().map(|s| s.rows).sum(),
            segments,
            keys,
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
                vec![5, 6, 69],
            ),
            page(
                "p1",
                vec![
                    Segment::for_test_sized(5, 10, 12 * mib),
                    Segment::for_test_sized(6, 10, 20 * mib),
                ],
                vec![6, 133],
            ),
        ];
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
            let job = StageJob {
                report: 0,
                destination: destination.clone(),
                key: "r".into(),
                run_id: "run".into(),
                inferred: schema.clone(),
                transforms: Arc::new(Transforms::default()),
                schema: schema.clone(),
                partition_by: vec!["day".into()],
                options: crate::sink::WriteOptions::default(),
                numbers: numbers.clone(),
                router: router.clone(),
                task,
                cancel: Cancel::default(),
            };
            parts.push(
                tokio::task::spawn_blocking(move || job.run())
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
