"""Kernel benchmarks: every (family, case, dtype, backend) of ``bench.registry.FAMILIES``.

Each row: build the backend's runner, make ONE call (JIT compilation, CUDA context, caches),
compare its result with the float64 reference (``harness.check``), then time the call; GPU
rows synchronise inside the timed call. Groups are family × case × dtype, so a group's rows
are the backends side by side.

    python -m pytest bench/test_kernels.py --benchmark-only -k "dense_forward and b10"
"""

from __future__ import annotations

import numpy as np
import pytest

import bench.kernels_conv  # noqa: F401  (registers the conv families)
import bench.kernels_dense  # noqa: F401  (registers the dense families)
from bench.harness import ROUNDS, SEED, check, label, require, run_timed, synchronizer
from bench.registry import rows


def _params():
    out = []
    for fam, case, dtype, backend in rows():
        marks = ()
        if backend not in fam.impls:
            marks = pytest.mark.skip(reason=f"{backend}: {fam.missing[backend]}")
        out.append(pytest.param(fam, case, dtype, backend, marks=marks,
                                id=f"{fam.name}-{case.id}-{dtype}-{backend}"))
    return out


@pytest.mark.parametrize("fam, case, dtype, backend", _params())
def test_kernel(benchmark, fam, case, dtype, backend):
    require(backend)
    inputs = fam.inputs(case, np.dtype(dtype), np.random.default_rng(SEED))
    want = fam.reference(inputs)
    runner = fam.impls[backend](inputs, backend)
    sync = synchronizer(backend)

    def timed():
        runner.call()
        sync()

    timed()   # warm-up (compiles) and the call whose result is checked
    margin = check(runner.result(), want, dtype, name=f"{fam.name} {case.id} {backend}",
                   rtol=fam.rtol.get(dtype))
    itemsize = np.dtype(dtype).itemsize
    label(benchmark, family=fam.name, case=case.name, backend=backend, dtype=dtype,
          batch=case.batch, flops=fam.flops(case), peak_comparable=fam.peak_comparable,
          bytes=fam.nbytes(case, itemsize), check_margin=margin,
          note=fam.notes.get(backend, ""))
    run_timed(benchmark, timed, rounds=ROUNDS if fam.heavy(case) else None)
