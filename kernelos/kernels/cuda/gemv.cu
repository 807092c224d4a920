/* GEMV template (a float4 dot product per output, e.g. a batch-1 matmul): $lanes lanes per output
 * element, $threads / $lanes outputs per block. The lanes read their float4s (coalesced), sum them
 * with shuffles inside their group; lane 0 applies the epilogue and stores. A group past the last
 * output computes the last one again without storing it, so every lane of a warp joins the shuffles. */
extern "C" __global__ void __launch_bounds__($threads) $name($params) {
    const int64_t kos_out = ((int64_t)blockIdx.x * $threads + threadIdx.x) / $lanes;
    const bool kos_live = kos_out < $n;
    const int64_t i = kos_live ? kos_out : $n - 1;
    const int lane = threadIdx.x % $lanes;
$body
}
