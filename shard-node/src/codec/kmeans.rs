//! k-means for the codec's centroids: K starting points sampled from the data, then a fixed
//! budget of Lloyd iterations. Assignment is the costly part (n × K dot products), so it is a
//! matrix product on all cores: nearest by L2 is the largest `x·c − |c|²/2`.

use rayon::prelude::*;

use kernels::cpu::{argmax, Dense};

use crate::rng::Rng;
use crate::{Error, Result};

/// Vectors scored together, and centroids per block: one block's packed weight (512 KiB at
/// dim 128) and the chunk's scores against it (1 MiB) stay in L2, and a running best per
/// vector replaces a full score matrix.
const CHUNK_ROWS: usize = 256;
const BLOCK: usize = 1024;

/// The nearest centroid of each vector (`vectors` `[n, dim]`, `centroids` `[k, dim]`).
pub fn assign(vectors: &[f32], centroids: &[f32], dim: usize) -> Result<Vec<u32>> {
    let k = centroids.len() / dim;
    if k == 0 || !centroids.len().is_multiple_of(dim) || !vectors.len().is_multiple_of(dim) {
        return Err(Error::BadInput(format!("assign: {} centroid values for dim {dim}", centroids.len())));
    }
    let blocks: Vec<Dense> = centroids
        .chunks(BLOCK * dim)
        .map(|block| {
            let bias = block.chunks_exact(dim).map(|c| -0.5 * c.iter().map(|x| x * x).sum::<f32>()).collect();
            Dense::new(block.to_vec(), Some(bias), block.len() / dim, dim)
        })
        .collect::<Result<_, _>>()?;
    let chunks: Vec<Vec<u32>> = vectors
        .par_chunks(CHUNK_ROWS * dim)
        .map_init(Vec::new, |scores, chunk| {
            // Assignment is the bulk of a write's or a retraining's CPU work: searches first.
            crate::give_way::step();
            let n = chunk.len() / dim;
            let mut best = vec![(f32::NEG_INFINITY, 0u32); n];
            for (b, dense) in blocks.iter().enumerate() {
                scores.resize(n * dense.out, 0.0);
                dense.forward_into(chunk, n, scores)?;
                for (row, best) in scores.chunks_exact(dense.out).zip(&mut best) {
                    let j = argmax(row);
                    if row[j as usize] > best.0 {
                        *best = (row[j as usize], (b * BLOCK) as u32 + j);
                    }
                }
            }
            Ok(best.into_iter().map(|(_, c)| c).collect())
        })
        .collect::<Result<_>>()?;
    Ok(chunks.concat())
}

/// `k` centroids `[k, dim]` of `vectors` after `iterations` Lloyd steps from `k` distinct
/// sampled vectors. A centroid that loses all its points restarts at a random vector.
pub fn kmeans(vectors: &[f32], dim: usize, k: usize, iterations: usize, seed: u64) -> Result<Vec<f32>> {
    let n = vectors.len() / dim;
    if k == 0 || k > n {
        return Err(Error::BadInput(format!("k-means: {k} centroids from {n} vectors")));
    }
    let mut rng = Rng::new(seed);
    let mut centroids: Vec<f32> =
        rng.sample(n, k).into_iter().flat_map(|i| vectors[i * dim..(i + 1) * dim].iter().copied()).collect();
    for iteration in 0..iterations {
        let started = std::time::Instant::now();
        let codes = assign(vectors, &centroids, dim)?;
        let mut sums = vec![0.0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (v, &c) in vectors.chunks_exact(dim).zip(&codes) {
            counts[c as usize] += 1;
            for (s, &x) in sums[c as usize * dim..][..dim].iter_mut().zip(v) {
                *s += x as f64;
            }
        }
        let mut empty = 0;
        for (c, centroid) in centroids.chunks_exact_mut(dim).enumerate() {
            if counts[c] == 0 {
                empty += 1;
                let i = rng.below(n);
                centroid.copy_from_slice(&vectors[i * dim..(i + 1) * dim]);
            } else {
                for (x, s) in centroid.iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                    *x = (s / counts[c] as f64) as f32;
                }
            }
        }
        tracing::info!(
            iteration = iteration + 1,
            of = iterations,
            vectors = n,
            k,
            empty,
            ms = started.elapsed().as_millis() as u64,
            "k-means"
        );
    }
    Ok(centroids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_assign(vectors: &[f32], centroids: &[f32], dim: usize) -> Vec<u32> {
        vectors
            .chunks_exact(dim)
            .map(|v| {
                let d = |c: &[f32]| c.iter().zip(v).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>();
                let all: Vec<f64> = centroids.chunks_exact(dim).map(d).collect();
                (0..all.len()).min_by(|&a, &b| all[a].total_cmp(&all[b])).unwrap() as u32
            })
            .collect()
    }

    #[test]
    fn assignment_is_the_nearest_centroid() {
        let mut rng = Rng::new(5);
        let dim = 16;
        let vectors: Vec<f32> = (0..3000 * dim).map(|_| rng.normal()).collect();
        let centroids: Vec<f32> = (0..37 * dim).map(|_| rng.normal()).collect();
        let got = assign(&vectors, &centroids, dim).unwrap();
        let want = naive_assign(&vectors, &centroids, dim);
        // Distances within float rounding of each other may pick either; nearly all agree.
        let same = got.iter().zip(&want).filter(|(a, b)| a == b).count();
        assert!(same >= 2995, "{same} of 3000");
    }

    #[test]
    fn kmeans_finds_separated_clusters() {
        let mut rng = Rng::new(9);
        let dim = 8;
        let centres: Vec<Vec<f32>> =
            (0..4).map(|c| (0..dim).map(|d| if d == c { 10.0 } else { 0.0 }).collect()).collect();
        let vectors: Vec<f32> =
            (0..400).flat_map(|i| centres[i % 4].iter().map(|x| x + 0.1 * rng.normal()).collect::<Vec<_>>()).collect();
        let centroids = kmeans(&vectors, dim, 4, 10, 1).unwrap();
        for centre in &centres {
            let nearest = centroids
                .chunks_exact(dim)
                .map(|c| c.iter().zip(centre).map(|(a, b)| (a - b).powi(2)).sum::<f32>())
                .fold(f32::INFINITY, f32::min);
            assert!(nearest < 0.05, "{nearest}");
        }
        assert!(kmeans(&vectors, dim, 401, 1, 1).is_err());
    }
}
