//! What identifies the reports to export: report ids as given, and how to read the report list
//! (the keys of a request's id and status, and the statuses that mean completed).

use super::field;
use super::{Origin, invalid};
use crate::error::Result;
use crate::source::reports::ReportFields;

/// How to read the report list, as given; `None` is not given.
#[derive(Debug, Default, Clone)]
pub struct ReportFieldsInput {
    pub id_field: Option<String>,
    pub status_field: Option<String>,
    pub completed_statuses: Option<Vec<String>>,
}

/// Report ids: trimmed, printable, at least one, each kept once in the order given.
pub fn report_ids(origin: &dyn Origin, ids: &[String]) -> Result<Vec<String>> {
    let mut clean: Vec<String> = Vec::new();
    for id in ids {
        let id = id.trim();
        if id.is_empty() || id.chars().any(char::is_control) {
            return Err(origin.error(field::REPORT_IDS, format!("invalid report id {id:?}")));
        }
        if !clean.iter().any(|seen| seen == id) {
            clean.push(id.to_string());
        }
    }
    if clean.is_empty() {
        return Err(invalid(origin, field::REPORT_IDS, "is empty"));
    }
    Ok(clean)
}

/// How to read the report list: each key trimmed and non-empty, the statuses non-empty.
pub fn report_fields(origin: &dyn Origin, input: &ReportFieldsInput) -> Result<ReportFields> {
    let key = |field, value: &Option<String>| -> Result<Option<String>> {
        value
            .as_deref()
            .map(|key| match key.trim() {
                "" => Err(invalid(origin, field, "is empty")),
                key => Ok(key.to_string()),
            })
            .transpose()
    };
    let completed_statuses = match &input.completed_statuses {
        Some(statuses) => {
            let statuses: Vec<String> = statuses.iter().map(|s| s.trim().to_string()).collect();
            if statuses.is_empty() || statuses.iter().any(String::is_empty) {
                return Err(invalid(
                    origin,
                    field::COMPLETED_STATUS,
                    "needs non-empty statuses",
                ));
            }
            statuses
        }
        None => Vec::new(),
    };
    Ok(ReportFields {
        id_field: key(field::ID_FIELD, &input.id_field)?,
        status_field: key(field::STATUS_FIELD, &input.status_field)?,
        completed_statuses,
    })
}

/// `first`'s fields where given, else `second`'s (the command line over the jobs file).
pub fn merged(first: ReportFields, second: ReportFields) -> ReportFields {
    ReportFields {
        id_field: first.id_field.or(second.id_field),
        status_field: first.status_field.or(second.status_field),
        completed_statuses: if first.completed_statuses.is_empty() {
            second.completed_statuses
        } else {
            first.completed_statuses
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::settings::Flags;

    #[test]
    fn report_field_flags_override_the_jobs_file_key_by_key() {
        let file = ReportFields {
            id_field: Some("uuid".into()),
            status_field: Some("state".into()),
            completed_statuses: vec!["done".into()],
        };
        let flags = |id: Option<&str>, statuses: &[&str]| ReportFieldsInput {
            id_field: id.map(str::to_string),
            status_field: None,
            completed_statuses: (!statuses.is_empty())
                .then(|| statuses.iter().map(|s| s.to_string()).collect()),
        };
        let checked = |input: &ReportFieldsInput| report_fields(&Flags, input);
        assert_eq!(
            merged(checked(&flags(None, &[])).unwrap(), file.clone()),
            file
        );
        assert_eq!(
            merged(
                checked(&flags(Some(" key "), &["ok", "fine"])).unwrap(),
                file.clone()
            ),
            ReportFields {
                id_field: Some("key".into()),
                status_field: Some("state".into()),
                completed_statuses: vec!["ok".into(), "fine".into()],
            }
        );
        assert_eq!(checked(&flags(None, &[])).unwrap(), ReportFields::default());
        for bad in [flags(Some(""), &[]), flags(None, &["ok", " "])] {
            assert!(matches!(checked(&bad), Err(Error::Usage(_))));
        }
    }

    #[test]
    fn report_ids_are_trimmed_deduplicated_and_printable() {
        let ids =
            |v: &[&str]| report_ids(&Flags, &v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(ids(&["a", " b ", "a"]).unwrap(), ["a", "b"]);
        assert!(
            ids(&["a\u{7}"])
                .unwrap_err()
                .to_string()
                .contains("invalid report id")
        );
        assert!(ids(&[]).unwrap_err().to_string().contains("ID is empty"));
    }
}
