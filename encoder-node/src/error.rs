//! The crate's one error type, mapped once to gRPC status codes (below).

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A MeCab dictionary file exists but is not what MeCab 0.996 would accept.
    #[error("MeCab dictionary file {path} is unusable: {reason}")]
    Dictionary { path: PathBuf, reason: String },

    /// No dictionary directory was found anywhere we looked.
    #[error(
        "MeCab dictionary (unidic-lite 1.0.8) not found. Fetch it with `scripts/fetch-unidic.sh` \
         in a checkout (installs the PyPI package unidic-lite into .deps/python), or \
         `pip install unidic-lite==1.0.8`, then pass `--mecab-dic DIR` or set JACOLBERT_MECAB_DIC \
         to its `unidic_lite/dicdir`. Looked in: {searched}"
    )]
    DictionaryNotFound { searched: String },

    /// A checkpoint is missing, malformed or of an unsupported kind.
    #[error("model {path}: {reason}")]
    Model { path: PathBuf, reason: String },

    /// A request the encoder cannot run as given (shapes that do not fit the model).
    #[error("bad input: {0}")]
    BadInput(String),

    /// A math op was handed buffers of the wrong shape (a bug, not bad input).
    #[error(transparent)]
    Kernel(#[from] kernels::Error),

    /// The request's deadline passed, or its caller hung up, while it waited: it was not run.
    #[error("the deadline passed while the request waited for the encoder; it was not run")]
    Expired,

    /// The model directory's tokenizer files (vocab.txt, tokenizer_config.json, ...) are unusable.
    #[error("tokenizer files in {path} are unusable: {reason}")]
    Vocab { path: PathBuf, reason: String },
}

impl Error {
    pub(crate) fn dictionary(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Dictionary { path: path.into(), reason: reason.into() }
    }

    pub(crate) fn model(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Model { path: path.into(), reason: reason.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// The one mapping from encoder errors to gRPC codes.
impl From<Error> for tonic::Status {
    fn from(e: Error) -> tonic::Status {
        let message = e.to_string();
        match e {
            Error::BadInput(_) => tonic::Status::invalid_argument(message),
            Error::Expired => tonic::Status::deadline_exceeded(message),
            Error::Io { .. }
            | Error::Dictionary { .. }
            | Error::DictionaryNotFound { .. }
            | Error::Model { .. }
            | Error::Vocab { .. }
            | Error::Kernel(_) => tonic::Status::internal(message),
        }
    }
}
