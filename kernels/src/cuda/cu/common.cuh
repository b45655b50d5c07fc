// Prepended to every kernel source (NVRTC is given no include paths and no CUDA headers):
// integer and f16 helpers, block-wide reductions (blockDim a multiple of 32, at most 1024).

typedef unsigned long long u64;
#define NEG_INF __int_as_float(0xff800000)

// An IEEE half (stored as its 16 bits) to float.
__device__ __forceinline__ float h2f(unsigned short h) {
    float f;
    asm("{ cvt.f32.f16 %0, %1; }" : "=f"(f) : "h"(h));
    return f;
}
// A float to IEEE half bits, rounded to nearest even.
__device__ __forceinline__ unsigned short f2h(float f) {
    unsigned short h;
    asm("{ cvt.rn.f16.f32 %0, %1; }" : "=h"(h) : "f"(f));
    return h;
}
struct Sum {
    __device__ float operator()(float a, float b) const { return a + b; }
};
struct Max {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <typename Op>
__device__ __forceinline__ float warp_reduce(float v, Op op) {
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// `op` over `v` of every thread of the block, returned to every thread. `scratch` holds 32
// floats; `identity` fills the lanes past the last warp.
template <typename Op>
__device__ float block_reduce(float v, float identity, Op op, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = warp_reduce(v, op);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return warp_reduce(lane < warps ? scratch[lane] : identity, op);
}

__device__ float warp_max(float v) { return warp_reduce(v, Max()); }
__device__ float block_sum(float v, float* scratch) { return block_reduce(v, 0.0f, Sum(), scratch); }
__device__ float block_max(float v, float* scratch) { return block_reduce(v, NEG_INF, Max(), scratch); }

// Normalises `x` (one row of `n`, in place) to zero mean and unit variance, then scales and
// shifts: two passes over the row (mean, then the centred variance), as the CPU twin does.
__device__ void layer_norm_row(float* x, const float* gamma, const float* beta, int n, float eps, float* scratch) {
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
    const float mean = block_sum(s, scratch) / n;
    float v = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float d = x[i] - mean;
        v += d * d;
    }
    const float inv = rsqrtf(block_sum(v, scratch) / n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) x[i] = (x[i] - mean) * inv * gamma[i] + beta[i];
}
