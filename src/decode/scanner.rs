//! The JSON scanner the decoder runs on: [`Json`], a cursor that checks bytes against the JSON
//! grammar (RFC 8259, as `serde_json` reads it) while it decodes values where they start and
//! finds where they end, so a page is read once; the [`Value`] it decodes; and why a scan stops
//! ([`Stop`], [`Syntax`]).
//!
//! It knows nothing of columns, kinds or Arrow: `crate::source::extract` walks the page
//! envelope with it, the row decoder (`super`) walks rows, `kinds` types nested values. Strings
//! are borrowed from the bytes unless they hold escapes, numbers of the common shapes are
//! decoded while they are scanned (8 bytes at a time for strings): this is the hot path.

use std::fmt;

/// One decoded JSON value of a row.
#[derive(Debug)]
pub(super) enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    /// An object or array, as its JSON text.
    Nested(&'a str),
}

/// A JSON number: `Int` when it has no fraction or exponent and fits an i64 (exact, also
/// beyond 2^53), otherwise `Float`.
fn parse_number(text: &str) -> Result<Value<'static>, String> {
    let integral = !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'));
    if integral && let Ok(v) = text.parse::<i64>() {
        return Ok(Value::Int(v));
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Value::Float(v)),
        Ok(_) => Err(format!("number {text} is out of range for a 64-bit float")),
        Err(_) => Err(format!("invalid number {text:?}")),
    }
}

/// Why a scan stopped: the bytes are not JSON, or they are but cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Not JSON.
    Syntax(Syntax),
    /// Valid JSON that cannot be decoded (a string with a lone surrogate escape, a number
    /// beyond the f64 range): the reason, ready for a [`DecodeError`](crate::error::DecodeError).
    Invalid(String),
}

/// Where and how bytes stop being JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Syntax {
    /// Byte offset (in the scanned bytes) of the first byte that does not fit.
    pub at: usize,
    /// What is wrong there, e.g. "expected ',' or '}'".
    pub what: &'static str,
}

impl fmt::Display for Syntax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

/// What a string's body held, as seen while moving past it.
#[derive(Clone, Copy)]
struct Body {
    escaped: bool,
    ascii: bool,
}

/// A cursor over JSON bytes that checks them against the JSON grammar (RFC 8259, as
/// `serde_json` reads it) while it decodes values where they start and finds where they end.
/// It never panics and never recurses: bytes that are not JSON stop it with a [`Syntax`]
/// error at their offset.
///
/// Strings are checked to be UTF-8 wherever they are decoded or when [`skip_value`] is asked
/// to; a string of ASCII bytes (known from the scan itself) needs no second look.
///
/// [`skip_value`]: Json::skip_value
pub(crate) struct Json<'a> {
    bytes: &'a [u8],
    pub(super) pos: usize,
    /// The text of the last decoded string that had escapes.
    scratch: String,
    /// The arrays (`[`) and objects (`{`) open while skipping a value.
    open: Vec<u8>,
}

