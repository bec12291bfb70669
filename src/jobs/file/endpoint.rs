//! `kind = "endpoint"`: a job's keys turned into the flags of `export url` ([`ManualArgs`]) and
//! checked by the same [`crate::settings::manual::manual_job`] as the command line, so there is
//! one checking path. What the command line cannot say is checked here: the TOML types, header
//! values from the environment (`headers_env`), and inline header values that look like secrets.
//! A mistake points at the key's line, with the flag in the message renamed to the key.
//!
//! The job's `name` is also the dataset's name (the `--name` of `export url`): it names the files
//! and the manifest, and decides the shard.

use std::ops::Range;

use clap::{Parser, ValueEnum};
use serde_json::{Map, Value};
use toml::Spanned;

use super::{Env, RawJob};
use crate::cli::manual::{ContentFormatArg, ManualArgs, OnCastErrorArg, PaginateArg};
use crate::error::{Error, Result};
use crate::settings::manual::{ManualJob, manual_job as check};

/// Builds an error for the job at a span (the job's name is added by the caller).
pub(super) type Fail<'a> = &'a dyn Fn(Range<usize>, String) -> Error;

/// The flags' defaults, taken from clap so they are written down once.
#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    manual: ManualArgs,
}

/// Every endpoint-only key with its span when given.
pub(super) fn fields(raw: &RawJob) -> impl Iterator<Item = (&'static str, Option<Range<usize>>)> {
    fn span<T>(value: &Option<Spanned<T>>) -> Option<Range<usize>> {
        value.as_ref().map(Spanned::span)
    }
    [
        ("url", span(&raw.url)),
        ("method", span(&raw.method)),
        ("query", span(&raw.query)),
        ("headers", span(&raw.headers)),
        ("headers_env", span(&raw.headers_env)),
        ("body", span(&raw.body)),
        ("body_file", span(&raw.body_file)),
        ("data_path", span(&raw.data_path)),
        ("paginate", span(&raw.paginate)),
        ("next_path", span(&raw.next_path)),
        ("page_param", span(&raw.page_param)),
        ("page_start", span(&raw.page_start)),
        ("offset_param", span(&raw.offset_param)),
        ("limit_param", span(&raw.limit_param)),
        ("limit", span(&raw.limit)),
        ("cursor_path", span(&raw.cursor_path)),
        ("cursor_param", span(&raw.cursor_param)),
        ("total_path", span(&raw.total_path)),
        ("content_format", span(&raw.content_format)),
        ("select", span(&raw.select)),
        ("rename", span(&raw.rename)),
        ("cast", span(&raw.cast)),
        ("add_column", span(&raw.add_column)),
        ("on_cast_error", span(&raw.on_cast_error)),
    ]
    .into_iter()
}

/// The checked endpoint of job `name`; `env` gives the `headers_env` values.
pub(super) fn manual_job(raw: &RawJob, name: &str, env: Env, fail: Fail) -> Result<ManualJob> {
    let args = manual_args(raw, name, env, fail)?;
    check(&args).map_err(|e| match e {
        Error::Usage(message) => {
            let (span, message) = locate(raw, &message);
            // Messages naming no flag are about the URL.
            let url = || raw.url.as_ref().map_or(0..0, Spanned::span);
            fail(span.unwrap_or_else(url), message)
        }
        other => other,
    })
}

