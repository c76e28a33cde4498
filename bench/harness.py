"""What every benchmark in ``bench/`` shares.

- ``SMALL``: ``FASTNET_BENCH_SMALL=1`` shrinks every workload (CI runs the suite that way with
  ``--benchmark-disable``: each body runs once and its result is still checked).
- Backends: ``BACKENDS`` is the row order of every group; ``require(backend)`` skips with the
  reason when a backend cannot run here (no GPU, no PyTorch, the CUDA simulator switched on).
- ``check``: the one comparison of a benchmarked result with the float64 reference, done once
  per row before timing, so a fast wrong kernel fails instead of winning.
- ``label`` / ``run_timed``: the group and ``extra_info`` that ``bench/report.py`` reads, and
  the timing itself (warm-up and JIT compilation happen before it, in the checked call; GPU
  work is synchronised inside the timed callable, with ``synchronizer(backend)``).
- ``measure_peak``: the machine's measured matrix-product peak (``bench/test_peak.py``).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import time
from typing import Callable

import numpy as np
import pytest

SMALL = os.environ.get("FASTNET_BENCH_SMALL", "") not in ("", "0")
SEED = 1234

# Row order inside a group. "reference": fastnet.reference, the oracle (simple on purpose, not a
# speed baseline); "numpy": plain batched NumPy written for speed (bench/peers.py), the
# denominator of speed-ups where a group has it; "torch_cpu_1": PyTorch on one thread;
# "torch_compile": the step through torch.compile; "jax": the epoch as one jit of a lax.scan.
# "_xfer" rows include the host<->device copies of the inputs and results; the other GPU rows
# keep everything resident on the device.
BACKENDS = ("reference", "numpy", "cpu", "cuda", "cuda_xfer", "torch_cpu", "torch_cpu_1",
            "torch_compile", "jax", "torch_cuda", "torch_cuda_xfer")
DEVICE = {"reference": "cpu", "numpy": "cpu", "cpu": "cpu", "torch_cpu": "cpu",
          "torch_cpu_1": "cpu", "torch_compile": "cpu", "jax": "cpu",
          "cuda": "gpu", "cuda_xfer": "gpu", "torch_cuda": "gpu", "torch_cuda_xfer": "gpu"}

# Kernel rows with more work than this many FLOPs are timed over the fixed ROUNDS
# (pytest-benchmark's calibration would otherwise run them for many seconds each).
HEAVY_FLOPS = 2e9


def rounds_from_env(default: int) -> int:
    """``FASTNET_BENCH_ROUNDS`` (a whole number ≥ 1) if set, else ``default``."""
    raw = os.environ.get("FASTNET_BENCH_ROUNDS", "")
    if raw == "":
        return default
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"FASTNET_BENCH_ROUNDS must be a whole number >= 1, got {raw!r}")
    return n


# The rounds of every fixed-round row (epochs, CNN epochs, drop-ins, one-off costs, heavy
# kernels), the same for all of them; the report shows their median and spread.
ROUNDS = rounds_from_env(5)

# Normwise tolerances of ``check``: max|got − want| ≤ rtol · max|want|. The reference is float64;
# float32 kernels accumulate in float32 (dot products of up to 4,096 terms here), fastmath may
# reassociate, and TF32 (10-bit mantissa) must fail the float32 test.
RTOL = {"float32": 1e-4, "float64": 1e-10}


# ---------------------------------------------------------------------------- backends
@functools.lru_cache(maxsize=None)
def unavailable(backend: str) -> str | None:
    """Why ``backend`` cannot run here, or None when it can."""
    if backend in ("reference", "numpy", "cpu"):
        return None
    if backend == "jax":
        if importlib.util.find_spec("jax") is None:
            return "JAX is not installed (an optional comparison: pip install 'fastnet[bench]')"
        return None
    if backend in ("cuda", "cuda_xfer"):
        try:
            from fastnet.kernels import cuda_target as _cuda
        except ImportError as exc:
            return f"fastnet.kernels.cuda_target is missing ({exc})"
        if _cuda.simulator_enabled():
            return "NUMBA_ENABLE_CUDASIM is set: the CUDA simulator is not benchmarked"
        if not _cuda.is_available():
            return "no CUDA GPU: fastnet.kernels.cuda_target.is_available() is False"
        return None
    if backend.startswith("torch"):
        if importlib.util.find_spec("torch") is None:
            return ("PyTorch is not installed (an optional comparison, never a dependency: "
                    "pip install 'fastnet[bench]')")
        if "cuda" in backend:
            import torch
            if not torch.cuda.is_available():
                return "PyTorch sees no CUDA GPU"
        return None
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


def require(backend: str) -> None:
    """Skip the current test, with the reason, when ``backend`` cannot run here."""
    reason = unavailable(backend)
    if reason:
        pytest.skip(f"{backend}: {reason}")


def synchronizer(backend: str) -> Callable[[], None]:
    """A function that waits for ``backend``'s queued device work (a no-op on the CPU)."""
    if backend in ("cuda", "cuda_xfer"):
        from numba import cuda
        return cuda.synchronize
    if backend in ("torch_cuda", "torch_cuda_xfer"):
        import torch
        return torch.cuda.synchronize
    return lambda: None


