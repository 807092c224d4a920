/* Pixel tiles (included by conv_gemm.c): a tile is 6 output channels x NR consecutive grid positions
 * (NRV vectors: 2 x 8 with AVX2, $nrv16 x 16 with AVX-512), 6 x NRV vector accumulators; each tap
 * loads NRV input vectors (a run of grid positions is one straight load; columns past the output row
 * are computed and dropped) and broadcasts 6 weights. Tiles run over chunks of $kc input channels
 * with the block's panels innermost, so a chunk's inputs stay in L1 while the panels' weights stream
 * from L2; partial sums live in obuf between chunks. */
#if KOS_VEC16
typedef kos_v16f kos_cv;
#define KOS_CV_LANES 16
#define KOS_CV_NRV $nrv16
#else
typedef kos_v8f kos_cv;
#define KOS_CV_LANES 8
#define KOS_CV_NRV 2
#endif
#define KOS_CV_NR (KOS_CV_NRV * KOS_CV_LANES)

/* X(J, V) for the tile's accumulator rows J (output channels) and vectors V (grid positions) */
#if KOS_CV_NRV == 4
#define KOS_CV_COLS(X, J) X(J, 0) X(J, 1) X(J, 2) X(J, 3)
#else
#define KOS_CV_COLS(X, J) X(J, 0) X(J, 1)
#endif
#define KOS_CV_ALL(X) KOS_CV_COLS(X, 0) KOS_CV_COLS(X, 1) KOS_CV_COLS(X, 2) KOS_CV_COLS(X, 3) \
    KOS_CV_COLS(X, 4) KOS_CV_COLS(X, 5)
#define KOS_CV_DECL(J, V) kos_cv a##J##V;
#define KOS_CV_ZERO(J, V) a##J##V = (kos_cv){0};
#define KOS_CV_LOAD(J, V) memcpy(&a##J##V, out + J * $ldo + V * KOS_CV_LANES, sizeof a##J##V);
#define KOS_CV_STORE(J, V) memcpy(out + J * $ldo + V * KOS_CV_LANES, &a##J##V, sizeof a##J##V);
#define KOS_CV_X(J, V) memcpy(&x##V, xp + off + V * KOS_CV_LANES, sizeof x##V);
#define KOS_CV_FMA(J, V) a##J##V += x##V * w[J];

/* One tap: the input vectors at grid offset OFF times the 6 weights of tap T. */
#define KOS_CONV_TAP(OFF, T) { \
    const int64_t off = (OFF); const float *w = wp + (T) * 6; \
    kos_cv x0, x1, x2, x3; (void)x2; (void)x3; \
    KOS_CV_COLS(KOS_CV_X, 0) KOS_CV_ALL(KOS_CV_FMA) }

/* out[j * ldo + 0 .. NR) (+)= the tile's sums over `nic` input channels from xp / wp. */
static inline __attribute__((always_inline)) void conv_tile(const float *KOS_RESTRICT xp, const float *KOS_RESTRICT wp,
                                                            int64_t nic, float *KOS_RESTRICT out, int first) {
    KOS_CV_ALL(KOS_CV_DECL)
    if (first) { KOS_CV_ALL(KOS_CV_ZERO) } else { KOS_CV_ALL(KOS_CV_LOAD) }
    for (int64_t ic = 0; ic < nic; ic++, xp += $plane, wp += $taps * 6) {
$taps_code
    }
    KOS_CV_ALL(KOS_CV_STORE)
}

/* obuf's grid positions [pos0, pos1) of the block (pos0 a multiple of the planned tile, so of NR). */
static void conv_compute(const float *KOS_RESTRICT xbuf, const float *KOS_RESTRICT pw, int64_t pan0, int64_t npan,
                         int64_t pos0, int64_t pos1, float *KOS_RESTRICT obuf) {
    for (int64_t t = pos0; t < pos1; t += KOS_CV_NR)
        for (int64_t kc = 0; kc < $c; kc += $kc) {
            const int64_t nic = kc + $kc <= $c ? $kc : $c - kc;
            for (int64_t j = 0; j < npan; j++)
                conv_tile(xbuf + kc * $plane + t, pw + ((pan0 + j) * $c + kc) * $taps * 6, nic,
                          obuf + j * 6 * $ldo + t, kc == 0);
        }
}