/// The flags `export url` would get for these keys. Header values from `headers_env` are read
/// here; an unset variable is an error naming the variable.
fn manual_args(raw: &RawJob, name: &str, env: Env, fail: Fail) -> Result<ManualArgs> {
    let mut args = Defaults::try_parse_from(["endpoint", "/"])
        .map_err(|e| Error::Internal(format!("manual flag defaults: {e}")))?
        .manual;
    let kind_span = raw.kind.as_ref().map_or(0..0, Spanned::span);
    args.url = raw
        .url
        .as_ref()
        .ok_or_else(|| {
            fail(
                kind_span,
                "kind = \"endpoint\" needs url = \"..\" (a path such as /v1/reports, or a URL \
                 on the API's origin)"
                    .into(),
            )
        })?
        .get_ref()
        .clone();
    args.name = Some(name.to_owned());
    let text = |value: &Option<Spanned<String>>, into: &mut String| {
        if let Some(value) = value {
            into.clone_from(value.get_ref());
        }
    };
    text(&raw.method, &mut args.method);
    text(&raw.data_path, &mut args.data_path);
    text(&raw.next_path, &mut args.next_path);
    text(&raw.page_param, &mut args.page_param);
    text(&raw.offset_param, &mut args.offset_param);
    text(&raw.limit_param, &mut args.limit_param);
    text(&raw.cursor_param, &mut args.cursor_param);
    args.cursor_path = raw.cursor_path.as_ref().map(|p| p.get_ref().clone());
    args.total_path = raw.total_path.as_ref().map(|p| p.get_ref().clone());
    if let Some(start) = &raw.page_start {
        args.page_start = u64::try_from(*start.get_ref())
            .map_err(|_| fail(start.span(), "page_start must not be negative".into()))?;
    }
    if let Some(limit) = &raw.limit {
        args.limit = u64::try_from(*limit.get_ref())
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| fail(limit.span(), "limit must be at least 1".into()))?;
    }
    if let Some(paginate) = &raw.paginate {
        args.paginate = choice::<PaginateArg>(paginate, "paginate", fail)?;
    }
    if let Some(format) = &raw.content_format {
        args.content_format = Some(choice::<ContentFormatArg>(format, "content_format", fail)?);
    }
    if let Some(on_error) = &raw.on_cast_error {
        args.on_cast_error = choice::<OnCastErrorArg>(on_error, "on_cast_error", fail)?;
    }
    args.query = pairs(&raw.query, "query", '=', true, fail)?;
    args.rename = pairs(&raw.rename, "rename", '=', false, fail)?;
    args.cast = pairs(&raw.cast, "cast", '=', false, fail)?;
    args.add_column = pairs(&raw.add_column, "add_column", '=', false, fail)?;
    args.select = raw
        .select
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_default();
    args.body = match (&raw.body, &raw.body_file) {
        (Some(_), Some(file)) => {
            return Err(fail(file.span(), "give body or body_file, not both".into()));
        }
        (Some(body), None) if body.get_ref().trim_start().starts_with('@') => {
            return Err(fail(
                body.span(),
                "body is the JSON text itself: name a file with body_file = \"PATH\"".into(),
            ));
        }
        (Some(body), None) => Some(body.get_ref().clone()),
        (None, Some(file)) => Some(format!("@{}", file.get_ref())),
        (None, None) => None,
    };
    args.header = headers(raw, env, fail)?;
    Ok(args)
}

/// A `ValueEnum` from its name, or an error listing the names.
fn choice<T: ValueEnum>(value: &Spanned<String>, key: &str, fail: Fail) -> Result<T> {
    T::from_str(value.get_ref().trim(), true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_owned()))
            .collect();
        fail(
            value.span(),
            format!(
                "unknown {key} {:?}: expected {}",
                value.get_ref(),
                names.join(", ")
            ),
        )
    })
}

/// A table as the `KEY<sep>VALUE` texts of its flag. Values are strings (`scalars` also lets
/// numbers and booleans through, as their TOML text); a key holding the separator is refused,
/// since the flag's text could not say where the key ends.
fn pairs(
    table: &Option<Spanned<Map<String, Value>>>,
    key: &str,
    separator: char,
    scalars: bool,
    fail: Fail,
) -> Result<Vec<String>> {
    let Some(table) = table else {
        return Ok(Vec::new());
    };
    table
        .get_ref()
        .iter()
        .map(|(name, value)| {
            if name.contains(separator) {
                return Err(fail(
                    table.span(),
                    format!("{key}: the name {name:?} must not contain {separator:?}"),
                ));
            }
            let value = match value {
                Value::String(text) => text.clone(),
                Value::Number(n) if scalars => n.to_string(),
                Value::Bool(b) if scalars => b.to_string(),
                _ => {
                    let expected = if scalars {
                        "text, a number or a boolean"
                    } else {
                        "text"
                    };
                    return Err(fail(
                        table.span(),
                        format!("{key}: the value of {name:?} must be {expected}"),
                    ));
                }
            };
            Ok(format!("{name}{separator}{value}"))
        })
        .collect()
}

