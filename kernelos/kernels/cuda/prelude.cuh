/* Prepended to every generated CUDA kernel (kernelos/builder/codegen.py); compiled by NVRTC with no
 * system headers, so the fixed-width integer types are declared here. */
typedef long long int64_t;
typedef unsigned long long uint64_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef signed char int8_t;
typedef unsigned char uint8_t;

#define KOS_INF __int_as_float(0x7f800000)
#define KOS_NAN __int_as_float(0x7fffffff)
#define KOS_RESTRICT __restrict__

/* Warp-wide reductions: every lane ends with the combined value. */
template <typename T> __device__ __forceinline__ T kos_warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
template <typename T> __device__ __forceinline__ T kos_warp_max(T v) {
    for (int o = 16; o > 0; o >>= 1) { T w = __shfl_xor_sync(0xffffffffu, v, o); v = (w > v || w != w) ? w : v; }
    return v;
}

__device__ __forceinline__ int64_t kos_ipow(int64_t b, int64_t e) {
    int64_t r = 1;
    if (e < 0) return b == 1 ? 1 : (b == -1 ? ((e & 1) ? -1 : 1) : 0);
    for (; e; e >>= 1, b *= b) if (e & 1) r *= b;
    return r;
}

/* float16 storage with implicit conversions to and from float (PTX cvt), so generated expressions
 * compute in float and store rounded to nearest even, without cuda_fp16.h. */
struct kos_half {
    unsigned short bits;
    __device__ __forceinline__ kos_half() {}
    __device__ __forceinline__ kos_half(float f) { asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(f)); }
    __device__ __forceinline__ operator float() const { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(bits)); return f; }
};

/* Block-wide reductions for the one-block-per-output template; thread 0 ends with the result. */
template <typename T> __device__ __forceinline__ T kos_block_sum(T v, T *part) {
    v = kos_warp_sum(v);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x < 32) v = kos_warp_sum(threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : (T)0);
    return v;
}
template <typename T> __device__ __forceinline__ T kos_block_max(T v, T *part) {
    v = kos_warp_max(v);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    if (threadIdx.x < 32) v = kos_warp_max(threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : part[0]);
    return v;
}
