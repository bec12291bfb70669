//! A job's `out`, which may name fields of the report request: with
//! `out = "s3://analytics/kargo/{report_type}"` each report goes to the dataset of its type.
//!
//! [`OutTemplate`] is the text as written: `{name}` stands for the request's field `name`
//! (letters, digits, `_` and `-`), `{{` and `}}` for literal braces; anything else with a brace
//! is an error, as is a placeholder in the scheme or bucket. [`JobOutput`] is a job's checked
//! output; its [`Resolver`] fills the placeholders from one report's request and opens that
//! destination (which, like every opening, writes nothing), once per destination. Each value becomes exactly one
//! path segment: text as is, numbers and booleans as their JSON text; a value that is missing,
//! null, an object or an array, empty, `.` or `..`, or that holds `/`, `\` or a control
//! character fails that report, so no value reaches above the folder before its placeholder or
//! adds a folder. In a URL (`s3://`, `file://`) a value is percent-encoded, so that `%`, `?` or
//! `#` in it stay text. Such errors are found only once a request is seen, yet they point at
//! the `out` line of the jobs file like the errors found while reading it.
//!
//! Which request a report has, and when a placeholder is allowed at all, is decided by the
//! jobs file ([`super::file`]) and the planning ([`super`]), not here.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::settings::Output;
use crate::sink::partition::encode_segment;
use crate::sink::{Destination, is_url};

/// `out` as a job gives it: literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutTemplate {
    /// The text as written, for the summary and messages.
    text: String,
    parts: Vec<Part>,
    /// A `scheme://` URL: values are percent-encoded.
    url: bool,
}

/// A piece of an [`OutTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Literal text (`{{` and `}}` already made single braces).
    Text(String),
    /// `{name}`: the request's field `name`.
    Field(String),
}

impl OutTemplate {
    /// Parses `text`; the error completes `out ...`.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let template = Self {
            text: text.to_owned(),
            parts: parts(text)?,
            url: is_url(text),
        };
        // A value must not make a URL of a path, nor pick the bucket.
        if text.contains("://") && template.fields().next().is_some() {
            let prefix = template.prefix();
            let path = prefix
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/'));
            if path.is_none() {
                return Err(format!(
                    "{text:?}: a placeholder cannot stand in the scheme, bucket or host; put it \
                     in the path after the bucket"
                ));
            }
        }
        Ok(template)
    }

    /// How the job gives it (what the summary shows).
    pub fn display(&self) -> &str {
        &self.text
    }

    /// The names of the fields it uses, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Field(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The destination text without placeholders: the literal text when there are none, else
    /// the folder before the first (`.` when it has none), which every resolved destination
    /// lies under.
    pub fn base(&self) -> String {
        let first = self.prefix();
        if self.fields().next().is_none() {
            return first.to_owned();
        }
        match first.rfind('/') {
            Some(slash) => first[..=slash].to_owned(),
            None => ".".to_owned(),
        }
    }

    /// The literal text before the first placeholder (all of it when there is none).
    fn prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Text(text)) => text,
            _ => "",
        }
    }

    /// The destination text for a request with `fields`; `whose` names the request in errors
    /// (`report rpt_1`).
    pub fn render(
        &self,
        fields: &Map<String, Value>,
        whose: &str,
    ) -> std::result::Result<String, String> {
        let mut out = String::with_capacity(self.text.len());
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(name) => {
                    let value = segment(name, fields.get(name), whose)?;
                    if self.url {
                        out.push_str(&encode_segment(&value));
                    } else {
                        out.push_str(&value);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Splits `text` into literal text and placeholders.
fn parts(text: &str) -> std::result::Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(['{', '}']) {
        literal.push_str(&rest[..at]);
        let brace = &rest[at..at + 1];
        let after = &rest[at + 1..];
        if let Some(doubled) = after.strip_prefix(brace) {
            literal.push_str(brace);
            rest = doubled;
            continue;
        }
        if brace == "}" {
            return Err(format!(
                "{text:?} has a \"}}\" without its \"{{\" (write \"}}}}\" for a literal brace)"
            ));
        }
        let end = after.find('}').ok_or_else(|| {
            format!("{text:?} has a \"{{\" without its \"}}\" (write \"{{{{\" for a literal brace)")
        })?;
        let name = &after[..end];
        check_name(name).map_err(|problem| format!("{text:?}: {problem}"))?;
        if !literal.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut literal)));
        }
        parts.push(Part::Field(name.to_owned()));
        rest = &after[end + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    Ok(parts)
}

