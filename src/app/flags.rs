//! The parsed command line as settings inputs: each flag becomes the field of the input it
//! sets, with nothing checked here but the syntax of `--header` (`Name: value`). The checks
//! are [`crate::settings`]'s, shared with the jobs file.

use crate::cli::endpoint::{ContentFormatArg, PaginateArg};
use crate::cli::transform::OnCastErrorArg;
use crate::cli::{
    ConnectionArgs, EndpointArgs, OutputArgs, ReportFieldArgs, RunArgs, TransformArgs,
};
use crate::error::{Error, Result};
use crate::jobs::RunInput;
use crate::settings::connection::{self, ConnectionInput, Given, LimitsInput};
use crate::settings::endpoint::{BodyInput, EndpointInput, HeaderInput, PaginateKind};
use crate::settings::field;
use crate::settings::output::OutputInput;
use crate::settings::reports::ReportFieldsInput;
use crate::settings::transform::TransformInput;
use crate::settings::{Api, EndpointSpec, Flags};
use crate::source::formats::ContentFormat;
use crate::transform::{OnCastError, Transforms};

/// Environment variable holding the password.
const PASSWORD_ENV: &str = "KARGO_PASSWORD";
/// Environment variable holding a ready bearer token.
const TOKEN_ENV: &str = "KARGO_TOKEN";

/// The checked API of the connection flags, with their limits.
pub fn api(args: &ConnectionArgs) -> Result<Api> {
    let limits = connection::limits(&Flags, &limits(args))?;
    Ok(connection::api(&Flags, &self::connection(args))?.with_limits(limits))
}

/// The connection flags: a token from `--token-file`, else from KARGO_TOKEN when set; a
/// password from `--password-file`, else from KARGO_PASSWORD when set.
pub fn connection(args: &ConnectionArgs) -> ConnectionInput {
    ConnectionInput {
        sandbox: args.sandbox,
        api_base: Some(args.api_base.clone()),
        auth_url: args.auth_url.clone(),
        username: args
            .username
            .as_ref()
            .map(|name| Given::text(field::USERNAME, name.clone())),
        password: Some(match &args.password_file {
            Some(path) => Given::file(field::PASSWORD_FILE, path.clone()),
            None => Given::env(field::PASSWORD_ENV, PASSWORD_ENV, false),
        }),
        token: Some(match &args.token_file {
            Some(path) => Given::file(field::TOKEN_FILE, path.clone()),
            None => Given::env(field::TOKEN_ENV, TOKEN_ENV, false),
        }),
    }
}

/// `--retries`, `--retry-max-time` and `--max-requests-per-second`.
pub fn limits(args: &ConnectionArgs) -> LimitsInput {
    LimitsInput {
        retries: args.retries,
        retry_max_time_secs: args.retry_max_time,
        max_requests_per_second: args.max_requests_per_second,
    }
}

/// `--id-field`, `--status-field`, `--completed-status`.
pub fn report_fields(args: &ReportFieldArgs) -> ReportFieldsInput {
    ReportFieldsInput {
        id_field: args.id_field.clone(),
        status_field: args.status_field.clone(),
        completed_statuses: (!args.completed_status.is_empty())
            .then(|| args.completed_status.clone()),
    }
}

/// `--out`, `--partition-by`, `--compression`, `--max-partitions`.
pub fn output(args: &OutputArgs) -> OutputInput {
    OutputInput {
        out: args.out.clone(),
        partition_by: args.partition_by.clone(),
        compression: Some(args.compression.clone()),
        max_partitions: Some(args.max_partitions),
        on_schema_change: Some(args.on_schema_change.clone()),
        table_format: Some(args.table_format.clone()),
    }
}

/// The flags of `run`, with the connection flags that override the jobs file's.
pub fn run(args: &RunArgs, connection: &ConnectionArgs) -> RunInput {
    RunInput {
        jobs: args.jobs.clone(),
        full_refresh: args.full_refresh,
        dry_run: args.dry_run,
        summary_json: args.summary_json.clone(),
        shard: args.shard.clone(),
        shards: args.shards,
        concurrency: args.concurrency,
        report_fields: report_fields(&args.fields),
        connection: self::connection(connection),
        limits: limits(connection),
    }
}

