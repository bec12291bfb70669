//! One export command from pages to committed files.
//!
//! Phase 1 (per report, several reports at once): fetch pages ahead ([`process_pages`]), decode
//! each page into a raw Arrow batch ([`endpoint::decode_page`], one [`RowDecoder`] per
//! blocking thread), check that its values cast as `--cast` asks, record the column kinds ([`SchemaInference`]) in page order and spool the
//! batch to a local Arrow IPC file. Nothing is written to the destination yet, because the
//! export's schema is only known once every page has been seen. Phase 2: merge the inferences
//! into the one schema of the export, conform each spooled batch to it, apply the
//! [`Transforms`] of a manual endpoint and stage Parquet files
//! ([`ReportWriter`], one per core for a large report); when every report is staged, commit them. Any failure discards what was staged, so
//! the destination is left as it was. The spool is a temporary folder (TMPDIR) removed at the end.
//!
//! Interruption ([`export_until`]): SIGINT or SIGTERM before the commit drops the export's
//! future (no further fetch), raises a `Cancel` flag that the blocking decode and staging jobs
//! check between pages (a staging job then aborts its open uploads), waits until every blocking
//! job has returned, and only then deletes this run's staging and the spool, so nothing writes
//! into the destination after the cleanup. The commit itself (renames and a manifest) is not
//! interrupted: a signal arriving then is ignored and the export completes.

use std::cell::RefCell;
use std::fs::File;
use std::future::Future;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
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
use crate::sink::{CommitSummary, Destination, ManifestInfo, ReportWriter, StagedReport};
use crate::source::auth::Credentials;
use crate::source::client::{ApiClient, Connection, Fetched};
use crate::source::endpoint::{self, Endpoint};
use crate::source::extract::extract_page;
use crate::source::for_each_page;
use crate::source::paginate::PageEnd;
use crate::source::readahead::process_pages;
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

/// Every report request, each as the raw JSON the API sent.
pub async fn list_reports(api: &Api) -> Result<Vec<Box<RawValue>>> {
    let session = ApiSession::start(api).await?;
    report_requests(&session.client).await
}

