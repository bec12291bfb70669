//! Data rules: one inferred schema per export, checked in the Parquet files' schema, and exact
//! values read back for each rule of the README's "Data rules" (widening, conflicts, nesting,
//! byte-exact text, dates and timestamps). Each test has its own small fixture, served over
//! several pages so that a rule only visible across pages is exercised.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use parquet::basic::{LogicalType, TimeUnit as ParquetTimeUnit, Type as PhysicalType};
use serde_json::{Value, json};

use crate::util::*;

/// A finished export of one fixture report `r`.
struct Exported {
    _out: tempfile::TempDir,
    dest: PathBuf,
}

impl Exported {
    /// The export's one schema as `(name, type)` pairs.
    fn fields(&self) -> Vec<(String, DataType)> {
        fields(&one_schema(&self.dest))
    }

    /// The rows, ordered by the integer column `i`.
    fn rows(&self) -> Vec<Row> {
        rows_by(&self.dest, "i")
    }

    /// The values of `name`, ordered by `i`.
    fn column(&self, name: &str) -> Vec<Value> {
        column(&self.rows(), name)
    }
}

/// Serves `rows_json` (a JSON array text) as report `r`, `page_size` rows a page, and exports it.
fn export_raw(rows_json: &str, page_size: usize, extra: &[&str]) -> Exported {
    let fixture = Fixture::new();
    fixture.report("r", rows_json);
    let page_size = page_size.to_string();
    let sandbox = Sandbox::with_data(fixture.path(), &["--page-size", &page_size]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    success(&sandbox.export(&["r"], &dest, extra));
    Exported { _out: out, dest }
}

/// Like [`export_raw`] over JSON values, each row numbered by `i` in order.
fn export_rows(rows: &[Value], page_size: usize) -> Exported {
    let numbered: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut object = serde_json::Map::new();
            object.insert("i".into(), json!(i));
            object.extend(row.as_object().expect("object row").clone());
            Value::Object(object)
        })
        .collect();
    export_raw(&Value::Array(numbered).to_string(), page_size, &[])
}

fn field(name: &str, data_type: DataType) -> (String, DataType) {
    (name.to_string(), data_type)
}

fn strings(values: &[Option<&str>]) -> Vec<Value> {
    values
        .iter()
        .map(|v| v.map_or(Value::Null, |s| Value::String(s.to_string())))
        .collect()
}

#[test]
fn a_column_that_appears_late_is_null_in_earlier_rows() {
    let export = export_rows(
        &[
            json!({"a": "x"}),
            json!({"a": "y"}),
            json!({"a": "z", "late": 5}),
            json!({"late": 6}),
        ],
        2,
    );
    assert_eq!(
        export.fields(),
        [
            field("i", DataType::Int64),
            field("a", DataType::Utf8),
            field("late", DataType::Int64),
        ]
    );
    assert_eq!(
        export.column("late"),
        [json!(null), json!(null), json!(5), json!(6)]
    );
    assert_eq!(
        export.column("a"),
        strings(&[Some("x"), Some("y"), Some("z"), None])
    );
}

#[test]
fn integers_then_decimals_on_a_later_page_widen_to_float64_exactly() {
    let export = export_raw(
        r#"[{"i":0,"x":1},{"i":1,"x":-2},{"i":2,"x":9007199254740992},
            {"i":3,"x":2.5},{"i":4,"x":0.1},{"i":5,"x":-1e-7}]"#,
        3,
        &[],
    );
    assert_eq!(
        export.fields(),
        [field("i", DataType::Int64), field("x", DataType::Float64)]
    );
    let got: Vec<Option<f64>> = export.column("x").iter().map(Value::as_f64).collect();
    let want = [1.0, -2.0, 9007199254740992.0, 2.5, 0.1, -1e-7];
    assert_eq!(got, want.map(Some));
}

#[test]
fn integers_mixed_with_strings_become_utf8_with_numbers_as_json_text() {
    let export = export_raw(
        r#"[{"i":0,"v":42},{"i":1,"v":-7},{"i":2,"v":"abc"},{"i":3,"v":"42"},
            {"i":4,"v":null},{"i":5,"v":0}]"#,
        2,
        &[],
    );
    assert_eq!(
        export.fields(),
        [field("i", DataType::Int64), field("v", DataType::Utf8)]
    );
    assert_eq!(
        export.column("v"),
        strings(&[
            Some("42"),
            Some("-7"),
            Some("abc"),
            Some("42"),
            None,
            Some("0")
        ])
    );
}