def threads(backend: str) -> int:
    """Threads the backend's CPU work may use, recorded per row (a row that runs on fewer,
    such as the one-thread epoch, overwrites ``extra_info["threads"]``)."""
    if backend == "torch_cpu_1":
        return 1
    if backend in ("torch_cpu", "torch_compile"):
        import torch
        return torch.get_num_threads()
    if backend == "cpu":
        import numba
        return numba.get_num_threads()
    if DEVICE.get(backend) == "gpu":
        return 1
    env = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    return int(env) if env and env.isdigit() else (os.cpu_count() or 1)


# ---------------------------------------------------------------------------- checking
def check(got: dict, want: dict, dtype, *, name: str, rtol: float | None = None) -> float:
    """Compare each array in ``got`` with the float64 reference ``want[key]``.

    Every key of ``got`` must be in ``want`` (a runner may return a subset: the CUDA forward
    gives no ``z``); arrays must have the reference's shape and the benchmark's ``dtype``
    (integer arrays: exact equality) and be finite. Floats pass when
    ``max|got − want| ≤ rtol · max|want|`` (``RTOL`` by dtype unless ``rtol`` is given).
    Returns the worst error as a fraction of what was allowed (recorded as ``check_margin``).
    """
    dtype = np.dtype(dtype)
    if not got:
        raise AssertionError(f"{name}: the runner returned nothing to check")
    rtol = RTOL[dtype.name] if rtol is None else rtol
    worst = 0.0
    for key, g in got.items():
        g = np.asarray(g)
        w = np.asarray(want[key])
        where = f"{name}: {key}"
        assert g.shape == w.shape, f"{where}: shape {g.shape}, reference {w.shape}"
        if w.dtype.kind in "iu":
            assert g.dtype.kind in "iu", f"{where}: dtype {g.dtype}, expected integers"
            bad = np.flatnonzero(g.ravel() != w.ravel())
            assert bad.size == 0, (f"{where}: {bad.size} of {g.size} differ; first at flat "
                                   f"{bad[0]}: {g.ravel()[bad[0]]} vs {w.ravel()[bad[0]]}")
            continue
        assert g.dtype == dtype, f"{where}: dtype {g.dtype}, expected {dtype}"
        assert np.isfinite(g).all(), f"{where}: non-finite values"
        err = np.abs(g.astype(np.float64) - w)
        scale = float(np.abs(w).max()) if w.size else 0.0
        allowed = rtol * max(scale, np.finfo(np.float64).tiny)
        i = int(np.argmax(err)) if err.size else 0
        if err.size and err.flat[i] > allowed:
            idx = np.unravel_index(i, err.shape)
            raise AssertionError(
                f"{where}: max |got − reference| = {err.flat[i]:.3g} > {rtol:g} · "
                f"max|reference| = {allowed:.3g}; worst at {idx}: got {g[idx]!r}, "
                f"reference {w[idx]!r}")
        if err.size:
            worst = max(worst, float(err.flat[i]) / allowed)
    return worst


