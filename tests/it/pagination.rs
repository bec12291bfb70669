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

/// The sandbox with one synthetic report `big` of `rows` rows, served as one page.
fn one_huge_page(rows: u64) -> Sandbox {
    let spec = format!("big={rows}");
    Sandbox::start(&["--synthetic", &spec, "--page-size", &rows.to_string()])
}

#[test]
fn a_huge_page_read_as_it_arrives_exports_the_same_rows_as_pages_read_whole() {
    // 70,000 rows (~34 MB) in one page: several runs of rows and two spooled batches.
    let sandbox = one_huge_page(70_000);
    let out = tempfile::tempdir().unwrap();
    let export = |dest: &std::path::Path, stream_from: &str| {
        let output = sandbox
            .command()
            .env("KARGO_EXPORT_STREAM_PAGES_FROM", stream_from)
            .args([
                "-vv",
                "export",
                "report",
                "big",
                "--out",
                dest.to_str().unwrap(),
            ])
            .args(["--partition-by", "date"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        (
            success(&output),
            stderr.contains("reading a page as it arrives"),
        )
    };
    let streamed = out.path().join("streamed");
    let (stdout, was_streamed) = export(&streamed, "1000000");
    assert!(was_streamed);
    assert!(stdout.contains("exported big: 70000 rows"), "{stdout}");
    assert_eq!(pages_in_summary(&stdout), 1, "{stdout}");
    let whole = out.path().join("whole");
    let (_, was_streamed) = export(&whole, "100000000");
    assert!(!was_streamed);
    assert_eq!(one_schema(&streamed), one_schema(&whole));
    let key = |row: &Row| {
        (
            row["line_item_id"].to_string(),
            row["first_seen_at"].to_string(),
            row["spend"].to_string(),
        )
    };
    let mut got = read_dataset(&streamed);
    let mut want = read_dataset(&whole);
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_same_rows(&got, &want);
}

#[test]
fn pages_read_as_they_arrive_that_are_cut_off_or_broken_are_fetched_again() {
    let fixture = Fixture::new();
    let source = numbered_rows(1_000);
    fixture.report_rows("cut", &source);
    let sandbox = Sandbox::with_data(
        fixture.path(),
        &[
            "--page-size",
            "40",
            "--truncate-every",
            "3",
            "--malformed-every",
            "4",
        ],
    );
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let output = sandbox
        .command()
        .env("KARGO_EXPORT_STREAM_PAGES_FROM", "64")
        .args([
            "-vv",
            "export",
            "report",
            "cut",
            "--out",
            dest.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.matches("reading a page as it arrives").count() >= 25,
        "{stderr}"
    );
    assert_eq!(pages_in_summary(&stdout), 25, "{stdout}");
    let ids: Vec<i64> = rows_by(&dest, "i")
        .iter()
        .map(|r| r["i"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (0..1_000).collect::<Vec<_>>(), "each row exactly once");
    assert_same_rows(&rows_by(&dest, "i"), &as_rows(&source));
}
