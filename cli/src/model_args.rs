//! The `--model` / `--mecab-dic` / `--device` trio that every command running the encoder takes.

use std::path::{Path, PathBuf};

use encoder_node::model::{resolve_model, ColbertModel, EncodeOptions, Encoder};
use kernels::cuda::Backend;

#[derive(clap::Args)]
pub struct ModelArgs {
    /// Model directory, or a Hugging Face id present in the local HF cache.
    #[arg(long)]
    pub model: String,
    /// MeCab dictionary directory (unidic-lite's `dicdir`).
    #[arg(long, env = "JACOLBERT_MECAB_DIC")]
    pub mecab_dic: Option<PathBuf>,
    /// Where the forward pass (and the encoder's MaxSim) runs: auto, cpu or cuda:N. auto takes
    /// GPU 0 when CUDA is usable and otherwise the CPU, logging why.
    #[arg(long, env = "JACOLBERT_DEVICE", default_value = "auto")]
    pub device: String,
}

impl ModelArgs {
    /// Loads the model onto the chosen device; `options.backend` is replaced by it.
    pub fn load(&self, options: EncodeOptions) -> anyhow::Result<ColbertModel> {
        self.placed(|dir, backend| {
            ColbertModel::load(dir, self.mecab_dic.as_deref(), EncodeOptions { backend, ..options })
        })
    }

    /// Only BERT and the projection (no tokenizer, so no MeCab dictionary), for benchmarks.
    pub fn load_encoder(&self) -> anyhow::Result<Encoder> {
        self.placed(|dir, backend| Encoder::load(dir, &backend))
    }

    /// Resolves `--model`, picks the device and loads with `load`, logging what was chosen
    /// once it is in, so that a start-up error is not preceded by it.
    fn placed<T>(&self, load: impl FnOnce(&Path, Backend) -> encoder_node::Result<T>) -> anyhow::Result<T> {
        let dir = resolve_model(&self.model)?;
        let (backend, chosen) = kernels::cuda::select(&self.device)?;
        let loaded = load(&dir, backend)?;
        tracing::info!(model = %dir.display(), device = %chosen, "model loaded");
        Ok(loaded)
    }
}
