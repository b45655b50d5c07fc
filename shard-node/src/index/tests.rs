use super::*;
use crate::codec::TrainParams;
use crate::synthetic::{Collection, Spec};

/// Each document's centroid codes and packed residuals.
type Encoded = Vec<(Vec<u32>, Vec<u8>)>;

fn small_index(docs: usize, nbits: usize) -> (Collection, Index, Encoded) {
    let data =
        Collection::generate(&Spec { docs, tokens_per_doc: 30, centres: 128, dim: 64, seed: 2, ..Default::default() });
    let codec = Codec::train(&data.vectors, 64, TrainParams { nbits, ..Default::default() }).unwrap();
    let mut index = Index::new(codec.clone());
    let mut encoded = Vec::new();
    for i in 0..data.len() {
        let (codes, residuals) = codec.encode(data.doc(i)).unwrap();
        index.add(i as u32, &codes, &residuals).unwrap();
        encoded.push((codes, residuals));
    }
    (data, index, encoded)
}

/// MaxSim over vectors decoded one document at a time, in f64.
fn naive_exact(index: &Index, encoded: &[(Vec<u32>, Vec<u8>)], query: &[f32]) -> Vec<f64> {
    let (codec, dim) = (index.codec(), index.codec().dim);
    encoded
        .iter()
        .map(|(codes, residuals)| {
            let doc: Vec<Vec<f32>> = codes
                .iter()
                .zip(residuals.chunks_exact(codec.residual_bytes()))
                .map(|(&c, r)| {
                    let mut v = vec![0.0; dim];
                    codec.decode(c, r, &mut v);
                    v
                })
                .collect();
            query
                .chunks_exact(dim)
                .map(|q| {
                    doc.iter()
                        .map(|d| d.iter().zip(q).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>())
                        .fold(f64::MIN, f64::max)
                })
                .sum()
        })
        .collect()
}

#[test]
fn exact_mode_is_maxsim_over_decoded_vectors() {
    let (data, index, encoded) = small_index(120, 2);
    let queries = data.queries(3, 8, 0.3, 5);
    let refs: Vec<&[f32]> = queries.iter().map(|(_, q)| q.as_slice()).collect();
    let got = index.exact(&refs, 120, &|_| true).unwrap();
    for ((_, q), hits) in queries.iter().zip(&got) {
        let want = naive_exact(&index, &encoded, q);
        assert_eq!(hits.len(), 120);
        for h in hits {
            assert!(
                (h.score as f64 - want[h.doc as usize]).abs() < 1e-4,
                "doc {}: {} vs {}",
                h.doc,
                h.score,
                want[h.doc as usize]
            );
        }
    }
}

#[test]
fn deleted_and_filtered_documents_are_never_returned() {
    let (data, mut index, _) = small_index(100, 2);
    let (target, q) = &data.queries(1, 16, 0.2, 8)[0];
    let target = *target as u32;
    let params = SearchParams::for_k(10);
    assert_eq!(index.exact(&[q], 1, &|_| true).unwrap()[0][0].doc, target);
    assert!(index.candidates(q, &params, &|_| true).unwrap().iter().any(|h| h.doc == target));
    assert!(index.delete(target));
    assert!(!index.delete(target));
    assert_eq!(index.len(), 99);
    assert!(index.exact(&[q], 100, &|_| true).unwrap()[0].iter().all(|h| h.doc != target));
    assert!(index.candidates(q, &params, &|_| true).unwrap().iter().all(|h| h.doc != target));
    let even = |d: u32| d.is_multiple_of(2);
    assert!(index.exact(&[q], 100, &even).unwrap()[0].iter().all(|h| h.doc % 2 == 0));
    assert!(index.candidates(q, &params, &even).unwrap().iter().all(|h| h.doc % 2 == 0));
}

