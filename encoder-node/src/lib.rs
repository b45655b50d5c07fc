//! The encoder node: text to token ids (`tokenizer`), and later ids to ColBERT vectors.

mod batcher;
mod cache;
pub mod error;
mod gate;
pub mod model;
pub mod service;
pub mod tokenizer;

pub use error::{Error, Result};
