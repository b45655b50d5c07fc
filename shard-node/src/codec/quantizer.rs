//! Residual quantisation: each dimension of `token − centroid` becomes an nbits bucket index.
//! Per dimension, on held-out residuals: cutoffs start at the quantiles (equal-mass buckets, as
//! PLAID) and are refined by Lloyd–Max steps (cutoffs halfway between bucket means), and a
//! bucket decodes to the mean of the residuals that fell in it. PLAID fits one set for all
//! dimensions; per dimension costs 128 × 2^nbits floats and fits dimensions whose spread
//! differs.

use crate::{Error, Result};

/// Lloyd–Max refinements of the initial quantile cutoffs.
const LLOYD_STEPS: usize = 10;

#[derive(Debug, Clone)]
pub struct Quantizer {
    pub dim: usize,
    pub nbits: usize,
    /// `[dim][buckets − 1]`, ascending per dimension.
    pub cutoffs: Vec<f32>,
    /// `[dim][buckets]`: what each bucket decodes to.
    pub weights: Vec<f32>,
    /// `[bytes][256][8 / nbits]`: what each value of each packed byte decodes to, built on
    /// first use (decoding a byte is then one short copy instead of a shift per dimension).
    pub table: std::sync::OnceLock<Vec<f32>>,
}

/// Equal when they encode and decode alike (the table is derived).
impl PartialEq for Quantizer {
    fn eq(&self, other: &Self) -> bool {
        (self.dim, self.nbits, &self.cutoffs, &self.weights) == (other.dim, other.nbits, &other.cutoffs, &other.weights)
    }
}

impl Quantizer {
    /// Fits cutoffs and weights to `residuals` `[n, dim]` (n ≥ 1).
    pub fn fit(residuals: &[f32], dim: usize, nbits: usize) -> Result<Quantizer> {
        if ![1, 2, 4].contains(&nbits) {
            return Err(Error::BadInput(format!("nbits must be 1, 2 or 4, not {nbits}")));
        }
        let n = residuals.len() / dim;
        if n == 0 || !(dim * nbits).is_multiple_of(8) {
            return Err(Error::BadInput(format!("quantiser: {n} residuals of dim {dim} at {nbits} bits")));
        }
        let buckets = 1 << nbits;
        let (mut cutoffs, mut weights) = (Vec::with_capacity(dim * (buckets - 1)), Vec::with_capacity(dim * buckets));
        let mut column = Vec::with_capacity(n);
        for d in 0..dim {
            column.clear();
            column.extend(residuals.iter().skip(d).step_by(dim).copied());
            column.sort_unstable_by(f32::total_cmp);
            // Start from equal-mass buckets, then Lloyd–Max steps: each bucket decodes to the
            // mean of its values, each cutoff sits halfway between neighbouring means. This
            // lowers the squared error below the quantiles' (the last step's means are kept).
            let mut cuts: Vec<f32> = (1..buckets).map(|b| column[(b * n / buckets).min(n - 1)]).collect();
            let mut means = vec![0.0f32; buckets];
            for step in 0..=LLOYD_STEPS {
                for (b, mean) in means.iter_mut().enumerate() {
                    let lo = if b == 0 { 0 } else { column.partition_point(|&x| x < cuts[b - 1]) };
                    let hi = if b == buckets - 1 { n } else { column.partition_point(|&x| x < cuts[b]) };
                    // A bucket no value fell in (ties) decodes to its nearest cutoff.
                    *mean = if hi > lo {
                        (column[lo..hi].iter().map(|&x| x as f64).sum::<f64>() / (hi - lo) as f64) as f32
                    } else {
                        cuts[b.min(buckets - 2)]
                    };
                }
                if step < LLOYD_STEPS {
                    cuts.iter_mut().enumerate().for_each(|(b, c)| *c = 0.5 * (means[b] + means[b + 1]));
                }
            }
            weights.extend(&means);
            cutoffs.extend(cuts);
        }
        Ok(Quantizer { dim, nbits, cutoffs, weights, table: Default::default() })
    }

