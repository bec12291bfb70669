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
//! any report, conforms its rows, applies the export's [`Transforms`] (the same for every
//! source: completed reports, the report list, a configured endpoint) and stages Parquet files
//! ([`ReportWriter`]), a partition's whole rows at a time; when every report is staged, commit
//! them. Any failure discards what was staged, so the destination is left as it
//! was. The spool is a temporary folder (TMPDIR) removed at the end.
//!
//! Interruption ([`export_until`]): SIGINT or SIGTERM before the commit drops the export's
//! future (no further fetch), raises a `Cancel` flag that the blocking decode and staging tasks
//! check between pages (a staging task then aborts its open uploads), waits until every blocking
//! task has returned, and only then deletes this run's staging and the spool, so nothing writes
//! into the destination after the cleanup. The commit itself (renames and a manifest) is not
//! interrupted: a signal arriving then is ignored and the export completes.

use std::cell::RefCell;
use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::{StreamExt, TryStreamExt, stream};
use reqwest::Url;

use crate::cancel::Cancel;
use crate::decode::{RawBatch, RowDecoder};
use crate::error::{Error, PageLocation, Result, redact_url};
use crate::infer::SchemaInference;
use crate::schema_check::{self, SchemaPlan};
use crate::session::ApiSession;
use crate::settings::{Api, EndpointSpec, ExportSettings, ExportSource};
use crate::signals::Signal;
use crate::sink::delta::DeltaTable;
use crate::sink::manifest::Manifest;
use crate::sink::{CommitSummary, Destination, ManifestInfo, StagedReport, TableFormat, mark_run};
use crate::source::body::BodyRest;
use crate::source::client::{ApiClient, Fetched};
use crate::source::endpoint::{self, Endpoint};
use crate::source::extract;
use crate::source::paginate::PageEnd;
use crate::source::readahead::process_pages;
use crate::source::stream::RowSplitter;
use crate::spool::{self, Router, SpooledReport};
use crate::stage::{Shape, stage_all};
use crate::transform::Transforms;

