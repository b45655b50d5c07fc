// Fused multi-head self-attention for short sequences (seq <= 512): softmax(q·kᵀ/√d + mask)·v.
// qkv is one GEMM's output, [batch·seq, 3·hidden] (q, then k, then v, heads side by side);
// mask is [batch, seq] (1 = attend, 0 = padding). ctx gets [batch·seq, hidden].
//
// One block per (head, sequence). The head's keys (transposed, so that lanes reading
// consecutive keys hit distinct banks) and values are staged once in dynamic shared memory as
// f16; then each warp takes query rows in turn: lane l scores keys l, l+32, … (at most 16),
// the softmax runs on warp reductions, and lane l accumulates context dims l, l+32, … from
// the probabilities broadcast by shuffles. Shared memory: 4·head_dim·seq bytes of keys and
// values, one f32 query row per warp, the mask.
//
// A sequence with no attendable key attends uniformly to all (BERT's additive mask makes every
// score the same there), as the CPU twin does.

#define MAX_SEQ 512
#define KEYS_PER_LANE (MAX_SEQ / 32)
#define MAX_HEAD_DIM 128
#define DIMS_PER_LANE (MAX_HEAD_DIM / 32)

extern "C" __global__ void attention(const float* qkv, const unsigned char* mask, float* ctx, int seq, int heads,
                                     int head_dim) {
    extern __shared__ float4 staged[];  // float4: 16-byte alignment for what follows
    const int head = blockIdx.x, b = blockIdx.y;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const int hidden = heads * head_dim, stride = 3 * hidden;
    unsigned short* keys = (unsigned short*)staged;  // [head_dim][seq]
    unsigned short* values = keys + head_dim * seq;  // [seq][head_dim]
    float* query = (float*)(values + head_dim * seq);  // [warps][head_dim]; 4·head_dim·seq bytes in
    unsigned char* keep = (unsigned char*)(query + warps * head_dim);         // [seq]

    const float* base = qkv + (u64)b * seq * stride + head * head_dim;
    for (int i = threadIdx.x; i < seq * head_dim; i += blockDim.x) {
        const int j = i / head_dim, d = i % head_dim;
        keys[d * seq + j] = f2h(base[(u64)j * stride + hidden + d]);
        values[i] = f2h(base[(u64)j * stride + 2 * hidden + d]);
    }
    int attendable = 0;
    for (int j = threadIdx.x; j < seq; j += blockDim.x) {
        keep[j] = mask[(u64)b * seq + j] != 0;
        attendable |= keep[j];
    }
    // Also the barrier after staging.
    const bool uniform = !__syncthreads_or(attendable);

    float* q = query + warp * head_dim;
    const float scale = rsqrtf((float)head_dim);
    for (int row = warp; row < seq; row += warps) {
        for (int d = lane; d < head_dim; d += 32) q[d] = base[(u64)row * stride + d] * scale;
        __syncwarp();
        float s[KEYS_PER_LANE];
        float best = NEG_INF;
#pragma unroll
        for (int t = 0; t < KEYS_PER_LANE; ++t) {
            const int j = lane + 32 * t;
            float score = NEG_INF;
            if (j < seq && (uniform || keep[j])) {
                score = 0.0f;
                if (!uniform)
                    for (int d = 0; d < head_dim; ++d) score += q[d] * h2f(keys[d * seq + j]);
            }
            s[t] = score;
            best = fmaxf(best, score);
        }
        best = warp_max(best);
        float total = 0.0f;
#pragma unroll
        for (int t = 0; t < KEYS_PER_LANE; ++t) {
            s[t] = s[t] == NEG_INF ? 0.0f : expf(s[t] - best);
            total += s[t];
        }
        const float inv = 1.0f / warp_reduce(total, Sum());
        float acc[DIMS_PER_LANE] = {0.0f};
#pragma unroll
        for (int t = 0; t < KEYS_PER_LANE; ++t) {
            if (32 * t >= seq) break;
            const int last = min(32, seq - 32 * t);
            for (int from = 0; from < last; ++from) {
                const float p = __shfl_sync(0xffffffffu, s[t], from);
                const unsigned short* v = values + (32 * t + from) * head_dim;
#pragma unroll
                for (int u = 0; u < DIMS_PER_LANE; ++u)
                    if (lane + 32 * u < head_dim) acc[u] += p * h2f(v[lane + 32 * u]);
            }
        }
        float* out = ctx + ((u64)b * seq + row) * hidden + head * head_dim;
#pragma unroll
        for (int u = 0; u < DIMS_PER_LANE; ++u)
            if (lane + 32 * u < head_dim) out[lane + 32 * u] = acc[u] * inv;
        // Every lane is done with this row's query before the next row overwrites it.
        __syncwarp();
    }
}
