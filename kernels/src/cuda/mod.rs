//! CUDA twins of the `cpu` ops, compiled from the `.cu` sources in `cu/` with NVRTC at start-up
//! and launched through cudarc. cudarc loads libcuda and libnvrtc only when first used, so this
//! builds and runs where there is no CUDA at all: [`Device::open`] and [`compile`] then return
//! an error that says what is missing, and [`select`] falls back to the CPU saying why.
//!
//! The CPU op stays the reference: the forward pass's ops are tested through the `Ops` trait
//! with the same test bodies on both backends (`ops/tests.rs`), the rest in `tests.rs` against
//! their CPU twins (skipped, with the reason printed, where no GPU is present); every kernel
//! source is compiled for sm_80 and sm_90 in CI, where there is no GPU but NVRTC comes from PyPI.

mod device;
mod ops;
mod source;
#[cfg(test)]
mod tests;

pub use device::{select, Backend, Device, DocsOnDevice};
pub use ops::CudaLinear;
pub use source::{compile, nvrtc_available, ARCHES, SOURCES};
