//! The CUDA backend of [`Ops`]: activations stay in device memory in f32 between ops; each
//! product rounds its input to f16 and runs on the tensor cores through cuBLAS with f32
//! accumulation and f32 output; bias, GELU, residual and layer norm follow in one kernel.
//! Weights are uploaded once, as f16 (products) or f32 (biases, norms, embeddings).

use cudarc::cublas::{result::gemm_ex, sys as blas};
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};
use half::f16;

use super::device::{cuda, Device, MAX_ATTENTION_SEQ, MAX_HEAD_DIM};
use crate::ops::{attention_shape, check_embed, check_gather, Embeddings, LayerNormParams, Ops};
use crate::{check_len, check_rows, Error, Result};

/// A `Linear` layer on the device: the weight `[out, in]` in f16, the bias in f32 (zeros for a
/// layer without one, so that one kernel serves both).
pub struct CudaLinear {
    weight: CudaSlice<f16>,
    bias: CudaSlice<f32>,
    out: usize,
    inp: usize,
}

/// Warps per attention block: each takes query rows in turn.
const ATTENTION_WARPS: usize = 8;

/// A grid-stride launch over `n` elements.
fn elementwise(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 65_535) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

/// cudarc cannot allocate nothing: empty tensors are refused by name instead.
fn nonempty(op: &'static str, len: usize) -> Result<()> {
    if len == 0 {
        return Err(Error::Input { op, why: "CUDA tensors cannot be empty".into() });
    }
    Ok(())
}

