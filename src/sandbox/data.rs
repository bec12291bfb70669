//! The data a sandbox serves: [`SandboxData`], the report list and the completed reports' rows,
//! from the bundled `sample_data/` or a directory of the same layout, and synthetic reports with
//! their pages rendered (and gzipped) up front, as [`Prerender`] asks. It keeps what is served; it
//! does not answer requests (`server.rs`) nor decide how a page is written (`render.rs`,
//! `gzip.rs`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::gzip::GzipStart;
use super::render::synthetic_head;
use super::synthetic::SyntheticReport;
use crate::error::{Error, Result};

const EMBEDDED_REPORTS: &str = include_str!("../../sample_data/reports.json");
/// Every completed report of `sample_data/completed-reports/`, one file each.
const EMBEDDED_COMPLETED: &[(&str, &str)] = &[
    (
        "rpt_7f3a9c21",
        include_str!("../../sample_data/completed-reports/rpt_7f3a9c21.json"),
    ),
    (
        "rpt_2b8e4d10",
        include_str!("../../sample_data/completed-reports/rpt_2b8e4d10.json"),
    ),
    (
        "rpt_e5d90a47",
        include_str!("../../sample_data/completed-reports/rpt_e5d90a47.json"),
    ),
];

/// Rows as their JSON text, in the order of the source file.
type Rows = Vec<Box<RawValue>>;

/// The data a sandbox serves: the report list and the rows of each completed report.
///
/// Layout (embedded and on disk): `reports.json` is a JSON array of report-request objects;
/// `completed-reports/<report_id>.json` is a JSON array of rows (any JSON values). A report is
/// served as completed exactly when its data file exists; `reports.json` only decides whether a
/// report without a data file is unknown (404) or not completed yet (409), through its `id` and
/// `status` fields. Entries without a string `id` are still listed, verbatim.
pub struct SandboxData {
    reports: Rows,
    /// Report id -> `status` from `reports.json` ("" when absent).
    pub(super) statuses: HashMap<String, String>,
    completed: BTreeMap<String, Rows>,
    pub(super) synthetic: BTreeMap<String, Synthetic>,
}

/// A synthetic report and its pre-rendered pages.
pub(super) struct Synthetic {
    pub(super) report: SyntheticReport,
    pub(super) rendered: Option<Rendered>,
}

/// The pages of a synthetic report for one page size, rendered up front.
pub(super) struct Rendered {
    pub(super) page_size: usize,
    /// Each page up to its links: `{"data":{"rows":[..]},"links":`.
    pub(super) pages: Vec<Bytes>,
    /// The same pages as the start of a gzip member, when [`Prerender::gzip`] asked for them
    /// (else empty).
    pub(super) gzipped: Vec<GzipStart>,
}

/// What [`SandboxData::add_synthetic`] renders up front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prerender {
    /// Rows per page (at least 1); requests for another page size are rendered on demand.
    pub page_size: usize,
    /// Also gzip every page (for [`SandboxOptions::gzip`](super::SandboxOptions::gzip)).
    pub gzip: bool,
}

impl SandboxData {
    /// The bundled `sample_data/`, compiled into the binary.
    pub fn embedded() -> Self {
        let parse = |name: &str, text: &str| {
            // Checked by the tests; a failure here is a broken build, not bad input.
            parse_rows(name, text).unwrap_or_else(|e| panic!("embedded sample data: {e}"))
        };
        let reports = parse("reports.json", EMBEDDED_REPORTS);
        let completed = EMBEDDED_COMPLETED
            .iter()
            .map(|(id, text)| (id.to_string(), parse(&format!("{id}.json"), text)))
            .collect();
        Self::new(reports, completed)
    }

