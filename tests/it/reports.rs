//! The report list (`GET /v1/reports`, several pages): `reports --json`, the `reports` table and
//! `export reports` as a dataset.

use arrow::datatypes::DataType;
use serde_json::{Value, json};

use crate::util::*;

/// Ten report requests, served three a page (four pages).
fn report_list() -> Vec<Value> {
    (0..10)
        .map(|i| {
            let completed = i % 3 != 2;
            json!({
                "id": format!("rpt_{i:02}"),
                "report_type": if i % 2 == 0 { "delivery_by_day" } else { "delivery_by_site" },
                "status": if completed { "completed" } else { "pending" },
                "created_at": format!("2025-04-{:02}T08:{:02}:00Z", i + 1, i * 3),
                "completed_at": if completed {
                    json!(format!("2025-04-{:02}T09:00:00+02:00", i + 1))
                } else {
                    json!(null)
                },
                "date_range": {"start": format!("2025-03-{:02}", i + 1), "end": "2025-03-30"},
                "dimensions": ["date", format!("dim_{i}")],
                "row_count": if completed { json!(i * 100) } else { json!(null) },
            })
        })
        .collect()
}

fn sandbox_over(list: &[Value]) -> (Fixture, Sandbox) {
    let fixture = Fixture::new();
    fixture.reports(&Value::Array(list.to_vec()));
    let sandbox = Sandbox::with_data(fixture.path(), &["--page-size", "3"]);
    (fixture, sandbox)
}

#[test]
fn reports_json_prints_every_page_as_one_array_in_order() {
    let list = report_list();
    let (_fixture, sandbox) = sandbox_over(&list);
    let stdout = success(&sandbox.run(&["reports", "--json"]));
    let printed: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {stdout}"));
    assert_eq!(printed, Value::Array(list));
}

#[test]
fn reports_json_keeps_each_element_as_the_api_sent_it() {
    // Elements with odd spacing and `1.50`: printed byte for byte, joined into one array.
    let fixture = Fixture::new();
    let elements = [
        r#"{"id":"a","cost":1.50}"#,
        r#"{ "id" : "b", "nested": {"x": [1, 2]} }"#,
        r#"{"id":"c","note":"caf\u00e9"}"#,
    ];
    std::fs::write(
        fixture.path().join("reports.json"),
        format!("[{}]", elements.join(",\n")),
    )
    .unwrap();
    let sandbox = Sandbox::with_data(fixture.path(), &["--page-size", "2"]);
    let stdout = success(&sandbox.run(&["reports", "--json"]));
    assert_eq!(stdout.trim_end(), format!("[{}]", elements.join(",")));
}

#[test]
fn reports_table_lists_every_report_id() {
    let list = report_list();
    let (_fixture, sandbox) = sandbox_over(&list);
    let stdout = success(&sandbox.run(&["reports"]));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("id "), "header first: {stdout}");
    for report in &list {
        let id = report["id"].as_str().unwrap();
        let line = lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("no line for {id} in\n{stdout}"));
        assert!(
            line.contains(report["status"].as_str().unwrap()),
            "{id}: {line}"
        );
    }
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("rpt_")).count(),
        list.len(),
        "{stdout}"
    );
}

#[test]
fn export_reports_writes_the_report_list_as_a_dataset() {
    let list = report_list();
    let (_fixture, sandbox) = sandbox_over(&list);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    success(&sandbox.run(&["export", "reports", "--out", dest.to_str().unwrap()]));

    let schema = one_schema(&dest);
    let date_range = schema.field_with_name("date_range").expect("date_range");
    let DataType::Struct(inner) = date_range.data_type() else {
        panic!("date_range is not a struct: {schema:?}");
    };
    let names: Vec<&str> = inner.iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["start", "end"]);
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "report_type",
            "status",
            "created_at",
            "completed_at",
            "date_range",
            "dimensions",
            "row_count"
        ]
    );
    assert!(
        matches!(
            schema.field_with_name("dimensions").unwrap().data_type(),
            DataType::List(_)
        ),
        "{schema:?}"
    );

    let mut read = read_dataset(&dest);
    read.sort_by_key(|r| r["id"].as_str().map(str::to_string));
    let source: Vec<Row> = list
        .iter()
        .map(|v| v.as_object().unwrap().clone())
        .collect();
    assert_same_rows(&read, &source);
}
