//! Submit and wait: request a new report with `POST /v1/reports`, then look at the report list
//! until that request is completed. The id in the answer and the status in the list are read
//! like every report request ([`crate::source::reports`], with the run's [`ReportFields`]). The
//! wait is bounded (the job's `wait_timeout_secs`) and backs off (the pause grows by half each
//! time, up to [`MAX_POLL_INTERVAL`]). A request whose status becomes `failed`, `error` or
//! `cancelled`, or that disappears from the list, ends the wait with an [`Error::Submit`] naming
//! it. Exporting the completed report is the pipeline's job.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::file::SubmitSpec;
use crate::error::{Error, PageLocation, Result};
use crate::session::report_requests;
use crate::source::client::ApiClient;
use crate::source::reports::{self, ReportFields};

/// Longest pause between two looks at the report list.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// Posts `request` and returns the id the API gave the new report request.
pub async fn submit(
    client: &ApiClient,
    request: &Map<String, Value>,
    fields: &ReportFields,
) -> Result<String> {
    let url = client.endpoint(&["v1", "reports"]);
    let at = PageLocation {
        url: crate::error::redact_url(&url),
        page: 1,
    };
    let body = Value::Object(request.clone()).to_string();
    let answer = client.post_json(&url, Bytes::from(body), &at).await?;
    let answer: Value = serde_json::from_slice(&answer).map_err(|e| Error::Page {
        at: at.clone(),
        reason: format!("the answer to the report request is not JSON: {e}"),
    })?;
    reports::submitted_id(&answer, fields).map_err(|reason| Error::Page { at, reason })
}

/// Polls the report list until request `id` is completed; fails when it fails, vanishes or
/// is still not completed after `spec.wait_timeout`.
pub async fn wait_until_completed(
    client: &ApiClient,
    id: &str,
    spec: &SubmitSpec,
    fields: &ReportFields,
) -> Result<()> {
    let started = Instant::now();
    let mut pause = spec.poll_interval;
    loop {
        let status = status_of(client, id, fields).await?;
        match status.as_deref() {
            Some(done) if fields.is_completed(done) => return Ok(()),
            Some(failed) if fields.is_failed(failed) => {
                return Err(Error::Submit {
                    id: id.to_string(),
                    reason: format!("the API reports status {failed:?}"),
                });
            }
            None => {
                return Err(Error::Submit {
                    id: id.to_string(),
                    reason: "not in the report list".into(),
                });
            }
            Some(waiting) => {
                let remaining = spec.wait_timeout.saturating_sub(started.elapsed());
                if remaining.is_zero() {
                    return Err(Error::Submit {
                        id: id.to_string(),
                        reason: format!(
                            "still {waiting:?} after {:.1} s (wait_timeout_secs = {})",
                            started.elapsed().as_secs_f64(),
                            spec.wait_timeout.as_secs_f64()
                        ),
                    });
                }
                tracing::info!(report = id, status = waiting, "waiting for the report");
                // The last pause ends at the deadline, for one last look.
                tokio::time::sleep(pause.min(remaining)).await;
                pause = pause.mul_f64(1.5).min(MAX_POLL_INTERVAL);
            }
        }
    }
}

/// Whether report request `id` is listed and has not failed: worth waiting for.
pub async fn may_complete(client: &ApiClient, id: &str, fields: &ReportFields) -> Result<bool> {
    Ok(status_of(client, id, fields)
        .await?
        .is_some_and(|status| !fields.is_failed(&status)))
}

/// The status of report request `id` in the list (`""` when it has none), or `None` when the
/// list does not hold it.
async fn status_of(client: &ApiClient, id: &str, fields: &ReportFields) -> Result<Option<String>> {
    let requests = report_requests(client, fields)
        .await?
        .with_statuses(fields)?;
    Ok(requests
        .into_iter()
        .find(|request| request.id.as_deref() == Some(id))
        .map(|request| request.status.unwrap_or_default()))
}
