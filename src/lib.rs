//! kargo-export: Kargo Data Sharing API reports to partitioned Apache Parquet.
//!
//! The layout follows the data flow:
//! - [`source`] logs in, fetches pages over HTTP, follows them (next links, page numbers,
//!   offsets, cursors) and extracts the rows of each page (in one pass over its bytes for the
//!   API's own shape, a huge page as it arrives; by JSONPath, NDJSON or CSV for manually
//!   configured endpoints);
//! - [`decode`] turns the rows of one page into an Arrow batch with column kinds observed on the
//!   way, and [`infer`] merges those kinds into the one schema of an export and conforms every
//!   batch to it; [`transform`] applies the light transforms of manual endpoints (select,
//!   rename, cast, added columns) before partitioning;
//! - [`sink`] splits batches by partition (Hive layout), writes Parquet files under a staging
//!   prefix through `object_store`, then publishes them and retires a report's older files;
//! - [`pipeline`] wires the stages for one export command: phase 1 decodes pages and spools
//!   them in TMPDIR with their rows routed to buckets of partitions (`spool`), phase 2 (`stage`)
//!   writes a bucket at a time on one writer thread per core, then the commit; [`session`]
//!   opens the API (or an in-process sandbox) and reads the report list, [`signals`] catches
//!   SIGINT and SIGTERM, `cancel` stops an export's blocking jobs; [`sandbox`] is a
//!   Kargo-compatible API over `sample_data/` for trying the tool and for tests;
//! - [`jobs`] runs the scheduled batch exports of a jobs file (`run`), each report through
//!   [`pipeline`], with the incremental state kept at the destination;
//! - [`progress`] draws pages, rows and bytes fetched on a terminal;
//! - [`cli`] and [`settings`] turn the command line into validated settings once.

pub mod app;
mod cancel;
pub mod cli;
pub mod decode;
pub mod error;
mod hash;
pub mod infer;
pub mod jobs;
pub mod output;
pub mod pipeline;
pub mod progress;
pub mod sandbox;
pub mod secret;
pub mod session;
pub mod settings;
pub mod signals;
pub mod sink;
pub mod source;
mod spool;
mod stage;
pub mod transform;

pub use error::{Error, Result};
