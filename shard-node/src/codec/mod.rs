//! The shard's codec: K centroids (k-means) and a residual quantiser. A token is stored as its
//! centroid's number and `dim·nbits/8` bytes of residual buckets; it decodes to
//! `centroid + bucket weights`. Centroids are kept in f16: at 16·√tokens of them they would
//! otherwise cost 4 bytes per token; the residuals are fitted against the rounded centroids,
//! so the rounding is absorbed, not added.

mod kmeans;
mod nearest;
mod quantizer;

pub use kmeans::{assign, kmeans};
pub use nearest::Nearest;
pub use quantizer::Quantizer;

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::rng::Rng;
use crate::{Error, Result};

/// How a codec is trained.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainParams {
    pub nbits: usize,
    pub iterations: usize,
    /// k-means sees at most this many vectors per centroid.
    pub sample_per_centroid: usize,
    pub seed: u64,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams { nbits: 2, iterations: 4, sample_per_centroid: 32, seed: 17 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Codec {
    pub dim: usize,
    /// `[k, dim]`.
    pub centroids: Vec<f16>,
    pub quantizer: Quantizer,
}

/// K for `tokens` vectors: PLAID's rule (colbert-ai, fast-plaid), the power of two at or below
/// 16·√tokens, but at least 16 vectors per centroid. (Rounding to the nearest power of two
/// instead doubles K from 2.1 M tokens to 4.2 M and from 8.4 M to 16.8 M, and with it the
/// retraining's cost; 1 M tokens at 8,192 centroids already had recall@10 1.000.)
pub fn centroid_count(tokens: usize) -> usize {
    let target = (16.0 * (tokens as f64).sqrt()).max(1.0) as usize;
    let most = (tokens / 16).max(1);
    1 << target.min(most).ilog2()
}

impl Codec {
    /// Trains on `vectors` `[n, dim]` with K for `n` tokens (`centroid_count`).
    pub fn train(vectors: &[f32], dim: usize, params: TrainParams) -> Result<Codec> {
        let n = vectors.len().checked_div(dim).unwrap_or(0);
        Codec::train_k(vectors, dim, params, centroid_count(n))
    }

    /// Trains `k` centroids on `vectors` `[n, dim]` (a sample of a larger collection, when
    /// retraining): k-means on at most `k · sample_per_centroid` of them, then the quantiser on
    /// the residuals of vectors k-means did not see (all of them when there are too few to
    /// hold any out).
    pub fn train_k(vectors: &[f32], dim: usize, params: TrainParams, k: usize) -> Result<Codec> {
        let n = vectors.len().checked_div(dim).unwrap_or(0);
        if n < 16 || !vectors.len().is_multiple_of(dim) {
            return Err(Error::BadInput(format!("training needs at least 16 vectors of dim {dim}, got {n}")));
        }
        let k = k.clamp(1, 1 << (n / 16).max(1).ilog2());
        let mut rng = Rng::new(params.seed);
        let order = rng.sample(n, n);
        let sample_n = (k * params.sample_per_centroid).min(n);
        let held_n = (n - sample_n).min(50_000);
        let gather = |ids: &[usize]| -> Vec<f32> {
            ids.iter().flat_map(|&i| vectors[i * dim..(i + 1) * dim].iter().copied()).collect()
        };
        let sample = gather(&order[..sample_n]);
        tracing::info!(vectors = n, k, sample = sample_n, held_out = held_n, nbits = params.nbits, "training codec");
        let centroids: Vec<f16> =
            kmeans(&sample, dim, k, params.iterations, params.seed)?.into_iter().map(f16::from_f32).collect();
        let rounded = to_f32(&centroids);
        let held = if held_n > 0 { gather(&order[sample_n..sample_n + held_n]) } else { sample };
        let codes = assign(&held, &rounded, dim)?;
        let residuals: Vec<f32> = held
            .chunks_exact(dim)
            .zip(&codes)
            .flat_map(|(v, &c)| v.iter().zip(&rounded[c as usize * dim..]).map(|(x, c)| x - c).collect::<Vec<_>>())
            .collect();
        let quantizer = Quantizer::fit(&residuals, dim, params.nbits)?;
        Ok(Codec { dim, centroids, quantizer })
    }

    pub fn k(&self) -> usize {
        self.centroids.len() / self.dim
    }

    /// Bytes the codec holds in memory.
    pub fn memory(&self) -> usize {
        let table = self.quantizer.table.get().map_or(0, Vec::len);
        self.centroids.len() * 2 + (self.quantizer.cutoffs.len() + self.quantizer.weights.len() + table) * 4
    }

    /// Residual bytes per token.
    pub fn residual_bytes(&self) -> usize {
        self.quantizer.bytes()
    }

    /// Encodes `vectors` `[n, dim]`: each one's centroid and packed residual.
    pub fn encode(&self, vectors: &[f32]) -> Result<(Vec<u32>, Vec<u8>)> {
        if !vectors.len().is_multiple_of(self.dim) {
            return Err(Error::BadInput(format!("{} values are not whole vectors of dim {}", vectors.len(), self.dim)));
        }
        let centroids = to_f32(&self.centroids);
        let codes = assign(vectors, &centroids, self.dim)?;
        let bytes = self.residual_bytes();
        let mut residuals = vec![0u8; codes.len() * bytes];
        let mut r = vec![0.0f32; self.dim];
        for ((v, &c), out) in vectors.chunks_exact(self.dim).zip(&codes).zip(residuals.chunks_exact_mut(bytes)) {
            for ((r, x), c) in r.iter_mut().zip(v).zip(&centroids[c as usize * self.dim..]) {
                *r = x - c;
            }
            self.quantizer.encode(&r, out);
        }
        Ok((codes, residuals))
    }

    /// One token back: `centroid + decoded residual`, into `out` (`dim` values).
    pub fn decode(&self, code: u32, residual: &[u8], out: &mut [f32]) {
        let c = code as usize * self.dim;
        self.centroids[c..c + self.dim].convert_to_f32_slice(out);
        self.quantizer.decode_add(residual, out);
    }

    /// A self-describing little-endian encoding: dim, nbits, k, the centroids (f16), then the
    /// cutoffs and weights (f32).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [self.dim, self.quantizer.nbits, self.k()] {
            out.extend((v as u32).to_le_bytes());
        }
        self.centroids.iter().for_each(|x| out.extend(x.to_le_bytes()));
        for x in self.quantizer.cutoffs.iter().chain(&self.quantizer.weights) {
            out.extend(x.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Codec> {
        let bad = |why: String| Error::BadInput(format!("codec: {why}"));
        let word = |i: usize| bytes.get(i * 4..i * 4 + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize);
        let (Some(dim), Some(nbits), Some(k)) = (word(0), word(1), word(2)) else {
            return Err(bad(format!("{} bytes is too short", bytes.len())));
        };
        if dim == 0 || dim > 4096 || ![1, 2, 4].contains(&nbits) || k == 0 || k > 1 << 24 {
            return Err(bad(format!("implausible header dim {dim}, nbits {nbits}, k {k}")));
        }
        let buckets = 1 << nbits;
        let floats = dim * (buckets - 1) + dim * buckets;
        let expected = 12 + k * dim * 2 + floats * 4;
        if bytes.len() != expected {
            return Err(bad(format!("{} bytes, expected {expected}", bytes.len())));
        }
        let (half, rest) = bytes[12..].split_at(k * dim * 2);
        let centroids: Vec<f16> = half.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])).collect();
        let all: Vec<f32> = rest.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        let (cutoffs, weights) = all.split_at(dim * (buckets - 1));
        let quantizer =
            Quantizer { dim, nbits, cutoffs: cutoffs.to_vec(), weights: weights.to_vec(), table: Default::default() };
        Ok(Codec { dim, centroids, quantizer })
    }
}

