//! Merging shards' hits: score descending, ties by document id, the first k.

use proto::v1::Hit;

fn better(a: &Hit, b: &Hit) -> std::cmp::Ordering {
    b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id))
}

/// The `k` best of all lists (each already sorted or not).
pub fn merge(lists: Vec<Vec<Hit>>, k: usize) -> Vec<Hit> {
    let mut all: Vec<Hit> = lists.into_iter().flatten().collect();
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
        fn merge_is_sort_and_truncate(
            lists in proptest::collection::vec(proptest::collection::vec((0u8..6, 0u32..50), 0..40), 0..5),
            k in 0usize..60,
        ) {
            let lists: Vec<Vec<Hit>> = lists
                .into_iter()
                .enumerate()
                .map(|(s, l)| l.into_iter().map(|(score, id)| Hit { id: format!("d{id:03}"), score: score as f32, shard: s as u32 }).collect())
                .collect();
            let mut naive: Vec<Hit> = lists.iter().flatten().cloned().collect();
            naive.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap().then(a.id.cmp(&b.id)));
            naive.truncate(k);
            let got = merge(lists, k);
            prop_assert_eq!(got.iter().map(|h| (&h.id, h.score)).collect::<Vec<_>>(), naive.iter().map(|h| (&h.id, h.score)).collect::<Vec<_>>());
        }
    }
}