/// What an export did.
#[derive(Debug)]
pub struct ExportSummary {
    /// One entry per report, in command order.
    pub reports: Vec<CommitSummary>,
    /// Other reports of the destination rewritten to the merged schema
    /// (`--on-schema-change evolve`).
    pub rewritten: Vec<CommitSummary>,
    /// Pages fetched over all reports.
    pub pages: u64,
    /// Body bytes received over all reports (JSON, NDJSON or CSV, after any gzip).
    pub bytes_fetched: u64,
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
/// ends without committing, this run's staging and spool are removed once no blocking task is
/// left, and the destination is as it was (removed again if the export created it).
pub async fn export_until(
    settings: &ExportSettings,
    interrupt: impl Future<Output = Signal>,
) -> std::result::Result<ExportSummary, Stopped> {
    // However this ends without a commit, a directory the export created goes again.
    let cleanup = settings.output.destination.cleanup_guard();
    // A destination that cannot be used fails now, not after every page was fetched.
    settings.output.destination.check().await?;
    let format = settings.output.table_format;
    settings.output.destination.check_format(format).await?;
    let cancel = Cancel::default();
    let run_id = run_id();
    let spool = crate::spool::create().map_err(|e| Error::io("temporary spool folder", e))?;
    let result = run_export(settings, spool.path(), &run_id, &cancel, interrupt).await;
    if result.is_err() {
        cancel.cancel();
    }
    cancel.wait_for_tasks().await;
    if let Err(e) = spool.close() {
        tracing::warn!(error = %e, "removing the spool folder failed");
    }
    match &result {
        Ok(_) => cleanup.keep(),
        // The staged files go first; the guard then removes the folders left empty.
        Err(_) => {
            settings
                .output
                .destination
                .remove_run_staging(&run_id)
                .await
        }
    }
    result
}

/// Every row of report `report_id` decoded, and the schema an export of it with `transforms`
/// would write.
pub async fn report_schema(
    api: &Api,
    report_id: &str,
    transforms: Transforms,
) -> Result<SchemaRef> {
    let source = |client: &ApiClient| Ok(Source::completed_report(client, report_id));
    source_schema(api, source, transforms).await
}

/// Every row of a configured endpoint decoded, and the schema an export of it with
/// `transforms` would write.
pub async fn endpoint_schema(
    api: &Api,
    spec: &EndpointSpec,
    transforms: Transforms,
) -> Result<SchemaRef> {
    let source = |client: &ApiClient| Source::endpoint(client, spec);
    source_schema(api, source, transforms).await
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
    let pages = prepared.spooled.iter().map(|r| r.page_count).sum();
    let bytes_fetched = prepared.spooled.iter().map(|r| r.bytes_fetched).sum();
    let (reports, rewritten) = commit_all(settings, prepared).await?;
    Ok(ExportSummary {
        reports,
        rewritten,
        pages,
        bytes_fetched,
        elapsed: started.elapsed(),
    })
}

/// Phases 1 and 2: every report spooled and staged, not committed.
async fn prepare(
    settings: &ExportSettings,
    spool_dir: &Path,
    run_id: &str,
    cancel: &Cancel,
) -> Result<Prepared> {
    let session = ApiSession::start(&settings.api).await?;
    let sources: Vec<Source> = match &settings.source {
        ExportSource::CompletedReports(ids) => ids
            .iter()
            .map(|id| Source::completed_report(&session.client, id))
            .collect(),
        ExportSource::ReportList => vec![Source::report_list(&session.client)],
        ExportSource::Endpoint(spec) => vec![Source::endpoint(&session.client, spec)?],
    };
    let spool = SpoolTo {
        dir: spool_dir.to_path_buf(),
        router: Router::new(raw_partition_columns(
            &settings.output.partition_by,
            &settings.transforms,
        )),
        partition_by: settings.output.partition_by.clone(),
        max_partitions: settings.output.max_partitions,
    };
    let transforms = Arc::new(settings.transforms.clone());
    let spooled: Vec<SpooledReport> = stream::iter(sources)
        .map(|source| spool_report(&session.client, source, &transforms, Some(&spool), cancel))
        .buffered(settings.concurrency)
        .try_collect()
        .await?;
    let mut inference = SchemaInference::new();
    for report in &spooled {
        inference.merge(&report.inference);
    }
    let transformed = transforms.schema(&inference.schema())?;
    let keys: Vec<String> = spooled.iter().map(|r| r.key.clone()).collect();
    let table = delta_table(settings)?;
    let plan = match &table {
        Some(table) => delta_plan(table, &keys, transformed.clone(), settings).await?,
        None => schema_check::check(&settings.output, &keys, &transformed).await?,
    };
    let shape = Shape {
        inferred: inference.schema(),
        schema: plan.schema.clone(),
        transformed,
        transforms,
        router: spool.router,
    };
    if table.is_some() {
        // Before the first staged file: tells the reports' next commits this run is at work.
        for key in &keys {
            mark_run(&settings.output.destination, key, run_id).await?;
        }
    }
    let staged = stage_all(settings, &spooled, &shape, run_id, cancel).await?;
    let rewrites = match plan
        .stage_rewrites(&settings.output, run_id, spool_dir, cancel)
        .await
    {
        Ok(rewrites) => rewrites,
        Err(e) => {
            for report in staged {
                report.discard(&settings.output.destination).await;
            }
            return Err(e);
        }
    };
    Ok(Prepared {
        spooled,
        staged,
        plan,
        rewrites,
        table,
    })
}

/// An export ready to commit: its reports spooled and staged, the schema check's plan, and the
/// other reports it rewrote (`evolve`).
struct Prepared {
    spooled: Vec<SpooledReport>,
    staged: Vec<StagedReport>,
    plan: SchemaPlan,
    rewrites: Vec<(Manifest, StagedReport)>,
    /// The Delta table the reports commit to (`--table-format delta`).
    table: Option<Arc<DeltaTable>>,
}

/// A report to read: its key in file names and manifests, and its endpoint. The templates are
/// presets of a configured endpoint.
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

