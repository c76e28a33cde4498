"""The machine's measured peak: one large square matrix product per device and dtype (NumPy's
BLAS on the CPU, float32 and float64; cuBLAS through CuPy, or PyTorch with TF32 off, on the
GPU). ``bench/report.py`` divides each row's GFLOP/s by the best round here (group ``peak``).

    python -m pytest bench/test_peak.py --benchmark-only
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.harness import PEAKS, gpu_blas, label, make_peak_runner, peak_size, run_timed


@pytest.mark.parametrize("device, dtype", [("cpu", "float32"), ("cpu", "float64"),
                                           ("gpu", "float32")],
                         ids=["cpu-float32", "cpu-float64", "gpu-float32"])
def test_peak(benchmark, device, dtype):
    blas = "numpy" if device == "cpu" else gpu_blas()
    if blas is None:
        pytest.skip("gpu: no CUDA GPU with CuPy or PyTorch to measure cuBLAS")
    call, verify = make_peak_runner(device, np.dtype(dtype))
    call()   # warm-up (BLAS threads, cuBLAS handle)
    verify()
    n = peak_size(device)
    label(benchmark, family="peak", case=f"{device} {n}x{n}x{n} matmul ({blas})",
          backend="numpy" if device == "cpu" else ("cuda" if blas == "cupy" else "torch_cuda"),
          dtype=dtype, batch=n, flops=2.0 * n ** 3, peak_of=f"{device}-{dtype}", blas=blas)
    benchmark.group = "peak"
    run_timed(benchmark, call, rounds=5)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        PEAKS[f"{device}-{dtype}"] = 2.0 * n ** 3 / stats.stats.min / 1e9