/// Whether a header's value is likely a credential, so it may not be written in the file.
fn looks_secret(header: &str) -> bool {
    let header = header.to_ascii_lowercase();
    [
        "auth",
        "cookie",
        "key",
        "token",
        "secret",
        "password",
        "session",
        "signature",
    ]
    .iter()
    .any(|word| header.contains(word))
}

/// `headers` (non-secret, inline) then `headers_env` (values from the environment), as
/// `Name: value` texts. Errors name headers and variables, never a value.
fn headers(raw: &RawJob, env: Env, fail: Fail) -> Result<Vec<String>> {
    let mut all = Vec::new();
    if let Some(inline) = &raw.headers {
        for (name, value) in inline.get_ref() {
            if looks_secret(name) {
                return Err(fail(
                    inline.span(),
                    format!(
                        "header {name:?} may hold a secret and cannot be inline: name an \
                         environment variable with headers_env = {{ {name:?} = \"VAR\" }}"
                    ),
                ));
            }
            let Value::String(value) = value else {
                return Err(fail(
                    inline.span(),
                    format!("headers: the value of {name:?} must be text"),
                ));
            };
            all.push(header(inline, name, value, fail)?);
        }
    }
    if let Some(from_env) = &raw.headers_env {
        for (name, var) in from_env.get_ref() {
            let var = match var {
                Value::String(var) if !var.trim().is_empty() => var.trim(),
                _ => {
                    return Err(fail(
                        from_env.span(),
                        format!("headers_env: {name:?} must name an environment variable"),
                    ));
                }
            };
            let value = env(var).ok_or_else(|| {
                fail(
                    from_env.span(),
                    format!("headers_env {name:?} names {var}, which is not set"),
                )
            })?;
            all.push(header(from_env, name, &value, fail)?);
        }
    }
    Ok(all)
}

/// `Name: value`, refusing a name the flag's text would split wrongly.
fn header(
    table: &Spanned<Map<String, Value>>,
    name: &str,
    value: &str,
    fail: Fail,
) -> Result<String> {
    if name.contains(':') {
        return Err(fail(
            table.span(),
            format!("{name:?} is not a valid header name"),
        ));
    }
    Ok(format!("{name}: {value}"))
}

/// The key a message of the flag checks is about (the given key whose flag comes first in
/// it), and the message in the file's words (each flag replaced by its key).
fn locate(raw: &RawJob, message: &str) -> (Option<Range<usize>>, String) {
    let message = message.replace("--body file", "--body");
    let lower = message.to_ascii_lowercase();
    // Of two header tables, the one with the header the message names.
    let names_env_header = raw.headers_env.as_ref().is_some_and(|table| {
        table
            .get_ref()
            .keys()
            .any(|name| lower.contains(&name.to_ascii_lowercase()))
    });
    let header_key = if raw.headers_env.is_some() && (raw.headers.is_none() || names_env_header) {
        "headers_env"
    } else {
        "headers"
    };
    let body_key = if raw.body_file.is_some() {
        "body_file"
    } else {
        "body"
    };
    let mut keys: Vec<(String, &str, Option<Range<usize>>)> = fields(raw)
        .map(|(key, span)| {
            let flag = match key {
                "headers" | "headers_env" => "--header".to_owned(),
                "body_file" => "--body".to_owned(),
                _ => format!("--{}", key.replace('_', "-")),
            };
            (flag, key, span)
        })
        .filter(|(_, key, _)| match *key {
            "headers" | "headers_env" => *key == header_key,
            "body" | "body_file" => *key == body_key,
            _ => true,
        })
        .collect();
    // Longer flags first, so `--limit` never takes the place of `--limit-param`.
    keys.sort_by_key(|(flag, _, _)| std::cmp::Reverse(flag.len()));
    let at = keys
        .iter()
        .filter_map(|(flag, _, span)| Some((message.find(flag.as_str())?, span.as_ref()?)))
        .min_by_key(|(at, _)| *at)
        .map(|(_, span)| span.clone());
    let words = keys.iter().fold(message.clone(), |words, (flag, key, _)| {
        words.replace(flag.as_str(), key)
    });
    (at, words)
}

