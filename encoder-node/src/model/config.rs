//! What a checkpoint says about itself: the BERT shape (`config.json`) and the ColBERT settings
//! (colbert-ai's `artifact.metadata`, or PyLate's `config_sentence_transformers.json`).
//! Nothing about JaColBERT is assumed; a setting no file gives takes colbert-ai's default.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub architectures: Vec<String>,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

/// How queries and documents are built and scored.
#[derive(Debug, Clone, PartialEq)]
pub struct ColbertSettings {
    pub dim: usize,
    pub query_maxlen: usize,
    pub doc_maxlen: usize,
    /// Marker tokens inserted after [CLS] ("[unused0]" / "[unused1]" in JaColBERT).
    pub query_marker: String,
    pub doc_marker: String,
    /// Whether queries attend to their [MASK] padding (false in every JaColBERT).
    pub attend_to_mask_tokens: bool,
    /// Whether document tokens of ASCII punctuation are dropped.
    pub mask_punctuation: bool,
    pub similarity: String,
}

impl Default for ColbertSettings {
    fn default() -> Self {
        ColbertSettings {
            dim: 128,
            query_maxlen: 32,
            doc_maxlen: 180,
            query_marker: "[unused0]".into(),
            doc_marker: "[unused1]".into(),
            attend_to_mask_tokens: false,
            mask_punctuation: true,
            similarity: "cosine".into(),
        }
    }
}

pub(crate) fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::model(path, format!("not valid JSON: {e}")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

impl BertConfig {
    pub fn load(dir: &Path) -> Result<BertConfig> {
        let path = dir.join("config.json");
        let value = read_json(&path)?.ok_or_else(|| Error::model(dir, "no config.json"))?;
        let config: BertConfig = serde_json::from_value(value).map_err(|e| Error::model(&path, e.to_string()))?;
        if config.hidden_act != "gelu" {
            return Err(Error::model(
                &path,
                format!("hidden_act {:?} is not supported (only exact \"gelu\")", config.hidden_act),
            ));
        }
        if config.num_attention_heads == 0 || !config.hidden_size.is_multiple_of(config.num_attention_heads) {
            return Err(Error::model(
                &path,
                format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    config.hidden_size, config.num_attention_heads
                ),
            ));
        }
        Ok(config)
    }
}

impl ColbertSettings {
    /// colbert-ai's artifact.metadata first, then PyLate's sentence-transformers config.
    pub fn load(dir: &Path) -> Result<ColbertSettings> {
        let mut s = ColbertSettings::default();
        if let Some(meta) = read_json(&dir.join("artifact.metadata"))? {
            let usize_of = |key: &str| meta.get(key).and_then(Value::as_u64).map(|v| v as usize);
            let str_of = |key: &str| meta.get(key).and_then(Value::as_str).map(str::to_owned);
            let bool_of = |key: &str| meta.get(key).and_then(Value::as_bool);
            s.dim = usize_of("dim").unwrap_or(s.dim);
            s.query_maxlen = usize_of("query_maxlen").unwrap_or(s.query_maxlen);
            s.doc_maxlen = usize_of("doc_maxlen").unwrap_or(s.doc_maxlen);
            s.query_marker = str_of("query_token_id").unwrap_or(s.query_marker);
            s.doc_marker = str_of("doc_token_id").unwrap_or(s.doc_marker);
            s.attend_to_mask_tokens = bool_of("attend_to_mask_tokens").unwrap_or(s.attend_to_mask_tokens);
            s.mask_punctuation = bool_of("mask_punctuation").unwrap_or(s.mask_punctuation);
            s.similarity = str_of("similarity").unwrap_or(s.similarity);
        } else if let Some(st) = read_json(&dir.join("config_sentence_transformers.json"))? {
            let usize_of = |key: &str| st.get(key).and_then(Value::as_u64).map(|v| v as usize);
            let str_of = |key: &str| st.get(key).and_then(Value::as_str).map(str::to_owned);
            s.query_maxlen = usize_of("query_length").unwrap_or(s.query_maxlen);
            s.doc_maxlen = usize_of("document_length").unwrap_or(s.doc_maxlen);
            s.query_marker = str_of("query_prefix").unwrap_or(s.query_marker);
            s.doc_marker = str_of("document_prefix").unwrap_or(s.doc_marker);
            s.attend_to_mask_tokens = st.get("attend_to_expansion_tokens").and_then(Value::as_bool).unwrap_or(false);
        }
        if s.query_maxlen < 4 || s.doc_maxlen < 4 {
            return Err(Error::model(
                dir,
                format!("query_maxlen {} / doc_maxlen {} must be at least 4", s.query_maxlen, s.doc_maxlen),
            ));
        }
        Ok(s)
    }
}
