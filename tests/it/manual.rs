//! Manually configured endpoints (`export url`, `schema url`) against the sandbox's
//! `/v1/test/rows`, which serves a report in every pagination kind and content format: each
//! kind reads every row exactly once and stops where it should, each format decodes to the
//! source values, each JSONPath form finds the rows, and each transform changes what it says.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::util::*;

/// 600 rows, with nulls in `deal_id`.
const REPORT: &str = "rpt_2b8e4d10";
const SOURCE: &str = include_str!("../../sample_data/completed-reports/rpt_2b8e4d10.json");
/// The data path of the sandbox's test shape, using `.key`, `['key']`, `[N]` and `[*]`.
const ROWS_PATH: &str = "$.result['row sets'][0].items[*]";

/// A temporary folder (removed when dropped, so keep it) and a destination inside it that
/// does not exist yet.
fn scratch() -> (tempfile::TempDir, std::path::PathBuf) {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    (out, dest)
}

/// `export url /v1/test/rows?report=REPORT&<query> --out DEST <flags>`.
fn export(sandbox: &Sandbox, query: &str, dest: &Path, flags: &[&str]) -> Output {
    let url = format!("/v1/test/rows?report={REPORT}&{query}");
    let mut args = vec![
        "export",
        "url",
        url.as_str(),
        "--out",
        dest.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    sandbox.run(&args)
}

/// `--data-path ROWS_PATH --paginate KIND` followed by `more`.
fn rows_paged<'a>(kind: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut flags = vec!["--data-path", ROWS_PATH, "--paginate", kind];
    flags.extend_from_slice(more);
    flags
}

/// Exports with `flags`, checks the page count and that the dataset holds the source rows in
/// order, value by value.
fn exports_every_row(query: &str, flags: &[&str], pages: u64) {
    let sandbox = Sandbox::start(&[]);
    let (_out, dest) = scratch();
    let stdout = success(&export(&sandbox, query, &dest, flags));
    assert_eq!(pages_in_summary(&stdout), pages, "{stdout}");
    assert_same_rows(&read_dataset(&dest), &source_rows(SOURCE));
}

#[test]
fn next_links_at_a_custom_path_with_every_jsonpath_form() {
    let flags = ["--data-path", ROWS_PATH, "--next-path", "$.paging.next"];
    // 600 rows by 70: 8 full pages and one of 40; the last has a null link.
    exports_every_row("paging=next&size=70", &flags, 9);
}

#[test]
fn page_numbers_run_until_an_empty_page() {
    let flags = ["--data-path", ROWS_PATH, "--paginate", "page"];
    exports_every_row("paging=page&size=100", &flags, 7);
}

#[test]
fn page_numbers_start_where_told_and_use_the_named_parameter() {
    // The sandbox counts `page` from 1; starting at 2 skips the first 100 rows.
    let sandbox = Sandbox::start(&[]);
    let (_out, dest) = scratch();
    let flags = rows_paged("page", &["--page-param", "page", "--page-start", "2"]);
    success(&export(&sandbox, "paging=page&size=100", &dest, &flags));
    assert_same_rows(&read_dataset(&dest), &source_rows(SOURCE)[100..]);
}

