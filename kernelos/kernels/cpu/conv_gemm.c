/* A float32 2-D convolution (one group, NCHW) as an implicit GEMM (kernelos/builder/ops/conv_gemm.py):
 * out[oc][pixel] = sum over k = (ic, kh, kw) of w[oc][k] * x(pixel, k).
 *
 * A block is (image n, a group of output-channel panels, a range of output rows, a part of those
 * rows' grid positions: pixel tiles may split a row block that has few tiles). It first copies
 * the input rows those outputs read, all input channels, into xbuf: zero-padded and split into the
 * stride's phase planes, each row $wq wide (the output row plus the window's reach), so that every
 * tap (kh, kw) of every output pixel is one constant offset from the pixel's position on a
 * $wq-wide grid. The weights come pre-packed by the builder as panels of $panel output channels,
 * [panel][ic][kh*kw][$panel]. conv_compute (one of two tile kinds, conv_tiles_*.c, included below)
 * fills obuf[channel][grid position]; last, each output row gets the fused epilogue and is stored
 * (a straight loop the compiler vectorises). */
typedef struct {
$fields
} args_t;

$tiles
KOS_KERNEL($name) {
    const args_t *a = (const args_t *)args;
    (void)L;
$unpack
    float xbuf[$xbuf_len] __attribute__((aligned(64)));
    float obuf[$obuf_len] __attribute__((aligned(64)));
    for (uint64_t blk = block_begin; blk < block_end; blk++) {
        const int64_t n = blk / ($groups * $row_blocks * $parts), g = blk / ($row_blocks * $parts) % $groups;
        const int64_t oh0 = blk / $parts % $row_blocks * $rows_per_block;
        const int64_t rows = oh0 + $rows_per_block <= $oh ? $rows_per_block : $oh - oh0;
        /* this block's part of the row block's grid positions */
        const int64_t pos0 = blk % $parts * $part_positions;
        const int64_t pos1 = pos0 + $part_positions < rows * $wq ? pos0 + $part_positions : rows * $wq;
        if (pos0 >= pos1) continue;
        const int64_t pan0 = g * $group_panels;
        const int64_t npan = pan0 + $group_panels <= $panels ? $group_panels : $panels - pan0;
        /* the input rows of this block, padded and phase-split; the tail that tiles overrun is zero */
        for (int64_t ic = 0; ic < $c; ic++) {
            const float *xc = $px + (n * $c + ic) * $h * $w;
            float *d0 = xbuf + ic * $plane;
$copy_code
        }
        memset(xbuf + $c * $plane, 0, sizeof(float) * ($xbuf_len - $c * $plane));
        conv_compute(xbuf, $pw, pan0, npan, pos0, pos1, obuf);
        for (int64_t j = 0; j < npan * $panel && pan0 * $panel + j < $oc; j++) {
            const int64_t c0 = n, c1 = pan0 * $panel + j; (void)c0; (void)c1;
            for (int64_t r = pos0 / $wq; r * $wq < pos1; r++) {
                const int64_t c2 = oh0 + r; (void)c2;
                const float *src = obuf + j * $ldo + r * $wq;
                const int64_t base = ((c0 * $oc + c1) * $oh + c2) * $ow;
                const int64_t lo = pos0 - r * $wq > 0 ? pos0 - r * $wq : 0;
                const int64_t hi = pos1 - r * $wq < $ow ? pos1 - r * $wq : $ow;
                for (int64_t c3 = lo; c3 < hi; c3++) {
                    const int64_t i = base + c3;
                    const float acc = src[c3];
$body
                }
            }
        }
    }
}
