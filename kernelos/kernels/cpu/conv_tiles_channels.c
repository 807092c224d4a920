/* Channel tiles (included by conv_gemm.c): a tile is a run of $mp consecutive outputs of one output row
 * x output channels as vectors (with AVX-512 the panel's 32 channels as 2 x 16; with AVX2 four passes
 * of 8): $mp x VECS vector accumulators; each tap loads VECS aligned weight vectors and broadcasts $mp
 * inputs. No load splits a cache line and no grid column past the output row is computed, which
 * pays for narrow rows (7 or 14 outputs) with long reductions; a row's last tile overlaps the one
 * before it rather than running short. The tile's sums go to obuf transposed, a channel per lane. */
#if KOS_VEC16
typedef kos_v16f kos_ov;
#define KOS_OV_LANES 16
#define KOS_OV_VECS 2
#define KOS_OV_SECOND(X) X
#else
typedef kos_v8f kos_ov;
#define KOS_OV_LANES 8
#define KOS_OV_VECS 1
#define KOS_OV_SECOND(X)
#endif
#define KOS_OV_PASSES ($panel / (KOS_OV_VECS * KOS_OV_LANES))

/* Output I += the tap's weight vectors times input B. */
#define KOS_OV_FMA(I, B) { const float b = (B); a##I##_0 += w0 * b; KOS_OV_SECOND(a##I##_1 += w1 * b;) }
/* One tap: weights of tap T (VECS vectors), inputs at grid offset OFF + i of the tile's outputs i. */
#define KOS_OV_TAP(T, OFF) { \
    kos_ov w0, w1; (void)w1; \
    memcpy(&w0, wp + (T) * $panel, sizeof w0); KOS_OV_SECOND(memcpy(&w1, wp + (T) * $panel + KOS_OV_LANES, sizeof w1);) \
    $fmas }
#define KOS_OV_DECL(I) kos_ov a##I##_0 = {0}, a##I##_1 = {0}; (void)a##I##_1;
#define KOS_OV_STORE(I) for (int l = 0; l < KOS_OV_LANES; l++) { out[l * $ldo + I] = a##I##_0[l]; \
    KOS_OV_SECOND(out[(KOS_OV_LANES + l) * $ldo + I] = a##I##_1[l];) }

/* out[channel * ldo + i] = the tile's sums for its outputs i < $mp over all input channels. */
static inline __attribute__((always_inline)) void conv_tile(const float *KOS_RESTRICT xp, const float *KOS_RESTRICT wp,
                                                            float *KOS_RESTRICT out) {
    $decls
    for (int64_t ic = 0; ic < $c; ic++, xp += $plane, wp += $taps * $panel) {
$taps_code
    }
    $stores
}

/* obuf's rows that hold the block's grid positions [pos0, pos1) (every row: channel tiles take whole
 * row blocks, pos0 = 0 and pos1 = rows * $wq). */
static void conv_compute(const float *KOS_RESTRICT xbuf, const float *KOS_RESTRICT pw, int64_t pan0, int64_t npan,
                         int64_t pos0, int64_t pos1, float *KOS_RESTRICT obuf) {
    for (int64_t j = 0; j < npan; j++)
        for (int64_t pass = 0; pass < KOS_OV_PASSES; pass++) {
            const int64_t ch = j * $panel + pass * KOS_OV_VECS * KOS_OV_LANES;
            for (int64_t r = pos0 / $wq; r * $wq < pos1; r++)
                for (int64_t s = 0; s < $row_tiles; s++) {
                    const int64_t c = s * $mp < $ow - $mp ? s * $mp : $ow - $mp;
                    conv_tile(xbuf + r * $wq + c, pw + (pan0 + j) * $c * $taps * $panel + pass * KOS_OV_VECS * KOS_OV_LANES,
                              obuf + ch * $ldo + r * $wq + c);
                }
        }
}
