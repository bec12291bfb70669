//! The flags of `export url` / `schema url` checked once into a [`ManualJob`]: paths parsed,
//! headers and body validated (header values never appear in an error), pagination and
//! transforms built. Mistakes are [`Error::Usage`] (exit code 2).

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use crate::cli::manual::{ContentFormatArg, ManualArgs, OnCastErrorArg, PaginateArg};
use crate::error::{Error, Result};
use crate::source::client::Request;
use crate::source::endpoint::Endpoint;
use crate::source::formats::ContentFormat;
use crate::source::jsonpath::JsonPath;
use crate::source::paginate::Paging;
use crate::transform::{OnCastError, Transforms};

/// A validated manual endpoint export. Its URL is resolved against the API base once the API
/// is known ([`ManualJob::endpoint`]), so a path works with `--sandbox` too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualJob {
    /// Name of the dataset in file names and the manifest.
    pub key: String,
    /// Absolute URL or path, as given.
    url: String,
    query: Vec<(String, String)>,
    request: Request,
    rows: JsonPath,
    paging: Paging,
    total: Option<JsonPath>,
    pub transforms: Transforms,
}

impl ManualJob {
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

/// Checks the flags of a manual endpoint.
pub fn manual_job(args: &ManualArgs) -> Result<ManualJob> {
    let url = target(&args.url)?;
    let format = args.content_format.map(|f| match f {
        ContentFormatArg::Json => ContentFormat::Json,
        ContentFormatArg::Ndjson => ContentFormat::Ndjson,
        ContentFormatArg::Csv => ContentFormat::Csv,
    });
    let paging = paging(args)?;
    let total = args
        .total_path
        .as_deref()
        .map(|p| path("--total-path", p))
        .transpose()?;
    if let Some(format) = format.filter(|f| *f != ContentFormat::Json) {
        let reads_body = matches!(paging, Paging::NextUrl { .. } | Paging::Cursor { .. });
        if reads_body || total.is_some() {
            return Err(Error::Usage(format!(
                "--content-format {format} pages have no next link, cursor or total to read: \
                 use --paginate page, offset or none, without --total-path"
            )));
        }
    }
    Ok(ManualJob {
        key: key(args.name.as_deref(), &url)?,
        query: args
            .query
            .iter()
            .map(|q| pair("--query", q, '='))
            .collect::<Result<_>>()?,
        request: Request {
            stream_from: None,
            method: method(&args.method)?,
            headers: headers(&args.header)?,
            body: args.body.as_deref().map(body).transpose()?,
            format,
        },
        rows: path("--data-path", &args.data_path)?,
        paging,
        total,
        transforms: transforms(args)?,
        url,
    })
}

/// An absolute http(s) URL without credentials, or a path (resolved against the API base).
fn target(text: &str) -> Result<String> {
    let text = text.trim();
    match Url::parse(text) {
        Ok(url) => {
            if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
                return Err(Error::Usage(format!(
                    "URL {text:?} must be an http(s) URL or a path such as /v1/reports"
                )));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(Error::Usage("the URL must not carry credentials".into()));
            }
        }
        Err(_) if text.starts_with('/') => {}
        Err(e) => {
            return Err(Error::Usage(format!(
                "URL {text:?} is neither an http(s) URL nor a path starting with '/': {e}"
            )));
        }
    }
    Ok(text.to_owned())
}

/// `--name`, or the URL's last non-empty path segment, or `endpoint`.
fn key(name: Option<&str>, url: &str) -> Result<String> {
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
        return Err(Error::Usage(format!("invalid --name {key:?}")));
    }
    Ok(key)
}

fn method(text: &str) -> Result<Method> {
    Method::from_bytes(text.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| Error::Usage(format!("--method {text:?} is not an HTTP method")))
}

/// `K: V` headers; a bad value is reported by its header's name only (it may be a secret).
fn headers(raw: &[String]) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for header in raw {
        let Some((name, value)) = header.split_once(':') else {
            return Err(Error::Usage("--header must look like 'Name: value'".into()));
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            Error::Usage(format!(
                "--header {:?} is not a valid header name",
                name.trim()
            ))
        })?;
        let mut value = HeaderValue::from_str(value.trim()).map_err(|_| {
            Error::Usage(format!(
                "--header {name}: the value is not a valid header value"
            ))
        })?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(headers)
}

/// A JSON body, given inline or as `@FILE`.
fn body(text: &str) -> Result<Bytes> {
    let content = match text.strip_prefix('@') {
        Some(file) => std::fs::read(file)
            .map_err(|e| Error::Usage(format!("cannot read --body file {file}: {e}")))?,
        None => text.as_bytes().to_vec(),
    };
    serde_json::from_slice::<serde::de::IgnoredAny>(&content)
        .map_err(|e| Error::Usage(format!("--body is not valid JSON: {e}")))?;
    Ok(Bytes::from(content))
}

fn path(flag: &str, text: &str) -> Result<JsonPath> {
    text.parse()
        .map_err(|e| Error::Usage(format!("{flag}: {e}")))
}

