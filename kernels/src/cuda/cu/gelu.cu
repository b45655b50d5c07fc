// x = gelu(x + bias), exact (erf) GELU as BERT uses, over [rows, cols] in place.
extern "C" __global__ void bias_gelu(float* x, const float* bias, int rows, int cols) {
    const u64 n = (u64)rows * cols;
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < n; i += (u64)gridDim.x * blockDim.x) {
        const float v = x[i] + bias[i % cols];
        x[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    }
}
