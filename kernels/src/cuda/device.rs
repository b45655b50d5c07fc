//! One CUDA device: its context, stream and cuBLAS handle, and every kernel of `cu/` compiled
//! for it. The forward pass's ops are in `ops.rs` (device tensors); the ops here take host
//! slices and return host vectors (upload, launch, download), checked against the same shapes
//! as their CPU twins.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg};
use half::f16;

use super::source::{compile, SOURCES};
use crate::{check_len, check_rows, Error, Result};

/// Threads per block for row-wise kernels (one block per row).
const ROW_THREADS: u32 = 128;
/// Longest sequence and widest head the fused attention kernel takes (`cu/attention.cu`), and
/// most query values MaxSim holds.
pub const MAX_ATTENTION_SEQ: usize = 512;
pub const MAX_HEAD_DIM: usize = 128;
pub const MAX_QUERY_VALUES: usize = 8192;

pub(super) fn cuda(e: impl std::fmt::Display) -> Error {
    Error::Cuda(e.to_string())
}

pub struct Device {
    pub(super) context: Arc<CudaContext>,
    pub(super) stream: Arc<CudaStream>,
    functions: HashMap<&'static str, CudaFunction>,
    /// Locked for each product: a handle is not meant for several host threads at once.
    pub(super) blas: Mutex<CudaBlas>,
    /// Most dynamic shared memory one block may have (the attention kernel stages a head's
    /// keys and values there).
    pub(super) shared_per_block: usize,
    /// e.g. "NVIDIA H200 (sm_90)".
    pub description: String,
}

/// Documents resident on the GPU for MaxSim.
pub struct DocsOnDevice {
    docs: CudaSlice<f16>,
    offsets: CudaSlice<u32>,
    pub documents: usize,
    pub dim: usize,
    pub tokens: usize,
}

/// Where the encoder's math runs.
#[derive(Clone)]
pub enum Backend {
    Cpu,
    Cuda(Arc<Device>),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Cpu => f.write_str("cpu"),
            Backend::Cuda(device) => f.write_str(&device.description),
        }
    }
}

/// `auto`, `cpu` or `cuda:N`. `auto` takes GPU 0 when there is one and otherwise the CPU; the
/// second value says what was chosen and, for a fallback, why.
pub fn select(spec: &str) -> Result<(Backend, String)> {
    match spec {
        "cpu" => Ok((Backend::Cpu, "cpu".into())),
        "auto" => match Device::open(0) {
            Ok(device) => {
                let said = format!("cuda:0, {}", device.description);
                Ok((Backend::Cuda(Arc::new(device)), said))
            }
            Err(e) => Ok((Backend::Cpu, format!("cpu, as CUDA is unusable here: {e}"))),
        },
        _ => {
            let ordinal = spec
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| Error::Cuda(format!("device must be auto, cpu or cuda:N, not {spec:?}")))?;
            let device = Device::open(ordinal)?;
            let said = format!("cuda:{ordinal}, {}", device.description);
            Ok((Backend::Cuda(Arc::new(device)), said))
        }
    }
}

