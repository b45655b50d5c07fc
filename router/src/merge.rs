//! Merging shards' hits: score descending, ties by document id, the first k.

use proto::v1::Hit;

fn better(a: &Hit, b: &Hit) -> std::cmp::Ordering {
    b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id))
}

/// The `k` best of all lists (each already sorted or not).
pub fn merge(lists: Vec<Vec<Hit>>, k: usize) -> Vec<Hit> {
    let mut all: Vec<Hit> = lists.into_iter().flatten().collect();
    // A document being moved to an added shard can answer from both: keep its best hit.
    all.sort_unstable_by(|a, b| a.id.cmp(&b.id).then_with(|| better(a, b)));
    all.dedup_by(|later, first| later.id == first.id);
    if all.len() > k && k > 0 {
        all.select_nth_unstable_by(k - 1, better);
    }
    all.truncate(k);
    all.sort_unstable_by(better);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn merge_is_dedup_sort_and_truncate(
            lists in proptest::collection::vec(proptest::collection::vec((0u8..6, 0u32..50), 0..40), 0..5),
            k in 0usize..60,
        ) {
            let lists: Vec<Vec<Hit>> = lists
                .into_iter()
                .enumerate()
                .map(|(s, l)| l.into_iter().map(|(score, id)| Hit { id: format!("d{id:03}"), score: score as f32, shard: s as u32 }).collect())
                .collect();
            // Each id once, at its best score.
            let mut best: std::collections::BTreeMap<&str, f32> = std::collections::BTreeMap::new();
            for h in lists.iter().flatten() {
                let s = best.entry(h.id.as_str()).or_insert(h.score);
                *s = s.max(h.score);
            }
            let mut naive: Vec<(String, f32)> = best.into_iter().map(|(id, s)| (id.to_string(), s)).collect();
            naive.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
            naive.truncate(k);
            let got = merge(lists, k);
            prop_assert_eq!(got.iter().map(|h| (h.id.clone(), h.score)).collect::<Vec<_>>(), naive);
        }
    }
}
