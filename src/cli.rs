//! The command line as clap sees it: flags and subcommands, nothing else. Only the dispatch
//! ([`crate::app`]) reads these types: it turns them into the inputs of [`crate::settings`],
//! which checks them the same way it checks a jobs file.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::sink::partition::DEFAULT_MAX_PARTITIONS;
use crate::source::client::DEFAULT_API_BASE;

pub mod endpoint;
pub mod transform;

pub use endpoint::EndpointArgs;
pub use transform::TransformArgs;

/// Export Kargo Data Sharing API reports to partitioned Apache Parquet.
#[derive(Debug, Parser)]
#[command(name = "kargo-export", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Log lines on stderr as text, or as one JSON object each (for schedulers).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

const AFTER_HELP: &str = "\
The password is read from KARGO_PASSWORD or --password-file, a ready bearer token from
KARGO_TOKEN or --token-file: never from a flag value.
Try it without credentials: kargo-export --sandbox export report rpt_7f3a9c21 --out ./out";

/// The shape of `inspect --json`, shown by `inspect --help`.
const INSPECT_JSON: &str = "\
With --json, one object:
  {\"destination\": DEST, \"uniform\": true | false,
   \"reports\": [{\"report_id\", \"rows\", \"files\", \"bytes\", \"exported_at\", \"partition_by\": [COL],
                \"columns\": N}],
   \"schema\": [{\"name\", \"type\": TYPE or null for a conflict, \"types\": [TYPE], \"reports\": N}],
   \"differences\": [{\"report\": ID, \"differences\": [CHANGE]}],
   \"delta_version\": N or null}
A Delta table (DEST/_delta_log) is read from its log: its reports are those its commits record
(rows and time of each report's latest commit, its files in the latest version), its one schema
is the table's, it is always uniform, and delta_version is its latest version.
Reports are in key order, each with how many columns its manifest lists (0: an empty report
exported alone, which has no schema and is left out of the comparison). Schema columns come
first seen first, each with the type all reports merge into, every type they hold it as and how
many reports have it. Only reports that differ from the others are in differences; a CHANGE
compares the report ID with the reports it lists:
  {\"change\": \"added\", \"column\", \"type\", \"reports\": [ID]}     a column they lack
  {\"change\": \"missing\", \"column\", \"type\", \"reports\": [ID]}   a column of theirs it lacks
  {\"change\": \"type\", \"column\", \"ours\", \"theirs\", \"merged\": TYPE or null, \"reports\": [ID]}
  {\"change\": \"partition\", \"ours\": [COL], \"theirs\": [COL], \"reports\": [ID]}";

/// Where the API is and how to log in.
#[derive(Debug, Args)]
#[command(next_help_heading = "Connection")]
pub struct ConnectionArgs {
    /// API base URL.
    #[arg(long, env = "KARGO_API_BASE", default_value = DEFAULT_API_BASE, global = true)]
    pub api_base: String,

    /// Login endpoint [default: {api-base}/v1/auth/token].
    #[arg(long, env = "KARGO_AUTH_URL", global = true)]
    pub auth_url: Option<String>,

    /// Username for the login.
    #[arg(long, env = "KARGO_USERNAME", global = true)]
    pub username: Option<String>,

    /// File holding the password (otherwise KARGO_PASSWORD).
    #[arg(long, value_name = "PATH", global = true)]
    pub password_file: Option<PathBuf>,

    /// File holding a ready bearer token, instead of a login (otherwise KARGO_TOKEN).
    #[arg(long, value_name = "PATH", global = true)]
    pub token_file: Option<PathBuf>,

    /// Run against an in-process sandbox API over the bundled sample data (no credentials, no network).
    #[arg(long, global = true)]
    pub sandbox: bool,

    /// Requests a second at most, over everything this process sends (e.g. 2.5) [default: no
    /// limit].
    #[arg(long, value_name = "N", global = true)]
    pub max_requests_per_second: Option<f64>,

    /// Retries of a request after its first attempt [default: 4].
    #[arg(long, value_name = "N", global = true)]
    pub retries: Option<i64>,

    /// No retry starts later than this many seconds after a request's first attempt [default: 90].
    #[arg(long, value_name = "SECS", global = true)]
    pub retry_max_time: Option<f64>,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every report request (all pages): a table on a terminal, JSON with --json.
    Reports {
        /// Print one JSON array of the report requests, exactly as the API sent them.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        fields: ReportFieldArgs,
    },
    /// Export to Parquet.
    Export {
        #[command(subcommand)]
        target: ExportTarget,
    },
    /// Print the Arrow schema an export would write; writes nothing.
    Schema {
        #[command(subcommand)]
        target: SchemaTarget,
    },
    /// Test a configuration without exporting: log in, read the first page, prove DEST usable.
    ///
    /// Logs in (saying when the token expires, when the login answer tells), fetches the first
    /// page only and prints its rows, how pages follow and the columns and types that page
    /// alone implies; with --out, writes one probe object under DEST/_staging/ and deletes it
    /// (a missing local directory is created for it and removed again). Each step is printed
    /// as it passes; the first that fails is the `error:` line, and the steps after it do not
    /// run. Exits 0 only when every step passed. Nothing is exported, nothing is left in DEST.
    Check {
        #[command(subcommand)]
        target: CheckTarget,
    },
    /// Show what DEST holds: its reports, their merged schema and how their schemas differ.
    ///
    /// Reads the manifests (`_manifests/`) only, never a data file, and writes nothing. Exits 0
    /// when DEST is uniform (every report has the same columns, types and partition columns; a
    /// DEST without reports is uniform too), 1 when it is not (after printing everything) or
    /// cannot be read.
    #[command(after_long_help = INSPECT_JSON)]
    Inspect {
        /// A directory, a file:// URL or s3://bucket/prefix (configured from AWS_* variables).
        #[arg(value_name = "DEST")]
        dest: String,

        /// Print one JSON object (its shape is below) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the jobs of a jobs file: scheduled, incremental batch exports.
    Run(RunArgs),
    /// Serve a Kargo-compatible API over the sample data, for trying the tool and for tests.
    Sandbox(SandboxArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell or elvish) on stdout.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout.
    Man,
}

/// Flags of the `run` command.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The jobs file (TOML): connection settings and a list of jobs.
    #[arg(value_name = "JOBS.toml")]
    pub jobs: PathBuf,

    /// Export again what the destinations' state says was exported already.
    #[arg(long)]
    pub full_refresh: bool,

    /// List what would be exported; write nothing and submit nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Also write the per-job summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,

    /// Export only this worker's share of the reports: worker K of N (0-based).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,

    /// Number of workers N when the index comes from JOB_COMPLETION_INDEX (Kubernetes Indexed
    /// Jobs) or AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch array jobs).
    #[arg(long, env = "KARGO_SHARDS", value_name = "N")]
    pub shards: Option<u32>,

    /// Reports exported at once over all jobs [default: the file's concurrency, else 2].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<i64>,

    /// Check every job instead of running it (see `check`): one login, then each job's first
    /// page and destination, a line per job; exports, submits and records nothing.
    #[arg(long, conflicts_with_all = ["full_refresh", "dry_run", "summary_json"])]
    pub check: bool,

    #[command(flatten)]
    pub fields: ReportFieldArgs,
}

/// How to read the report list's rows (`reports`, `run`); each overrides the jobs file's key.
#[derive(Debug, Args)]
pub struct ReportFieldArgs {
    /// The key of a report request's id [default: the first of id, report_id, reportId].
    #[arg(long, value_name = "KEY")]
    pub id_field: Option<String>,

    /// The key of a report request's status [default: status].
    #[arg(long, value_name = "KEY")]
    pub status_field: Option<String>,

    /// A status that means completed; repeatable or comma-separated [default: completed].
    #[arg(long, value_name = "STATUS", value_delimiter = ',')]
    pub completed_status: Vec<String>,
}

/// What `export` exports.
#[derive(Debug, Subcommand)]
pub enum ExportTarget {
    /// Rows of completed reports (GET /v1/completed-reports/{id}).
    Report {
        /// Report ids.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        #[command(flatten)]
        transforms: TransformArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// The report requests themselves (GET /v1/reports) as a dataset.
    Reports {
        #[command(flatten)]
        transforms: TransformArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Any endpoint, configured by hand: request, rows, pagination, format, transforms.
    Url {
        #[command(flatten)]
        endpoint: Box<EndpointArgs>,
        #[command(flatten)]
        transforms: TransformArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// What `schema` inspects.
#[derive(Debug, Subcommand)]
pub enum SchemaTarget {
    /// The schema of a completed report.
    Report {
        /// Report id.
        id: String,
        #[command(flatten)]
        transforms: TransformArgs,
    },
    /// The schema of a configured endpoint (see `export url`).
    Url {
        #[command(flatten)]
        endpoint: Box<EndpointArgs>,
        #[command(flatten)]
        transforms: TransformArgs,
    },
}

/// What `check` tests.
#[derive(Debug, Subcommand)]
pub enum CheckTarget {
    /// A completed report (GET /v1/completed-reports/{id}).
    Report {
        /// Report id.
        id: String,
        #[command(flatten)]
        transforms: TransformArgs,
        /// Also prove this destination usable (see `export`'s --out).
        #[arg(long, value_name = "DEST")]
        out: Option<String>,
    },
    /// A configured endpoint (see `export url`).
    Url {
        #[command(flatten)]
        endpoint: Box<EndpointArgs>,
        #[command(flatten)]
        transforms: TransformArgs,
        /// Also prove this destination usable (see `export`'s --out).
        #[arg(long, value_name = "DEST")]
        out: Option<String>,
    },
}

/// Where and how to write.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Destination: a directory, a file:// URL or s3://bucket/prefix (configured from AWS_* variables).
    #[arg(long, value_name = "DEST")]
    pub out: String,

    /// Hive-partition the files by these columns (comma-separated).
    #[arg(long, value_name = "COL[,COL...]", value_delimiter = ',')]
    pub partition_by: Vec<String>,

    /// Parquet codec: zstd[:LEVEL] (1-22, default 3), gzip[:LEVEL] (0-9, default 6), snappy, lz4 or none.
    #[arg(long, value_name = "CODEC", default_value = "zstd")]
    pub compression: String,

    /// Refuse an export whose partition columns take more distinct values than this (each is a
    /// file, and an open encoder while its bucket of rows is written).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PARTITIONS as i64)]
    pub max_partitions: i64,

    /// How many reports to export at once.
    #[arg(long, default_value_t = 2)]
    pub concurrency: i64,

    /// When the export's schema differs from the other reports' in DEST: fail (publish
    /// nothing), evolve (give every file the merged schema) or allow (publish and record it).
    #[arg(long, value_name = "POLICY", default_value = "fail", value_parser = policies())]
    pub on_schema_change: String,

    /// Table format of DEST: hive (Parquet files in Hive partition folders) or delta (the same
    /// files as a Delta Lake table: each export is one atomic, versioned commit).
    #[arg(long, value_name = "FORMAT", default_value = "hive", value_parser = table_formats())]
    pub table_format: String,
}

/// The names of the schema-change policies.
fn policies() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        crate::drift::ON_SCHEMA_CHANGE.iter().map(|(name, _)| *name),
    )
}

/// The names of the table formats.
fn table_formats() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        crate::sink::TABLE_FORMATS.iter().map(|(name, _)| *name),
    )
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags of the `sandbox` command.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Serve this directory (reports.json, completed-reports/ID.json) instead of the bundled sample data.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Rows per page when the client does not ask for a page_size.
    #[arg(long, default_value_t = 100)]
    pub page_size: usize,

    /// How next links are written.
    #[arg(long, value_enum, default_value_t = LinkStyleArg::Absolute)]
    pub link_style: LinkStyleArg,

    /// How the last page says there is no next page.
    #[arg(long, value_enum, default_value_t = LastLinkArg::Null)]
    pub last_link: LastLinkArg,

    /// Lifetime of issued tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl: u64,

    /// Also serve a synthetic completed report of ROWS generated ad-delivery rows (22 columns,
    /// ~490 bytes of JSON a row, 30 days); repeatable. Its pages for --page-size are rendered
    /// before the sandbox starts listening.
    #[arg(long, value_name = "ID=ROWS")]
    pub synthetic: Vec<String>,

    /// Seed of the synthetic reports: the same seed serves the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Order of the synthetic reports' rows: sorted (grouped by day, in order) or random (each
    /// row's day drawn at random, so every page holds rows of almost every day).
    #[arg(
        long,
        value_enum,
        value_name = "ORDER",
        default_value_t = crate::sandbox::synthetic::Order::Sorted
    )]
    pub synthetic_order: crate::sandbox::synthetic::Order,

    /// Answer synthetic report pages gzip-compressed to clients that accept gzip (their
    /// pre-rendered pages are compressed at start-up, on all cores).
    #[arg(long)]
    pub gzip: bool,

    /// Fault injection: the first N requests to completed-report pages answer --fail-status
    /// with `Retry-After: 0`.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub fail_first: u64,

    /// Fault injection: every request for page N of a completed report answers --fail-status
    /// (a permanent failure mid-export); 0 never.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub fail_page: usize,

    /// Fault injection: the status --fail-first, --fail-page and --fail-request answer with
    /// (400-599).
    #[arg(long, value_name = "CODE", default_value_t = 503)]
    pub fail_status: u16,

    /// Fault injection: the Nth authorized request (any route but the login, counted from 1 as
    /// they arrive), or with PATH the Nth to that path, answers --fail-status; repeatable or
    /// comma-separated.
    #[arg(long, value_name = "[PATH:]N", value_delimiter = ',')]
    pub fail_request: Vec<crate::sandbox::FailRequest>,

    /// The Retry-After header of injected failures: seconds or an HTTP date; `none` sends none.
    #[arg(long, value_name = "VALUE", default_value = "0")]
    pub retry_after: String,

    /// Write one JSON line per request to FILE (arrival and answer times in seconds since the
    /// sandbox started, method, path, query, status; never headers or bodies).
    #[arg(long, value_name = "FILE")]
    pub request_log: Option<PathBuf>,

    /// Fault injection: every Nth page response is cut off mid-body (its Content-Length
    /// promises more than is sent) and its connection closed; 0 never.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub truncate_every: u64,

    /// Fault injection: every Nth page response is a complete 200 whose JSON is broken (only
    /// the first half of the page is sent, with a matching Content-Length); 0 never.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub malformed_every: u64,

    /// Fault injection: the first N requests to completed-report pages get no answer for ten
    /// minutes.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub stall_first: u64,

    /// Fault injection: page N's next link points back to page 1 (a pagination loop); 0 never.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub loop_at: usize,

    /// Reports submitted with POST /v1/reports stay pending this long, then complete.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub complete_after_ms: u64,

    /// Fault injection: submitted reports end as failed instead of completed.
    #[arg(long)]
    pub fail_submissions: bool,

    /// The key of submitted reports' ids in the POST answer and the report list.
    #[arg(long, value_name = "KEY", default_value = "id")]
    pub submit_id_key: String,

    /// Submitted reports get integer ids (1, 2, ...) instead of rpt_sub0001, ...
    #[arg(long)]
    pub submit_numeric_ids: bool,

    /// Fault injection: write every next link absolute on this origin (scheme://host:port)
    /// instead of the sandbox's own.
    #[arg(long, value_name = "URL")]
    pub next_origin: Option<String>,
}

/// Next-link styles of the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LinkStyleArg {
    Absolute,
    RootRelative,
    QueryRelative,
}

/// How the sandbox's last page ends the listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LastLinkArg {
    /// `"links": {}`.
    Absent,
    /// `"next": null`.
    Null,
    /// `"next": ""`.
    Empty,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_an_export_with_partitions() {
        let cli = Cli::try_parse_from([
            "kargo-export",
            "export",
            "report",
            "a",
            "b",
            "--out",
            "d",
            "--partition-by",
            "date,country",
        ])
        .unwrap();
        let Command::Export {
            target: ExportTarget::Report { ids, output, .. },
        } = cli.command
        else {
            panic!("not an export");
        };
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(output.partition_by, ["date", "country"]);
        assert_eq!(output.compression, "zstd");
        assert_eq!(output.max_partitions, DEFAULT_MAX_PARTITIONS as i64);
    }
}
