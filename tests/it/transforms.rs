//! Transforms on the templates: `export report`, `export reports` and the `reports` and
//! `new-reports` jobs select, rename, add and cast columns exactly as `export url` does. Spend
//! cast to `decimal(18,6)` reads back as the values the JSON sent, and sums exactly (compared in
//! integer micro-units with the source text, never through a float).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Decimal128Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::runs::*;
use crate::util::*;

/// The type `spend` is cast to.
const SPEND: &str = "decimal(18,6)";
/// A decimal(18,6) value in micro-units.
type Micros = i128;

/// A decimal text (`4.5721`, `-0.125`, `12`, `4.572100`) in micro-units, exactly; panics on
/// an exponent or more than six decimals, which a decimal(18,6) could not hold.
fn micros(text: &str) -> Micros {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(
        fraction.len() <= 6
            && (whole.to_owned() + fraction)
                .bytes()
                .all(|b| b.is_ascii_digit()),
        "not a decimal of at most six places: {text}"
    );
    let value: Micros = format!("{whole}{fraction:0<6}").parse().expect("digits");
    if negative { -value } else { value }
}

/// The spend of each row of a report's JSON, from the text the JSON holds, in micro-units.
fn source_spend(json: &str) -> Vec<Micros> {
    let rows: Vec<BTreeMap<String, Box<RawValue>>> = serde_json::from_str(json).unwrap();
    rows.iter().map(|row| micros(row["spend"].get())).collect()
}

/// The decimal values of `column` in every `.parquet` file under `dest` whose name starts with
/// `report` (every file when empty), read straight from the Decimal128 arrays.
fn decimals(dest: &Path, report: &str, column: &str) -> Vec<Option<Micros>> {
    let mut values = Vec::new();
    for path in parquet_files(dest) {
        let name = path.file_name().unwrap().to_str().unwrap();
        if !name.starts_with(report) {
            continue;
        }
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let array = batch.column_by_name(column).expect("the column");
            values.extend(array.as_primitive::<Decimal128Type>().iter());
        }
    }
    values
}

/// The rows of the files of `report` under `dest` (their names start with the report id).
fn rows_of(dest: &Path, report: &str) -> Vec<Row> {
    parquet_files(dest)
        .iter()
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(report))
        .flat_map(|p| read_file(dest, p))
        .collect()
}

/// `rows` as sorted texts of `columns`, spend last in micro-units: a multiset to compare.
fn projected(rows: &[Row], columns: &[&str], spend: &[Micros]) -> Vec<String> {
    let mut texts: Vec<String> = rows
        .iter()
        .zip(spend)
        .map(|(row, spend)| {
            let values: Vec<String> = columns.iter().map(|c| row[*c].to_string()).collect();
            format!("{} {spend}", values.join(" "))
        })
        .collect();
    texts.sort();
    texts
}

/// The spend read back (decimal text) in micro-units, for every row.
fn spend_read(rows: &[Row], column: &str) -> Vec<Micros> {
    rows.iter()
        .map(|row| micros(row[column].as_str().expect("a decimal as text")))
        .collect()
}

