/* Prepended to every generated cpu kernel (kernelos/builder/codegen.py): types, constants and the
 * small vector helpers the templates call. The kernel ABI itself is drivers/cpu/kos_kernel.h. */
#include <stdint.h>
#include <string.h>
#include <math.h>
#include "kos_kernel.h"

#define KOS_INF __builtin_inff()
#define KOS_NAN __builtin_nanf("")
#define KOS_RESTRICT restrict

typedef float kos_v8f __attribute__((vector_size(32)));

typedef float kos_v16f __attribute__((vector_size(64)));

/* Kernels that have a 16-lane variant use it where the compiler targets 512-bit vectors (a test
 * may force either variant with -DKOS_VEC16=0/1: GCC vectors of 16 floats also build for AVX2). */
#if !defined(KOS_VEC16) && defined(__AVX512F__)
#define KOS_VEC16 1
#elif !defined(KOS_VEC16)
#define KOS_VEC16 0
#endif

/* The even lanes of two consecutive vectors: 8 (16) inputs of a stride-2 window row. */
#if defined(__clang__)
#define KOS_EVEN8(lo, hi) __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14)
#define KOS_EVEN16(lo, hi) __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#else
typedef int32_t kos_v8i __attribute__((vector_size(32)));
typedef int32_t kos_v16i __attribute__((vector_size(64)));
#define KOS_EVEN8(lo, hi) __builtin_shuffle(lo, hi, (kos_v8i){0, 2, 4, 6, 8, 10, 12, 14})
#define KOS_EVEN16(lo, hi) \
    __builtin_shuffle(lo, hi, (kos_v16i){0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30})
#endif

/* Dot product of two contiguous float rows: 4 independent 8-wide accumulators so the loop streams
 * at memory speed (gcc vector extensions; no -ffast-math needed for the reassociation). */
static inline float kos_dot_f32(const float *KOS_RESTRICT a, const float *KOS_RESTRICT b, int64_t n) {
    kos_v8f s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    int64_t k = 0;
    for (; k + 32 <= n; k += 32) {
        kos_v8f a0, a1, a2, a3, b0, b1, b2, b3;
        memcpy(&a0, a + k, 32); memcpy(&a1, a + k + 8, 32); memcpy(&a2, a + k + 16, 32); memcpy(&a3, a + k + 24, 32);
        memcpy(&b0, b + k, 32); memcpy(&b1, b + k + 8, 32); memcpy(&b2, b + k + 16, 32); memcpy(&b3, b + k + 24, 32);
        s0 += a0 * b0; s1 += a1 * b1; s2 += a2 * b2; s3 += a3 * b3;
    }
    for (; k + 8 <= n; k += 8) {
        kos_v8f a0, b0;
        memcpy(&a0, a + k, 32); memcpy(&b0, b + k, 32);
        s0 += a0 * b0;
    }
    kos_v8f s = (s0 + s1) + (s2 + s3);
    float r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; k < n; k++) r += a[k] * b[k];
    return r;
}

/* Four dot products of one contiguous row a with rows b, b + ldb, b + 2 ldb, b + 3 ldb: a batch-1
 * GEMV block reads four weight rows at once (more loads in flight) and a once. out[j * out_stride]. */
static inline void kos_dot4_f32(const float *KOS_RESTRICT a, const float *KOS_RESTRICT b, int64_t ldb, int64_t n,
                                float *out, int64_t out_stride) {
    const float *b0 = b, *b1 = b + ldb, *b2 = b + 2 * ldb, *b3 = b + 3 * ldb;
    kos_v8f s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        kos_v8f x, w0, w1, w2, w3;
        memcpy(&x, a + k, 32);
        memcpy(&w0, b0 + k, 32); memcpy(&w1, b1 + k, 32); memcpy(&w2, b2 + k, 32); memcpy(&w3, b3 + k, 32);
        s0 += x * w0; s1 += x * w1; s2 += x * w2; s3 += x * w3;
    }
    kos_v8f s[4] = {s0, s1, s2, s3};
    const float *rows[4] = {b0, b1, b2, b3};
    for (int j = 0; j < 4; j++) {
        float r = ((s[j][0] + s[j][1]) + (s[j][2] + s[j][3])) + ((s[j][4] + s[j][5]) + (s[j][6] + s[j][7]));
        for (int64_t t = k; t < n; t++) r += a[t] * rows[j][t];
        out[j * out_stride] = r;
    }
}

/* A register tile of dot products for a matmul with M > 1: out[i * ldo + j] = dot(a + i lda,
 * b + j ldb) over n, for i < mr (a literal 1..4 at every call, so the loops unroll) and j < 4. The
 * mr x 4 accumulators stay in vector registers; each step loads mr rows of a and 4 of b once.
 * Called through kos_dot_mx4_f32 below. */
static inline __attribute__((always_inline)) void kos_dot_mx4_tile(
        const float *KOS_RESTRICT a, int64_t lda, const float *KOS_RESTRICT b, int64_t ldb, int64_t n, int mr,
        float *out, int64_t ldo) {
    kos_v8f s[4][4];
    for (int i = 0; i < mr; i++) for (int j = 0; j < 4; j++) s[i][j] = (kos_v8f){0};
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        kos_v8f x[4];
        for (int i = 0; i < mr; i++) memcpy(&x[i], a + i * lda + k, 32);
        for (int j = 0; j < 4; j++) {
            kos_v8f w;
            memcpy(&w, b + j * ldb + k, 32);
            for (int i = 0; i < mr; i++) s[i][j] += x[i] * w;
        }
    }
    for (int i = 0; i < mr; i++) for (int j = 0; j < 4; j++) {
        const kos_v8f v = s[i][j];
        float r = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
        for (int64_t t = k; t < n; t++) r += a[i * lda + t] * b[j * ldb + t];
        out[i * ldo + j] = r;
    }
}

/* Without AVX-512 (16 vector registers) a tile of more than 2 x 4 spills: it runs as two tiles. */
static inline __attribute__((always_inline)) void kos_dot_mx4_f32(
        const float *KOS_RESTRICT a, int64_t lda, const float *KOS_RESTRICT b, int64_t ldb, int64_t n, int mr,
        float *out, int64_t ldo) {
#if !KOS_VEC16
    if (mr > 2) {
        kos_dot_mx4_tile(a, lda, b, ldb, n, 2, out, ldo);
        kos_dot_mx4_tile(a + 2 * lda, lda, b, ldb, n, mr - 2, out + 2 * ldo, ldo);
        return;
    }
#endif
    kos_dot_mx4_tile(a, lda, b, ldb, n, mr, out, ldo);
}

static inline int64_t kos_ipow(int64_t b, int64_t e) {
    int64_t r = 1;
    if (e < 0) return b == 1 ? 1 : (b == -1 ? ((e & 1) ? -1 : 1) : 0);
    for (; e; e >>= 1, b *= b) if (e & 1) r *= b;
    return r;
}

typedef _Float16 kos_half;   /* float16 storage; arithmetic promotes to float */
