//! A configured endpoint (`export url`, `schema url`, a jobs file's `kind = "endpoint"`)
//! checked once into an [`EndpointSpec`]: the URL checked, paths parsed, headers and body
//! validated (a header value never appears in an error), pagination built. Its transforms are
//! those of any export ([`super::transform`]).

use std::path::PathBuf;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use super::connection::{Given, ValueSource, value};
use super::field::{self, Field};
use super::{Origin, check, invalid};
use crate::error::{Error, Result};
use crate::source::client::Request;
use crate::source::endpoint::Endpoint;
use crate::source::formats::ContentFormat;
use crate::source::jsonpath::JsonPath;
use crate::source::paginate::Paging;

/// The HTTP method when none is given.
pub const DEFAULT_METHOD: &str = "GET";
/// Where the rows are when no data path is given: the API's own page shape.
pub const DEFAULT_DATA_PATH: &str = "$.data.rows[*]";
/// Where the next link is when no next path is given: the API's own page shape.
pub const DEFAULT_NEXT_PATH: &str = "$.links.next";
/// `page` paging: the query parameter of the page number, and the first page's number.
pub const DEFAULT_PAGE_PARAM: &str = "page";
pub const DEFAULT_PAGE_START: i64 = 1;
/// `offset` paging: the query parameters of the offset and the page size, and the size.
pub const DEFAULT_OFFSET_PARAM: &str = "offset";
pub const DEFAULT_LIMIT_PARAM: &str = "limit";
pub const DEFAULT_LIMIT: i64 = 100;
/// `cursor` paging: the query parameter the cursor is sent in.
pub const DEFAULT_CURSOR_PARAM: &str = "cursor";

/// How pages follow, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaginateKind {
    Next,
    Page,
    Offset,
    Cursor,
    None,
}

/// The names of the paging kinds and content formats, as both sources spell them.
pub const PAGINATE_KINDS: &[(&str, PaginateKind)] = &[
    ("next", PaginateKind::Next),
    ("page", PaginateKind::Page),
    ("offset", PaginateKind::Offset),
    ("cursor", PaginateKind::Cursor),
    ("none", PaginateKind::None),
];
pub const CONTENT_FORMATS: &[(&str, ContentFormat)] = &[
    ("json", ContentFormat::Json),
    ("ndjson", ContentFormat::Ndjson),
    ("csv", ContentFormat::Csv),
];

/// A header as given: its name, and its value (text, or an environment variable).
#[derive(Debug, Clone)]
pub struct HeaderInput {
    pub name: String,
    pub value: Given,
}

/// The request body as given: JSON text, or a file holding it.
#[derive(Debug, Clone)]
pub enum BodyInput {
    Text(String),
    File(PathBuf),
}

/// An endpoint as given, unchecked. [`EndpointInput::new`] fills in the defaults. No `Debug`:
/// header values and the body may hold secrets.
#[derive(Clone)]
pub struct EndpointInput {
    /// An absolute URL on the API's origin, or a path resolved against the API base.
    pub url: String,
    /// The dataset's name [default: the URL's last path segment].
    pub name: Option<String>,
    pub method: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<HeaderInput>,
    pub body: Option<BodyInput>,
    pub data_path: String,
    pub paginate: PaginateKind,
    pub next_path: String,
    pub page_param: String,
    pub page_start: i64,
    pub offset_param: String,
    pub limit_param: String,
    pub limit: i64,
    pub cursor_path: Option<String>,
    pub cursor_param: String,
    pub total_path: Option<String>,
    /// [default: from each answer's Content-Type]
    pub content_format: Option<ContentFormat>,
}

impl EndpointInput {
    /// `url` with every other part at its default.
    pub fn new(url: impl Into<String>) -> Self {
        EndpointInput {
            url: url.into(),
            name: None,
            method: DEFAULT_METHOD.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            data_path: DEFAULT_DATA_PATH.into(),
            paginate: PaginateKind::Next,
            next_path: DEFAULT_NEXT_PATH.into(),
            page_param: DEFAULT_PAGE_PARAM.into(),
            page_start: DEFAULT_PAGE_START,
            offset_param: DEFAULT_OFFSET_PARAM.into(),
            limit_param: DEFAULT_LIMIT_PARAM.into(),
            limit: DEFAULT_LIMIT,
            cursor_path: None,
            cursor_param: DEFAULT_CURSOR_PARAM.into(),
            total_path: None,
            content_format: None,
        }
    }
}

