//! The crate's one error type. Every variant carries the context a user needs to act on it
//! (URL without its query string, page number, row, column, path); `main` prints it as a single
//! `error: ...` line. Secrets never enter an error: URLs are stripped of their query string and
//! no variant holds a header, token or password.

use std::fmt;

/// Result with the crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a page came from: the URL (query string removed) and its 1-based page number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageLocation {
    /// URL of the page without its query string.
    pub url: String,
    /// 1-based page number within the export of one report.
    pub page: u64,
}

impl fmt::Display for PageLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, page {}", self.url, self.page)
    }
}

/// A row that could not be decoded, located inside its page (0-based row index within the page).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("row {row}, column {column:?}: {reason}")]
pub struct DecodeError {
    /// 0-based index of the row within the page.
    pub row: usize,
    /// Column (JSON key) that failed; empty when the row itself is not an object.
    pub column: String,
    /// What was wrong, e.g. "expected a JSON object, found a number".
    pub reason: String,
}

/// Everything that can go wrong in kargo-export.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid command line or settings (exit code 2).
    #[error("{0}")]
    Usage(String),

    /// Login failed or the API refused the credentials.
    #[error("authentication failed ({url}): {reason}")]
    Auth { url: String, reason: String },

    /// An HTTP request failed (transport error or non-success status).
    #[error("request failed ({at}): {reason}")]
    Http {
        at: PageLocation,
        status: Option<u16>,
        reason: String,
    },

    /// A page arrived but its body is not what was expected (not JSON, no rows at the data path,
    /// bad next link, pagination loop, next link to another origin).
    #[error("invalid page ({at}): {reason}")]
    Page { at: PageLocation, reason: String },

    /// The report list cannot be read as report requests (no recognisable id or status).
    #[error("invalid report list ({url}): {reason}")]
    ReportList { url: String, reason: String },

    /// A row in a page could not be decoded.
    #[error("cannot decode {source} ({at})")]
    Row {
        at: PageLocation,
        #[source]
        source: DecodeError,
    },

    /// A column's values could not be brought to the export's schema.
    #[error("schema conflict in column {column:?}: {reason}")]
    Schema { column: String, reason: String },

    /// A partition value or column that cannot be written as a Hive path segment.
    #[error("cannot partition by column {column:?}: {reason}")]
    Partition { column: String, reason: String },

    /// Reading or writing the destination failed.
    #[error("storage failed ({path}): {source}")]
    Storage {
        path: String,
        #[source]
        source: object_store::Error,
    },

    /// The destination cannot be used (checked before anything is fetched): a missing bucket,
    /// refused credentials, an unreachable endpoint.
    #[error("cannot use destination ({dest}): {reason}")]
    Destination { dest: String, reason: String },

    /// Parquet encoding failed.
    #[error("parquet write failed ({path}): {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// An Arrow kernel failed (cast, take, concat, IPC).
    #[error("arrow failed ({context}): {source}")]
    Arrow {
        context: String,
        #[source]
        source: arrow::error::ArrowError,
    },

    /// Local file I/O failed (spool files, password file, sandbox data).
    #[error("i/o failed ({path}): {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// The sandbox could not start or its data is invalid.
    #[error("sandbox: {0}")]
    Sandbox(String),

    /// The export was stopped by a signal; everything it had staged was removed.
    #[error("interrupted ({signal})")]
    Interrupted { signal: String, exit_code: u8 },

    /// The export's schema differs from the other reports of its destination and the policy
    /// (`--on-schema-change`) refuses it; nothing was published.
    #[error(
        "the schema of {reports} differs from the other reports in {dest}: {differences}; {hint}"
    )]
    SchemaDrift {
        reports: String,
        dest: String,
        differences: String,
        hint: String,
    },

    /// The export's schema does not fit the Delta table it goes to; nothing was published.
    #[error(
        "the schema of {reports} does not fit the Delta table {table}: {differences}; nothing was \
         published; a Delta table keeps its column types and partition columns: export into a \
         table of its own (another --out) or delete this one to start over"
    )]
    DeltaSchema {
        reports: String,
        table: String,
        differences: String,
    },

    /// Reading or committing a Delta table failed.
    #[error("delta table {table}: {message}")]
    Delta { table: String, message: String },

    /// `inspect`: the reports of a destination do not all have the same schema (the
    /// differences were printed on stdout).
    #[error(
        "{dest} is not uniform: its {reports} reports do not all have the same columns, types \
         and partition columns (differences on stdout)"
    )]
    NotUniform { dest: String, reports: usize },

    /// A submitted report request failed, or did not complete in time.
    #[error("report request {id}: {reason}")]
    Submit { id: String, reason: String },

    /// Some jobs of `run` failed (the others completed); `error` is the first job's failure.
    #[error("{failed} of {total} jobs failed (job {job:?}): {error}")]
    JobsFailed {
        failed: usize,
        total: usize,
        job: String,
        error: String,
    },

    /// `check`: a step failed (login, page, data path, columns or destination); the steps
    /// before it passed, the ones after it did not run, and nothing was left behind.
    #[error("check failed at the {step} step ({at}): {reason}")]
    Check {
        step: &'static str,
        at: String,
        reason: String,
    },

    /// A bug: a worker task panicked or was cancelled.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Process exit code for this error: 2 for usage errors, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Interrupted { exit_code, .. } => *exit_code,
            _ => 1,
        }
    }

    /// Wraps an Arrow error with a short description of what was being done.
    pub fn arrow(context: impl Into<String>, source: arrow::error::ArrowError) -> Self {
        Error::Arrow {
            context: context.into(),
            source,
        }
    }

    /// Wraps an I/O error with the path involved.
    pub fn io(path: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }
}

/// Renders a URL without its query string and fragment, for errors and logs.
pub fn redact_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    shown.to_string()
}
