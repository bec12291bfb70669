//! Test helpers: run the real binary, start the sandbox as a child process on 127.0.0.1:0,
//! write fixture data folders, read exported datasets and manifests back from Parquet and JSON,
//! and check that no secret reached the output (for `secrets` and `s3` alike).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType};
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
    let partitions = partition_values(root, path);
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.expect("batch");
        let schema = batch.schema();
        for i in 0..batch.num_rows() {
            let mut row = Row::new();
            for (field, array) in schema.fields().iter().zip(batch.columns()) {
                row.insert(field.name().clone(), json_value(array.as_ref(), i));
            }
            for (column, value) in &partitions {
                row.insert(column.clone(), value.clone());
            }
            rows.push(row);
        }
    }
    rows
}

/// The value at `i` of an Arrow array as JSON, converted directly (no text round trip, so every
/// float keeps its exact bits): decimals as their text, dates as `YYYY-MM-DD`, timestamps as
/// RFC 3339 in UTC (`Z`), structs as objects with explicit nulls, lists as arrays.
pub fn json_value(array: &dyn Array, i: usize) -> Value {
    use arrow::datatypes::{Date32Type, Float64Type, Int64Type};
    if array.is_null(i) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(i)),
        DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(i)),
        DataType::Float64 => {
            let value = array.as_primitive::<Float64Type>().value(i);
            serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
        }
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(i).to_string()),
        DataType::Decimal128(..) => Value::String(
            array
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .value_as_string(i),
        ),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(i).to_string()),
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(i);
            let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
                + chrono::TimeDelta::days(i64::from(days));
            Value::String(date.format("%Y-%m-%d").to_string())
        }
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == "UTC" => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(i);
            let instant = chrono::DateTime::from_timestamp_micros(micros).expect("in range");
            Value::String(instant.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        }
        DataType::Struct(fields) => {
            let array = array.as_struct();
            let object = fields
                .iter()
                .zip(array.columns())
                .map(|(field, child)| (field.name().clone(), json_value(child.as_ref(), i)))
                .collect();
            Value::Object(object)
        }
        DataType::List(_) => {
            let items = array.as_list::<i32>().value(i);
            Value::Array(
                (0..items.len())
                    .map(|j| json_value(items.as_ref(), j))
                    .collect(),
            )
        }
        DataType::LargeList(_) => {
            let items = array.as_list::<i64>().value(i);
            Value::Array(
                (0..items.len())
                    .map(|j| json_value(items.as_ref(), j))
                    .collect(),
            )
        }
        other => panic!("no JSON conversion for Arrow type {other} in the tests"),
    }
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
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
            continue;
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

impl Fixture {
    /// Writes a completed report's rows from JSON values (compact text).
    pub fn report_rows(&self, id: &str, rows: &[Value]) -> &Fixture {
        self.report(id, &Value::Array(rows.to_vec()).to_string())
    }
}

impl Sandbox {
    /// `export report <report> --out <dest> <extra>` against this sandbox, its output piped,
    /// for a test to spawn (and to kill).
    pub fn export_command(&self, report: &str, dest: &Path, extra: &[&str]) -> Command {
        let mut command = self.command();
        command
            .args(["export", "report", report, "--out", dest.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs `export report <ids> --out <dest> <extra>` against this sandbox.
    pub fn export(&self, ids: &[&str], dest: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["export", "report"];
        args.extend_from_slice(ids);
        args.extend_from_slice(&["--out", dest.to_str().expect("utf-8 path")]);
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// `host:port` of the sandbox.
    pub fn authority(&self) -> &str {
        self.base.trim_start_matches("http://")
    }
}

/// Logs in to `sandbox` with a raw HTTP/1.1 request over a plain TCP stream and returns the
/// `access_token` it issues.
pub fn fetch_token(sandbox: &Sandbox) -> String {
    use std::io::{Read, Write};
    let body = serde_json::json!({"username": USERNAME, "password": PASSWORD}).to_string();
    let mut stream = std::net::TcpStream::connect(sandbox.authority()).expect("connect sandbox");
    write!(
        stream,
        "POST /v1/auth/token HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        sandbox.authority(),
        body.len()
    )
    .expect("send login");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read login reply");
    let (head, body) = reply.split_once("\r\n\r\n").expect("http reply");
    assert!(head.starts_with("HTTP/1.1 200"), "login reply: {reply}");
    let body: Value = serde_json::from_str(body).expect("login json");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

/// Every file (with its bytes) and every directory (`None`) under `dir`, relative paths.
pub type Snapshot = BTreeMap<String, Option<Vec<u8>>>;

/// Snapshots `dir` recursively; an absent `dir` gives an empty map.
pub fn snapshot(dir: &Path) -> Snapshot {
    fn walk(root: &Path, dir: &Path, out: &mut Snapshot) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                out.insert(format!("{rel}/"), None);
                walk(root, &path, out);
            } else {
                out.insert(rel, Some(std::fs::read(&path).expect("read file")));
            }
        }
    }
    let mut out = Snapshot::new();
    walk(dir, dir, &mut out);
    out
}

/// Asserts that `dir` holds exactly what `before` recorded (names and bytes).
pub fn assert_unchanged(dir: &Path, before: &Snapshot) {
    let after = snapshot(dir);
    let names = |s: &Snapshot| s.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&after),
        names(before),
        "file list of {}",
        dir.display()
    );
    for (name, bytes) in before {
        assert!(after[name] == *bytes, "{name} changed");
    }
}

