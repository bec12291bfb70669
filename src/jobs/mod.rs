//! Scheduled batch exports: `kargo-export run JOBS.toml`.
//!
//! A run reads the jobs file ([`file`]), opens every job's destination, then plans: for each job
//! the reports it has to export, minus those whose manifest already exists at the destination
//! ([`state`]; `--full-refresh` ignores it), minus those that belong to another worker
//! ([`shard`]). The planned reports of all jobs are then exported concurrently, up to the run's
//! concurrency, each by one call of the existing [`pipeline::export_until`] (so each report is
//! its own export with its own schema, and commits or fails on its own). A submit job first
//! requests its report and waits for it ([`submit`]). One failing report fails its job but
//! stops nothing else. [`summary`] prints the outcome and writes `--summary-json`.
//!
//! An endpoint job (a configured endpoint, like `export url`) has no notion of "new": its data may change
//! between runs, so every run exports it again under the job's name, replacing the earlier
//! export through the ordinary commit.
//!
//! `--sandbox` (or `sandbox = true`) starts one in-process sandbox for the whole run, so a
//! report submitted by one job is the same report the export reads.

mod dates;
pub mod file;
pub mod shard;
pub mod state;
pub mod submit;
pub mod summary;

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use futures::future::{FutureExt, Shared, join_all};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::pipeline::{self, ExportSummary, Stopped};
use crate::sandbox::SandboxOptions;
use crate::session;
use crate::settings::connection::{self, ConnectionInput, LimitsInput};
use crate::settings::reports::{self as reports, ReportFieldsInput};
use crate::settings::{Api, ExportSettings, ExportSource, Flags, checked, field, output};
use crate::signals::Signal;
use crate::source::client::{ApiClient, Limits};
use crate::source::reports::{ReportFields, ReportRequest};
use file::{Job, JobKind, JobsFile};
use shard::Shard;
use summary::{JobOutcome, RunSummary};

/// Reports exported at once when neither the file nor the flag says.
const DEFAULT_CONCURRENCY: usize = 2;
/// How long reports submitted to the in-process sandbox of `run --sandbox` take to complete.
const SANDBOX_COMPLETE_AFTER: Duration = Duration::from_secs(1);

/// The flags of `run`, as given (the dispatch fills it from the command line).
#[derive(Debug, Default)]
pub struct RunInput {
    /// The jobs file.
    pub jobs: PathBuf,
    pub full_refresh: bool,
    pub dry_run: bool,
    pub summary_json: Option<PathBuf>,
    /// `K/N`.
    pub shard: Option<String>,
    pub shards: Option<u32>,
    pub concurrency: Option<i64>,
    /// Each overrides the jobs file's key.
    pub report_fields: ReportFieldsInput,
    /// Used when the jobs file has no `[connection]` (its `sandbox` always wins).
    pub connection: ConnectionInput,
    /// Each overrides the jobs file's key.
    pub limits: LimitsInput,
}

/// A checked `run`.
pub struct RunSettings {
    pub api: Api,
    pub jobs: Vec<Job>,
    /// Reports exported at once over all jobs.
    pub concurrency: usize,
    pub full_refresh: bool,
    pub dry_run: bool,
    pub summary_json: Option<PathBuf>,
    pub shard: Shard,
    /// How to read the report list and the answers to submissions.
    pub report_fields: ReportFields,
}

impl RunSettings {
    /// Reads the jobs file and checks everything before any request is sent: the connection,
    /// the shard, every job and its destination. The flags win over the file's keys.
    pub fn new(input: RunInput) -> Result<Self> {
        let file = JobsFile::read(&input.jobs)?;
        let api = match &file.connection {
            _ if input.connection.sandbox => Api::Sandbox(Limits::default()),
            Some(section) => section.api(&|var| std::env::var(var).ok())?,
            None => connection::api(&Flags, &input.connection)?,
        }
        .with_limits(connection::limits(&Flags, &input.limits)?.or(file.limits));
        let shard = Shard::resolve(input.shard.as_deref(), input.shards, |name| {
            std::env::var(name).ok()
        })?;
        let concurrency = checked(
            &Flags,
            field::CONCURRENCY,
            input.concurrency,
            output::concurrency,
        )?
        .or(file.concurrency)
        .unwrap_or(DEFAULT_CONCURRENCY);
        let report_fields = reports::merged(
            reports::report_fields(&Flags, &input.report_fields)?,
            file.report_fields,
        );
        let today = chrono::Utc::now().date_naive();
        let mut jobs = file.jobs;
        for job in &mut jobs {
            if let JobKind::Submit(submit) = &mut job.kind {
                submit.request = dates::fill(&submit.request, today)
                    .map_err(|e| Error::Usage(format!("job {:?}: request: {e}", job.name)))?;
            }
        }
        Ok(Self {
            api,
            jobs,
            concurrency,
            full_refresh: input.full_refresh,
            dry_run: input.dry_run,
            summary_json: input.summary_json,
            shard,
            report_fields,
        })
    }
}

