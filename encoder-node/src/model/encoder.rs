//! BERT and the ColBERT projection on one backend: token ids in, unit vectors out. Needs only
//! the checkpoint (no tokenizer), so benchmarks and backend parity checks can run it alone.
//! The backend's types stay behind an object-safe trait, so that nothing holding an
//! [`Encoder`] is generic over where the math runs.

use std::path::Path;
use std::sync::Arc;

use kernels::cpu::Cpu;
use kernels::cuda::Backend;
use kernels::ops::Ops;

use super::bert::{load_dense, Batch, Bert};
use super::config::BertConfig;
use super::weights::Weights;
use crate::error::{Error, Result};

trait Encode: Send + Sync {
    fn encode(&self, batch: &Batch, keep: &[u32], pause: &dyn Fn()) -> Result<Vec<f32>>;
}

struct OnBackend<O: Ops> {
    ops: Arc<O>,
    bert: Bert<O>,
    projection: O::Linear,
    dim: usize,
}

pub struct Encoder {
    config: BertConfig,
    dim: usize,
    backend: Backend,
    inner: Box<dyn Encode>,
}

/// The ColBERT projection's shape in `w`: `linear.weight` `[dim, hidden]`, and whether there is
/// a `linear.bias`.
fn projection_shape(w: &Weights, hidden: usize) -> Result<(usize, bool)> {
    match w.shape("linear.weight") {
        Some(&[dim, h]) if h == hidden => Ok((dim, w.shape("linear.bias").is_some())),
        other => {
            Err(Error::model(w.path(), format!("tensor linear.weight has shape {other:?}, expected [dim, {hidden}]")))
        }
    }
}

impl Encoder {
    /// Loads `config.json`, `model.safetensors` and the projection (in the same file, as
    /// colbert-ai writes it, or in PyLate's `1_Dense/model.safetensors`) onto `backend`.
    pub fn load(dir: &Path, backend: &Backend) -> Result<Encoder> {
        let config = BertConfig::load(dir)?;
        let mut weights = Weights::load(&dir.join("model.safetensors"))?;
        let mut dense = if weights.shape("linear.weight").is_some() {
            None
        } else {
            let dense = dir.join("1_Dense/model.safetensors");
            if !dense.is_file() {
                return Err(Error::model(
                    dir,
                    "no linear.weight in model.safetensors and no 1_Dense/model.safetensors",
                ));
            }
            Some(Weights::load(&dense)?)
        };
        let (dim, bias) = projection_shape(dense.as_ref().unwrap_or(&weights), config.hidden_size)?;
        let (w, own) = (&mut weights, dense.as_mut());
        let inner = match backend {
            Backend::Cpu => OnBackend::load(Arc::new(Cpu), &config, w, own, dim, bias)?,
            Backend::Cuda(device) => OnBackend::load(device.clone(), &config, w, own, dim, bias)?,
        };
        Ok(Encoder { config, dim, backend: backend.clone(), inner })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The width of the output vectors (the projection's).
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// BERT, the projection and per-row L2 normalisation over one padded batch: the unit
    /// vectors of rows `keep` (indices into `batch·seq`), `[keep.len(), dim]`, on the host.
    /// Dropping rows before the download is the compaction of padding and punctuation.
    pub fn encode(&self, batch: &Batch, keep: &[u32]) -> Result<Vec<f32>> {
        self.inner.encode(batch, keep, &|| {})
    }

    /// [`Encoder::encode`] calling `pause` between steps of the forward pass
    /// ([`Bert::forward`]).
    pub fn encode_pausing(&self, batch: &Batch, keep: &[u32], pause: &dyn Fn()) -> Result<Vec<f32>> {
        self.inner.encode(batch, keep, pause)
    }

    /// [`Encoder::encode`] keeping every row: `[batch·seq, dim]`.
    pub fn forward(&self, batch: &Batch) -> Result<Vec<f32>> {
        let all: Vec<u32> = (0..(batch.batch * batch.seq) as u32).collect();
        self.encode(batch, &all)
    }
}

impl<O: Ops + 'static> OnBackend<O> {
    fn load(
        ops: Arc<O>,
        config: &BertConfig,
        weights: &mut Weights,
        own_file: Option<&mut Weights>,
        dim: usize,
        bias: bool,
    ) -> Result<Box<dyn Encode>> {
        let source = match own_file {
            Some(file) => file,
            None => &mut *weights,
        };
        let projection = load_dense(&*ops, source, "linear", dim, config.hidden_size, bias)?;
        let bert = Bert::load(&*ops, config.clone(), weights)?;
        Ok(Box::new(OnBackend { ops, bert, projection, dim }))
    }
}

impl<O: Ops> Encode for OnBackend<O> {
    fn encode(&self, batch: &Batch, keep: &[u32], pause: &dyn Fn()) -> Result<Vec<f32>> {
        let hidden = self.bert.forward(&self.ops, batch, pause)?;
        if keep.is_empty() {
            return Ok(Vec::new());
        }
        let rows = batch.batch * batch.seq;
        let mut projected = self.ops.zeros(rows * self.dim)?;
        self.ops.dense_into(&hidden, rows, &self.projection, false, &mut projected)?;
        let mut kept = self.ops.gather_rows(&projected, keep, self.dim)?;
        self.ops.l2_normalize(&mut kept, self.dim)?;
        Ok(self.ops.download(kept)?)
    }
}
