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
    /// Another process (or another shard in this one) holds the store's lock.
    #[error(
        "data directory {path} is in use by another process (a jacolbert shard or local holds its lock): stop that \
         process, or give this one another --data-dir"
    )]
    InUse { path: String },
    /// Too little free space where the store lives: writes are refused, reads go on.
    #[error("store at {path}: {free} bytes free, below the floor of {floor}; writes resume once space is freed")]
    DiskFull { path: String, free: u64, floor: u64 },
    /// The store was salvaged: it serves what is intact and takes no writes.
    #[error("{0}")]
    ReadOnly(String),
    /// A request panicked; the shard goes on serving others.
    #[error("internal: {0}")]
    Panicked(String),
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
            Error::DiskFull { .. } => tonic::Status::resource_exhausted(message),
            Error::Storage(e) if out_of_space(&e) => tonic::Status::resource_exhausted(message),
            Error::Storage(_) | Error::Panicked(_) => tonic::Status::internal(message),
            Error::ReadOnly(_) | Error::InUse { .. } => tonic::Status::failed_precondition(message),
        }
    }
}

/// Whether sled failed because the disk is full (ENOSPC, or the quota's EDQUOT).
pub fn out_of_space(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull || matches!(io.raw_os_error(), Some(28 | 122)))
}