#[test]
fn export_report_casts_spend_to_an_exact_decimal_and_shapes_the_columns() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("delivery");
    let transforms = [
        "--select",
        "date,line_item_id,creative_id,site_domain,device_type,spend",
        "--rename",
        "site_domain=site",
        "--rename",
        "date=day",
        "--cast",
        "spend=decimal(18,6)",
        "--add-column",
        "report_id=rpt_7f3a9c21",
    ];
    let mut flags = transforms.to_vec();
    flags.extend(["--partition-by", "day"]);
    let stdout = success(&sandbox.export(&["rpt_7f3a9c21"], &dest, &flags));
    assert_eq!(pages_in_summary(&stdout), 15, "{stdout}");

    // The partition column lives in the path; the file holds the rest, in --select order.
    let schema = one_schema(&dest);
    assert_eq!(
        fields(&schema),
        [
            ("line_item_id".to_owned(), DataType::Int64),
            ("creative_id".to_owned(), DataType::Int64),
            ("site".to_owned(), DataType::Utf8),
            ("device_type".to_owned(), DataType::Utf8),
            ("spend".to_owned(), DataType::Decimal128(18, 6)),
            ("report_id".to_owned(), DataType::Utf8),
        ]
    );
    let source = source_rows(SAMPLE_A);
    let spend = source_spend(SAMPLE_A);
    let dates: std::collections::BTreeSet<String> = source
        .iter()
        .map(|r| r["date"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(parquet_files(&dest).len(), dates.len(), "one file per day");

    // Every row, matched by its key, holds the exact decimal the JSON sent.
    let key = |row: &Row, day: &str, site: &str| {
        [day, "line_item_id", "creative_id", site, "device_type"]
            .iter()
            .map(|c| row[*c].to_string())
            .collect::<Vec<_>>()
    };
    let want: BTreeMap<Vec<String>, Micros> = source
        .iter()
        .zip(&spend)
        .map(|(row, spend)| (key(row, "date", "site_domain"), *spend))
        .collect();
    assert_eq!(want.len(), 1500, "the key tells the rows apart");
    let read = read_dataset(&dest);
    assert_eq!(read.len(), 1500);
    for row in &read {
        let spend = micros(row["spend"].as_str().unwrap());
        assert_eq!(Some(&spend), want.get(&key(row, "day", "site")), "{row:?}");
        assert_eq!(row["report_id"], "rpt_7f3a9c21");
        assert!(!row.contains_key("site_domain") && !row.contains_key("impressions"));
    }

    // SUM(spend) over the decimals is the exact sum of the source's decimal texts.
    let read_spend = decimals(&dest, "", "spend");
    assert_eq!(read_spend.len(), 1500);
    let sum: Micros = read_spend.iter().map(|v| v.expect("no null spend")).sum();
    assert_eq!(sum, spend.iter().sum::<Micros>());
    assert!(sum > 0);

    // `schema report` with the same transforms prints the schema the export wrote.
    let mut args = vec!["schema", "report", "rpt_7f3a9c21"];
    args.extend(transforms);
    assert_eq!(
        success(&sandbox.run(&args)),
        "day: Date32\nline_item_id: Int64\ncreative_id: Int64\nsite: Utf8\ndevice_type: Utf8\n\
         spend: Decimal128(18, 6)\nreport_id: Utf8\n"
    );
}

#[test]
fn export_reports_selects_columns_of_the_report_list() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("requests");
    let out = dest.to_str().unwrap();
    let flags = [
        "export",
        "reports",
        "--out",
        out,
        "--select",
        "id,status",
        "--rename",
        "status=state",
        "--partition-by",
        "state",
    ];
    success(&sandbox.run(&flags));
    assert_eq!(
        fields(&one_schema(&dest)),
        [("id".to_owned(), DataType::Utf8)]
    );
    let listed: Vec<Value> =
        serde_json::from_str(include_str!("../../sample_data/reports.json")).unwrap();
    let mut want: Vec<(Value, Value)> = listed
        .iter()
        .map(|r| (r["id"].clone(), r["status"].clone()))
        .collect();
    let mut got: Vec<(Value, Value)> = read_dataset(&dest)
        .iter()
        .map(|r| {
            assert_eq!(r.len(), 2, "only id and state: {r:?}");
            (r["id"].clone(), r["state"].clone())
        })
        .collect();
    want.sort_by_key(|p| p.0.to_string());
    got.sort_by_key(|p| p.0.to_string());
    assert_eq!(got, want);
    let states: std::collections::BTreeSet<String> = parquet_files(&dest)
        .iter()
        .map(|f| {
            partition_values(&dest, f)["state"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        states.into_iter().collect::<Vec<_>>(),
        ["completed", "failed", "pending"]
    );
}

#[test]
fn reports_and_new_reports_jobs_apply_the_transforms() {
    let sandbox = Sandbox::start(&["--page-size", "250"]);
    let dir = tempfile::tempdir().unwrap();
    let given = dir.path().join("given");
    let by_site = dir.path().join("by_site");
    // The columns both sample reports have: their reports share one schema in one dataset.
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            r#"
[[job]]
name = "given"
kind = "reports"
ids = ["rpt_7f3a9c21", "rpt_2b8e4d10"]
out = "{}"
partition_by = ["day"]
select = ["date", "site_domain", "device_type", "impressions", "clicks", "spend"]
rename = {{ date = "day", site_domain = "site" }}
cast = {{ spend = "{SPEND}" }}
add_column = {{ source = "kargo" }}

[[job]]
name = "by-site"
kind = "new-reports"
where = {{ report_type = "delivery_by_site" }}
out = "{}"
cast = {{ spend = "{SPEND}", impressions = "string" }}
"#,
            given.display(),
            by_site.display()
        ),
    );
    let (output, summary) = run(&file, &[]);
    success(&output);
    assert_eq!(
        reports_of(&summary, "given"),
        ["rpt_2b8e4d10", "rpt_7f3a9c21"]
    );
    assert_eq!(
        reports_of(&summary, "by-site"),
        ["rpt_2b8e4d10", "rpt_e5d90a47"]
    );

    assert_eq!(
        fields(&one_schema(&given)),
        [
            ("site".to_owned(), DataType::Utf8),
            ("device_type".to_owned(), DataType::Utf8),
            ("impressions".to_owned(), DataType::Int64),
            ("clicks".to_owned(), DataType::Int64),
            ("spend".to_owned(), DataType::Decimal128(18, 6)),
            ("source".to_owned(), DataType::Utf8),
        ]
    );
    let mut total: Micros = 0;
    for (report, json) in [("rpt_7f3a9c21", SAMPLE_A), ("rpt_2b8e4d10", SAMPLE_B)] {
        let spend = source_spend(json);
        let rows = rows_of(&given, report);
        assert_eq!(rows.len(), spend.len(), "{report}");
        assert!(rows.iter().all(|r| r["source"] == "kargo"), "{report}");
        let read = ["day", "site", "device_type", "impressions", "clicks"];
        let sent = [
            "date",
            "site_domain",
            "device_type",
            "impressions",
            "clicks",
        ];
        assert_eq!(
            projected(&rows, &read, &spend_read(&rows, "spend")),
            projected(&source_rows(json), &sent, &spend),
            "{report}: the rows read back are the rows sent, spend exact"
        );
        let sum: Micros = decimals(&given, report, "spend").iter().flatten().sum();
        assert_eq!(sum, spend.iter().sum::<Micros>(), "{report}");
        total += sum;
    }
    let all: Micros = decimals(&given, "", "spend").iter().flatten().sum();
    assert_eq!(
        all, total,
        "SUM over the dataset is the sum of both reports"
    );

    let schema = one_schema(&by_site);
    let types: BTreeMap<String, DataType> = fields(&schema).into_iter().collect();
    assert_eq!(types["spend"], DataType::Decimal128(18, 6));
    assert_eq!(types["impressions"], DataType::Utf8);
    let rows = read_dataset(&by_site);
    let spend = source_spend(SAMPLE_B);
    let columns = ["date", "site_domain", "deal_id", "device_type", "clicks"];
    assert_eq!(
        projected(&rows, &columns, &spend_read(&rows, "spend")),
        projected(&source_rows(SAMPLE_B), &columns, &spend)
    );
    let impressions: Vec<String> = sorted(rows, KEY_B)
        .iter()
        .map(|r| r["impressions"].as_str().unwrap().to_owned())
        .collect();
    let sent: Vec<String> = sorted(source_rows(SAMPLE_B), KEY_B)
        .iter()
        .map(|r| r["impressions"].to_string())
        .collect();
    assert_eq!(impressions, sent);
    let sum: Micros = decimals(&by_site, "", "spend").iter().flatten().sum();
    assert_eq!(sum, spend.iter().sum::<Micros>());
    assert!(
        by_site.join("_manifests/rpt_e5d90a47.json").is_file(),
        "an empty report is exported with the transforms too"
    );
}

