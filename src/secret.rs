//! A wrapper for passwords and tokens. It never prints its content: `Debug` and `Display` show
//! `[redacted]`, so a secret that ends up in a log line or an error message by mistake is still
//! hidden. The raw value is reached only through [`Secret::expose`], used where the secret goes
//! on the wire (the login body and the `Authorization` header).

use std::fmt;
use std::path::Path;

/// A password or bearer token.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The content of a secret file (`--password-file`, a jobs file's `password_file`)
    /// without its trailing line break; an unreadable or empty file is an error naming the
    /// path, never the content.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value = text.trim_end_matches(['\r', '\n']);
        if value.is_empty() {
            return Err(format!("{} is empty", path.display()));
        }
        Ok(Secret::new(value))
    }

    /// The raw value, for the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
        assert_eq!(secret.expose(), "hunter2");
    }
}
