//! Everything the commands print on stdout: the report list (a table on a terminal, JSON
//! otherwise when asked), the schema of an export, and the summary of an export. Errors and
//! logs go to stderr elsewhere; nothing here ever sees a secret.

use std::io::{self, Write};

use arrow::datatypes::Schema;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::pipeline::ExportSummary;
use crate::source::reports::ReportRequest;

/// Widest cell of the report table before it is cut.
const MAX_CELL: usize = 40;

/// Prints the report list as one JSON array, each element byte-exact as the API sent it.
pub fn print_reports_json(requests: &[ReportRequest]) -> Result<()> {
    let mut out = String::from("[");
    for (i, request) in requests.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(request.raw.get());
    }
    out.push_str("]\n");
    write_stdout(&out)
}

/// Prints the report list as an aligned table: one column per key, in first-seen order.
pub fn print_reports_table(requests: &[ReportRequest]) -> Result<()> {
    write_stdout(&reports_table(requests))
}

fn reports_table(requests: &[ReportRequest]) -> String {
    // Rows that are not JSON objects have no columns to show.
    let objects: Vec<&serde_json::Map<String, Value>> = requests
        .iter()
        .filter(|request| request.raw.get().trim_start().starts_with('{'))
        .map(|request| &request.fields)
        .collect();
    let mut columns: Vec<String> = Vec::new();
    for object in &objects {
        for key in object.keys() {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
    }
    let cells: Vec<Vec<String>> = objects
        .iter()
        .map(|object| columns.iter().map(|c| cell(object.get(c))).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |values: Vec<&str>, out: &mut String| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v}{}", " ".repeat(w - v.chars().count())))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(columns.iter().map(String::as_str).collect(), &mut out);
    for row in &cells {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out.push_str(&format!("({} reports)\n", objects.len()));
    out
}

fn cell(value: Option<&Value>) -> String {
    let text = match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > MAX_CELL {
        let cut: String = text.chars().take(MAX_CELL - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// Prints a schema, one `name: type` line per column.
pub fn print_schema(schema: &Schema) -> Result<()> {
    let mut out = String::new();
    for field in schema.fields() {
        out.push_str(&format!("{}: {}\n", field.name(), field.data_type()));
    }
    if schema.fields().is_empty() {
        out.push_str("(no columns: the report has no rows)\n");
    }
    write_stdout(&out)
}

/// Prints what an export committed, one line per report and a total.
pub fn print_export_summary(summary: &ExportSummary, destination: &str) -> Result<()> {
    let mut out = String::new();
    for report in &summary.reports {
        out.push_str(&format!(
            "exported {}: {} rows, {} files, {} bytes{}\n",
            report.report_id,
            report.rows,
            report.files,
            report.bytes,
            match report.retired {
                0 => String::new(),
                n => format!(" (replaced {n} older files)"),
            }
        ));
    }
    for report in &summary.rewritten {
        out.push_str(&format!(
            "rewrote {} to the merged schema: {} rows, {} files, {} bytes\n",
            report.report_id, report.rows, report.files, report.bytes
        ));
    }
    let rows: u64 = summary.reports.iter().map(|r| r.rows).sum();
    let seconds = summary.elapsed.as_secs_f64();
    out.push_str(&format!(
        "{} rows from {} pages ({} bytes fetched) to {} in {:.2} s ({:.0} rows/s)\n",
        rows,
        summary.pages,
        summary.bytes_fetched,
        destination,
        seconds,
        rows as f64 / seconds.max(1e-9)
    ));
    write_stdout(&out)
}

/// Writes `text` to stdout and flushes it.
pub fn write_stdout(text: &str) -> Result<()> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::io("stdout", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::source::reports::{ReportFields, ReportList};
    use serde_json::value::RawValue;

    fn requests(texts: &[&str]) -> Vec<ReportRequest> {
        let rows = texts
            .iter()
            .map(|text| RawValue::from_string(text.to_string()).unwrap())
            .collect();
        ReportList::read(
            "http://h.example/v1/reports".into(),
            rows,
            &ReportFields::default(),
        )
        .unwrap()
        .requests
    }

    #[test]
    fn table_aligns_first_seen_columns() {
        let rows = requests(&[
            r#"{"id":"a","status":"completed"}"#,
            r#"{"id":"bb","n":2}"#,
            "42",
        ]);
        assert_eq!(
            reports_table(&rows),
            "id  status     n\na   completed\nbb             2\n(2 reports)\n"
        );
    }

    #[test]
    fn long_cells_are_cut() {
        let long = "x".repeat(50);
        assert_eq!(cell(Some(&Value::String(long))).chars().count(), MAX_CELL);
    }
}
