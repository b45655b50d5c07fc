//! The BERT encoder, written once over the `kernels` ops trait so that it runs on the CPU or on
//! CUDA; one struct per Hugging Face module, weight names as in `BertModel`.

use kernels::ops::{Embeddings, LayerNormParams, Ops};

use super::config::BertConfig;
use super::weights::Weights;
use crate::error::{Error, Result};

/// Loads a `Linear` layer (weight `[out, in]`, optional bias `[out]`) onto a backend.
pub(crate) fn load_dense<O: Ops>(
    ops: &O,
    w: &mut Weights,
    prefix: &str,
    out: usize,
    inp: usize,
    bias: bool,
) -> Result<O::Linear> {
    let weight = w.take(&format!("{prefix}.weight"), &[out, inp])?;
    let bias = if bias { Some(w.take(&format!("{prefix}.bias"), &[out])?) } else { None };
    Ok(ops.linear(weight, bias, out, inp)?)
}

/// `{prefix}.query`, `.key` and `.value` as one layer whose output rows are `[q | k | v]`.
fn load_qkv<O: Ops>(ops: &O, w: &mut Weights, prefix: &str, h: usize) -> Result<O::Linear> {
    let (mut weight, mut bias) = (Vec::with_capacity(3 * h * h), Vec::with_capacity(3 * h));
    for part in ["query", "key", "value"] {
        weight.extend(w.take(&format!("{prefix}.{part}.weight"), &[h, h])?);
        bias.extend(w.take(&format!("{prefix}.{part}.bias"), &[h])?);
    }
    Ok(ops.linear(weight, Some(bias), 3 * h, h)?)
}

fn load_norm<O: Ops>(ops: &O, w: &mut Weights, prefix: &str, h: usize, eps: f64) -> Result<LayerNormParams<O::Params>> {
    Ok(LayerNormParams {
        gamma: ops.params(w.take(&format!("{prefix}.weight"), &[h])?)?,
        beta: ops.params(w.take(&format!("{prefix}.bias"), &[h])?)?,
        eps: eps as f32,
    })
}

struct Layer<O: Ops> {
    /// Query, key and value projections stacked into one `[3·hidden, hidden]` product.
    qkv: O::Linear,
    attn_out: O::Linear,
    attn_norm: LayerNormParams<O::Params>,
    intermediate: O::Linear,
    output: O::Linear,
    out_norm: LayerNormParams<O::Params>,
}

pub struct Bert<O: Ops> {
    config: BertConfig,
    embeddings: Embeddings<O::Params>,
    layers: Vec<Layer<O>>,
}

/// A padded batch: `ids` and `mask` are `[batch, seq]`; mask 0 marks keys not attended to.
pub struct Batch<'a> {
    pub ids: &'a [u32],
    pub mask: &'a [u8],
    pub batch: usize,
    pub seq: usize,
}

impl<O: Ops> Bert<O> {
    pub fn load(ops: &O, config: BertConfig, w: &mut Weights) -> Result<Bert<O>> {
        let (h, i, eps) = (config.hidden_size, config.intermediate_size, config.layer_norm_eps);
        let word = w.take("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
        let position = w.take("embeddings.position_embeddings.weight", &[config.max_position_embeddings, h])?;
        let mut token_type = w.take("embeddings.token_type_embeddings.weight", &[config.type_vocab_size, h])?;
        // Every input is segment 0.
        token_type.truncate(h);
        let embeddings = Embeddings {
            word: ops.params(word)?,
            position: ops.params(position)?,
            token_type: ops.params(token_type)?,
            norm: load_norm(ops, w, "embeddings.LayerNorm", h, eps)?,
            hidden: h,
        };
        let layers = (0..config.num_hidden_layers)
            .map(|n| {
                let p = format!("encoder.layer.{n}");
                Ok(Layer {
                    qkv: load_qkv(ops, w, &format!("{p}.attention.self"), h)?,
                    attn_out: load_dense(ops, w, &format!("{p}.attention.output.dense"), h, h, true)?,
                    attn_norm: load_norm(ops, w, &format!("{p}.attention.output.LayerNorm"), h, eps)?,
                    intermediate: load_dense(ops, w, &format!("{p}.intermediate.dense"), i, h, true)?,
                    output: load_dense(ops, w, &format!("{p}.output.dense"), h, i, true)?,
                    out_norm: load_norm(ops, w, &format!("{p}.output.LayerNorm"), h, eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert { config, embeddings, layers })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Last hidden states `[batch·seq, hidden]`. Ids past the vocabulary read its last row
    /// (the tokenizer never produces them; this only keeps a bad id from reading out of bounds).
    /// `pause` is called after every step (each of a layer's five ops): a document pass waits
    /// there while queries run, so a query shares the cores with at most one step of it.
    pub fn forward(&self, ops: &O, input: &Batch, pause: &dyn Fn()) -> Result<O::Tensor> {
        let h = self.config.hidden_size;
        let rows = input.batch * input.seq;
        if input.ids.len() != rows || input.mask.len() != rows {
            return Err(Error::BadInput(format!(
                "a batch of {}×{} needs {rows} ids and mask values, got {} and {}",
                input.batch,
                input.seq,
                input.ids.len(),
                input.mask.len()
            )));
        }
        if input.seq > self.config.max_position_embeddings {
            return Err(Error::BadInput(format!(
                "sequence length {} exceeds max_position_embeddings {}",
                input.seq, self.config.max_position_embeddings
            )));
        }
        let last_word = self.config.vocab_size as u32 - 1;
        let ids: Vec<u32> = input.ids.iter().map(|&id| id.min(last_word)).collect();
        let mut x = ops.zeros(rows * h)?;
        ops.embed_into(&ids, input.seq, &self.embeddings, &mut x)?;
        // One buffer per intermediate, reused by every layer: fresh ones would be allocated
        // (and on the CPU zeroed and faulted in) again each time.
        let heads = self.config.num_attention_heads;
        let (mut qkv, mut ctx) = (ops.zeros(rows * 3 * h)?, ops.zeros(rows * h)?);
        let (mut attn, mut inter) = (ops.zeros(rows * h)?, ops.zeros(rows * self.config.intermediate_size)?);
        for layer in &self.layers {
            ops.dense_into(&x, rows, &layer.qkv, false, &mut qkv)?;
            pause();
            ops.attention_into(&qkv, input.mask, input.batch, heads, &mut ctx)?;
            pause();
            ops.dense_residual_norm_into(&ctx, rows, &layer.attn_out, &x, &layer.attn_norm, &mut attn)?;
            pause();
            ops.dense_into(&attn, rows, &layer.intermediate, true, &mut inter)?;
            pause();
            // The layer's input is spent once `attn` holds it as a residual: the output
            // overwrites it.
            ops.dense_residual_norm_into(&inter, rows, &layer.output, &attn, &layer.out_norm, &mut x)?;
            pause();
        }
        Ok(x)
    }
}
