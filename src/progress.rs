//! Progress on a terminal: one line on stderr with the pages, rows and JSON bytes fetched so far
//! and the rate, for every command that fetches pages. Nothing is drawn when stderr is not a
//! terminal (schedulers, pipes, tests), so logs stay clean. The count is process-wide: the
//! pipeline reports each page with [`page`], whichever export it belongs to, so concurrent
//! exports of a `run` add up on the same line. Logs share stderr with the line: they are written
//! through [`LogWriter`], which clears the line for each log line and draws it again after, so
//! a log line (a JSON one with `--log-format json`) never starts behind the spinner.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The line being drawn, if any.
static BAR: Mutex<Option<Bar>> = Mutex::new(None);

struct Bar {
    bar: ProgressBar,
    started: Instant,
    pages: u64,
    rows: u64,
    bytes: u64,
}

/// Draws progress until the guard is dropped; does nothing when stderr is not a terminal.
pub fn start() -> Guard {
    start_if(std::io::stderr().is_terminal())
}

fn start_if(draw: bool) -> Guard {
    if draw {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        *lock() = Some(Bar {
            bar,
            started: Instant::now(),
            pages: 0,
            rows: 0,
            bytes: 0,
        });
    }
    Guard
}

/// Clears the progress line when dropped.
#[must_use = "progress stops when the guard is dropped"]
pub struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(bar) = lock().take() {
            bar.bar.finish_and_clear();
        }
    }
}

/// Counts one fetched page of `rows` rows and `bytes` JSON bytes.
pub fn page(rows: u64, bytes: u64) {
    if let Some(bar) = lock().as_mut() {
        bar.pages += 1;
        bar.rows += rows;
        bar.bytes += bytes;
        bar.bar.set_message(describe(
            bar.pages,
            bar.rows,
            bar.bytes,
            bar.started.elapsed(),
        ));
    }
}

/// Where logs go: stderr, around the progress line when one is drawn. For
/// `tracing_subscriber::fmt().with_writer(...)`, which writes each event in one call.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl tracing_subscriber::fmt::MakeWriter<'_> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&self) -> Self::Writer {
        LogWriter
    }
}

impl Write for LogWriter {
    /// Writes all of `buf` (one log line) while the progress line is cleared.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A clone, so the lock is not held while the line is cleared and drawn again.
        let bar = lock().as_ref().map(|bar| bar.bar.clone());
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn lock() -> std::sync::MutexGuard<'static, Option<Bar>> {
    BAR.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `12 pages, 1,200 rows, 1.50 MiB of JSON (750.00 KiB/s)`.
fn describe(pages: u64, rows: u64, bytes: u64, elapsed: Duration) -> String {
    let rate = bytes as f64 / elapsed.as_secs_f64().max(1e-3);
    format!(
        "{} pages, {} rows, {} of JSON ({}/s)",
        HumanCount(pages),
        HumanCount(rows),
        HumanBytes(bytes),
        HumanBytes(rate as u64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_counts_and_rate() {
        assert_eq!(
            describe(12, 1200, 3 << 19, Duration::from_secs(2)),
            "12 pages, 1,200 rows, 1.50 MiB of JSON (768.00 KiB/s)"
        );
    }

    #[test]
    fn nothing_is_counted_without_a_terminal() {
        let _guard = start_if(false);
        page(10, 100);
        assert!(lock().is_none());
    }
}