    /// Reads the same layout from `dir`. `completed-reports/` may be missing (no completed
    /// reports); files in it that do not end in `.json` are ignored.
    pub fn load(dir: &Path) -> Result<Self> {
        let reports_path = dir.join("reports.json");
        let reports = parse_rows(&reports_path.display().to_string(), &read(&reports_path)?)?;
        let folder = dir.join("completed-reports");
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::new(reports, BTreeMap::new()));
            }
            Err(e) => return Err(Error::io(folder.display(), e)),
        };
        let mut completed = BTreeMap::new();
        for entry in entries {
            let path = entry.map_err(|e| Error::io(folder.display(), e))?.path();
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            let name = path.display().to_string();
            let id = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .ok_or_else(|| Error::Sandbox(format!("{name}: file name is not valid UTF-8")))?;
            completed.insert(id.to_owned(), parse_rows(&name, &read(&path)?)?);
        }
        Ok(Self::new(reports, completed))
    }

    fn new(reports: Rows, completed: BTreeMap<String, Rows>) -> Self {
        #[derive(Deserialize)]
        struct Head {
            id: String,
            #[serde(default)]
            status: Option<String>,
        }
        let statuses = reports
            .iter()
            .filter_map(|raw| serde_json::from_str::<Head>(raw.get()).ok())
            .map(|head| (head.id, head.status.unwrap_or_default()))
            .collect();
        Self {
            reports,
            statuses,
            completed,
            synthetic: BTreeMap::new(),
        }
    }

    /// Adds synthetic report `id` (served as completed and listed in the report list). With
    /// `prerender`, every page for its page size is rendered now (and gzipped, if asked), on all
    /// cores, and kept in memory (~490 bytes a row, and ~1/4 of that gzipped); other page sizes
    /// are rendered per request. An id that is already served or listed is an [`Error::Usage`].
    pub fn add_synthetic(
        &mut self,
        id: &str,
        report: SyntheticReport,
        prerender: Option<Prerender>,
    ) -> Result<()> {
        if self.completed.contains_key(id)
            || self.synthetic.contains_key(id)
            || self.statuses.contains_key(id)
        {
            return Err(Error::Usage(format!(
                "synthetic report {id:?}: a report with that id already exists"
            )));
        }
        let (start, end) = report.date_range();
        let listed = json!({
            "id": id,
            "report_type": "delivery_by_day",
            "status": "completed",
            "created_at": "2025-04-01T00:00:00Z",
            "completed_at": "2025-04-01T00:05:00Z",
            "date_range": {"start": start, "end": end},
            "requested_by": "synthetic@example.com",
            "synthetic": {"seed": report.seed(), "order": report.order().name()},
            "row_count": report.rows(),
        });
        let listed = RawValue::from_string(listed.to_string())
            .map_err(|e| Error::Internal(format!("synthetic report entry: {e}")))?;
        let rendered = prerender.map(|Prerender { page_size, gzip }| {
            let page_size = page_size.max(1);
            let (pages, gzipped) = prerender_pages(&report, page_size, gzip);
            Rendered {
                page_size,
                pages,
                gzipped,
            }
        });
        self.reports.push(listed);
        self.statuses.insert(id.to_owned(), "completed".to_owned());
        self.synthetic
            .insert(id.to_owned(), Synthetic { report, rendered });
        Ok(())
    }

    /// The synthetic report `id`, if there is one.
    pub fn synthetic(&self, id: &str) -> Option<&SyntheticReport> {
        self.synthetic.get(id).map(|s| &s.report)
    }

    /// The report list, as served by `GET /v1/reports`.
    pub fn reports(&self) -> &[Box<RawValue>] {
        &self.reports
    }

    /// Ids of the reports served from data files (not the synthetic ones), in sorted order.
    pub fn completed_ids(&self) -> impl Iterator<Item = &str> {
        self.completed.keys().map(String::as_str)
    }

    /// The rows of a completed report, as served by `GET /v1/completed-reports/{id}`.
    pub fn completed_rows(&self, report_id: &str) -> Option<&[Box<RawValue>]> {
        self.completed.get(report_id).map(Vec::as_slice)
    }
}

impl fmt::Debug for SandboxData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let completed: BTreeMap<_, _> = self
            .completed
            .iter()
            .map(|(id, rows)| (id, rows.len()))
            .collect();
        let synthetic: BTreeMap<_, _> = self
            .synthetic
            .iter()
            .map(|(id, s)| (id, s.report.rows()))
            .collect();
        f.debug_struct("SandboxData")
            .field("reports", &self.reports.len())
            .field("completed_rows", &completed)
            .field("synthetic_rows", &synthetic)
            .finish()
    }
}

