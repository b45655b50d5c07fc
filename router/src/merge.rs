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

/// Mid-move, a document can answer from its old shard and its new one, and the old copy may be
/// older (a write since went to the new shard only): where a document's home shard answered
/// for it, its hits from other shards are dropped. `lists` are (shard id, its hits).
pub fn keep_home_copies(lists: &mut [(u64, Vec<Hit>)], home: impl Fn(&str) -> u64) {
    let at_home: std::collections::HashSet<String> = lists
        .iter()
        .flat_map(|(shard, hits)| hits.iter().filter(|h| home(&h.id) == *shard).map(|h| h.id.clone()))
        .collect();
    for (shard, hits) in lists.iter_mut() {
        hits.retain(|h| home(&h.id) == *shard || !at_home.contains(&h.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documents_home_copy_wins_over_an_old_one() {
        let hit = |id: &str, score: f32| Hit { id: id.into(), score, shard: 0, ..Hit::default() };
        // "a" lives on shard 1 now, "b" on shard 0; "c" answers only from its old shard 0.
        let home = |id: &str| if id == "b" { 0 } else { 1 };
        let mut lists =
            vec![(0, vec![hit("a", 9.0), hit("b", 5.0), hit("c", 4.0)]), (1, vec![hit("a", 2.0), hit("b", 8.0)])];
        keep_home_copies(&mut lists, home);
        let got = merge(lists.into_iter().map(|(_, h)| h).collect(), 10);
        let got: Vec<(&str, f32)> = got.iter().map(|h| (h.id.as_str(), h.score)).collect();
        assert_eq!(got, [("b", 5.0), ("c", 4.0), ("a", 2.0)]);
    }
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
                .map(|(s, l)| l.into_iter().map(|(score, id)| Hit { id: format!("d{id:03}"), score: score as f32, shard: s as u32, ..Hit::default() }).collect())
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
