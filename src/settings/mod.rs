//! Settings: what the user asked for, checked once into the types everything downstream takes
//! (parsed URLs, secrets in [`Secret`](crate::secret::Secret), an opened destination, a built
//! endpoint), so nothing past this point parses a raw value again.
//!
//! Both sources of settings, the command line and the jobs file, describe the same
//! source-neutral inputs: a connection ([`connection`]), an output ([`output`]), an endpoint
//! ([`endpoint`]), the transforms of any export ([`transform`]) and the report list's fields
//! and ids ([`reports`]). One set of functions checks each input. Their errors name a
//! [`Field`](field::Field) through the input's [`Origin`], which spells it as its source does:
//! `--partition-by` on the command line ([`Flags`]), `partition_by` at line N in the jobs
//! file. Mistakes are [`Error::Usage`] (exit code 2).
//!
//! This module knows neither clap nor TOML: the dispatch (`app`) turns the parsed command line
//! into these inputs, and `jobs::file` turns the jobs file into them.

pub mod connection;
pub mod endpoint;
pub mod field;
pub mod output;
pub mod reports;
pub mod transform;

use crate::error::{Error, Result};
use crate::source::client::{Connection, Limits};
use crate::transform::Transforms;
use field::Field;

pub use endpoint::EndpointSpec;
pub use output::Output;

/// Where a set of inputs came from: spells their fields and places errors about them.
pub trait Origin {
    /// How this source spells `field` (`--out`, or `out`).
    fn name(&self, field: Field) -> &'static str;
    /// A usage error about `field`; the jobs file adds the file, line and column of its key.
    fn error(&self, field: Field, message: String) -> Error;
    /// The value of environment variable `var`, when set.
    fn env(&self, var: &str) -> Option<String>;
}

/// The command line: fields are flags, the environment is the process's.
pub struct Flags;

impl Origin for Flags {
    fn name(&self, field: Field) -> &'static str {
        field.flag
    }

    fn error(&self, _field: Field, message: String) -> Error {
        Error::Usage(message)
    }

    fn env(&self, var: &str) -> Option<String> {
        std::env::var(var).ok()
    }
}

/// `{name} {problem}`: the most common message, about the field as a whole.
pub fn invalid(origin: &dyn Origin, field: Field, problem: impl std::fmt::Display) -> Error {
    origin.error(field, format!("{} {problem}", origin.name(field)))
}

/// `value` checked by `rule`, whose message completes `{name} ...`.
pub fn check<T, U>(
    origin: &dyn Origin,
    field: Field,
    value: T,
    rule: fn(T) -> std::result::Result<U, String>,
) -> Result<U> {
    rule(value).map_err(|problem| invalid(origin, field, problem))
}

/// `value`, when given, checked by `rule` (see [`check`]).
pub fn checked<T, U>(
    origin: &dyn Origin,
    field: Field,
    value: Option<T>,
    rule: fn(T) -> std::result::Result<U, String>,
) -> Result<Option<U>> {
    value
        .map(|value| check(origin, field, value, rule))
        .transpose()
}

/// The value `text` names in `names` (case-insensitive), or an error listing the names.
pub fn choice<T: Copy>(
    origin: &dyn Origin,
    field: Field,
    text: &str,
    names: &[(&str, T)],
) -> Result<T> {
    names
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text.trim()))
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let expected: Vec<&str> = names.iter().map(|(name, _)| *name).collect();
            origin.error(
                field,
                format!(
                    "unknown {} {text:?}: expected {}",
                    origin.name(field),
                    expected.join(", ")
                ),
            )
        })
}

/// Which API to talk to.
#[derive(Debug, Clone)]
pub enum Api {
    /// A real (or test) API.
    Remote(Box<Connection>),
    /// An in-process sandbox over the bundled sample data, with these retry and rate limits.
    Sandbox(Limits),
}

impl Api {
    /// This API with `limits` (retries, retry time, request rate).
    pub fn with_limits(self, limits: Limits) -> Api {
        match self {
            Api::Remote(connection) => Api::Remote(Box::new(connection.with_limits(limits))),
            Api::Sandbox(_) => Api::Sandbox(limits),
        }
    }
}

/// What an export reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportSource {
    /// Rows of these completed reports.
    CompletedReports(Vec<String>),
    /// The report requests themselves.
    ReportList,
    /// A configured endpoint.
    Endpoint(Box<EndpointSpec>),
}

/// A checked export: what to read, from which API, how to shape it and where to write it.
pub struct ExportSettings {
    pub api: Api,
    pub source: ExportSource,
    pub output: Output,
    /// Applied to the rows of every source alike.
    pub transforms: Transforms,
    /// Reports exported at once.
    pub concurrency: usize,
}
