//! Everything the commands print on stdout: the report list (a table on a terminal, JSON
//! otherwise when asked), the schema of an export, the summary of an export, and what `inspect`
//! found in a destination (text, or JSON when asked). Errors and logs go to stderr elsewhere;
//! nothing here ever sees a secret.

use std::io::{self, Write};

use arrow::datatypes::Schema;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::inspect::{Column as InspectedColumn, Inspection, ReportEntry};
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
    let mut rows = vec![columns];
    rows.extend(cells);
    let mut out = aligned(&rows);
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

/// Prints what `inspect` found: a totals line, a table of the reports, the merged schema and
/// the verdict (uniform, or every difference of each report that differs).
pub fn print_inspection(inspection: &Inspection) -> Result<()> {
    write_stdout(&inspection_text(inspection))
}

/// Prints what `inspect --json` found: one pretty JSON object (see `inspect --help`).
pub fn print_inspection_json(inspection: &Inspection) -> Result<()> {
    let json = serde_json::to_string_pretty(inspection)
        .map_err(|e| Error::Internal(format!("inspection as JSON: {e}")))?;
    write_stdout(&format!("{json}\n"))
}

fn inspection_text(inspection: &Inspection) -> String {
    let reports = &inspection.reports;
    if reports.is_empty() {
        return format!(
            "{}: no reports (no manifest in _manifests/)\nuniform: no reports to compare\n",
            inspection.destination
        );
    }
    let table = match inspection.delta_version {
        Some(version) => format!(" (Delta table, version {version})"),
        None => String::new(),
    };
    format!(
        "{}{table}: {}, {} rows in {} ({} bytes)\n\n{}\n{}\n{}",
        inspection.destination,
        count(reports.len(), "report"),
        reports.iter().map(|r| r.rows).sum::<u64>(),
        count(reports.iter().map(|r| r.files).sum(), "file"),
        reports.iter().map(|r| r.bytes).sum::<u64>(),
        inspected_reports(reports),
        merged_schema(inspection),
        verdict_text(inspection)
    )
}

/// One line per report: its numbers, partition columns and export time.
fn inspected_reports(reports: &[ReportEntry]) -> String {
    let header = [
        "report",
        "rows",
        "files",
        "bytes",
        "columns",
        "partitioned by",
        "exported at",
    ];
    let mut table = vec![header.map(String::from).to_vec()];
    table.extend(reports.iter().map(|r| {
        vec![
            r.report_id.clone(),
            r.rows.to_string(),
            r.files.to_string(),
            r.bytes.to_string(),
            r.columns.to_string(),
            partition_text(&r.partition_by),
            r.exported_at.clone(),
        ]
    }));
    aligned(&table)
}

/// `schema: N columns`, then one line per column: its type and, when some reports lack it,
/// how many have it.
fn merged_schema(inspection: &Inspection) -> String {
    let compared = inspection.reports.iter().filter(|r| r.columns > 0).count();
    let columns: Vec<Vec<String>> = inspection
        .schema
        .iter()
        .map(|c| {
            vec![
                format!("  {}", c.name),
                column_type(c),
                presence(c, compared),
            ]
        })
        .collect();
    format!(
        "schema: {}{}\n{}",
        count(inspection.schema.len(), "column"),
        left_out(&inspection.reports),
        aligned(&columns)
    )
}

/// `Int64`, `Float64 (merged from Int64, Float64)`, `conflict: List(Int64), Int64`.
fn column_type(column: &InspectedColumn) -> String {
    let types: Vec<String> = column.types.iter().map(ToString::to_string).collect();
    match &column.merged {
        None => format!("conflict: {}", types.join(", ")),
        Some(merged) if types.len() > 1 => format!("{merged} (merged from {})", types.join(", ")),
        Some(merged) => merged.to_string(),
    }
}

/// Empty when every report with a schema has the column, else `in 1 of 3 reports`.
fn presence(column: &InspectedColumn, reports: usize) -> String {
    if column.reports == reports {
        String::new()
    } else {
        format!("in {} of {reports} reports", column.reports)
    }
}

