//! Checkpoint loading and the ColBERT forward pass on the `kernels` ops (CPU or CUDA).

mod bert;
mod colbert;
mod config;
mod encoder;
mod resolve;
mod weights;

pub use bert::{Batch, Bert};
pub use colbert::{marked_ids, marked_spans, ColbertModel, DocEmbedding, EncodeOptions, QueryEmbedding, TokenSource};
pub use config::{BertConfig, ColbertSettings};
pub use encoder::Encoder;
pub use resolve::resolve_model;
pub use weights::Weights;
