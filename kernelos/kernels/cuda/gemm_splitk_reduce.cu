/* Cross-block split-K, second kernel (tf32 images; kernelos/builder/gemm_tf32.py renders it): the
 * GEMM kernel before it left $splits partial sums per output in the scratch kos_part[split][i]; one
 * thread per output i (of $n) adds them in split order (deterministic: no atomics, no zeroed
 * counters) and runs the GEMM node's epilogue (bias, activation, residual) on the sum. */
extern "C" __global__ void __launch_bounds__($threads) $name($params) {
    const int64_t i = (int64_t)blockIdx.x * $threads + threadIdx.x;
    if (i >= $n) return;
    float acc = kos_part[i];
#pragma unroll
    for (int s = 1; s < $splits; s++) acc += kos_part[(int64_t)s * $n + i];
$body
}