impl Device {
    /// `out[rows, out] = f16(x)[rows, in] · W[out, in]ᵀ` with f32 accumulation (no bias).
    fn product(&self, x: &CudaSlice<f32>, rows: usize, layer: &CudaLinear, out: &mut CudaSlice<f32>) -> Result<()> {
        check_len("dense", "x", x.len(), rows * layer.inp)?;
        check_len("dense", "out", out.len(), rows * layer.out)?;
        nonempty("dense", x.len())?;
        // SAFETY: `to_half` writes all x.len() values before the product reads them.
        let mut half = unsafe { self.stream.alloc::<f16>(x.len()) }.map_err(cuda)?;
        let n = x.len() as u64;
        let mut launch = self.stream.launch_builder(self.function("to_half"));
        launch.arg(x).arg(&mut half).arg(&n);
        // SAFETY: the argument list matches the kernel's signature; both buffers hold n values.
        unsafe { launch.launch(elementwise(x.len())) }.map_err(cuda)?;

        let blas_handle = self.blas.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.context.bind_to_thread().map_err(cuda)?;
        let (w, _w_done) = layer.weight.device_ptr(&self.stream);
        let (a, _a_done) = half.device_ptr(&self.stream);
        let (y, _y_done) = out.device_ptr_mut(&self.stream);
        let (m, n, k) = (layer.out as i32, rows as i32, layer.inp as i32);
        let (alpha, beta) = (1.0f32, 0.0f32);
        // Row-major y = a·wᵀ is column-major yᵀ = w·aᵀ: w's rows are columns of its column-major
        // view, hence OP_T on it and lda = k.
        // SAFETY: the handle is on this device's stream; w is m·k, a is n·k and y is n·m
        // values (checked above); the scalars are f32 as the 32F compute type requires.
        unsafe {
            gemm_ex(
                *blas_handle.handle(),
                blas::cublasOperation_t::CUBLAS_OP_T,
                blas::cublasOperation_t::CUBLAS_OP_N,
                m,
                n,
                k,
                (&alpha) as *const f32 as *const _,
                w as *const _,
                blas::cudaDataType_t::CUDA_R_16F,
                k,
                a as *const _,
                blas::cudaDataType_t::CUDA_R_16F,
                k,
                (&beta) as *const f32 as *const _,
                y as *mut _,
                blas::cudaDataType_t::CUDA_R_32F,
                m,
                blas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(cuda)
    }
}

impl Ops for Device {
    type Tensor = CudaSlice<f32>;
    type Linear = CudaLinear;
    type Params = CudaSlice<f32>;

    fn params(&self, values: Vec<f32>) -> Result<CudaSlice<f32>> {
        nonempty("params", values.len())?;
        self.upload(&values)
    }

    fn linear(&self, weight: Vec<f32>, bias: Option<Vec<f32>>, out: usize, inp: usize) -> Result<CudaLinear> {
        check_len("dense", "weight", weight.len(), out * inp)?;
        nonempty("dense", weight.len())?;
        let bias = bias.unwrap_or_else(|| vec![0.0; out]);
        check_len("dense", "bias", bias.len(), out)?;
        let half: Vec<f16> = weight.iter().map(|&w| f16::from_f32(w)).collect();
        Ok(CudaLinear { weight: self.upload(&half)?, bias: self.upload(&bias)?, out, inp })
    }

    fn zeros(&self, len: usize) -> Result<CudaSlice<f32>> {
        nonempty("zeros", len)?;
        self.stream.alloc_zeros(len).map_err(cuda)
    }

    fn upload(&self, values: &[f32]) -> Result<CudaSlice<f32>> {
        nonempty("upload", values.len())?;
        Device::upload(self, values)
    }

    fn download(&self, x: CudaSlice<f32>) -> Result<Vec<f32>> {
        Device::download(self, &x)
    }

    fn embed_into(
        &self,
        ids: &[u32],
        seq: usize,
        tables: &Embeddings<CudaSlice<f32>>,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check_embed(ids, seq, tables, CudaSlice::len, out.len())?;
        let h = tables.hidden;
        let ids_d = Device::upload(self, ids)?;
        let (seq, hidden, eps) = (seq as i32, h as i32, tables.norm.eps);
        let mut launch = self.stream.launch_builder(self.function("embed_layer_norm"));
        launch.arg(&ids_d).arg(&tables.word).arg(&tables.position).arg(&tables.token_type);
        launch.arg(&tables.norm.gamma).arg(&tables.norm.beta).arg(out).arg(&seq).arg(&hidden).arg(&eps);
        // SAFETY: the argument list matches the kernel's signature; every buffer was sized above
        // and every id is within the word table.
        unsafe { launch.launch(Device::rows(ids.len())) }.map_err(cuda)?;
        Ok(())
    }

    fn dense_into(
        &self,
        x: &CudaSlice<f32>,
        rows: usize,
        layer: &CudaLinear,
        gelu: bool,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        self.product(x, rows, layer, out)?;
        let (rows_i, cols_i, gelu_i) = (rows as i32, layer.out as i32, gelu as i32);
        let mut launch = self.stream.launch_builder(self.function("bias_act"));
        launch.arg(out).arg(&layer.bias).arg(&rows_i).arg(&cols_i).arg(&gelu_i);
        // SAFETY: as above; out holds rows·out values and the bias out.
        unsafe { launch.launch(elementwise(rows * layer.out)) }.map_err(cuda)?;
        Ok(())
    }

    fn dense_residual_norm_into(
        &self,
        x: &CudaSlice<f32>,
        rows: usize,
        layer: &CudaLinear,
        residual: &CudaSlice<f32>,
        norm: &LayerNormParams<CudaSlice<f32>>,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        check_len("dense", "residual", residual.len(), rows * layer.out)?;
        for (what, len) in [("gamma", norm.gamma.len()), ("beta", norm.beta.len())] {
            check_len("layer_norm", what, len, layer.out)?;
        }
        self.product(x, rows, layer, out)?;
        let hidden = layer.out as i32;
        let mut launch = self.stream.launch_builder(self.function("bias_residual_layer_norm"));
        launch.arg(out).arg(&layer.bias).arg(residual).arg(&norm.gamma).arg(&norm.beta).arg(&hidden).arg(&norm.eps);
        // SAFETY: as above; out and residual hold rows·out values, the rest out.
        unsafe { launch.launch(Device::rows(rows)) }.map_err(cuda)?;
        Ok(())
    }

    fn attention_into(
        &self,
        qkv: &CudaSlice<f32>,
        mask: &[u8],
        batch: usize,
        heads: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let (seq, hidden) = attention_shape(qkv.len(), mask.len(), batch, heads)?;
        let head_dim = hidden / heads;
        // Keys and values in f16, one f32 query row per warp, the mask: see cu/attention.cu.
        let shared = 4 * head_dim * seq + 4 * ATTENTION_WARPS * head_dim + seq;
        if seq > MAX_ATTENTION_SEQ || head_dim > MAX_HEAD_DIM || shared > self.shared_per_block {
            let why = format!(
                "sequences of {seq} with heads of {head_dim} exceed the kernel's {MAX_ATTENTION_SEQ} and \
                 {MAX_HEAD_DIM}, or this GPU's {} bytes of shared memory",
                self.shared_per_block
            );
            return Err(Error::Input { op: "attention", why });
        }
        check_len("attention", "out", out.len(), mask.len() * hidden)?;
        nonempty("attention", mask.len())?;
        let mask_d = Device::upload(self, mask)?;
        let (seq_i, heads_i, head_dim_i) = (seq as i32, heads as i32, head_dim as i32);
        let config = LaunchConfig {
            grid_dim: (heads as u32, batch as u32, 1),
            block_dim: (32 * ATTENTION_WARPS as u32, 1, 1),
            shared_mem_bytes: shared as u32,
        };
        let mut launch = self.stream.launch_builder(self.function("attention"));
        launch.arg(qkv).arg(&mask_d).arg(out).arg(&seq_i).arg(&heads_i).arg(&head_dim_i);
        // SAFETY: as above; seq and head_dim are within the kernel's register arrays and the
        // shared memory it carves was sized by the same formula.
        unsafe { launch.launch(config) }.map_err(cuda)?;
        Ok(())
    }

    fn l2_normalize(&self, x: &mut CudaSlice<f32>, dim: usize) -> Result<()> {
        let rows = check_rows("l2_normalize", "x", x.len(), dim)?;
        let dim_i = dim as i32;
        let mut launch = self.stream.launch_builder(self.function("l2_normalize"));
        launch.arg(x).arg(&dim_i);
        // SAFETY: as above.
        unsafe { launch.launch(Device::rows(rows)) }.map_err(cuda)?;
        Ok(())
    }

    fn gather_rows(&self, x: &CudaSlice<f32>, keep: &[u32], dim: usize) -> Result<CudaSlice<f32>> {
        check_gather(x.len(), keep, dim)?;
        nonempty("gather_rows", keep.len() * dim)?;
        let keep_d = Device::upload(self, keep)?;
        // SAFETY: the kernel writes every one of the keep.len()·dim values.
        let mut out = unsafe { self.stream.alloc::<f32>(keep.len() * dim) }.map_err(cuda)?;
        let dim_i = dim as i32;
        let mut launch = self.stream.launch_builder(self.function("gather_rows"));
        launch.arg(x).arg(&keep_d).arg(&mut out).arg(&dim_i);
        // SAFETY: as above.
        unsafe { launch.launch(Device::rows(keep.len())) }.map_err(cuda)?;
        Ok(out)
    }
}
