//! Every setting a user can give, with the name each source spells it by: the command line's
//! flag (or environment variable) and the jobs file's key. Checks name a field through an
//! [`super::Origin`], never by a literal flag, so one message serves both sources.

/// One setting: its command-line flag (or environment variable) and its jobs-file key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// How the command line spells it: `--out`, `KARGO_PASSWORD`, `URL`.
    pub flag: &'static str,
    /// How the jobs file spells it: `out`, `password_env`, `url`.
    pub key: &'static str,
}

const fn field(flag: &'static str, key: &'static str) -> Field {
    Field { flag, key }
}

// Connection.
pub const API_BASE: Field = field("--api-base", "api_base");
pub const AUTH_URL: Field = field("--auth-url", "auth_url");
pub const USERNAME: Field = field("KARGO_USERNAME", "username");
pub const USERNAME_ENV: Field = field("KARGO_USERNAME", "username_env");
pub const PASSWORD_ENV: Field = field("KARGO_PASSWORD", "password_env");
pub const PASSWORD_FILE: Field = field("--password-file", "password_file");
pub const TOKEN_ENV: Field = field("KARGO_TOKEN", "token_env");
pub const TOKEN_FILE: Field = field("--token-file", "token_file");
pub const SANDBOX: Field = field("--sandbox", "sandbox = true");
pub const RETRIES: Field = field("--retries", "retries");
pub const RETRY_MAX_TIME: Field = field("--retry-max-time", "retry_max_time_secs");
pub const MAX_REQUESTS_PER_SECOND: Field =
    field("--max-requests-per-second", "max_requests_per_second");

// The report list.
pub const ID_FIELD: Field = field("--id-field", "id_field");
pub const STATUS_FIELD: Field = field("--status-field", "status_field");
pub const COMPLETED_STATUS: Field = field("--completed-status", "completed_statuses");
pub const REPORT_IDS: Field = field("ID", "ids");

// Output.
pub const OUT: Field = field("--out", "out");
pub const PARTITION_BY: Field = field("--partition-by", "partition_by");
pub const COMPRESSION: Field = field("--compression", "compression");
pub const MAX_PARTITIONS: Field = field("--max-partitions", "max_partitions");
pub const CONCURRENCY: Field = field("--concurrency", "concurrency");
pub const ON_SCHEMA_CHANGE: Field = field("--on-schema-change", "on_schema_change");
pub const TABLE_FORMAT: Field = field("--table-format", "table_format");

// A configured endpoint.
pub const URL: Field = field("URL", "url");
pub const NAME: Field = field("--name", "name");
pub const METHOD: Field = field("--method", "method");
pub const QUERY: Field = field("--query", "query");
pub const HEADERS: Field = field("--header", "headers");
pub const HEADERS_ENV: Field = field("--header", "headers_env");
pub const BODY: Field = field("--body", "body");
pub const BODY_FILE: Field = field("--body", "body_file");
pub const DATA_PATH: Field = field("--data-path", "data_path");
pub const PAGINATE: Field = field("--paginate", "paginate");
pub const NEXT_PATH: Field = field("--next-path", "next_path");
pub const PAGE_PARAM: Field = field("--page-param", "page_param");
pub const PAGE_START: Field = field("--page-start", "page_start");
pub const OFFSET_PARAM: Field = field("--offset-param", "offset_param");
pub const LIMIT_PARAM: Field = field("--limit-param", "limit_param");
pub const LIMIT: Field = field("--limit", "limit");
pub const CURSOR_PATH: Field = field("--cursor-path", "cursor_path");
pub const CURSOR_PARAM: Field = field("--cursor-param", "cursor_param");
pub const TOTAL_PATH: Field = field("--total-path", "total_path");
pub const CONTENT_FORMAT: Field = field("--content-format", "content_format");

// The transforms of any export.
pub const SELECT: Field = field("--select", "select");
pub const RENAME: Field = field("--rename", "rename");
pub const CAST: Field = field("--cast", "cast");
pub const ADD_COLUMN: Field = field("--add-column", "add_column");
pub const ON_CAST_ERROR: Field = field("--on-cast-error", "on_cast_error");
