//! `kind = "endpoint"`: a job's keys turned into an [`EndpointInput`] and checked by the same
//! [`settings::endpoint::endpoint`] as the flags of `export url` (its transform keys are every
//! kind's, read by the sibling `transform` module). What the command line cannot
//! say is checked here: the TOML types of tables, a body given both inline and as a file, and
//! inline header values that look like secrets (those must come from `headers_env`).
//!
//! The job's `name` is also the dataset's name (the `--name` of `export url`): it names the files
//! and the manifest, and decides the shard.

use std::ops::Range;

use serde_json::Value;
use toml::Spanned;

use super::{Fail, RawJob, pairs, span};
use crate::error::Result;
use crate::settings::connection::Given;
use crate::settings::endpoint::{
    self, BodyInput, CONTENT_FORMATS, EndpointInput, HeaderInput, PAGINATE_KINDS,
};
use crate::settings::field;
use crate::settings::{EndpointSpec, Origin, choice};

/// The keys only an endpoint job takes.
pub(super) fn keys_of_kind() -> impl Iterator<Item = &'static str> {
    [
        "url",
        "method",
        "query",
        "headers",
        "headers_env",
        "body",
        "body_file",
        "data_path",
        "paginate",
        "next_path",
        "page_param",
        "page_start",
        "offset_param",
        "limit_param",
        "limit",
        "cursor_path",
        "cursor_param",
        "total_path",
        "content_format",
    ]
    .into_iter()
}

/// Every endpoint-only key with its span when given, in the order of [`keys_of_kind`].
pub(super) fn keys(raw: &RawJob) -> Vec<(&'static str, Option<Range<usize>>)> {
    let spans = [
        span(&raw.url),
        span(&raw.method),
        span(&raw.query),
        span(&raw.headers),
        span(&raw.headers_env),
        span(&raw.body),
        span(&raw.body_file),
        span(&raw.data_path),
        span(&raw.paginate),
        span(&raw.next_path),
        span(&raw.page_param),
        span(&raw.page_start),
        span(&raw.offset_param),
        span(&raw.limit_param),
        span(&raw.limit),
        span(&raw.cursor_path),
        span(&raw.cursor_param),
        span(&raw.total_path),
        span(&raw.content_format),
    ];
    keys_of_kind().zip(spans).collect()
}

/// The checked endpoint of job `name`.
pub(super) fn endpoint(
    raw: &RawJob,
    name: &str,
    origin: &dyn Origin,
    fail: Fail,
) -> Result<EndpointSpec> {
    let input = input(raw, name, origin, fail)?;
    endpoint::endpoint(origin, &input)
}