/// The one schema every `.parquet` file under `dest` has; panics when files differ or none exist.
pub fn one_schema(dest: &Path) -> SchemaRef {
    let files = parquet_files(dest);
    assert!(
        !files.is_empty(),
        "no parquet files under {}",
        dest.display()
    );
    let first = file_schema(&files[0]);
    for file in &files[1..] {
        assert_eq!(
            file_schema(file),
            first,
            "schema of {} differs from {}",
            file.display(),
            files[0].display()
        );
    }
    first
}

/// `(name, type)` of each field of a schema, in order.
pub fn fields(schema: &Schema) -> Vec<(String, DataType)> {
    schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect()
}

/// The exported rows sorted by the integer column `key`.
pub fn rows_by(dest: &Path, key: &str) -> Vec<Row> {
    let mut rows = read_dataset(dest);
    rows.sort_by_key(|row| row.get(key).and_then(Value::as_i64));
    rows
}

/// The values of `column` in `rows` (missing -> null).
pub fn column(rows: &[Row], column: &str) -> Vec<Value> {
    rows.iter()
        .map(|row| row.get(column).cloned().unwrap_or(Value::Null))
        .collect()
}

/// Compares a value read back with its source value: integers exactly, other numbers as f64,
/// strings exactly unless both are RFC 3339 timestamps of the same instant, objects and arrays
/// recursively (a field missing on one side is null).
pub fn same_value(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(a), Some(b)) => a == b,
            _ => a.as_f64() == b.as_f64() && a.as_u64() == b.as_u64(),
        },
        (Value::String(a), Value::String(b)) if a != b => {
            match (
                chrono::DateTime::parse_from_rfc3339(a),
                chrono::DateTime::parse_from_rfc3339(b),
            ) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            }
        }
        (Value::Object(a), Value::Object(b)) => a.keys().chain(b.keys()).all(|k| {
            same_value(
                a.get(k).unwrap_or(&Value::Null),
                b.get(k).unwrap_or(&Value::Null),
            )
        }),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_value(a, b))
        }
        _ => got == want,
    }
}

/// Asserts that `got` and `want` hold the same rows in the same order, value by value
/// ([`same_value`]); a column missing on one side must be null on the other.
pub fn assert_same_rows(got: &[Row], want: &[Row]) {
    assert_eq!(got.len(), want.len(), "row count");
    for (i, (got, want)) in got.iter().zip(want).enumerate() {
        for column in got.keys().chain(want.keys()) {
            let g = got.get(column).unwrap_or(&Value::Null);
            let w = want.get(column).unwrap_or(&Value::Null);
            assert!(
                same_value(g, w),
                "row {i}, column {column}: read {g}, source {w}\nread row: {got:?}\nsource row: {want:?}"
            );
        }
    }
}

/// The integer in `stdout`'s summary line `N rows from P pages`.
pub fn pages_in_summary(stdout: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.contains(" pages "))
        .unwrap_or_else(|| panic!("no summary line in {stdout:?}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "pages").expect("pages");
    words[at - 1].parse().expect("page count")
}

/// The leaf columns of a Parquet file: dotted path, physical type and logical type.
pub fn parquet_leaves(
    path: &Path,
) -> Vec<(
    String,
    parquet::basic::Type,
    Option<parquet::basic::LogicalType>,
)> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader =
        SerializedFileReader::new(File::open(path).expect("open parquet")).expect("parquet");
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    schema
        .columns()
        .iter()
        .map(|c| {
            (
                c.path().string(),
                c.physical_type(),
                c.logical_type_ref().cloned(),
            )
        })
        .collect()
}

/// Rows with a unique `i`, a text and a decimal column.
pub fn numbered_rows(count: i64) -> Vec<Value> {
    (0..count)
        .map(|i| serde_json::json!({"i": i, "name": format!("row {i}"), "spend": i as f64 * 1.25}))
        .collect()
}

/// JSON object values as rows, for comparing with rows read back.
pub fn as_rows(values: &[Value]) -> Vec<Row> {
    values
        .iter()
        .map(|v| v.as_object().expect("an object").clone())
        .collect()
}

/// The manifest of `report` under `dest` (`_manifests/<report>.json`).
pub fn manifest(dest: &Path, report: &str) -> Value {
    let path = dest.join("_manifests").join(format!("{report}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("manifest json")
}

/// Asserts that none of `secrets`, nor any token the sandbox issues, is in stdout, stderr or
/// (when `dest` is given) any file under `dest`; and that stderr holds more than a few lines, so
/// that the check is not vacuous (the callers run with trace logs).
pub fn assert_no_secret(output: &Output, dest: Option<&Path>, secrets: &[&str]) {
    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("stdout".into(), output.stdout.clone()),
        ("stderr".into(), output.stderr.clone()),
    ];
    if let Some(dest) = dest {
        for file in files(dest) {
            let bytes = std::fs::read(dest.join(&file)).unwrap();
            places.push((file, bytes));
        }
    }
    assert!(
        output.stderr.len() > 200,
        "trace logging produced almost nothing, the check would be vacuous: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (place, bytes) in &places {
        let text = String::from_utf8_lossy(bytes);
        for secret in secrets {
            assert!(!text.contains(secret), "{secret:?} appears in {place}");
        }
        let tokens = sandbox_tokens(bytes);
        assert!(tokens.is_empty(), "a bearer token appears in {place}");
    }
}

/// Finds sandbox tokens (`sbx_` and 32 alphanumerics) in `haystack`.
fn sandbox_tokens(haystack: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(haystack);
    text.match_indices("sbx_")
        .filter_map(|(at, _)| {
            let candidate: String = text[at + 4..]
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            (candidate.len() >= 32).then(|| format!("sbx_{candidate}"))
        })
        .collect()
}