#[test]
fn booleans_are_boolean() {
    let export = export_rows(
        &[
            json!({"b": true}),
            json!({"b": false}),
            json!({"b": null}),
            json!({"b": true}),
        ],
        2,
    );
    assert_eq!(
        export.fields(),
        [field("i", DataType::Int64), field("b", DataType::Boolean)]
    );
    assert_eq!(
        export.column("b"),
        [json!(true), json!(false), json!(null), json!(true)]
    );
}

#[test]
fn booleans_mixed_with_strings_become_utf8_true_and_false() {
    let export = export_rows(
        &[
            json!({"b": true}),
            json!({"b": false}),
            json!({"b": "yes"}),
            json!({"b": "true"}),
        ],
        2,
    );
    assert_eq!(
        export.fields(),
        [field("i", DataType::Int64), field("b", DataType::Utf8)]
    );
    assert_eq!(
        export.column("b"),
        strings(&[Some("true"), Some("false"), Some("yes"), Some("true")])
    );
}

#[test]
fn a_column_only_ever_null_is_utf8_and_all_null() {
    let export = export_rows(
        &[
            json!({"n": null}),
            json!({"n": null}),
            json!({}),
            json!({"n": null}),
        ],
        2,
    );
    assert_eq!(
        export.fields(),
        [field("i", DataType::Int64), field("n", DataType::Utf8)]
    );
    assert_eq!(
        export.column("n"),
        [Value::Null, Value::Null, Value::Null, Value::Null]
    );
}

#[test]
fn empty_strings_and_nulls_stay_distinct() {
    let export = export_rows(
        &[
            json!({"s": ""}),
            json!({"s": null}),
            json!({"s": "x"}),
            json!({}),
            json!({"s": ""}),
        ],
        2,
    );
    assert_eq!(
        export.fields(),
        [field("i", DataType::Int64), field("s", DataType::Utf8)]
    );
    assert_eq!(
        export.column("s"),
        strings(&[Some(""), None, Some("x"), None, Some("")])
    );
}

#[test]
fn int64_is_exact_above_2_pow_53_and_at_its_limits() {
    let export = export_raw(
        r#"[{"i":0,"n":9007199254740993},{"i":1,"n":9223372036854775807},
            {"i":2,"n":-9223372036854775808},{"i":3,"n":-9007199254740993},{"i":4,"n":0}]"#,
        2,
        &[],
    );
    assert_eq!(
        export.fields(),
        [field("i", DataType::Int64), field("n", DataType::Int64)]
    );
    let got: Vec<Option<i64>> = export.column("n").iter().map(Value::as_i64).collect();
    let want = [
        9_007_199_254_740_993,
        i64::MAX,
        i64::MIN,
        -9_007_199_254_740_993,
        0,
    ];
    assert_eq!(got, want.map(Some));
}

#[test]
fn nested_objects_become_structs_with_fields_merged_over_all_rows() {
    let export = export_rows(
        &[
            json!({"o": {"a": 1, "b": "x"}}),
            json!({"o": null}),
            json!({"o": {"a": 2, "c": true}}),
            json!({"o": {"b": "y", "a": 3}}),
        ],
        2,
    );
    let want_fields = Fields::from(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::Utf8, true),
        Field::new("c", DataType::Boolean, true),
    ]);
    assert_eq!(
        export.fields(),
        [
            field("i", DataType::Int64),
            field("o", DataType::Struct(want_fields)),
        ]
    );
    assert_eq!(
        export.column("o"),
        [
            json!({"a": 1, "b": "x", "c": null}),
            json!(null),
            json!({"a": 2, "b": null, "c": true}),
            json!({"a": 3, "b": "y", "c": null}),
        ]
    );
}

