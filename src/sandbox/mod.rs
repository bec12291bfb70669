//! A Kargo-compatible Data Sharing API over bundled sample data, to try the tool without
//! credentials and to give the integration tests a real HTTP partner.
//!
//! It owns the HTTP server (hyper 1, HTTP/1.1 with keep-alive, one task per connection, graceful
//! shutdown), the token store, the routes, pagination and page rendering. It does not share code
//! with [`crate::source`]: the sandbox plays the remote side, so a bug in the client cannot hide
//! behind the same bug in the server.
//!
//! The API:
//! - `POST /v1/auth/token` with `{"username": .., "password": ..}` answers
//!   `{"access_token", "token_type": "Bearer", "expires_in"}`; wrong credentials 401
//!   `{"error": "invalid_credentials"}`; a body that is not that JSON (or over 64 KiB) 400.
//! - Every other route needs `Authorization: Bearer <token>` of an issued, unexpired token, else
//!   401 `{"error": "invalid_token"}`. Routes are matched before the token is checked, so an
//!   unknown path is 404 and a wrong method 405 even without a token.
//! - `GET /v1/reports` lists the report requests; `POST /v1/reports` submits a new one, which
//!   completes after a delay ([`submit`]); `GET /v1/completed-reports/{id}` serves a
//!   completed report's rows: 404 `{"error": "report not found"}` for an id that is neither in
//!   `reports.json` nor has a data file, 409 `{"error": "report not completed", "status": ..}` for
//!   a listed report without a data file (pending or failed).
//! - Both answer `{"data": {"rows": [..]}, "links": {"next": URL}}`, paginated by the query
//!   parameters `page` (1-based) and `page_size` (default [`SandboxOptions::page_size`], above
//!   [`MAX_PAGE_SIZE`], or above the default when that is larger, clamped to it: a large default
//!   serves huge pages for benchmarks). A page past the end has no rows and no next link; `page` or
//!   `page_size` that is not a positive integer is 400. How the next link is written and how the
//!   last page says "no more" are options ([`LinkStyle`], [`LastLink`]), because real servers
//!   differ and the client must handle each way.
//!
//! `GET|POST /v1/test/rows` ([`test_rows`]) serves a completed report's rows in every pagination
//! kind and content format, in a page shape of its own, for configured endpoints.
//!
//! Rows are kept as raw JSON and written back byte for byte, so tests can compare exported values
//! with the exact source text (`1.50` stays `1.50`) and can serve odd rows on purpose.
//!
//! Synthetic reports ([`synthetic`], `--synthetic ID=ROWS`) are served the same way: rows
//! generated from a seed instead of read from a file, listed in `GET /v1/reports` as completed.
//! They exist for benchmarks, so serving them must cost the sandbox next to no CPU:
//! [`SandboxData::add_synthetic`] renders every page for one page size up front (the default
//! `--page-size`, which the sandbox's own next links repeat), and a request for it is answered
//! with that page's shared [`Bytes`] plus a small links tail, written without copying. Other page
//! sizes are rendered on demand. The rows' order ([`synthetic::Order`]) is part of the report.
//!
//! [`Bytes`]: bytes::Bytes
//!
//! Gzip ([`SandboxOptions::gzip`], `--gzip`, off by default): synthetic report pages (and
//! submitted reports' pages) are answered `Content-Encoding: gzip` to requests whose
//! `Accept-Encoding` accepts gzip, and identity bytes to the others (with `Vary:
//! Accept-Encoding` on both). [`Prerender::gzip`] compresses the pre-rendered pages up front
//! too, on all cores, as the start of a gzip member flushed to a byte boundary; a request only
//! appends its links tail as a stored deflate block and the trailer (CRC-32 continued over the
//! tail, length), so serving them costs no compression. Pages rendered on demand are compressed
//! on demand. Other answers are never compressed. An injected cut-off or broken page cuts the
//! compressed bytes.
//!
//! Requests are logged with `tracing::debug` (method, path and query, status, time); headers and
//! bodies never are, so neither the password nor a token reaches a log.
//!
//! Fault injection, for testing the client's retries (all off by default, [`Faults`]): the first
//! N authorized requests to completed-report pages answer an error status (503 unless told
//! otherwise) with `Retry-After: 0` (unless told otherwise), and every Nth page answer (report
//! list or completed report) is cut off mid-body: its `Content-Length` promises the whole page,
//! half of it is sent, then the connection is closed. Every Nth page answer may instead be a
//! complete 200 whose JSON is broken (only the first half of the page, with a `Content-Length`
//! that matches), and the first N completed-report requests may get no answer at all for
//! [`STALL`]. Two link faults play a hostile or buggy server: next links on another origin
//! (`--next-origin`), and page N linking back to page 1 (`--loop-at`). Chosen requests of any
//! route (`--fail-request [PATH:]N`: the Nth authorized request, or the Nth to PATH) answer the
//! error status too, e.g. `429` with `Retry-After: 1` (`--retry-after`), and a request log
//! ([`request_log`]) shows when each request arrived.
//!
//! Layout: `options.rs` holds what a sandbox serves and how ([`SandboxOptions`], [`Faults`], the
//! link styles, the default credentials); `data.rs` the data it serves ([`SandboxData`], loading,
//! synthetic reports' pre-rendered pages); `server.rs` the listener, the connections and the
//! state that answers each request (tokens, faults, pages and their next links); `routes.rs` what
//! a request asks for (route, page, page size); `render.rs` the page bodies and the replies they
//! go out in; `gzip.rs` the gzip answers. [`test_rows`], [`submit`], [`synthetic`] and
//! [`request_log`] are as described above.

mod data;
mod gzip;
mod options;
mod render;
pub mod request_log;
mod routes;
mod server;
pub mod submit;
pub mod synthetic;
pub mod test_rows;
#[cfg(test)]
mod testing;

pub use data::{Prerender, SandboxData};
pub use options::{
    FailRequest, Faults, LastLink, LinkStyle, MAX_PAGE_SIZE, SANDBOX_PASSWORD, SANDBOX_USERNAME,
    STALL, SandboxOptions,
};
pub use render::{render_page, render_synthetic_page};
pub use server::run;
