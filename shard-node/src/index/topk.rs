//! Top-k selection: the k best `(doc, score)` pairs, best first, ties by lower doc id, so
//! results are deterministic.

use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub doc: u32,
    pub score: f32,
}

/// Best first: higher score, then lower doc id. NaN sorts last.
pub fn rank(a: &Hit, b: &Hit) -> Ordering {
    b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc))
}

/// The `k` best hits, sorted: a partial selection (O(n)) and a sort of only the k kept.
pub fn top_k(mut hits: Vec<Hit>, k: usize) -> Vec<Hit> {
    if k == 0 {
        return Vec::new();
    }
    if hits.len() > k {
        hits.select_nth_unstable_by(k - 1, rank);
        hits.truncate(k);
    }
    hits.sort_unstable_by(rank);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn top_k_equals_sort_and_truncate(
            scores in proptest::collection::vec(-4i32..4, 0..300),
            k in 0usize..40,
        ) {
            // Few distinct scores, so ties are common and their order is tested.
            let hits: Vec<Hit> = scores.iter().enumerate().map(|(i, &s)| Hit { doc: (i * 7 % 301) as u32, score: s as f32 * 0.5 }).collect();
            let mut naive = hits.clone();
            naive.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap().then(a.doc.cmp(&b.doc)));
            naive.truncate(k);
            prop_assert_eq!(top_k(hits, k), naive);
        }
    }
}
