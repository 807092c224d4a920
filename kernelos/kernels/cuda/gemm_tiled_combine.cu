    /* $ks k groups: their partial tiles meet in shared memory (the panels' space), $slab accumulators
     * of each thread at a time: red[(g * $slab + jj) * $tg + t] is accumulator p * $slab + jj of thread
     * t of group g. Then every thread of the block adds up some of these outputs over the groups in
     * order 0, 1, ... and stores them, element q = (jh * $tg + t) * 4 + c being accumulator
     * jj = 4 jh + c of thread t: consecutive threads store consecutive columns. */
    __syncthreads();   // every group is done with its panels
#pragma unroll
    for (int p = 0; p < $tm * $tn / $slab; p++) {
#pragma unroll
        for (int jj = 0; jj < $slab; jj++)
            kos_sm[(kos_grp * $slab + jj) * $tg + kos_tid] = kos_acc[(p * $slab + jj) / $tn][(p * $slab + jj) % $tn];
        __syncthreads();
        for (int q = threadIdx.x; q < $slab * $tg; q += $threads) {
            const int t = q / 4 % $tg, jj = q / (4 * $tg) * 4 + q % 4, j = p * $slab + jj;
            const int ta = j / $tn, tb = j % $tn;
            float acc = kos_sm[jj * $tg + t];
            for (int g = 1; g < $ks; g++) acc += kos_sm[(g * $slab + jj) * $tg + t];
            const $ix gm = kos_m0 + 4 * $lanes_m * (ta / 4) + 4 * (t / $lanes_n) + ta % 4;
            const $ix gn = kos_n0 + 4 * $lanes_n * (tb / 4) + 4 * (t % $lanes_n) + tb % 4;
            if (gm < $M && gn < $N) {
                const int64_t i = ((int64_t)gz * $M + gm) * $N + gn;
$body
            }
        }
        __syncthreads();
    }
