//! Criterion benches of the export's CPU stages, one JSON page at a time, through the library API
//! the pipeline uses:
//!
//! - `decode`: page bytes -> raw Arrow batch ([`decode_api_page`]: one pass over the page, each row
//!   decoded straight into a [`RowDecoder`]);
//! - `conform`: raw batch -> batch of the export's schema ([`SchemaInference`], [`conform`]);
//! - `partition`: conformed batch -> one batch per `date` partition ([`Partitioner::split`]);
//! - `parquet`: those batches -> Parquet bytes in memory (`ArrowWriter`, the sink's codec and
//!   row-group caps), one file per partition like the sink;
//! - `page_to_parquet`: all of the above in a row.
//!
//! Inputs: a synthetic page of 5,000 rows (the sandbox's generator, as in `benches/e2e.sh`:
//! seed 42, rows 1,000,000.. of the 2,000,000-row report) and the bundled sample report
//! `rpt_7f3a9c21` (1,500 rows over 30 days) as one page. Throughput is always counted in bytes
//! of the page's JSON, so every stage reads as "JSON MB/s" and compares with the end-to-end
//! figure. Run: `cargo bench --bench stages` (about a minute after the build).

use std::hint::black_box;
use std::time::Duration;

use arrow::array::RecordBatch;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kargo_export::decode::{RawBatch, RowDecoder};
use kargo_export::error::PageLocation;
use kargo_export::infer::{SchemaInference, conform};
use kargo_export::sandbox::synthetic::SyntheticReport;
use kargo_export::sandbox::{self, LastLink, SandboxData};
use kargo_export::sink::WriteOptions;
use kargo_export::sink::partition::{PartitionChunk, Partitioner};
use kargo_export::source::extract::decode_api_page;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

/// One page to run every stage on.
struct Page {
    name: &'static str,
    body: Vec<u8>,
}

fn pages() -> Vec<Page> {
    let report = SyntheticReport::new(2_000_000, 42);
    let synthetic =
        sandbox::render_synthetic_page(&report, 1_000_000..1_005_000, None, LastLink::Null);
    let data = SandboxData::embedded();
    let rows = data
        .completed_rows("rpt_7f3a9c21")
        .expect("the bundled sample report");
    let sample = sandbox::render_page(rows, None, LastLink::Null);
    vec![
        Page {
            name: "synthetic_5000_rows",
            body: synthetic.into_bytes(),
        },
        Page {
            name: "sample_rpt_7f3a9c21",
            body: sample.into_bytes(),
        },
    ]
}

fn decode(body: &[u8]) -> RawBatch {
    let at = PageLocation {
        url: "http://bench/v1/completed-reports/bench".to_owned(),
        page: 1,
    };
    let mut decoder = RowDecoder::new();
    decode_api_page(body, &at, &mut decoder)
        .expect("a valid page")
        .0
}

/// The sink's writer properties for the default options (zstd level 3, row-group caps).
fn writer_properties() -> WriterProperties {
    let options = WriteOptions::default();
    WriterProperties::builder()
        .set_compression(options.compression.compression())
        .set_max_row_group_row_count(Some(options.max_row_group_rows))
        .set_max_row_group_bytes(Some(options.max_row_group_bytes))
        .build()
}

/// One Parquet file per chunk, in memory; returns the bytes written.
fn write_parquet(chunks: &[PartitionChunk], properties: &WriterProperties) -> usize {
    chunks
        .iter()
        .map(|chunk| {
            let mut writer = ArrowWriter::try_new(
                Vec::with_capacity(1 << 20),
                chunk.batch.schema(),
                Some(properties.clone()),
            )
            .expect("a writer");
            writer.write(&chunk.batch).expect("a written batch");
            writer.into_inner().expect("a finished file").len()
        })
        .sum()
}

/// Everything a page goes through before its Parquet bytes.
fn page_to_parquet(body: &[u8], partition_by: &[String], properties: &WriterProperties) -> usize {
    let raw = decode(body);
    let mut inference = SchemaInference::new();
    inference.observe(&raw, 1);
    let schema = inference.schema();
    let conformed = conform(&raw.batch, &schema).expect("a conformed batch");
    let partitioner = Partitioner::new(&schema, partition_by).expect("a partitioner");
    let chunks = partitioner.split(&conformed).expect("partitions");
    write_parquet(&chunks, properties)
}

fn stages(c: &mut Criterion) {
    let partition_by = vec!["date".to_owned()];
    let properties = writer_properties();
    for page in pages() {
        let bytes = page.body.len() as u64;
        let raw = decode(&page.body);
        let mut inference = SchemaInference::new();
        inference.observe(&raw, 1);
        let schema = inference.schema();
        let conformed: RecordBatch = conform(&raw.batch, &schema).expect("a conformed batch");
        let partitioner = Partitioner::new(&schema, &partition_by).expect("a partitioner");
        let chunks = partitioner.split(&conformed).expect("partitions");
        let parquet_bytes = write_parquet(&chunks, &properties);
        eprintln!(
            "{}: {} bytes of JSON, {} rows, {} columns, {} partitions, {} bytes of Parquet",
            page.name,
            bytes,
            conformed.num_rows(),
            conformed.num_columns(),
            chunks.len(),
            parquet_bytes
        );

        let mut group = c.benchmark_group(page.name);
        group.throughput(Throughput::Bytes(bytes));
        group.bench_function(BenchmarkId::from_parameter("decode"), |b| {
            b.iter(|| decode(black_box(&page.body)))
        });
        group.bench_function(BenchmarkId::from_parameter("conform"), |b| {
            b.iter(|| conform(black_box(&raw.batch), &schema).expect("a conformed batch"))
        });
        group.bench_function(BenchmarkId::from_parameter("partition"), |b| {
            b.iter(|| {
                partitioner
                    .split(black_box(&conformed))
                    .expect("partitions")
            })
        });
        group.bench_function(BenchmarkId::from_parameter("parquet"), |b| {
            b.iter(|| write_parquet(black_box(&chunks), &properties))
        });
        group.bench_function(BenchmarkId::from_parameter("page_to_parquet"), |b| {
            b.iter(|| page_to_parquet(black_box(&page.body), &partition_by, &properties))
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .nresamples(10_000)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = stages
}
criterion_main!(benches);
