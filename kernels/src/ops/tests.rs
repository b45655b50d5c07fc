//! The same test bodies for every backend: each op of [`Ops`] against a naive f64 twin on fresh
//! random inputs, always on the CPU and on CUDA where a GPU is present (skipped, with the
//! reason printed, otherwise). Every output buffer starts poisoned (NaN), so an element an op
//! forgets fails. Tolerances, relative to max(1, |expected|): f32 ops 1e-5 on both backends;
//! matrix products and attention 1e-5 on the CPU and 1e-2 on CUDA, whose tensor cores read f16
//! and whose attention stages keys and values in f16.

use super::*;
use crate::cpu::testing::{max_rel_err, Rng};
use crate::cpu::Cpu;
use crate::cuda::Device;

const F32: f64 = 1e-5;
const F16: f64 = 1e-2;

/// Runs a body on the CPU, then on GPU 0 where there is one (a generic body, given once per
/// backend since closures cannot be generic).
fn on_every_backend(on_cpu: impl Fn(&Cpu), on_cuda: impl Fn(&Device)) {
    on_cpu(&Cpu);
    match Device::open(0) {
        Ok(device) => on_cuda(&device),
        Err(e) => println!("skipped on CUDA: {e}"),
    }
}

fn poisoned<O: Ops>(ops: &O, len: usize) -> O::Tensor {
    ops.upload(&vec![f32::NAN; len]).unwrap()
}

fn close(what: &str, got: &[f32], want: &[f64], tolerance: f64) {
    let err = max_rel_err(got, want);
    assert!(err <= tolerance, "{what}: max relative error {err:e} > {tolerance:e}");
}

fn layer_norm_f64(x: &mut [f64], gamma: &[f32], beta: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(gamma.len()) {
        let n = row.len() as f64;
        let mean = row.iter().sum::<f64>() / n;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (i, v) in row.iter_mut().enumerate() {
            *v = (*v - mean) * inv * gamma[i] as f64 + beta[i] as f64;
        }
    }
}

fn linear_f64(x: &[f32], w: &[f32], b: &[f32], rows: usize, out: usize, inp: usize) -> Vec<f64> {
    let mut y = vec![0.0; rows * out];
    for r in 0..rows {
        for o in 0..out {
            let dot: f64 = (0..inp).map(|k| x[r * inp + k] as f64 * w[o * inp + k] as f64).sum();
            y[r * out + o] = dot + b[o] as f64;
        }
    }
    y
}

fn embed_body<O: Ops>(ops: &O) {
    let mut rng = Rng::new(3);
    let (hidden, vocab, positions, seq, batch) = (96, 50, 16, 9, 3);
    let (word, position, token_type) =
        (rng.vec(vocab * hidden, 1.0), rng.vec(positions * hidden, 1.0), rng.vec(hidden, 1.0));
    let (gamma, beta) = (rng.vec(hidden, 1.0), rng.vec(hidden, 0.5));
    let tables = Embeddings {
        word: ops.params(word.clone()).unwrap(),
        position: ops.params(position.clone()).unwrap(),
        token_type: ops.params(token_type.clone()).unwrap(),
        norm: LayerNormParams {
            gamma: ops.params(gamma.clone()).unwrap(),
            beta: ops.params(beta.clone()).unwrap(),
            eps: 1e-12,
        },
        hidden,
    };
    let ids: Vec<u32> = (0..batch * seq).map(|t| (t * 7 + 3) as u32 % vocab as u32).collect();
    let mut out = poisoned(ops, ids.len() * hidden);
    ops.embed_into(&ids, seq, &tables, &mut out).unwrap();
    let mut want: Vec<f64> = (0..ids.len() * hidden)
        .map(|i| {
            let (t, j) = (i / hidden, i % hidden);
            word[ids[t] as usize * hidden + j] as f64 + position[(t % seq) * hidden + j] as f64 + token_type[j] as f64
        })
        .collect();
    layer_norm_f64(&mut want, &gamma, &beta, 1e-12);
    // Refused calls leave `out` as it was: it is compared after them.
    let past = ops.embed_into(&[1, vocab as u32], 2, &tables, &mut out).unwrap_err();
    assert!(past.to_string().contains("past the vocabulary of 50"), "{past}");
    assert!(ops.embed_into(&ids, positions + 1, &tables, &mut out).is_err(), "a sequence longer than the positions");
    close("embed", &ops.download(out).unwrap(), &want, F32);
}