/// What one unit of work exports.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A completed report.
    Report(String),
    /// The report list.
    ReportList,
    /// Submit the job's request, wait, export.
    Submit,
    /// Wait for a report an earlier run submitted, export; submit anew when it failed.
    Await(String),
    /// The job's endpoint, exported under this key (the job's name).
    Endpoint(String),
}

impl Target {
    /// What the summary calls it.
    fn label(&self) -> String {
        match self {
            Target::Report(id) | Target::Await(id) | Target::Endpoint(id) => id.clone(),
            Target::ReportList => "reports".into(),
            Target::Submit => "a new report request".into(),
        }
    }
}

/// The planned work of one job, or why it could not be planned.
type Plan = std::result::Result<Vec<Target>, String>;

/// Runs every job; `Ok` even when jobs failed (the summary says which). `Err` only when the
/// run could not start, or a signal stopped it.
pub async fn run(
    settings: &RunSettings,
    interrupt: impl Future<Output = Signal> + Send + 'static,
) -> Result<RunSummary> {
    let started = Instant::now();
    let (connection, _sandbox) = match &settings.api {
        Api::Remote(connection) => ((**connection).clone(), None),
        Api::Sandbox(limits) => {
            let options = SandboxOptions {
                submit: crate::sandbox::submit::SubmitOptions {
                    complete_after: SANDBOX_COMPLETE_AFTER,
                    ..Default::default()
                },
                ..SandboxOptions::default()
            };
            let (connection, stop) = session::start_sandbox(options).await?;
            (connection.with_limits(*limits), Some(stop))
        }
    };
    let client = ApiClient::new(&connection)?;
    let context = Context {
        settings,
        api: Api::Remote(Box::new(connection)),
        client,
        interrupt: interrupt.boxed().shared(),
    };
    let plans = tokio::select! {
        plans = context.plan() => plans,
        signal = context.interrupt.clone() => return Err(signal.into()),
    };
    let outcomes = if settings.dry_run {
        planned_outcomes(settings, &plans)
    } else {
        context.execute(&plans, started).await?
    };
    // Info, not a warning: without -v a failed run prints its table and one `error:` line.
    for job in &outcomes {
        match &job.error {
            None => tracing::info!(
                job = %job.name, status = ?job.status, reports = job.reports.len(),
                rows = job.rows, files = job.files, bytes = job.bytes, "job done"
            ),
            Some(error) => tracing::info!(job = %job.name, %error, "job failed"),
        }
    }
    Ok(RunSummary {
        jobs: outcomes,
        dry_run: settings.dry_run,
        shard: settings.shard,
        elapsed: started.elapsed(),
    })
}

/// Everything the units of a run share.
struct Context<'a> {
    settings: &'a RunSettings,
    /// The API every export talks to (the in-process sandbox's address with `--sandbox`).
    api: Api,
    /// For the report list and submissions.
    client: ApiClient,
    interrupt: Shared<futures::future::BoxFuture<'static, Signal>>,
}

/// One report (or submission) of one job, once done.
struct UnitResult {
    job: usize,
    target: Target,
    result: std::result::Result<ExportSummary, Stopped>,
    finished: Duration,
}