/// The flags of `export url` / `schema url`.
pub fn endpoint(args: &EndpointArgs) -> Result<EndpointInput> {
    Ok(EndpointInput {
        url: args.url.clone(),
        name: args.name.clone(),
        method: args.method.clone(),
        query: args.query.clone(),
        headers: args
            .header
            .iter()
            .map(|h| header(h))
            .collect::<Result<_>>()?,
        body: args
            .body
            .as_deref()
            .map(|body| match body.strip_prefix('@') {
                Some(file) => BodyInput::File(file.into()),
                None => BodyInput::Text(body.to_owned()),
            }),
        data_path: args.data_path.clone(),
        paginate: match args.paginate {
            PaginateArg::Next => PaginateKind::Next,
            PaginateArg::Page => PaginateKind::Page,
            PaginateArg::Offset => PaginateKind::Offset,
            PaginateArg::Cursor => PaginateKind::Cursor,
            PaginateArg::None => PaginateKind::None,
        },
        next_path: args.next_path.clone(),
        page_param: args.page_param.clone(),
        page_start: args.page_start,
        offset_param: args.offset_param.clone(),
        limit_param: args.limit_param.clone(),
        limit: args.limit,
        cursor_path: args.cursor_path.clone(),
        cursor_param: args.cursor_param.clone(),
        total_path: args.total_path.clone(),
        content_format: args.content_format.map(|format| match format {
            ContentFormatArg::Json => ContentFormat::Json,
            ContentFormatArg::Ndjson => ContentFormat::Ndjson,
            ContentFormatArg::Csv => ContentFormat::Csv,
        }),
    })
}

/// `--select`, `--rename`, `--cast`, `--add-column`, `--on-cast-error`.
/// The checked transform flags.
pub fn checked_transforms(args: &TransformArgs) -> Result<Transforms> {
    crate::settings::transform::transforms(&Flags, &transforms(args))
}

/// The checked endpoint of `export url`, `schema url` or `check url`.
pub fn endpoint_spec(args: &EndpointArgs) -> Result<EndpointSpec> {
    crate::settings::endpoint::endpoint(&Flags, &endpoint(args)?)
}

pub fn transforms(args: &TransformArgs) -> TransformInput {
    TransformInput {
        select: args.select.clone(),
        rename: args.rename.clone(),
        cast: args.cast.clone(),
        add_column: args.add_column.clone(),
        on_cast_error: match args.on_cast_error {
            OnCastErrorArg::Fail => OnCastError::Fail,
            OnCastErrorArg::Null => OnCastError::Null,
        },
    }
}

