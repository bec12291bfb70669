//! Parquet encoding of one report on several threads. The caller's thread splits each batch by
//! partition; every partition belongs to one shard (by a hash of its folder), and each shard is
//! a [`ReportWriter`] on its own thread, so encoding uses every core while a partition still
//! gets a single file (unpartitioned exports spread batches over the shards instead: one file
//! per shard). Channels to the shards hold at most [`CHUNKS_IN_FLIGHT`] chunks each, so a slow
//! encoder slows the splitter instead of filling memory.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use tokio::runtime::Handle;

use super::partition::{PartitionChunk, Partitioner};
use super::{Destination, ReportWriter, StagedReport, WriteOptions};
use crate::error::{Error, Result};

/// Chunks queued per shard before the splitter waits.
pub const CHUNKS_IN_FLIGHT: usize = 2;

/// Writes one report's files in one run on `shards` threads.
pub struct ParallelWriter {
    dest: Destination,
    handle: Handle,
    partitioner: Partitioner,
    shards: Vec<Shard>,
    next_unpartitioned: usize,
}

/// One encoder thread and the channel feeding it.
struct Shard {
    chunks: SyncSender<PartitionChunk>,
    thread: JoinHandle<Result<StagedReport>>,
}

impl ParallelWriter {
    /// Like [`ReportWriter::new`], with the memory budget shared by `shards` writers. Blocking
    /// context with a Tokio runtime (from `spawn_blocking`).
    pub fn new(
        dest: &Destination,
        report_key: &str,
        run_id: &str,
        schema: SchemaRef,
        partition_by: &[String],
        options: WriteOptions,
        shards: usize,
    ) -> Result<Self> {
        let shards = shards.max(1);
        let partitioner = Partitioner::new(&schema, partition_by)?;
        let mut options = options;
        options.memory_budget_bytes = (options.memory_budget_bytes / shards).max(1);
        let mut running = Vec::with_capacity(shards);
        for index in 0..shards {
            let writer = ReportWriter::new(
                dest,
                report_key,
                run_id,
                schema.clone(),
                partition_by,
                options.clone(),
            )?
            .with_shard(index as u32, shards as u32);
            running.push(Shard::start(writer));
        }
        Ok(ParallelWriter {
            dest: dest.clone(),
            handle: Handle::current(),
            partitioner,
            shards: running,
            next_unpartitioned: 0,
        })
    }

    /// Splits `batch` (the export's full schema) and hands each partition to its shard.
    /// Blocking. After an error, call [`ParallelWriter::abort`].
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        for chunk in self.partitioner.split(batch)? {
            let shard = self.shard_of(&chunk.dirs);
            if self.shards[shard].chunks.send(chunk).is_err() {
                // The shard stopped on an error; `finish` or `abort` reports it.
                return Err(Error::Internal("a Parquet writer thread stopped".into()));
            }
        }
        Ok(())
    }

    /// Waits for every shard and combines what they staged. Blocking. On any error, every
    /// shard's files are removed again.
    pub fn finish(self) -> Result<StagedReport> {
        let mut staged = Vec::new();
        let mut failure = None;
        let (dest, handle) = (self.dest, self.handle);
        for shard in self.shards {
            match shard.join() {
                Ok(part) => staged.push(part),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        if let Some(e) = failure {
            discard_blocking(&handle, &dest, staged);
            return Err(e);
        }
        StagedReport::merge(staged).ok_or_else(|| Error::Internal("no writer shard".into()))
    }

    /// Stops every shard and deletes what they staged. Blocking.
    pub fn abort(self) {
        let staged = self
            .shards
            .into_iter()
            .filter_map(|s| s.join().ok())
            .collect();
        discard_blocking(&self.handle, &self.dest, staged);
    }

    fn shard_of(&mut self, dirs: &[String]) -> usize {
        if dirs.is_empty() {
            self.next_unpartitioned = (self.next_unpartitioned + 1) % self.shards.len();
            return self.next_unpartitioned;
        }
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(dirs);
        (hash % self.shards.len() as u64) as usize
    }
}

impl Shard {
    fn start(mut writer: ReportWriter) -> Shard {
        let (chunks, received) = sync_channel::<PartitionChunk>(CHUNKS_IN_FLIGHT);
        let thread = std::thread::spawn(move || {
            for chunk in received {
                if let Err(e) = writer.write_partition(chunk) {
                    writer.abort();
                    return Err(e);
                }
            }
            writer.finish()
        });
        Shard { chunks, thread }
    }

    /// Closes the channel and waits for the shard's result.
    fn join(self) -> Result<StagedReport> {
        drop(self.chunks);
        self.thread
            .join()
            .map_err(|_| Error::Internal("a Parquet writer thread panicked".into()))?
    }
}

/// Deletes staged files from a blocking thread.
fn discard_blocking(handle: &Handle, dest: &Destination, staged: Vec<StagedReport>) {
    for part in staged {
        handle.block_on(part.discard(dest));
    }
}
