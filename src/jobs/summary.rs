//! What a run did, per job: a table on stdout and, with `--summary-json FILE`, the same as
//! JSON for schedulers. Errors are the crate's error messages, which never hold a secret.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::shard::Shard;
use super::{Job, Plan, Target};
use crate::drift::Drift;
use crate::error::{Error, Result};
use crate::pipeline::{ExportSummary, Stopped};

/// The outcome of a run.
#[derive(Debug, Serialize)]
pub struct RunSummary {
    pub jobs: Vec<JobOutcome>,
    pub dry_run: bool,
    #[serde(serialize_with = "shard_text")]
    pub shard: Shard,
    #[serde(rename = "seconds", serialize_with = "seconds")]
    pub elapsed: Duration,
}

/// One job's row.
#[derive(Debug, Serialize)]
pub struct JobOutcome {
    pub name: String,
    pub kind: &'static str,
    pub out: String,
    pub status: Status,
    /// Reports exported (or, in a dry run, to be exported), in plan order.
    pub reports: Vec<String>,
    pub rows: u64,
    pub files: usize,
    pub bytes: u64,
    /// From the start of the run until the job's last report was done.
    #[serde(rename = "seconds", serialize_with = "seconds")]
    pub duration: Duration,
    /// Every failure of the job, `; `-separated, each naming its report.
    pub error: Option<String>,
    /// Reports exported with a schema that differs from their destination's other reports,
    /// and how (`on_schema_change = "allow"` or `"evolve"`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub schema_drift: BTreeMap<String, Drift>,
    /// Other reports of the destination rewritten to the merged schema (`evolve`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rewritten: Vec<String>,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
    /// Dry run: nothing was done.
    Planned,
}

impl JobOutcome {
    fn empty(job: &Job, status: Status) -> Self {
        Self {
            name: job.name.clone(),
            kind: job.kind.name(),
            out: job.output.destination.display().to_string(),
            status,
            reports: Vec::new(),
            rows: 0,
            files: 0,
            bytes: 0,
            duration: Duration::ZERO,
            error: None,
            schema_drift: BTreeMap::new(),
            rewritten: Vec::new(),
        }
    }

    /// A dry run's row: the reports the job would export, or why it could not tell.
    pub(super) fn planned(job: &Job, plan: std::result::Result<Vec<String>, &String>) -> Self {
        match plan {
            Ok(reports) => Self {
                reports,
                ..Self::empty(job, Status::Planned)
            },
            Err(e) => Self {
                error: Some(e.clone()),
                ..Self::empty(job, Status::Failed)
            },
        }
    }

    /// A job's row from its plan and the results of its units.
    pub(super) fn from_results<'a>(
        job: &Job,
        plan: &Plan,
        results: impl Iterator<
            Item = (
                &'a Target,
                &'a std::result::Result<ExportSummary, Stopped>,
                Duration,
            ),
        >,
    ) -> Self {
        if let Err(e) = plan {
            return Self {
                error: Some(e.clone()),
                ..Self::empty(job, Status::Failed)
            };
        }
        let mut outcome = Self::empty(job, Status::Ok);
        let mut errors = Vec::new();
        for (target, result, finished) in results {
            outcome.duration = outcome.duration.max(finished);
            match result {
                Ok(summary) => {
                    outcome
                        .rewritten
                        .extend(summary.rewritten.iter().map(|r| r.report_id.clone()));
                    for report in &summary.reports {
                        if !report.schema_drift.is_empty() {
                            outcome
                                .schema_drift
                                .insert(report.report_id.clone(), report.schema_drift.clone());
                        }
                        outcome.reports.push(report.report_id.clone());
                        outcome.rows += report.rows;
                        outcome.files += report.files;
                        outcome.bytes += report.bytes;
                    }
                }
                Err(Stopped::Failed(e)) => errors.push(format!("{}: {e}", target.label())),
                Err(Stopped::Interrupted(signal)) => {
                    errors.push(format!("{}: interrupted ({signal})", target.label()))
                }
            }
        }
        if !errors.is_empty() {
            outcome.status = Status::Failed;
            outcome.error = Some(errors.join("; "));
        }
        outcome
    }
}

impl RunSummary {
    /// The run's result: `Ok` when no job failed, else [`Error::JobsFailed`] naming the first.
    pub fn result(&self) -> Result<()> {
        let failed: Vec<&JobOutcome> = self
            .jobs
            .iter()
            .filter(|j| j.status == Status::Failed)
            .collect();
        match failed.first() {
            None => Ok(()),
            Some(first) => Err(Error::JobsFailed {
                failed: failed.len(),
                total: self.jobs.len(),
                job: first.name.clone(),
                error: first.error.clone().unwrap_or_default(),
            }),
        }
    }

