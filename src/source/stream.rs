//! Reading a page of the API's shape while its bytes arrive, for a report sent as one huge page:
//! the rows of `$.data.rows` are handed on in runs of whole rows as soon as they are complete,
//! and the rest of the page (its "skeleton", with `[]` for the rows) is kept to be read with
//! [`super::extract::decode_api_page`] once the body has ended. Memory is then a run of rows and a
//! partial row, whatever the size of the page.
//!
//! [`RowSplitter`] only finds where rows begin and end (strings, escapes and nesting are
//! tracked byte by byte); the rows' bytes are checked and decoded by the row decoder, and the
//! skeleton by the page decoder, so a streamed page is accepted or rejected as the same bytes
//! in one piece would be. Keys are compared as they are written (a key spelled with escapes,
//! `"d\u0061ta"`, is not `data` here, so such a page is read as having no rows array and fails
//! with the page decoder's message).

use crate::error::Result;

/// Bytes of whole rows gathered before they are handed on.
pub const RUN_BYTES: usize = 8 * 1024 * 1024;

/// Longest skeleton kept: a page whose bytes outside `$.data.rows` exceed this is refused
/// (its rows are not where the API puts them, and it would have to be held whole).
pub const MAX_SKELETON_BYTES: usize = 64 * 1024 * 1024;

/// Splits a page's bytes, fed in pieces, into runs of rows and the page's skeleton.
#[derive(Debug, Default)]
pub struct RowSplitter {
    skeleton: Vec<u8>,
    /// Bytes inside `$.data.rows` not handed on yet; `rows[..complete]` ends after a whole row.
    rows: Vec<u8>,
    complete: usize,
    /// Whether rows were handed on already (the next run then starts with a comma).
    handed: bool,
    /// Open containers, `b'{'` or `b'['`.
    open: Vec<u8>,
    in_string: bool,
    escape: bool,
    /// Inside the rows array.
    in_rows: bool,
    /// The rows array was found (and closed).
    found: bool,
    /// The string being read outside the rows (keys are short), and the last one read.
    string: Vec<u8>,
    last_string: Vec<u8>,
    /// The key of the current member at depths 1 and 2.
    keys: [Vec<u8>; 2],
}

