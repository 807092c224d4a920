/* Row template: a block is $rows output rows of $row_len elements (the innermost output dim). The
 * anchor's code accumulates them into accrow[][] with the row as the inner, vectorisable loop (a
 * direct convolution walks input rows this way, several output channels at once), then each
 * element gets the epilogue and is stored at its linear index. */
typedef struct {
$fields
} args_t;

KOS_KERNEL($name) {
    const args_t *a = (const args_t *)args;
    (void)L;
$unpack
    $acc_t accrow[$rows][$row_len];
    for (uint64_t row = block_begin; row < block_end; row++) {
        for (int64_t j = 0; j < $rows; j++) for (int64_t o = 0; o < $row_len; o++) accrow[j][o] = $init;
$row_code
        for (int64_t j = 0; j < $rows; j++) for (int64_t o = 0; o < $row_len; o++) {
            const int64_t i = $index;
            $acc_t acc = accrow[j][o];
$body
        }
    }
}
