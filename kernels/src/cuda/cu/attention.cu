// Fused multi-head self-attention for short sequences (seq <= 512): softmax(q·kᵀ/√d + mask)·v.
// qkv is one GEMM's output, [batch·seq, 3·hidden] (q, then k, then v, heads side by side);
// mask is [batch, seq] (1 = attend, 0 = padding). ctx gets [batch·seq, hidden].
// One block per (query row, head, batch): the row's scores live in shared memory.

#define MAX_SEQ 512

extern "C" __global__ void attention(const float* qkv, const unsigned char* mask, float* ctx, int seq, int heads,
                                     int head_dim) {
    __shared__ float scores[MAX_SEQ];
    __shared__ float scratch[32];
    const int row = blockIdx.x, head = blockIdx.y, b = blockIdx.z;
    const int hidden = heads * head_dim, stride = 3 * hidden;
    const float* q = qkv + ((u64)b * seq + row) * stride + head * head_dim;
    const float scale = rsqrtf((float)head_dim);
    float best = NEG_INF;
    for (int j = threadIdx.x; j < seq; j += blockDim.x) {
        const float* k = qkv + ((u64)b * seq + j) * stride + hidden + head * head_dim;
        float s = 0.0f;
        for (int d = 0; d < head_dim; ++d) s += q[d] * k[d];
        s = mask[(u64)b * seq + j] ? s * scale : NEG_INF;
        scores[j] = s;
        best = fmaxf(best, s);
    }
    best = block_max(best, scratch);
    // No attendable key: attend uniformly to all, as BERT's additive mask (and the CPU twin) do.
    const bool none = best == NEG_INF;
    float total = 0.0f;
    for (int j = threadIdx.x; j < seq; j += blockDim.x) {
        const float e = none ? 1.0f : scores[j] == NEG_INF ? 0.0f : expf(scores[j] - best);
        scores[j] = e;
        total += e;
    }
    total = block_sum(total, scratch);
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    __syncthreads();
    float* out = ctx + ((u64)b * seq + row) * hidden + head * head_dim;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j < seq; ++j) acc += scores[j] * qkv[((u64)b * seq + j) * stride + 2 * hidden + head * head_dim + d];
        out[d] = acc * inv;
    }
}
