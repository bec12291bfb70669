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
//! A job's `out` may name fields of the report request ([`out`]): each report then goes to
//! the destination its request gives, and the state, the export and a submit job's record
//! use that destination. The request of a `new-reports` report is its row in the report
//! list, of a `reports` report too (the list is fetched when such a job's `out` needs it), of
//! a submit job the body it posts. A report whose request cannot fill `out` fails on its own.
//!
//! An endpoint job (a configured endpoint, like `export url`) has no notion of "new": its data may change
//! between runs, so every run exports it again under the job's name, replacing the earlier
//! export through the ordinary commit.
//!
//! `--sandbox` (or `sandbox = true`) starts one in-process sandbox for the whole run, so a
//! report submitted by one job is the same report the export reads.

mod dates;
pub mod file;
pub mod out;
pub mod shard;
pub mod state;
pub mod submit;
pub mod summary;

use std::collections::{HashMap, HashSet};
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
use crate::settings::{Api, ExportSettings, ExportSource, Flags, Output, checked, field, output};
use crate::signals::Signal;
use crate::sink::Destination;
use crate::source::client::{ApiClient, Limits};
use crate::source::reports::{ReportFields, ReportRequest};
use file::{Job, JobKind, JobsFile, SubmitSpec};
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

/// One unit of work: what to export and where.
struct Unit {
    target: Target,
    /// The job's output for it, or why the job's `out` gives it no destination.
    output: std::result::Result<Output, String>,
}

/// The planned work of one job, or why it could not be planned.
type Plan = std::result::Result<Vec<Unit>, String>;