impl Device {
    /// Opens GPU `ordinal` and compiles every kernel for its architecture.
    pub fn open(ordinal: usize) -> Result<Device> {
        // SAFETY: only tries to dlopen libcuda; creating a context without it would panic.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(Error::Cuda("no NVIDIA driver (libcuda.so.1 not found)".into()));
        }
        // SAFETY: as above, for libcublas.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            return Err(Error::Cuda("no cuBLAS (libcublas.so.12 or libcublas.so not found)".into()));
        }
        let count = CudaContext::device_count().map_err(cuda)?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::Cuda(format!("no GPU {ordinal}: this machine has {count}")));
        }
        let context = CudaContext::new(ordinal).map_err(cuda)?;
        // SAFETY: everything runs on the context's one default stream, which orders every use
        // of every buffer: the per-buffer events cudarc would record buy nothing here and cost
        // two event records per op.
        unsafe { context.disable_event_tracking() };
        let (major, minor) = context.compute_capability().map_err(cuda)?;
        let arch = match major {
            9.. => "compute_90",
            8 => "compute_80",
            _ => return Err(Error::Cuda(format!("GPU {ordinal} is sm_{major}{minor}; sm_80 or newer is needed"))),
        };
        let mut functions = HashMap::new();
        for (name, source, kernels) in SOURCES {
            let module = context.load_module(compile(name, source, arch)?).map_err(cuda)?;
            for &kernel in kernels {
                functions.insert(kernel, module.load_function(kernel).map_err(cuda)?);
            }
        }
        use cudarc::driver::sys::{CUdevice_attribute as A, CUfunction_attribute as F};
        let shared_per_block =
            context.attribute(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN).map_err(cuda)?;
        // Past 48 KiB a kernel must opt in to dynamic shared memory.
        functions["attention"]
            .set_attribute(F::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, shared_per_block)
            .map_err(cuda)?;
        let shared_per_block = shared_per_block as usize;
        let description = format!("{} (sm_{major}{minor})", context.name().map_err(cuda)?);
        let stream = context.default_stream();
        let blas = Mutex::new(CudaBlas::new(stream.clone()).map_err(cuda)?);
        Ok(Device { stream, context, functions, blas, shared_per_block, description })
    }

    pub(super) fn upload<T: DeviceRepr>(&self, host: &[T]) -> Result<CudaSlice<T>> {
        self.stream.clone_htod(host).map_err(cuda)
    }

    pub(super) fn download<T: DeviceRepr + Default + Clone>(&self, device: &CudaSlice<T>) -> Result<Vec<T>> {
        self.stream.clone_dtoh(device).map_err(cuda)
    }

    pub(super) fn function(&self, name: &str) -> &CudaFunction {
        &self.functions[name]
    }

    /// One block per row.
    pub(super) fn rows(rows: usize) -> LaunchConfig {
        LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (ROW_THREADS, 1, 1), shared_mem_bytes: 0 }
    }

    /// Documents' token rows, concatenated, uploaded once for many MaxSim calls: document `n`
    /// owns rows `offsets[n]..offsets[n + 1]`.
    pub fn upload_docs(&self, docs: &[f16], offsets: &[u32], dim: usize) -> Result<DocsOnDevice> {
        let tokens = check_rows("maxsim", "docs", docs.len(), dim)?;
        let ordered = offsets.windows(2).all(|w| w[0] <= w[1]);
        if offsets.first() != Some(&0) || offsets.last() != Some(&(tokens as u32)) || !ordered {
            return Err(Error::Cuda("maxsim: offsets must rise from 0 to the number of doc tokens".into()));
        }
        // cudarc will not upload an empty slice: give it one padding token nobody owns.
        let docs = if docs.is_empty() { self.upload(&vec![f16::ZERO; dim])? } else { self.upload(docs)? };
        Ok(DocsOnDevice { docs, offsets: self.upload(offsets)?, documents: offsets.len() - 1, dim, tokens })
    }

    /// MaxSim of `query` `[nq, dim]` against every document of `docs`: one score each.
    pub fn maxsim_on(&self, query: &[f16], docs: &DocsOnDevice) -> Result<Vec<f32>> {
        let dim = docs.dim;
        check_rows("maxsim", "query", query.len(), dim)?;
        if query.len() > MAX_QUERY_VALUES {
            return Err(Error::Cuda(format!("maxsim: at most {MAX_QUERY_VALUES} query values, got {}", query.len())));
        }
        if docs.documents == 0 {
            return Ok(Vec::new());
        }
        let query_d = self.upload(query)?;
        let mut scores = self.stream.alloc_zeros::<f32>(docs.documents).map_err(cuda)?;
        let (nq, dim_i) = ((query.len() / dim) as i32, dim as i32);
        let config =
            LaunchConfig { grid_dim: (docs.documents as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let mut launch = self.stream.launch_builder(self.function("maxsim"));
        launch.arg(&query_d).arg(&nq).arg(&docs.docs).arg(&docs.offsets).arg(&dim_i).arg(&mut scores);
        // SAFETY: as above.
        unsafe { launch.launch(config) }.map_err(cuda)?;
        self.download(&scores)
    }

    /// MaxSim of `query` against documents given on the host (uploaded for this call).
    pub fn maxsim(&self, query: &[f16], docs: &[f16], offsets: &[u32], dim: usize) -> Result<Vec<f32>> {
        self.maxsim_on(query, &self.upload_docs(docs, offsets, dim)?)
    }

    /// The memory bandwidth the card's clock and bus width allow, in bytes per second.
    pub fn peak_bandwidth(&self) -> Result<f64> {
        use cudarc::driver::sys::CUdevice_attribute as A;
        let clock_khz = self.context.attribute(A::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE).map_err(cuda)? as f64;
        let bus_bits = self.context.attribute(A::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH).map_err(cuda)? as f64;
        // Double data rate: two transfers per clock.
        Ok(2.0 * clock_khz * 1e3 * bus_bits / 8.0)
    }

    /// The shard codec's decode: `centroid[code] + weights[bucket]` per dimension, for every
    /// token of `codes` with its packed residual bytes.
    pub fn decode_residuals(
        &self,
        codes: &[u32],
        packed: &[u8],
        centroids: &[f16],
        weights: &[f32],
        dim: usize,
        nbits: usize,
    ) -> Result<Vec<f32>> {
        if ![1, 2, 4].contains(&nbits) || !dim.is_multiple_of(8 / nbits) {
            return Err(Error::Cuda(format!("decode: nbits {nbits} with dim {dim}")));
        }
        let bytes = dim * nbits / 8;
        check_len("decode_residuals", "packed", packed.len(), codes.len() * bytes)?;
        check_len("decode_residuals", "weights", weights.len(), dim << nbits)?;
        let k = check_rows("decode_residuals", "centroids", centroids.len(), dim)?;
        if codes.iter().any(|&c| c as usize >= k) {
            return Err(Error::Cuda(format!("decode: a code is past the {k} centroids")));
        }
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        let (codes_d, packed_d) = (self.upload(codes)?, self.upload(packed)?);
        let (centroids_d, weights_d) = (self.upload(centroids)?, self.upload(weights)?);
        let mut out = self.stream.alloc_zeros::<f32>(codes.len() * dim).map_err(cuda)?;
        let (dim_i, nbits_i) = (dim as i32, nbits as i32);
        let mut launch = self.stream.launch_builder(self.function("decode_residuals"));
        launch.arg(&codes_d).arg(&packed_d).arg(&centroids_d).arg(&weights_d).arg(&dim_i).arg(&nbits_i);
        launch.arg(&mut out);
        // SAFETY: as above.
        unsafe { launch.launch(Self::rows(codes.len())) }.map_err(cuda)?;
        self.download(&out)
    }
}