fn paging(args: &ManualArgs) -> Result<Paging> {
    let param = |flag: &str, name: &str| {
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::Usage(format!("{flag} must not be empty")));
        }
        Ok(name.to_owned())
    };
    Ok(match args.paginate {
        PaginateArg::Next => Paging::NextUrl {
            path: path("--next-path", &args.next_path)?,
        },
        PaginateArg::Page => Paging::PageNumber {
            param: param("--page-param", &args.page_param)?,
            start: args.page_start,
        },
        PaginateArg::Offset => Paging::Offset {
            offset: param("--offset-param", &args.offset_param)?,
            limit: param("--limit-param", &args.limit_param)?,
            size: args.limit,
        },
        PaginateArg::Cursor => Paging::Cursor {
            path: path(
                "--cursor-path",
                args.cursor_path
                    .as_deref()
                    .ok_or_else(|| Error::Usage("--paginate cursor needs --cursor-path".into()))?,
            )?,
            param: param("--cursor-param", &args.cursor_param)?,
        },
        PaginateArg::None => Paging::None,
    })
}

fn transforms(args: &ManualArgs) -> Result<Transforms> {
    let select = args
        .select
        .iter()
        .map(|c| c.trim().to_owned())
        .collect::<Vec<_>>();
    if select.iter().any(String::is_empty) {
        return Err(Error::Usage("--select has an empty column name".into()));
    }
    let cast = args
        .cast
        .iter()
        .map(|c| {
            let (column, to) = pair("--cast", c, '=')?;
            let to = to
                .parse()
                .map_err(|e| Error::Usage(format!("--cast {column}: {e}")))?;
            Ok((column, to))
        })
        .collect::<Result<_>>()?;
    Ok(Transforms {
        select,
        rename: args
            .rename
            .iter()
            .map(|r| pair("--rename", r, '='))
            .collect::<Result<_>>()?,
        add: args
            .add_column
            .iter()
            .map(|a| pair("--add-column", a, '='))
            .collect::<Result<_>>()?,
        cast,
        on_cast_error: match args.on_cast_error {
            OnCastErrorArg::Fail => OnCastError::Fail,
            OnCastErrorArg::Null => OnCastError::Null,
        },
    })
}

/// `K<sep>V` with a non-empty key (whitespace around the key trimmed, the value kept).
fn pair(flag: &str, text: &str, separator: char) -> Result<(String, String)> {
    match text.split_once(separator) {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(Error::Usage(format!(
            "{flag} {text:?} must look like KEY{separator}VALUE"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn job(args: &[&str]) -> Result<ManualJob> {
        let cli =
            crate::cli::Cli::try_parse_from(["kargo-export", "schema", "url"].iter().chain(args))
                .unwrap();
        let crate::cli::Command::Schema {
            target: crate::cli::SchemaTarget::Url { manual },
        } = cli.command
        else {
            panic!("not schema url");
        };
        manual_job(&manual)
    }

    #[test]
    fn paths_resolve_against_the_api_base_with_query_parameters() {
        let rows = job(&["/v1/test/rows?a=1", "--query", "b=x y"]).unwrap();
        let base = Url::parse("http://h:9/api/").unwrap();
        assert_eq!(
            rows.endpoint(&base).unwrap().url.as_str(),
            "http://h:9/v1/test/rows?a=1&b=x+y"
        );
        assert_eq!(rows.key, "rows");
        let absolute = job(&["https://other.example/x/y/"]).unwrap();
        assert_eq!(absolute.key, "y");
    }

    #[test]
    fn bad_flags_are_usage_errors_that_do_not_echo_header_values() {
        let usage = |args: &[&str]| match job(args) {
            Err(Error::Usage(message)) => message,
            other => panic!("{args:?}: {:?}", other.map(|j| j.key)),
        };
        let message = usage(&["/x", "--header", "Authorization: Bearer s3cr\u{7}t"]);
        assert!(!message.contains("s3cr"), "{message}");
        let cli = crate::cli::Cli::try_parse_from([
            "kargo-export",
            "schema",
            "url",
            "/x",
            "--header",
            "X-Key: s3cret",
        ])
        .unwrap();
        let debug = format!("{cli:?}");
        assert!(
            debug.contains("X-Key") && !debug.contains("s3cret"),
            "{debug}"
        );
        assert!(usage(&["/x", "--data-path", "data.rows"]).contains("--data-path"));
        assert!(usage(&["/x", "--paginate", "cursor"]).contains("--cursor-path"));
        assert!(usage(&["/x", "--content-format", "csv"]).contains("--paginate page"));
        assert!(usage(&["/x", "--cast", "a=int"]).contains("unknown type"));
        assert!(usage(&["/x", "--rename", "nope"]).contains("KEY=VALUE"));
        assert!(usage(&["/x", "--body", "{oops"]).contains("--body"));
        assert!(usage(&["ftp://h/x"]).contains("http(s)"));
        assert!(usage(&["x"]).contains("path starting with '/'"));
    }

    #[test]
    fn flags_build_the_request_paging_and_transforms() {
        let post = job(&[
            "/x",
            "--method",
            "post",
            "--body",
            r#"{"a": 1}"#,
            "--header",
            "X-Key: abc",
            "--paginate",
            "offset",
            "--limit",
            "50",
            "--cast",
            "n=decimal(10,2)",
            "--add-column",
            "report=r=1",
            "--on-cast-error",
            "null",
        ])
        .unwrap();
        assert_eq!(post.request.method, Method::POST);
        assert_eq!(post.request.body.as_deref(), Some(&br#"{"a": 1}"#[..]));
        assert_eq!(post.request.headers["x-key"], "abc");
        assert!(post.request.headers["x-key"].is_sensitive());
        assert_eq!(
            post.paging,
            Paging::Offset {
                offset: "offset".into(),
                limit: "limit".into(),
                size: 50
            }
        );
        assert_eq!(
            post.transforms.add,
            [("report".to_owned(), "r=1".to_owned())]
        );
        assert_eq!(post.transforms.on_cast_error, OnCastError::Null);
    }
}
