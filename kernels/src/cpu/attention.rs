//! Multi-head self-attention with a key mask, for short sequences (≤ 512). Per (sequence, head)
//! only the keys that may be attended are gathered, so masked keys cost nothing and get
//! probability exactly 0 (BERT's additive `finfo.min` mask gives the same); then
//! `softmax(q·kᵀ/√d) · v` with two small matrix products.

use rayon::prelude::*;

use super::{matmul_transposed, softmax_in_place};
use crate::{check_len, Result};

#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Distance between consecutive rows of `q`, `k` and `v`: `heads·head_dim` for separate
    /// matrices, `3·heads·head_dim` for slices of one fused QKV matrix.
    pub row_stride: usize,
}

impl AttentionShape {
    fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// `out = softmax(q·kᵀ/√d + mask) · v` per head. Row r of head h of `q` starts at
/// `r·row_stride + h·d` (likewise `k`, `v`); `out` is `[batch·seq, heads·d]`; `key_mask` is
/// `[batch·seq]`, 0 for keys no query may attend to (padding, [MASK] expansion). A sequence
/// with no attendable key attends uniformly to all, as BERT's additive mask also makes it.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    key_mask: &[u8],
    out: &mut [f32],
    shape: AttentionShape,
) -> Result<()> {
    let AttentionShape { batch, seq, heads, head_dim: d, row_stride } = shape;
    let h = shape.hidden();
    let rows = batch * seq;
    let needed = if rows == 0 { 0 } else { (rows - 1) * row_stride + h };
    for (what, len) in [("q", q.len()), ("k", k.len()), ("v", v.len())] {
        if row_stride < h || len < needed {
            return check_len("attention", what, len, needed.max(rows * h));
        }
    }
    check_len("attention", "out", out.len(), rows * h)?;
    check_len("attention", "key_mask", key_mask.len(), rows)?;
    let scale = 1.0 / (d as f32).sqrt();
    let contexts: Vec<Vec<f32>> = (0..batch * heads)
        .into_par_iter()
        .map(|task| {
            SCRATCH.with_borrow_mut(|scratch| {
                let (b, head) = (task / heads, task % heads);
                let start = |row: usize| (b * seq + row) * row_stride + head * d;
                let Scratch { keys, q_bh, k_sel, v_sel, v_spare, scores, packed } = scratch;
                let mask = &key_mask[b * seq..(b + 1) * seq];
                keys.clear();
                keys.extend((0..seq).filter(|&j| mask[j] != 0));
                // No attendable key: BERT's additive mask makes every score the same, so the
                // attention is uniform over all keys.
                let uniform = keys.is_empty();
                if uniform {
                    keys.extend(0..seq);
                }
                let n = keys.len();
                q_bh.clear();
                (0..seq).for_each(|i| q_bh.extend_from_slice(&q[start(i)..start(i) + d]));
                k_sel.clear();
                keys.iter().for_each(|&j| k_sel.extend_from_slice(&k[start(j)..start(j) + d]));
                v_sel.clear();
                keys.iter().for_each(|&j| v_sel.extend_from_slice(&v[start(j)..start(j) + d]));
                scores.resize(seq * n, 0.0);
                product(q_bh, k_sel, Layout::Rows, (seq, n, d), scores, packed, v_spare)?;
                for row in scores.chunks_exact_mut(n) {
                    row.iter_mut().for_each(|s| *s = if uniform { 0.0 } else { *s * scale });
                    softmax_in_place(row);
                }
                let mut ctx = vec![0.0f32; seq * d];
                product(scores, v_sel, Layout::Columns, (seq, d, n), &mut ctx, packed, v_spare)?;
                Ok(ctx)
            })
        })
        .collect::<Result<_>>()?;
    for (task, ctx) in contexts.iter().enumerate() {
        let (b, head) = (task / heads, task % heads);
        for (t, row) in ctx.chunks_exact(d).enumerate() {
            let at = (b * seq + t) * h + head * d;
            out[at..at + d].copy_from_slice(row);
        }
    }
    Ok(())
}

/// One thread's buffers for `attention`, kept between calls: a fresh score matrix is large
/// enough to be mapped, zeroed and unmapped by the allocator every time.
#[derive(Default)]
struct Scratch {
    keys: Vec<usize>,
    q_bh: Vec<f32>,
    k_sel: Vec<f32>,
    v_sel: Vec<f32>,
    /// `v_sel` transposed, where the portable path needs it.
    v_spare: Vec<f32>,
    scores: Vec<f32>,
    packed: Packed,
}