#[test]
fn a_value_that_does_not_cast_fails_its_job_unless_on_cast_error_is_null() {
    let fixture = Fixture::new();
    fixture
        .reports(&serde_json::json!([
            {"id": "r_mixed", "status": "completed", "report_type": "mixed"}
        ]))
        .report(
            "r_mixed",
            r#"[{"i": 0, "spend": 1.5}, {"i": 1, "spend": "n/a"}, {"i": 2, "spend": 2.000125}]"#,
        );
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    let strict = dir.path().join("strict");
    let lenient = dir.path().join("lenient");
    let job_text = |name: &str, out: &Path, extra: &str| {
        format!(
            "[[job]]\nname = \"{name}\"\nkind = \"new-reports\"\nout = \"{}\"\n\
             cast = {{ spend = \"{SPEND}\" }}\n{extra}\n",
            out.display()
        )
    };
    let file = jobs_file(
        dir.path(),
        &sandbox,
        &format!(
            "{}\n{}",
            job_text("strict", &strict, ""),
            job_text("lenient", &lenient, "on_cast_error = \"null\"")
        ),
    );
    let (output, summary) = run(&file, &[]);
    let error = failure(&output, 1);
    assert!(error.contains("strict"), "{error}");
    let strict_job = job(&summary, "strict");
    assert_eq!(strict_job["status"], "failed", "{summary}");
    let message = strict_job["error"].as_str().unwrap();
    assert!(
        message.contains(r#"row 1, column "spend": "n/a" is not a valid decimal(18,6)"#)
            && message.contains("/v1/completed-reports/r_mixed, page 1"),
        "{message}"
    );
    assert!(parquet_files(&strict).is_empty(), "nothing written");
    assert!(!strict.join("_manifests/r_mixed.json").exists());

    assert_eq!(job(&summary, "lenient")["status"], "ok", "{summary}");
    let rows = rows_by(&lenient, "i");
    assert_eq!(
        column(&rows, "spend"),
        [
            Value::from("1.500000"),
            Value::Null,
            Value::from("2.000125")
        ]
    );
    assert_eq!(
        fields(&one_schema(&lenient)),
        [
            ("i".to_owned(), DataType::Int64),
            ("spend".to_owned(), DataType::Decimal128(18, 6)),
        ]
    );
}

#[test]
fn a_transform_key_mistake_names_the_key_and_its_line() {
    let sandbox = Sandbox::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    // jobs_file writes four lines of [connection] and a blank line first: [[job]] is line 6.
    let cases = [
        (
            "kind = \"reports\"\nids = [\"rpt_7f3a9c21\"]\nout = \"o\"\ncast = { spend = \"money\" }\n",
            "line 11, column 8",
            "job \"a\": cast spend: unknown type \"money\": expected int64, float64, \
             decimal(p,s), string, bool, date or timestamp",
        ),
        (
            "kind = \"new-reports\"\nout = \"o\"\non_cast_error = \"skip\"\n",
            "line 10, column 17",
            "job \"a\": unknown on_cast_error \"skip\": expected fail, null",
        ),
        (
            "kind = \"report-list\"\nout = \"o\"\nselect = [\"id\", \" \"]\n",
            "line 10, column 10",
            "job \"a\": select has an empty column name",
        ),
        (
            "kind = \"submit\"\nrequest = {}\nout = \"o\"\nrename = { status = 1 }\n",
            "line 11, column 10",
            "job \"a\": rename: the value of \"status\" must be text",
        ),
    ];
    for (keys, line, what) in cases {
        let file = jobs_file(
            dir.path(),
            &sandbox,
            &format!("[[job]]\nname = \"a\"\n{keys}"),
        );
        let (output, summary) = run(&file, &[]);
        let error = failure(&output, 2);
        assert!(
            error.contains(&format!("{}, {line}): {what}", file.display())),
            "{keys}: {error}"
        );
        assert_eq!(summary, Value::Null, "nothing ran");
    }
}