fn dense_body<O: Ops>(ops: &O, tolerance: f64) {
    let mut rng = Rng::new(5);
    for (rows, out_dim, inp) in [(1, 128, 96), (37, 192, 64), (300, 64, 256)] {
        let (x, w, b) = (rng.vec(rows * inp, 1.0), rng.vec(out_dim * inp, 0.1), rng.vec(out_dim, 0.5));
        let layer = ops.linear(w.clone(), Some(b.clone()), out_dim, inp).unwrap();
        let x_t = ops.upload(&x).unwrap();
        let want = linear_f64(&x, &w, &b, rows, out_dim, inp);
        for gelu in [false, true] {
            let mut out = poisoned(ops, rows * out_dim);
            ops.dense_into(&x_t, rows, &layer, gelu, &mut out).unwrap();
            let want: Vec<f64> =
                want.iter().map(|&v| if gelu { 0.5 * v * (1.0 + libm::erf(v / 2f64.sqrt())) } else { v }).collect();
            close(&format!("dense {rows}x{out_dim}x{inp} gelu {gelu}"), &ops.download(out).unwrap(), &want, tolerance);
        }
        let residual = rng.vec(rows * out_dim, 1.0);
        let (gamma, beta) = (rng.vec(out_dim, 1.0), rng.vec(out_dim, 0.5));
        let norm = LayerNormParams {
            gamma: ops.params(gamma.clone()).unwrap(),
            beta: ops.params(beta.clone()).unwrap(),
            eps: 1e-12,
        };
        let mut out = poisoned(ops, rows * out_dim);
        ops.dense_residual_norm_into(&x_t, rows, &layer, &ops.upload(&residual).unwrap(), &norm, &mut out).unwrap();
        let mut want: Vec<f64> = want.iter().zip(&residual).map(|(v, &r)| v + r as f64).collect();
        layer_norm_f64(&mut want, &gamma, &beta, 1e-12);
        // The norm divides by a standard deviation of about 1: the product's error carries over.
        close(&format!("dense+residual+norm {rows}x{out_dim}x{inp}"), &ops.download(out).unwrap(), &want, tolerance);
    }
    let layer = ops.linear(vec![0.5; 6], None, 2, 3).unwrap();
    let mut out = poisoned(ops, 4);
    assert!(
        ops.dense_into(&ops.upload(&[1.0; 5]).unwrap(), 2, &layer, false, &mut out).is_err(),
        "x is not 2 rows of 3"
    );
    ops.dense_into(&ops.upload(&[1.0; 6]).unwrap(), 2, &layer, false, &mut out).unwrap();
    assert_eq!(ops.download(out).unwrap(), [1.5; 4], "no bias");
}

fn attention_body<O: Ops>(ops: &O, tolerance: f64) {
    let mut rng = Rng::new(11);
    let (batch, seq, heads, head_dim) = (3, 37, 4, 16);
    let hidden = heads * head_dim;
    let qkv = rng.vec(batch * seq * 3 * hidden, 2.0);
    // Sequence 0 whole, sequence 1 padded after 20 tokens, sequence 2 with no attendable key.
    let mask: Vec<u8> = (0..batch * seq).map(|r| ((r / seq == 0) || (r / seq == 1 && r % seq < 20)) as u8).collect();
    let mut out = poisoned(ops, batch * seq * hidden);
    ops.attention_into(&ops.upload(&qkv).unwrap(), &mask, batch, heads, &mut out).unwrap();
    let mut want = vec![0.0f64; batch * seq * hidden];
    let at = |row: usize, part: usize, head: usize, d: usize| {
        qkv[row * 3 * hidden + part * hidden + head * head_dim + d] as f64
    };
    for b in 0..batch {
        let keys: Vec<usize> = (0..seq).filter(|&j| mask[b * seq + j] != 0).collect();
        // No attendable key: uniform attention over all, as BERT's additive mask gives.
        let uniform = keys.is_empty();
        let keys = if uniform { (0..seq).collect() } else { keys };
        for head in 0..heads {
            for i in 0..seq {
                let scores: Vec<f64> = keys
                    .iter()
                    .map(|&j| {
                        let dot: f64 =
                            (0..head_dim).map(|d| at(b * seq + i, 0, head, d) * at(b * seq + j, 1, head, d)).sum();
                        if uniform {
                            0.0
                        } else {
                            dot / (head_dim as f64).sqrt()
                        }
                    })
                    .collect();
                let top = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - top).exp()).collect();
                let total: f64 = weights.iter().sum();
                for d in 0..head_dim {
                    want[(b * seq + i) * hidden + head * head_dim + d] =
                        keys.iter().zip(&weights).map(|(&j, w)| w * at(b * seq + j, 2, head, d)).sum::<f64>() / total;
                }
            }
        }
    }
    assert!(
        ops.attention_into(&ops.upload(&qkv).unwrap(), &mask, batch, 5, &mut out).is_err(),
        "5 heads do not divide 64"
    );
    // After the refused call: it must have left `out` as it was.
    close("attention", &ops.download(out).unwrap(), &want, tolerance);
}

fn rows_body<O: Ops>(ops: &O) {
    let mut rng = Rng::new(13);
    let (rows, dim) = (24, 128);
    let mut x = rng.vec(rows * dim, 3.0);
    x[dim..2 * dim].iter_mut().for_each(|v| *v = 0.0);
    let mut t = ops.upload(&x).unwrap();
    ops.l2_normalize(&mut t, dim).unwrap();
    let want: Vec<f64> = x
        .chunks(dim)
        .flat_map(|row| {
            let norm = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            row.iter().map(move |&v| if norm > 0.0 { v as f64 / norm } else { 0.0 })
        })
        .collect();
    close("l2_normalize", &ops.download(t).unwrap(), &want, F32);

    let keep = [3u32, 0, 23, 3];
    let got = ops.download(ops.gather_rows(&ops.upload(&x).unwrap(), &keep, dim).unwrap()).unwrap();
    let want: Vec<f32> = keep.iter().flat_map(|&r| x[r as usize * dim..][..dim].to_vec()).collect();
    assert_eq!(got, want, "gather_rows copies rows exactly");
    assert!(ops.gather_rows(&ops.upload(&x).unwrap(), &[24], dim).is_err(), "row 24 of 24");
}

#[test]
fn embedding_matches_f64() {
    on_every_backend(embed_body, embed_body);
}

#[test]
fn dense_layers_match_f64() {
    on_every_backend(|cpu| dense_body(cpu, F32), |gpu| dense_body(gpu, F16));
}

#[test]
fn attention_matches_f64_with_padding_and_a_fully_masked_sequence() {
    on_every_backend(|cpu| attention_body(cpu, F32), |gpu| attention_body(gpu, F16));
}

#[test]
fn row_ops_match_f64() {
    on_every_backend(rows_body, rows_body);
}
