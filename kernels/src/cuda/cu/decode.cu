// The shard codec's decode: out[t] = centroid[codes[t]] + residual, the residual packed
// `nbits` per dimension, LSB first within each byte (dimension d in byte d·nbits/8 at bit
// (d mod 8/nbits)·nbits), each bucket decoding to weights[d·2^nbits + bucket].
// One block per token.

extern "C" __global__ void decode_residuals(const unsigned int* codes, const unsigned char* packed,
                                            const unsigned short* centroids, const float* weights, int dim, int nbits,
                                            float* out) {
    const int t = blockIdx.x, per_byte = 8 / nbits, bytes = dim / per_byte, buckets = 1 << nbits;
    const unsigned short* c = centroids + (u64)codes[t] * dim;
    const unsigned char* r = packed + (u64)t * bytes;
    float* o = out + (u64)t * dim;
    for (int d = threadIdx.x; d < dim; d += blockDim.x) {
        const int bucket = (r[d / per_byte] >> ((d % per_byte) * nbits)) & (buckets - 1);
        o[d] = h2f(c[d]) + weights[d * buckets + bucket];
    }
}
