/* Pointwise template: one output element per iteration, out[i] = epilogue(anchor(coords of i)).
 * The anchor is an elementwise expression, an index map (transpose, slice, gather...) or a reduction
 * (matmul, conv, pool, reduce) written as nested loops. A block is a chunk of $chunk elements so the
 * executor spreads chunks over its worker threads. */
typedef struct {
$fields
} args_t;

KOS_KERNEL($name) {
    const args_t *a = (const args_t *)args;
    (void)L;
$unpack
    for (uint64_t blk = block_begin; blk < block_end; blk++) {
        int64_t lo = (int64_t)blk * $chunk, hi = lo + $chunk < $n ? lo + $chunk : $n;
        for (int64_t i = lo; i < hi; i++) {
$body
        }
    }
}
