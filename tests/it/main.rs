//! Integration tests: the real binary over real HTTP on 127.0.0.1 against the sandbox, reading
//! the Parquet output back and comparing it with the source rows. One binary, a module per theme.
//!
//! - `auth`: short-lived tokens renewed; a rejected token fails without being echoed.
//! - `check`: `check report`, `check url` and `run --check`: each step printed as it passes,
//!   each failing step one `error:` line naming it, nothing left in a local or S3 destination.
//! - `export`: the bundled sample report end to end.
//! - `manual`: `export url` / `schema url`: every pagination kind, content format, JSONPath form
//!   and transform against the sandbox's `/v1/test/rows`.
//! - `pagination`: every page followed once, for each link style and each way a listing ends.
//! - `types`: the data rules (one schema, widening, conflicts, nesting, text, dates, timestamps).
//! - `partition`: hostile partition values stay inside DEST and decode back exactly.
//! - `reexport`: re-exports replace exactly one report's files; empty reports.
//! - `reports`: the report list as JSON, as a table and as a dataset.
//! - `report_ids`: report lists and submission answers whatever their id is called (`id`,
//!   `report_id`, `reportId`, integers, `--id-field`), and the error when none is recognisable.
//! - `schema`: `schema report` prints types and writes nothing.
//! - `secrets`: no password or token in output, logs or files; tokens only from KARGO_TOKEN or
//!   `--token-file`.
//! - `failures`: exit codes, the one `error:` line, and DEST left as it was.
//! - `retry`: error bursts, rate limits and cut-off bodies retried; permanent failures bounded.
//! - `ratelimit`: `Retry-After` holds every request to the API (the sandbox's request log shows
//!   none), `--max-requests-per-second` holds over a whole export, `--retries` and
//!   `--retry-max-time` bound a failing request.
//! - `hostile`: broken JSON refetched, stalled servers, pagination loops, cross-origin links.
//! - `inspect`: `inspect DEST` over local and S3 destinations: reports, merged schema, drift.
//! - `jobs`: `run JOBS.toml`: file errors, incremental state, submit-and-wait, shards, dry runs.
//! - `out_templates`: a job's `out` naming request fields: a dataset per report type, errors
//!   naming the field and the line, values that never leave DEST, submit jobs, S3 keys.
//! - `completions`: the completion scripts and the man page name every command.
//! - `crash`: SIGKILL at any moment publishes nothing and a rerun is exact; SIGINT/SIGTERM clean up.
//! - `delta`: `--table-format delta` tables (local, S3) read back with Python's `deltalake`.
//! - `s3`: exports to a real S3-compatible server (moto), read back through the S3 API.
//! - `schema_changes`: reports of different shapes in one destination under each
//!   `--on-schema-change` policy, read back with pyarrow.dataset (local and S3).
//! - `transforms`: select, rename, add and cast on `export report`, `export reports` and the
//!   `reports` / `new-reports` jobs: spend as an exact decimal (values and sums), cast errors
//!   and `on_cast_error`, jobs-file mistakes naming the key and its line.
//!
//! Shared helpers: `util` (the binary, the sandbox, fixtures, reading Parquet back, the secret
//! check), `runs` (`run JOBS.toml` with a summary, for `jobs` and `s3`) and `s3_support` (the S3
//! server, buckets read back through the S3 API and a fault-injecting proxy, for `s3`).

mod auth;
mod check;
mod completions;
mod crash;
mod delta;
mod export;
mod failures;
mod hostile;
mod inspect;
mod jobs;
mod manual;
mod out_templates;
mod pagination;
mod partition;
mod ratelimit;
mod reexport;
mod report_ids;
mod reports;
mod retry;
mod runs;
mod s3;
mod s3_support;
mod schema;
mod schema_changes;
mod secrets;
mod transforms;
mod types;
mod util;