/// Every report request (all pages of `GET /v1/reports`), each as the raw JSON the API sent.
pub async fn report_requests(client: &ApiClient) -> Result<Vec<Box<RawValue>>> {
    let first = client.endpoint(&["v1", "reports"]);
    let mut rows = Vec::new();
    for_each_page(client, first, async |body: Bytes, at: &PageLocation| {
        let before = rows.len();
        let info = extract_page(&body, at, |row| {
            rows.push(row.to_owned());
            Ok(())
        })?;
        crate::progress::page((rows.len() - before) as u64, body.len() as u64);
        Ok(info.next)
    })
    .await?;
    Ok(rows)
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
    let pages = spooled.iter().map(|r| r.pages.len() as u64).sum();
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
    let transforms = Arc::new(transforms);
    let spooled: Vec<SpooledReport> = stream::iter(sources)
        .map(|source| spool_report(&session.client, source, &transforms, Some(spool), cancel))
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

    fn preset(key: &str, url: Url) -> Self {
        Source {
            key: key.to_string(),
            endpoint: Arc::new(Endpoint::preset(url)),
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
}

/// A report whose pages are decoded and spooled.
struct SpooledReport {
    key: String,
    source_url: String,
    pages: Vec<SpooledPage>,
    inference: SchemaInference,
    json_bytes: u64,
}

/// One page's raw batch in the spool (no file when the page had no rows).
struct SpooledPage {
    file: Option<PathBuf>,
    rows: usize,
}

/// Pages of one report being processed at once: bounds memory to a few pages while keeping
/// both cores busy decoding.
const PAGES_IN_FLIGHT: usize = 3;

/// One page after decoding: its batch (for the kinds), its spool file, its size.
struct DecodedPage {
    raw: RawBatch,
    file: Option<PathBuf>,
    json_bytes: u64,
}

/// Phase 1 for one report. With no spool folder, pages are decoded and dropped (schema only).
async fn spool_report(
    client: &ApiClient,
    source: Source,
    transforms: &Arc<Transforms>,
    spool: Option<&Path>,
    cancel: &Cancel,
) -> Result<SpooledReport> {
    let mut inference = SchemaInference::new();
    let mut pages = Vec::new();
    let mut json_bytes = 0;
    let spool = spool.map(Path::to_path_buf);
    let slot = fastrand::u64(..);
    let cancel = cancel.clone();
    let endpoint = source.endpoint.clone();
    let transforms = transforms.clone();
    let process = move |page: Fetched, at: &PageLocation| {
        cancel.check()?;
        let file = spool
            .as_ref()
            .map(|dir| dir.join(format!("{slot:016x}-{:06}.arrow", at.page)));
        let (raw, end) = decode_page(&endpoint, &page, at, file.as_deref())?;
        transforms.check(&raw.batch).map_err(|source| Error::Row {
            at: at.clone(),
            source,
        })?;
        let file = file.filter(|_| raw.batch.num_rows() > 0);
        let json_bytes = page.body.len() as u64;
        Ok((
            DecodedPage {
                raw,
                file,
                json_bytes,
            },
            end,
        ))
    };
    let consume = |page: DecodedPage, at: &PageLocation| {
        inference.observe(&page.raw, at.page);
        json_bytes += page.json_bytes;
        crate::progress::page(page.raw.batch.num_rows() as u64, page.json_bytes);
        pages.push(SpooledPage {
            rows: page.raw.batch.num_rows(),
            file: page.file,
        });
        Ok(())
    };
    let discard = |page: DecodedPage| {
        if let Some(file) = page.file {
            let _ = std::fs::remove_file(file);
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
    tracing::info!(report = %source.key, pages = pages.len(), json_bytes, "fetched");
    Ok(SpooledReport {
        key: source.key,
        source_url: redact_url(&source.endpoint.url),
        pages,
        inference,
        json_bytes,
    })
}

thread_local! {
    /// One decoder per blocking thread, reused from page to page.
    static DECODER: RefCell<RowDecoder> = RefCell::new(RowDecoder::new());
}

/// Decodes one page and spools its rows; returns the batch and how the page ends.
fn decode_page(
    endpoint: &Endpoint,
    page: &Fetched,
    at: &PageLocation,
    spool: Option<&Path>,
) -> Result<(RawBatch, PageEnd)> {
    let (raw, next) =
        DECODER.with_borrow_mut(|decoder| endpoint::decode_page(endpoint, page, at, decoder))?;
    if let Some(path) = spool
        && raw.batch.num_rows() > 0
    {
        write_spool(path, &raw.batch)?;
    }
    Ok((raw, next))
}

fn write_spool(path: &Path, batch: &RecordBatch) -> Result<()> {
    let file = File::create(path).map_err(|e| Error::io(path.display(), e))?;
    let mut writer = FileWriter::try_new(BufWriter::new(file), &batch.schema())
        .map_err(|e| Error::arrow("spool write", e))?;
    writer
        .write(batch)
        .map_err(|e| Error::arrow("spool write", e))?;
    writer.finish().map_err(|e| Error::arrow("spool write", e))
}

fn read_spool(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).map_err(|e| Error::io(path.display(), e))?;
    let reader = FileReader::try_new(BufReader::new(file), None)
        .map_err(|e| Error::arrow("spool read", e))?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::arrow("spool read", e))
}

/// Phase 2: stages every report; on any failure discards what was staged.
async fn stage_all(
    settings: &ExportSettings,
    spooled: &[SpooledReport],
    shape: &Shape,
    run_id: &str,
    cancel: &Cancel,
) -> Result<Vec<StagedReport>> {
    // Reports staged at once share the encoder budget.
    let at_once = settings.concurrency.min(spooled.len()).max(1);
    let results: Vec<Result<StagedReport>> = stream::iter(spooled)
        .map(|report| stage_report(settings, report, shape, run_id, at_once, cancel))
        .buffered(at_once)
        .collect()
        .await;
    let mut staged = Vec::new();
    let mut failure = None;
    for result in results {
        match result {
            Ok(report) => staged.push(report),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if let Some(e) = failure {
        for report in staged {
            report.discard(&settings.destination).await;
        }
        return Err(e);
    }
    Ok(staged)
}

/// Reports smaller than this are encoded by one writer, so each partition gets one file.
const PARALLEL_WRITE_MIN_ROWS: usize = 100_000;

/// Stages one report. A large report is cut into contiguous runs of pages of about equal rows,
/// one per core, each encoded by its own writer on its own blocking thread. Contiguous runs keep
/// partitions apart when pages come sorted by the partition column (reports by day do): then a
/// partition gets one file, or two where a run boundary falls inside it.
async fn stage_report(
    settings: &ExportSettings,
    report: &SpooledReport,
    shape: &Shape,
    run_id: &str,
    at_once: usize,
    cancel: &Cancel,
) -> Result<StagedReport> {
    let schema = &shape.schema;
    let runs = page_runs(&report.pages, write_shards());
    let shards = runs.len();
    let mut options = settings.write.clone();
    // The budget is for the whole export: the reports staged at once and their shards share it.
    options.memory_budget_bytes = (options.memory_budget_bytes / (shards * at_once)).max(1);
    let tasks: Vec<_> = runs
        .into_iter()
        .enumerate()
        .map(|(shard, files)| {
            let job = StageJob {
                destination: settings.destination.clone(),
                key: report.key.clone(),
                run_id: run_id.to_string(),
                inferred: shape.inferred.clone(),
                transforms: shape.transforms.clone(),
                schema: schema.clone(),
                partition_by: if schema.fields().is_empty() {
                    Vec::new()
                } else {
                    settings.partition_by.clone()
                },
                options: options.clone(),
                shard: (shard as u32, shards as u32),
                files,
                cancel: cancel.clone(),
            };
            tokio::task::spawn_blocking(move || job.run())
        })
        .collect();
    let mut staged = Vec::new();
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(Ok(part)) => staged.push(part),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(e) => {
                failure = failure.or(Some(Error::Internal(format!("writer task failed: {e}"))))
            }
        }
    }
    if let Some(e) = failure {
        for part in staged {
            part.discard(&settings.destination).await;
        }
        return Err(e);
    }
    StagedReport::merge(staged).ok_or_else(|| Error::Internal("no writer ran".into()))
}

/// Spool files cut into at most `shards` contiguous runs of about equal rows (one run for a
/// small report, and always at least one run).
fn page_runs(pages: &[SpooledPage], shards: usize) -> Vec<Vec<PathBuf>> {
    let total: usize = pages.iter().map(|p| p.rows).sum();
    let shards = if total < PARALLEL_WRITE_MIN_ROWS {
        1
    } else {
        shards.max(1)
    };
    let mut runs = vec![Vec::new(); shards];
    let mut seen = 0;
    for page in pages {
        if let Some(file) = &page.file {
            runs[(seen * shards / total.max(1)).min(shards - 1)].push(file.clone());
        }
        seen += page.rows;
    }
    runs.retain(|run| !run.is_empty());
    if runs.is_empty() {
        runs.push(Vec::new());
    }
    runs
}

/// Parallel Parquet writers per report: one per core.
fn write_shards() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Everything a blocking thread needs to stage one run of pages of one report.
struct StageJob {
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
    shard: (u32, u32),
    files: Vec<PathBuf>,
    /// Checked before each spooled page; when raised, the writer is aborted.
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
        .with_shard(self.shard.0, self.shard.1);
        for file in &self.files {
            let written = self
                .cancel
                .check()
                .and_then(|()| read_spool(file))
                .and_then(|batches| {
                    batches.iter().try_for_each(|batch| {
                        let conformed = conform(batch, &self.inferred)?;
                        writer.write(&self.transforms.apply(&conformed, &self.schema)?)
                    })
                });
            let _ = std::fs::remove_file(file);
            if let Err(e) = written {
                writer.abort();
                return Err(e);
            }
        }
        writer.finish()
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
            compression: settings.compression.clone(),
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
            Api::Sandbox => {
                let (connection, stop) = start_sandbox(SandboxOptions::default()).await?;
                Ok(ApiSession {
                    client: ApiClient::new(&connection)?,
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

    fn pages(rows: &[usize]) -> Vec<SpooledPage> {
        rows.iter()
            .enumerate()
            .map(|(i, &rows)| SpooledPage {
                file: (rows > 0).then(|| PathBuf::from(format!("p{i}"))),
                rows,
            })
            .collect()
    }

    fn names(runs: &[Vec<PathBuf>]) -> Vec<Vec<String>> {
        runs.iter()
            .map(|run| run.iter().map(|p| p.display().to_string()).collect())
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
    fn a_small_report_is_one_run() {
        assert_eq!(names(&page_runs(&pages(&[10, 0, 20]), 2)), [["p0", "p2"]]);
        assert_eq!(names(&page_runs(&pages(&[]), 2)), [Vec::<String>::new()]);
    }

    #[test]
    fn a_large_report_is_cut_into_contiguous_runs_of_equal_rows() {
        let runs = page_runs(&pages(&[50_000, 50_000, 50_000, 50_000]), 2);
        assert_eq!(names(&runs), [["p0", "p1"], ["p2", "p3"]]);
        let runs = page_runs(&pages(&[150_000, 10, 10]), 2);
        assert_eq!(names(&runs), [vec!["p0"], vec!["p1", "p2"]]);
    }
}
