    /* one k group: each thread stores its own outputs */
#pragma unroll
    for (int ta = 0; ta < $tm; ta++) {
#pragma unroll
        for (int tb = 0; tb < $tn; tb++) {
            const $ix gm = kos_m0 + 4 * $lanes_m * (ta / 4) + 4 * kos_ty + ta % 4;
            const $ix gn = kos_n0 + 4 * $lanes_n * (tb / 4) + 4 * kos_tx + tb % 4;
            if (gm < $M && gn < $N) {
                const int64_t i = ((int64_t)gz * $M + gm) * $N + gn;
                const float acc = kos_acc[ta][tb];
$body
            }
        }
    }
