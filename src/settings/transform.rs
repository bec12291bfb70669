//! The transforms of an export (`--select`, `--rename`, `--cast`, `--add-column`,
//! `--on-cast-error`, or a job's keys of the same names) checked once into [`Transforms`]. They
//! apply to whatever the export reads: completed reports, the report list or a configured
//! endpoint, so every export command and every kind of job gives them the same way.
//!
//! Only what needs no data is checked here: column names that are not empty and cast types
//! that exist. Whether the columns exist is known once the export's schema is inferred
//! ([`Transforms::schema`]).

use super::field;
use super::{Origin, invalid};
use crate::error::Result;
use crate::transform::{OnCastError, Transforms};

/// The names of the cast-error policies, as both sources spell them.
pub const ON_CAST_ERRORS: &[(&str, OnCastError)] =
    &[("fail", OnCastError::Fail), ("null", OnCastError::Null)];

/// The transforms as given, unchecked; the default transforms nothing.
#[derive(Debug, Clone, Default)]
pub struct TransformInput {
    /// Columns to keep, in this order (all when empty).
    pub select: Vec<String>,
    /// `(old, new)` column names.
    pub rename: Vec<(String, String)>,
    /// `(column, type)`, the column named after renaming and adding.
    pub cast: Vec<(String, String)>,
    /// `(name, value)`: a string column holding `value` in every row.
    pub add_column: Vec<(String, String)>,
    pub on_cast_error: OnCastError,
}

/// Checks the transforms: column names trimmed and not empty, cast types parsed.
pub fn transforms(origin: &dyn Origin, input: &TransformInput) -> Result<Transforms> {
    let select: Vec<String> = input.select.iter().map(|c| c.trim().to_owned()).collect();
    if select.iter().any(String::is_empty) {
        return Err(invalid(origin, field::SELECT, "has an empty column name"));
    }
    let cast = input
        .cast
        .iter()
        .map(|(column, to)| {
            let to = to.parse().map_err(|e| {
                origin.error(
                    field::CAST,
                    format!("{} {column}: {e}", origin.name(field::CAST)),
                )
            })?;
            Ok((column.clone(), to))
        })
        .collect::<Result<_>>()?;
    Ok(Transforms {
        select,
        rename: input.rename.clone(),
        add: input.add_column.clone(),
        cast,
        on_cast_error: input.on_cast_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::settings::Flags;
    use crate::transform::CastType;

    fn usage(input: &TransformInput) -> String {
        match transforms(&Flags, input) {
            Err(Error::Usage(message)) => message,
            other => panic!("not a usage error: {other:?}"),
        }
    }

    #[test]
    fn names_are_trimmed_and_types_parsed() {
        let checked = transforms(
            &Flags,
            &TransformInput {
                select: vec![" spend ".into(), "date".into()],
                cast: vec![("spend".into(), "decimal(18,6)".into())],
                on_cast_error: OnCastError::Null,
                ..TransformInput::default()
            },
        )
        .unwrap();
        assert_eq!(checked.select, ["spend", "date"]);
        assert_eq!(
            checked.cast,
            [("spend".to_owned(), CastType::Decimal(18, 6))]
        );
        assert_eq!(checked.on_cast_error, OnCastError::Null);
        assert!(
            transforms(&Flags, &TransformInput::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn mistakes_name_the_flag() {
        let empty = usage(&TransformInput {
            select: vec!["a".into(), " ".into()],
            ..TransformInput::default()
        });
        assert_eq!(empty, "--select has an empty column name");
        let unknown = usage(&TransformInput {
            cast: vec![("spend".into(), "money".into())],
            ..TransformInput::default()
        });
        assert!(
            unknown.starts_with("--cast spend: unknown type \"money\""),
            "{unknown}"
        );
    }
}
