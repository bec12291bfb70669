//! Dates relative to the day of the run in a submit job's request, so that one jobs file can
//! ask every night for "the last 7 days": in any string of `request`, `${today}`,
//! `${yesterday}` and `${today-N}` / `${today+N}` (N days) become `YYYY-MM-DD` dates (UTC).
//! They are checked when the jobs file is read and filled in once when the run starts, so all
//! jobs of a run see the same day and the request hash (see [`super::state`]) changes with it.

use chrono::{Days, NaiveDate};
use serde_json::{Map, Value};

/// `request` with every placeholder in its strings replaced by its date relative to `today`;
/// an unknown or malformed placeholder is an error naming it.
pub fn fill(request: &Map<String, Value>, today: NaiveDate) -> Result<Map<String, Value>, String> {
    request
        .iter()
        .map(|(key, value)| Ok((key.clone(), fill_value(value, today)?)))
        .collect()
}

fn fill_value(value: &Value, today: NaiveDate) -> Result<Value, String> {
    Ok(match value {
        Value::String(text) => Value::String(fill_text(text, today)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| fill_value(v, today))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(fill(map, today)?),
        other => other.clone(),
    })
}

fn fill_text(text: &str, today: NaiveDate) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("{:?} has a \"${{\" without its \"}}\"", text))?;
        out.push_str(&date(&after[..end], today)?.format("%Y-%m-%d").to_string());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The date a placeholder's name stands for.
fn date(name: &str, today: NaiveDate) -> Result<NaiveDate, String> {
    let unknown = || {
        format!(
            "unknown date ${{{name}}}: use ${{today}}, ${{yesterday}}, ${{today-N}} or ${{today+N}} (N days)"
        )
    };
    let offset = match name.trim() {
        "today" => Some(0),
        "yesterday" => Some(-1),
        other => other.strip_prefix("today").and_then(|days| {
            let (sign, digits) = days.split_at(days.find(|c: char| c.is_ascii_digit())?);
            let days: i64 = digits.parse().ok().filter(|d| *d <= 36_600)?;
            match sign {
                "-" => Some(-days),
                "+" => Some(days),
                _ => None,
            }
        }),
    };
    let offset = offset.ok_or_else(unknown)?;
    let shifted = if offset < 0 {
        today.checked_sub_days(Days::new(offset.unsigned_abs()))
    } else {
        today.checked_add_days(Days::new(offset.unsigned_abs()))
    };
    shifted.ok_or_else(unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filled(request: Value) -> Result<Value, String> {
        let today = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let Value::Object(map) = request else {
            panic!("not an object")
        };
        fill(&map, today).map(Value::Object)
    }

    #[test]
    fn placeholders_become_dates_relative_to_the_day_of_the_run() {
        let request = json!({
            "report_type": "delivery_by_day",
            "date_range": {"start": "${today-7}", "end": "${yesterday}"},
            "label": "nightly ${today} (${today+1})",
            "days": [7, "${today-0}"],
            "dollars": "$5 {not a date}",
        });
        assert_eq!(
            filled(request).unwrap(),
            json!({
                "report_type": "delivery_by_day",
                "date_range": {"start": "2026-02-22", "end": "2026-02-28"},
                "label": "nightly 2026-03-01 (2026-03-02)",
                "days": [7, "2026-03-01"],
                "dollars": "$5 {not a date}",
            })
        );
    }

    #[test]
    fn unknown_or_unclosed_placeholders_are_errors_naming_them() {
        for (text, expected) in [
            ("${tomorow}", "unknown date ${tomorow}"),
            ("${today-}", "unknown date ${today-}"),
            ("${today*2}", "unknown date ${today*2}"),
            ("${today-99999999}", "unknown date ${today-99999999}"),
            ("from ${today", "has a \"${\" without its \"}\""),
        ] {
            let error = filled(json!({ "start": text })).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
