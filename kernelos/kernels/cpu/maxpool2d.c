/* A 2-D max pool (kernelos/builder/ops/conv.py): a block is one output row (n, c, oh). For each
 * window position (kh, kw) the outputs whose input lies inside the row take the max in one straight
 * loop (NaN wins, as in the reduction; a select, so the loop vectorises), then the row gets the fused
 * epilogue with its coordinates known per row (c3 the only one that varies: vectorised too). */
typedef struct {
$fields
} args_t;

KOS_KERNEL($name) {
    const args_t *a = (const args_t *)args;
    (void)L;
$unpack
    $acc_t m[$ow];
    for (uint64_t row = block_begin; row < block_end; row++) {
        const int64_t nc = row / $oh, c0 = nc / $ch, c1 = nc % $ch, c2 = row % $oh;
        (void)c0; (void)c1;
        for (int64_t o = 0; o < $ow; o++) m[o] = $init;
        for (int64_t kh = 0; kh < $kh; kh++) {
            const int64_t ih = c2 * $sh - $ph + kh * $dh;
            if (ih < 0 || ih >= $h) continue;
            const __typeof__(*$px) *xr = $px + (nc * $h + ih) * $w;
            for (int64_t kw = 0; kw < $kw; kw++) {
                const int64_t off = kw * $dw - $pw;
                const int64_t lo = off < 0 ? (-off + $sw - 1) / $sw : 0;
                int64_t hi = $w - off <= 0 ? 0 : ($w - off + $sw - 1) / $sw;
                if (hi > $ow) hi = $ow;
                for (int64_t o = lo; o < hi; o++) {
                    const $acc_t v = xr[o * $sw + off], cur = m[o];
                    m[o] = (v > cur || v != v) ? v : cur;
                }
            }
        }
        for (int64_t c3 = 0; c3 < $ow; c3++) {
            const int64_t i = (int64_t)row * $ow + c3;
            const $acc_t acc = m[c3];
$body
        }
    }
}
