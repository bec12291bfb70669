//! The termination signals that stop an export or a run (SIGINT, SIGTERM): catching them, and
//! the exit status a process ended by each one reports. What an interrupted export cleans up is
//! [`crate::pipeline::export_until`]'s business.

use std::future::Future;

use crate::error::{Error, Result};

/// A termination signal that stops an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl From<Signal> for Error {
    fn from(signal: Signal) -> Self {
        Error::Interrupted {
            signal: signal.to_string(),
            exit_code: signal.exit_code(),
        }
    }
}

impl Signal {
    /// The conventional exit status of a process ended by this signal: 128 + its number.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }

    /// Starts catching SIGINT and SIGTERM (from now on they no longer end the process) and
    /// returns a future that resolves with the first one received.
    pub fn listen() -> Result<impl Future<Output = Signal> + Send + 'static> {
        use tokio::signal::unix::{SignalKind, signal};
        let catch = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| Error::io(format!("{name} handler"), e))
        };
        let mut interrupt = catch(SignalKind::interrupt(), "SIGINT")?;
        let mut terminate = catch(SignalKind::terminate(), "SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => Signal::Interrupt,
                _ = terminate.recv() => Signal::Terminate,
            }
        })
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        })
    }
}
