//! Following next links: every page of a long report is fetched exactly once, whatever the link
//! style, and the export stops at each way a last page can say "no more".

use serde_json::{Value, json};

use crate::util::*;

const ROWS: usize = 1_000;
const PAGE_SIZE: &str = "7";
/// `ceil(1000 / 7)`.
const PAGES: u64 = 143;

/// Rows with a unique `id` and values of several types, so a lost, doubled or shifted row shows.
fn rows() -> Vec<Value> {
    (0..ROWS)
        .map(|i| {
            json!({
                "id": i,
                "name": format!("row {i} ✓"),
                "amount": i as f64 * 0.37 + 0.01,
                "even": i % 2 == 0,
                "bucket": format!("b{}", i % 13),
            })
        })
        .collect()
}

/// Exports the 1,000-row report from a sandbox started with `sandbox_flags` and checks that each
/// source row is in the dataset exactly once, with the same values.
fn assert_every_row_once(sandbox_flags: &[&str]) {
    let fixture = Fixture::new();
    let source = rows();
    fixture.report_rows("long", &source);
    let mut flags = vec!["--page-size", PAGE_SIZE];
    flags.extend_from_slice(sandbox_flags);
    let sandbox = Sandbox::with_data(fixture.path(), &flags);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");

    let stdout = success(&sandbox.export(&["long"], &dest, &[]));
    assert_eq!(pages_in_summary(&stdout), PAGES, "{stdout}");
    assert!(stdout.contains("exported long: 1000 rows"), "{stdout}");

    let read = rows_by(&dest, "id");
    let ids: Vec<i64> = read.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(
        ids,
        (0..ROWS as i64).collect::<Vec<_>>(),
        "each id exactly once"
    );
    let source: Vec<Row> = source
        .into_iter()
        .map(|v| v.as_object().unwrap().clone())
        .collect();
    assert_same_rows(&read, &source);
}

#[test]
fn absolute_next_links_fetch_every_row_exactly_once() {
    assert_every_row_once(&["--link-style", "absolute"]);
}

#[test]
fn root_relative_next_links_fetch_every_row_exactly_once() {
    assert_every_row_once(&["--link-style", "root-relative"]);
}

#[test]
fn query_relative_next_links_fetch_every_row_exactly_once() {
    assert_every_row_once(&["--link-style", "query-relative"]);
}

#[test]
fn a_last_page_without_a_next_link_ends_the_export() {
    assert_every_row_once(&["--last-link", "absent"]);
}

#[test]
fn a_last_page_with_a_null_next_link_ends_the_export() {
    assert_every_row_once(&["--last-link", "null"]);
}

#[test]
fn a_last_page_with_an_empty_next_link_ends_the_export() {
    assert_every_row_once(&["--last-link", "empty"]);
}

#[test]
fn a_row_count_that_fills_the_last_page_exactly_needs_no_extra_page() {
    let fixture = Fixture::new();
    let source: Vec<Value> = (0..21).map(|i| json!({"id": i})).collect();
    fixture.report_rows("exact", &source);
    let sandbox = Sandbox::with_data(fixture.path(), &["--page-size", PAGE_SIZE]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let stdout = success(&sandbox.export(&["exact"], &dest, &[]));
    assert_eq!(pages_in_summary(&stdout), 3, "{stdout}");
    let ids: Vec<i64> = rows_by(&dest, "id")
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (0..21).collect::<Vec<_>>());
}
