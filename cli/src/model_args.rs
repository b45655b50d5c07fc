//! The `--model` / `--mecab-dic` pair that every command running the encoder takes.

use std::path::PathBuf;

use encoder_node::model::{resolve_model, ColbertModel, EncodeOptions};

#[derive(clap::Args)]
pub struct ModelArgs {
    /// Model directory, or a Hugging Face id present in the local HF cache.
    #[arg(long)]
    pub model: String,
    /// MeCab dictionary directory (unidic-lite's `dicdir`).
    #[arg(long, env = "JACOLBERT_MECAB_DIC")]
    pub mecab_dic: Option<PathBuf>,
}

impl ModelArgs {
    pub fn load(&self, options: EncodeOptions) -> anyhow::Result<ColbertModel> {
        Ok(ColbertModel::load(&resolve_model(&self.model)?, self.mecab_dic.as_deref(), options)?)
    }
}
