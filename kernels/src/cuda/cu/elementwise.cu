// Element-wise kernels around the cuBLAS products. Grid-stride loops over [rows, cols].

// x = x + bias, through exact (erf) GELU as BERT's intermediate layer when `gelu`: the epilogue
// of a product whose output is the next product's input or the attention's q, k, v.
extern "C" __global__ void bias_act(float* x, const float* bias, int rows, int cols, int gelu) {
    const u64 n = (u64)rows * cols;
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        const float v = x[i] + bias[i % cols];
        x[i] = gelu ? 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)) : v;
    }
}

// y = x rounded to f16 (nearest even): a product's input for the tensor cores. The activations
// themselves stay f32 between ops, so rounding happens only where cuBLAS reads them.
extern "C" __global__ void to_half(const float* x, unsigned short* y, u64 n) {
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) y[i] = f2h(x[i]);
}
