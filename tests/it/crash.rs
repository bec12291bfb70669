//! Crash safety: an export killed at any moment (SIGKILL) publishes nothing and leaves nothing a
//! Hive reader sees, and a rerun exports every source row exactly once with no leftovers; SIGINT
//! and SIGTERM stop an export cleanly (exit 130 / 143, one `error:` line, DEST byte-identical,
//! no spool left in TMPDIR).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use kargo_export::sandbox::synthetic::SyntheticReport;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::util::*;

/// Rows of the large synthetic report (60 pages of 5,000 rows).
const BIG_ROWS: u64 = 300_000;

/// What the tests compare a dataset on: rows, rows per `date` partition, the sums of
/// `impressions` and `clicks`, and how many `conversions` are null.
#[derive(Debug, Default, PartialEq, Eq)]
struct Digest {
    rows: u64,
    rows_by_date: BTreeMap<String, u64>,
    impressions: i64,
    clicks: i64,
    null_conversions: u64,
}

/// The digest of the synthetic report `(rows, seed 1)`, from the generator's row text.
fn source_digest(rows: u64) -> Digest {
    let report = SyntheticReport::new(rows, 1);
    let int_after = |row: &str, key: &str| -> i64 {
        let at = row.find(key).expect("key in row") + key.len();
        let digits: String = row[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().expect("integer")
    };
    let mut digest = Digest::default();
    let mut row = String::new();
    for i in 0..rows {
        row.clear();
        report.write_row(i, &mut row);
        digest.rows += 1;
        *digest
            .rows_by_date
            .entry(report.date_of(i).to_string())
            .or_default() += 1;
        digest.impressions += int_after(&row, "\"impressions\":");
        digest.clicks += int_after(&row, "\"clicks\":");
        digest.null_conversions += u64::from(row.contains("\"conversions\":null"));
    }
    digest
}

/// The digest of every `.parquet` file under `dest` (as a `DEST/**/*.parquet` glob sees them).
fn dataset_digest(dest: &Path) -> Digest {
    let mut digest = Digest::default();
    for path in parquet_files(dest) {
        let date = partition_values(dest, &path)["date"]
            .as_str()
            .expect("date partition")
            .to_string();
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        // Only the compared columns: decoding all 22 in a debug build is slow.
        let mask = ProjectionMask::columns(
            builder.parquet_schema(),
            ["impressions", "clicks", "conversions"],
        );
        let reader = builder.with_projection(mask).build().unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let sum = |name: &str| -> i64 {
                let column = batch.column_by_name(name).expect("column");
                column.as_primitive::<Int64Type>().iter().flatten().sum()
            };
            let rows = batch.num_rows() as u64;
            digest.rows += rows;
            *digest.rows_by_date.entry(date.clone()).or_default() += rows;
            digest.impressions += sum("impressions");
            digest.clicks += sum("clicks");
            digest.null_conversions += batch
                .column_by_name("conversions")
                .expect("conversions")
                .null_count() as u64;
        }
    }
    digest
}

/// Starts `export report big --out dest --partition-by date` with TMPDIR at `tmp`.
fn start_export(sandbox: &Sandbox, dest: &Path, tmp: &Path) -> Child {
    sandbox
        .export_command("big", dest, &["--partition-by", "date"])
        .env("TMPDIR", tmp)
        .spawn()
        .expect("start export")
}

/// When to stop an export.
#[derive(Debug, Clone, Copy)]
enum Moment {
    After(Duration),
    /// As soon as a file exists under `DEST/_staging` (a Parquet writer is uploading).
    Staging,
}

