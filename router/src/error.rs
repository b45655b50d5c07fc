//! The router's one error type, mapped once to gRPC codes.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad request: {0}")]
    BadInput(String),
    /// Not enough of the cluster answered.
    #[error("{0}")]
    Unavailable(String),
    #[error("the deadline passed {0}")]
    Deadline(String),
    #[error("bad address {address:?}: {reason}")]
    Address { address: String, reason: String },
    /// The cluster is not in a state that allows it (a move already under way, a new shard
    /// that is not empty).
    #[error("{0}")]
    Precondition(String),
    /// The cluster store (etcd, or the state file) failed or could not be reached.
    #[error("cluster state: {0}")]
    Store(String),
    /// A node's own error, passed on as it came.
    #[error("{0}")]
    Upstream(#[from] tonic::Status),
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        match e {
            Error::BadInput(m) => tonic::Status::invalid_argument(m),
            Error::Unavailable(m) => tonic::Status::unavailable(m),
            Error::Deadline(m) => tonic::Status::deadline_exceeded(format!("the deadline passed {m}")),
            e @ Error::Address { .. } => tonic::Status::internal(e.to_string()),
            e @ Error::Store(_) => tonic::Status::unavailable(e.to_string()),
            Error::Precondition(m) => tonic::Status::failed_precondition(m),
            Error::Upstream(s) => s,
        }
    }
}