/// Every page of `report` for `page_size`, rendered up to its links, and with `gzip` each one
/// also as the start of a gzip member (else none), on all cores: each core renders and
/// compresses a run of pages.
fn prerender_pages(
    report: &SyntheticReport,
    page_size: usize,
    gzip: bool,
) -> (Vec<Bytes>, Vec<GzipStart>) {
    let rows = report.rows();
    let page_rows = page_size as u64;
    let pages = rows.div_ceil(page_rows) as usize;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, pages.max(1));
    let render = |page: usize| {
        let start = page as u64 * page_rows;
        let head = Bytes::from(synthetic_head(report, start..(start + page_rows).min(rows)));
        let gzipped = gzip.then(|| GzipStart::new(&head));
        (head, gzipped)
    };
    let (heads, gzipped): (Vec<Bytes>, Vec<Option<GzipStart>>) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let pages = pages * t / threads..pages * (t + 1) / threads;
                scope.spawn(move || pages.map(render).collect::<Vec<_>>())
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .unzip()
    });
    (heads, gzipped.into_iter().flatten().collect())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))
}

fn parse_rows(name: &str, text: &str) -> Result<Rows> {
    serde_json::from_str(text)
        .map_err(|e| Error::Sandbox(format!("{name}: expected a JSON array: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::testing::{odd_dataset, raw_texts};

    #[test]
    fn embedded_data_has_the_sample_reports() {
        let data = SandboxData::embedded();
        assert_eq!(data.reports().len(), 6);
        let ids: Vec<&str> = data.completed_ids().collect();
        assert_eq!(ids, ["rpt_2b8e4d10", "rpt_7f3a9c21", "rpt_e5d90a47"]);
        assert_eq!(data.completed_rows("rpt_7f3a9c21").unwrap().len(), 1500);
        assert_eq!(data.completed_rows("rpt_2b8e4d10").unwrap().len(), 600);
        assert_eq!(data.completed_rows("rpt_e5d90a47").unwrap().len(), 0);
        assert_eq!(data.statuses["rpt_4c1e88b3"], "failed");
        assert_eq!(data.statuses["rpt_a09b6f5d"], "pending");

        let first: serde_json::Value =
            serde_json::from_str(data.completed_rows("rpt_7f3a9c21").unwrap()[0].get()).unwrap();
        assert_eq!(first["date"], "2025-03-01");
        assert_eq!(first["advertiser_id"], 10231);
        assert_eq!(first["spend"], 4.5721);
        let by_site = data.completed_rows("rpt_2b8e4d10").unwrap();
        let deal = |i: usize| {
            serde_json::from_str::<serde_json::Value>(by_site[i].get()).unwrap()["deal_id"].clone()
        };
        assert!((0..200).all(|i| deal(i).is_null()));
        assert_eq!(deal(200), "PMP-5914-NEWS");
    }

    #[test]
    fn load_reads_a_directory_and_names_bad_files() {
        let dir = odd_dataset();
        let data = SandboxData::load(dir.path()).unwrap();
        assert_eq!(raw_texts(data.reports()).last().unwrap(), "42");
        let ids: Vec<&str> = data.completed_ids().collect();
        assert_eq!(ids, ["r_done"]);
        let rows = raw_texts(data.completed_rows("r_done").unwrap());
        assert_eq!(
            rows,
            ["1", "\"two\"", "null", r#"{"a": [1, 2]}"#, "[]", "1.50"]
        );

        std::fs::write(
            dir.path().join("completed-reports/r_bad.json"),
            r#"{"rows": []}"#,
        )
        .unwrap();
        let message = SandboxData::load(dir.path()).unwrap_err().to_string();
        assert!(message.starts_with("sandbox: "), "{message}");
        assert!(
            message.contains("r_bad.json: expected a JSON array"),
            "{message}"
        );

        let empty = tempfile::tempdir().unwrap();
        let message = SandboxData::load(empty.path()).unwrap_err().to_string();
        assert!(
            message.starts_with("i/o failed (") && message.contains("reports.json"),
            "{message}"
        );
        std::fs::write(empty.path().join("reports.json"), "[]").unwrap();
        let data = SandboxData::load(empty.path()).unwrap();
        assert_eq!((data.reports().len(), data.completed_ids().count()), (0, 0));
    }
}
