//! The shard's one error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's input does not fit (wrong dimension, k out of range, an empty query).
    #[error("bad input: {0}")]
    BadInput(String),
    #[error("unknown document id {0:?}")]
    NotFound(String),
    /// The store on disk is not one we can serve: corrupt, truncated or another version.
    #[error("store at {path}: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    #[error(transparent)]
    Kernel(#[from] kernels::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
