//! Content formats of a page: JSON (rows found by a [`JsonPath`](super::jsonpath::JsonPath)),
//! NDJSON (one row per line) and CSV (a header line, then one row per record). Every format
//! ends as JSON rows handed to the same [`crate::decode::RowDecoder`], so all of them go
//! through the one schema inference of an export.
//!
//! CSV cells are strings (dates and timestamps among them are recognised like JSON strings);
//! an empty cell is null. Use `--cast` for numbers and booleans. This module does not locate
//! rows inside JSON pages; [`super::endpoint`] does.

use std::fmt;

use serde_json::value::RawValue;

use crate::error::DecodeError;

/// How a page's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentFormat {
    Json,
    Ndjson,
    Csv,
}

impl fmt::Display for ContentFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContentFormat::Json => "JSON",
            ContentFormat::Ndjson => "NDJSON",
            ContentFormat::Csv => "CSV",
        })
    }
}

impl ContentFormat {
    /// The format a `Content-Type` names: CSV for `text/csv`, NDJSON for `application/x-ndjson`,
    /// `application/jsonl` and the like, JSON for anything else (and for no header).
    pub fn from_content_type(content_type: Option<&str>) -> Self {
        let essence = content_type
            .and_then(|value| value.split(';').next())
            .map(|value| value.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match essence.as_str() {
            "text/csv" | "application/csv" => ContentFormat::Csv,
            e if e.ends_with("ndjson") || e.ends_with("jsonl") || e.ends_with("json-seq") => {
                ContentFormat::Ndjson
            }
            _ => ContentFormat::Json,
        }
    }
}

/// Calls `on_row` for each line of an NDJSON body that is not blank. The error names the
/// 0-based row (non-blank line) and what is wrong with it.
pub fn ndjson_rows(
    body: &[u8],
    mut on_row: impl FnMut(&RawValue) -> Result<(), DecodeError>,
) -> Result<usize, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        row_error(
            0,
            format!("NDJSON body is not UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    let mut rows = 0;
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let row: &RawValue = serde_json::from_str(line)
            .map_err(|e| row_error(rows, format!("line is not JSON: {e}")))?;
        on_row(row)?;
        rows += 1;
    }
    Ok(rows)
}

/// Calls `on_row` with each record of a CSV body as a JSON object keyed by the header line,
/// cells as strings and empty cells as null. The error names the 0-based row (record).
pub fn csv_rows(
    body: &[u8],
    mut on_row: impl FnMut(&RawValue) -> Result<(), DecodeError>,
) -> Result<usize, DecodeError> {
    let mut reader = csv::ReaderBuilder::new().from_reader(body);
    let header = reader
        .headers()
        .map_err(|e| row_error(0, format!("CSV header line: {e}")))?
        .clone();
    let mut rows = 0;
    for record in reader.records() {
        let record = record.map_err(|e| row_error(rows, format!("CSV record: {e}")))?;
        let object: serde_json::Map<String, serde_json::Value> = header
            .iter()
            .zip(record.iter())
            .map(|(key, cell)| {
                let value = match cell {
                    "" => serde_json::Value::Null,
                    text => serde_json::Value::from(text),
                };
                (key.to_owned(), value)
            })
            .collect();
        let row = serde_json::value::to_raw_value(&object)
            .map_err(|e| row_error(rows, format!("CSV record: {e}")))?;
        on_row(&row)?;
        rows += 1;
    }
    Ok(rows)
}

fn row_error(row: usize, reason: String) -> DecodeError {
    DecodeError {
        row,
        column: String::new(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(
        walk: impl FnOnce(
            &[u8],
            &mut dyn FnMut(&RawValue) -> Result<(), DecodeError>,
        ) -> Result<usize, DecodeError>,
        body: &str,
    ) -> Result<Vec<String>, DecodeError> {
        let mut rows = Vec::new();
        walk(body.as_bytes(), &mut |row| {
            rows.push(row.get().to_owned());
            Ok(())
        })?;
        Ok(rows)
    }

    #[test]
    fn content_types_name_the_format() {
        let of = |ct| ContentFormat::from_content_type(Some(ct));
        assert_eq!(of("text/csv; charset=utf-8"), ContentFormat::Csv);
        assert_eq!(of("application/x-ndjson"), ContentFormat::Ndjson);
        assert_eq!(of("application/jsonl"), ContentFormat::Ndjson);
        assert_eq!(of("application/json"), ContentFormat::Json);
        assert_eq!(ContentFormat::from_content_type(None), ContentFormat::Json);
    }

    #[test]
    fn ndjson_lines_are_rows_kept_byte_exact() {
        let rows = collect(
            |b, f| ndjson_rows(b, f),
            "{\"a\": 1.50}\n\n  {\"a\": 2}\r\n",
        )
        .unwrap();
        assert_eq!(rows, [r#"{"a": 1.50}"#, r#"{"a": 2}"#]);
        let err = collect(|b, f| ndjson_rows(b, f), "{\"a\": 1}\n{oops\n").unwrap_err();
        assert_eq!(err.row, 1);
        assert!(err.reason.contains("not JSON"), "{}", err.reason);
    }

    #[test]
    fn csv_records_are_objects_of_strings_with_empty_cells_null() {
        let rows = collect(
            |b, f| csv_rows(b, f),
            "date,spend,\"site, name\"\n2025-03-01,1.50,\"a \"\"b\"\"\"\n2025-03-02,,c\n",
        )
        .unwrap();
        assert_eq!(
            rows,
            [
                r#"{"date":"2025-03-01","spend":"1.50","site, name":"a \"b\""}"#,
                r#"{"date":"2025-03-02","spend":null,"site, name":"c"}"#,
            ]
        );
        let err = collect(|b, f| csv_rows(b, f), "a,b\n1,2\n3\n").unwrap_err();
        assert_eq!(err.row, 1);
    }
}