impl<'a> Json<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Json {
            bytes,
            pos: 0,
            scratch: String::new(),
            open: Vec::new(),
        }
    }

    /// Byte offset of the cursor.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    #[inline(always)]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline(always)]
    pub(crate) fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    #[inline(always)]
    pub(crate) fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// A syntax error at the cursor.
    #[cold]
    pub(crate) fn error(&self, what: &'static str) -> Stop {
        self.syntax_at(self.pos, what)
    }

    #[cold]
    fn syntax<T>(&self, what: &'static str) -> Result<T, Stop> {
        Err(self.error(what))
    }

    #[cold]
    fn syntax_at(&self, at: usize, what: &'static str) -> Stop {
        let what = if at >= self.bytes.len() {
            "unexpected end of input"
        } else {
            what
        };
        Stop::Syntax(Syntax { at, what })
    }

    /// Moves past `byte`, or stops with `what`.
    #[inline(always)]
    pub(crate) fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), Stop> {
        if self.eat(byte) {
            Ok(())
        } else {
            self.syntax(what)
        }
    }

    /// What the value at the cursor is, judged by its first byte ("an object", "null", ...);
    /// None when no JSON value starts there.
    pub(crate) fn found(&self) -> Option<&'static str> {
        Some(match self.peek()? {
            b'{' => "an object",
            b'[' => "an array",
            b'"' => "a string",
            b't' | b'f' => "a boolean",
            b'n' => "null",
            b'-' | b'0'..=b'9' => "a number",
            _ => return None,
        })
    }

    /// Moves past `null` if the cursor is at one; true if it was.
    pub(crate) fn null(&mut self) -> Result<bool, Stop> {
        if self.peek() != Some(b'n') {
            return Ok(false);
        }
        self.literal(b"null")?;
        Ok(true)
    }

    /// The value at the cursor (no leading whitespace), decoded, moving past it.
    #[inline(always)]
    pub(super) fn value(&mut self) -> Result<Value<'_>, Stop> {
        match self.peek() {
            Some(b'"') => self.string().map(Value::Str),
            Some(b'{' | b'[') => {
                let start = self.pos;
                self.skip_value(true)?;
                let raw = self.bytes.get(start..self.pos).unwrap_or_default();
                // Checked: every string in it is UTF-8 and every other byte ASCII.
                let raw =
                    std::str::from_utf8(raw).map_err(|_| self.syntax_at(start, INVALID_UTF8))?;
                Ok(Value::Nested(raw))
            }
            Some(b'n') => self.literal(b"null").map(|()| Value::Null),
            Some(b't') => self.literal(b"true").map(|()| Value::Bool(true)),
            Some(b'f') => self.literal(b"false").map(|()| Value::Bool(false)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.syntax(EXPECTED_VALUE),
        }
    }

    #[inline(always)]
    fn literal<const N: usize>(&mut self, word: &[u8; N]) -> Result<(), Stop> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        if rest.first_chunk::<N>() != Some(word) {
            return self.syntax(EXPECTED_VALUE);
        }
        self.pos += N;
        Ok(())
    }

    /// A number, checked against the JSON grammar. The common shapes are decoded while
    /// scanning: integers of up to 18 digits, and decimals without exponent of up to 15 digits
    /// (exact mantissa divided by an exact power of ten: correctly rounded, the same f64 as
    /// `str::parse`). Anything else goes through `parse_number`.
    #[inline(always)]
    fn number(&mut self) -> Result<Value<'static>, Stop> {
        let start = self.pos;
        let shape = self.number_shape()?;
        if !shape.exponent {
            if shape.frac_digits > 0 && shape.int_digits + shape.frac_digits <= 15 {
                let v = shape.mantissa as f64 / POWERS_OF_TEN[shape.frac_digits];
                return Ok(Value::Float(if shape.negative { -v } else { v }));
            }
            if !shape.fraction && shape.int_digits <= 18 {
                let v = shape.mantissa;
                return Ok(Value::Int(if shape.negative { -v } else { v }));
            }
        }
        let text = self.bytes.get(start..self.pos).unwrap_or_default();
        // A number is ASCII.
        let text = std::str::from_utf8(text).map_err(|_| self.syntax_at(start, INVALID_NUMBER))?;
        parse_number(text).map_err(Stop::Invalid)
    }

    /// Moves past a number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`), collecting its
    /// digits (wrapping: callers bound the count).
    #[inline(always)]
    fn number_shape(&mut self) -> Result<NumberShape, Stop> {
        let negative = self.eat(b'-');
        let first = self.pos;
        let (mut mantissa, int_digits) = self.digits(0);
        if int_digits == 0 {
            return self.syntax(INVALID_NUMBER);
        }
        if int_digits > 1 && self.bytes.get(first) == Some(&b'0') {
            return Err(self.syntax_at(first + 1, INVALID_NUMBER));
        }
        let fraction = self.eat(b'.');
        let mut frac_digits = 0;
        if fraction {
            (mantissa, frac_digits) = self.digits(mantissa);
            if frac_digits == 0 {
                return self.syntax(INVALID_NUMBER);
            }
        }
        let exponent = matches!(self.peek(), Some(b'e' | b'E'));
        if exponent {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits(0).1 == 0 {
                return self.syntax(INVALID_NUMBER);
            }
        }
        Ok(NumberShape {
            negative,
            mantissa,
            int_digits,
            fraction,
            frac_digits,
            exponent,
        })
    }

    /// Moves past decimal digits, appending them to `value` (wrapping); returns the new value
    /// and how many digits there were.
    #[inline(always)]
    fn digits(&mut self, mut value: i64) -> (i64, usize) {
        let start = self.pos;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            value = value.wrapping_mul(10).wrapping_add(i64::from(digit - b'0'));
            self.pos += 1;
        }
        (value, self.pos - start)
    }

    /// The string at the cursor, decoded, moving past its closing quote: borrowed from the
    /// bytes when it has no escapes, else unescaped into the cursor's scratch text.
    #[inline(always)]
    pub(crate) fn string(&mut self) -> Result<&str, Stop> {
        let start = self.pos;
        self.expect(b'"', "expected a string")?;
        let body = self.string_body()?;
        let raw = self.bytes.get(start + 1..self.pos - 1).unwrap_or_default();
        let Some(text) = as_text(raw, body.ascii) else {
            return Err(self.utf8_error(start + 1, raw));
        };
        if !body.escaped {
            return Ok(text);
        }
        unescape(text, &mut self.scratch).map_err(|reason| {
            let quoted = self.bytes.get(start..self.pos).unwrap_or_default();
            Stop::Invalid(format!(
                "invalid string {}: {reason}",
                String::from_utf8_lossy(quoted)
            ))
        })?;
        Ok(&self.scratch)
    }

    #[cold]
    fn utf8_error(&self, start: usize, raw: &[u8]) -> Stop {
        let valid = std::str::from_utf8(raw)
            .err()
            .map_or(raw.len(), |e| e.valid_up_to());
        self.syntax_at(start + valid, INVALID_UTF8)
    }

    /// Moves past the rest of a string and its closing quote (the cursor is just after the
    /// opening quote), checking its escapes and that it holds no control character. Looks at
    /// 8 bytes at a time.
    #[inline(always)]
    fn string_body(&mut self) -> Result<Body, Stop> {
        let bytes = self.bytes;
        let mut pos = self.pos;
        let mut escaped = false;
        let mut high = 0u64;
        loop {
            while let Some(chunk) = bytes.get(pos..).and_then(|rest| rest.first_chunk::<8>()) {
                let word = u64::from_le_bytes(*chunk);
                let stops = zero_bytes(word ^ QUOTES)
                    | zero_bytes(word ^ BACKSLASHES)
                    | (word.wrapping_sub(CONTROLS) & !word & HIGH_BITS);
                if stops != 0 {
                    // The high bits of the bytes before the first stop.
                    high |= word & HIGH_BITS & (stops & stops.wrapping_neg()).wrapping_sub(1);
                    pos += (stops.trailing_zeros() / 8) as usize;
                    break;
                }
                high |= word & HIGH_BITS;
                pos += 8;
            }
            match bytes.get(pos) {
                Some(b'"') => {
                    self.pos = pos + 1;
                    return Ok(Body {
                        escaped,
                        ascii: high == 0,
                    });
                }
                Some(b'\\') => {
                    escaped = true;
                    pos = self.escape_end(pos + 1)?;
                }
                Some(0..=0x1f) => {
                    self.pos = pos;
                    return self.syntax("control character in a string");
                }
                Some(&byte) => {
                    high |= u64::from(byte & 0x80);
                    pos += 1;
                }
                None => {
                    self.pos = pos;
                    return self.syntax("unterminated string");
                }
            }
        }
    }

    /// Checks the escape whose backslash is just before `pos`; returns the offset after it.
    #[inline]
    fn escape_end(&self, pos: usize) -> Result<usize, Stop> {
        match self.bytes.get(pos) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(pos + 1),
            Some(b'u') => match self.bytes.get(pos + 1..pos + 5) {
                Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => Ok(pos + 5),
                Some(_) => Err(self.syntax_at(pos + 1, "invalid \\u escape")),
                None => Err(self.syntax_at(self.bytes.len(), "")),
            },
            _ => Err(self.syntax_at(pos, "invalid escape")),
        }
    }

    /// Moves past the value at the cursor (leading whitespace allowed), checking its syntax.
    /// Its strings are checked to be UTF-8 only when `utf8`: `serde_json` checks the values it
    /// hands out (rows), not the ones it skips. Nesting depth is bounded by memory only, as in
    /// `serde_json`.
    pub(crate) fn skip_value(&mut self, utf8: bool) -> Result<(), Stop> {
        self.open.clear();
        loop {
            // At a value.
            self.skip_ws();
            match self.peek() {
                Some(b'"') => self.skip_string(utf8)?,
                Some(open @ (b'{' | b'[')) => {
                    self.pos += 1;
                    self.skip_ws();
                    let close = if open == b'{' { b'}' } else { b']' };
                    if !self.eat(close) {
                        self.open.push(open);
                        if open == b'{' {
                            self.object_key(utf8)?;
                        }
                        continue;
                    }
                }
                Some(b'n') => self.literal(b"null")?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'-' | b'0'..=b'9') => {
                    self.number_shape()?;
                }
                _ => return self.syntax(EXPECTED_VALUE),
            }
            // After a value: close what it ended.
            loop {
                let Some(&open) = self.open.last() else {
                    return Ok(());
                };
                self.skip_ws();
                match (open, self.peek()) {
                    (_, Some(b',')) => {
                        self.pos += 1;
                        if open == b'{' {
                            self.object_key(utf8)?;
                        }
                        break;
                    }
                    (b'[', Some(b']')) | (b'{', Some(b'}')) => {
                        self.pos += 1;
                        self.open.pop();
                    }
                    (b'[', _) => return self.syntax("expected ',' or ']'"),
                    _ => return self.syntax("expected ',' or '}'"),
                }
            }
        }
    }

    /// Moves past an object key and its colon.
    fn object_key(&mut self, utf8: bool) -> Result<(), Stop> {
        self.skip_ws();
        if self.peek() != Some(b'"') {
            return self.syntax("expected a string key");
        }
        self.skip_string(utf8)?;
        self.skip_ws();
        self.expect(b':', "expected ':'")
    }

    /// Moves past the string at the cursor, checking it.
    fn skip_string(&mut self, utf8: bool) -> Result<(), Stop> {
        let start = self.pos + 1;
        self.pos = start;
        let body = self.string_body()?;
        if utf8 && !body.ascii {
            let raw = self.bytes.get(start..self.pos - 1).unwrap_or_default();
            if std::str::from_utf8(raw).is_err() {
                return Err(self.utf8_error(start, raw));
            }
        }
        Ok(())
    }
}

