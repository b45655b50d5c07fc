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

/// The one mapping from shard errors to gRPC codes.
impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        let message = e.to_string();
        match e {
            Error::BadInput(_) | Error::Kernel(_) => tonic::Status::invalid_argument(message),
            Error::NotFound(_) => tonic::Status::not_found(message),
            Error::Corrupt { .. } => tonic::Status::data_loss(message),
            Error::Storage(_) => tonic::Status::internal(message),
        }
    }
}