impl RowSplitter {
    /// A splitter at the start of a page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the next piece of the body; `on_rows(run, after_rows)` receives runs of whole rows
    /// once [`RUN_BYTES`] of them are gathered (`after_rows`: earlier runs were handed on, so
    /// this one starts with the comma that follows them).
    pub fn push(
        &mut self,
        piece: &[u8],
        on_rows: &mut impl FnMut(&[u8], bool) -> Result<()>,
    ) -> Result<(), String> {
        let mut start = 0;
        for (i, &byte) in piece.iter().enumerate() {
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if byte == b'\\' {
                    self.escape = true;
                } else if byte == b'"' {
                    self.in_string = false;
                    if !self.in_rows {
                        self.last_string = std::mem::take(&mut self.string);
                    }
                } else if !self.in_rows && self.string.len() < 64 {
                    self.string.push(byte);
                }
                continue;
            }
            match byte {
                b'"' => {
                    self.in_string = true;
                    self.string.clear();
                }
                b':' if !self.in_rows => {
                    if let Some(key) = self
                        .open
                        .len()
                        .checked_sub(1)
                        .and_then(|d| self.keys.get_mut(d))
                    {
                        *key = std::mem::take(&mut self.last_string);
                    }
                }
                b'{' | b'[' => {
                    if !self.in_rows && byte == b'[' && self.at_rows_key() {
                        // The bytes up to and including '[' belong to the skeleton.
                        self.skeleton.extend_from_slice(&piece[start..=i]);
                        start = i + 1;
                        self.in_rows = true;
                        self.found = true;
                    }
                    self.open.push(byte);
                }
                b'}' | b']' => {
                    self.open.pop();
                    if self.in_rows && self.open.len() == 2 {
                        // The rows array closed: its bytes so far are whole rows.
                        self.rows.extend_from_slice(&piece[start..i]);
                        self.complete = self.rows.len();
                        start = i;
                        self.in_rows = false;
                        self.hand_on(on_rows, 0).map_err(|e| e.to_string())?;
                    } else if self.in_rows && self.open.len() == 3 {
                        // A row (an object or array at the array's level) ended here.
                        self.rows.extend_from_slice(&piece[start..=i]);
                        start = i + 1;
                        self.complete = self.rows.len();
                    }
                }
                b',' if self.in_rows && self.open.len() == 3 => {
                    // A scalar row ends before its comma (objects end at their brace).
                    self.rows.extend_from_slice(&piece[start..i]);
                    start = i;
                    self.complete = self.rows.len();
                    if self.complete >= RUN_BYTES {
                        self.hand_on(on_rows, RUN_BYTES)
                            .map_err(|e| e.to_string())?;
                    }
                }
                _ => {}
            }
        }
        if self.in_rows {
            self.rows.extend_from_slice(&piece[start..]);
        } else {
            self.skeleton.extend_from_slice(&piece[start..]);
            if self.skeleton.len() > MAX_SKELETON_BYTES {
                return Err(format!(
                    "more than {MAX_SKELETON_BYTES} bytes of the page are outside $.data.rows"
                ));
            }
        }
        Ok(())
    }

    /// The end of the body: hands on the last rows and returns the skeleton, to be read as a
    /// page (the rows array left in it is empty).
    pub fn finish(
        mut self,
        on_rows: &mut impl FnMut(&[u8], bool) -> Result<()>,
    ) -> Result<Vec<u8>> {
        self.hand_on(on_rows, 0)?;
        Ok(self.skeleton)
    }

    /// Whether a `[` here opens `$.data.rows`: the page and `data` are objects and the
    /// current keys are `data` and `rows`.
    fn at_rows_key(&self) -> bool {
        !self.found
            && self.open.as_slice() == b"{{"
            && self.keys[0] == b"data"
            && self.keys[1] == b"rows"
    }

    /// Hands on the whole rows gathered when they are at least `at_least` bytes.
    fn hand_on(
        &mut self,
        on_rows: &mut impl FnMut(&[u8], bool) -> Result<()>,
        at_least: usize,
    ) -> Result<()> {
        if self.complete == 0 || self.complete < at_least {
            return Ok(());
        }
        let run = &self.rows[..self.complete];
        if self.handed || run.iter().any(|b| !b.is_ascii_whitespace()) {
            on_rows(run, self.handed)?;
            self.handed = true;
        }
        self.rows.drain(..self.complete);
        self.complete = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `page` in pieces of `piece` bytes; returns the runs (as text) and the skeleton.
    fn split(page: &str, piece: usize) -> (Vec<(String, bool)>, String) {
        let mut runs = Vec::new();
        let mut on_rows = |run: &[u8], after: bool| {
            runs.push((String::from_utf8(run.to_vec()).unwrap(), after));
            Ok(())
        };
        let mut splitter = RowSplitter::new();
        for chunk in page.as_bytes().chunks(piece) {
            splitter.push(chunk, &mut on_rows).unwrap();
        }
        let skeleton = splitter.finish(&mut on_rows).unwrap();
        (runs, String::from_utf8(skeleton).unwrap())
    }

    #[test]
    fn rows_and_skeleton_are_the_same_however_the_body_is_cut() {
        let page = r#"{"meta": {"rows": [9]}, "data": {"n": 2, "rows": [ {"a": "x,]}\"{["}, {"b": [1, {"c": 2}]} ,{} ]}, "links": {"next": "/p?a=[1]"}}"#;
        for piece in 1..=page.len() {
            let (runs, skeleton) = split(page, piece);
            let rows: String = runs.iter().map(|(run, _)| run.as_str()).collect();
            assert_eq!(
                rows, r#" {"a": "x,]}\"{["}, {"b": [1, {"c": 2}]} ,{} "#,
                "piece {piece}"
            );
            assert_eq!(
                skeleton,
                r#"{"meta": {"rows": [9]}, "data": {"n": 2, "rows": []}, "links": {"next": "/p?a=[1]"}}"#
            );
            assert!(!runs[0].1, "the first run starts at the first row");
            assert!(
                runs[1..]
                    .iter()
                    .all(|(run, after)| *after && run.starts_with(','))
            );
        }
    }

    #[test]
    fn rows_are_handed_on_in_runs_once_enough_are_whole() {
        let row = format!(r#"{{"s": "{}"}}"#, "x".repeat(1000));
        let rows = vec![row.as_str(); 3 * RUN_BYTES / 1000];
        let page = format!(
            r#"{{"links": null, "data": {{"rows": [{}]}}}}"#,
            rows.join(",")
        );
        let (runs, skeleton) = split(&page, 64 * 1024);
        assert!(runs.len() >= 3, "{} runs", runs.len());
        assert!(
            runs.iter()
                .all(|(run, _)| run.len() < RUN_BYTES + 2 * 1024 * 64)
        );
        let joined: String = runs.iter().map(|(run, _)| run.as_str()).collect();
        assert_eq!(joined, rows.join(","));
        assert_eq!(skeleton, r#"{"links": null, "data": {"rows": []}}"#);
    }

    #[test]
    fn an_empty_rows_array_hands_on_nothing() {
        let (runs, skeleton) = split(r#"{"data": {"rows": [ ]}, "links": {}}"#, 3);
        assert!(runs.is_empty());
        assert_eq!(skeleton, r#"{"data": {"rows": []}, "links": {}}"#);
    }

    #[test]
    fn a_page_without_rows_is_all_skeleton_up_to_a_limit() {
        let (runs, skeleton) = split(r#"{"items": [1, 2]}"#, 4);
        assert!(runs.is_empty());
        assert_eq!(skeleton, r#"{"items": [1, 2]}"#);
        let mut splitter = RowSplitter::new();
        let big = vec![b' '; MAX_SKELETON_BYTES + 1];
        let error = splitter.push(&big, &mut |_: &[u8], _| Ok(())).unwrap_err();
        assert!(error.contains("outside $.data.rows"), "{error}");
    }
}
