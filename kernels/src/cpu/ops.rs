//! The CPU backend of [`Ops`]: host vectors, and the ops of this module's siblings.

use super::{attention, l2_normalize_rows, layer_norm, AttentionShape, Dense};
use crate::ops::{attention_shape, check_embed, check_gather, Embeddings, LayerNormParams, Ops};
use crate::Result;

/// The CPU backend (all cores, through rayon).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu;

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

    fn download(&self, x: Vec<f32>) -> Result<Vec<f32>> {
        Ok(x)
    }

    fn embed_into(&self, ids: &[u32], seq: usize, tables: &Embeddings<Vec<f32>>, out: &mut Vec<f32>) -> Result<()> {
        check_embed(ids, seq, tables, Vec::len, out.len())?;
        let h = tables.hidden;
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