    /// The table printed on stdout.
    pub fn table(&self) -> String {
        let header = [
            "job", "kind", "status", "reports", "rows", "files", "bytes", "seconds", "error",
        ];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
        for job in &self.jobs {
            rows.push(vec![
                job.name.clone(),
                job.kind.to_string(),
                format!("{:?}", job.status).to_lowercase(),
                job.reports.len().to_string(),
                job.rows.to_string(),
                job.files.to_string(),
                job.bytes.to_string(),
                format!("{:.2}", job.duration.as_secs_f64()),
                job.error.clone().unwrap_or_default(),
            ]);
        }
        let mut out = crate::output::aligned(&rows);
        if self.dry_run {
            for job in &self.jobs {
                for report in &job.reports {
                    out.push_str(&format!(
                        "would export {report} (job {}) to {}\n",
                        job.name, job.out
                    ));
                }
            }
        }
        let failed = self
            .jobs
            .iter()
            .filter(|j| j.status == Status::Failed)
            .count();
        out.push_str(&format!(
            "{} jobs, {} failed{}{} in {:.2} s\n",
            self.jobs.len(),
            failed,
            if self.shard == Shard::ALL {
                String::new()
            } else {
                format!(", worker {}/{}", self.shard.index, self.shard.count)
            },
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            },
            self.elapsed.as_secs_f64()
        ));
        out
    }
}

/// Writes the summary as pretty JSON to `path`.
pub fn write_json(path: &Path, summary: &RunSummary) -> Result<()> {
    let json = serde_json::to_vec_pretty(summary)
        .map_err(|e| Error::Internal(format!("summary JSON: {e}")))?;
    std::fs::write(path, json).map_err(|e| Error::io(path.display(), e))
}

fn seconds<S: serde::Serializer>(
    duration: &Duration,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64((duration.as_secs_f64() * 1000.0).round() / 1000.0)
}

fn shard_text<S: serde::Serializer>(shard: &Shard, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}/{}", shard.index, shard.count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, status: Status, error: Option<&str>) -> JobOutcome {
        JobOutcome {
            name: name.into(),
            kind: "reports",
            out: "out".into(),
            status,
            reports: vec!["r1".into()],
            rows: 10,
            files: 2,
            bytes: 300,
            duration: Duration::from_millis(1500),
            error: error.map(str::to_owned),
            schema_drift: BTreeMap::new(),
            rewritten: Vec::new(),
        }
    }

    fn summary(jobs: Vec<JobOutcome>) -> RunSummary {
        RunSummary {
            jobs,
            dry_run: false,
            shard: Shard { index: 1, count: 3 },
            elapsed: Duration::from_secs(2),
        }
    }

    #[test]
    fn the_run_fails_when_a_job_failed_naming_the_first() {
        assert!(
            summary(vec![outcome("a", Status::Ok, None)])
                .result()
                .is_ok()
        );
        let run = summary(vec![
            outcome("a", Status::Ok, None),
            outcome("b", Status::Failed, Some("r1: boom")),
            outcome("c", Status::Failed, Some("r2: bang")),
        ]);
        assert_eq!(
            run.result().unwrap_err().to_string(),
            "2 of 3 jobs failed (job \"b\"): r1: boom"
        );
    }

    #[test]
    fn table_and_json_hold_every_job() {
        let run = summary(vec![
            outcome("a", Status::Ok, None),
            outcome("bb", Status::Failed, Some("r1: boom")),
        ]);
        assert_eq!(
            run.table(),
            "job  kind     status  reports  rows  files  bytes  seconds  error\n\
             a    reports  ok      1        10    2      300    1.50\n\
             bb   reports  failed  1        10    2      300    1.50     r1: boom\n\
             2 jobs, 1 failed, worker 1/3 in 2.00 s\n"
        );
        let json = serde_json::to_value(&run).unwrap();
        assert_eq!(json["shard"], "1/3");
        assert_eq!(json["seconds"], 2.0);
        assert_eq!(
            json["jobs"][1],
            serde_json::json!({
                "name": "bb", "kind": "reports", "out": "out", "status": "failed",
                "reports": ["r1"], "rows": 10, "files": 2, "bytes": 300, "seconds": 1.5,
                "error": "r1: boom",
            })
        );
    }
}