/// The endpoint these keys describe, defaults where a key is missing.
fn input(raw: &RawJob, name: &str, origin: &dyn Origin, fail: Fail) -> Result<EndpointInput> {
    let url = raw.url.as_ref().ok_or_else(|| {
        fail(
            raw.kind.as_ref().map_or(0..0, Spanned::span),
            "kind = \"endpoint\" needs url = \"..\" (a path such as /v1/reports, or a URL \
             on the API's origin)"
                .into(),
        )
    })?;
    let mut input = EndpointInput::new(url.get_ref().clone());
    input.name = Some(name.to_owned());
    let text = |value: &Option<Spanned<String>>, into: &mut String| {
        if let Some(value) = value {
            into.clone_from(value.get_ref());
        }
    };
    text(&raw.method, &mut input.method);
    text(&raw.data_path, &mut input.data_path);
    text(&raw.next_path, &mut input.next_path);
    text(&raw.page_param, &mut input.page_param);
    text(&raw.offset_param, &mut input.offset_param);
    text(&raw.limit_param, &mut input.limit_param);
    text(&raw.cursor_param, &mut input.cursor_param);
    input.cursor_path = raw.cursor_path.as_ref().map(|p| p.get_ref().clone());
    input.total_path = raw.total_path.as_ref().map(|p| p.get_ref().clone());
    if let Some(start) = &raw.page_start {
        input.page_start = *start.get_ref();
    }
    if let Some(limit) = &raw.limit {
        input.limit = *limit.get_ref();
    }
    if let Some(paginate) = &raw.paginate {
        input.paginate = choice(origin, field::PAGINATE, paginate.get_ref(), PAGINATE_KINDS)?;
    }
    if let Some(format) = &raw.content_format {
        input.content_format = Some(choice(
            origin,
            field::CONTENT_FORMAT,
            format.get_ref(),
            CONTENT_FORMATS,
        )?);
    }
    input.query = pairs(&raw.query, field::QUERY, true, origin)?;
    input.body = match (&raw.body, &raw.body_file) {
        (Some(_), Some(file)) => {
            return Err(fail(file.span(), "give body or body_file, not both".into()));
        }
        (Some(body), None) if body.get_ref().trim_start().starts_with('@') => {
            return Err(fail(
                body.span(),
                "body is the JSON text itself: name a file with body_file = \"PATH\"".into(),
            ));
        }
        (Some(body), None) => Some(BodyInput::Text(body.get_ref().clone())),
        (None, Some(file)) => Some(BodyInput::File(file.get_ref().into())),
        (None, None) => None,
    };
    input.headers = headers(raw, origin)?;
    Ok(input)
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

/// `headers` (non-secret, inline) then `headers_env` (values from the environment). Errors
/// name headers and variables, never a value.
fn headers(raw: &RawJob, origin: &dyn Origin) -> Result<Vec<HeaderInput>> {
    let mut all = Vec::new();
    for (name, value) in raw
        .headers
        .as_ref()
        .map(Spanned::get_ref)
        .into_iter()
        .flatten()
    {
        if looks_secret(name) {
            return Err(origin.error(
                field::HEADERS,
                format!(
                    "header {name:?} may hold a secret and cannot be inline: name an \
                     environment variable with headers_env = {{ {name:?} = \"VAR\" }}"
                ),
            ));
        }
        let Value::String(value) = value else {
            return Err(origin.error(
                field::HEADERS,
                format!("headers: the value of {name:?} must be text"),
            ));
        };
        all.push(HeaderInput {
            name: name.clone(),
            value: Given::text(field::HEADERS, value.clone()),
        });
    }
    for (name, var) in raw
        .headers_env
        .as_ref()
        .map(Spanned::get_ref)
        .into_iter()
        .flatten()
    {
        let var = match var {
            Value::String(var) if !var.trim().is_empty() => var.trim(),
            _ => {
                return Err(origin.error(
                    field::HEADERS_ENV,
                    format!("headers_env: {name:?} must name an environment variable"),
                ));
            }
        };
        all.push(HeaderInput {
            name: name.clone(),
            value: Given::env(field::HEADERS_ENV, var, true),
        });
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use reqwest::Url;
    use reqwest::header::HeaderValue;

    use super::super::JobKind;
    use super::super::tests::{env, error, parse};
    use super::*;
    use crate::source::paginate::Paging;
    use crate::transform::CastType;

    /// The endpoint input the keys `keys` describe for job "rows".
    fn to_input(keys: &str) -> Result<EndpointInput> {
        let text = format!("kind = \"endpoint\"\n{keys}");
        let raw: RawJob = toml::from_str(&text).unwrap();
        let spans = super::super::Spans {
            at: std::sync::Arc::new(super::super::Locator {
                name: "jobs.toml".into(),
                text,
            }),
            keys: super::super::keys(&raw),
            fallback: 0..0,
        };
        let origin = spans.origin(Some("rows"), &env);
        input(&raw, "rows", &origin, &|_, message| {
            crate::error::Error::Usage(message)
        })
    }

    fn endpoint_job(keys: &str) -> String {
        format!("[[job]]\nname = \"rows\"\nkind = \"endpoint\"\nout = \"o\"\n{keys}")
    }

    fn pairs_of(pairs: &[(String, String)]) -> Vec<String> {
        pairs.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    #[test]
    fn keys_become_the_fields_of_export_url() {
        let input = to_input(
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
"#,
        )
        .unwrap();
        assert_eq!(input.url, "/v1/test/rows");
        assert_eq!(input.name.as_deref(), Some("rows"));
        assert_eq!(input.method, "post");
        // Tables come in key order (toml sorts them); no field depends on the order of its values.
        assert_eq!(
            pairs_of(&input.query),
            ["flag=true", "paging=page", "size=50"]
        );
        let headers: Vec<String> = input
            .headers
            .iter()
            .map(|h| format!("{}: {:?}", h.name, h.value.from))
            .collect();
        assert_eq!(
            headers,
            [
                "Accept: Text(\"application/json\")",
                "X-Api-Key: Env { var: \"KARGO_API_KEY\", required: true }"
            ]
        );
        assert!(matches!(&input.body, Some(BodyInput::Text(b)) if b == r#"{"report": "r"}"#));
        assert_eq!(input.data_path, "$.result[*]");
        assert_eq!(input.paginate, endpoint::PaginateKind::Page);
        assert_eq!((input.page_param.as_str(), input.page_start), ("p", 0));
        assert_eq!(input.limit, 7);
        assert_eq!(input.total_path.as_deref(), Some("$.meta.total"));
        assert_eq!(
            input.content_format,
            Some(crate::source::formats::ContentFormat::Ndjson)
        );
        let body_file = to_input("url = \"/x\"\nbody_file = \"b.json\"").unwrap();
        assert!(matches!(&body_file.body, Some(BodyInput::File(p)) if p.as_os_str() == "b.json"));
    }

    #[test]
    fn missing_keys_take_the_defaults_of_export_url() {
        let input = to_input("url = \"/x\"").unwrap();
        assert_eq!(input.method, "GET");
        assert_eq!(input.data_path, "$.data.rows[*]");
        assert_eq!(input.paginate, endpoint::PaginateKind::Next);
        assert_eq!(input.next_path, "$.links.next");
        assert_eq!((input.page_param.as_str(), input.page_start), ("page", 1));
        assert_eq!(input.limit, 100);
        assert!(input.headers.is_empty() && input.body.is_none());
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
        let cast = &file.jobs[0].transforms.cast;
        assert_eq!(cast, &[("n".to_owned(), CastType::Int64)]);
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
