//! The sandbox's request log (`--request-log FILE`): one JSON line per request, written as its
//! answer's head is ready, so tests can check from the server's side when requests arrived (a
//! client that was asked to back off sent nothing for that long; a rate limit held). Each line:
//!
//! ```json
//! {"at": 1.204518, "done": 1.204733, "method": "GET", "path": "/v1/completed-reports/x", "query": "page=3", "status": 429}
//! ```
//!
//! `at` (arrival) and `done` (answer ready) are seconds since the log was opened, on a
//! monotonic clock. Headers and bodies are never written, so neither the password nor a token
//! reaches the file. Each line is one `write` to a file opened for appending: a line is on disk
//! before its answer is sent.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use hyper::{Method, Uri};
use serde_json::json;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// An open request log.
#[derive(Debug)]
pub struct RequestLog {
    file: Mutex<File>,
    opened: Instant,
}

impl RequestLog {
    /// Creates (or truncates) the log at `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| {
            Error::Usage(format!(
                "--request-log: cannot create {}: {e}",
                path.display()
            ))
        })?;
        Ok(RequestLog {
            file: Mutex::new(file),
            opened: Instant::now(),
        })
    }

    /// Writes the line of a request that arrived at `arrived` and is answered with `status`
    /// now. A failed write is logged, never an error: the log is a test aid.
    pub fn record(&self, arrived: Instant, method: &Method, uri: &Uri, status: u16) {
        let seconds = |at: Instant| (at - self.opened).as_secs_f64();
        let mut line = json!({
            "at": seconds(arrived),
            "done": seconds(Instant::now()),
            "method": method.as_str(),
            "path": uri.path(),
            "query": uri.query().unwrap_or(""),
            "status": status,
        })
        .to_string();
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = file.write_all(line.as_bytes()) {
            tracing::warn!(error = %e, "sandbox: cannot write the request log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_with_times_and_no_headers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requests.jsonl");
        let log = RequestLog::create(&path).unwrap();
        let uri: Uri = "/v1/reports?page=2".parse().unwrap();
        log.record(Instant::now(), &Method::GET, &uri, 429);
        log.record(
            Instant::now(),
            &Method::POST,
            &"/v1/auth/token".parse().unwrap(),
            200,
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["path"], "/v1/reports");
        assert_eq!(lines[0]["query"], "page=2");
        assert_eq!(lines[0]["status"], 429);
        assert_eq!(lines[1]["method"], "POST");
        assert!(lines[0]["at"].as_f64().unwrap() <= lines[0]["done"].as_f64().unwrap());
        assert!(lines[0]["done"].as_f64().unwrap() <= lines[1]["at"].as_f64().unwrap());
    }
}
