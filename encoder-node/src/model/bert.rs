//! The BERT encoder on the `kernels` CPU ops, one struct per Hugging Face module, weight names
//! as in `BertModel`.

use kernels::cpu::{self, AttentionShape, Dense};

use super::config::BertConfig;
use super::weights::Weights;
use crate::error::{Error, Result};

/// Loads a `Linear` layer (weight `[out, in]`, optional bias `[out]`) as a `Dense`.
pub(crate) fn load_dense(w: &mut Weights, prefix: &str, out: usize, inp: usize, bias: bool) -> Result<Dense> {
    let weight = w.take(&format!("{prefix}.weight"), &[out, inp])?;
    let bias = if bias { Some(w.take(&format!("{prefix}.bias"), &[out])?) } else { None };
    Ok(Dense::new(weight, bias, out, inp)?)
}

/// `{prefix}.query`, `.key` and `.value` as one Dense whose output rows are `[q | k | v]`.
fn load_qkv(w: &mut Weights, prefix: &str, h: usize) -> Result<Dense> {
    let (mut weight, mut bias) = (Vec::with_capacity(3 * h * h), Vec::with_capacity(3 * h));
    for part in ["query", "key", "value"] {
        weight.extend(w.take(&format!("{prefix}.{part}.weight"), &[h, h])?);
        bias.extend(w.take(&format!("{prefix}.{part}.bias"), &[h])?);
    }
    Ok(Dense::new(weight, Some(bias), 3 * h, h)?)
}

struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    fn load(w: &mut Weights, prefix: &str, h: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            gamma: w.take(&format!("{prefix}.weight"), &[h])?,
            beta: w.take(&format!("{prefix}.bias"), &[h])?,
            eps: eps as f32,
        })
    }
    fn forward(&self, x: &mut [f32]) -> Result<()> {
        Ok(cpu::layer_norm(x, &self.gamma, &self.beta, self.eps)?)
    }
}

struct Layer {
    /// Query, key and value projections stacked into one `[3·hidden, hidden]` product.
    qkv: Dense,
    attn_out: Dense,
    attn_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    out_norm: LayerNorm,
}

pub struct Bert {
    config: BertConfig,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
}

/// A padded batch: `ids` and `mask` are `[batch, seq]`; mask 0 marks keys not attended to.
pub struct Batch<'a> {
    pub ids: &'a [u32],
    pub mask: &'a [u8],
    pub batch: usize,
    pub seq: usize,
}

impl Bert {
    pub fn load(config: BertConfig, w: &mut Weights) -> Result<Bert> {
        let (h, i, eps) = (config.hidden_size, config.intermediate_size, config.layer_norm_eps);
        let word = w.take("embeddings.word_embeddings.weight", &[config.vocab_size, h])?;
        let position = w.take("embeddings.position_embeddings.weight", &[config.max_position_embeddings, h])?;
        let token_type = w.take("embeddings.token_type_embeddings.weight", &[config.type_vocab_size, h])?;
        let emb_norm = LayerNorm::load(w, "embeddings.LayerNorm", h, eps)?;
        let layers = (0..config.num_hidden_layers)
            .map(|n| {
                let p = format!("encoder.layer.{n}");
                Ok(Layer {
                    qkv: load_qkv(w, &format!("{p}.attention.self"), h)?,
                    attn_out: load_dense(w, &format!("{p}.attention.output.dense"), h, h, true)?,
                    attn_norm: LayerNorm::load(w, &format!("{p}.attention.output.LayerNorm"), h, eps)?,
                    intermediate: load_dense(w, &format!("{p}.intermediate.dense"), i, h, true)?,
                    output: load_dense(w, &format!("{p}.output.dense"), h, i, true)?,
                    out_norm: LayerNorm::load(w, &format!("{p}.output.LayerNorm"), h, eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert { config, word, position, token_type, emb_norm, layers })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Last hidden states `[batch·seq, hidden]`. Ids past the vocabulary read its last row
    /// (the tokenizer never produces them; this only keeps a bad id from reading out of bounds).
    pub fn forward(&self, input: &Batch) -> Result<Vec<f32>> {
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
        let mut x = vec![0.0f32; rows * h];
        let last_word = self.config.vocab_size - 1;
        for (r, row) in x.chunks_exact_mut(h).enumerate() {
            let (id, pos) = ((input.ids[r] as usize).min(last_word), r % input.seq);
            let (w, p) = (&self.word[id * h..(id + 1) * h], &self.position[pos * h..(pos + 1) * h]);
            for j in 0..h {
                row[j] = w[j] + p[j] + self.token_type[j];
            }
        }
        self.emb_norm.forward(&mut x)?;
        let shape = AttentionShape {
            batch: input.batch,
            seq: input.seq,
            heads: self.config.num_attention_heads,
            head_dim: self.config.head_dim(),
            row_stride: 3 * h,
        };
        // One buffer per intermediate, reused by every layer: fresh ones would be zeroed and
        // faulted in again each time.
        let inter_size = self.config.intermediate_size;
        let (mut qkv, mut ctx) = (vec![0.0f32; rows * 3 * h], vec![0.0f32; rows * h]);
        let (mut attn, mut inter) = (vec![0.0f32; rows * h], vec![0.0f32; rows * inter_size]);
        for layer in &self.layers {
            layer.qkv.forward_into(&x, rows, &mut qkv)?;
            cpu::attention(&qkv, &qkv[h..], &qkv[2 * h..], input.mask, &mut ctx, shape)?;
            layer.attn_out.forward_add_into(&ctx, rows, &x, &mut attn)?;
            layer.attn_norm.forward(&mut attn)?;
            layer.intermediate.forward_gelu_into(&attn, rows, &mut inter)?;
            // The layer's input is spent once `attn` holds it as a residual: the output
            // overwrites it.
            layer.output.forward_add_into(&inter, rows, &attn, &mut x)?;
            layer.out_norm.forward(&mut x)?;
        }
        Ok(x)
    }
}
