//! Values as text, and text as dates and timestamps: the conversions the decoder and
//! [`crate::infer`] share, so a value converts the same way whether its column's kind changed
//! inside a page or across pages.
//!
//! Scalars become text through one path (`append_text` for a value, `scalars_to_text` for a
//! finished array: `true`/`false`, decimal integers, floats as `write_float` writes them).
//! `parse_date` (`YYYY-MM-DD`) and `parse_timestamp_micros` (RFC 3339) both decide a string
//! column's flags (`is_date`, `is_timestamp`) and convert its values, so the two never
//! disagree. It owns no builder and no kind: when a conversion applies is decided in `builders`
//! and in `infer`.

use std::fmt::Write as _;

use arrow::array::{Array, AsArray, StringArray, StringBuilder};
use arrow::datatypes::{Float64Type, Int64Type};
use chrono::DateTime;

use super::scanner::Value;

/// Appends the text of `value` (the same text `scalars_to_text` gives arrays).
pub(super) fn append_text(out: &mut StringBuilder, value: &Value<'_>) {
    match value {
        Value::Null => out.append_null(),
        Value::Bool(v) => out.append_value(bool_text(*v)),
        Value::Int(v) => {
            let _ = write!(out, "{v}");
            out.append_value("");
        }
        Value::Float(v) => {
            let _ = write_float(out, *v);
            out.append_value("");
        }
        Value::Str(s) => out.append_value(s),
        Value::Nested(raw) => out.append_value(raw),
    }
}

fn bool_text(v: bool) -> &'static str {
    if v { "true" } else { "false" }
}

/// Writes a float as text: integral values in the i64 range as that integer (so `1` stays "1"
/// whether or not its column had become Float first), others in Rust's shortest round-trip
/// form (`1.5`, `1e300`).
fn write_float(out: &mut impl std::fmt::Write, v: f64) -> std::fmt::Result {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if v.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&v) {
        write!(out, "{}", v as i64)
    } else {
        write!(out, "{v:?}")
    }
}

/// Converts a Boolean, Int64 or Float64 array to text ("true"/"false", decimal integers, floats
/// as `write_float` writes them); None for any other type. Used for kind changes inside a
/// page (here) and across pages (`infer::conform`), so the text never depends on page bounds.
pub(crate) fn scalars_to_text(array: &dyn Array) -> Option<StringArray> {
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * 8);
    append_scalars_as_text(&mut out, array).then(|| out.finish())
}

fn append_scalars_as_text(out: &mut StringBuilder, array: &dyn Array) -> bool {
    if let Some(bools) = array.as_boolean_opt() {
        for v in bools {
            out.append_option(v.map(bool_text));
        }
    } else if let Some(ints) = array.as_primitive_opt::<Int64Type>() {
        for v in ints {
            append_text(out, &v.map_or(Value::Null, Value::Int));
        }
    } else if let Some(floats) = array.as_primitive_opt::<Float64Type>() {
        for v in floats {
            append_text(out, &v.map_or(Value::Null, Value::Float));
        }
    } else {
        return false;
    }
    true
}

/// A text builder holding the text of a finished scalar array.
pub(super) fn text_builder(array: &dyn Array) -> StringBuilder {
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * 8);
    append_scalars_as_text(&mut out, array);
    out
}

/// Parses exactly `YYYY-MM-DD` (10 bytes, a real calendar date) into days since 1970-01-01.
/// Decides the `dates` flag and converts date columns, so the two never disagree.
pub(crate) fn parse_date(text: &str) -> Option<i32> {
    parse_date_bytes(text.as_bytes())
}

fn parse_date_bytes(b: &[u8]) -> Option<i32> {
    match b {
        [y1, y2, y3, y4, b'-', m1, m2, b'-', d1, d2] => {
            let year = two_digits(*y1, *y2)? * 100 + two_digits(*y3, *y4)?;
            civil_days(year, two_digits(*m1, *m2)?, two_digits(*d1, *d2)?)
        }
        _ => None,
    }
}

