//! Exporting end to end: the bundled sample report, the Parquet codecs and `file://` destinations.

use serde_json::Value;

use crate::util::*;

const SAMPLE_A: &str = include_str!("../../sample_data/completed-reports/rpt_7f3a9c21.json");

#[test]
fn sample_report_round_trips_through_partitioned_parquet() {
    let sandbox = Sandbox::start(&["--page-size", "97"]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let stdout = success(&sandbox.run(&[
        "export",
        "report",
        "rpt_7f3a9c21",
        "--out",
        dest.to_str().unwrap(),
        "--partition-by",
        "date",
    ]));
    let source = source_rows(SAMPLE_A);
    assert!(
        stdout.contains(&format!("exported rpt_7f3a9c21: {} rows", source.len())),
        "{stdout}"
    );

    let files = parquet_files(&dest);
    one_schema(&dest);
    let days: std::collections::BTreeSet<&str> =
        source.iter().map(|r| r["date"].as_str().unwrap()).collect();
    assert_eq!(files.len(), days.len(), "one file per day");
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("rpt_7f3a9c21."), "{name}");
        assert!(
            !file_schema(file)
                .fields()
                .iter()
                .any(|f| f.name() == "date"),
            "partition column is in the path"
        );
    }
    let read = read_dataset(&dest);
    assert_eq!(read.len(), source.len());
    let key = |row: &Row| {
        (
            row["date"].to_string(),
            row["line_item_id"].to_string(),
            row["creative_id"].to_string(),
            row["site_domain"].to_string(),
            row["device_type"].to_string(),
        )
    };
    let mut read = read;
    let mut source = source;
    read.sort_by_key(key);
    source.sort_by_key(key);
    for (got, want) in read.iter().zip(&source) {
        for (column, value) in want {
            let got_value = got.get(column).unwrap_or(&Value::Null);
            assert!(
                same_value(got_value, value),
                "column {column}: read {got_value}, source {value}"
            );
        }
    }
}

/// The codec of every column chunk of every `.parquet` file under `dest`, as `ZSTD`, `SNAPPY`...
fn codecs(dest: &std::path::Path) -> std::collections::BTreeSet<String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut codecs = std::collections::BTreeSet::new();
    for file in parquet_files(dest) {
        let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
        for group in reader.metadata().row_groups() {
            for chunk in group.columns() {
                let name = format!("{:?}", chunk.compression());
                codecs.insert(name.split('(').next().unwrap().to_string());
            }
        }
    }
    codecs
}

/// Rows of the report `small`.
const SMALL: &str =
    r#"[{"i":1,"s":"aaaaaaaaaaaaaaaaaaaa","f":0.5},{"i":2,"s":"aaaaaaaaaaaaaaaaaaab","f":1.5}]"#;

fn small_fixture() -> Fixture {
    let fixture = Fixture::new();
    fixture.report("small", SMALL);
    fixture
}

#[test]
fn zstd_is_the_default_compression_and_each_codec_flag_is_honoured() {
    let fixture = small_fixture();
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let source = source_rows(SMALL);
    for (flag, codec) in [
        (None, "ZSTD"),
        (Some("snappy"), "SNAPPY"),
        (Some("gzip"), "GZIP"),
        (Some("lz4"), "LZ4_RAW"),
        (Some("none"), "UNCOMPRESSED"),
    ] {
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("dest");
        let extra: Vec<&str> = flag.map(|f| vec!["--compression", f]).unwrap_or_default();
        success(&sandbox.export(&["small"], &dest, &extra));
        let found = codecs(&dest);
        assert!(
            found.len() == 1
                && (found.contains(codec) || (codec == "LZ4_RAW" && found.contains("LZ4"))),
            "{flag:?}: codecs {found:?}, want {codec}"
        );
        assert_same_rows(&rows_by(&dest, "i"), &source);
    }
}

#[test]
fn a_file_url_destination_is_a_directory() {
    let fixture = small_fixture();
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let url = format!("file://{}", dest.display());
    success(&sandbox.run(&["export", "report", "small", "--out", &url]));
    let read = rows_by(&dest, "i");
    assert_eq!(
        column(&read, "s"),
        [
            Value::from("aaaaaaaaaaaaaaaaaaaa"),
            Value::from("aaaaaaaaaaaaaaaaaaab")
        ]
    );
    assert!(dest.join("_manifests/small.json").is_file());
}

#[test]
fn a_zstd_level_reaches_the_files_and_the_manifest_records_the_same_codec() {
    let fixture = small_fixture();
    let sandbox = Sandbox::with_data(fixture.path(), &[]);
    for (flag, recorded) in [
        (None, "zstd(3)"),
        (Some("zstd:9"), "zstd(9)"),
        (Some("gzip:1"), "gzip(1)"),
    ] {
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("dest");
        let extra: Vec<&str> = flag.map(|f| vec!["--compression", f]).unwrap_or_default();
        success(&sandbox.export(&["small"], &dest, &extra));
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(dest.join("_manifests/small.json")).unwrap())
                .unwrap();
        assert_eq!(manifest["compression"], recorded, "{flag:?}");
        use parquet::file::reader::{FileReader, SerializedFileReader};
        for file in parquet_files(&dest) {
            let reader = SerializedFileReader::new(std::fs::File::open(&file).unwrap()).unwrap();
            for chunk in reader.metadata().row_group(0).columns() {
                // Parquet stores the codec, not its level.
                let shown = format!("{:?}", chunk.compression()).to_lowercase();
                let name = recorded.split('(').next().unwrap();
                assert!(shown.starts_with(name), "{shown} for {recorded}");
            }
        }
    }
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("dest");
    let error = failure(
        &sandbox.export(&["small"], &dest, &["--compression", "zstd:23"]),
        2,
    );
    assert!(
        error.contains("zstd level 23 is not from 1 to 22"),
        "{error}"
    );
    assert!(!dest.exists());
}