impl Context<'_> {
    /// The work of every job, after the state and the shard.
    async fn plan(&self) -> Vec<Plan> {
        let needs_list = self
            .settings
            .jobs
            .iter()
            .any(|job| matches!(job.kind, JobKind::NewReports(_)));
        let listing = if needs_list {
            Some(self.completed_requests().await.map_err(|e| e.to_string()))
        } else {
            None
        };
        let mut plans = Vec::new();
        // Two exports of one report into one destination at once would retire each other's
        // files: a report a job shares with an earlier job of the same destination is left to
        // the earlier one.
        let mut claimed = HashSet::new();
        for job in &self.settings.jobs {
            let plan = self.plan_job(job, listing.as_ref()).await;
            plans.push(plan.map(|targets| {
                targets
                    .into_iter()
                    .filter(|target| self.settings.shard.owns(&shard_key(job, target)))
                    .filter(|target| {
                        let (Target::Report(id) | Target::Endpoint(id)) = target else {
                            return true;
                        };
                        let first = claimed.insert((job.output.destination.display().to_string(), id.clone()));
                        if !first {
                            tracing::warn!(job = %job.name, report = %id, "an earlier job exports this report into the same destination");
                        }
                        first
                    })
                    .collect()
            }));
        }
        plans
    }

    /// The completed report requests.
    async fn completed_requests(&self) -> Result<Vec<ReportRequest>> {
        let fields = &self.settings.report_fields;
        let listing = session::report_requests(&self.client, fields).await?;
        Ok(listing
            .with_statuses(fields)?
            .into_iter()
            .filter(|request| request.is_completed(fields))
            .collect())
    }

    async fn plan_job(
        &self,
        job: &Job,
        listing: Option<&std::result::Result<Vec<ReportRequest>, String>>,
    ) -> Plan {
        let stateless = matches!(job.kind, JobKind::ReportList | JobKind::Endpoint(_));
        let exported = if self.settings.full_refresh || stateless {
            HashSet::new()
        } else {
            state::exported_reports(&job.output.destination)
                .await
                .map_err(|e| e.to_string())?
        };
        let new = |ids: Vec<String>| -> Vec<Target> {
            ids.into_iter()
                .filter(|id| !exported.contains(id))
                .map(Target::Report)
                .collect()
        };
        match &job.kind {
            JobKind::Reports(ids) => Ok(new(ids.clone())),
            JobKind::NewReports(filter) => {
                let listing = listing
                    .ok_or("the report list was not fetched")?
                    .as_ref()
                    .map_err(Clone::clone)?;
                Ok(new(matching_ids(listing, filter)))
            }
            JobKind::ReportList => Ok(vec![Target::ReportList]),
            JobKind::Endpoint(_) => Ok(vec![Target::Endpoint(job.name.clone())]),
            JobKind::Submit(spec) => {
                if self.settings.full_refresh {
                    return Ok(vec![Target::Submit]);
                }
                let last = state::read_submission(&job.output.destination, &job.name)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(match last {
                    Some(last) if last.request_hash == state::request_hash(&spec.request) => {
                        if exported.contains(&last.report_id) {
                            Vec::new()
                        } else {
                            vec![Target::Await(last.report_id)]
                        }
                    }
                    _ => vec![Target::Submit],
                })
            }
        }
    }

    /// Runs every planned unit. Exports run up to the run's concurrency at once; waits for
    /// submitted reports do not take a slot, so a slow report never holds up the others.
    async fn execute(&self, plans: &[Plan], started: Instant) -> Result<Vec<JobOutcome>> {
        let units: Vec<(usize, Target)> = plans
            .iter()
            .enumerate()
            .filter_map(|(job, plan)| plan.as_ref().ok().map(|targets| (job, targets)))
            .flat_map(|(job, targets)| targets.iter().map(move |t| (job, t.clone())))
            .collect();
        let slots = Semaphore::new(self.settings.concurrency);
        let results: Vec<UnitResult> = join_all(units.into_iter().map(|(job, target)| {
            let slots = &slots;
            async move {
                let result = self
                    .run_unit(&self.settings.jobs[job], &target, slots)
                    .await;
                UnitResult {
                    job,
                    target,
                    result,
                    finished: started.elapsed(),
                }
            }
        }))
        .await;
        if let Some(signal) = results.iter().find_map(|r| match r.result {
            Err(Stopped::Interrupted(signal)) => Some(signal),
            _ => None,
        }) {
            return Err(signal.into());
        }
        Ok(self
            .settings
            .jobs
            .iter()
            .zip(plans)
            .enumerate()
            .map(|(index, (job, plan))| {
                let mine = results.iter().filter(|r| r.job == index);
                JobOutcome::from_results(
                    job,
                    plan,
                    mine.map(|r| (&r.target, &r.result, r.finished)),
                )
            })
            .collect())
    }

    /// One report of one job: submitted and waited for first when the job says so.
    async fn run_unit(
        &self,
        job: &Job,
        target: &Target,
        slots: &Semaphore,
    ) -> std::result::Result<ExportSummary, Stopped> {
        let source = match target {
            Target::Report(id) => ExportSource::CompletedReports(vec![id.clone()]),
            Target::ReportList => ExportSource::ReportList,
            Target::Endpoint(_) => {
                let JobKind::Endpoint(spec) = &job.kind else {
                    return Err(Stopped::Failed(Error::Internal(format!(
                        "job {:?} has no endpoint",
                        job.name
                    ))));
                };
                ExportSource::Endpoint(spec.clone())
            }
            Target::Submit | Target::Await(_) => {
                let id = tokio::select! {
                    id = self.submit_and_wait(job, target) => id?,
                    signal = self.interrupt.clone() => return Err(Stopped::Interrupted(signal)),
                };
                ExportSource::CompletedReports(vec![id])
            }
        };
        let settings = ExportSettings {
            api: self.api.clone(),
            source,
            output: job.output.clone(),
            concurrency: 1,
        };
        let _slot = slots
            .acquire()
            .await
            .map_err(|e| Error::Internal(format!("export slots: {e}")))?;
        pipeline::export_until(&settings, self.interrupt.clone()).await
    }

    /// Submits the job's request (or picks up the one an earlier run submitted) and waits until
    /// it is completed; returns its report id.
    async fn submit_and_wait(&self, job: &Job, target: &Target) -> Result<String> {
        let JobKind::Submit(spec) = &job.kind else {
            return Err(Error::Internal(format!(
                "job {:?} submits nothing",
                job.name
            )));
        };
        let fields = &self.settings.report_fields;
        let id = match target {
            Target::Await(id) if submit::may_complete(&self.client, id, fields).await? => {
                id.clone()
            }
            _ => {
                // A destination that cannot take the record would make every run submit again.
                job.output.destination.check().await?;
                let id = submit::submit(&self.client, &spec.request, fields).await?;
                tracing::info!(job = %job.name, report = %id, "submitted a report request");
                let record = state::Submission {
                    request_hash: state::request_hash(&spec.request),
                    report_id: id.clone(),
                    submitted_at: chrono::Utc::now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                };
                state::write_submission(&job.output.destination, &job.name, &record).await?;
                id
            }
        };
        submit::wait_until_completed(&self.client, &id, spec, fields).await?;
        Ok(id)
    }
}