#[test]
fn arrays_of_integers_become_three_level_lists_of_int64() {
    let export = export_rows(
        &[
            json!({"arr": [1, 2, 3]}),
            json!({"arr": []}),
            json!({"arr": null}),
            json!({"arr": [4, -5, 9007199254740993_i64]}),
        ],
        2,
    );
    let fields = export.fields();
    assert_eq!(fields.len(), 2, "{fields:?}");
    match &fields[1] {
        (name, DataType::List(item)) if name == "arr" => {
            assert_eq!(item.data_type(), &DataType::Int64, "{fields:?}")
        }
        other => panic!("arr is not a List: {other:?}"),
    }
    assert_eq!(
        export.column("arr"),
        [
            json!([1, 2, 3]),
            json!([]),
            json!(null),
            json!([4, -5, 9007199254740993_i64])
        ]
    );
    let file = &parquet_files(&export.dest)[0];
    let leaves = parquet_leaves(file);
    let arr: Vec<&String> = leaves
        .iter()
        .map(|(path, ..)| path)
        .filter(|p| p.starts_with("arr"))
        .collect();
    assert_eq!(arr.len(), 1, "{leaves:?}");
    let levels: Vec<&str> = arr[0].split('.').collect();
    assert_eq!(levels.len(), 3, "standard 3-level list: {leaves:?}");
    assert_eq!(levels[1], "list", "standard 3-level list: {leaves:?}");
}

