//! Report requests, read once into [`ReportRequest`]s: the rows of the report list
//! (`GET /v1/reports`) for `reports`, a run's `new-reports` jobs and the wait of `submit` jobs,
//! and the answer to `POST /v1/reports` for the id of a submitted request. One reading, so the
//! commands cannot disagree about what an id is.
//!
//! The Kargo API's field names are not public, so by default a request's id is the first of
//! `id`, `report_id` and `reportId` that its row has (a non-empty string, or an integer written
//! as its digits), its status is `status`, and `completed` means done; [`ReportFields`] (from
//! `--id-field`, `--status-field`, `--completed-status` or the jobs file's `id_field`,
//! `status_field`, `completed_statuses`) overrides each. A listing that has rows but no
//! recognisable id in any of them is an error that names the keys the rows do have and the
//! setting to use, and so is one without the status field in any row wherever statuses are
//! used (`new-reports`, `submit`; [`ReportList::with_statuses`]): a scheduled job must never
//! export nothing and call it a success because a field is named differently.
//!
//! This module does not fetch anything (`session::report_requests` does) and keeps each
//! row's raw JSON, so `reports --json` still prints what the API sent, byte for byte.

use std::collections::BTreeSet;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Keys a report request's id is read from when no id field is set, first present first.
pub const DEFAULT_ID_FIELDS: [&str; 3] = ["id", "report_id", "reportId"];
/// The status key when no status field is set.
pub const DEFAULT_STATUS_FIELD: &str = "status";
/// The status of a completed request when no completed statuses are set.
pub const DEFAULT_COMPLETED_STATUS: &str = "completed";
/// Statuses that mean a request will never complete.
const FAILED_STATUSES: &[&str] = &["failed", "error", "cancelled", "canceled"];
/// Keys of the creation and completion times, first present first.
const CREATED_FIELDS: [&str; 2] = ["created_at", "createdAt"];
const COMPLETED_FIELDS: [&str; 2] = ["completed_at", "completedAt"];
/// Most keys an error message lists.
const MAX_KEYS_SHOWN: usize = 30;

/// How to read a report request: where its id and status are, and which statuses mean
/// completed. The default reads the first of [`DEFAULT_ID_FIELDS`], [`DEFAULT_STATUS_FIELD`]
/// and [`DEFAULT_COMPLETED_STATUS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportFields {
    /// The id's key (`--id-field`, `id_field`); `None`: the first of [`DEFAULT_ID_FIELDS`].
    pub id_field: Option<String>,
    /// The status's key (`--status-field`, `status_field`); `None`: `status`.
    pub status_field: Option<String>,
    /// Statuses of a completed request (`--completed-status`, `completed_statuses`); empty:
    /// `completed`.
    pub completed_statuses: Vec<String>,
}

impl ReportFields {
    /// The keys an id is read from, first present first.
    fn id_keys(&self) -> Vec<&str> {
        match &self.id_field {
            Some(field) => vec![field.as_str()],
            None => DEFAULT_ID_FIELDS.to_vec(),
        }
    }

    /// The status's key.
    pub fn status_key(&self) -> &str {
        self.status_field.as_deref().unwrap_or(DEFAULT_STATUS_FIELD)
    }

    /// Whether `status` means the request is completed.
    pub fn is_completed(&self, status: &str) -> bool {
        if self.completed_statuses.is_empty() {
            status == DEFAULT_COMPLETED_STATUS
        } else {
            self.completed_statuses.iter().any(|s| s == status)
        }
    }

    /// Whether `status` means the request will never complete.
    pub fn is_failed(&self, status: &str) -> bool {
        FAILED_STATUSES.contains(&status) && !self.is_completed(status)
    }

    /// The id keys for messages: `"uuid"`, or `id, report_id or reportId`.
    fn id_keys_text(&self) -> String {
        match &self.id_field {
            Some(field) => format!("{field:?}"),
            None => {
                let [a, b, c] = DEFAULT_ID_FIELDS;
                format!("{a}, {b} or {c}")
            }
        }
    }

    /// The id of an object: the first id key it has, when that holds a non-empty string or an
    /// integer. A key that is present (not null) but holds anything else is not skipped for the
    /// next one.
    fn id_of(&self, object: &Map<String, Value>) -> Option<String> {
        let value = self
            .id_keys()
            .into_iter()
            .find_map(|key| object.get(key).filter(|v| !v.is_null()))?;
        id_text(value)
    }
}

/// How to name the id's key, for messages.
const ID_HINT: &str = "name the id's key with --id-field or the jobs file's id_field";
/// How to name the status's key, for messages.
const STATUS_HINT: &str = "name it with --status-field or the jobs file's status_field";