/// Waits for `moment`; panics if the export ended before it.
fn wait_for(child: &mut Child, dest: &Path, moment: Moment) {
    let started = Instant::now();
    loop {
        let reached = match moment {
            Moment::After(delay) => started.elapsed() >= delay,
            Moment::Staging => !files(&dest.join("_staging")).is_empty(),
        };
        if reached {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the export ended ({status}) before {moment:?}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{moment:?} not reached"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Sends `signal` to the export and waits for it to end.
fn signal(child: Child, signal: libc::c_int) -> Output {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill only sends a signal to our own child process, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill failed");
    child.wait_with_output().unwrap()
}

/// The `.parquet` files under `dest` with their bytes.
fn parquet_snapshot(dest: &Path) -> Snapshot {
    snapshot(dest)
        .into_iter()
        .filter(|(name, _)| name.ends_with(".parquet"))
        .collect()
}

/// Everything new or changed in `dest` since `before` is under a top-level `_` folder, and
/// nothing that was there is gone.
fn assert_nothing_new_outside_underscore_folders(dest: &Path, before: &Snapshot) {
    let after = snapshot(dest);
    for name in before.keys() {
        assert!(after.contains_key(name), "{name} is gone");
    }
    for (name, bytes) in &after {
        if before.get(name) != Some(bytes) {
            assert!(
                name.starts_with('_'),
                "{name} is new or changed outside `_` folders"
            );
        }
    }
}

#[test]
fn sigkill_at_any_moment_publishes_nothing_and_a_rerun_exports_every_row_once() {
    let expected = std::thread::spawn(|| source_digest(BIG_ROWS));
    // Pre-rendering the large report's pages takes a while: meanwhile, the earlier export.
    let sandbox = std::thread::spawn(|| {
        Sandbox::start(&["--synthetic", "big=300000", "--page-size", "5000"])
    });
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let dest = tmp.path().join("dest");
    // The earlier complete export of `big`: a smaller report under the same id, so it is quick.
    {
        let small = Sandbox::start(&["--synthetic", "big=20000", "--page-size", "5000"]);
        success(&small.export(&["big"], &dest, &["--partition-by", "date"]));
    }
    let earlier = parquet_snapshot(&dest);
    let earlier_digest = source_digest(20_000);
    assert_eq!(dataset_digest(&dest), earlier_digest);
    assert_eq!(earlier.len(), 30, "{:?}", earlier.keys());
    let before = snapshot(&dest);

    let sandbox = sandbox.join().unwrap();
    let moments = [
        Moment::After(Duration::from_millis(150)),
        Moment::After(Duration::from_millis(600)),
        Moment::Staging,
    ];
    for moment in moments {
        let mut child = start_export(&sandbox, &dest, &spool);
        wait_for(&mut child, &dest, moment);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            parquet_snapshot(&dest),
            earlier,
            "after SIGKILL at {moment:?}"
        );
        assert_nothing_new_outside_underscore_folders(&dest, &before);
        assert_eq!(dataset_digest(&dest), earlier_digest, "{moment:?}");
    }
    assert!(
        files(&dest).iter().any(|f| f.starts_with("_staging/")),
        "the kill while staging left no staged file: {:?}",
        files(&dest)
    );

    let output = start_export(&sandbox, &dest, &spool)
        .wait_with_output()
        .unwrap();
    success(&output);
    assert_eq!(dataset_digest(&dest), expected.join().unwrap());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("_manifests/big.json")).unwrap()).unwrap();
    let run_id = manifest["run_id"].as_str().unwrap();
    assert_eq!(manifest["rows"], BIG_ROWS);
    for file in files(&dest) {
        assert!(
            file == "_manifests/big.json" || file.contains(&format!(".{run_id}.")),
            "{file} is not of the rerun {run_id}"
        );
    }
    assert!(!dest.join("_staging").exists(), "{:?}", files(&dest));
    assert_eq!(
        files(&spool),
        Vec::<String>::new(),
        "the rerun removes the spools the killed exports left in TMPDIR"
    );
}

/// A DEST holding a complete export of `big` from `sandbox`, inside `tmp`.
fn prepared_dest(sandbox: &Sandbox, tmp: &Path) -> (std::path::PathBuf, Snapshot) {
    let dest = tmp.join("dest");
    success(&sandbox.export(&["big"], &dest, &["--partition-by", "date"]));
    let before = snapshot(&dest);
    assert!(!parquet_files(&dest).is_empty());
    (dest, before)
}

/// Asserts the exit code, the one `error:` line naming the signal, and an empty TMPDIR.
fn assert_interrupted(output: &Output, code: i32, name: &str, spool: &Path) {
    let error = failure(output, code);
    assert_eq!(error, format!("error: interrupted ({name})"));
    assert_eq!(files(spool), Vec::<String>::new(), "spool left in TMPDIR");
    assert!(
        std::fs::read_dir(spool).unwrap().next().is_none(),
        "spool folder left in TMPDIR"
    );
}

#[test]
fn sigint_and_sigterm_stop_cleanly_and_leave_dest_byte_identical() {
    // 100,000 rows: two Parquet writers, and staging starts after about a second.
    let sandbox = Sandbox::start(&["--synthetic", "big=100000", "--page-size", "5000"]);
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let (dest, before) = prepared_dest(&sandbox, tmp.path());

    let cases = [
        (
            Moment::After(Duration::from_millis(300)),
            libc::SIGINT,
            130,
            "SIGINT",
        ),
        (Moment::Staging, libc::SIGTERM, 143, "SIGTERM"),
    ];
    for (moment, sig, code, name) in cases {
        let mut child = start_export(&sandbox, &dest, &spool);
        wait_for(&mut child, &dest, moment);
        let output = signal(child, sig);
        assert_interrupted(&output, code, name, &spool);
        assert_unchanged(&dest, &before);
    }

    // A DEST the interrupted export created is removed again.
    let fresh = tmp.path().join("fresh");
    let mut child = start_export(&sandbox, &fresh, &spool);
    wait_for(
        &mut child,
        &fresh,
        Moment::After(Duration::from_millis(300)),
    );
    let output = signal(child, libc::SIGINT);
    assert_interrupted(&output, 130, "SIGINT", &spool);
    assert!(!fresh.exists(), "{:?}", files(&fresh));
}
