"""Compiling the generated kernels for every target: cpu C with the cpu driver's compiler, CUDA C
with NVRTC through the nvidia driver (hal.compile routes by target). Identical kernels were already
merged by source hash during lowering; the drivers cache binaries on disk by source hash too, so a
rebuild compiles nothing new. Compiles run in parallel, one per core."""

import os
from concurrent.futures import ThreadPoolExecutor, as_completed

import hal
from hal.errors import CompileError

from .lowering import target_family


def compile_kernels(dag, specs: dict, targets, progress) -> dict:
    """Fill dag.kernels[k].binaries / .meta for every target; returns {target: kernel count}."""
    jobs = [(k, t) for t in targets for k in specs]
    bar = progress.bar(len(jobs), "compile")
    failures = []
    workers = max(1, min(len(os.sched_getaffinity(0)), 16))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(hal.compile, specs[k].source(target_family(t), k), k, t): (k, t) for k, t in jobs}
        for fut in as_completed(futures):
            k, t = futures[fut]
            try:
                binary = fut.result()
            except CompileError as e:
                failures.append(f"{k} for {t}: {e}")
                bar.tick(f"{t} FAILED")
                continue
            fam = target_family(t)
            kernel = dag.kernels[k]
            kernel.binaries[t] = binary
            kernel.meta[t] = {"max_threads": specs[k].max_threads[fam], "shared_B": specs[k].shared_B[fam], "regs": 0}
            bar.tick(t)
    if failures:
        shown = "\n".join(failures[:3])
        raise CompileError(f"{len(failures)} of {len(jobs)} kernel compiles failed; first:\n{shown}")
    return {t: len(specs) for t in targets}