/// One report request as the report list shows it.
#[derive(Debug)]
pub struct ReportRequest {
    /// The id, as text (an integer id as its digits); `None` when the row has no recognisable
    /// id (such a request cannot be exported).
    pub id: Option<String>,
    /// The status as text (a number as its JSON text); `None` when the row has no status.
    pub status: Option<String>,
    /// When it was requested, as the API wrote it (`created_at` or `createdAt`).
    pub created_at: Option<String>,
    /// When it completed, as the API wrote it (`completed_at` or `completedAt`).
    pub completed_at: Option<String>,
    /// Every field of the row (empty when the row is not a JSON object), for `where` filters
    /// and the table.
    pub fields: Map<String, Value>,
    /// The row exactly as the API sent it.
    pub raw: Box<RawValue>,
}

impl ReportRequest {
    fn read(raw: Box<RawValue>, fields: &ReportFields) -> Self {
        let object: Map<String, Value> = serde_json::from_str(raw.get()).unwrap_or_default();
        let text = |keys: &[&str]| {
            keys.iter()
                .find_map(|key| object.get(*key))
                .and_then(|value| match value {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
        };
        Self {
            id: fields.id_of(&object),
            status: text(&[fields.status_key()]),
            created_at: text(&CREATED_FIELDS),
            completed_at: text(&COMPLETED_FIELDS),
            fields: object,
            raw,
        }
    }

    /// Whether the request is completed (its status is one of the completed statuses).
    pub fn is_completed(&self, fields: &ReportFields) -> bool {
        self.status
            .as_deref()
            .is_some_and(|s| fields.is_completed(s))
    }

    /// Whether every field of `filter` has exactly that value in the request.
    pub fn matches(&self, filter: &Map<String, Value>) -> bool {
        filter.iter().all(|(k, v)| self.fields.get(k) == Some(v))
    }
}

/// The report list as read: where it came from and its requests, in the API's order.
#[derive(Debug)]
pub struct ReportList {
    /// The list's URL without its query string, for messages.
    pub url: String,
    /// Every row, including those without an id (the table and `--json` show them).
    pub requests: Vec<ReportRequest>,
}

impl ReportList {
    /// Reads the rows of the list at `url`; an [`Error::ReportList`] when it has rows but none
    /// with a recognisable id.
    pub fn read(url: String, rows: Vec<Box<RawValue>>, fields: &ReportFields) -> Result<Self> {
        match read_rows(rows, fields) {
            Ok(requests) => Ok(Self { url, requests }),
            Err(reason) => Err(Error::ReportList { url, reason }),
        }
    }

    /// The requests, for those who go by their status: an [`Error::ReportList`] when the list
    /// has rows but none with the status field.
    pub fn with_statuses(self, fields: &ReportFields) -> Result<Vec<ReportRequest>> {
        match check_statuses(&self.requests, fields) {
            Ok(()) => Ok(self.requests),
            Err(reason) => Err(Error::ReportList {
                url: self.url,
                reason,
            }),
        }
    }
}

/// Reads the rows of a report list; `Err` holds the reason when there are rows but none with a
/// recognisable id. Rows without an id are kept and logged.
fn read_rows(
    rows: Vec<Box<RawValue>>,
    fields: &ReportFields,
) -> std::result::Result<Vec<ReportRequest>, String> {
    let requests: Vec<ReportRequest> = rows
        .into_iter()
        .map(|raw| ReportRequest::read(raw, fields))
        .collect();
    if requests.is_empty() {
        return Ok(requests);
    }
    let count = requests.len();
    let rows = if count == 1 { "row" } else { "rows" };
    let keys = || keys_text(requests.iter().map(|r| &r.fields));
    if requests.iter().all(|r| r.id.is_none()) {
        return Err(format!(
            "none of its {count} {rows} has a report id at {} (a non-empty string or an \
             integer); the rows have keys {}; {ID_HINT}",
            fields.id_keys_text(),
            keys()
        ));
    }
    let without_id = requests.iter().filter(|r| r.id.is_none()).count();
    if without_id > 0 {
        tracing::warn!(
            without_id,
            rows = count,
            id_keys = %fields.id_keys_text(),
            "report requests without an id are skipped"
        );
    }
    Ok(requests)
}

/// `Err` with the reason when `requests` is not empty but none has the status field.
fn check_statuses(
    requests: &[ReportRequest],
    fields: &ReportFields,
) -> std::result::Result<(), String> {
    if requests.is_empty() || requests.iter().any(|r| r.status.is_some()) {
        return Ok(());
    }
    let count = requests.len();
    Err(format!(
        "none of its {count} {} has the status field {:?}; the rows have keys {}; {STATUS_HINT}",
        if count == 1 { "row" } else { "rows" },
        fields.status_key(),
        keys_text(requests.iter().map(|r| &r.fields))
    ))
}

/// The id in the answer to `POST /v1/reports`: at the top level or inside `data`.
pub fn submitted_id(answer: &Value, fields: &ReportFields) -> std::result::Result<String, String> {
    let top = answer.as_object();
    let data = top.and_then(|o| o.get("data")).and_then(Value::as_object);
    if let Some(id) = [top, data]
        .into_iter()
        .flatten()
        .find_map(|o| fields.id_of(o))
    {
        return Ok(id);
    }
    let has = match (top, data) {
        (Some(top), Some(data)) => format!(
            "it has keys {}, and data has keys {}",
            keys_text([top]),
            keys_text([data])
        ),
        (Some(top), None) => format!("it has keys {}", keys_text([top])),
        (None, _) => "it is not a JSON object".to_string(),
    };
    Err(format!(
        "the answer to the report request has no report id at {} (a non-empty string or an \
         integer); {has}; {ID_HINT}",
        fields.id_keys_text()
    ))
}

/// A value as an id: a non-empty string, or an integer as its digits.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// The keys of `objects`, sorted and listed once (`(none)` when there are none).
fn keys_text<'a>(objects: impl IntoIterator<Item = &'a Map<String, Value>>) -> String {
    let keys: BTreeSet<&str> = objects
        .into_iter()
        .flat_map(|o| o.keys().map(String::as_str))
        .collect();
    if keys.is_empty() {
        return "(none)".into();
    }
    let mut shown: Vec<String> = keys
        .iter()
        .take(MAX_KEYS_SHOWN)
        .map(|k| format!("{k:?}"))
        .collect();
    if keys.len() > MAX_KEYS_SHOWN {
        shown.push(format!("and {} more", keys.len() - MAX_KEYS_SHOWN));
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(values: &[Value]) -> Vec<Box<RawValue>> {
        values
            .iter()
            .map(|v| RawValue::from_string(v.to_string()).unwrap())
            .collect()
    }

    fn read_list(
        rows: Vec<Box<RawValue>>,
        fields: &ReportFields,
    ) -> std::result::Result<Vec<ReportRequest>, String> {
        let requests = read_rows(rows, fields)?;
        check_statuses(&requests, fields)?;
        Ok(requests)
    }

    fn ids(requests: &[ReportRequest]) -> Vec<Option<&str>> {
        requests.iter().map(|r| r.id.as_deref()).collect()
    }

    #[test]
    fn ids_come_from_the_first_default_key_present_as_strings_or_integers() {
        let list = read_list(
            rows(&[
                json!({"id": "a", "status": "completed"}),
                json!({"report_id": 7, "status": "pending"}),
                json!({"reportId": "c", "status": "completed"}),
                json!({"id": "d", "report_id": "ignored", "status": "completed"}),
                json!({"id": 1.5, "report_id": "e", "status": "completed"}),
                json!({"id": "", "status": "completed"}),
                json!({"id": null, "status": "completed"}),
                json!({"report_id": 18446744073709551615u64, "status": "failed"}),
                json!(42),
            ]),
            &ReportFields::default(),
        )
        .unwrap();
        assert_eq!(
            ids(&list),
            [
                Some("a"),
                Some("7"),
                Some("c"),
                Some("d"),
                None,
                None,
                None,
                Some("18446744073709551615"),
                None
            ]
        );
        assert_eq!(list[1].status.as_deref(), Some("pending"));
        assert!(list[0].is_completed(&ReportFields::default()));
        assert!(!list[1].is_completed(&ReportFields::default()));
        assert!(list[8].fields.is_empty());
        assert_eq!(list[8].raw.get(), "42");
    }

    #[test]
    fn times_and_raw_fields_are_kept() {
        let list = read_list(
            rows(&[
                json!({"id": "a", "status": "completed", "createdAt": "2025-04-01T00:00:00Z",
                          "completed_at": "2025-04-01T00:05:00Z", "report_type": "by_day"}),
            ]),
            &ReportFields::default(),
        )
        .unwrap();
        assert_eq!(list[0].created_at.as_deref(), Some("2025-04-01T00:00:00Z"));
        assert_eq!(
            list[0].completed_at.as_deref(),
            Some("2025-04-01T00:05:00Z")
        );
        assert!(list[0].matches(json!({"report_type": "by_day"}).as_object().unwrap()));
        assert!(!list[0].matches(json!({"report_type": "by_site"}).as_object().unwrap()));
        assert!(!list[0].matches(json!({"nope": 1}).as_object().unwrap()));
    }

    #[test]
    fn settings_override_every_field() {
        let fields = ReportFields {
            id_field: Some("uuid".into()),
            status_field: Some("state".into()),
            completed_statuses: vec!["done".into(), "ready".into()],
        };
        let list = read_list(
            rows(&[
                json!({"uuid": 9, "id": "not this", "state": "done"}),
                json!({"uuid": "b", "state": "ready"}),
                json!({"uuid": "c", "state": "completed", "status": "done"}),
            ]),
            &fields,
        )
        .unwrap();
        assert_eq!(ids(&list), [Some("9"), Some("b"), Some("c")]);
        let done: Vec<bool> = list.iter().map(|r| r.is_completed(&fields)).collect();
        assert_eq!(done, [true, true, false]);
    }

    #[test]
    fn a_listing_without_ids_names_its_keys_and_the_setting() {
        let reason = read_list(
            rows(&[
                json!({"uuid": "a", "state": "completed"}),
                json!({"uuid": "b", "name": "x", "id": {"n": 1}}),
            ]),
            &ReportFields::default(),
        )
        .unwrap_err();
        assert_eq!(
            reason,
            "none of its 2 rows has a report id at id, report_id or reportId (a non-empty \
             string or an integer); the rows have keys \"id\", \"name\", \"state\", \"uuid\"; \
             name the id's key with --id-field or the jobs file's id_field"
        );
        let given = ReportFields {
            id_field: Some("key".into()),
            ..ReportFields::default()
        };
        let reason = read_list(rows(&[json!({"id": "a", "status": "x"})]), &given).unwrap_err();
        assert!(
            reason.starts_with("none of its 1 row has a report id at \"key\" "),
            "{reason}"
        );
        // An empty listing is simply empty.
        assert!(read_list(Vec::new(), &given).unwrap().is_empty());
    }

    #[test]
    fn a_listing_without_the_status_field_names_its_keys_and_the_setting() {
        let reason = read_list(
            rows(&[json!({"id": "a", "state": "completed"})]),
            &ReportFields::default(),
        )
        .unwrap_err();
        assert_eq!(
            reason,
            "none of its 1 row has the status field \"status\"; the rows have keys \"id\", \
             \"state\"; name it with --status-field or the jobs file's status_field"
        );
        // Only those who go by the status need it: the list itself reads.
        let fields = ReportFields::default();
        let url = "http://h.example/v1/reports".to_string();
        let list = ReportList::read(url, rows(&[json!({"id": "a"})]), &fields).unwrap();
        assert_eq!(list.requests[0].id.as_deref(), Some("a"));
        assert_eq!(
            list.with_statuses(&fields).unwrap_err().to_string(),
            "invalid report list (http://h.example/v1/reports): none of its 1 row has the status \
             field \"status\"; the rows have keys \"id\"; name it with --status-field or the \
             jobs file's status_field"
        );
        let url = "http://h.example/v1/reports".to_string();
        let err = ReportList::read(url, rows(&[json!({"key": "a"})]), &fields).unwrap_err();
        assert!(matches!(err, Error::ReportList { .. }), "{err}");
    }

    #[test]
    fn the_submitted_id_is_read_like_the_listing_at_the_top_or_in_data() {
        let fields = ReportFields::default();
        let id = |v: Value| submitted_id(&v, &fields);
        assert_eq!(id(json!({"id": "a"})).unwrap(), "a");
        assert_eq!(id(json!({"report_id": 12})).unwrap(), "12");
        assert_eq!(id(json!({"data": {"reportId": "c"}})).unwrap(), "c");
        assert_eq!(
            id(json!({"status": "pending", "data": {"uuid": 1}})).unwrap_err(),
            "the answer to the report request has no report id at id, report_id or reportId \
             (a non-empty string or an integer); it has keys \"data\", \"status\", and data has \
             keys \"uuid\"; name the id's key with --id-field or the jobs file's id_field"
        );
        assert!(
            id(json!([1]))
                .unwrap_err()
                .contains("it is not a JSON object")
        );
        let uuid = ReportFields {
            id_field: Some("uuid".into()),
            ..ReportFields::default()
        };
        assert_eq!(
            submitted_id(&json!({"id": "x", "data": {"uuid": 1}}), &uuid).unwrap(),
            "1"
        );
    }

    #[test]
    fn failed_statuses_are_never_completed_ones() {
        let fields = ReportFields::default();
        assert!(fields.is_failed("failed") && fields.is_failed("canceled"));
        assert!(!fields.is_failed("pending") && !fields.is_failed("completed"));
        let odd = ReportFields {
            completed_statuses: vec!["error".into()],
            ..ReportFields::default()
        };
        assert!(!odd.is_failed("error"));
    }
}
