/* Tiled GEMM template (fp32, FFMA): out(z, m, n) = epilogue(sum_k A(z, m, k) * B(z, k, n)), the output
 * element at linear index i = (z * $M + m) * $N + n. A block computes a $bm x $bn tile with $ks
 * k group(s) of $tg threads; group g multiplies the $bk-deep k panels g, g + $ks, ... (split-K inside the
 * block, so a GEMM with few tiles still fills the SMs), staged in its own part of shared memory (a
 * group of whole warps synchronises on its own barrier, so groups overlap each other's stalls); the
 * next panels are loaded into registers (as float4 where the operand runs contiguously along the
 * panel's fast axis) while the current ones are multiplied. Thread (tx, ty) of a group owns
 * $tm x $tn outputs, (a, b) at row 4 ty + a % 4 + 4 $lanes_m (a / 4) and column
 * 4 tx + b % 4 + 4 $lanes_n (b / 4), so its operands are float4 reads of shared memory that the lanes
 * of a warp spread over the banks. Then the epilogue stores (gemm_tiled_store.cu, one group) or the groups'
 * partial tiles meet in shared memory and every thread adds up and stores some outputs
 * (gemm_tiled_combine.cu). Out-of-range rows, columns and k (and a convolution's padding, b_valid)
 * load as zero. The 1-D grid enumerates (z, m tile, n tile), n fastest. Index arithmetic is in $ix
 * (32-bit where every index fits). A's panel is read k-fastest; B's k- or n-fastest as its memory runs. */
extern "C" __global__ void __launch_bounds__($threads, $min_blocks) $name($params) {
    __shared__ __align__(16) float kos_sm[$smem_floats];
    const int kos_grp = threadIdx.x / $tg, kos_tid = threadIdx.x % $tg;
    const int kos_tx = kos_tid % $lanes_n, kos_ty = kos_tid / $lanes_n;
    float *const kos_as = kos_sm + kos_grp * ($bk * $sa);                   // this group's A panel [$bk][$sa]
    float *const kos_bs = kos_sm + $ks * $bk * $sa + kos_grp * ($bk * $sb);  // and B panel [$bk][$sb]
    const $ix kos_blk = blockIdx.x;
    const $ix gz = kos_blk / ($tiles_m * $tiles_n);
    const $ix kos_m0 = kos_blk / $tiles_n % $tiles_m * $bm;
    const $ix kos_n0 = kos_blk % $tiles_n * $bn;
    float kos_acc[$tm][$tn];
#pragma unroll
    for (int ta = 0; ta < $tm; ta++)
#pragma unroll
        for (int tb = 0; tb < $tn; tb++) kos_acc[ta][tb] = 0.0f;
    $ra_decl   // the next panels, loaded ahead (codegen._panel_code)
#define KOS_LOAD_PANELS(k0) \
$load_a \
$load_b
    KOS_LOAD_PANELS(kos_grp * $bk)
    /* every group runs the same $steps steps (panels past K load as zero); $sync_doc */
    for (int kos_s = 0; kos_s < $steps; kos_s++) {
$store_a
$store_b
        $sync;
        if (kos_s + 1 < $steps) { KOS_LOAD_PANELS(((kos_s + 1) * $ks + kos_grp) * $bk) }   // in flight during the FMAs
#pragma unroll
        for (int kk = 0; kk < $bk; kk++) {
            float kos_a[$tm], kos_b[$tn];
#pragma unroll
            for (int q = 0; q < $tm / 4; q++) {
                const float4 v = *(const float4 *)&kos_as[kk * $sa + 4 * $lanes_m * q + 4 * kos_ty];
                kos_a[4 * q] = v.x; kos_a[4 * q + 1] = v.y; kos_a[4 * q + 2] = v.z; kos_a[4 * q + 3] = v.w;
            }
#pragma unroll
            for (int q = 0; q < $tn / 4; q++) {
                const float4 v = *(const float4 *)&kos_bs[kk * $sb + 4 * $lanes_n * q + 4 * kos_tx];
                kos_b[4 * q] = v.x; kos_b[4 * q + 1] = v.y; kos_b[4 * q + 2] = v.z; kos_b[4 * q + 3] = v.w;
            }
#pragma unroll
            for (int ta = 0; ta < $tm; ta++)
#pragma unroll
                for (int tb = 0; tb < $tn; tb++) kos_acc[ta][tb] += kos_a[ta] * kos_b[tb];
        }
        $sync;
    }
#undef KOS_LOAD_PANELS
$epilogue
}
