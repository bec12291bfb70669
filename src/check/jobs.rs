//! `run JOBS.toml --check`: the check of every job of a jobs file, after one login for the
//! run. For each job, the page steps over the first page of what it reads (its first report,
//! the report list for `new-reports` and `report-list` jobs, its endpoint) and the destination
//! step over its destination (with placeholders in `out`, the folder before the first one,
//! which every resolved destination lies under). A submit job's page steps are skipped: its
//! report exists only once it is submitted, and a check posts nothing. Unlike `check`, a job's
//! destination is probed even when its page failed, so one line tells all that is wrong with
//! it; the shard, the incremental state and the report list's statuses play no part.

use super::{FirstPage, Report, failed, first_page, login, open_and_probe, probe};
use crate::error::{Error, Result};
use crate::jobs::RunSettings;
use crate::jobs::file::{Job, JobKind};
use crate::session::ApiSession;
use crate::settings::ExportSource;
use crate::sink::Probed;
use crate::source::client::ApiClient;
use crate::transform::Transforms;

/// Why a submit job's page steps do not run.
const SUBMIT_SKIPPED: &str =
    "a submit job's report exists only once it is submitted, and a check posts nothing";

/// The check of one job.
pub struct JobCheck {
    pub name: String,
    /// Its `kind`.
    pub kind: &'static str,
    /// The page, data path and columns steps.
    pub page: PageStep,
    /// The destination step: an [`Error::Check`] when it failed.
    pub destination: Result<Probed>,
    /// Set when `out` names request fields: only the folder before the first was probed.
    pub probed_prefix: bool,
}

/// How the page steps of a job ended.
pub enum PageStep {
    Passed(FirstPage),
    /// An [`Error::Check`].
    Failed(Error),
    /// Why the steps did not run.
    Skipped(&'static str),
}

impl PageStep {
    fn error(&self) -> Option<&Error> {
        match self {
            PageStep::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// Logs in once, then checks every job in file order, each reported once checked. Errors:
/// the login's [`Error::Check`] (no job is checked then), or [`Error::JobsFailed`] naming the
/// first job that failed and its first failed step.
pub async fn jobs(
    settings: &RunSettings,
    mut report: impl FnMut(Report<'_>) -> Result<()>,
) -> Result<()> {
    let session = ApiSession::start(&settings.api).await?;
    report(Report::Login(&login(&settings.api, &session.client).await?))?;
    let mut failures = Vec::new();
    for job in &settings.jobs {
        let checked = check_job(&session.client, job).await;
        report(Report::Job(&checked))?;
        if let Some(e) = checked.page.error().or(checked.destination.as_ref().err()) {
            failures.push((job.name.clone(), e.to_string()));
        }
    }
    let Some((job, error)) = failures.first().cloned() else {
        return Ok(());
    };
    Err(Error::JobsFailed {
        failed: failures.len(),
        total: settings.jobs.len(),
        job,
        error,
    })
}

/// The page steps and the destination step of one job.
async fn check_job(client: &ApiClient, job: &Job) -> JobCheck {
    let page = match source(job) {
        Some((source, transforms)) => match job_page(client, &source, &transforms).await {
            Ok(found) => PageStep::Passed(found),
            Err(e) => PageStep::Failed(e),
        },
        None => PageStep::Skipped(SUBMIT_SKIPPED),
    };
    let probed_prefix = job.output.has_fields();
    let destination = match job.output.fixed() {
        Some(output) => probe(&output.destination).await,
        None => open_and_probe(&job.output.destination.base()).await,
    };
    JobCheck {
        name: job.name.clone(),
        kind: job.kind.name(),
        page,
        destination,
        probed_prefix,
    }
}

/// What a job reads first, with the transforms its rows take: `None` for a submit job. A
/// new-reports job reads the report list first, whose rows the job's transforms are not for.
fn source(job: &Job) -> Option<(ExportSource, Transforms)> {
    let own = || job.transforms.clone();
    match &job.kind {
        JobKind::Reports(ids) => Some((ExportSource::CompletedReports(ids.clone()), own())),
        JobKind::NewReports(_) => Some((ExportSource::ReportList, Transforms::default())),
        JobKind::ReportList => Some((ExportSource::ReportList, own())),
        JobKind::Endpoint(spec) => Some((ExportSource::Endpoint(spec.clone()), own())),
        JobKind::Submit(_) => None,
    }
}

/// The page steps of one job, reported only in its line.
async fn job_page(
    client: &ApiClient,
    source: &ExportSource,
    transforms: &Transforms,
) -> Result<FirstPage> {
    let endpoint =
        super::endpoint_of(client, source).map_err(|e| failed("page", "the job's URL", e))?;
    first_page(client, &endpoint, transforms, &mut |_| Ok(())).await
}
