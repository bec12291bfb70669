//! The JSONPath subset of manual endpoints (`--data-path`, `--next-path`, `--cursor-path`,
//! `--total-path`): `$`, `.key`, `['key with spaces']` (or double quotes), `[*]` and `[N]`.
//!
//! Paths are evaluated over borrowed [`RawValue`]s, one level at a time, so the values found
//! (rows in particular) keep their exact source bytes (`1.50` stays `1.50`). Filters, slices,
//! recursive descent and the like are not supported: a path using them is a usage error.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::value::RawValue;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// `.key` or `['key']`: the member of an object.
    Key(String),
    /// `[N]`: the element of an array.
    Index(usize),
    /// `[*]`: every element of an array (or every member value of an object).
    Wildcard,
}

/// A parsed path; `Display` writes it back in the form it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<Step>,
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for JsonPath {
    type Err = String;

    /// Parses a path; the error says what is wrong and at which character.
    fn from_str(text: &str) -> Result<Self, String> {
        let chars: Vec<char> = text.trim().chars().collect();
        if chars.first() != Some(&'$') {
            return Err(format!("JSONPath {text:?} must start with '$'"));
        }
        let mut steps = Vec::new();
        let mut i = 1;
        while i < chars.len() {
            let (step, next) = match chars[i] {
                '.' => dotted_key(&chars, i + 1),
                '[' => bracket(&chars, i + 1),
                other => Err(format!("unexpected {other:?}")),
            }
            .map_err(|reason| format!("JSONPath {text:?}, character {}: {reason}", i + 1))?;
            steps.push(step);
            i = next;
        }
        Ok(JsonPath {
            text: text.trim().to_owned(),
            steps,
        })
    }
}

/// `.key`: letters, digits, `_`, `-` and any non-ASCII character.
fn dotted_key(chars: &[char], start: usize) -> Result<(Step, usize), String> {
    let end = (start..chars.len())
        .find(|&i| !(chars[i].is_alphanumeric() || matches!(chars[i], '_' | '-' | '$' | '@')))
        .unwrap_or(chars.len());
    if end == start {
        return Err("expected a key after '.' (use ['...'] for other characters)".into());
    }
    Ok((Step::Key(chars[start..end].iter().collect()), end))
}

/// `[*]`, `[N]`, `['key']` or `["key"]` (a backslash escapes the next character).
fn bracket(chars: &[char], start: usize) -> Result<(Step, usize), String> {
    let close = |at: usize| match chars.get(at) {
        Some(']') => Ok(at + 1),
        _ => Err("expected ']'".to_string()),
    };
    match chars.get(start) {
        Some('*') => Ok((Step::Wildcard, close(start + 1)?)),
        Some(&quote @ ('\'' | '"')) => {
            let mut key = String::new();
            let mut i = start + 1;
            loop {
                match chars.get(i) {
                    None => return Err("unterminated quoted key".into()),
                    Some('\\') => {
                        key.extend(chars.get(i + 1));
                        i += 2;
                    }
                    Some(&c) if c == quote => break,
                    Some(&c) => {
                        key.push(c);
                        i += 1;
                    }
                }
            }
            Ok((Step::Key(key), close(i + 1)?))
        }
        Some(c) if c.is_ascii_digit() => {
            let end = (start..chars.len())
                .find(|&i| !chars[i].is_ascii_digit())
                .unwrap_or(chars.len());
            let digits: String = chars[start..end].iter().collect();
            let index = digits
                .parse()
                .map_err(|_| format!("index {digits} is too large"))?;
            Ok((Step::Index(index), close(end)?))
        }
        _ => Err("expected *, an index or a quoted key after '['".into()),
    }
}

/// Members of a JSON object, in key order, values borrowed from the page.
type Members<'a> = BTreeMap<String, &'a RawValue>;

/// The default data path: the API's own page shape.
pub const DATA_ROWS: &str = "$.data.rows[*]";
/// The default next path: the API's own page shape.
pub const LINKS_NEXT: &str = "$.links.next";

impl JsonPath {
    /// `$.data.rows[*]`.
    pub fn data_rows() -> Self {
        Self::known(DATA_ROWS, &["data", "rows"], true)
    }

    /// `$.links.next`.
    pub fn links_next() -> Self {
        Self::known(LINKS_NEXT, &["links", "next"], false)
    }

    fn known(text: &str, keys: &[&str], wildcard: bool) -> Self {
        let mut steps: Vec<Step> = keys.iter().map(|k| Step::Key((*k).to_owned())).collect();
        if wildcard {
            steps.push(Step::Wildcard);
        }
        JsonPath {
            text: text.to_owned(),
            steps,
        }
    }

    /// The path without its last step when that step is `[*]`: the array whose elements it
    /// selects (so an empty array can be told from a path that matches nothing).
    pub fn wildcard_parent(&self) -> Option<JsonPath> {
        let (last, parent) = self.steps.split_last()?;
        (*last == Step::Wildcard).then(|| JsonPath {
            text: self.text.trim_end_matches("[*]").to_owned(),
            steps: parent.to_vec(),
        })
    }

    /// Every value the path selects in `root`, in document order. A step that does not apply
    /// (a key on an array, an index past the end, anything below a scalar) selects nothing.
    pub fn select<'a>(&self, root: &'a RawValue) -> Vec<&'a RawValue> {
        let mut current = vec![root];
        for step in &self.steps {
            current = current
                .into_iter()
                .flat_map(|value| apply(step, value))
                .collect();
        }
        current
    }

    /// The single value at the path (the first when it selects several), or `None`.
    pub fn first<'a>(&self, root: &'a RawValue) -> Option<&'a RawValue> {
        self.select(root).into_iter().next()
    }
}

