/* TF32 tensor-core GEMM template (tf32 images; kernelos/builder/gemm_tf32.py renders it):
 * out(z, m, n) = epilogue(sum_k A(z, m, k) * B(z, k, n)), the output element at linear index
 * i = (z * $M + m) * $N + n, A and B rounded to TF32 (cvt.rna), products accumulated in fp32 by
 * mma.sync m16n8k8. A block computes a $bm x $bn tile with $ks group(s) of $wm x $wn warps; group g
 * multiplies the k panels g, g + $ks, ... (in-block split-K). Each warp owns a ($mi * 16) x ($ni * 8)
 * part of the tile: $mi x $ni mma tiles. Panels are $bk deep, staged in shared memory as TF32 bits:
 * A as [m][k] (row stride $bk + 4), B as [n][k] (stride $bk + 4) or [k][n] (stride $bn + 8) as its
 * memory runs, so both the staging stores and the fragment loads are free of bank conflicts. The
 * next panels are loaded into registers while the current ones are multiplied. Out-of-range rows,
 * columns and k (and a convolution's padding, b_valid) load as zero. Then every group writes its
 * partial tile to shared memory (row stride $bn + 8: conflict-free float2 stores), and all threads
 * add the groups' partials per output in group order and run the epilogue, consecutive threads on
 * consecutive outputs (coalesced loads and stores). The 1-D grid enumerates (z, m tile, n tile), n
 * fastest. Index arithmetic is in $ix (32-bit where every index fits).
 *
 * Fragments (PTX ISA, mma.m16n8k8 .tf32; g = lane / 4, t = lane % 4):
 *   A 16x8: a0 (g, t), a1 (g + 8, t), a2 (g, t + 4), a3 (g + 8, t + 4)     (row m, column k)
 *   B 8x8:  b0 (t, g), b1 (t + 4, g)                                       (row k, column n)
 *   C 16x8: c0 (g, 2t), c1 (g, 2t + 1), c2 (g + 8, 2t), c3 (g + 8, 2t + 1) (row m, column n) */
__device__ __forceinline__ uint32_t kos_tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

