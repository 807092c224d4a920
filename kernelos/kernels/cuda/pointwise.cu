/* Pointwise template: one thread per output element, out[i] = epilogue(anchor(coords of i)). */
extern "C" __global__ void __launch_bounds__($threads) $name($params) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= $n) return;
$body
}
