//! Flags of a configured endpoint (`export url`, `schema url`): the request, where the rows
//! are, how pages follow and the content format (the transforms are every export's,
//! [`super::transform`]). The dispatch turns them into a
//! [`crate::settings::endpoint::EndpointInput`]; its defaults are the settings' own.

use clap::{Args, ValueEnum};

use crate::settings::endpoint::{
    DEFAULT_CURSOR_PARAM, DEFAULT_DATA_PATH, DEFAULT_LIMIT, DEFAULT_LIMIT_PARAM, DEFAULT_METHOD,
    DEFAULT_NEXT_PATH, DEFAULT_OFFSET_PARAM, DEFAULT_PAGE_PARAM, DEFAULT_PAGE_START,
};

/// The request and the page shape of `export url` / `schema url`. Its `Debug`
/// leaves out header values and the body, which may hold secrets.
#[derive(Args)]
pub struct EndpointArgs {
    /// The first page: an absolute URL on the API base's origin, or a path resolved against
    /// the API base (e.g. /v1/reports).
    pub url: String,

    /// Name of the dataset in file names and the manifest [default: the URL's last path segment].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// HTTP method.
    #[arg(long, default_value = DEFAULT_METHOD, help_heading = "Request")]
    pub method: String,

    /// Query parameter added to the URL (repeatable).
    #[arg(long, value_name = "K=V", value_parser = key_value, help_heading = "Request")]
    pub query: Vec<(String, String)>,

    /// Header sent with every page (repeatable). Values are treated as secrets: never logged.
    #[arg(long, value_name = "'K: V'", help_heading = "Request")]
    pub header: Vec<String>,

    /// JSON request body, or @FILE to read it from a file.
    #[arg(long, value_name = "JSON|@FILE", help_heading = "Request")]
    pub body: Option<String>,

    /// Where the rows are in a JSON page (JSONPath: $, .key, ['key'], [*], [N]).
    #[arg(long, default_value = DEFAULT_DATA_PATH, help_heading = "Pages")]
    pub data_path: String,

    /// How pages follow.
    #[arg(long, value_enum, default_value_t = PaginateArg::Next, help_heading = "Pages")]
    pub paginate: PaginateArg,

    /// next: where the next page's URL is in a page.
    #[arg(long, default_value = DEFAULT_NEXT_PATH, help_heading = "Pages")]
    pub next_path: String,

    /// page: the query parameter holding the page number.
    #[arg(long, default_value = DEFAULT_PAGE_PARAM, help_heading = "Pages")]
    pub page_param: String,

    /// page: the first page's number.
    #[arg(long, default_value_t = DEFAULT_PAGE_START, help_heading = "Pages")]
    pub page_start: i64,

    /// offset: the query parameter holding the offset of the first row.
    #[arg(long, default_value = DEFAULT_OFFSET_PARAM, help_heading = "Pages")]
    pub offset_param: String,

    /// offset: the query parameter holding the page size.
    #[arg(long, default_value = DEFAULT_LIMIT_PARAM, help_heading = "Pages")]
    pub limit_param: String,

    /// offset: the page size asked for.
    #[arg(long, default_value_t = DEFAULT_LIMIT, help_heading = "Pages")]
    pub limit: i64,

    /// cursor: where the next page's cursor is in a page (required for --paginate cursor).
    #[arg(long, help_heading = "Pages")]
    pub cursor_path: Option<String>,

    /// cursor: the query parameter the cursor is sent in.
    #[arg(long, default_value = DEFAULT_CURSOR_PARAM, help_heading = "Pages")]
    pub cursor_param: String,

    /// Where a page states the total number of rows; the export ends once that many are read.
    #[arg(long, help_heading = "Pages")]
    pub total_path: Option<String>,

    /// How pages are written [default: from each answer's Content-Type, JSON when unknown].
    #[arg(long, value_enum, help_heading = "Pages")]
    pub content_format: Option<ContentFormatArg>,
}

impl std::fmt::Debug for EndpointArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self
            .header
            .iter()
            .map(|h| h.split_once(':').map_or("?", |(name, _)| name.trim()))
            .collect();
        f.debug_struct("EndpointArgs")
            .field("url", &self.url)
            .field("method", &self.method)
            .field("header_names", &header_names)
            .field("data_path", &self.data_path)
            .field("paginate", &self.paginate)
            .field("content_format", &self.content_format)
            .finish_non_exhaustive()
    }
}

/// Pagination kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PaginateArg {
    /// A next-page URL in each page (--next-path); ends when it is missing, null or "".
    Next,
    /// A page number in a query parameter (--page-param); ends on an empty page.
    Page,
    /// An offset and a limit in query parameters; ends on an empty page.
    Offset,
    /// A cursor from each page (--cursor-path) into a query parameter; ends when it is missing.
    Cursor,
    /// One page.
    None,
}

/// Content formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ContentFormatArg {
    Json,
    Ndjson,
    Csv,
}

/// `K=V` with a non-empty key (whitespace around the key trimmed, the value kept).
pub(super) fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err("must look like KEY=VALUE".to_owned()),
    }
}