/// A checked endpoint. Its URL is resolved against the API base once the API is known
/// ([`EndpointSpec::endpoint`]), so a path works with `--sandbox` too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Name of the dataset in file names and the manifest.
    pub key: String,
    /// Absolute URL or path, as given.
    url: String,
    query: Vec<(String, String)>,
    request: Request,
    rows: JsonPath,
    paging: Paging,
    total: Option<JsonPath>,
}

impl EndpointSpec {
    /// The endpoint with its URL resolved against `api_base` and the query parameters added.
    pub fn endpoint(&self, api_base: &Url) -> Result<Endpoint> {
        let mut url = api_base
            .join(&self.url)
            .map_err(|e| Error::Usage(format!("URL {:?} is not valid: {e}", self.url)))?;
        if !self.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&self.query);
        }
        Ok(Endpoint {
            url,
            request: self.request.clone(),
            rows: self.rows.clone(),
            paging: self.paging.clone(),
            total: self.total.clone(),
        })
    }
}

/// Checks an endpoint.
pub fn endpoint(origin: &dyn Origin, input: &EndpointInput) -> Result<EndpointSpec> {
    let url = target(origin, &input.url)?;
    let paging = paging(origin, input)?;
    let total = input
        .total_path
        .as_deref()
        .map(|p| path(origin, field::TOTAL_PATH, p))
        .transpose()?;
    if let Some(format) = input.content_format.filter(|f| *f != ContentFormat::Json) {
        let reads_body = matches!(paging, Paging::NextUrl { .. } | Paging::Cursor { .. });
        if reads_body || total.is_some() {
            let name = |field| origin.name(field);
            return Err(origin.error(
                field::CONTENT_FORMAT,
                format!(
                    "{} {format} pages have no next link, cursor or total to read: use {} \
                     page, offset or none, without {}",
                    name(field::CONTENT_FORMAT),
                    name(field::PAGINATE),
                    name(field::TOTAL_PATH)
                ),
            ));
        }
    }
    Ok(EndpointSpec {
        key: key(origin, input.name.as_deref(), &url)?,
        query: input.query.clone(),
        request: Request {
            stream_from: None,
            method: method(origin, &input.method)?,
            headers: headers(origin, &input.headers)?,
            body: input.body.as_ref().map(|b| body(origin, b)).transpose()?,
            format: input.content_format,
        },
        rows: path(origin, field::DATA_PATH, &input.data_path)?,
        paging,
        total,
        url,
    })
}

/// An absolute http(s) URL without credentials, or a path (resolved against the API base).
fn target(origin: &dyn Origin, text: &str) -> Result<String> {
    let text = text.trim();
    let fail = |message: String| origin.error(field::URL, message);
    match Url::parse(text) {
        Ok(url) => {
            if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
                return Err(fail(format!(
                    "URL {text:?} must be an http(s) URL or a path such as /v1/reports"
                )));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(fail("the URL must not carry credentials".into()));
            }
        }
        Err(_) if text.starts_with('/') => {}
        Err(e) => {
            return Err(fail(format!(
                "URL {text:?} is neither an http(s) URL nor a path starting with '/': {e}"
            )));
        }
    }
    Ok(text.to_owned())
}

/// The name given, or the URL's last non-empty path segment, or `endpoint`.
fn key(origin: &dyn Origin, name: Option<&str>, url: &str) -> Result<String> {
    let derived = || {
        let path = url.split(['?', '#']).next().unwrap_or("");
        let path = path.split_once("://").map_or(path, |(_, rest)| {
            rest.find('/').map_or("", |slash| &rest[slash..])
        });
        path.rsplit('/')
            .find(|segment| !segment.is_empty())
            .unwrap_or("endpoint")
            .to_owned()
    };
    let key = name.map_or_else(derived, |n| n.trim().to_owned());
    if key.is_empty() || key.chars().any(char::is_control) {
        return Err(origin.error(
            field::NAME,
            format!("invalid {} {key:?}", origin.name(field::NAME)),
        ));
    }
    Ok(key)
}

fn method(origin: &dyn Origin, text: &str) -> Result<Method> {
    Method::from_bytes(text.trim().to_ascii_uppercase().as_bytes()).map_err(|_| {
        invalid(
            origin,
            field::METHOD,
            format!("{text:?} is not an HTTP method"),
        )
    })
}

