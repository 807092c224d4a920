/* Long-reduction template: one block of $threads threads per output element (split-K inside the
 * block), so a batch-1 layer with few outputs still keeps enough loads in flight to stream its
 * weights at memory bandwidth. Threads stride over the reduction, combine through shuffles and
 * shared memory; thread 0 applies the epilogue and stores. */
extern "C" __global__ void __launch_bounds__($threads) $name($params) {
    const int64_t i = blockIdx.x;
    const int lane = threadIdx.x;
    __shared__ $acc_t kos_part[$threads / 32];
$body
}