#[test]
fn nested_shape_conflicts_become_utf8_with_each_values_json_text() {
    let export = export_raw(
        r#"[{"i":0,"o":{"a":1,"b":[true,null]}},{"i":1,"o":null},
            {"i":2,"o":"plain text"},{"i":3,"o":[1,"two"]},
            {"i":4,"o":7},{"i":5,"o":{"z":{"y":"x"}}}]"#,
        2,
        &[],
    );
    assert_eq!(
        export.fields(),
        [field("i", DataType::Int64), field("o", DataType::Utf8)]
    );
    assert_eq!(
        export.column("o"),
        strings(&[
            Some(r#"{"a":1,"b":[true,null]}"#),
            None,
            Some("plain text"),
            Some(r#"[1,"two"]"#),
            Some("7"),
            Some(r#"{"z":{"y":"x"}}"#),
        ])
    );
}

#[test]
fn a_column_of_only_empty_objects_is_utf8_json_text() {
    let export = export_raw(
        r#"[{"i":0,"o":{}},{"i":1,"o":null},{"i":2,"o":{}}]"#,
        2,
        &[],
    );
    assert_eq!(
        export.fields(),
        [field("i", DataType::Int64), field("o", DataType::Utf8)]
    );
    assert_eq!(export.column("o"), strings(&[Some("{}"), None, Some("{}")]));
}

#[test]
fn an_empty_object_among_objects_is_a_struct_with_null_fields() {
    let export = export_raw(
        r#"[{"i":0,"o":{"a":1}},{"i":1,"o":{}},{"i":2,"o":{"a":2}}]"#,
        2,
        &[],
    );
    let a = Field::new("a", DataType::Int64, true);
    assert_eq!(
        export.fields(),
        [
            field("i", DataType::Int64),
            field("o", DataType::Struct(vec![a].into()))
        ]
    );
    assert_eq!(
        export.column("o"),
        [json!({"a": 1}), json!({"a": null}), json!({"a": 2})]
    );
}

#[test]
fn strings_are_byte_exact_including_unicode_escapes_and_long_text() {
    let mut long = String::new();
    let mut n = 0;
    while long.len() < 100_000 {
        long.push_str(&format!("{n:05}✓,"));
        n += 1;
    }
    long.push_str("end");
    // Raw JSON texts (as the API sends them) and the strings they mean.
    let cases: Vec<(String, String)> = vec![
        (r#""🦀 and 👩‍👩‍👧""#.into(), "🦀 and 👩‍👩‍👧".into()),
        (
            r#""数据共享 データ 데이터""#.into(),
            "数据共享 データ 데이터".into(),
        ),
        (
            "\"e\u{301}cole, n\u{303}\"".into(),
            "e\u{301}cole, n\u{303}".into(),
        ),
        (
            r#""line1\nline2\ttab\r\nend""#.into(),
            "line1\nline2\ttab\r\nend".into(),
        ),
        (r#""caf\u00e9""#.into(), "café".into()),
        (r#""\"quoted\"""#.into(), "\"quoted\"".into()),
        (
            r#""back\\slash \/ solidus""#.into(),
            "back\\slash / solidus".into(),
        ),
        (
            r#""\ud83e\udd80 escaped crab""#.into(),
            "🦀 escaped crab".into(),
        ),
        (
            r#""nul\u0000 and \u001f""#.into(),
            "nul\0 and \u{1f}".into(),
        ),
        (format!("\"{long}\""), long.clone()),
        (r#""  spaces kept  ""#.into(), "  spaces kept  ".into()),
    ];
    let rows: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, (raw, _))| format!(r#"{{"i":{i},"s":{raw}}}"#))
        .collect();
    let export = export_raw(&format!("[{}]", rows.join(",\n")), 3, &[]);
    assert_eq!(
        export.fields(),
        [field("i", DataType::Int64), field("s", DataType::Utf8)]
    );
    let got = export.column("s");
    assert_eq!(got.len(), cases.len());
    for (got, (raw, want)) in got.iter().zip(&cases) {
        let got = got.as_str().unwrap_or_else(|| panic!("{raw}: read {got}"));
        assert!(
            got == want,
            "source {}: read {:?} ({} bytes), want {:?} ({} bytes)",
            &raw[..raw.len().min(60)],
            &got[..got.len().min(60)],
            got.len(),
            &want[..want.len().min(60)],
            want.len()
        );
    }
}

#[test]
fn iso_dates_become_date32() {
    let export = export_rows(
        &[
            json!({"d": "2025-03-01"}),
            json!({"d": "2024-02-29"}),
            json!({"d": null}),
            json!({"d": "1970-01-01"}),
            json!({"d": "1969-12-31"}),
        ],
        2,
    );
    assert_eq!(
        export.fields(),
        [field("i", DataType::Int64), field("d", DataType::Date32)]
    );
    assert_eq!(
        export.column("d"),
        strings(&[
            Some("2025-03-01"),
            Some("2024-02-29"),
            None,
            Some("1970-01-01"),
            Some("1969-12-31"),
        ])
    );
}

#[test]
fn rfc3339_timestamps_become_utc_microseconds_at_the_right_instants() {
    let export = export_rows(
        &[
            json!({"ts": "2025-03-01T12:00:00Z"}),
            json!({"ts": "2025-03-01T14:00:00+02:00"}),
            json!({"ts": "2025-03-01T23:30:00.123456+02:00"}),
            json!({"ts": "2025-03-02T00:00:00.1234567Z"}),
            json!({"ts": null}),
            json!({"ts": "1969-12-31T23:59:59.5Z"}),
            json!({"ts": "2024-02-29T22:00:00-05:00"}),
        ],
        2,
    );
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")));
    assert_eq!(
        export.fields(),
        [field("i", DataType::Int64), field("ts", utc)]
    );
    let micros: Vec<Option<i64>> = export
        .column("ts")
        .iter()
        .map(|v| {
            v.as_str().map(|text| {
                chrono::DateTime::parse_from_rfc3339(text)
                    .unwrap_or_else(|e| panic!("{text}: {e}"))
                    .timestamp_micros()
            })
        })
        .collect();
    assert_eq!(
        micros,
        [
            Some(1_740_830_400_000_000),
            Some(1_740_830_400_000_000),
            Some(1_740_864_600_123_456),
            Some(1_740_873_600_123_456),
            None,
            Some(-500_000),
            Some(1_709_262_000_000_000),
        ]
    );
    let file = &parquet_files(&export.dest)[0];
    let leaves = parquet_leaves(file);
    let ts = leaves
        .iter()
        .find(|(path, ..)| path == "ts")
        .expect("ts leaf");
    assert_eq!(ts.1, PhysicalType::INT64, "{leaves:?}");
    assert_eq!(
        ts.2,
        Some(LogicalType::timestamp(true, ParquetTimeUnit::MICROS)),
        "{leaves:?}"
    );
}

#[test]
fn dates_or_timestamps_with_one_other_string_stay_utf8_unchanged() {
    let export = export_rows(
        &[
            json!({"d": "2025-03-01", "ts": "2025-03-01T00:00:00Z", "mixed": "2025-03-01"}),
            json!({"d": "2025-03-02", "ts": "2025-03-01T01:00:00+02:00", "mixed": "2025-03-02"}),
            json!({"d": "2025-03-03", "ts": "2025-03-01T02:00:00Z", "mixed": "2025-03-03T00:00:00Z"}),
            json!({"d": "someday", "ts": "2025-03-01 03:00", "mixed": "2025-03-04"}),
        ],
        2,
    );
    assert_eq!(
        export.fields(),
        [
            field("i", DataType::Int64),
            field("d", DataType::Utf8),
            field("ts", DataType::Utf8),
            field("mixed", DataType::Utf8),
        ]
    );
    assert_eq!(
        export.column("d"),
        strings(&[
            Some("2025-03-01"),
            Some("2025-03-02"),
            Some("2025-03-03"),
            Some("someday"),
        ])
    );
    assert_eq!(
        export.column("ts"),
        strings(&[
            Some("2025-03-01T00:00:00Z"),
            Some("2025-03-01T01:00:00+02:00"),
            Some("2025-03-01T02:00:00Z"),
            Some("2025-03-01 03:00"),
        ])
    );
    assert_eq!(
        export.column("mixed"),
        strings(&[
            Some("2025-03-01"),
            Some("2025-03-02"),
            Some("2025-03-03T00:00:00Z"),
            Some("2025-03-04"),
        ])
    );
}

#[test]
fn widening_on_the_last_page_gives_every_file_the_same_schema() {
    // Page 1 and 2 (partitions p=one, p=two) see the narrow types; page 3 (p=three) widens them.
    let export = export_raw(
        r#"[{"i":0,"p":"one","x":1,"d":"2025-03-01","z":10},
            {"i":1,"p":"one","x":2,"d":"2025-03-02","z":11},
            {"i":2,"p":"two","x":3,"d":"2025-03-03","z":12},
            {"i":3,"p":"two","x":4,"d":"2025-03-04","z":13},
            {"i":4,"p":"three","x":4.5,"d":"n/a","z":"fourteen","t":true},
            {"i":5,"p":"three","x":5,"d":"2025-03-06","z":15,"t":false}]"#,
        2,
        &["--partition-by", "p"],
    );
    let files = parquet_files(&export.dest);
    assert_eq!(files.len(), 3, "one file per partition: {files:?}");
    assert_eq!(
        export.fields(),
        [
            field("i", DataType::Int64),
            field("x", DataType::Float64),
            field("d", DataType::Utf8),
            field("z", DataType::Utf8),
            field("t", DataType::Boolean),
        ]
    );
    let rows = export.rows();
    assert_eq!(
        column(&rows, "p"),
        strings(&[
            Some("one"),
            Some("one"),
            Some("two"),
            Some("two"),
            Some("three"),
            Some("three"),
        ])
    );
    let x: Vec<Option<f64>> = column(&rows, "x").iter().map(Value::as_f64).collect();
    assert_eq!(x, [1.0, 2.0, 3.0, 4.0, 4.5, 5.0].map(Some));
    assert_eq!(
        column(&rows, "d"),
        strings(&[
            Some("2025-03-01"),
            Some("2025-03-02"),
            Some("2025-03-03"),
            Some("2025-03-04"),
            Some("n/a"),
            Some("2025-03-06"),
        ])
    );
    assert_eq!(
        column(&rows, "z"),
        strings(&[
            Some("10"),
            Some("11"),
            Some("12"),
            Some("13"),
            Some("fourteen"),
            Some("15"),
        ])
    );
    assert_eq!(
        column(&rows, "t"),
        [
            json!(null),
            json!(null),
            json!(null),
            json!(null),
            json!(true),
            json!(false)
        ]
    );
}

#[test]
fn one_schema_spans_every_report_of_the_command() {
    // `a` sees only integers and `b` only strings in report one; report two widens both.
    let fixture = Fixture::new();
    fixture
        .report(
            "one",
            r#"[{"i":0,"a":1,"b":"2025-03-01"},{"i":1,"a":2,"b":"2025-03-02"}]"#,
        )
        .report("two", r#"[{"i":2,"a":2.5,"b":"later","c":true}]"#);
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    success(&sandbox.export(&["one", "two"], &dest, &[]));
    assert_eq!(parquet_files(&dest).len(), 2);
    assert_eq!(
        fields(&one_schema(&dest)),
        [
            field("i", DataType::Int64),
            field("a", DataType::Float64),
            field("b", DataType::Utf8),
            field("c", DataType::Boolean),
        ]
    );
    let rows = rows_by(&dest, "i");
    let a: Vec<Option<f64>> = column(&rows, "a").iter().map(Value::as_f64).collect();
    assert_eq!(a, [Some(1.0), Some(2.0), Some(2.5)]);
    assert_eq!(
        column(&rows, "b"),
        strings(&[Some("2025-03-01"), Some("2025-03-02"), Some("later")])
    );
    assert_eq!(column(&rows, "c"), [json!(null), json!(null), json!(true)]);
}
