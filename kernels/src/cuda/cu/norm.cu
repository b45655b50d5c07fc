// Layer norms of the BERT forward pass. One block per token row.

// out[t] = LayerNorm(word[ids[t]] + position[t % seq] + token_type0): the embedding layer.
extern "C" __global__ void embed_layer_norm(const unsigned int* ids, const float* word, const float* position,
                                            const float* token_type, const float* gamma, const float* beta,
                                            float* out, int seq, int hidden, float eps) {
    __shared__ float scratch[32];
    const int t = blockIdx.x;
    const float* w = word + (u64)ids[t] * hidden;
    const float* p = position + (u64)(t % seq) * hidden;
    float* o = out + (u64)t * hidden;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) o[i] = w[i] + p[i] + token_type[i];
    __syncthreads();
    layer_norm_row(o, gamma, beta, hidden, eps, scratch);
}

// x[t] = LayerNorm(x[t] + bias + residual[t]): after the attention output and the FFN output.
extern "C" __global__ void bias_residual_layer_norm(float* x, const float* bias, const float* residual,
                                                    const float* gamma, const float* beta, int hidden, float eps) {
    __shared__ float scratch[32];
    float* row = x + (u64)blockIdx.x * hidden;
    const float* res = residual + (u64)blockIdx.x * hidden;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) row[i] += bias[i] + res[i];
    __syncthreads();
    layer_norm_row(row, gamma, beta, hidden, eps, scratch);
}

// Each row of x scaled to unit L2 norm (a zero row stays zero). One block per row.
extern "C" __global__ void l2_normalize(float* x, int dim) {
    __shared__ float scratch[32];
    float* row = x + (u64)blockIdx.x * dim;
    float s = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) s += row[i] * row[i];
    const float norm = sqrtf(block_sum(s, scratch));
    const float scale = norm > 0.0f ? 1.0f / norm : 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) row[i] *= scale;
}

// out[r] = in[keep[r]]: drops the rows of punctuation and padding before the vectors leave.
// One block per output row.
extern "C" __global__ void gather_rows(const float* in, const unsigned int* keep, float* out, int dim) {
    const float* src = in + (u64)keep[blockIdx.x] * dim;
    float* dst = out + (u64)blockIdx.x * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = src[i];
}
