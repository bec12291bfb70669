//! The Parquet codec of an export, as users name it (`--compression`, the jobs file's
//! `compression`) and as the manifest records it: one value from the flag to the writer and
//! the manifest, so they cannot disagree.

use std::fmt;
use std::str::FromStr;

use parquet::basic::{Compression, GzipLevel, ZstdLevel};

/// zstd's level when none is given: DuckDB's and Spark's default too.
const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// gzip's level when none is given (zlib's default).
const DEFAULT_GZIP_LEVEL: u32 = 6;

/// A Parquet codec: `zstd[:LEVEL]` (1 to 22, default 3), `gzip[:LEVEL]` (0 to 9, default 6),
/// `snappy`, `lz4` or `none`. Shown as the manifest records it, e.g. `zstd(3)`.
///
/// ```
/// # use kargo_export::sink::Codec;
/// assert_eq!("zstd".parse::<Codec>().unwrap().to_string(), "zstd(3)");
/// assert_eq!("ZSTD:9".parse::<Codec>().unwrap().to_string(), "zstd(9)");
/// assert!("zstd:23".parse::<Codec>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec(Compression);

impl Codec {
    /// The codec for the Parquet writer.
    pub fn compression(self) -> Compression {
        self.0
    }
}

impl Default for Codec {
    fn default() -> Self {
        Codec(Compression::ZSTD(
            ZstdLevel::try_new(DEFAULT_ZSTD_LEVEL).expect("a valid zstd level"),
        ))
    }
}

impl FromStr for Codec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let (name, level) = match lower.split_once(':') {
            Some((name, level)) => (name, Some(level)),
            None => (lower.as_str(), None),
        };
        let level_of = |range: &str| -> Result<Option<i64>, String> {
            level
                .map(|l| {
                    l.trim().parse::<i64>().map_err(|_| {
                        format!("{text:?}: the level of {name} must be a number {range}")
                    })
                })
                .transpose()
        };
        let bad_level =
            |range: &str, level: i64| format!("{text:?}: {name} level {level} is not {range}");
        let compression = match name {
            "zstd" => {
                let level = level_of("from 1 to 22")?.unwrap_or(DEFAULT_ZSTD_LEVEL.into());
                let valid = i32::try_from(level).ok().filter(|l| (1..=22).contains(l));
                let level = valid.ok_or_else(|| bad_level("from 1 to 22", level))?;
                Compression::ZSTD(ZstdLevel::try_new(level).map_err(|e| e.to_string())?)
            }
            "gzip" => {
                let level = level_of("from 0 to 9")?.unwrap_or(DEFAULT_GZIP_LEVEL.into());
                let valid = u32::try_from(level).ok().filter(|l| *l <= 9);
                let level = valid.ok_or_else(|| bad_level("from 0 to 9", level))?;
                Compression::GZIP(GzipLevel::try_new(level).map_err(|e| e.to_string())?)
            }
            "snappy" | "lz4" | "none" if level.is_some() => {
                return Err(format!("{text:?}: {name} takes no level"));
            }
            "snappy" => Compression::SNAPPY,
            "lz4" => Compression::LZ4_RAW,
            "none" => Compression::UNCOMPRESSED,
            _ => {
                return Err(format!(
                    "unknown compression {text:?}: expected zstd[:LEVEL], gzip[:LEVEL], snappy, lz4 or none"
                ));
            }
        };
        Ok(Codec(compression))
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Compression::ZSTD(level) => write!(f, "zstd({})", level.compression_level()),
            Compression::GZIP(level) => write!(f, "gzip({})", level.compression_level()),
            Compression::SNAPPY => f.write_str("snappy"),
            Compression::LZ4_RAW => f.write_str("lz4"),
            Compression::UNCOMPRESSED => f.write_str("none"),
            other => write!(f, "{other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_levels_parse_and_show_as_the_manifest_records_them() {
        let shown = |text: &str| text.parse::<Codec>().map(|c| c.to_string());
        assert_eq!(shown("zstd").unwrap(), "zstd(3)");
        assert_eq!(shown(" Zstd:1 ").unwrap(), "zstd(1)");
        assert_eq!(shown("zstd:22").unwrap(), "zstd(22)");
        assert_eq!(shown("gzip").unwrap(), "gzip(6)");
        assert_eq!(shown("gzip:9").unwrap(), "gzip(9)");
        assert_eq!(shown("snappy").unwrap(), "snappy");
        assert_eq!(shown("lz4").unwrap(), "lz4");
        assert_eq!(shown("none").unwrap(), "none");
        assert_eq!(Codec::default().to_string(), "zstd(3)");
        assert_eq!(
            "zstd".parse::<Codec>().unwrap().compression(),
            Codec::default().compression()
        );
    }

    #[test]
    fn bad_names_and_levels_are_refused_with_what_was_expected() {
        let error = |text: &str| text.parse::<Codec>().unwrap_err();
        assert_eq!(
            error("brotli"),
            "unknown compression \"brotli\": expected zstd[:LEVEL], gzip[:LEVEL], snappy, lz4 or none"
        );
        assert_eq!(
            error("zstd:0"),
            "\"zstd:0\": zstd level 0 is not from 1 to 22"
        );
        assert_eq!(
            error("zstd:x"),
            "\"zstd:x\": the level of zstd must be a number from 1 to 22"
        );
        assert_eq!(
            error("gzip:10"),
            "\"gzip:10\": gzip level 10 is not from 0 to 9"
        );
        assert_eq!(error("snappy:1"), "\"snappy:1\": snappy takes no level");
    }
}
