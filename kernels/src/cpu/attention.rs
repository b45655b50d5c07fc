//! Multi-head self-attention with a key mask, for short sequences (≤ 512): per (sequence, head)
//! the L×L scores are formed with one GEMM, soft-maxed in place, and multiplied by V.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::{check_len, Result};

#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// `out = softmax(q·kᵀ/√d + mask) · v` per head. `q`, `k`, `v`, `out` are `[batch·seq, heads·d]`;
/// `key_mask` is `[batch·seq]`, 0 for keys no query may attend to (padding, [MASK] expansion),
/// whose probability is exactly 0 as with BERT's additive `finfo.min` mask. A sequence with no
/// attendable key attends uniformly to all, as that mask also does.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], key_mask: &[u8], out: &mut [f32], shape: AttentionShape) -> Result<()> {
    let AttentionShape { batch, seq, heads, head_dim: d } = shape;
    let h = shape.hidden();
    for (what, buf) in [("q", q.len()), ("k", k.len()), ("v", v.len()), ("out", out.len())] {
        check_len("attention", what, buf, batch * seq * h)?;
    }
    check_len("attention", "key_mask", key_mask.len(), batch * seq)?;
    let scale = 1.0 / (d as f32).sqrt();
    let contexts: Vec<Vec<f32>> = (0..batch * heads)
        .into_par_iter()
        .map(|task| {
            let (b, head) = (task / heads, task % heads);
            let offset = b * seq * h + head * d;
            let mask = &key_mask[b * seq..(b + 1) * seq];
            let mut scores = vec![0.0f32; seq * seq];
            // SAFETY: q and k hold batch·seq rows of h values; rows of this sequence start at
            // `offset` and each head reads d values of each row, so every access is in bounds.
            unsafe {
                gemm::gemm(
                    seq, seq, d,
                    scores.as_mut_ptr(), 1, seq as isize,
                    false,
                    q.as_ptr().add(offset), 1, h as isize,
                    k.as_ptr().add(offset), h as isize, 1,
                    0.0, scale,
                    false, false, false,
                    Parallelism::None,
                );
            }
            let any_key = mask.iter().any(|&m| m != 0);
            for row in scores.chunks_exact_mut(seq) {
                masked_softmax(row, mask, any_key);
            }
            let mut ctx = vec![0.0f32; seq * d];
            // SAFETY: as above for v; ctx is seq×d and scores seq×seq, both dense.
            unsafe {
                gemm::gemm(
                    seq, d, seq,
                    ctx.as_mut_ptr(), 1, d as isize,
                    false,
                    scores.as_ptr(), 1, seq as isize,
                    v.as_ptr().add(offset), 1, h as isize,
                    0.0, 1.0,
                    false, false, false,
                    Parallelism::None,
                );
            }
            ctx
        })
        .collect();
    for (task, ctx) in contexts.iter().enumerate() {
        let (b, head) = (task / heads, task % heads);
        for (t, row) in ctx.chunks_exact(d).enumerate() {
            let at = (b * seq + t) * h + head * d;
            out[at..at + d].copy_from_slice(row);
        }
    }
    Ok(())
}

fn masked_softmax(row: &mut [f32], mask: &[u8], any_key: bool) {
    let attend = |j: usize| !any_key || mask[j] != 0;
    let max = (0..row.len()).filter(|&j| attend(j)).map(|j| row[j]).fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for (j, s) in row.iter_mut().enumerate() {
        *s = if attend(j) { (*s - max).exp() } else { 0.0 };
        sum += *s;
    }
    row.iter_mut().for_each(|s| *s /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testing::{max_rel_err, Rng};

    fn naive(q: &[f32], k: &[f32], v: &[f32], mask: &[u8], s: AttentionShape) -> Vec<f64> {
        let (h, d, l) = (s.hidden(), s.head_dim, s.seq);
        let mut out = vec![0.0; q.len()];
        for b in 0..s.batch {
            let any = mask[b * l..(b + 1) * l].iter().any(|&m| m != 0);
            for head in 0..s.heads {
                for i in 0..l {
                    let at = |t: usize, j: usize| (b * l + t) * h + head * d + j;
                    let scores: Vec<f64> = (0..l)
                        .map(|t| {
                            let dot: f64 = (0..d).map(|j| q[at(i, j)] as f64 * k[at(t, j)] as f64).sum();
                            if !any || mask[b * l + t] != 0 { dot / (d as f64).sqrt() } else { f64::NEG_INFINITY }
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for j in 0..d {
                        out[at(i, j)] = (0..l).map(|t| e[t] / z * v[at(t, j)] as f64).sum();
                    }
                }
            }
        }
        out
    }

    #[test]
    fn attention_matches_f64_with_masks() {
        let mut rng = Rng::new(19);
        for shape in [
            AttentionShape { batch: 1, seq: 1, heads: 1, head_dim: 4 },
            AttentionShape { batch: 3, seq: 32, heads: 4, head_dim: 32 },
            AttentionShape { batch: 2, seq: 77, heads: 12, head_dim: 64 },
        ] {
            let n = shape.batch * shape.seq * shape.hidden();
            let (q, k, v) = (rng.vec(n, 2.0), rng.vec(n, 2.0), rng.vec(n, 1.0));
            let mut mask: Vec<u8> = (0..shape.batch * shape.seq).map(|i| (i % shape.seq < shape.seq * 2 / 3 + 1) as u8).collect();
            if shape.batch > 2 {
                mask[2 * shape.seq..].iter_mut().for_each(|m| *m = 0); // a sequence with no keys
            }
            let mut out = vec![f32::NAN; n];
            attention(&q, &k, &v, &mask, &mut out, shape).unwrap();
            let err = max_rel_err(&out, &naive(&q, &k, &v, &mask, shape));
            assert!(err < 1e-5, "{shape:?}: {err}");
        }
    }
}
