/* Row template (Softmax, LayerNormalization): a block is $rows_per_block rows of $row_len elements
 * (element j of row r at linear index r / $inner * $row_span + r % $inner + j * $inner). Each row
 * runs its statistics passes over the row (re-read from L1), then computes, finishes (the fused
 * elementwise epilogue) and stores every element. */
typedef struct {
$fields
} args_t;

KOS_KERNEL($name) {
    const args_t *a = (const args_t *)args;
    (void)L;
$unpack
    for (uint64_t blk = block_begin; blk < block_end; blk++) {
        const int64_t row_lo = (int64_t)blk * $rows_per_block;
        const int64_t row_hi = row_lo + $rows_per_block < $rows ? row_lo + $rows_per_block : $rows;
        for (int64_t row = row_lo; row < row_hi; row++) {
            const int64_t kos_base = row / $inner * $row_span + row % $inner;
$stats
            for (int64_t j = 0; j < $row_len; j++) {
                const int64_t i = kos_base + j * $inner;
                const $x_t kos_x = $x[i];
$body
            }
        }
    }
}
