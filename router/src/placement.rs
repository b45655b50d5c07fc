//! Which shard holds a document: jump consistent hash (Lamping & Veach) of a stable 64-bit
//! FNV-1a hash of its id. Adding a shard moves only the documents that now belong to it.

/// FNV-1a, 64 bits: stable across builds and platforms (std's hasher is not).
pub fn hash_id(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The bucket in `0..buckets` (buckets ≥ 1) of `key`.
pub fn jump_consistent_hash(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

/// The shard of document `id` among `shards`.
pub fn shard_of(id: &str, shards: usize) -> usize {
    jump_consistent_hash(hash_id(id), shards.max(1) as u32) as usize
}

/// `items` grouped by the shard (id) `shard` gives each, in shard order; items it gives none
/// are left out.
pub(crate) fn group_by<T>(
    items: impl IntoIterator<Item = T>,
    shard: impl Fn(&T) -> Option<u64>,
) -> std::collections::BTreeMap<u64, Vec<T>> {
    let mut groups: std::collections::BTreeMap<u64, Vec<T>> = Default::default();
    for item in items {
        if let Some(s) = shard(&item) {
            groups.entry(s).or_default().push(item);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_stable_balanced_and_moves_little() {
        // Known values of FNV-1a (the empty string is the offset basis).
        assert_eq!(hash_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash_id("a"), 0xaf63_dc4c_8601_ec8c);
        let ids: Vec<String> = (0..30_000).map(|i| format!("doc-{i}")).collect();
        let mut counts = [0usize; 3];
        for id in &ids {
            counts[shard_of(id, 3)] += 1;
        }
        assert!(counts.iter().all(|&c| (9_000..11_000).contains(&c)), "{counts:?}");
        // Growing 3 → 4 shards moves about a quarter, and only onto the new shard.
        let moved: Vec<usize> =
            ids.iter().filter(|id| shard_of(id, 3) != shard_of(id, 4)).map(|id| shard_of(id, 4)).collect();
        assert!(moved.iter().all(|&s| s == 3));
        assert!((6_500..8_500).contains(&moved.len()), "{}", moved.len());
        assert_eq!(shard_of("x", 1), 0);
    }
}
