"""The kernel-twin checks (``tests/twin_checks.py``) on the CUDA kernels under Numba's CUDA
simulator, small shapes only (each CUDA thread is a Python thread).

Run once, in a subprocess with ``NUMBA_ENABLE_CUDASIM=1`` and ``FASTNET_CUDA_TPB=32``, by the
cuda-sim tests of ``tests/test_twins.py``, which report each kernel's outcome here. Not collected
by a bare ``pytest`` (no ``test_`` prefix). By hand: ``NUMBA_ENABLE_CUDASIM=1
FASTNET_CUDA_TPB=32 PYTHONPATH=tests:tests/cuda_sim python -m pytest -q
tests/cuda_sim/sim_twins.py``.
"""

import os
import sys

import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("simulator-only module: run it with NUMBA_ENABLE_CUDASIM=1",
                allow_module_level=True)

import cuda_twins  # noqa: E402  (after the guard: it imports numba.cuda)
import twin_checks as T  # noqa: E402

sys.setswitchinterval(5e-4)   # block barriers otherwise wait out the GIL's 5 ms slices

CASES = [(family, kernel) for family, (_, _, kernels) in T.FAMILIES.items()
         for kernel in kernels if kernel not in T.NO_CUDA]


@pytest.mark.parametrize("family, kernel", CASES, ids=[f"{f}-{k}" for f, k in CASES])
def test_twin(family, kernel):
    T.check(family, kernel, getattr(cuda_twins, kernel), small=True)
