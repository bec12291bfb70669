//! The sandbox's "Submit Report": `POST /v1/reports` with a JSON object body (auth required)
//! creates a report request and answers 201 with it: the body's fields plus `id`, `status`
//! (`pending`), `created_at`, `row_count` and `synthetic.seed`. The request is listed by
//! `GET /v1/reports` from then on, as `pending` until [`SubmitOptions::complete_after`] has
//! passed, then `completed` (or `failed` with [`SubmitOptions::fail`]). Once completed,
//! `GET /v1/completed-reports/{id}` serves [`SubmitOptions::rows`] synthetic rows generated from
//! the seed (the same generator as `--synthetic`); before, it answers 409 like any report that
//! is not completed. A body that is not a JSON object (or over 64 KiB) is a 400.
//!
//! For the client's id reading, the answer and the list can name the id of submitted requests
//! differently ([`SubmitOptions::id_key`], e.g. `report_id`, `reportId` or a key no client
//! guesses) and make it an integer ([`SubmitOptions::numeric_ids`]: 1, 2, ... instead of
//! `rpt_sub0001`, ...).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::StatusCode;
use hyper::body::Incoming;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::data::Synthetic;
use super::render::{Reply, bad_request, json_reply};
use super::synthetic::SyntheticReport;

/// Largest request body read.
const MAX_BODY: usize = 64 * 1024;
/// Seed of the first submitted report; each further one takes the next.
const FIRST_SEED: u64 = 1000;

/// How submitted reports behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitOptions {
    /// How long a submitted report stays `pending`.
    pub complete_after: Duration,
    /// Submitted reports end as `failed` instead of `completed`.
    pub fail: bool,
    /// Rows of each completed submitted report.
    pub rows: u64,
    /// The key of a submitted request's id in the answer and the list (default `id`).
    pub id_key: String,
    /// Submitted requests' ids are integers (1, 2, ...) instead of `rpt_sub0001`, ...
    pub numeric_ids: bool,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        Self {
            complete_after: Duration::from_secs(2),
            fail: false,
            rows: 240,
            id_key: "id".into(),
            numeric_ids: false,
        }
    }
}

/// The report requests submitted to one sandbox.
pub(super) struct Submissions {
    options: SubmitOptions,
    entries: Mutex<Vec<Submission>>,
}

struct Submission {
    id: String,
    request: Map<String, Value>,
    at: Instant,
    created_at: String,
    report: SyntheticReport,
}

/// What `GET /v1/completed-reports/{id}` finds for a submitted id.
pub(super) enum Found {
    Completed(Synthetic),
    NotCompleted(&'static str),
}

impl Submissions {
    pub(super) fn new(options: SubmitOptions) -> Self {
        Self {
            options,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// `POST /v1/reports`.
    pub(super) async fn submit(&self, body: Incoming) -> Reply {
        let request = match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => {
                serde_json::from_slice::<Map<String, Value>>(&collected.to_bytes()).ok()
            }
            Err(_) => None,
        };
        let Some(request) = request else {
            return bad_request("expected a JSON object describing the report");
        };
        let listed = {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            let number = entries.len() as u64 + 1;
            let id = if self.options.numeric_ids {
                number.to_string()
            } else {
                format!("rpt_sub{number:04}")
            };
            let entry = Submission {
                id,
                request,
                at: Instant::now(),
                created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                report: SyntheticReport::new(self.options.rows, FIRST_SEED + number - 1),
            };
            let listed = self.listed_entry(&entry);
            entries.push(entry);
            listed
        };
        json_reply(StatusCode::CREATED, &listed)
    }

    /// Every submitted request as the report list shows it now.
    pub(super) fn listed(&self) -> Vec<Box<RawValue>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .iter()
            .filter_map(|entry| RawValue::from_string(self.listed_entry(entry).to_string()).ok())
            .collect()
    }

    /// The submitted report `id`, if there is one.
    pub(super) fn find(&self, id: &str) -> Option<Found> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.iter().find(|e| e.id == id)?;
        Some(match self.status(entry) {
            "completed" => Found::Completed(Synthetic {
                report: entry.report.clone(),
                rendered: None,
            }),
            other => Found::NotCompleted(other),
        })
    }

    fn status(&self, entry: &Submission) -> &'static str {
        match (
            entry.at.elapsed() >= self.options.complete_after,
            self.options.fail,
        ) {
            (false, _) => "pending",
            (true, false) => "completed",
            (true, true) => "failed",
        }
    }

    fn listed_entry(&self, entry: &Submission) -> Value {
        let mut listed = entry.request.clone();
        let status = self.status(entry);
        let id = match entry.id.parse::<u64>() {
            Ok(number) if self.options.numeric_ids => json!(number),
            _ => json!(entry.id),
        };
        listed.insert(self.options.id_key.clone(), id);
        listed.insert("status".into(), json!(status));
        listed.insert("created_at".into(), json!(entry.created_at));
        listed.insert("row_count".into(), json!(entry.report.rows()));
        listed.insert("synthetic".into(), json!({"seed": entry.report.seed()}));
        Value::Object(listed)
    }
}
