/* Tiled GEMM template (fp32): out(z, m, n) = epilogue(sum_k A(z, m, k) * B(z, k, n)), the output
 * element at linear index i = (z * $M + m) * $N + n. A block computes a $bm x $bn tile with $ks
 * group(s) of 16x16 threads; group g multiplies the k panels g, g + $ks, ... (in-block split-K, so a
 * long K with few tiles still has enough warps in flight), then the groups' partial tiles add up in
 * shared memory and group 0 runs the epilogue. Each thread owns $tm x $tn outputs (rows ty + 16 a,
 * columns tx + 16 b: conflict-free shared reads, coalesced stores). Panels are $bk deep, staged in
 * shared memory; the next ones are loaded into registers while the current ones are multiplied.
 * Out-of-range rows, columns and k (and a convolution's padding, b_valid) load as zero. The 1-D grid
 * enumerates (z, m tile, n tile), n fastest. Index arithmetic is in $ix (32-bit where every index
 * fits). A's panel is read k-fastest; B's k- or n-fastest as its memory layout runs. */
extern "C" __global__ void __launch_bounds__($threads, $min_blocks) $name($params) {
    __shared__ float kos_as[$ks][$bk][$bm + 1];
    __shared__ float kos_bs[$ks][$bk][$bn + 1];
    const int kos_grp = threadIdx.x >> 8, kos_tid = threadIdx.x & 255, kos_tx = kos_tid & 15, kos_ty = kos_tid >> 4;
    const $ix kos_blk = blockIdx.x;
    const $ix gz = kos_blk / ($tiles_m * $tiles_n);
    const $ix kos_m0 = kos_blk / $tiles_n % $tiles_m * $bm;
    const $ix kos_n0 = kos_blk % $tiles_n * $bn;
    float kos_acc[$tm][$tn];
#pragma unroll
    for (int ta = 0; ta < $tm; ta++)
#pragma unroll
        for (int tb = 0; tb < $tn; tb++) kos_acc[ta][tb] = 0.0f;
    float kos_ra[$bm * $bk / 256], kos_rb[$bn * $bk / 256];   // the next panels, loaded ahead
#define KOS_LOAD_PANELS(k0)                                                                        \
    _Pragma("unroll") for (int j = 0; j < $bm * $bk / 256; j++) {                                  \
        const int e = kos_tid + 256 * j, kk = e % $bk, mm = e / $bk;                               \
        const $ix gm = kos_m0 + mm, gk = (k0) + kk;                                                \
        kos_ra[j] = (gm < $M && gk < $K) ? $a_load : 0.0f;                                         \
    }                                                                                              \
    _Pragma("unroll") for (int j = 0; j < $bn * $bk / 256; j++) {                                  \
        const int e = kos_tid + 256 * j, kk = $b_kk, nn = $b_nn;                                   \
        const $ix gn = kos_n0 + nn, gk = (k0) + kk;                                                \
        kos_rb[j] = (gn < $N && gk < $K && $b_valid) ? $b_load : 0.0f;                             \
    }
    KOS_LOAD_PANELS(kos_grp * $bk)
    /* every group runs the same $steps steps (panels past K load as zero): __syncthreads is block-wide */
    for (int kos_s = 0; kos_s < $steps; kos_s++) {
#pragma unroll
        for (int j = 0; j < $bm * $bk / 256; j++) {
            const int e = kos_tid + 256 * j;
            kos_as[kos_grp][e % $bk][e / $bk] = kos_ra[j];
        }
#pragma unroll
        for (int j = 0; j < $bn * $bk / 256; j++) {
            const int e = kos_tid + 256 * j, kk = $b_kk, nn = $b_nn;
            kos_bs[kos_grp][kk][nn] = kos_rb[j];
        }
        __syncthreads();
        if (kos_s + 1 < $steps) { KOS_LOAD_PANELS(((kos_s + 1) * $ks + kos_grp) * $bk) }   // in flight during the FMAs
#pragma unroll
        for (int kk = 0; kk < $bk; kk++) {
            float kos_a[$tm], kos_b[$tn];
#pragma unroll
            for (int ta = 0; ta < $tm; ta++) kos_a[ta] = kos_as[kos_grp][kk][kos_ty + 16 * ta];
#pragma unroll
            for (int tb = 0; tb < $tn; tb++) kos_b[tb] = kos_bs[kos_grp][kk][kos_tx + 16 * tb];
#pragma unroll
            for (int ta = 0; ta < $tm; ta++)
#pragma unroll
                for (int tb = 0; tb < $tn; tb++) kos_acc[ta][tb] += kos_a[ta] * kos_b[tb];
        }
        __syncthreads();
    }
#undef KOS_LOAD_PANELS
$combine_groups
#pragma unroll
    for (int ta = 0; ta < $tm; ta++) {
#pragma unroll
        for (int tb = 0; tb < $tn; tb++) {
            const $ix gm = kos_m0 + kos_ty + 16 * ta, gn = kos_n0 + kos_tx + 16 * tb;
            if (gm < $M && gn < $N) {
                const int64_t i = ((int64_t)gz * $M + gm) * $N + gn;
                const float acc = kos_acc[ta][tb];
$body
            }
        }
    }
}