/// `--header 'Name: value'`; the error never repeats the text, whose value may be a secret.
fn header(text: &str) -> Result<HeaderInput> {
    let Some((name, value)) = text.split_once(':') else {
        return Err(Error::Usage("--header must look like 'Name: value'".into()));
    };
    Ok(HeaderInput {
        name: name.trim().to_owned(),
        value: Given::text(field::HEADERS, value.trim()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, ExportTarget, SchemaTarget};
    use crate::source::paginate::Paging;
    use crate::transform::CastType;
    use clap::Parser;
    use reqwest::{Method, Url};

    /// The parsed command line `kargo-export ARGS`, or its usage error.
    fn parse(args: &[&str]) -> Result<Cli> {
        Cli::try_parse_from(["kargo-export"].iter().chain(args))
            .map_err(|e| Error::Usage(e.to_string()))
    }

    /// The checked transform flags.
    /// The checked endpoint of `schema url ARGS`, or the usage error of the flags.
    fn job(args: &[&str]) -> Result<EndpointSpec> {
        Ok(job_and_transforms(args)?.0)
    }

    /// The checked endpoint and transforms of `schema url ARGS`, or the usage error.
    fn job_and_transforms(args: &[&str]) -> Result<(EndpointSpec, Transforms)> {
        let cli = parse(&[&["schema", "url"], args].concat())?;
        let Command::Schema {
            target:
                SchemaTarget::Url {
                    endpoint,
                    transforms,
                },
        } = cli.command
        else {
            panic!("not schema url");
        };
        let spec = crate::settings::endpoint::endpoint(&Flags, &self::endpoint(&endpoint)?)?;
        Ok((spec, checked_transforms(&transforms)?))
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
        let cli = Cli::try_parse_from([
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
        assert!(
            usage(&["/x", "--paginate", "offset", "--limit", "0"])
                .contains("--limit must be at least 1")
        );
        assert!(usage(&["/x", "--header", "no colon s3cret"]).contains("'Name: value'"));
        assert!(usage(&["/x", "--cast", "a=int"]).contains("unknown type"));
        assert!(usage(&["/x", "--rename", "nope"]).contains("KEY=VALUE"));
        assert!(usage(&["/x", "--body", "{oops"]).contains("--body"));
        assert!(usage(&["ftp://h/x"]).contains("http(s)"));
        assert!(usage(&["x"]).contains("path starting with '/'"));
    }

    #[test]
    fn flags_build_the_request_paging_and_transforms() {
        let (post, transforms) = job_and_transforms(&[
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
        let endpoint = post.endpoint(&Url::parse("http://h/").unwrap()).unwrap();
        assert_eq!(endpoint.request.method, Method::POST);
        assert_eq!(endpoint.request.body.as_deref(), Some(&br#"{"a": 1}"#[..]));
        assert_eq!(endpoint.request.headers["x-key"], "abc");
        assert!(endpoint.request.headers["x-key"].is_sensitive());
        assert_eq!(
            endpoint.paging,
            Paging::Offset {
                offset: "offset".into(),
                limit: "limit".into(),
                size: 50
            }
        );
        assert_eq!(transforms.add, [("report".to_owned(), "r=1".to_owned())]);
        assert_eq!(transforms.on_cast_error, OnCastError::Null);
    }

    #[test]
    fn every_export_and_schema_command_takes_the_transform_flags() {
        let flags = [
            "--select",
            "date,spend",
            "--rename",
            "date=day",
            "--cast",
            "spend=decimal(18,6)",
            "--add-column",
            "source=kargo",
            "--on-cast-error",
            "null",
        ];
        let want = Transforms {
            select: vec!["date".into(), "spend".into()],
            rename: vec![("date".into(), "day".into())],
            add: vec![("source".into(), "kargo".into())],
            cast: vec![("spend".into(), CastType::Decimal(18, 6))],
            on_cast_error: OnCastError::Null,
        };
        for command in [
            &["export", "report", "r1", "--out", "o"][..],
            &["export", "reports", "--out", "o"],
            &["export", "url", "/x", "--out", "o"],
            &["schema", "report", "r1"],
            &["schema", "url", "/x"],
        ] {
            let cli = parse(&[command, &flags].concat()).unwrap();
            let transforms = match &cli.command {
                Command::Export { target } => match target {
                    ExportTarget::Report { transforms, .. }
                    | ExportTarget::Reports { transforms, .. }
                    | ExportTarget::Url { transforms, .. } => transforms,
                },
                Command::Schema { target } => match target {
                    SchemaTarget::Report { transforms, .. }
                    | SchemaTarget::Url { transforms, .. } => transforms,
                },
                _ => panic!("{command:?}"),
            };
            assert_eq!(checked_transforms(transforms).unwrap(), want, "{command:?}");
        }
        let cli = parse(&["export", "report", "r1", "--out", "o", "--cast", "a=int"]).unwrap();
        let Command::Export {
            target: ExportTarget::Report { transforms, .. },
        } = &cli.command
        else {
            panic!("not export report");
        };
        let message = checked_transforms(transforms).unwrap_err().to_string();
        assert!(message.contains("--cast a: unknown type"), "{message}");
    }

    #[test]
    fn max_partitions_below_one_is_refused_before_the_destination_is_opened() {
        for bad in ["0", "-2"] {
            let max_partitions = format!("--max-partitions={bad}");
            let cli = parse(&[
                "export",
                "report",
                "a",
                "--out",
                "never-created",
                &max_partitions,
            ])
            .unwrap();
            let Command::Export {
                target: ExportTarget::Report { output, .. },
            } = cli.command
            else {
                panic!("not an export");
            };
            let error = crate::settings::output::output(&Flags, &self::output(&output))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                error.contains("--max-partitions must be a whole number of at least 1"),
                "{bad}: {error}"
            );
        }
        assert!(!std::path::Path::new("never-created").exists());
    }
}