extern "C" __global__ void __launch_bounds__($threads) $name($params) {
    __shared__ __align__(16) uint32_t kos_smem[$smem_words];
    const int kos_grp = threadIdx.x / $group_threads, kos_tid = threadIdx.x % $group_threads;
    const int kos_warp = kos_tid >> 5, kos_g = (threadIdx.x & 31) >> 2, kos_t = threadIdx.x & 3;
    const int kos_wm = kos_warp / $wn * ($mi * 16), kos_wn = kos_warp % $wn * ($ni * 8);
    const $ix kos_blk = blockIdx.x;
    const $ix gz = kos_blk / ($tiles_m * $tiles_n);
    const $ix kos_m0 = kos_blk / $tiles_n % $tiles_m * $bm;
    const $ix kos_n0 = kos_blk % $tiles_n * $bn;
    uint32_t *const kos_as = kos_smem + kos_grp * $stage_words;    /* [$bm][$bk + 4] */
    uint32_t *const kos_bs = kos_as + $bm * ($bk + 4);              /* B's panel, see b_slot */
    float kos_acc[$mi][$ni][4];
#pragma unroll
    for (int a = 0; a < $mi; a++)
#pragma unroll
        for (int b = 0; b < $ni; b++)
#pragma unroll
            for (int q = 0; q < 4; q++) kos_acc[a][b][q] = 0.0f;
    float kos_ra[$bm * $bk / $group_threads], kos_rb[$bn * $bk / $group_threads];   /* the next panels */
#define KOS_LOAD_PANELS(k0)                                                                        \
    _Pragma("unroll") for (int j = 0; j < $bm * $bk / $group_threads; j++) {                       \
        const int e = kos_tid + $group_threads * j, kk = e % $bk, mm = e / $bk;                    \
        const $ix gm = kos_m0 + mm, gk = (k0) + kk;                                                \
        kos_ra[j] = (gm < $M && gk < $K) ? $a_load : 0.0f;                                         \
    }                                                                                              \
    _Pragma("unroll") for (int j = 0; j < $bn * $bk / $group_threads; j++) {                       \
        const int e = kos_tid + $group_threads * j, kk = $b_kk, nn = $b_nn;                        \
        const $ix gn = kos_n0 + nn, gk = (k0) + kk;                                                \
        kos_rb[j] = (gn < $N && gk < $K && $b_valid) ? $b_load : 0.0f;                             \
    }
    KOS_LOAD_PANELS(kos_grp * $bk)
    /* every group runs the same $steps steps (panels past K load as zero): __syncthreads is block-wide */
    for (int kos_s = 0; kos_s < $steps; kos_s++) {
#pragma unroll
        for (int j = 0; j < $bm * $bk / $group_threads; j++) {
            const int e = kos_tid + $group_threads * j;
            kos_as[e / $bk * ($bk + 4) + e % $bk] = kos_tf32(kos_ra[j]);
        }
#pragma unroll
        for (int j = 0; j < $bn * $bk / $group_threads; j++) {
            const int e = kos_tid + $group_threads * j, kk = $b_kk, nn = $b_nn;
            kos_bs[$b_slot] = kos_tf32(kos_rb[j]);
        }
        __syncthreads();
        if (kos_s + 1 < $steps) { KOS_LOAD_PANELS(((kos_s + 1) * $ks + kos_grp) * $bk) }   /* in flight during the MMAs */
#pragma unroll
        for (int k8 = 0; k8 < $bk; k8 += 8) {
            uint32_t kos_fa[$mi][4], kos_fb[$ni][2];
#pragma unroll
            for (int a = 0; a < $mi; a++) {
                const uint32_t *r = kos_as + (kos_wm + 16 * a + kos_g) * ($bk + 4) + k8 + kos_t;
                kos_fa[a][0] = r[0];
                kos_fa[a][1] = r[8 * ($bk + 4)];
                kos_fa[a][2] = r[4];
                kos_fa[a][3] = r[8 * ($bk + 4) + 4];
            }
#pragma unroll
            for (int b = 0; b < $ni; b++) {
                const int nn = kos_wn + 8 * b + kos_g;
                kos_fb[b][0] = kos_bs[$b_frag0];
                kos_fb[b][1] = kos_bs[$b_frag1];
            }
#pragma unroll
            for (int a = 0; a < $mi; a++)
#pragma unroll
                for (int b = 0; b < $ni; b++)
                    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                                 : "+f"(kos_acc[a][b][0]), "+f"(kos_acc[a][b][1]), "+f"(kos_acc[a][b][2]),
                                   "+f"(kos_acc[a][b][3])
                                 : "r"(kos_fa[a][0]), "r"(kos_fa[a][1]), "r"(kos_fa[a][2]), "r"(kos_fa[a][3]),
                                   "r"(kos_fb[b][0]), "r"(kos_fb[b][1]));
        }
        __syncthreads();
    }
#undef KOS_LOAD_PANELS
    /* each group's partial tile into shared memory (the panels are no longer read) */
    float *const kos_cs = (float *)kos_smem;
#pragma unroll
    for (int a = 0; a < $mi; a++)
#pragma unroll
        for (int b = 0; b < $ni; b++) {
            float *c = kos_cs + kos_grp * $tile_words + (kos_wm + 16 * a + kos_g) * ($bn + 8) + kos_wn + 8 * b + 2 * kos_t;
            *(float2 *)c = make_float2(kos_acc[a][b][0], kos_acc[a][b][1]);
            *(float2 *)(c + 8 * ($bn + 8)) = make_float2(kos_acc[a][b][2], kos_acc[a][b][3]);
        }
    __syncthreads();
    for (int kos_e = threadIdx.x; kos_e < $bm * $bn; kos_e += $threads) {
        const int mm = kos_e / $bn, nn = kos_e % $bn;
        const $ix gm = kos_m0 + mm, gn = kos_n0 + nn;
        if (gm < $M && gn < $N) {
            float kos_sum = kos_cs[mm * ($bn + 8) + nn];
#pragma unroll
            for (int g = 1; g < $ks; g++) kos_sum += kos_cs[g * $tile_words + mm * ($bn + 8) + nn];
            const int64_t i = ((int64_t)gz * $M + gm) * $N + gn;
            const float acc = kos_sum;
$body
        }
    }
}