/// The completed report requests, or why they could not be read.
type Requests = std::result::Result<Vec<ReportRequest>, String>;

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
        let needs_list = self.settings.jobs.iter().any(|job| match job.kind {
            JobKind::NewReports(_) => true,
            JobKind::Reports(_) => job.output.has_fields(),
            _ => false,
        });
        let listing: Option<Requests> = if needs_list {
            Some(self.completed_requests().await.map_err(|e| e.to_string()))
        } else {
            None
        };
        let mut plans = Vec::new();
        // Two exports of one report into one destination at once would retire each other's
        // files: a report an earlier unit of the run exports into the same destination is left
        // to that unit.
        let mut claimed = HashSet::new();
        for job in &self.settings.jobs {
            let plan = self.plan_job(job, listing.as_ref()).await;
            plans.push(plan.map(|units| {
                units
                    .into_iter()
                    .filter(|unit| self.settings.shard.owns(&shard_key(job, &unit.target)))
                    .filter(|unit| claim(&mut claimed, job, unit))
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

    /// The units of one job: its reports with their outputs, minus those already exported.
    async fn plan_job(&self, job: &Job, listing: Option<&Requests>) -> Plan {
        let mut outputs = job.output.resolver();
        let mut report = |id: &str, fields: &Map<String, Value>| Unit {
            target: Target::Report(id.to_owned()),
            output: outputs
                .resolve(fields, &format!("report {id}"))
                .map_err(|e| e.to_string()),
        };
        let units = match &job.kind {
            JobKind::Reports(ids) if job.output.has_fields() => {
                let listing = listed(listing)?;
                ids.iter()
                    .map(
                        |id| match listing.iter().find(|r| r.id.as_deref() == Some(id)) {
                            Some(request) => report(id, &request.fields),
                            None => unlisted(job, id),
                        },
                    )
                    .collect()
            }
            JobKind::Reports(ids) => ids.iter().map(|id| report(id, &Map::new())).collect(),
            JobKind::NewReports(filter) => matching(listed(listing)?, filter)
                .map(|(id, request)| report(id, &request.fields))
                .collect(),
            JobKind::ReportList => return Ok(vec![fixed_unit(job, Target::ReportList)]),
            JobKind::Endpoint(_) => {
                return Ok(vec![fixed_unit(job, Target::Endpoint(job.name.clone()))]);
            }
            JobKind::Submit(spec) => return self.plan_submit(job, spec).await,
        };
        self.unexported(job, units).await
    }

    /// `units` without the reports already exported into their destination. The state of each
    /// destination is read once; a job whose `out` has no placeholders reads (and so checks) its
    /// destination even when it has no reports.
    async fn unexported(&self, job: &Job, units: Vec<Unit>) -> Plan {
        if self.settings.full_refresh {
            return Ok(units);
        }
        let mut exported: HashMap<String, HashSet<String>> = HashMap::new();
        let outputs = job
            .output
            .fixed()
            .into_iter()
            .chain(units.iter().filter_map(|unit| unit.output.as_ref().ok()));
        for output in outputs {
            let dest = &output.destination;
            if !exported.contains_key(dest.display()) {
                let reports = state::exported_reports(dest, output.table_format)
                    .await
                    .map_err(|e| e.to_string())?;
                exported.insert(dest.display().to_owned(), reports);
            }
        }
        Ok(units
            .into_iter()
            .filter(|unit| match (&unit.target, &unit.output) {
                (Target::Report(id), Ok(output)) => !exported
                    .get(output.destination.display())
                    .is_some_and(|done| done.contains(id)),
                _ => true,
            })
            .collect())
    }

    /// A submit job: its request (and so its destination) is known before it is posted.
    /// Nothing to do once the report of the same request is exported; a report an earlier run
    /// submitted is waited for.
    async fn plan_submit(&self, job: &Job, spec: &SubmitSpec) -> Plan {
        let unit = |target, output: &Output| {
            Ok(vec![Unit {
                target,
                output: Ok(output.clone()),
            }])
        };
        let output = match job
            .output
            .resolver()
            .resolve(&spec.request, "this submit job")
        {
            Ok(output) => output,
            Err(e) => {
                return Ok(vec![Unit {
                    target: Target::Submit,
                    output: Err(e.to_string()),
                }]);
            }
        };
        if self.settings.full_refresh {
            return unit(Target::Submit, &output);
        }
        let dest = &output.destination;
        let exported = state::exported_reports(dest, output.table_format)
            .await
            .map_err(|e| e.to_string())?;
        let last = state::read_submission(dest, &job.name)
            .await
            .map_err(|e| e.to_string())?;
        match last {
            Some(last) if last.request_hash == state::request_hash(&spec.request) => {
                if exported.contains(&last.report_id) {
                    Ok(Vec::new())
                } else {
                    unit(Target::Await(last.report_id), &output)
                }
            }
            _ => unit(Target::Submit, &output),
        }
    }

    /// Runs every planned unit. Exports run up to the run's concurrency at once; waits for
    /// submitted reports do not take a slot, so a slow report never holds up the others.
    async fn execute(&self, plans: &[Plan], started: Instant) -> Result<Vec<JobOutcome>> {
        let units: Vec<(usize, &Unit)> = plans
            .iter()
            .enumerate()
            .filter_map(|(job, plan)| plan.as_ref().ok().map(|units| (job, units)))
            .flat_map(|(job, units)| units.iter().map(move |unit| (job, unit)))
            .collect();
        let slots = Semaphore::new(self.settings.concurrency);
        let results: Vec<UnitResult> = join_all(units.into_iter().map(|(job, unit)| {
            let slots = &slots;
            async move {
                let result = self.run_unit(&self.settings.jobs[job], unit, slots).await;
                UnitResult {
                    job,
                    target: unit.target.clone(),
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
        unit: &Unit,
        slots: &Semaphore,
    ) -> std::result::Result<ExportSummary, Stopped> {
        let output = unit.output.clone().map_err(Error::Usage)?;
        let source = match &unit.target {
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
            target @ (Target::Submit | Target::Await(_)) => {
                let id = tokio::select! {
                    id = self.submit_and_wait(job, target, &output.destination) => id?,
                    signal = self.interrupt.clone() => return Err(Stopped::Interrupted(signal)),
                };
                ExportSource::CompletedReports(vec![id])
            }
        };
        let settings = ExportSettings {
            api: self.api.clone(),
            source,
            output,
            transforms: job.transforms.clone(),
            concurrency: 1,
        };
        let _slot = slots
            .acquire()
            .await
            .map_err(|e| Error::Internal(format!("export slots: {e}")))?;
        pipeline::export_until(&settings, self.interrupt.clone()).await
    }

    /// Submits the job's request (or picks up the one an earlier run submitted) and waits until
    /// it is completed; returns its report id. The submission is recorded in `dest`.
    async fn submit_and_wait(
        &self,
        job: &Job,
        target: &Target,
        dest: &Destination,
    ) -> Result<String> {
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
                dest.check().await?;
                let id = submit::submit(&self.client, &spec.request, fields).await?;
                tracing::info!(job = %job.name, report = %id, "submitted a report request");
                let record = state::Submission {
                    request_hash: state::request_hash(&spec.request),
                    report_id: id.clone(),
                    submitted_at: chrono::Utc::now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                };
                state::write_submission(dest, &job.name, &record).await?;
                id
            }
        };
        submit::wait_until_completed(&self.client, &id, spec, fields).await?;
        Ok(id)
    }
}

/// The one unit of a job without a report request (its `out` has no placeholders).
fn fixed_unit(job: &Job, target: Target) -> Unit {
    let output = job.output.fixed().cloned().ok_or_else(|| {
        format!(
            "job {:?}: out names fields, but the job has no report request",
            job.name
        )
    });
    Unit { target, output }
}

/// The unit of a given report the report list lacks, when `out` needs its request.
fn unlisted(job: &Job, id: &str) -> Unit {
    let error = job
        .output
        .unknown_request(id, "is not a completed report of the report list");
    Unit {
        target: Target::Report(id.to_owned()),
        output: Err(error.to_string()),
    }
}

/// The completed requests a job needs, or why the run could not read them.
fn listed(listing: Option<&Requests>) -> std::result::Result<&[ReportRequest], String> {
    match listing {
        Some(Ok(requests)) => Ok(requests),
        Some(Err(e)) => Err(e.clone()),
        None => Err("the report list was not fetched".into()),
    }
}

/// The requests in `listing` whose fields equal every entry of `filter`, with their ids.
fn matching<'a>(
    listing: &'a [ReportRequest],
    filter: &'a Map<String, Value>,
) -> impl Iterator<Item = (&'a str, &'a ReportRequest)> {
    listing
        .iter()
        .filter(|request| request.matches(filter))
        .filter_map(|request| Some((request.id.as_deref()?, request)))
}

/// Claims a unit's report in its destination: `false` when an earlier unit of the run has it.
fn claim(claimed: &mut HashSet<(String, String)>, job: &Job, unit: &Unit) -> bool {
    let (Target::Report(id) | Target::Endpoint(id), Ok(output)) = (&unit.target, &unit.output)
    else {
        return true;
    };
    let first = claimed.insert((output.destination.display().to_owned(), id.clone()));
    if !first {
        tracing::warn!(job = %job.name, report = %id, "an earlier job exports this report into the same destination");
    }
    first
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
            let planned = plan
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|units| planned_reports(job, units));
            match planned {
                Ok(reports) => JobOutcome::planned(job, Ok(reports)),
                Err(e) => JobOutcome::planned(job, Err(&e)),
            }
        })
        .collect()
}

/// What a dry run lists for a job: its units, each logged with its destination, or the
/// errors of the units its `out` gives no destination.
fn planned_reports(job: &Job, units: &[Unit]) -> std::result::Result<Vec<String>, String> {
    let errors: Vec<String> = units
        .iter()
        .filter_map(|unit| {
            let error = unit.output.as_ref().err()?;
            Some(format!("{}: {error}", unit.target.label()))
        })
        .collect();
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(units
        .iter()
        .map(|unit| {
            let label = unit.target.label();
            if let Ok(output) = &unit.output {
                tracing::info!(job = %job.name, report = %label, out = %output.destination.display(), "would export");
            }
            label
        })
        .collect())
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
        let matching_ids =
            |listing: &[ReportRequest], filter: &Map<String, Value>| -> Vec<String> {
                matching(listing, filter)
                    .map(|(id, _)| id.to_owned())
                    .collect()
            };
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
