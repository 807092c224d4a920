// Vendor-stack baseline for bench/nv_vs_cuda.py: the same four measurements through the CUDA runtime.
//   cuda_baseline all    -> launch round trip, 100-kernel graph replay, 256 MiB pinned H2D/D2H (one line each)
//   cuda_baseline first  -> run one kernel, check its result, exit (the caller times the whole process)
// Build: nvcc -O2 -arch=sm_90 -o cuda_baseline cuda_baseline.cu
#include <cuda_runtime.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CHECK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { \
  fprintf(stderr, "%s failed: %s\n", #x, cudaGetErrorString(e)); exit(1); } } while (0)

__global__ void empty() {}
__global__ void write_value(unsigned *out, unsigned v) { out[threadIdx.x] = v + threadIdx.x; }

static double now_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
static double median(std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; }

static int first_result() {
  unsigned *d, h[32];
  CHECK(cudaMalloc(&d, sizeof(h)));
  write_value<<<1, 32>>>(d, 1234);
  CHECK(cudaGetLastError());
  CHECK(cudaMemcpy(h, d, sizeof(h), cudaMemcpyDeviceToHost));
  for (int i = 0; i < 32; i++) if (h[i] != 1234u + i) { fprintf(stderr, "wrong result\n"); return 1; }
  printf("first_result ok\n");
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "first")) return first_result();
  CHECK(cudaSetDeviceFlags(cudaDeviceScheduleSpin));
  cudaStream_t s;
  CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  // 1. empty kernel launch -> completion seen by the host
  std::vector<double> t;
  for (int i = 0; i < 2000; i++) {
    double t0 = now_us();
    empty<<<1, 1, 0, s>>>();
    CHECK(cudaStreamSynchronize(s));
    if (i >= 200) t.push_back(now_us() - t0);
  }
  printf("launch_roundtrip_us %.2f\n", median(t));
  // 2. a captured chain of 100 empty kernels, replayed
  cudaGraph_t g; cudaGraphExec_t ge;
  CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < 100; i++) empty<<<1, 1, 0, s>>>();
  CHECK(cudaStreamEndCapture(s, &g));
  CHECK(cudaGraphInstantiate(&ge, g, 0));
  t.clear();
  for (int i = 0; i < 300; i++) {
    double t0 = now_us();
    CHECK(cudaGraphLaunch(ge, s));
    CHECK(cudaStreamSynchronize(s));
    if (i >= 30) t.push_back((now_us() - t0) / 100.0);
  }
  printf("graph_replay_us_per_kernel %.3f\n", median(t));
  // 3. 256 MiB pinned host <-> device
  size_t n = 256u << 20;
  void *h, *d;
  CHECK(cudaMallocHost(&h, n));
  CHECK(cudaMalloc(&d, n));
  memset(h, 0x5a, n);
  for (int dir = 0; dir < 2; dir++) {
    t.clear();
    double warm_end = now_us() + 0.5e6;   // same warm-up as bench/nv_launch.py: 0.5 s of copies, then 20 timed
    for (int i = 0; i < 2 || now_us() < warm_end || (int)t.size() < 20; i++) {
      bool timing = i >= 2 && now_us() >= warm_end;
      double t0 = now_us();
      if (dir == 0) CHECK(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice));
      else CHECK(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost));
      if (timing) t.push_back(now_us() - t0);
    }
    printf("%s_GBps %.2f\n", dir == 0 ? "h2d" : "d2h", n / median(t) / 1e3);
  }
  return 0;
}
