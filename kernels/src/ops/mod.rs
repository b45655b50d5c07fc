//! The ops of a BERT forward pass as one trait, so that the encoder is written once and runs on
//! either backend: [`crate::cpu::Cpu`] (the reference) or [`crate::cuda::Device`]. Activations
//! are `Tensor`s that stay where the backend computes (host vectors, or device memory) until
//! [`Ops::download`]; every op writes into a buffer the caller owns, so that a forward pass
//! allocates its intermediates once and reuses them layer after layer.
//!
//! Each backend fuses what it can inside an op: the CPU puts bias, GELU and residual into its
//! matrix product's epilogue; CUDA runs cuBLAS for the product and one kernel for the rest.

use crate::{check_len, check_rows, Error, Result};

/// A layer norm's parameters, on a backend.
pub struct LayerNormParams<P> {
    pub gamma: P,
    pub beta: P,
    pub eps: f32,
}

/// BERT's embedding tables (`[vocab, hidden]`, `[positions, hidden]`, token type 0's row
/// `[hidden]`) and the layer norm that follows them, on a backend.
pub struct Embeddings<P> {
    pub word: P,
    pub position: P,
    pub token_type: P,
    pub norm: LayerNormParams<P>,
    pub hidden: usize,
}

pub trait Ops: Send + Sync {
    /// f32 activations, `[rows, cols]` row-major.
    type Tensor: Send;
    /// A `Linear` layer (weight `[out, in]` as PyTorch stores it, optional bias `[out]`).
    type Linear: Send + Sync;
    /// A parameter vector or table in f32.
    type Params: Send + Sync;

    fn params(&self, values: Vec<f32>) -> Result<Self::Params>;
    fn linear(&self, weight: Vec<f32>, bias: Option<Vec<f32>>, out: usize, inp: usize) -> Result<Self::Linear>;
    /// `len` values, all zero.
    fn zeros(&self, len: usize) -> Result<Self::Tensor>;
    fn upload(&self, values: &[f32]) -> Result<Self::Tensor>;
    /// `x`'s values on the host. It takes `x`, so that the CPU hands its vector back uncopied.
    fn download(&self, x: Self::Tensor) -> Result<Vec<f32>>;

    /// `out[t] = LayerNorm(word[ids[t]] + position[t mod seq] + token_type)`. Every id must be
    /// below the vocabulary size and `seq` within the position table.
    fn embed_into(
        &self,
        ids: &[u32],
        seq: usize,
        tables: &Embeddings<Self::Params>,
        out: &mut Self::Tensor,
    ) -> Result<()>;
    /// `out = x · Wᵀ + b`, through exact (erf) GELU when `gelu`.
    fn dense_into(
        &self,
        x: &Self::Tensor,
        rows: usize,
        layer: &Self::Linear,
        gelu: bool,
        out: &mut Self::Tensor,
    ) -> Result<()>;
    /// `out = LayerNorm(x · Wᵀ + b + residual)`: the attention output and FFN output of a layer.
    fn dense_residual_norm_into(
        &self,
        x: &Self::Tensor,
        rows: usize,
        layer: &Self::Linear,
        residual: &Self::Tensor,
        norm: &LayerNormParams<Self::Params>,
        out: &mut Self::Tensor,
    ) -> Result<()>;
    /// Multi-head self-attention over `qkv` `[batch·seq, 3·hidden]` (q, k, v side by side, as
    /// one fused product gives them) with the key mask `[batch·seq]` (0: not attended): the
    /// context `[batch·seq, hidden]`. `seq` is at most 512.
    fn attention_into(
        &self,
        qkv: &Self::Tensor,
        mask: &[u8],
        batch: usize,
        heads: usize,
        out: &mut Self::Tensor,
    ) -> Result<()>;
    /// Each row of `dim` scaled to unit L2 norm (a zero row stays zero).
    fn l2_normalize(&self, x: &mut Self::Tensor, dim: usize) -> Result<()>;
    /// The rows `keep` of `x` (rows of `dim`), in that order: compaction before download.
    fn gather_rows(&self, x: &Self::Tensor, keep: &[u32], dim: usize) -> Result<Self::Tensor>;
}

// Input checks both backends make, so that they refuse the same inputs in the same words.

/// Checks that `qkv` and `mask` describe `batch` sequences for `heads` heads; returns
/// (seq, hidden).
pub(crate) fn attention_shape(qkv: usize, mask: usize, batch: usize, heads: usize) -> Result<(usize, usize)> {
    let width = check_rows("attention", "qkv", qkv, mask.max(1))?;
    if batch == 0 || heads == 0 || !mask.is_multiple_of(batch) || !width.is_multiple_of(3 * heads) {
        let why = format!("{mask} rows of {width} values are not {batch} sequences of q, k, v for {heads} heads");
        return Err(Error::Input { op: "attention", why });
    }
    Ok((mask / batch, width / 3))
}

/// Checks an embedding lookup: the tables' shapes, the ids against the vocabulary, the
/// sequence length against the positions, and the output's length. `len` is a table's length.
pub(crate) fn check_embed<P>(
    ids: &[u32],
    seq: usize,
    tables: &Embeddings<P>,
    len: impl Fn(&P) -> usize,
    out: usize,
) -> Result<()> {
    let h = tables.hidden;
    let vocab = check_rows("embed", "word", len(&tables.word), h)?;
    let positions = check_rows("embed", "position", len(&tables.position), h)?;
    check_len("embed", "token_type", len(&tables.token_type), h)?;
    if seq == 0 || seq > positions || !ids.len().is_multiple_of(seq) {
        return Err(Error::Input {
            op: "embed",
            why: format!("{} ids are not sequences of {seq} (at most {positions})", ids.len()),
        });
    }
    if let Some(id) = ids.iter().find(|&&i| i as usize >= vocab) {
        return Err(Error::Input { op: "embed", why: format!("id {id} is past the vocabulary of {vocab}") });
    }
    check_len("embed", "out", out, ids.len() * h)
}

/// Checks that `x` is rows of `dim` and every kept row is one of them.
pub(crate) fn check_gather(x: usize, keep: &[u32], dim: usize) -> Result<()> {
    let rows = check_rows("gather_rows", "x", x, dim)?;
    match keep.iter().find(|&&r| r as usize >= rows) {
        Some(row) => Err(Error::Input { op: "gather_rows", why: format!("row {row} is past the {rows} rows") }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
