//! CPU ops in f32, row-major. Matrix products go through the `gemm` crate on all cores; the rest
//! are per-row loops the compiler vectorises.

#[cfg(target_arch = "x86_64")]
mod amx;
mod attention;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod dense;
mod elementwise;
mod f16_rows;
mod linear;
mod maxsim;
mod norm;
mod ops;
#[cfg(target_arch = "x86_64")]
mod packed;
mod peak;

#[cfg(test)]
pub(crate) mod testing;

pub use attention::{attention, AttentionShape};
pub use dense::{dense_path, Dense};
pub use elementwise::{add_in_place, argmax, gelu_erf, softmax_in_place};
pub use f16_rows::dot_f16_rows;
pub use linear::{linear, matmul_transposed};
pub use maxsim::{maxsim, maxsim_matches, maxsim_matrix, QueryScorer};
pub use norm::{l2_normalize_rows, layer_norm};
pub use ops::Cpu;
pub use peak::{bf16_dot_peak_gflops, fma_peak_gflops};
