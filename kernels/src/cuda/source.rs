//! The kernel sources and their compilation to PTX with NVRTC.

use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};

use crate::{Error, Result};

/// Prepended to every source: NVRTC gets no include paths and no CUDA headers.
const COMMON: &str = include_str!("cu/common.cuh");

/// (module name, source, the kernels it defines).
pub const SOURCES: [(&str, &str, &[&str]); 5] = [
    (
        "norm",
        include_str!("cu/norm.cu"),
        &["embed_layer_norm", "bias_residual_layer_norm", "l2_normalize", "gather_rows"],
    ),
    ("elementwise", include_str!("cu/elementwise.cu"), &["bias_act", "to_half"]),
    ("attention", include_str!("cu/attention.cu"), &["attention"]),
    ("maxsim", include_str!("cu/maxsim.cu"), &["maxsim"]),
    ("decode", include_str!("cu/decode.cu"), &["decode_residuals"]),
];

/// The virtual architectures we build for: Ampere (A100) and Hopper (H100/H200). PTX for
/// compute_80 also runs on later GPUs, compiled by the driver.
pub const ARCHES: [&str; 2] = ["compute_80", "compute_90"];

/// Whether libnvrtc can be loaded (`libnvrtc.so.12` on the library path).
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compiles one module for `arch`; the error carries NVRTC's log.
pub fn compile(name: &str, source: &str, arch: &'static str) -> Result<Ptx> {
    if !nvrtc_available() {
        return Err(Error::Cuda(
            "libnvrtc.so.12 not found: `pip install nvidia-cuda-nvrtc-cu12` and put its \
             nvidia/cuda_nvrtc/lib on LD_LIBRARY_PATH"
                .into(),
        ));
    }
    let options = CompileOptions {
        arch: Some(arch),
        name: Some(format!("{name}.cu")),
        options: vec!["--std=c++17".into()],
        ..Default::default()
    };
    compile_ptx_with_opts(format!("{COMMON}\n{source}"), options).map_err(|e| Error::Compile {
        module: name.to_string(),
        arch,
        log: match e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => log.to_string_lossy().into_owned(),
            other => other.to_string(),
        },
    })
}