#[test]
fn bad_queries_and_documents_are_refused() {
    let (_, mut index, encoded) = small_index(20, 1);
    let params = SearchParams::for_k(10);
    assert!(index.candidates(&[], &params, &|_| true).is_err());
    assert!(index.candidates(&[0.0; 65], &params, &|_| true).is_err());
    assert!(index.candidates(&[f32::NAN; 64], &params, &|_| true).is_err());
    assert!(index.candidates(&[0.1; 64], &SearchParams { nprobe: 0, ..params }, &|_| true).is_err());
    let (codes, residuals) = &encoded[0];
    assert!(index.add(3, codes, residuals).is_err(), "a live id is taken");
    index.delete(3);
    assert!(index.add(3, codes, residuals).is_err(), "so is a deleted one until a compaction");
    assert!(index.add(50, codes, &residuals[1..]).is_err());
    assert!(index.add(50, &[u32::MAX], &residuals[..index.codec().residual_bytes()]).is_err());
}

#[test]
fn lookup_tables_give_the_dot_product_with_the_decoded_residual() {
    for nbits in [1, 2, 4] {
        let (data, index, encoded) = small_index(40, nbits);
        let codec = index.codec();
        let (dim, bytes) = (codec.dim, codec.residual_bytes());
        let query = &data.queries(1, 3, 0.2, 1)[0].1;
        let tables = index.lookup_tables(query);
        for (codes, residuals) in encoded.iter().take(5) {
            for (&c, r) in codes.iter().zip(residuals.chunks_exact(bytes)) {
                let centroid: Vec<f32> =
                    codec.centroids[c as usize * dim..][..dim].iter().map(|h| h.to_f32()).collect();
                let mut decoded = vec![0.0; dim];
                codec.decode(c, r, &mut decoded);
                for (i, q) in query.chunks_exact(dim).enumerate() {
                    let want: f64 =
                        q.iter().zip(decoded.iter().zip(&centroid)).map(|(q, (d, c))| *q as f64 * (d - c) as f64).sum();
                    let table = &tables[i * bytes * 256..];
                    let got: f32 = r.iter().enumerate().map(|(j, &b)| table[j * 256 + b as usize]).sum();
                    assert!((got as f64 - want).abs() < 1e-4, "{nbits} bits: {got} vs {want}");
                }
            }
        }
    }
}

#[test]
fn default_probing_grows_with_the_centroids() {
    assert_eq!(SearchParams::for_index(10, 8192), SearchParams::for_k(10));
    assert_eq!(SearchParams::for_index(10, 16_384).nprobe, 16);
    assert_eq!(SearchParams::for_index(10, 32_768).nprobe, 32);
    assert_eq!(SearchParams::for_index(100, 65_536), SearchParams { nprobe: 96, ..SearchParams::for_k(100) });
}

#[test]
fn ids_freed_by_a_compaction_take_new_documents_in_any_order() {
    let (data, mut index, encoded) = small_index(120, 2);
    // Delete the even documents, compact, and give their ids to the same documents shifted by
    // two: each run then steps back to smaller ids as well as forward.
    for d in (0..120).step_by(2) {
        index.delete(d);
    }
    let dead = index.dead_tokens();
    let (mut index, freed) = index.compacted();
    assert_eq!(freed, (0..120).step_by(2).collect::<Vec<u32>>());
    assert_eq!((index.dead_tokens(), index.len()), (0, 60));
    assert!(dead > 0 && freed.iter().all(|&d| index.is_vacant(d)) && !index.is_vacant(1));
    let mut now = encoded.clone();
    for &d in freed.iter().rev() {
        let from = (d as usize + 2) % 120;
        now[d as usize] = encoded[from].clone();
        index.add(d, &now[d as usize].0, &now[d as usize].1).unwrap();
    }
    assert_eq!((index.len(), index.tokens()), (120, now.iter().map(|(c, _)| c.len()).sum()));
    let queries = data.queries(4, 8, 0.3, 9);
    for (target, q) in &queries {
        let want = naive_exact(&index, &now, q);
        for h in &index.exact(&[q], 120, &|_| true).unwrap()[0] {
            assert!((h.score as f64 - want[h.doc as usize]).abs() < 1e-4, "doc {}", h.doc);
        }
        // The query's source document now lives (also) under the id two below it.
        let moved = ((*target + 118) % 120) as u32;
        let found = index.candidates(q, &SearchParams::for_k(10), &|_| true).unwrap();
        assert!(found.iter().any(|h| h.doc == moved || h.doc == *target as u32), "target {target}");
    }
}