    fn endpoint(client: &ApiClient, spec: &EndpointSpec) -> Result<Self> {
        Ok(Source {
            key: spec.key.clone(),
            endpoint: Arc::new(spec.endpoint(client.api_base())?),
        })
    }
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
    bytes_fetched: u64,
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
        decoded.bytes_fetched += more_bytes;
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
    let mut bytes_fetched = 0;
    let mut partitions: HashSet<u64> = HashSet::new();
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
            bytes_fetched: page.body.len() as u64,
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
        bytes_fetched += page.bytes_fetched;
        page_count += 1;
        crate::progress::page(page.rows as u64, page.bytes_fetched);
        for mut spooled in page.spooled {
            // The report keeps its distinct keys (at most --max-partitions), not each page's.
            partitions.extend(std::mem::take(&mut spooled.keys));
            if let Some(spool) = spool.filter(|s| !s.partition_by.is_empty()) {
                check_partition_count(spool, partitions.len(), &source.key, at)?;
            }
            pages.push(spooled);
        }
        Ok(())
    };
    let discard = |page: DecodedPage| {
        for spooled in page.spooled {
            let _ = std::fs::remove_file(&spooled.file);
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
    tracing::info!(report = %source.key, pages = page_count, bytes_fetched, partitions = partitions.len(), "fetched");
    Ok(SpooledReport {
        key: source.key,
        source_url: redact_url(&source.endpoint.url),
        page_count,
        pages,
        partitions: partitions.into_iter().collect(),
        inference,
        bytes_fetched,
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

/// Commits every staged report, in command order, then the reports `evolve` rewrote. Under
/// `fail` the schema check runs once more first, so an export of another shape committed into
/// the destination meanwhile is not joined silently (a Delta table checks at its commit).
async fn commit_all(
    settings: &ExportSettings,
    prepared: Prepared,
) -> Result<(Vec<CommitSummary>, Vec<CommitSummary>)> {
    let Prepared {
        spooled,
        staged,
        plan,
        rewrites,
        table,
    } = prepared;
    let dest = &settings.output.destination;
    let keys: Vec<String> = spooled.iter().map(|r| r.key.clone()).collect();
    let checked = match table {
        Some(_) => Ok(()),
        None => schema_check::check_again(&settings.output, &keys, &plan).await,
    };
    if let Err(e) = checked {
        discard(
            dest,
            staged
                .into_iter()
                .chain(rewrites.into_iter().map(|(_, r)| r)),
        )
        .await;
        return Err(e);
    }
    let mut summaries = Vec::new();
    let mut pending = staged.into_iter();
    for report in &spooled {
        let Some(staged) = pending.next() else { break };
        let manifest = ManifestInfo {
            report_id: report.key.clone(),
            source_url: report.source_url.clone(),
            schema: plan.schema.clone(),
            partition_by: settings.output.partition_by.clone(),
            compression: settings.output.write.compression.to_string(),
            schema_drift: plan.drift.clone(),
        };
        let committed = match &table {
            Some(table) => staged.commit_delta(dest, table, manifest).await,
            None => staged.commit(dest, manifest).await,
        };
        match committed {
            Ok(summary) => summaries.push(summary),
            Err(e) => {
                discard(dest, pending.chain(rewrites.into_iter().map(|(_, r)| r))).await;
                return Err(e);
            }
        }
    }
    let mut rewritten = Vec::new();
    let mut rewrites = rewrites.into_iter();
    while let Some((old, staged)) = rewrites.next() {
        let info = schema_check::rewritten_manifest(&old, &plan, &settings.output);
        let committed = staged.commit(dest, info).await;
        if let Ok(summary) = committed {
            rewritten.push(summary);
            continue;
        }
        if let Err(e) = committed {
            discard(dest, rewrites.map(|(_, r)| r)).await;
            return Err(Error::SchemaDrift {
                reports: format!("report {}", old.report_id),
                dest: dest.display().to_owned(),
                differences: plan.drift.describe(),
                hint: format!(
                    "the export was committed, but rewriting report {} to the merged schema \
                     failed ({e}); run the export again with --on-schema-change evolve",
                    old.report_id
                ),
            });
        }
    }
    Ok((summaries, rewritten))
}

/// The Delta table at the destination under `--table-format delta` (opened, not read yet).
fn delta_table(settings: &ExportSettings) -> Result<Option<Arc<DeltaTable>>> {
    match settings.output.table_format {
        TableFormat::Hive => Ok(None),
        TableFormat::Delta => Ok(Some(DeltaTable::open(&settings.output.destination)?)),
    }
}

/// Checks the export's schema against the Delta table's; the plan writes the files with the
/// schema the table takes.
async fn delta_plan(
    table: &Arc<DeltaTable>,
    keys: &[String],
    schema: SchemaRef,
    settings: &ExportSettings,
) -> Result<SchemaPlan> {
    let reports = match keys {
        [one] => format!("report {one}"),
        many => format!("reports {}", many.join(", ")),
    };
    let partition_by = settings.output.partition_by.clone();
    let evolution = table
        .blocking(move |table| table.plan(&reports, &schema, &partition_by))
        .await?;
    Ok(schema_check::delta_plan(evolution.schema))
}

/// Discards staged reports that will not be committed.
async fn discard(dest: &Destination, reports: impl Iterator<Item = StagedReport>) {
    for report in reports {
        report.discard(dest).await;
    }
}

/// `20261129T141500Z-3fa9c2`: sortable by time, unique per run, no dots.
fn run_id() -> String {
    format!(
        "{}-{:06x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        fastrand::u32(..0x100_0000)
    )
}
