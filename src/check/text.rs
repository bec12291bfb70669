//! The findings of a check as the text `check` and `run --check` print: a line per step that
//! passed, saying what it found (when the token expires, the rows of the first page and how
//! pages follow, the columns and types, the probe object), and a line per job. Like the
//! summary of a run ([`crate::jobs::summary`]), the text is made here and written by the
//! dispatch; failures are not here: each is the one `error:` line of [`Error::Check`].
//!
//! [`Error::Check`]: crate::error::Error::Check

use arrow::datatypes::Schema;

use super::{Expiry, JobCheck, Login, PageStep, Report, Rows};
use crate::sink::Probed;
use crate::source::paginate::Paging;

impl Report<'_> {
    /// The finding as text: one line per step that passed (the columns step adds a
    /// `name: type` line per column), or the one line of a job of `run --check`.
    pub fn text(&self) -> String {
        match self {
            Report::Login(Login::Token) => "login: no login (a ready bearer token): when it \
                expires is not known; the page step shows whether the API accepts it\n"
                .to_owned(),
            Report::Login(Login::LoggedIn { url, expires }) => {
                format!("login: ok ({url}): {}\n", expiry_text(expires.as_ref()))
            }
            Report::Page(page) => format!(
                "page: ok ({} {}): {} bytes of {}\n",
                page.method, page.at, page.bytes, page.format
            ),
            Report::Rows(rows) => format!(
                "data path: ok ({}): {} rows on the first page; {}\n",
                rows.data_path.as_deref().unwrap_or("every row of the page"),
                rows.end.rows,
                paging_text(rows)
            ),
            Report::Columns(schema) => columns_text(schema),
            Report::Destination(probed) => format!("destination: ok {}\n", probed_text(probed)),
            Report::Job(job) => job_line(job),
        }
    }
}

/// When the token expires, or that the login answer did not say.
fn expiry_text(expires: Option<&Expiry>) -> String {
    match expires {
        Some(expiry) => format!(
            "the token expires in {} s, at {}",
            expiry.lifetime.as_secs(),
            expiry.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => "the login answer states no expiry (no expires_in)".to_owned(),
    }
}

/// How the first page leads on: the next link, cursor or counted parameter, the stated total,
/// and whether an export would fetch another page.
fn paging_text(rows: &Rows) -> String {
    let found = if rows.end.next.is_some() { "a" } else { "no" };
    let how = match &rows.paging {
        Paging::NextUrl { path } => format!("{found} next link at {path}"),
        Paging::Cursor { path, .. } => format!("{found} cursor at {path}"),
        Paging::PageNumber { param, .. } => format!("page numbers in query parameter {param}"),
        Paging::Offset { offset, .. } => format!("offsets in query parameter {offset}"),
        Paging::None => "no paging".to_owned(),
    };
    let total = match rows.end.total {
        Some(total) => format!("a stated total of {total} rows"),
        None => "no total".to_owned(),
    };
    let more = if rows.more {
        "more pages follow"
    } else {
        "it is the only page"
    };
    format!("{how}, {total}: {more}")
}

/// The columns the first page implies, a `name: type` line each.
fn columns_text(schema: &Schema) -> String {
    if schema.fields().is_empty() {
        return "columns: ok: none (the first page has no rows)\n".to_owned();
    }
    let mut out = format!(
        "columns: ok: {} from the first page alone (later pages may add columns or widen types)\n",
        schema.fields().len()
    );
    for field in schema.fields() {
        out.push_str(&format!("  {}: {}\n", field.name(), field.data_type()));
    }
    out
}

/// `(DEST): wrote and deleted OBJECT`, and whether the directory was made for it.
fn probed_text(probed: &Probed) -> String {
    let created = if probed.created {
        "; the directory did not exist: it was created for the check and removed again"
    } else {
        ""
    };
    format!(
        "({}): wrote and deleted {}{created}",
        probed.dest, probed.object
    )
}

/// One line of `run --check`: the job, its kind, its page steps and its destination step.
fn job_line(job: &JobCheck) -> String {
    let page = match &job.page {
        PageStep::Passed(found) => format!(
            "page ok ({}): {} rows, {}, {} columns",
            found.page.at,
            found.rows.end.rows,
            if found.rows.more {
                "more pages follow"
            } else {
                "the only page"
            },
            found.schema.fields().len()
        ),
        PageStep::Failed(e) => format!("page FAILED: {e}"),
        PageStep::Skipped(why) => format!("page skipped: {why}"),
    };
    let destination = match &job.destination {
        Ok(probed) => format!("destination ok {}", probed_text(probed)),
        Err(e) => format!("destination FAILED: {e}"),
    };
    let prefix = if job.probed_prefix {
        " (out names request fields: the folder before the first was probed)"
    } else {
        ""
    };
    format!(
        "job {:?} ({}): {page}; {destination}{prefix}\n",
        job.name, job.kind
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::paginate::PageEnd;

    fn rows(paging: Paging, next: Option<&str>, total: Option<u64>, more: bool) -> String {
        let rows = Rows {
            data_path: Some("$.items[*]".into()),
            paging,
            end: PageEnd {
                next: next.map(str::to_owned),
                rows: 7,
                total,
                digest: None,
            },
            more,
        };
        Report::Rows(&rows).text()
    }

    #[test]
    fn the_rows_line_says_how_pages_follow_and_whether_a_total_is_there() {
        let cursor = Paging::Cursor {
            path: "$.meta.cursor".parse().unwrap(),
            param: "after".into(),
        };
        assert_eq!(
            rows(cursor, Some("c2"), Some(7), false),
            "data path: ok ($.items[*]): 7 rows on the first page; a cursor at $.meta.cursor, \
             a stated total of 7 rows: it is the only page\n"
        );
        let offsets = Paging::Offset {
            offset: "skip".into(),
            limit: "take".into(),
            size: 7,
        };
        assert_eq!(
            rows(offsets, None, None, true),
            "data path: ok ($.items[*]): 7 rows on the first page; offsets in query parameter \
             skip, no total: more pages follow\n"
        );
        assert!(
            rows(Paging::None, None, None, false)
                .ends_with("no paging, no total: it is the only page\n")
        );
    }

    #[test]
    fn a_login_without_expires_in_says_so() {
        let login = Login::LoggedIn {
            url: "https://h/v1/auth/token".into(),
            expires: None,
        };
        assert_eq!(
            Report::Login(&login).text(),
            "login: ok (https://h/v1/auth/token): the login answer states no expiry (no \
             expires_in)\n"
        );
    }
}