#[test]
fn a_server_that_ignores_the_page_parameter_is_a_loop_not_an_endless_export() {
    // The sandbox reads `page`, so `p` changes the URL but not the page served.
    let sandbox = Sandbox::start(&[]);
    let (_out, dest) = scratch();
    let flags = rows_paged("page", &["--page-param", "p"]);
    let error = failure(&export(&sandbox, "paging=page&size=100", &dest, &flags), 1);
    assert!(error.contains("page 2)"), "{error}");
    assert!(
        error.contains(r#"the server seems to ignore query parameter "p" (pagination loop)"#),
        "{error}"
    );
    assert!(!dest.exists());
}

#[test]
fn offsets_and_limits_run_until_an_empty_page() {
    let flags = rows_paged("offset", &["--limit", "250"]);
    // 250 + 250 + 100, then an empty page.
    exports_every_row("paging=offset", &flags, 4);
}

#[test]
fn cursors_go_from_the_body_into_the_query_until_one_is_missing() {
    let flags = rows_paged(
        "cursor",
        &[
            "--cursor-path",
            "$.paging['next cursor']",
            "--cursor-param",
            "cursor",
        ],
    );
    exports_every_row("paging=cursor&size=200", &flags, 3);
}

#[test]
fn none_reads_one_page_and_a_wildcard_spans_row_sets() {
    let flags = [
        "--data-path",
        "$.result['row sets'][*].items[*]",
        "--paginate",
        "none",
    ];
    exports_every_row("paging=page&size=5000", &flags, 1);
}

#[test]
fn a_stated_total_ends_a_listing_that_never_runs_dry() {
    // With endless=1 a page past the end serves the first rows again: only the total stops it.
    let flags = rows_paged("page", &["--total-path", "$.meta.total"]);
    exports_every_row("paging=page&size=100&endless=1", &flags, 6);
}

#[test]
fn ndjson_is_read_by_its_content_type() {
    exports_every_row(
        "paging=page&size=150&format=ndjson",
        &["--paginate", "page"],
        5,
    );
}

#[test]
fn csv_cells_are_strings_until_cast() {
    let sandbox = Sandbox::start(&[]);
    let (_out, dest) = scratch();
    let flags = [
        "--paginate",
        "offset",
        "--limit",
        "200",
        "--content-format",
        "csv",
        "--cast",
        "impressions=int64",
        "--cast",
        "spend=float64",
    ];
    success(&export(&sandbox, "paging=offset&format=csv", &dest, &flags));
    let source = source_rows(SOURCE);
    let read = read_dataset(&dest);
    assert_eq!(read.len(), source.len());
    for (got, want) in read.iter().zip(&source) {
        assert_eq!(got["impressions"], want["impressions"]);
        assert!(same_value(&got["spend"], &want["spend"]), "{got:?}");
        assert_eq!(got["site_domain"], want["site_domain"]);
        assert_eq!(got["date"], want["date"], "ISO dates in CSV are dates too");
        assert_eq!(got["deal_id"], want["deal_id"], "an empty cell is null");
        // Not cast: the CSV text of the number.
        assert_eq!(got["clicks"], Value::String(want["clicks"].to_string()));
    }
    let schema = one_schema(&dest);
    let types: Vec<(String, String)> = fields(&schema)
        .into_iter()
        .map(|(name, ty)| (name, ty.to_string()))
        .filter(|(name, _)| ["impressions", "spend", "clicks", "date"].contains(&name.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("date".to_owned(), "Date32".to_owned()),
            ("impressions".to_owned(), "Int64".to_owned()),
            ("clicks".to_owned(), "Utf8".to_owned()),
            ("spend".to_owned(), "Float64".to_owned()),
        ]
    );
}

#[test]
fn select_rename_cast_and_add_column_shape_the_dataset_before_partitioning() {
    let sandbox = Sandbox::start(&[]);
    let (_out, dest) = scratch();
    let flags = rows_paged(
        "none",
        &[
            "--select",
            "date,site_domain,spend,clicks",
            "--rename",
            "site_domain=site",
            "--cast",
            "spend=decimal(12,3)",
            "--cast",
            "clicks=string",
            "--add-column",
            "report_id=rpt_2b8e4d10",
            "--partition-by",
            "report_id",
        ],
    );
    success(&export(&sandbox, "paging=none", &dest, &flags));
    let files = parquet_files(&dest);
    assert_eq!(files.len(), 1);
    assert!(
        files[0]
            .to_str()
            .unwrap()
            .contains("/report_id=rpt_2b8e4d10/"),
        "{files:?}"
    );
    let schema = one_schema(&dest);
    assert_eq!(
        fields(&schema)
            .into_iter()
            .map(|(name, ty)| format!("{name}: {ty}"))
            .collect::<Vec<_>>(),
        [
            "date: Date32",
            "site: Utf8",
            "spend: Decimal128(12, 3)",
            "clicks: Utf8"
        ]
    );
    let source = source_rows(SOURCE);
    let read = read_dataset(&dest);
    assert_eq!(read.len(), source.len());
    for (got, want) in read.iter().zip(&source) {
        assert_eq!(got["site"], want["site_domain"]);
        assert_eq!(got["report_id"], "rpt_2b8e4d10");
        assert_eq!(got["clicks"], Value::String(want["clicks"].to_string()));
        let spend: f64 = got["spend"].as_str().unwrap().parse().unwrap();
        // Rounded to 3 places (a half may go either way after the float multiplication).
        let diff = (spend - want["spend"].as_f64().unwrap()).abs();
        assert!(diff <= 0.000_500_1, "{got:?}");
        assert!(!got.contains_key("site_domain") && !got.contains_key("impressions"));
    }
}

#[test]
fn a_value_that_does_not_cast_names_page_row_and_column_and_writes_nothing() {
    let sandbox = Sandbox::start(&[]);
    let (_out, dest) = scratch();
    let flags = ["--paginate", "page", "--cast", "site_domain=int64"];
    let query = "paging=page&size=100&format=ndjson";
    let error = failure(&export(&sandbox, query, &dest, &flags), 1);
    assert!(
        error.contains(r#"row 0, column "site_domain": "news.example.com" is not a valid int64"#),
        "{error}"
    );
    assert!(error.contains("/v1/test/rows, page 1)"), "{error}");
    assert!(!dest.exists(), "no partial output");

    let flags = [&flags[..], &["--on-cast-error", "null"]].concat();
    success(&export(&sandbox, query, &dest, &flags));
    let read = read_dataset(&dest);
    assert_eq!(read.len(), 600);
    assert!(read.iter().all(|row| row["site_domain"].is_null()));
}

#[test]
fn a_wrong_data_path_names_the_path_and_what_the_page_has() {
    let sandbox = Sandbox::start(&[]);
    let (_out, dest) = scratch();
    let url = format!("/v1/completed-reports/{REPORT}");
    let output = sandbox.run(&[
        "export",
        "url",
        &url,
        "--out",
        dest.to_str().unwrap(),
        "--data-path",
        "$.data.items[*]",
    ]);
    let error = failure(&output, 1);
    let expected = format!(
        "({}/v1/completed-reports/{REPORT}, page 1): $.data.items[*] matched nothing; the page has keys data.rows, links.next",
        sandbox.base
    );
    assert!(error.contains(&expected), "{error}");
    assert!(!dest.exists());
}

#[test]
fn the_template_shape_by_hand_equals_export_report() {
    let sandbox = Sandbox::start(&["--page-size", "45"]);
    let (_out, dest) = scratch();
    let url = format!("/v1/completed-reports/{REPORT}");
    let stdout = success(&sandbox.run(&["export", "url", &url, "--out", dest.to_str().unwrap()]));
    assert!(
        stdout.contains(&format!("exported {REPORT}: 600 rows")),
        "{stdout}"
    );
    assert_eq!(pages_in_summary(&stdout), 14);
    assert_same_rows(&read_dataset(&dest), &source_rows(SOURCE));
}

#[test]
fn post_with_a_body_file_and_a_header_that_never_reaches_the_logs() {
    let sandbox = Sandbox::start(&[]);
    let (out, dest) = scratch();
    let body = out.path().join("body.json");
    std::fs::write(&body, format!(r#"{{"report": "{REPORT}"}}"#)).unwrap();
    let body_flag = format!("@{}", body.display());
    let url = "/v1/test/rows?report=rpt_7f3a9c21&paging=none&require_key=1";
    let mut args = vec![
        "-vvv",
        "export",
        "url",
        url,
        "--out",
        dest.to_str().unwrap(),
        "--data-path",
        ROWS_PATH,
        "--paginate",
        "none",
        "--method",
        "POST",
        "--body",
        &body_flag,
        "--header",
        "X-Api-Key: sandbox-key",
    ];
    let output = sandbox.run(&args);
    success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("x-api-key") || stderr.contains("TRACE"),
        "trace logs were on"
    );
    assert!(!stderr.contains("sandbox-key"), "header value logged");
    assert_same_rows(&read_dataset(&dest), &source_rows(SOURCE));

    args.truncate(args.len() - 2);
    let error = failure(&sandbox.run(&args), 1);
    assert!(error.contains("HTTP 403"), "{error}");
}

#[test]
fn a_url_on_another_origin_is_refused_before_anything_is_sent() {
    let sandbox = Sandbox::start(&[]);
    let other = Sandbox::start(&[]);
    let (_out, dest) = scratch();
    let url = format!("{}/v1/test/rows", other.base);
    let output = sandbox.run(&["export", "url", &url, "--out", dest.to_str().unwrap()]);
    let error = failure(&output, 1);
    assert!(
        error.contains(&format!("{url} is on another origin than the API base")),
        "{error}"
    );
    assert!(error.contains("refusing to send credentials"), "{error}");
}

#[test]
fn schema_url_prints_the_transformed_schema_and_writes_nothing() {
    let sandbox = Sandbox::start(&[]);
    let url = format!("/v1/test/rows?report={REPORT}&paging=none&format=csv");
    let stdout = success(&sandbox.run(&[
        "schema",
        "url",
        &url,
        "--paginate",
        "none",
        "--select",
        "date,impressions",
        "--cast",
        "impressions=int64",
        "--add-column",
        "source=csv",
    ]));
    assert_eq!(stdout, "date: Date32\nimpressions: Int64\nsource: Utf8\n");
}

#[test]
fn usage_mistakes_exit_2_naming_the_flag() {
    let sandbox = Sandbox::start(&[]);
    let (_out, dest) = scratch();
    for (flags, expected) in [
        (&["--paginate", "cursor"][..], "--cursor-path"),
        (&["--data-path", "data.rows"][..], "--data-path"),
        (&["--cast", "spend=money"][..], "unknown type"),
        (&["--content-format", "csv"][..], "--paginate page"),
    ] {
        let error = failure(&export(&sandbox, "", &dest, flags), 2);
        assert!(error.contains(expected), "{flags:?}: {error}");
    }
    assert!(!dest.exists());
}

#[test]
fn partitions_of_a_renamed_column_are_one_file_each_across_pages() {
    // Rows of every site on every page: spooled by the source column `site_domain`, written
    // under its new name `site`, each partition whole in one file.
    let sandbox = Sandbox::start(&[]);
    let (_out, dest) = scratch();
    let flags = rows_paged(
        "page",
        &[
            "--rename",
            "site_domain=site",
            "--partition-by",
            "date,site",
        ],
    );
    let stdout = success(&export(&sandbox, "paging=page&size=70", &dest, &flags));
    assert_eq!(pages_in_summary(&stdout), 10, "{stdout}");
    let source = source_rows(SOURCE);
    let partitions: std::collections::BTreeSet<(String, String)> = source
        .iter()
        .map(|r| (r["date"].to_string(), r["site_domain"].to_string()))
        .collect();
    let files = parquet_files(&dest);
    assert_eq!(files.len(), partitions.len(), "one file per (date, site)");
    let folders: std::collections::BTreeSet<_> = files
        .iter()
        .map(|f| f.parent().unwrap().to_path_buf())
        .collect();
    assert_eq!(folders.len(), files.len());
    let key = |row: &Row| {
        let text = |column: &str| row[column].to_string();
        (
            text("date"),
            text("site_domain"),
            text("deal_id"),
            text("device_type"),
        )
    };
    let mut read = read_dataset(&dest);
    for row in &mut read {
        let site = row.remove("site").expect("site");
        row.insert("site_domain".into(), site);
    }
    let mut want = source;
    read.sort_by_key(key);
    want.sort_by_key(key);
    assert_same_rows(&read, &want);
    // The renamed column's values count as partitions: more than the 30 dates alone.
    let (_out, dest) = scratch();
    let mut flags = flags.clone();
    flags.extend(["--max-partitions", "31"]);
    let error = failure(&export(&sandbox, "paging=page&size=70", &dest, &flags), 1);
    assert!(
        error.contains("more than 31 distinct partitions"),
        "{error}"
    );
    assert!(!dest.exists());
}
