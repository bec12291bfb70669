//! A job's transform keys (`select`, `rename`, `cast`, `add_column`, `on_cast_error`), which
//! every kind of job takes, turned into a [`TransformInput`] and checked by the same
//! [`settings::transform::transforms`] as the transform flags of the export commands. What
//! the command line cannot get wrong is checked here: the TOML types of the tables (values are
//! text) and the policy's name.

use std::ops::Range;

use super::{RawJob, pairs, span};
use crate::error::Result;
use crate::settings::transform::{self, ON_CAST_ERRORS, TransformInput};
use crate::settings::{Origin, choice, field};
use crate::transform::{OnCastError, Transforms};

/// The transform keys with their spans when given.
pub(super) fn keys(raw: &RawJob) -> [(&'static str, Option<Range<usize>>); 5] {
    [
        ("select", span(&raw.select)),
        ("rename", span(&raw.rename)),
        ("cast", span(&raw.cast)),
        ("add_column", span(&raw.add_column)),
        ("on_cast_error", span(&raw.on_cast_error)),
    ]
}

/// The checked transforms of a job (none when it has no transform key).
pub(super) fn transforms(raw: &RawJob, origin: &dyn Origin) -> Result<Transforms> {
    transform::transforms(origin, &input(raw, origin)?)
}

/// The transforms these keys describe.
fn input(raw: &RawJob, origin: &dyn Origin) -> Result<TransformInput> {
    let on_cast_error = match &raw.on_cast_error {
        Some(policy) => choice(
            origin,
            field::ON_CAST_ERROR,
            policy.get_ref(),
            ON_CAST_ERRORS,
        )?,
        None => OnCastError::Fail,
    };
    Ok(TransformInput {
        select: raw
            .select
            .as_ref()
            .map(|s| s.get_ref().clone())
            .unwrap_or_default(),
        rename: pairs(&raw.rename, field::RENAME, false, origin)?,
        cast: pairs(&raw.cast, field::CAST, false, origin)?,
        add_column: pairs(&raw.add_column, field::ADD_COLUMN, false, origin)?,
        on_cast_error,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, parse};
    use crate::transform::{CastType, OnCastError, Transforms};

    /// A job of `kind` with the extra keys `keys`, named "t".
    fn job(kind: &str, keys: &str) -> String {
        format!("[[job]]\nname = \"t\"\n{kind}\nout = \"o\"\n{keys}")
    }

    const KEYS: &str = "select = [\"a,b\", \" spend \"]\nrename = { a = \"b\" }\n\
                        cast = { spend = \"decimal(18,6)\" }\nadd_column = { source = \"x=y\" }\n\
                        on_cast_error = \"null\"\n";

    #[test]
    fn every_kind_takes_the_transform_keys() {
        let want = Transforms {
            select: vec!["a,b".into(), "spend".into()],
            rename: vec![("a".into(), "b".into())],
            add: vec![("source".into(), "x=y".into())],
            cast: vec![("spend".into(), CastType::Decimal(18, 6))],
            on_cast_error: OnCastError::Null,
        };
        for kind in [
            "kind = \"reports\"\nids = [\"r\"]",
            "kind = \"new-reports\"",
            "kind = \"report-list\"",
            "kind = \"submit\"\nrequest = {}",
            "kind = \"endpoint\"\nurl = \"/x\"",
        ] {
            let file = parse(&job(kind, KEYS)).unwrap();
            assert_eq!(file.jobs[0].transforms, want, "{kind}");
        }
        let none = parse(&job("kind = \"report-list\"", "")).unwrap();
        assert_eq!(none.jobs[0].transforms, Transforms::default());
    }

    #[test]
    fn mistakes_name_the_key_and_its_line() {
        let cases = [
            (
                "cast = { a = \"int\" }\n",
                1,
                "cast a: unknown type \"int\"",
            ),
            (
                "rename = { a = 1 }\n",
                1,
                "rename: the value of \"a\" must be text",
            ),
            (
                "add_column = { a = true }\n",
                1,
                "add_column: the value of \"a\" must be text",
            ),
            (
                "select = [\"a\", \"\"]\n",
                1,
                "select has an empty column name",
            ),
            (
                "select = \"a,b\"\n",
                1,
                "invalid type: string \"a,b\", expected a sequence",
            ),
            (
                "cast = {}\non_cast_error = \"skip\"\n",
                2,
                "unknown on_cast_error \"skip\": expected fail, null",
            ),
        ];
        for kind in [
            "kind = \"reports\"\nids = [\"r\"]",
            "kind = \"new-reports\"",
        ] {
            for (keys, key_line, what) in cases {
                // The keys follow name, kind (one line or two) and out.
                let line = format!("line {}, column", 3 + kind.lines().count() + key_line);
                let message = error(&job(kind, keys));
                assert!(message.contains(&line), "{kind} {keys}: {message}");
                assert!(message.contains(what), "{kind} {keys}: {message}");
                if !what.starts_with("invalid type") {
                    assert!(message.contains("job \"t\""), "{keys}: {message}");
                }
            }
        }
    }
}