fn to_f32(half: &[f16]) -> Vec<f32> {
    let mut out = vec![0.0f32; half.len()];
    half.convert_to_f32_slice(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic;

    #[test]
    fn centroid_count_follows_plaid_with_a_floor_of_points() {
        assert_eq!(centroid_count(2_000_000), 16384);
        assert_eq!(centroid_count(4_000_000), 16384);
        assert_eq!(centroid_count(10_000_000), 32768);
        assert_eq!(centroid_count(100_000), 4096);
        assert_eq!(centroid_count(1000), 32);
        assert_eq!(centroid_count(16), 1);
    }

    #[test]
    fn codec_round_trip_is_close_and_serialises() {
        let data = synthetic::Collection::generate(&synthetic::Spec {
            docs: 300,
            tokens_per_doc: 40,
            centres: 64,
            dim: 64,
            seed: 4,
            ..Default::default()
        });
        for (nbits, bound) in [(1, 0.2), (2, 0.12), (4, 0.05)] {
            let codec = Codec::train(&data.vectors, 64, TrainParams { nbits, ..Default::default() }).unwrap();
            let (codes, residuals) = codec.encode(&data.vectors).unwrap();
            let mut worst = 0.0f32;
            let mut back = vec![0.0; 64];
            for (i, v) in data.vectors.chunks_exact(64).enumerate() {
                codec.decode(codes[i], &residuals[i * codec.residual_bytes()..][..codec.residual_bytes()], &mut back);
                // Unit vectors: the cosine error of the reconstruction.
                let cos: f32 = v.iter().zip(&back).map(|(a, b)| a * b).sum::<f32>()
                    / back.iter().map(|x| x * x).sum::<f32>().sqrt();
                worst = worst.max(1.0 - cos);
            }
            assert!(worst < bound, "{nbits} bits: worst 1 − cos {worst}");
            assert_eq!(Codec::from_bytes(&codec.to_bytes()).unwrap(), codec);
        }
        let codec = Codec::train(&data.vectors, 64, TrainParams::default()).unwrap();
        let bytes = codec.to_bytes();
        assert!(Codec::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(Codec::from_bytes(&bytes[..5]).is_err());
        assert!(Codec::train(&data.vectors[..64 * 10], 64, TrainParams::default()).is_err());
    }
}