/// Ids of the requests in `listing` whose fields equal every entry of `filter`.
fn matching_ids(listing: &[ReportRequest], filter: &Map<String, Value>) -> Vec<String> {
    listing
        .iter()
        .filter(|request| request.matches(filter))
        .filter_map(|request| request.id.clone())
        .collect()
}

/// What decides the worker of a unit: the report id, or the job name for the report list and
/// submissions (so the same worker resumes a submission it started).
fn shard_key(job: &Job, target: &Target) -> String {
    match target {
        Target::Report(id) | Target::Endpoint(id) => id.clone(),
        Target::ReportList | Target::Submit | Target::Await(_) => job.name.clone(),
    }
}

/// The summary of a dry run: what each job would do.
fn planned_outcomes(settings: &RunSettings, plans: &[Plan]) -> Vec<JobOutcome> {
    settings
        .jobs
        .iter()
        .zip(plans)
        .map(|(job, plan)| {
            JobOutcome::planned(
                job,
                plan.as_ref().map(|t| t.iter().map(Target::label).collect()),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_every_field_exactly() {
        let rows = serde_json::json!([
            {"id": "a", "report_type": "by_day", "requested_by": "x"},
            {"report_id": "b", "report_type": "by_site", "requested_by": "x"},
            {"reportId": "c", "report_type": "by_day", "requested_by": "y"},
            {"report_type": "by_day", "requested_by": "x", "status": "completed"},
        ]);
        let rows = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|row| serde_json::value::RawValue::from_string(row.to_string()).unwrap())
            .collect();
        let url = "http://h.example/v1/reports".to_string();
        let listing = crate::source::reports::ReportList::read(url, rows, &ReportFields::default())
            .unwrap()
            .requests;
        let filter = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(matching_ids(&listing, &Map::new()), ["a", "b", "c"]);
        assert_eq!(
            matching_ids(
                &listing,
                &filter(serde_json::json!({"report_type": "by_day"}))
            ),
            ["a", "c"]
        );
        assert_eq!(
            matching_ids(
                &listing,
                &filter(serde_json::json!({"report_type": "by_day", "requested_by": "x"}))
            ),
            ["a"]
        );
        assert!(matching_ids(&listing, &filter(serde_json::json!({"nope": 1}))).is_empty());
    }
}