fn apply<'a>(step: &Step, value: &'a RawValue) -> Vec<&'a RawValue> {
    match step {
        Step::Key(key) => members(value)
            .and_then(|mut members| members.remove(key))
            .into_iter()
            .collect(),
        Step::Index(index) => elements(value)
            .and_then(|elements| elements.get(*index).copied())
            .into_iter()
            .collect(),
        Step::Wildcard => elements(value)
            .or_else(|| members(value).map(|members| members.into_values().collect()))
            .unwrap_or_default(),
    }
}

/// The members of `value` when it is an object.
fn members(value: &RawValue) -> Option<Members<'_>> {
    value
        .get()
        .trim_start()
        .starts_with('{')
        .then(|| serde_json::from_str(value.get()).ok())
        .flatten()
}

/// The elements of `value` when it is an array.
fn elements(value: &RawValue) -> Option<Vec<&RawValue>> {
    value
        .get()
        .trim_start()
        .starts_with('[')
        .then(|| serde_json::from_str(value.get()).ok())
        .flatten()
}

/// The key paths of `root` two levels deep (`data.rows, links`), for errors that say what a
/// page held instead of what a path asked for; a page that is not an object is described by
/// its kind.
pub fn describe(root: &RawValue) -> String {
    let Some(top) = members(root) else {
        return format!("the page is {}", kind(root));
    };
    let mut paths = Vec::new();
    for (key, value) in &top {
        match members(value) {
            Some(inner) if !inner.is_empty() => paths.extend(
                inner
                    .keys()
                    .map(|k| format!("{}{}", shown(key), segment(k))),
            ),
            _ => paths.push(shown(key)),
        }
    }
    if paths.is_empty() {
        return "the page is an empty object".into();
    }
    format!("the page has keys {}", paths.join(", "))
}

/// A top-level key as the start of a path: bare when it is a plain name, else `['quoted']`.
fn shown(key: &str) -> String {
    let segment = segment(key);
    segment
        .strip_prefix('.')
        .map_or(segment.clone(), str::to_owned)
}

/// A key as a path step: `.name` for a plain name, else `['quoted']`.
fn segment(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_alphanumeric() || c == '_') {
        format!(".{key}")
    } else {
        format!("['{}']", key.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// "an array", "a string", ... for the JSON value `value`.
pub fn kind(value: &RawValue) -> &'static str {
    match value.get().trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> JsonPath {
        text.parse().unwrap()
    }

    fn select(path_text: &str, json: &str) -> Vec<String> {
        let root: &RawValue = serde_json::from_str(json).unwrap();
        path(path_text)
            .select(root)
            .iter()
            .map(|v| v.get().to_owned())
            .collect()
    }

    #[test]
    fn parses_every_supported_form() {
        assert_eq!(path("$").steps, []);
        assert_eq!(
            path("$.data.rows[*]").steps,
            [
                Step::Key("data".into()),
                Step::Key("rows".into()),
                Step::Wildcard
            ]
        );
        assert_eq!(
            path(r#"$['key with spaces']["it's"][12]"#).steps,
            [
                Step::Key("key with spaces".into()),
                Step::Key("it's".into()),
                Step::Index(12)
            ]
        );
        assert_eq!(path(r"$['a\'b']").steps, [Step::Key("a'b".into())]);
        assert_eq!(path("$.data.rows[*]").to_string(), "$.data.rows[*]");
        assert_eq!(path(DATA_ROWS), JsonPath::data_rows());
        assert_eq!(path(LINKS_NEXT), JsonPath::links_next());
        assert_eq!(path("$.a[*]").wildcard_parent(), Some(path("$.a")));
        assert_eq!(path("$.a[0]").wildcard_parent(), None);
    }

    #[test]
    fn rejects_what_it_does_not_support() {
        for bad in [
            "data.rows",
            "$.",
            "$..rows",
            "$[?(@.a)]",
            "$['open",
            "$[1:2]",
            "$.a b",
        ] {
            let err = bad.parse::<JsonPath>().unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        assert!(
            "$.a[x]"
                .parse::<JsonPath>()
                .unwrap_err()
                .contains("character 4")
        );
    }

    #[test]
    fn selects_keys_indexes_and_wildcards_keeping_the_source_bytes() {
        let page = r#"{"data": {"rows": [{"a": 1.50}, {"a": 2}]}, "x y": [10, 20, 30]}"#;
        assert_eq!(
            select("$.data.rows[*]", page),
            [r#"{"a": 1.50}"#, r#"{"a": 2}"#]
        );
        assert_eq!(select("$.data.rows[1].a", page), ["2"]);
        assert_eq!(select("$['x y'][2]", page), ["30"]);
        assert_eq!(select("$['x y'][3]", page), Vec::<String>::new());
        assert_eq!(select("$.data.items[*]", page), Vec::<String>::new());
        assert_eq!(select("$.data.rows.a", page), Vec::<String>::new());
        assert_eq!(select("$.data[*]", page), [r#"[{"a": 1.50}, {"a": 2}]"#]);
        assert_eq!(select("$", "[1]"), ["[1]"]);
    }

    #[test]
    fn describes_what_a_page_holds() {
        let root: &RawValue = serde_json::from_str(
            r#"{"links": {"next": null}, "data": {"rows": []}, "n": 1, "a b": {}, "x": {"c d": 1}}"#,
        )
        .unwrap();
        assert_eq!(
            describe(root),
            r#"the page has keys ['a b'], data.rows, links.next, n, x['c d']"#
        );
        let list: &RawValue = serde_json::from_str("[1]").unwrap();
        assert_eq!(describe(list), "the page is an array");
    }
}
