//! BERT and the ColBERT projection on one backend, behind an object-safe trait so that the
//! model (and everything holding it) is not generic over where the math runs.

use std::sync::Arc;

use kernels::cpu::Cpu;
use kernels::cuda::Backend;
use kernels::ops::Ops;

use super::bert::{load_dense, Batch, Bert};
use super::config::BertConfig;
use super::weights::Weights;
use crate::error::Result;

pub(crate) trait Encode: Send + Sync {
    /// BERT, the projection and per-row L2 normalisation over one padded batch: the unit
    /// vectors of rows `keep` (indices into `batch·seq`), `[keep.len(), dim]`, on the host.
    /// Dropping rows before the download is the compaction of padding and punctuation.
    fn encode(&self, batch: &Batch, keep: &[u32]) -> Result<Vec<f32>>;
}

struct Encoder<O: Ops> {
    ops: Arc<O>,
    bert: Bert<O>,
    projection: O::Linear,
    dim: usize,
}

/// Where the projection `linear` is: the BERT file, or its own (PyLate's `1_Dense`).
pub(crate) struct Projection<'a> {
    pub weights: Option<&'a mut Weights>,
    pub dim: usize,
    pub bias: bool,
}

/// Uploads BERT (from `weights`) and the projection onto `backend`.
pub(crate) fn load(
    backend: &Backend,
    config: BertConfig,
    weights: &mut Weights,
    projection: Projection,
) -> Result<Box<dyn Encode>> {
    match backend {
        Backend::Cpu => Encoder::load(Arc::new(Cpu), config, weights, projection),
        Backend::Cuda(device) => Encoder::load(device.clone(), config, weights, projection),
    }
}

impl<O: Ops + 'static> Encoder<O> {
    fn load(ops: Arc<O>, config: BertConfig, weights: &mut Weights, p: Projection) -> Result<Box<dyn Encode>> {
        let hidden = config.hidden_size;
        let projection = match p.weights {
            Some(own) => load_dense(&*ops, own, "linear", p.dim, hidden, p.bias)?,
            None => load_dense(&*ops, weights, "linear", p.dim, hidden, p.bias)?,
        };
        let bert = Bert::load(&*ops, config, weights)?;
        Ok(Box::new(Encoder { ops, bert, projection, dim: p.dim }))
    }
}

impl<O: Ops> Encode for Encoder<O> {
    fn encode(&self, batch: &Batch, keep: &[u32]) -> Result<Vec<f32>> {
        let hidden = self.bert.forward(&self.ops, batch)?;
        if keep.is_empty() {
            return Ok(Vec::new());
        }
        let rows = batch.batch * batch.seq;
        let mut projected = self.ops.zeros(rows * self.dim)?;
        self.ops.dense_into(&hidden, rows, &self.projection, false, &mut projected)?;
        let mut kept = self.ops.gather_rows(&projected, keep, self.dim)?;
        self.ops.l2_normalize(&mut kept, self.dim)?;
        Ok(self.ops.download(&kept)?)
    }
}
