    /* split-K: groups 1..$ks-1 leave their partial tiles in shared memory, group 0 adds them in order */
    __shared__ float kos_part[$ks - 1][$tm * $tn][256];
    if (kos_grp > 0) {
#pragma unroll
        for (int ta = 0; ta < $tm; ta++)
#pragma unroll
            for (int tb = 0; tb < $tn; tb++) kos_part[kos_grp - 1][ta * $tn + tb][kos_tid] = kos_acc[ta][tb];
    }
    __syncthreads();
    if (kos_grp > 0) return;
    for (int g = 0; g < $ks - 1; g++) {
#pragma unroll
        for (int ta = 0; ta < $tm; ta++)
#pragma unroll
            for (int tb = 0; tb < $tn; tb++) kos_acc[ta][tb] += kos_part[g][ta * $tn + tb][kos_tid];
    }
