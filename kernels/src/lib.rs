//! The math of the encoder and of scoring. `cpu` is the reference path: plain Rust (and the
//! `gemm` crate for matrix products), each op checked against a naive f64 twin in its tests.
//! `cuda` holds the GPU twins, compiled at run time with NVRTC and checked against `cpu`; `ops`
//! is the forward pass's ops as one trait that both implement.

pub mod cpu;
pub mod cuda;
pub mod ops;

/// The crate's one error type: an op was called with buffers that do not fit its shape.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("{op}: {what} has {got} elements, expected {expected}")]
    Shape { op: &'static str, what: &'static str, expected: usize, got: usize },
    #[error("{op}: {what} has {got} elements, not a whole number of rows of {width}")]
    Rows { op: &'static str, what: &'static str, width: usize, got: usize },
    /// Inputs that do not fit together: ids past the vocabulary, rows that are not whole
    /// sequences, and the like.
    #[error("{op}: {why}")]
    Input { op: &'static str, why: String },
    /// CUDA is missing or failed: no driver, no GPU, a failed launch or copy.
    #[error("CUDA: {0}")]
    Cuda(String),
    #[error("NVRTC could not compile {module}.cu for {arch}:\n{log}")]
    Compile { module: String, arch: &'static str, log: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks that a buffer is whole rows of `width` (> 0) values; returns the row count.
pub(crate) fn check_rows(op: &'static str, what: &'static str, got: usize, width: usize) -> Result<usize> {
    if width > 0 && got.is_multiple_of(width) {
        Ok(got / width)
    } else {
        Err(Error::Rows { op, what, width, got })
    }
}

/// Checks one buffer length.
pub(crate) fn check_len(op: &'static str, what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::Shape { op, what, expected, got })
    }
}
