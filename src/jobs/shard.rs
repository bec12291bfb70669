//! Fan-out over N workers: which worker exports which report. A report goes to worker
//! `fnv1a64(key) mod N`, a hash that is the same on every machine, every build and every run
//! (unlike Rust's randomly keyed `DefaultHasher`), so N workers that each list the reports
//! themselves split them without talking to each other, and every report is exported by exactly
//! one of them. The index comes from `--shard K/N`, or from the index variable a scheduler sets
//! (Kubernetes Indexed Jobs, AWS Batch array jobs) with N from `--shards`.

use crate::error::{Error, Result};

/// Index variables of schedulers that run one command N times, in the order they are tried.
pub const INDEX_VARIABLES: &[&str] = &["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"];

/// This worker's part of a run: worker `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole run: one worker.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// The shard from `--shard K/N`, else from `--shards N` with the index from the first of
    /// [`INDEX_VARIABLES`] that is set (read through `env`), else the whole run.
    pub fn resolve(
        flag: Option<&str>,
        shards: Option<u32>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        if let Some(text) = flag {
            if shards.is_some() {
                return Err(Error::Usage(
                    "give --shard K/N or --shards N, not both".into(),
                ));
            }
            let (index, count) = text
                .split_once('/')
                .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)))
                .ok_or_else(|| {
                    Error::Usage(format!("--shard {text:?}: expected K/N such as 0/4"))
                })?;
            return Self::new(index, count, "--shard");
        }
        let Some(count) = shards else {
            return Ok(Self::ALL);
        };
        let Some((variable, value)) = INDEX_VARIABLES
            .iter()
            .find_map(|name| env(name).map(|value| (*name, value)))
        else {
            return Err(Error::Usage(format!(
                "--shards {count} needs this worker's index: --shard K/{count}, or {} set",
                INDEX_VARIABLES.join(" or ")
            )));
        };
        let index = value.trim().parse().map_err(|_| {
            Error::Usage(format!(
                "{variable}={value:?} is not a worker index (0, 1, ...)"
            ))
        })?;
        Self::new(index, count, variable)
    }

    fn new(index: u32, count: u32, source: &str) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(Error::Usage(format!(
                "{source}: worker index {index} is not below the number of workers {count}"
            )));
        }
        Ok(Shard { index, count })
    }

    /// Whether the report (or job) with this key is this worker's.
    pub fn owns(&self, key: &str) -> bool {
        fnv1a64(key.as_bytes()) % u64::from(self.count) == u64::from(self.index)
    }
}

/// 64-bit FNV-1a: small, stable and well spread over short ids.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_hash_is_fixed() {
        // Published FNV-1a 64 test vectors: a change here would move reports between workers.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn every_key_has_exactly_one_owner_and_owners_are_spread() {
        for count in 1..=5 {
            let shards: Vec<Shard> = (0..count).map(|index| Shard { index, count }).collect();
            let mut per_shard = vec![0; count as usize];
            for n in 0..1000 {
                let key = format!("rpt_{n:06x}");
                let owners: Vec<u32> = shards
                    .iter()
                    .filter(|s| s.owns(&key))
                    .map(|s| s.index)
                    .collect();
                assert_eq!(owners.len(), 1, "{key} in {count} shards: {owners:?}");
                per_shard[owners[0] as usize] += 1;
            }
            let fair = 1000 / count as usize;
            assert!(
                per_shard
                    .iter()
                    .all(|&n| n > fair * 7 / 10 && n < fair * 13 / 10),
                "{count} shards: {per_shard:?}"
            );
        }
    }

    #[test]
    fn resolves_the_flag_then_the_scheduler_variables() {
        assert_eq!(Shard::resolve(None, None, no_env).unwrap(), Shard::ALL);
        assert_eq!(
            Shard::resolve(Some("2/3"), None, no_env).unwrap(),
            Shard { index: 2, count: 3 }
        );
        let k8s = |name: &str| (name == "JOB_COMPLETION_INDEX").then(|| "1".to_string());
        assert_eq!(
            Shard::resolve(None, Some(4), k8s).unwrap(),
            Shard { index: 1, count: 4 }
        );
        let batch = |name: &str| (name == "AWS_BATCH_JOB_ARRAY_INDEX").then(|| "3".to_string());
        assert_eq!(
            Shard::resolve(None, Some(4), batch).unwrap(),
            Shard { index: 3, count: 4 }
        );
        // Without --shards the variables are ignored: a lone Indexed Job exports everything.
        assert_eq!(Shard::resolve(None, None, k8s).unwrap(), Shard::ALL);
    }

    #[test]
    fn bad_shards_are_usage_errors() {
        let bad_index = |_: &str| Some("x".to_string());
        let cases = [
            Shard::resolve(Some("3/3"), None, no_env),
            Shard::resolve(Some("1/0"), None, no_env),
            Shard::resolve(Some("1"), None, no_env),
            Shard::resolve(Some("0/2"), Some(2), no_env),
            Shard::resolve(None, Some(2), no_env),
            Shard::resolve(None, Some(2), bad_index),
        ];
        for case in cases {
            assert!(matches!(case, Err(Error::Usage(_))), "{case:?}");
        }
    }
}