/// The parts of a number that decide its value.
struct NumberShape {
    negative: bool,
    /// The digits before and after the point, as one integer (wrapped beyond 18 digits).
    mantissa: i64,
    int_digits: usize,
    fraction: bool,
    frac_digits: usize,
    exponent: bool,
}

const EXPECTED_VALUE: &str = "expected a value";
const INVALID_NUMBER: &str = "invalid number";
const INVALID_UTF8: &str = "invalid UTF-8 in a string";

/// `bytes` as text; bytes the scan found to be ASCII need no second look.
#[inline(always)]
fn as_text(bytes: &[u8], ascii: bool) -> Option<&str> {
    if ascii {
        debug_assert!(bytes.is_ascii());
        // SAFETY: ASCII bytes are UTF-8. `ascii` comes from `Json::string_body`, which saw the
        // high bit of every byte of the string body.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// Unescapes a string body whose escapes are known to be well formed into `out`, as
/// `serde_json` does for a `String`: a `\u` surrogate must be half of a pair.
fn unescape(text: &str, out: &mut String) -> Result<(), &'static str> {
    const BAD: &str = "invalid escape";
    out.clear();
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(rest.get(..at).ok_or(BAD)?);
        let escape = rest.as_bytes().get(at + 1..).ok_or(BAD)?;
        let (ch, len) = match escape.first().ok_or(BAD)? {
            b'"' => ('"', 1),
            b'\\' => ('\\', 1),
            b'/' => ('/', 1),
            b'b' => ('\u{8}', 1),
            b'f' => ('\u{c}', 1),
            b'n' => ('\n', 1),
            b'r' => ('\r', 1),
            b't' => ('\t', 1),
            b'u' => {
                let unit = hex4(escape.get(1..5)).ok_or(BAD)?;
                match unit {
                    0xD800..=0xDBFF => {
                        let low = match escape.get(5..7) {
                            Some(b"\\u") => hex4(escape.get(7..11)).ok_or(BAD)?,
                            _ => return Err("lone leading surrogate in a \\u escape"),
                        };
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err("lone leading surrogate in a \\u escape");
                        }
                        let code = 0x1_0000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        (char::from_u32(code).ok_or(BAD)?, 11)
                    }
                    0xDC00..=0xDFFF => return Err("lone trailing surrogate in a \\u escape"),
                    _ => (char::from_u32(unit).ok_or(BAD)?, 5),
                }
            }
            _ => return Err(BAD),
        };
        out.push(ch);
        rest = rest.get(at + 1 + len..).ok_or(BAD)?;
    }
    out.push_str(rest);
    Ok(())
}

