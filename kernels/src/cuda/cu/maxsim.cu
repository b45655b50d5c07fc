// MaxSim of one query against many documents: score[doc] = Σ_i max_j q_i·d_j, f16 vectors in,
// f32 accumulation. Documents are concatenated token rows, doc `n` owning rows
// offsets[n]..offsets[n+1]. One block per document; the query sits in shared memory; each warp
// takes query tokens in turn, its lanes the document's tokens.

#define MAX_QUERY_VALUES 8192  // 64 tokens × 128 dims

extern "C" __global__ void maxsim(const unsigned short* query, int query_tokens, const unsigned short* docs,
                                  const unsigned int* offsets, int dim, float* scores) {
    __shared__ float q[MAX_QUERY_VALUES];
    __shared__ float scratch[32];
    for (int i = threadIdx.x; i < query_tokens * dim; i += blockDim.x) q[i] = h2f(query[i]);
    __syncthreads();
    const unsigned int first = offsets[blockIdx.x], last = offsets[blockIdx.x + 1];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    float sum = 0.0f;
    for (int i = warp; i < query_tokens; i += warps) {
        const float* qi = q + i * dim;
        float best = NEG_INF;
        for (unsigned int j = first + lane; j < last; j += 32) {
            const unsigned short* d = docs + (u64)j * dim;
            float s = 0.0f;
            for (int k = 0; k < dim; ++k) s += qi[k] * h2f(d[k]);
            best = fmaxf(best, s);
        }
        best = warp_max(best);
        // A document with no tokens scores 0 for every query token.
        if (lane == 0) sum += last > first ? best : 0.0f;
    }
    sum = block_sum(lane == 0 ? sum : 0.0f, scratch);
    if (threadIdx.x == 0) scores[blockIdx.x] = sum;
}