/// A placeholder's name: letters, digits, `_` and `-`.
fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err(
            "\"{}\" names no field: write the request's field, e.g. {report_type}".to_owned(),
        );
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    {
        return Err(format!(
            "{{{name}}} is not a field name (letters, digits, \"_\" and \"-\")"
        ));
    }
    Ok(())
}

/// Field `name`'s value as one path segment, or why it cannot be one.
fn segment(name: &str, value: Option<&Value>, whose: &str) -> std::result::Result<String, String> {
    let field = || format!("field {name:?} of the request of {whose}");
    let text = match value {
        None => return Err(format!("the request of {whose} has no field {name:?}")),
        Some(Value::Null) => return Err(format!("{} is null", field())),
        Some(Value::String(text)) => text.clone(),
        Some(scalar @ (Value::Number(_) | Value::Bool(_))) => scalar.to_string(),
        Some(Value::Array(_)) => {
            return Err(format!(
                "{} is a list, not text, a number or a boolean",
                field()
            ));
        }
        Some(Value::Object(_)) => {
            return Err(format!(
                "{} is an object, not text, a number or a boolean",
                field()
            ));
        }
    };
    let problem = if text.is_empty() {
        Some("it is empty".to_owned())
    } else if text == "." || text == ".." {
        Some(format!("{text:?} is not a folder name"))
    } else if let Some(c) = text.chars().find(|c| matches!(c, '/' | '\\')) {
        Some(format!("it holds {c:?}"))
    } else if text.chars().any(char::is_control) {
        Some("it holds a control character".to_owned())
    } else {
        None
    };
    match problem {
        None => Ok(text),
        Some(problem) => Err(format!(
            "{} is {text:?}, which cannot be one folder of out: {problem}",
            field()
        )),
    }
}

/// A job's checked output: its `out` and the other output settings.
#[derive(Debug, Clone)]
pub struct JobOutput {
    /// `out` as the job gives it.
    pub destination: OutTemplate,
    /// The checked output. Without placeholders its destination is the job's; with them it is
    /// [`OutTemplate::base`], opened only to check it and never written to: [`Resolver`]
    /// replaces it.
    checked: Output,
    /// Where `out` is: `FILE, line L, column C`.
    at: String,
    /// The job's name.
    job: String,
}

impl JobOutput {
    /// `checked` is the output opened at `destination`'s [`OutTemplate::base`]; `at` places
    /// `out` in the jobs file for errors found later.
    pub fn new(destination: OutTemplate, checked: Output, at: String, job: String) -> Self {
        Self {
            destination,
            checked,
            at,
            job,
        }
    }

    /// Whether `out` names fields of the request.
    pub fn has_fields(&self) -> bool {
        self.destination.fields().next().is_some()
    }

    /// The output of every report when `out` has no placeholders.
    pub fn fixed(&self) -> Option<&Output> {
        (!self.has_fields()).then_some(&self.checked)
    }

    /// Resolves the outputs of this job's reports.
    pub fn resolver(&self) -> Resolver<'_> {
        Resolver {
            output: self,
            opened: HashMap::new(),
        }
    }

    /// The error of a report whose request is not known (`out` needs it): `why` completes
    /// `report ID ...`.
    pub fn unknown_request(&self, report: &str, why: &str) -> Error {
        let fields: Vec<String> = self
            .destination
            .fields()
            .map(|name| format!("{{{name}}}"))
            .collect();
        self.error(&format!(
            "report {report} {why}, so {} cannot be filled",
            fields.join(", ")
        ))
    }

    /// A usage error about `out`, placed at its line.
    fn error(&self, problem: &str) -> Error {
        super::file::located(&self.at, &format!("job {:?}: out: {problem}", self.job))
    }
}

/// Resolves the outputs of one job's reports, opening each destination once: the reports of
/// one destination share it (and so its S3 check).
pub struct Resolver<'a> {
    output: &'a JobOutput,
    /// By resolved `out`.
    opened: HashMap<String, Output>,
}

