/* TF32 tensor-core GEMM template (tf32 images; kernelos/builder/gemm_tf32.py renders it):
 * out(z, m, n) = epilogue(sum_k A(z, m, k) * B(z, k, n)), the output element at linear index
 * i = (z * $M + m) * $N + n, A and B rounded to TF32 (cvt.rna), products accumulated in fp32 by
 * mma.sync m16n8k8. A block computes a $bm x $bn tile with $ks group(s) of $wm x $wn warps; group g
 * multiplies the k panels g, g + $ks, ... (in-block split-K). Each warp owns a ($mi * 16) x ($ni * 8)
 * part of the tile: $mi x $ni mma tiles. Panels are $bk deep and stream into shared memory through a
 * $stages-stage ring of cp.async copies ($stages - 1 panels in flight while one is multiplied; one
 * barrier per panel), 16 bytes (4 k) at a time where the operand is contiguous along k, else 4;
 * out-of-range rows, columns and k (and a convolution's padding) copy zero bytes (zero fill). A is staged as [m][k] (row stride $bk + 4), B as [n][k] (stride $bk + 4)
 * or [k][n] (stride $bn + 8) as its memory runs, so the fragment loads are free of bank conflicts.
 * Then every group writes its partial tile to shared memory (row stride $bn + 8: conflict-free
 * float2 stores), and all threads add the groups' partials per output in group order and run the
 * epilogue, consecutive threads on consecutive outputs (coalesced loads and stores). The 1-D grid
 * enumerates (split, z, m tile, n tile), n fastest. Cross-block split-K ($splits > 1): the blocks of split
 * s multiply only k in [s * $split_k, (s + 1) * $split_k) and store their sums, before any epilogue, into
 * the scratch kos_part[s][z][m][n]; a second kernel (gemm_splitk_reduce.cu) adds the splits in order
 * and runs the epilogue. Index arithmetic is in $ix (32-bit where every index fits).
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

/* 4 bytes global -> shared, asynchronously; zero bytes read (the word zero-filled) unless valid */
__device__ __forceinline__ void kos_cp4(float *dst, const float *src, bool valid) {
    uint32_t s;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(s) : "l"(dst));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(s), "l"(src), "r"(valid ? 4 : 0) : "memory");
}

/* 16 bytes (4 consecutive k of a k-contiguous operand), likewise */
__device__ __forceinline__ void kos_cp16(float *dst, const float *src, bool valid) {
    uint32_t s;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(s) : "l"(dst));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(src), "r"(valid ? 16 : 0) : "memory");
}

extern "C" __global__ void __launch_bounds__($threads) $name($params) {
    __shared__ __align__(16) float kos_smem[$smem_words];
    const int kos_grp = threadIdx.x / $group_threads, kos_tid = threadIdx.x % $group_threads;
    const int kos_warp = kos_tid >> 5, kos_g = (threadIdx.x & 31) >> 2, kos_t = threadIdx.x & 3;
    const int kos_wm = kos_warp / $wn * ($mi * 16), kos_wn = kos_warp % $wn * ($ni * 8);
    const $ix kos_split = blockIdx.x / $tile_blocks, kos_blk = blockIdx.x % $tile_blocks;
    const $ix kos_kbase = kos_split * $split_k, kos_kend = kos_kbase + $split_k < $K ? kos_kbase + $split_k : $K;
    const $ix gz = kos_blk / ($tiles_m * $tiles_n);
    const $ix kos_m0 = kos_blk / $tiles_n % $tiles_m * $bm;
    const $ix kos_n0 = kos_blk % $tiles_n * $bn;
    float kos_acc[$mi][$ni][4];
#pragma unroll
    for (int a = 0; a < $mi; a++)
#pragma unroll
        for (int b = 0; b < $ni; b++)
#pragma unroll
            for (int q = 0; q < 4; q++) kos_acc[a][b][q] = 0.0f;
    /* stage buffer st of this group: A [$bm][$bk + 4] at kos_smem + (st * $ks + grp) * $stage_words, B after it */
#define KOS_ISSUE_PANELS(k0, st)                                                                   \
    {                                                                                              \
        float *const as = kos_smem + ((st) * $ks + kos_grp) * $stage_words, *const bs = as + $bm * ($bk + 4); \
        $a_copy \
        $b_copy \
        asm volatile("cp.async.commit_group;" ::: "memory");                                       \
    }
    /* every group runs the same $steps steps (panels past the split's k copy as zero): __syncthreads is block-wide */
#pragma unroll
    for (int st = 0; st < $stages - 1; st++) KOS_ISSUE_PANELS((st * $ks + kos_grp) * $bk, st)
    for (int kos_s = 0; kos_s < $steps; kos_s++) {
        asm volatile("cp.async.wait_group %0;" ::"n"($stages - 2) : "memory");   /* panel kos_s is here */
        __syncthreads();                      /* ...for every thread, and the buffer refilled next is free */
        if (kos_s + $stages - 1 < $steps) {
            KOS_ISSUE_PANELS(((kos_s + $stages - 1) * $ks + kos_grp) * $bk, (kos_s + $stages - 1) % $stages)
        } else {
            asm volatile("cp.async.commit_group;" ::: "memory");                  /* an empty group: counts stay aligned */
        }
        const float *const kos_as = kos_smem + (kos_s % $stages * $ks + kos_grp) * $stage_words;
        const float *const kos_bs = kos_as + $bm * ($bk + 4);
#pragma unroll
        for (int k8 = 0; k8 < $bk; k8 += 8) {
            uint32_t kos_fa[$mi][4], kos_fb[$ni][2];
#pragma unroll
            for (int a = 0; a < $mi; a++) {
                const float *r = kos_as + (kos_wm + 16 * a + kos_g) * ($bk + 4) + k8 + kos_t;
                kos_fa[a][0] = kos_tf32(r[0]);
                kos_fa[a][1] = kos_tf32(r[8 * ($bk + 4)]);
                kos_fa[a][2] = kos_tf32(r[4]);
                kos_fa[a][3] = kos_tf32(r[8 * ($bk + 4) + 4]);
            }
#pragma unroll
            for (int b = 0; b < $ni; b++) {
                const int nn = kos_wn + 8 * b + kos_g;
                kos_fb[b][0] = kos_tf32(kos_bs[$b_frag0]);
                kos_fb[b][1] = kos_tf32(kos_bs[$b_frag1]);
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
    }
#undef KOS_ISSUE_PANELS
    asm volatile("cp.async.wait_group 0;" ::: "memory");
    __syncthreads();                          /* every panel read: the partial tiles may overwrite them */
    float *const kos_cs = kos_smem;
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
