//! Page bodies and replies: the API's page shape `{"data":{"rows":[..]},"links":{..}}` written
//! from rows' raw JSON or from a synthetic report ([`render_page`], [`render_synthetic_page`]),
//! and the replies every handler answers with: a body of ready chunks with an exact length
//! (which the cut-off and broken-page faults shorten), JSON errors. It does not compress
//! (`gzip.rs`) nor choose the page, its next link or the faults (`server.rs`).

use std::convert::Infallible;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;
use serde_json::value::RawValue;

use super::options::LastLink;
use super::synthetic::SyntheticReport;

pub(super) type Reply = Response<Chunks>;

/// A response body of ready chunks (a pre-rendered page and its links tail), handed to hyper
/// as they are: no copy, and an exact length for `Content-Length`.
pub(super) struct Chunks {
    chunks: std::collections::VecDeque<Bytes>,
    remaining: u64,
}

impl Chunks {
    fn new(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        let chunks: std::collections::VecDeque<Bytes> =
            chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        Self { chunks, remaining }
    }

    /// Keeps the first half of the bytes but still announces the whole length, so hyper sends
    /// a `Content-Length` for all of it, runs out of body and closes the connection.
    pub(super) fn truncate_half(&mut self) {
        let mut keep = self.remaining / 2;
        let mut kept = std::collections::VecDeque::new();
        while keep > 0
            && let Some(mut chunk) = self.chunks.pop_front()
        {
            let take = (chunk.len() as u64).min(keep);
            kept.push_back(chunk.split_to(take as usize));
            keep -= take;
        }
        self.chunks = kept;
    }

    /// Keeps the first half of the bytes and announces only those: a complete answer whose
    /// content is cut short.
    pub(super) fn cut_half(&mut self) {
        self.truncate_half();
        self.remaining = self.chunks.iter().map(|c| c.len() as u64).sum();
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.chunks.pop_front().map(|chunk| {
            this.remaining -= chunk.len() as u64;
            Ok(Frame::data(chunk))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

const PAGE_HEAD: &str = r#"{"data":{"rows":["#;
const ROWS_END: &str = r#"]},"links":"#;

/// The page body the sandbox serves for `rows` (their original bytes):
/// `{"data":{"rows":[..]},"links":{..}}`, with `next` as the next link, or the end of the
/// listing written as `last` says.
pub fn render_page(rows: &[Box<RawValue>], next: Option<&str>, last: LastLink) -> String {
    let rows_len: usize = rows.iter().map(|row| row.get().len() + 1).sum();
    let mut body = String::with_capacity(rows_len + 64 + next.map_or(0, str::len));
    body.push_str(PAGE_HEAD);
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(row.get());
    }
    body.push_str(ROWS_END);
    body.push_str(&links_tail(next, last));
    body
}

/// The page body the sandbox serves for rows `rows` of a synthetic report, like
/// [`render_page`].
pub fn render_synthetic_page(
    report: &SyntheticReport,
    rows: Range<u64>,
    next: Option<&str>,
    last: LastLink,
) -> String {
    let mut body = synthetic_head(report, rows);
    body.push_str(&links_tail(next, last));
    body
}

/// `{"data":{"rows":[..]},"links":` for rows `rows` of a synthetic report.
pub(super) fn synthetic_head(report: &SyntheticReport, rows: Range<u64>) -> String {
    // ~490 bytes a row; one spare row avoids a reallocation for most pages.
    let estimate = (rows.end.saturating_sub(rows.start) as usize + 1) * 520;
    let mut body = String::with_capacity(estimate + PAGE_HEAD.len() + ROWS_END.len());
    body.push_str(PAGE_HEAD);
    report.write_rows(rows, &mut body);
    body.push_str(ROWS_END);
    body.shrink_to_fit();
    body
}

/// The value of `"links"` and the closing brace: `{"next":URL}}`, or the end of the listing.
pub(super) fn links_tail(next: Option<&str>, last: LastLink) -> String {
    match (next, last) {
        (Some(url), _) => format!(r#"{{"next":{}}}}}"#, serde_json::Value::from(url)),
        (None, LastLink::Absent) => "{}}".to_owned(),
        (None, LastLink::Null) => r#"{"next":null}}"#.to_owned(),
        (None, LastLink::Empty) => r#"{"next":""}}"#.to_owned(),
    }
}

pub(super) fn bad_request(message: &str) -> Reply {
    json_reply(
        StatusCode::BAD_REQUEST,
        &json!({"error": "invalid_request", "message": message}),
    )
}

pub(super) fn json_reply(status: StatusCode, body: &serde_json::Value) -> Reply {
    reply(status, body.to_string())
}

fn reply(status: StatusCode, body: String) -> Reply {
    chunks_reply(status, [Bytes::from(body)])
}

pub(super) fn chunks_reply(status: StatusCode, chunks: impl IntoIterator<Item = Bytes>) -> Reply {
    let mut reply = Response::new(Chunks::new(chunks));
    *reply.status_mut() = status;
    let json = HeaderValue::from_static("application/json");
    reply.headers_mut().insert(header::CONTENT_TYPE, json);
    reply
}
