//! Flags of the transforms every export takes (`export report`, `export reports`, `export
//! url`, and `schema report`, `schema url` to show the schema they make): keep, rename, add and
//! cast columns. The dispatch turns them into a
//! [`crate::settings::transform::TransformInput`].

use clap::{Args, ValueEnum};

use super::endpoint::key_value;

/// `--select`, `--rename`, `--cast`, `--add-column`, `--on-cast-error`.
#[derive(Debug, Args)]
pub struct TransformArgs {
    /// Keep only these columns, in this order (comma-separated).
    #[arg(
        long,
        value_name = "COL[,COL...]",
        value_delimiter = ',',
        help_heading = "Transforms"
    )]
    pub select: Vec<String>,

    /// Rename a column (repeatable).
    #[arg(long, value_name = "OLD=NEW", value_parser = key_value, help_heading = "Transforms")]
    pub rename: Vec<(String, String)>,

    /// Convert a column: int64, float64, decimal(p,s), string, bool, date, timestamp (repeatable).
    #[arg(long, value_name = "COL=TYPE", value_parser = key_value, help_heading = "Transforms")]
    pub cast: Vec<(String, String)>,

    /// Add a string column holding VALUE in every row (repeatable).
    #[arg(long, value_name = "NAME=VALUE", value_parser = key_value, help_heading = "Transforms")]
    pub add_column: Vec<(String, String)>,

    /// What a value that does not cast becomes: an error naming its row and column, or null.
    #[arg(long, value_enum, default_value_t = OnCastErrorArg::Fail, help_heading = "Transforms")]
    pub on_cast_error: OnCastErrorArg,
}

/// `--on-cast-error` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnCastErrorArg {
    Fail,
    Null,
}