#[cfg(target_arch = "x86_64")]
type Packed = Option<super::avx512::PackedWeight>;
#[cfg(not(target_arch = "x86_64"))]
type Packed = ();

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// How `product`'s second operand is laid out.
#[derive(Clone, Copy)]
enum Layout {
    /// `[n, k]`: the product is `a · bᵀ`.
    Rows,
    /// `[k, n]`: the product is `a · b`.
    Columns,
}

/// `out = a[m,k] · b` on this thread: the AVX-512 kernel where there is one (`b` packed into
/// `packed`'s allocation, from either layout), else `gemm` (`b` transposed into `spare` first
/// when it is `Columns`).
#[allow(unused_variables)]
fn product(
    a: &[f32],
    b: &[f32],
    layout: Layout,
    (m, n, k): (usize, usize, usize),
    out: &mut [f32],
    packed: &mut Packed,
    spare: &mut Vec<f32>,
) -> Result<()> {
    check_len("attention", "a", a.len(), m * k)?;
    check_len("attention", "b", b.len(), n * k)?;
    check_len("attention", "out", out.len(), m * n)?;
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() {
        let weight = packed.get_or_insert_with(|| super::avx512::PackedWeight::pack(&[], 0, 0));
        match layout {
            Layout::Rows => weight.repack(b, n, k),
            Layout::Columns => weight.repack_transposed(b, n, k),
        }
        weight.matmul_strided(a, k, m, out, Default::default(), false);
        return Ok(());
    }
    let b = match layout {
        Layout::Rows => b,
        Layout::Columns => {
            spare.clear();
            spare.extend((0..n * k).map(|i| b[(i % k) * n + i / k]));
            spare
        }
    };
    matmul_transposed(a, b, out, m, n, k)
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
                            if !any {
                                0.0 // uniform, as BERT's additive mask gives
                            } else if mask[b * l + t] != 0 {
                                dot / (d as f64).sqrt()
                            } else {
                                f64::NEG_INFINITY
                            }
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
    fn slices_of_a_fused_qkv_matrix_give_the_same_result() {
        let mut rng = Rng::new(29);
        let shape = AttentionShape { batch: 2, seq: 20, heads: 4, head_dim: 16, row_stride: 64 };
        let rows = shape.batch * shape.seq;
        let (q, k, v) = (rng.vec(rows * 64, 1.0), rng.vec(rows * 64, 1.0), rng.vec(rows * 64, 1.0));
        let fused: Vec<f32> = (0..rows)
            .flat_map(|r| [&q, &k, &v].into_iter().flat_map(move |m| m[r * 64..(r + 1) * 64].iter().copied()))
            .collect();
        let mask: Vec<u8> = (0..rows).map(|i| u8::from(i % 5 != 0)).collect();
        let (mut separate, mut sliced) = (vec![0.0; rows * 64], vec![0.0; rows * 64]);
        attention(&q, &k, &v, &mask, &mut separate, shape).unwrap();
        let fused_shape = AttentionShape { row_stride: 192, ..shape };
        attention(&fused, &fused[64..], &fused[128..], &mask, &mut sliced, fused_shape).unwrap();
        assert_eq!(separate, sliced);
        assert!(attention(&fused[..100], &fused[64..], &fused[128..], &mask, &mut sliced, fused_shape).is_err());
    }

    #[test]
    fn attention_matches_f64_with_masks() {
        let mut rng = Rng::new(19);
        for shape in [
            AttentionShape { batch: 1, seq: 1, heads: 1, head_dim: 4, row_stride: 4 },
            AttentionShape { batch: 3, seq: 32, heads: 4, head_dim: 32, row_stride: 128 },
            AttentionShape { batch: 2, seq: 77, heads: 12, head_dim: 64, row_stride: 768 },
        ] {
            let n = shape.batch * shape.seq * shape.hidden();
            let (q, k, v) = (rng.vec(n, 2.0), rng.vec(n, 2.0), rng.vec(n, 1.0));
            let mut mask: Vec<u8> =
                (0..shape.batch * shape.seq).map(|i| (i % shape.seq < shape.seq * 2 / 3 + 1) as u8).collect();
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
