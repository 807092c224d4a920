/* Row template (Softmax, LayerNormalization): $lanes threads per row of $row_len elements ($threads /
 * $lanes rows per block; element j of row r at linear index r / $inner * $row_span + r % $inner +
 * j * $inner). Each thread holds its elements j = lane + $lanes k in registers where they fit
 * (else re-reads them), every statistics pass reduces across the row's threads (shuffles, and
 * shared memory across the warps of a block) so all of them have the result, then each thread
 * computes, finishes (the fused elementwise epilogue) and stores its elements. */
#define KOS_ROW_LANES $lanes

/* Row-wide sum and max (NaN propagates): every thread of the row ends with the same value, the
 * warps' partials added in a fixed order. part: one slot per warp of the row (unused for a warp). */
template <typename T> __device__ __forceinline__ T kos_row_sum(T v, T *part) {
    v = kos_warp_sum(v);
#if KOS_ROW_LANES > 32
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    v = part[0];
#pragma unroll
    for (int w = 1; w < KOS_ROW_LANES / 32; w++) v += part[w];
#endif
    return v;
}
template <typename T> __device__ __forceinline__ T kos_row_max(T v, T *part) {
    v = kos_warp_max(v);
#if KOS_ROW_LANES > 32
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    v = part[0];
#pragma unroll
    for (int w = 1; w < KOS_ROW_LANES / 32; w++) { const T u = part[w]; v = (u > v || u != u) ? u : v; }
#endif
    return v;
}

extern "C" __global__ void __launch_bounds__($threads) $name($params) {
    const int64_t row = (int64_t)blockIdx.x * ($threads / KOS_ROW_LANES) + threadIdx.x / KOS_ROW_LANES;
    const int lane = threadIdx.x % KOS_ROW_LANES;
    if (row >= $rows) return;   /* whole warps only (a block is one row where the row spans warps) */
    const int64_t kos_base = row / $inner * $row_span + row % $inner;
$body
}
