//! Test helpers: run the real binary, start the sandbox as a child process on 127.0.0.1:0,
//! write fixture data folders, and read exported datasets back from Parquet.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType};
use arrow::json::WriterBuilder;
use arrow::json::writer::JsonArray;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};

/// Username and password the sandbox accepts.
pub const USERNAME: &str = "sandbox";
pub const PASSWORD: &str = "sandbox-password";

/// A row read back: column name -> JSON value (partition columns as strings from the path).
pub type Row = Map<String, Value>;

/// The built binary.
pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kargo-export"));
    for var in [
        "KARGO_API_BASE",
        "KARGO_AUTH_URL",
        "KARGO_USERNAME",
        "KARGO_PASSWORD",
        "KARGO_TOKEN",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

/// A sandbox child process; killed on drop.
pub struct Sandbox {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Sandbox {
    /// Starts `kargo-export sandbox --addr 127.0.0.1:0` with extra flags (e.g. `--data DIR`).
    pub fn start(extra: &[&str]) -> Sandbox {
        let mut child = binary()
            .args(["sandbox", "--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sandbox");
        let stdout = child.stdout.take().expect("sandbox stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("sandbox banner");
        let base = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in sandbox banner {line:?}"))
            .to_string();
        Sandbox { child, base }
    }

    /// Starts a sandbox over a fixture folder.
    pub fn with_data(dir: &Path, extra: &[&str]) -> Sandbox {
        let mut args = vec!["--data", dir.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        Sandbox::start(&args)
    }

    /// The binary pointed at this sandbox with valid credentials.
    pub fn command(&self) -> Command {
        let mut command = binary();
        command
            .arg("--api-base")
            .arg(&self.base)
            .env("KARGO_USERNAME", USERNAME)
            .env("KARGO_PASSWORD", PASSWORD);
        command
    }

    /// Runs the binary against this sandbox with `args`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .expect("run kargo-export")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts success and returns stdout.
pub fn success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

/// Asserts failure with `code` and a single `error:` line on stderr; returns that line.
pub fn failure(output: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "expected one error line, stderr: {stderr}");
    errors[0].to_string()
}

/// A fixture folder in the sandbox's data layout.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// An empty fixture with an empty report list.
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("completed-reports")).expect("mkdir");
        let fixture = Fixture { dir };
        fixture.reports(&Value::Array(Vec::new()));
        fixture
    }

    /// Writes `reports.json`.
    pub fn reports(&self, reports: &Value) -> &Fixture {
        std::fs::write(self.dir.path().join("reports.json"), reports.to_string()).expect("write");
        self
    }

    /// Writes a completed report's rows verbatim (`rows_json` is a JSON array text).
    pub fn report(&self, id: &str, rows_json: &str) -> &Fixture {
        let path = self
            .dir
            .path()
            .join("completed-reports")
            .join(format!("{id}.json"));
        std::fs::write(path, rows_json).expect("write");
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Every file under `dir`, relative, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The `.parquet` files under `dir` (as a `DEST/**/*.parquet` glob sees them).
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|f| f.ends_with(".parquet"))
        .map(|f| dir.join(f))
        .collect()
}

/// The Arrow schema stored in a Parquet file.
pub fn file_schema(path: &Path) -> SchemaRef {
    let file = File::open(path).expect("open parquet");
    ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .schema()
        .clone()
}

/// Every row of a Parquet file as JSON objects (explicit nulls), plus its Hive partition values.
pub fn read_file(root: &Path, path: &Path) -> Vec<Row> {
    let file = File::open(path).expect("open parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut buffer = Vec::new();
    {
        let mut writer = WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, JsonArray>(&mut buffer);
        for batch in reader {
            writer
                .write(&utc_as_offset(batch.expect("batch")))
                .expect("to json");
        }
        writer.finish().expect("finish json");
    }
    let rows: Vec<Row> = if buffer.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&buffer).expect("json")
    };
    let partitions = partition_values(root, path);
    rows.into_iter()
        .map(|mut row| {
            for (column, value) in &partitions {
                row.insert(column.clone(), value.clone());
            }
            row
        })
        .collect()
}

/// Timestamps tagged "UTC" re-tagged "+00:00" (same instants), which arrow formats without chrono-tz.
fn utc_as_offset(batch: RecordBatch) -> RecordBatch {
    let columns = batch
        .columns()
        .iter()
        .map(|column| match column.data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => Arc::new(
                column
                    .as_primitive::<TimestampMicrosecondType>()
                    .clone()
                    .with_timezone("+00:00"),
            ) as ArrayRef,
            _ => column.clone(),
        })
        .collect::<Vec<_>>();
    let fields = batch
        .schema()
        .fields()
        .iter()
        .zip(&columns)
        .map(|(field, column)| Field::new(field.name(), column.data_type().clone(), true))
        .collect::<Vec<_>>();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("retagged batch")
}

/// Every row of every `.parquet` file under `root`.
pub fn read_dataset(root: &Path) -> Vec<Row> {
    parquet_files(root)
        .iter()
        .flat_map(|path| read_file(root, path))
        .collect()
}

/// `col=value` segments between `root` and the file, decoded as Hive readers do.
pub fn partition_values(root: &Path, path: &Path) -> BTreeMap<String, Value> {
    let relative = path.strip_prefix(root).expect("inside root");
    let mut values = BTreeMap::new();
    for segment in relative.parent().into_iter().flat_map(|p| p.iter()) {
        let segment = segment.to_str().expect("utf-8 segment");
        let (column, value) = segment.split_once('=').expect("col=value segment");
        let value = if value == "__HIVE_DEFAULT_PARTITION__" {
            Value::Null
        } else {
            Value::String(percent_decode(value))
        };
        values.insert(percent_decode(column), value);
    }
    values
}

/// Decodes `%XX` escapes (UTF-8).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(byte) = u8::from_str_radix(hex, 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("utf-8 after decoding")
}

/// Source rows of a JSON array text.
pub fn source_rows(json: &str) -> Vec<Row> {
    serde_json::from_str(json).expect("source rows")
}

/// Sorts rows by the JSON text of `key`.
pub fn sorted_by(mut rows: Vec<Row>, key: &str) -> Vec<Row> {
    rows.sort_by_key(|row| row.get(key).map(Value::to_string).unwrap_or_default());
    rows
}