    /// Bytes per encoded residual.
    pub fn bytes(&self) -> usize {
        self.dim * self.nbits / 8
    }

    /// Packs one residual: dimension d's bucket in bits `d·nbits ..` (low bits first).
    pub fn encode(&self, residual: &[f32], out: &mut [u8]) {
        let buckets = 1 << self.nbits;
        out.fill(0);
        for (d, &x) in residual.iter().enumerate() {
            let cuts = &self.cutoffs[d * (buckets - 1)..(d + 1) * (buckets - 1)];
            let bucket = cuts.partition_point(|&c| c <= x) as u8;
            let bit = d * self.nbits;
            out[bit / 8] |= bucket << (bit % 8);
        }
    }

    /// Adds the decoded residual to `out` (which holds the centroid).
    pub fn decode_add(&self, code: &[u8], out: &mut [f32]) {
        let per_byte = 8 / self.nbits;
        let table = self.table.get_or_init(|| self.byte_table());
        for ((&byte, out), j) in code.iter().zip(out.chunks_exact_mut(per_byte)).zip(0..) {
            let values = &table[(j * 256 + byte as usize) * per_byte..][..per_byte];
            out.iter_mut().zip(values).for_each(|(o, v)| *o += v);
        }
    }

    fn byte_table(&self) -> Vec<f32> {
        let (per_byte, buckets, mask) = (8 / self.nbits, 1 << self.nbits, (1usize << self.nbits) - 1);
        let mut table = Vec::with_capacity(self.bytes() * 256 * per_byte);
        for j in 0..self.bytes() {
            for byte in 0..256usize {
                for t in 0..per_byte {
                    let d = j * per_byte + t;
                    table.push(self.weights[d * buckets + ((byte >> (t * self.nbits)) & mask)]);
                }
            }
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn round_trip_error_shrinks_with_bits() {
        let mut rng = Rng::new(11);
        let dim = 32;
        let scale: Vec<f32> = (0..dim).map(|d| 0.02 + 0.002 * d as f32).collect();
        let data: Vec<f32> = (0..20_000 * dim).map(|i| rng.normal() * scale[i % dim]).collect();
        let (fit, test) = data.split_at(10_000 * dim);
        let mut previous = f64::INFINITY;
        for (nbits, bound) in [(1, 0.61), (2, 0.35), (4, 0.12)] {
            let q = Quantizer::fit(fit, dim, nbits).unwrap();
            let mut code = vec![0u8; q.bytes()];
            let (mut err, mut norm) = (0.0f64, 0.0f64);
            for v in test.chunks_exact(dim) {
                q.encode(v, &mut code);
                let mut back = vec![0.0; dim];
                q.decode_add(&code, &mut back);
                err += v.iter().zip(&back).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>();
                norm += v.iter().map(|a| (*a as f64).powi(2)).sum::<f64>();
            }
            // Relative RMS error of the Lloyd–Max quantiser of a Gaussian, with a little
            // margin: 0.60 at 1 bit, 0.34 at 2, 0.096 at 4 (ten steps leave 4 bits at ~0.11).
            let rel = (err / norm).sqrt();
            assert!(rel < bound && rel < previous, "{nbits} bits: {rel}");
            previous = rel;
        }
        assert!(Quantizer::fit(fit, dim, 3).is_err());
    }

    #[test]
    fn bucket_codes_are_packed_low_bits_first() {
        let q = Quantizer {
            dim: 4,
            nbits: 2,
            cutoffs: [-1.0, 0.0, 1.0].repeat(4),
            weights: [-2.0, -0.5, 0.5, 2.0].repeat(4),
            table: Default::default(),
        };
        let mut code = [0u8; 1];
        q.encode(&[-5.0, -0.5, 0.5, 5.0], &mut code);
        assert_eq!(code[0], 0b11_10_01_00);
        let mut back = [0.0; 4];
        q.decode_add(&code, &mut back);
        assert_eq!(back, [-2.0, -0.5, 0.5, 2.0]);
    }
}
