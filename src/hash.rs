//! FNV-1a, a small fast hash for short values (partition keys, sampled column values). Not
//! for anything an attacker chooses to collide: a collision only costs a bucket's balance or
//! an estimate's precision.

/// The FNV-1a starting value.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continues `hash` with a tag byte, `bytes` and their length (so that `"ab", "c"` and
/// `"a", "bc"` differ).
pub fn fnv1a(hash: u64, tag: u8, bytes: &[u8]) -> u64 {
    let mut hash = (hash ^ u64::from(tag)).wrapping_mul(FNV_PRIME);
    for &b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    (hash ^ bytes.len() as u64).wrapping_mul(FNV_PRIME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_lengths_and_bytes_all_count() {
        let one = |tag, bytes: &[u8]| fnv1a(FNV_OFFSET, tag, bytes);
        assert_eq!(one(1, b"x"), one(1, b"x"));
        assert_ne!(one(1, b"x"), one(2, b"x"));
        assert_ne!(one(1, b"x"), one(1, b"y"));
        let split = |a: &[u8], b: &[u8]| fnv1a(fnv1a(FNV_OFFSET, 1, a), 1, b);
        assert_ne!(split(b"ab", b"c"), split(b"a", b"bc"));
    }
}
