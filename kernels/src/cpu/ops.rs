//! The CPU backend of [`Ops`]: host vectors, and the ops of this module's siblings.

use super::{attention, l2_normalize_rows, layer_norm, AttentionShape, Dense};
use crate::ops::{Embeddings, LayerNormParams, Ops};
use crate::{check_len, check_rows, Error, Result};

/// The CPU backend (all cores, through rayon).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu;

/// Checks that `qkv` and `mask` describe `batch` sequences for `heads` heads; returns
/// (seq, hidden). Shared with the CUDA backend so that both refuse the same inputs.
pub(crate) fn attention_shape(qkv: usize, mask: usize, batch: usize, heads: usize) -> Result<(usize, usize)> {
    let width = check_rows("attention", "qkv", qkv, mask.max(1))?;
    if batch == 0 || heads == 0 || !mask.is_multiple_of(batch) || !width.is_multiple_of(3 * heads) {
        let why = format!("{mask} rows of {width} values are not {batch} sequences of q, k, v for {heads} heads");
        return Err(Error::Input { op: "attention", why });
    }
    Ok((mask / batch, width / 3))
}

/// Checks the ids and sequence length of an embedding lookup against the tables' sizes.
pub(crate) fn check_embed(ids: &[u32], seq: usize, vocab: usize, positions: usize) -> Result<()> {
    if seq == 0 || seq > positions || !ids.len().is_multiple_of(seq) {
        return Err(Error::Input {
            op: "embed",
            why: format!("{} ids are not sequences of {seq} (at most {positions})", ids.len()),
        });
    }
    match ids.iter().find(|&&i| i as usize >= vocab) {
        Some(id) => Err(Error::Input { op: "embed", why: format!("id {id} is past the vocabulary of {vocab}") }),
        None => Ok(()),
    }
}

/// Checks that `x` is rows of `dim` and every kept row is one of them.
pub(crate) fn check_gather(x: usize, keep: &[u32], dim: usize) -> Result<()> {
    let rows = check_rows("gather_rows", "x", x, dim)?;
    match keep.iter().find(|&&r| r as usize >= rows) {
        Some(row) => Err(Error::Input { op: "gather_rows", why: format!("row {row} is past the {rows} rows") }),
        None => Ok(()),
    }
}

impl Ops for Cpu {
    type Tensor = Vec<f32>;
    type Linear = Dense;
    type Params = Vec<f32>;

    fn params(&self, values: Vec<f32>) -> Result<Vec<f32>> {
        Ok(values)
    }

    fn linear(&self, weight: Vec<f32>, bias: Option<Vec<f32>>, out: usize, inp: usize) -> Result<Dense> {
        Dense::new(weight, bias, out, inp)
    }

    fn zeros(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }

    fn upload(&self, values: &[f32]) -> Result<Vec<f32>> {
        Ok(values.to_vec())
    }

    fn download(&self, x: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(x.clone())
    }

    fn embed_into(&self, ids: &[u32], seq: usize, tables: &Embeddings<Vec<f32>>, out: &mut Vec<f32>) -> Result<()> {
        let h = tables.hidden;
        let vocab = check_rows("embed", "word", tables.word.len(), h)?;
        let positions = check_rows("embed", "position", tables.position.len(), h)?;
        check_len("embed", "token_type", tables.token_type.len(), h)?;
        check_embed(ids, seq, vocab, positions)?;
        check_len("embed", "out", out.len(), ids.len() * h)?;
        for (t, row) in out.chunks_exact_mut(h).enumerate() {
            let (w, p) = (ids[t] as usize * h, (t % seq) * h);
            let (word, position) = (&tables.word[w..w + h], &tables.position[p..p + h]);
            for j in 0..h {
                row[j] = word[j] + position[j] + tables.token_type[j];
            }
        }
        layer_norm(out, &tables.norm.gamma, &tables.norm.beta, tables.norm.eps)
    }

    fn dense_into(&self, x: &Vec<f32>, rows: usize, layer: &Dense, gelu: bool, out: &mut Vec<f32>) -> Result<()> {
        if gelu {
            layer.forward_gelu_into(x, rows, out)
        } else {
            layer.forward_into(x, rows, out)
        }
    }

    fn dense_residual_norm_into(
        &self,
        x: &Vec<f32>,
        rows: usize,
        layer: &Dense,
        residual: &Vec<f32>,
        norm: &LayerNormParams<Vec<f32>>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        layer.forward_add_into(x, rows, residual, out)?;
        layer_norm(out, &norm.gamma, &norm.beta, norm.eps)
    }

    fn attention_into(
        &self,
        qkv: &Vec<f32>,
        mask: &[u8],
        batch: usize,
        heads: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let (seq, hidden) = attention_shape(qkv.len(), mask.len(), batch, heads)?;
        let shape = AttentionShape { batch, seq, heads, head_dim: hidden / heads, row_stride: 3 * hidden };
        attention(qkv, &qkv[hidden..], &qkv[2 * hidden..], mask, out, shape)
    }

    fn l2_normalize(&self, x: &mut Vec<f32>, dim: usize) -> Result<()> {
        l2_normalize_rows(x, dim)
    }

    fn gather_rows(&self, x: &Vec<f32>, keep: &[u32], dim: usize) -> Result<Vec<f32>> {
        check_gather(x.len(), keep, dim)?;
        Ok(keep.iter().flat_map(|&r| &x[r as usize * dim..(r as usize + 1) * dim]).copied().collect())
    }
}
