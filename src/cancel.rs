//! Cancellation of one export: a flag its blocking decode and staging tasks check between pages,
//! and a way to wait until every one of them has returned (so nothing writes into the
//! destination after the cleanup).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};

/// Cancellation shared by one export and its blocking tasks. Every blocking task holds a clone,
/// so the export can wait until none is left ([`Cancel::wait_for_tasks`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub(crate) fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err` when cancelled, for the checks between pages.
    pub(crate) fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::Internal("export cancelled".into()));
        }
        Ok(())
    }

    /// Waits until this is the last clone: every blocking task that held one has returned.
    /// Call after the export's future is gone (it holds clones too).
    pub(crate) async fn wait_for_tasks(&self) {
        while Arc::strong_count(&self.0) > 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wait_for_tasks_returns_once_every_blocking_task_has_returned() {
        let cancel = Cancel::default();
        let done = Arc::new(AtomicBool::new(false));
        let task = {
            let (cancel, done) = (cancel.clone(), done.clone());
            move || {
                while !cancel.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                std::thread::sleep(Duration::from_millis(30));
                done.store(true, Ordering::SeqCst);
                cancel.check()
            }
        };
        drop(tokio::task::spawn_blocking(task));
        cancel.cancel();
        cancel.wait_for_tasks().await;
        assert!(done.load(Ordering::SeqCst));
    }
}
