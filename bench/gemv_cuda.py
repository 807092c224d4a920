"""GPU time of the builder's batch-1 GEMV kernel on an NVIDIA GPU against cuBLAS, same run.

The demo-style layer y = x @ W + b (x [1, N], W [N, N] float32) is built by kernelos.builder for
the GPU's arch; its generated CUDA kernel (one block per output, split-K in the block, float4
loads) is compiled and launched through CuPy so that CUDA events time the kernel alone, without
any driver or host path. Baseline: CuPy's `x @ W + b` (cuBLAS GEMV plus an add kernel). Median of
200 event-timed launches each. Needs CuPy and a GPU; prints why not otherwise.
`python -m bench gemv_cuda`.
"""

import numpy as np

WIDTHS = (1024, 4096)
RUNS = 200
WARMUP = 20


def _median_us(cp, fn) -> float:
    for _ in range(WARMUP):
        fn()
    start, end, times = cp.cuda.Event(), cp.cuda.Event(), []
    for _ in range(RUNS):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) * 1e3)
    return float(np.median(times))


def run():
    try:
        import cupy as cp
        arch = "sm_{}{}".format(*cp.cuda.Device(0).compute_capability)
        name = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception as e:  # ImportError, or CuPy's CUDARuntimeError without a GPU
        print(f"skipped: needs CuPy and an NVIDIA GPU ({type(e).__name__}: {e})")
        return None
    from kernelos.builder.build import lower_model
    from kernelos.builder.demo_model import demo_mlp
    from kernelos.dag import Launch

    print(f"{name} ({arch}); median of {RUNS} CUDA-event-timed launches")
    for width in WIDTHS:
        low = lower_model(demo_mlp(width=width, layers=1), [arch])
        (node,) = [n for n in low.dag.nodes if isinstance(n, Launch)]
        src = low.specs[node.kernel].source("cuda", node.kernel)
        kernel = cp.RawModule(code=src, options=(f"--gpu-architecture={arch}", "-default-device")).get_function(node.kernel)
        bufs = {b.name: cp.zeros(b.size_B, cp.uint8) for b in low.dag.buffers.values()}
        for k, v in low.weights.items():
            bufs[k][:] = cp.asarray(np.ascontiguousarray(v).view(np.uint8).ravel())
        x = np.random.default_rng(0).standard_normal((1, width)).astype(np.float32)
        bufs["x"][:] = cp.asarray(x.view(np.uint8).ravel())
        grid, block = node.dims[arch]
        args = tuple(bufs[a.buffer] for a in node.args)
        ours_us = _median_us(cp, lambda: kernel(tuple(grid), tuple(block), args))
        w = cp.asarray(np.ascontiguousarray(low.weights["w0.T"].T))
        b, xd = cp.asarray(low.weights["b0"]), cp.asarray(x)
        cublas_us = _median_us(cp, lambda: xd @ w + b)
        diff = float(np.abs(cp.asnumpy(bufs["y"]).view(np.float32).reshape(1, width) - cp.asnumpy(xd @ w + b)).max())
        weight_B = width * width * 4
        print(f"  {width}x{width}: builder kernel {ours_us:7.2f} us ({weight_B / ours_us / 1e3:5.0f} GB/s of weights); "
              f"cupy x @ W + b {cublas_us:7.2f} us ({weight_B / cublas_us / 1e3:5.0f} GB/s); max |diff| {diff:.1e}")
    return True


if __name__ == "__main__":
    run()