fn two_digits(tens: u8, ones: u8) -> Option<u32> {
    (tens.is_ascii_digit() && ones.is_ascii_digit())
        .then(|| u32::from(tens - b'0') * 10 + u32::from(ones - b'0'))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (years 0..=9999), None if it is not a
/// real date. Same results as chrono's `NaiveDate` (checked in the tests), without its cost.
fn civil_days(year: u32, month: u32, day: u32) -> Option<i32> {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if day == 0 || day > month_days || year > 9999 {
        return None;
    }
    // Howard Hinnant's days_from_civil, with years starting in March.
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * i64::from((month + 9) % 12) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    i32::try_from(era * 146_097 + day_of_era - 719_468).ok()
}

/// Parses an RFC 3339 timestamp (any offset) into microseconds since the epoch, UTC; digits
/// below a microsecond are dropped. Decides the `timestamps` flag and converts timestamp
/// columns, so the two never disagree. The common shapes are parsed here directly; anything
/// else goes to chrono's `DateTime::parse_from_rfc3339`, which defines the accepted set.
pub(crate) fn parse_timestamp_micros(text: &str) -> Option<i64> {
    common_timestamp_micros(text.as_bytes()).or_else(|| {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.timestamp_micros())
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)` with in-range fields, else None.
fn common_timestamp_micros(b: &[u8]) -> Option<i64> {
    let (date, rest) = b.split_at_checked(10)?;
    let days = i64::from(parse_date_bytes(date)?);
    let [b'T', h1, h2, b':', m1, m2, b':', s1, s2, rest @ ..] = rest else {
        return None;
    };
    let (hour, minute, second) = (
        two_digits(*h1, *h2)?,
        two_digits(*m1, *m2)?,
        two_digits(*s1, *s2)?,
    );
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let (micros, rest) = fraction_micros(rest)?;
    let offset = offset_seconds(rest)?;
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset;
    Some(seconds * 1_000_000 + micros)
}

/// The microseconds of an optional `.digits` fraction (digits beyond 6 dropped), and the rest.
fn fraction_micros(b: &[u8]) -> Option<(i64, &[u8])> {
    let Some((b'.', rest)) = b.split_first() else {
        return Some((0, b));
    };
    let digits = rest.iter().take_while(|d| d.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let micros = rest
        .iter()
        .take(6)
        .take_while(|d| d.is_ascii_digit())
        .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
    let scale = 10i64.pow(6u32.saturating_sub(u32::try_from(digits).unwrap_or(6)));
    Some((micros * scale, rest.get(digits..)?))
}

/// Seconds east of UTC of a whole `Z`, `+HH:MM` or `-HH:MM`.
fn offset_seconds(b: &[u8]) -> Option<i64> {
    match b {
        [b'Z'] => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (hours, minutes) = (two_digits(*h1, *h2)?, two_digits(*m1, *m2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            Some(if *sign == b'-' { -seconds } else { seconds })
        }
        _ => None,
    }
}

pub(super) fn is_date(text: &str) -> bool {
    parse_date(text).is_some()
}

pub(super) fn is_timestamp(text: &str) -> bool {
    parse_timestamp_micros(text).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BooleanArray, Int64Array};
    use arrow::datatypes::DataType;
    use proptest::prelude::*;

    #[test]
    fn int_and_bool_text_matches_arrow_cast() {
        let ints = Int64Array::from(vec![
            Some(i64::MIN),
            None,
            Some(0),
            Some(42),
            Some(i64::MAX),
        ]);
        let bools = BooleanArray::from(vec![Some(true), None, Some(false)]);
        for array in [&ints as &dyn Array, &bools] {
            let ours = scalars_to_text(array).unwrap();
            let arrows = arrow::compute::cast(array, &DataType::Utf8).unwrap();
            assert_eq!(&ours, arrows.as_string::<i32>());
        }
    }

    #[test]
    fn date_and_timestamp_values() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("2024-02-30"), None);
        assert_eq!(parse_date("2024-1-05"), None);
        assert_eq!(parse_date("+024-01-05"), None);
        assert_eq!(
            parse_timestamp_micros("1970-01-01T00:00:01Z"),
            Some(1_000_000)
        );
        assert_eq!(parse_timestamp_micros("1970-01-01T02:00:00+02:00"), Some(0));
        assert_eq!(
            parse_timestamp_micros("1970-01-01T00:00:00.0000019Z"),
            Some(1)
        );
        assert_eq!(parse_timestamp_micros("2025-03-01T02:25:47"), None);
        assert_eq!(parse_timestamp_micros(""), None);
    }

    #[test]
    fn dates_agree_with_chrono() {
        use chrono::{Datelike, NaiveDate};
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)
            .unwrap()
            .num_days_from_ce();
        for year in 0..=9999u32 {
            for month in 0..=13u32 {
                for day in [0, 1, 15, 28, 29, 30, 31, 32] {
                    let chrono = NaiveDate::from_ymd_opt(year as i32, month, day)
                        .map(|d| d.num_days_from_ce() - epoch);
                    assert_eq!(civil_days(year, month, day), chrono, "{year}-{month}-{day}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn timestamp_fast_path_agrees_with_chrono(
            text in "[0-9]{4}-[01][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{0,11})?(Z|z|[+-][0-2][0-9]:[0-6][0-9])"
        ) {
            let chrono = DateTime::parse_from_rfc3339(&text).ok().map(|t| t.timestamp_micros());
            if let Some(fast) = common_timestamp_micros(text.as_bytes()) {
                prop_assert_eq!(Some(fast), chrono);
            }
            prop_assert_eq!(parse_timestamp_micros(&text), chrono);
        }
    }
}