/// The headers, values read from the environment where they name a variable, each marked
/// sensitive. An error names the header (and the variable), never a value.
fn headers(origin: &dyn Origin, given: &[HeaderInput]) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for header in given {
        let field = header.value.field;
        let name = HeaderName::from_bytes(header.name.trim().as_bytes()).map_err(|_| {
            invalid(
                origin,
                field,
                format!("{:?} is not a valid header name", header.name.trim()),
            )
        })?;
        let text = match &header.value.from {
            ValueSource::Env { var, .. } => origin.env(var).ok_or_else(|| {
                invalid(
                    origin,
                    field,
                    format!("{:?} names {var}, which is not set", header.name),
                )
            })?,
            _ => value(origin, Some(&header.value))?.unwrap_or_default(),
        };
        let mut value = HeaderValue::from_str(text.trim()).map_err(|_| {
            invalid(
                origin,
                field,
                format!("{name}: the value is not a valid header value"),
            )
        })?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(headers)
}

/// A JSON body, given inline or as a file.
fn body(origin: &dyn Origin, given: &BodyInput) -> Result<Bytes> {
    let (field, content) = match given {
        BodyInput::File(path) => (
            field::BODY_FILE,
            std::fs::read(path).map_err(|e| {
                origin.error(
                    field::BODY_FILE,
                    format!(
                        "cannot read {} {}: {e}",
                        origin.name(field::BODY_FILE),
                        path.display()
                    ),
                )
            })?,
        ),
        BodyInput::Text(text) => (field::BODY, text.as_bytes().to_vec()),
    };
    serde_json::from_slice::<serde::de::IgnoredAny>(&content)
        .map_err(|e| invalid(origin, field, format!("is not valid JSON: {e}")))?;
    Ok(Bytes::from(content))
}

fn path(origin: &dyn Origin, field: Field, text: &str) -> Result<JsonPath> {
    text.parse()
        .map_err(|e| origin.error(field, format!("{}: {e}", origin.name(field))))
}

/// A query parameter's name: trimmed and non-empty.
fn param(origin: &dyn Origin, field: Field, name: &str) -> Result<String> {
    match name.trim() {
        "" => Err(invalid(origin, field, "must not be empty")),
        name => Ok(name.to_owned()),
    }
}

/// How pages follow. The page start and size are checked whatever the paging, as a mistake
/// there is one still when the paging changes.
fn paging(origin: &dyn Origin, input: &EndpointInput) -> Result<Paging> {
    let start = check(origin, field::PAGE_START, input.page_start, page_start)?;
    let size = check(origin, field::LIMIT, input.limit, limit)?;
    Ok(match input.paginate {
        PaginateKind::Next => Paging::NextUrl {
            path: path(origin, field::NEXT_PATH, &input.next_path)?,
        },
        PaginateKind::Page => Paging::PageNumber {
            param: param(origin, field::PAGE_PARAM, &input.page_param)?,
            start,
        },
        PaginateKind::Offset => Paging::Offset {
            offset: param(origin, field::OFFSET_PARAM, &input.offset_param)?,
            limit: param(origin, field::LIMIT_PARAM, &input.limit_param)?,
            size,
        },
        PaginateKind::Cursor => {
            let Some(cursor_path) = input.cursor_path.as_deref() else {
                return Err(origin.error(
                    field::PAGINATE,
                    format!(
                        "{} cursor needs {}",
                        origin.name(field::PAGINATE),
                        origin.name(field::CURSOR_PATH)
                    ),
                ));
            };
            Paging::Cursor {
                path: path(origin, field::CURSOR_PATH, cursor_path)?,
                param: param(origin, field::CURSOR_PARAM, &input.cursor_param)?,
            }
        }
        PaginateKind::None => Paging::None,
    })
}

/// A page size of at least 1 (`--limit`, `limit`).
fn limit(n: i64) -> std::result::Result<u64, String> {
    u64::try_from(n)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("must be at least 1, found {n}"))
}

/// A page number that is not negative (`--page-start`, `page_start`).
fn page_start(n: i64) -> std::result::Result<u64, String> {
    u64::try_from(n).map_err(|_| format!("must not be negative, found {n}"))
}