#[cfg(test)]
mod tests {
    use reqwest::Url;
    use reqwest::header::HeaderValue;

    use super::super::JobKind;
    use super::super::tests::{env, error, parse};
    use super::*;
    use crate::source::paginate::Paging;
    use crate::transform::OnCastError;

    /// The flags the endpoint keys `keys` become for job "rows".
    fn to_args(keys: &str) -> Result<ManualArgs> {
        let raw: RawJob = toml::from_str(&format!("kind = \"endpoint\"\n{keys}")).unwrap();
        manual_args(&raw, "rows", &env, &|_, message| Error::Usage(message))
    }

    fn endpoint_job(keys: &str) -> String {
        format!("[[job]]\nname = \"rows\"\nkind = \"endpoint\"\nout = \"o\"\n{keys}")
    }

    #[test]
    fn keys_become_the_flags_of_export_url() {
        let args = to_args(
            r#"
url = "/v1/test/rows"
method = "post"
query = { paging = "page", size = 50, flag = true }
headers = { Accept = "application/json" }
headers_env = { "X-Api-Key" = "KARGO_API_KEY" }
body = '{"report": "r"}'
data_path = "$.result[*]"
paginate = "Page"
page_param = "p"
page_start = 0
limit = 7
total_path = "$.meta.total"
content_format = "ndjson"
select = ["a,b", "c"]
rename = { a = "b" }
cast = { c = "decimal(10,2)" }
add_column = { source = "x=y" }
on_cast_error = "null"
"#,
        )
        .unwrap();
        assert_eq!(args.url, "/v1/test/rows");
        assert_eq!(args.name.as_deref(), Some("rows"));
        assert_eq!(args.method, "post");
        // Tables come in key order (toml sorts them); no flag depends on the order of its values.
        assert_eq!(args.query, ["flag=true", "paging=page", "size=50"]);
        assert_eq!(
            args.header,
            ["Accept: application/json", "X-Api-Key: s3cret-from-env"]
        );
        assert_eq!(args.body.as_deref(), Some(r#"{"report": "r"}"#));
        assert_eq!(args.data_path, "$.result[*]");
        assert_eq!(args.paginate, PaginateArg::Page);
        assert_eq!((args.page_param.as_str(), args.page_start), ("p", 0));
        assert_eq!(args.limit, 7);
        assert_eq!(args.total_path.as_deref(), Some("$.meta.total"));
        assert_eq!(args.content_format, Some(ContentFormatArg::Ndjson));
        assert_eq!(args.select, ["a,b", "c"], "an array is not split at commas");
        assert_eq!(args.rename, ["a=b"]);
        assert_eq!(args.cast, ["c=decimal(10,2)"]);
        assert_eq!(args.add_column, ["source=x=y"]);
        assert_eq!(args.on_cast_error, OnCastErrorArg::Null);
        assert_eq!(
            to_args("url = \"/x\"\nbody_file = \"b.json\"")
                .unwrap()
                .body
                .as_deref(),
            Some("@b.json")
        );
    }

    #[test]
    fn missing_keys_take_the_flags_defaults() {
        let args = to_args("url = \"/x\"").unwrap();
        assert_eq!(args.method, "GET");
        assert_eq!(args.data_path, "$.data.rows[*]");
        assert_eq!(args.paginate, PaginateArg::Next);
        assert_eq!(args.next_path, "$.links.next");
        assert_eq!((args.page_param.as_str(), args.page_start), ("page", 1));
        assert_eq!(args.limit, 100);
        assert_eq!(args.on_cast_error, OnCastErrorArg::Fail);
        assert!(args.header.is_empty() && args.body.is_none() && args.select.is_empty());
    }

    #[test]
    fn an_endpoint_job_is_checked_like_export_url() {
        let file = parse(&endpoint_job(
            "url = \"/v1/test/rows?report=r\"\npaginate = \"offset\"\nlimit = 20\n\
             headers_env = { \"X-Api-Key\" = \"KARGO_API_KEY\" }\ncast = { n = \"int64\" }\n",
        ))
        .unwrap();
        let JobKind::Endpoint(job) = &file.jobs[0].kind else {
            panic!("not an endpoint job");
        };
        assert_eq!(job.key, "rows", "the job's name is the dataset's");
        let endpoint = job.endpoint(&Url::parse("http://h:1/").unwrap()).unwrap();
        assert_eq!(endpoint.url.as_str(), "http://h:1/v1/test/rows?report=r");
        assert_eq!(
            endpoint.paging,
            Paging::Offset {
                offset: "offset".into(),
                limit: "limit".into(),
                size: 20
            }
        );
        let key: &HeaderValue = &endpoint.request.headers["x-api-key"];
        assert!(key.is_sensitive());
        assert_eq!(key, "s3cret-from-env");
        assert_eq!(job.transforms.on_cast_error, OnCastError::Fail);
        let debug = format!("{file:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    #[test]
    fn mistakes_name_the_key_and_its_line_and_never_a_secret() {
        let cases = [
            ("", "line 3", "needs url"),
            (
                "url = \"/x\"\ndata_path = \"data.rows\"\n",
                "line 6",
                "data_path: ",
            ),
            ("url = \"x\"\n", "line 5", "path starting with '/'"),
            (
                "url = \"/x\"\npaginate = \"cursor\"\n",
                "line 6",
                "paginate cursor needs cursor_path",
            ),
            (
                "url = \"/x\"\npaginate = \"sideways\"\n",
                "line 6",
                "expected next, page, offset, cursor, none",
            ),
            (
                "url = \"/x\"\nlimit = 0\n",
                "line 6",
                "limit must be at least 1",
            ),
            (
                "url = \"/x\"\ncast = { a = \"int\" }\n",
                "line 6",
                "cast a: unknown type",
            ),
            (
                "url = \"/x\"\nrename = { \"a=b\" = \"c\" }\n",
                "line 6",
                "must not contain '='",
            ),
            (
                "url = \"/x\"\nbody = \"{oops\"\n",
                "line 6",
                "body is not valid JSON",
            ),
            ("url = \"/x\"\nbody = \"@f\"\n", "line 6", "body_file"),
            (
                "url = \"/x\"\nbody_file = \"/nonexistent/b.json\"\n",
                "line 6",
                "cannot read body_file",
            ),
            (
                "url = \"/x\"\ncontent_format = \"csv\"\n",
                "line 6",
                "content_format CSV pages",
            ),
            (
                "url = \"/x\"\nids = [\"r\"]\n",
                "line 6",
                "ids is only for kind = \"reports\"",
            ),
            (
                "url = \"/x\"\nheaders = { Authorization = \"Bearer hunter2\" }\n",
                "line 6",
                "header \"Authorization\" may hold a secret",
            ),
            (
                "url = \"/x\"\nheaders = { \"X-Api-Key\" = \"hunter2\" }\n",
                "line 6",
                "headers_env = { \"X-Api-Key\" = \"VAR\" }",
            ),
            (
                "url = \"/x\"\nheaders_env = { \"X-Api-Key\" = \"UNSET_VAR\" }\n",
                "line 6",
                "headers_env \"X-Api-Key\" names UNSET_VAR, which is not set",
            ),
            (
                "url = \"/x\"\nheaders = { \"bad header\" = \"hunter2\" }\n",
                "line 6",
                "headers \"bad header\" is not a valid header name",
            ),
        ];
        for (keys, line, what) in cases {
            let message = error(&endpoint_job(keys));
            assert!(message.contains(line), "{keys}: {message}");
            assert!(message.contains("job \"rows\""), "{keys}: {message}");
            assert!(message.contains(what), "{keys}: {message}");
            assert!(!message.contains("hunter2"), "{keys}: {message}");
        }
        let other_kind =
            "[[job]]\nname = \"a\"\nkind = \"report-list\"\nout = \"o\"\nurl = \"/x\"\n";
        assert!(error(other_kind).contains("url is only for kind = \"endpoint\""));
    }
}