# ---------------------------------------------------------------------------- rows
def label(benchmark, *, family: str, case: str, backend: str, dtype, batch: int,
          flops: float | None, peak_comparable: bool = True, **extra) -> None:
    """Put the row in its group (one workload × dtype; backends side by side) and record what
    the report needs. ``flops``: the work of one timed call (None where FLOPs mean nothing);
    ``peak_comparable``: whether GFLOP/s against the matrix-product peak is meaningful (not
    for memory-bound softmax and pooling)."""
    dtype = np.dtype(dtype).name
    benchmark.group = f"{family} {case} {dtype}"
    benchmark.extra_info.update(
        family=family, case=case, backend=backend, device=DEVICE.get(backend, "cpu"),
        dtype=dtype, batch=int(batch), flops=None if flops is None else float(flops),
        peak_comparable=bool(peak_comparable and flops), threads=threads(backend),
        small=SMALL, **extra)


def run_timed(benchmark, fn: Callable[[], object], *, rounds: int | None = None,
              warmup: int = 0):
    """Time ``fn`` (checked by the caller, and warmed up unless ``warmup`` untimed calls are
    asked for first). ``rounds=None`` lets pytest-benchmark calibrate; otherwise exactly
    ``rounds`` calls of one iteration. Stores ``gflops`` (from the median) when the row has
    FLOPs and timing is on."""
    if rounds is None:
        benchmark(fn)
    else:
        benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=warmup)
    stats = getattr(benchmark, "stats", None)
    flops = benchmark.extra_info.get("flops")
    if stats is not None and flops:
        benchmark.extra_info["gflops"] = flops / stats.stats.median / 1e9


# ---------------------------------------------------------------------------- peak
# "cpu-float32" -> GFLOP/s of the best round of this run's peak rows (bench/test_peak.py)
PEAKS: dict[str, float] = {}


def gpu_blas() -> str | None:
    """Which library measures the GPU peak: "cupy" (cuBLAS), else "torch"; None without a GPU
    or either library."""
    if importlib.util.find_spec("cupy") is not None and unavailable("cuda") is None:
        return "cupy"
    if unavailable("torch_cuda") is None:
        return "torch"
    return None


def peak_size(device: str) -> int:
    """Side of the square matrix product that measures the peak."""
    if SMALL:
        return 256
    return 8192 if device == "gpu" else 4096


def make_peak_runner(device: str, dtype) -> tuple[Callable[[], object], Callable[[], None]]:
    """``(call, verify)`` for one n×n×n product in ``dtype``: NumPy's BLAS on the CPU; CuPy's
    cuBLAS (or PyTorch's, TF32 off) on the GPU. ``verify`` checks rows of the last product
    against float64."""
    n = peak_size(device)
    rng = np.random.default_rng(SEED)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    if device == "cpu":
        out = np.empty((n, n), dtype)

        def call():
            np.matmul(a, b, out=out)

        def host():
            return out
    elif gpu_blas() == "cupy":
        import cupy
        da, db = cupy.asarray(a), cupy.asarray(b)
        dout = cupy.empty((n, n), dtype)

        def call():
            cupy.matmul(da, db, out=dout)
            cupy.cuda.runtime.deviceSynchronize()

        def host():
            return cupy.asnumpy(dout)
    else:
        import torch
        torch.backends.cuda.matmul.allow_tf32 = False
        ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
        tout = torch.empty((n, n), dtype=ta.dtype, device="cuda")

        def call():
            torch.matmul(ta, tb, out=tout)
            torch.cuda.synchronize()

        def host():
            return tout.cpu().numpy()

    def verify():
        got = host()[:8]
        want = a[:8].astype(np.float64) @ b.astype(np.float64)
        check({"c": got}, {"c": want}, dtype, name=f"peak {device} {np.dtype(dtype).name}",
              rtol=1e-4 * max(1.0, np.sqrt(n / 1024)) if np.dtype(dtype) == np.float32
              else None)

    return call, verify


def measure_peak(device: str, dtype, repeats: int = 3) -> float:
    """GFLOP/s of the best of ``repeats`` products (after one warm-up): a quick stand-in for
    the ``peak`` rows when a run filtered them out."""
    call, verify = make_peak_runner(device, dtype)
    call()
    verify()
    n = peak_size(device)
    best = min(_seconds(call) for _ in range(repeats))
    return 2.0 * n ** 3 / best / 1e9


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
