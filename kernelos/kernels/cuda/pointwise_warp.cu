/* Reduction template: one warp per output element. Lanes stride over the flattened reduction
 * domain (coalesced where the innermost loop is contiguous), combine with shuffles, lane 0 applies
 * the epilogue and stores. */
extern "C" __global__ void __launch_bounds__($threads) $name($params) {
    const int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (i >= $n) return;
$body
}
