"""CUDA C test kernels for the NVIDIA driver tests (compiled by NVRTC in the test run)."""

ADD = r'''
extern "C" __global__ void add(float *out, const float *a, const float *b, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}'''

# dims, shared memory with a barrier, and a device function with a local array (stack/local memory)
MIXED = r'''
__device__ __noinline__ float pick(const float *x, int n, int k) {
  float local[64];
  for (int i = 0; i < 64; i++) local[i] = x[(i * 7 + k) % n];
  return local[k & 63];
}
extern "C" __global__ void mixed(float *out, const float *x, int n) {
  __shared__ float tile[256];
  int t = threadIdx.x, g = blockIdx.x * blockDim.x + t;
  tile[t] = g < n ? x[g] : 0.0f;
  __syncthreads();
  if (g < n) out[g] = tile[blockDim.x - 1 - t] + pick(x, n, g) + (float)(gridDim.x * 1000 + blockDim.x);
}'''

EMPTY = r'''extern "C" __global__ void empty() {}'''

INC = r'''extern "C" __global__ void inc(unsigned *x) { atomicAdd(x, 1u); }'''

OOB = r'''
extern "C" __global__ void oob(float *x) {
  x[(size_t)threadIdx.x * (1ull << 36)] = 1.0f;   /* far outside any mapping */
}'''

HANG = r'''
extern "C" __global__ void hang(volatile unsigned *flag) {
  while (*flag == 0) { }
}'''

# a read-modify-write every element: chained launches see each other's stores or the result is wrong
STEP = r'''
extern "C" __global__ void step(unsigned *x, unsigned n) {
  unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] = x[i] * 3u + 1u;
}'''