impl Resolver<'_> {
    /// The output of the report whose request has `fields` (`whose` names it: `report
    /// rpt_1`); the job's one output when `out` has no placeholders. An error names the field,
    /// the request and the line of `out`.
    pub fn resolve(&mut self, fields: &Map<String, Value>, whose: &str) -> Result<Output> {
        let job = self.output;
        if let Some(output) = job.fixed() {
            return Ok(output.clone());
        }
        let out = job
            .destination
            .render(fields, whose)
            .map_err(|problem| job.error(&problem))?;
        if let Some(output) = self.opened.get(&out) {
            return Ok(output.clone());
        }
        let destination = Destination::open(&out).map_err(|e| match e {
            Error::Usage(problem) => job.error(&problem),
            other => other,
        })?;
        let output = Output {
            destination,
            ..job.checked.clone()
        };
        self.opened.insert(out, output.clone());
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(text: &str) -> OutTemplate {
        OutTemplate::parse(text).unwrap()
    }

    fn request(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn placeholders_and_doubled_braces_are_read() {
        let t = template("s3://b/k/{report_type}/x{{y}}/{advertiser_id}-{n}");
        assert_eq!(
            t.fields().collect::<Vec<_>>(),
            ["report_type", "advertiser_id", "n"]
        );
        assert_eq!(
            t.display(),
            "s3://b/k/{report_type}/x{{y}}/{advertiser_id}-{n}"
        );
        assert_eq!(t.base(), "s3://b/k/");
        let fixed = template("./out/{{literal}}");
        assert_eq!(fixed.fields().count(), 0);
        assert_eq!(fixed.base(), "./out/{literal}");
        assert_eq!(template("{a}/x").base(), ".");
        assert_eq!(template("/data/pre{a}").base(), "/data/");
    }

    #[test]
    fn malformed_placeholders_are_refused() {
        let cases = [
            ("./x/{report_type", "without its \"}\""),
            ("./x/report_type}", "without its \"{\""),
            ("./x/{}", "names no field"),
            ("./x/{report type}", "{report type} is not a field name"),
            ("./x/{a.b}", "{a.b} is not a field name"),
            (
                "s3://{bucket}/x",
                "cannot stand in the scheme, bucket or host",
            ),
            ("s3://b{x}/y", "cannot stand in the scheme, bucket or host"),
            (
                "{scheme}://b/y",
                "cannot stand in the scheme, bucket or host",
            ),
        ];
        for (text, what) in cases {
            let message = OutTemplate::parse(text).unwrap_err();
            assert!(message.contains(what), "{text}: {message}");
        }
        // A brace in a bucket is the destination's business, not a placeholder.
        assert_eq!(template("s3://b{{x}}/{y}").base(), "s3://b{x}/");
    }

    #[test]
    fn values_become_one_segment_each() {
        let t = template("./data/{report_type}/{id}-{flag}");
        let fields = request(serde_json::json!({"report_type": "by day", "id": 42, "flag": true}));
        assert_eq!(
            t.render(&fields, "report r").unwrap(),
            "./data/by day/42-true"
        );
        let url = template("s3://b/k/{report_type}");
        let fields = request(serde_json::json!({"report_type": "50%2F?#x"}));
        assert_eq!(
            url.render(&fields, "report r").unwrap(),
            "s3://b/k/50%252F%3F%23x"
        );
    }

    #[test]
    fn values_that_are_no_folder_name_are_refused() {
        let t = template("./data/{v}");
        let cases = [
            (
                serde_json::json!({}),
                "the request of report r1 has no field \"v\"",
            ),
            (
                serde_json::json!({"v": null}),
                "field \"v\" of the request of report r1 is null",
            ),
            (serde_json::json!({"v": {"a": 1}}), "is an object"),
            (serde_json::json!({"v": [1]}), "is a list"),
            (serde_json::json!({"v": ""}), "it is empty"),
            (serde_json::json!({"v": "."}), "\".\" is not a folder name"),
            (
                serde_json::json!({"v": ".."}),
                "\"..\" is not a folder name",
            ),
            (serde_json::json!({"v": "a/b"}), "it holds '/'"),
            (serde_json::json!({"v": "..\\x"}), "it holds '\\\\'"),
            (serde_json::json!({"v": "a\nb"}), "control character"),
        ];
        for (fields, what) in cases {
            let message = t.render(&request(fields.clone()), "report r1").unwrap_err();
            assert!(message.contains(what), "{fields}: {message}");
        }
    }
}