/// The value of 4 hex digits.
fn hex4(digits: Option<&[u8]>) -> Option<u32> {
    digits?.iter().try_fold(0, |acc, &d| {
        let digit = char::from(d).to_digit(16)?;
        Some(acc * 16 + digit)
    })
}

/// 10^0 ..= 10^15, all exact in f64.
const POWERS_OF_TEN: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = ONES << 7;
const QUOTES: u64 = ONES * b'"' as u64;
const BACKSLASHES: u64 = ONES * b'\\' as u64;
/// `word - CONTROLS & !word & HIGH_BITS` flags the bytes below 0x20.
const CONTROLS: u64 = ONES * 0x20;

/// The high bit of every zero byte of `word` set (exact for the lowest zero byte, which is
/// the only one used).
#[inline(always)]
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGH_BITS
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::value::RawValue;

    #[test]
    fn numbers_take_the_fast_and_the_slow_path() {
        let cases = [
            ("0", Some(0.0), true),
            ("-0", Some(0.0), true),
            ("123456789012345678", Some(123_456_789_012_345_678.0), true),
            ("0.000782", Some(0.000782), false),
            ("-4.5721", Some(-4.5721), false),
            ("123456789.123456", Some(123_456_789.123_456), false),
            ("1.5e3", Some(1500.0), false),
            ("1E-2", Some(0.01), false),
            ("-0.0", Some(-0.0), false),
        ];
        for (text, expected, int) in cases {
            match Json::new(text.as_bytes()).value() {
                Ok(Value::Int(v)) => assert!(int && Some(v as f64) == expected, "{text}"),
                Ok(Value::Float(v)) => {
                    assert!(
                        !int && expected.map(f64::to_bits) == Some(v.to_bits()),
                        "{text}"
                    )
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        for text in ["-", "01", "-01", "1.", ".5", "1e", "1e+", "+1", "-a"] {
            assert!(
                matches!(Json::new(text.as_bytes()).value(), Err(Stop::Syntax(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn strings_agree_with_serde_at_every_offset() {
        let specials: [&[u8]; 10] = [
            b"\x00",
            b"\x1f",
            b"\\n",
            b"\\u00e9",
            b"\\ud83d\\ude00",
            "é日".as_bytes(),
            b"\xff",
            b"\xc3",
            b"\\x",
            b"\\ud800",
        ];
        for len in 0..20 {
            for at in 0..=len {
                for special in specials {
                    let mut text = b"\"".to_vec();
                    text.extend(std::iter::repeat_n(b'a', at));
                    text.extend_from_slice(special);
                    text.extend(std::iter::repeat_n(b'b', len - at));
                    text.push(b'"');
                    let shown = String::from_utf8_lossy(&text).into_owned();
                    let expected = serde_json::from_slice::<String>(&text).ok();
                    // What follows the string must not change how it reads.
                    let mut followed = text.clone();
                    followed.extend_from_slice("é\x00\"".as_bytes());
                    let mut json = Json::new(&followed);
                    assert_eq!(json.string().ok().map(str::to_owned), expected, "{shown}");
                    let raw = serde_json::from_slice::<&RawValue>(&text).is_ok();
                    assert_eq!(Json::new(&text).skip_value(true).is_ok(), raw, "{shown}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn numbers_decode_like_std_parse(text in "-?(0|[1-9][0-9]{0,19})(\\.[0-9]{1,18})?([eE][+-]?[0-9]{1,3})?") {
            let mut json = Json::new(text.as_bytes());
            let decoded = json.value();
            let integral = !text.contains(['.', 'e', 'E']);
            match (text.parse::<i64>(), text.parse::<f64>()) {
                (Ok(int), _) if integral => prop_assert!(matches!(decoded, Ok(Value::Int(v)) if v == int)),
                (_, Ok(float)) if float.is_finite() => {
                    prop_assert!(matches!(decoded, Ok(Value::Float(v)) if v.to_bits() == float.to_bits()), "{:?}", decoded);
                }
                _ => prop_assert!(decoded.is_err()),
            }
        }
    }
}
