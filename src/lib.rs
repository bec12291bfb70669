//! kargo-export: Kargo Data Sharing API reports to partitioned Apache Parquet.
//!
//! The layout follows the data flow, and imports flow one way (`.ci/module_cycles.py` checks
//! that no two modules import each other, directly or through others):
//! - [`cli`] is the command line as clap sees it, nothing else; [`app`] is the dispatch, the
//!   one reader of clap types: it turns them into the source-neutral inputs of [`settings`]
//!   (connection, output, endpoint, transforms, report fields), which checks them through one
//!   set of functions shared with the jobs file of [`jobs`], naming a field as `--flag` or as
//!   `key` at line N; then it calls the pipeline, the jobs runner or the sandbox, and [`output`]
//!   prints the outcome;
//! - [`source`] logs in, fetches pages over HTTP, follows them (next links, page numbers,
//!   offsets, cursors) and reads the rows of each page: every page is read through an
//!   endpoint spec (the templates and the report list are presets of it), by JSONPath, NDJSON
//!   or CSV, and the API's own shape also by a one-pass decoder that goes straight to Arrow
//!   (a huge page as it arrives);
//! - [`decode`] turns the rows of one page into an Arrow batch with column kinds observed on the
//!   way, and [`infer`] merges those kinds into the one schema of an export and conforms every
//!   batch to it; [`transform`] applies the light transforms of any export (select, rename,
//!   cast, added columns) before partitioning;
//! - [`sink`] splits batches by partition (Hive layout), writes Parquet files under a staging
//!   prefix through `object_store`, then publishes them and retires a report's older files, or
//!   (`--table-format delta`) commits them to a Delta table through the Delta kernel; before
//!   that, `schema_check` compares the export's schema with the other reports of its
//!   destination ([`drift`]) and fails, records, or converges them (rewriting older reports)
//!   as `--on-schema-change` says; [`tls`] is the one TLS setup of every HTTPS client;
//! - [`pipeline`] wires the stages of one export: phase 1 decodes pages and spools them in
//!   TMPDIR with their rows routed to buckets of partitions (`spool`), phase 2 (`stage`)
//!   writes a bucket at a time on one writer thread per core, then the commit; [`session`]
//!   opens the API (or an in-process sandbox) and reads the report list, [`signals`] catches
//!   SIGINT and SIGTERM, `cancel` stops an export's blocking tasks; [`sandbox`] is a
//!   Kargo-compatible API over `sample_data/` for trying the tool and for tests;
//! - [`jobs`] runs the scheduled batch exports of a jobs file (`run`), each report through
//!   [`pipeline`], with the incremental state kept at the destination;
//! - [`check`] tests a configuration without exporting (login, first page, its columns, a probe
//!   of the destination), for one report or endpoint and for every job of a jobs file;
//! - [`inspect`] reads a destination's manifests back: its reports, schema and schema drift;
//! - [`progress`] draws pages, rows and bytes fetched on a terminal.

pub mod app;
mod cancel;
pub mod check;
pub mod cli;
pub mod decode;
pub mod drift;
pub mod error;
mod hash;
pub mod infer;
pub mod inspect;
pub mod jobs;
pub mod output;
pub mod pipeline;
pub mod progress;
pub mod sandbox;
mod schema_check;
pub mod secret;
pub mod session;
pub mod settings;
pub mod signals;
pub mod sink;
pub mod source;
mod spool;
mod stage;
pub mod tls;
pub mod transform;

pub use error::{Error, Result};