/// Names the reports without a schema, which the comparison leaves out (counts more than a
/// few).
fn left_out(reports: &[ReportEntry]) -> String {
    let ids: Vec<&str> = reports
        .iter()
        .filter(|r| r.columns == 0)
        .map(|r| r.report_id.as_str())
        .collect();
    match ids.len() {
        0 => String::new(),
        1..=3 => format!(" (without {}: no rows, no schema)", ids.join(", ")),
        n => format!(" (without {n} reports that have no rows, no schema)"),
    }
}

/// The partition columns, `-` for none.
fn partition_text(columns: &[String]) -> String {
    if columns.is_empty() {
        "-".into()
    } else {
        columns.join(", ")
    }
}

/// `uniform: ...`, or `not uniform: ...` followed by each difference of each report.
fn verdict_text(inspection: &Inspection) -> String {
    if inspection.uniform {
        return "uniform: every report has the same columns, types and partition columns\n".into();
    }
    let mut out = format!(
        "not uniform: {} of {} differ from the others\n",
        inspection.differences.len(),
        count(inspection.reports.len(), "report")
    );
    for report in &inspection.differences {
        out.push_str(&format!("  {}:\n", report.report));
        for difference in &report.differences.differences {
            out.push_str(&format!("    {difference}\n"));
        }
    }
    out
}

/// `1 report`, `2 reports`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Rows of cells as text: each column as wide as its widest cell, two spaces between columns,
/// no trailing spaces.
pub(crate) fn aligned(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|row| row.get(i))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let padded: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    }
    out
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
    fn inspection_text_shows_reports_merged_types_conflicts_and_differences() {
        use crate::drift::{Difference, Drift};
        use crate::inspect::ReportDrift;
        use arrow::datatypes::DataType;

        let report = |id: &str, rows: u64, columns: usize| ReportEntry {
            report_id: id.into(),
            rows,
            files: usize::from(rows > 0),
            bytes: rows * 10,
            exported_at: "2026-12-03T00:00:00Z".into(),
            partition_by: vec![],
            columns,
        };
        let column =
            |name: &str, merged: Option<DataType>, types: Vec<DataType>, reports| InspectedColumn {
                name: name.into(),
                merged,
                types,
                reports,
            };
        let added = Difference::Added {
            column: "x".into(),
            r#type: "Utf8".into(),
            reports: vec!["b".into()],
        };
        let inspection = Inspection {
            destination: "out".into(),
            uniform: false,
            reports: vec![report("a", 2, 3), report("b", 1, 2), report("c", 0, 0)],
            schema: vec![
                column(
                    "n",
                    Some(DataType::Float64),
                    vec![DataType::Int64, DataType::Float64],
                    2,
                ),
                column(
                    "m",
                    None,
                    vec![DataType::new_list(DataType::Int64, true), DataType::Int64],
                    2,
                ),
                column("x", Some(DataType::Utf8), vec![DataType::Utf8], 1),
            ],
            differences: vec![ReportDrift {
                report: "a".into(),
                differences: Drift {
                    differences: vec![added],
                },
            }],
            delta_version: None,
        };
        assert_eq!(
            inspection_text(&inspection),
            "out: 3 reports, 3 rows in 2 files (30 bytes)\n\n\
             report  rows  files  bytes  columns  partitioned by  exported at\n\
             a       2     1      20     3        -               2026-12-03T00:00:00Z\n\
             b       1     1      10     2        -               2026-12-03T00:00:00Z\n\
             c       0     0      0      0        -               2026-12-03T00:00:00Z\n\n\
             schema: 3 columns (without c: no rows, no schema)\n  \
             n  Float64 (merged from Int64, Float64)\n  \
             m  conflict: List(Int64), Int64\n  \
             x  Utf8                                  in 1 of 2 reports\n\n\
             not uniform: 1 of 3 reports differ from the others\n  \
             a:\n    \
             new column \"x\" (Utf8), not in report b\n"
        );
        let empty = Inspection {
            reports: vec![],
            schema: vec![],
            differences: vec![],
            uniform: true,
            ..inspection
        };
        assert_eq!(
            inspection_text(&empty),
            "out: no reports (no manifest in _manifests/)\nuniform: no reports to compare\n"
        );
    }

    #[test]
    fn long_cells_are_cut() {
        let long = "x".repeat(50);
        assert_eq!(cell(Some(&Value::String(long))).chars().count(), MAX_CELL);
    }
}