/// The two passes of `candidates`, naively: per query token its probed centroids by a full
/// sort of its f64 centroid scores; each document's pass-1 estimate (best probed centroid
/// holding one of its tokens) and pass-2 estimate (best probed token, decoded, in f64), the
/// stand-in score where a query token probed none of its tokens.
fn naive_passes(index: &Index, encoded: &Encoded, query: &[f32], nprobe: usize) -> (Vec<f64>, Vec<f64>) {
    let (codec, dim, k) = (index.codec(), index.codec().dim, index.codec().k());
    let centroids: Vec<f32> = codec.centroids.iter().map(|x| x.to_f32()).collect();
    let scores: Vec<f64> = query
        .chunks_exact(dim)
        .flat_map(|q| {
            centroids.chunks_exact(dim).map(move |c| c.iter().zip(q).map(|(a, b)| *a as f64 * *b as f64).sum())
        })
        .collect();
    let probes: Vec<(Vec<usize>, f64)> = scores
        .chunks_exact(k)
        .map(|row| {
            let mut order: Vec<usize> = (0..k).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            (order[..nprobe].to_vec(), row[order[nprobe]])
        })
        .collect();
    let mut v = vec![0.0f32; dim];
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for (codes, residuals) in encoded {
        let (mut one, mut two) = (0.0, 0.0);
        for ((probed, missing), (q, row)) in probes.iter().zip(query.chunks_exact(dim).zip(scores.chunks_exact(k))) {
            let (mut best_centroid, mut best_token) = (*missing, *missing);
            for (&c, r) in codes.iter().zip(residuals.chunks_exact(codec.residual_bytes())) {
                if probed.contains(&(c as usize)) {
                    codec.decode(c, r, &mut v);
                    best_centroid = best_centroid.max(row[c as usize]);
                    best_token = best_token.max(v.iter().zip(q).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>());
                }
            }
            one += best_centroid;
            two += best_token;
        }
        first.push(one);
        second.push(two);
    }
    (first, second)
}

#[test]
fn candidates_are_the_best_refined_of_the_best_by_centroid_interaction() {
    let (data, index, encoded) = small_index(120, 2);
    for (_, q) in data.queries(4, 8, 0.3, 11) {
        let (first, second) = naive_passes(&index, &encoded, &q, 4);
        // Few candidates: pass 1 keeps 4 × 5 of the documents it met.
        let params = SearchParams { k: 5, nprobe: 4, candidates: 5 };
        let found = index.candidates(&q, &params, &|_| true).unwrap();
        assert_eq!(found.len(), 5);
        let mut by_first = first.clone();
        by_first.sort_by(|a, b| b.total_cmp(a));
        let kept_bar = by_first[4 * 5 - 1];
        for h in &found {
            let doc = h.doc as usize;
            assert!(first[doc] >= kept_bar - 1e-4, "doc {doc} was not among pass 1's best");
            assert!((h.score as f64 - second[doc]).abs() < 1e-4, "doc {doc}: {} vs {}", h.score, second[doc]);
        }
        // Every document pass 1 kept and pass 2 left out scores no better than the last found.
        let worst = found.iter().map(|h| h.score as f64).fold(f64::INFINITY, f64::min);
        for doc in (0..120).filter(|&d| first[d] > kept_bar + 1e-4 && !found.iter().any(|h| h.doc as usize == d)) {
            assert!(second[doc] <= worst + 1e-4, "doc {doc} ({}) beats a candidate ({worst})", second[doc]);
        }
        // Candidates enough for every document: pass 2's estimate for each, in order.
        let all = index.candidates(&q, &SearchParams { candidates: 120, ..params }, &|_| true).unwrap();
        for pair in all.windows(2) {
            assert!(pair[0].score >= pair[1].score);
        }
        for h in &all {
            assert!((h.score as f64 - second[h.doc as usize]).abs() < 1e-4, "doc {}", h.doc);
        }
    }
}
