"""CUDA dense kernels (``fastnet.kernels.dense_cuda``) against the NumPy reference.

Two groups, by the hardware they need:
- ``test_cuda_kernels_under_simulator``: every kernel under Numba's CUDA simulator, tiny shapes,
  run in a subprocess (``tests/cuda_sim/sim_dense_cuda.py``) so the simulated and the real CUDA
  target never mix in this process; includes multi-block cooperative grids, emulated with all
  blocks running concurrently (``tests/cuda_sim/grid_emulator.py``). Runs everywhere (CI has no
  GPU); skipped only when numba-cuda is not installed.
- ``@pytest.mark.cuda``: the same checks on a real GPU with MNIST-sized shapes
  ([784,30,10], [784,100,10], random data, a few hundred samples); skipped, with the reason,
  where ``numba.cuda.is_available()`` is False.

Tolerances (tests/cuda_sim/dense_checks.py): float64 rtol 1e-10 / atol 1e-12; float32
rtol 1e-4 / atol 1e-5, against the reference run in float64.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastnet.kernels.config import (CROSS_ENTROPY, LOG_LIKELIHOOD, QUADRATIC, RELU, SIGMOID,
                                    SOFTMAX, SOFTPLUS, TANH)

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
HAVE_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None or \
    importlib.util.find_spec("numba.cuda") is not None


def test_import_fastnet_does_not_import_numba_cuda():
    code = "import sys, fastnet; sys.exit('numba.cuda' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, f"`import fastnet` imported numba.cuda\n{r.stderr}"


@pytest.mark.skipif(not HAVE_NUMBA_CUDA, reason="numba-cuda is not installed")
def test_cuda_kernels_under_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", FASTNET_CUDA_TPB="32",
               PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS / "cuda_sim"),
                                           os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
           "no:randomly", str(TESTS / "cuda_sim" / "sim_dense_cuda.py")]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    tail = (r.stdout + r.stderr)[-6000:]
    assert r.returncode == 0, f"simulator run failed:\n{tail}"
    assert " passed" in r.stdout and "skipped" not in r.stdout.splitlines()[-1], tail


# ---------------------------------------------------------------------------- real GPU
def _gpu_or_skip():
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        pytest.skip("NUMBA_ENABLE_CUDASIM is set: the real-GPU tests need the real target")
    if not HAVE_NUMBA_CUDA:
        pytest.skip("numba-cuda is not installed")
    from fastnet import _cuda
    if not _cuda.is_available():
        pytest.skip("no CUDA GPU: numba.cuda.is_available() is False")
    sys.path.insert(0, str(TESTS / "cuda_sim"))
    import dense_checks
    return dense_checks


F32, F64 = np.float32, np.float64

GPU_TRAIN = [
    # sizes, acts, loss, batch size, dtype, extra
    ([784, 30, 10], [SIGMOID, SIGMOID], QUADRATIC, 10, F32, {"n": 307, "lr": 3.0}),
    ([784, 30, 10], [SIGMOID, SIGMOID], QUADRATIC, 10, F64, {"n": 307, "lr": 3.0}),
    ([784, 30, 10], [SIGMOID, SIGMOID], QUADRATIC, 10, F32, {"n": 307, "units_per_block": 1}),
    ([784, 30, 10], [SIGMOID, SIGMOID], CROSS_ENTROPY, 7, F32,
     {"n": 300, "units_per_block": 4, "threads": 128}),
    ([784, 30, 10], [SIGMOID, SIGMOID], QUADRATIC, 100, F32, {"n": 350}),
    ([784, 100, 10], [RELU, SOFTMAX], LOG_LIKELIHOOD, 10, F32, {"n": 300, "lr": 0.1}),
    ([784, 100, 10], [TANH, SOFTMAX], LOG_LIKELIHOOD, 100, F64, {"n": 333, "lr": 0.1}),
    ([784, 100, 30, 10], [SOFTPLUS, SIGMOID, SIGMOID], CROSS_ENTROPY, 13, F32,
     {"n": 301, "storage": "global"}),
    ([784, 300, 10], [SIGMOID, SIGMOID], QUADRATIC, 10, F64, {"n": 200}),
    ([784, 10], [SOFTMAX], LOG_LIKELIHOOD, 10, F32, {"n": 301, "lr": 0.1}),
]


@pytest.mark.cuda
@pytest.mark.parametrize("sizes, acts, loss, batch_size, dtype, extra", GPU_TRAIN,
                         ids=[f"{c[0]}-{c[1]}-loss{c[2]}-bs{c[3]}-{c[4].__name__}-{c[5]}"
                              for c in GPU_TRAIN])
def test_train_epoch_gpu(sizes, acts, loss, batch_size, dtype, extra):
    _gpu_or_skip().check_train_epoch(sizes, acts, loss, batch_size, dtype, **extra)


GPU_INFER = [
    ([784, 30, 10], [SIGMOID, SIGMOID], QUADRATIC, F32, {}),
    ([784, 100, 10], [RELU, SOFTMAX], LOG_LIKELIHOOD, F64, {}),
    ([784, 100, 30, 10], [TANH, SOFTPLUS, SIGMOID], CROSS_ENTROPY, F32, {}),
    ([784, 30, 10], [SIGMOID, SOFTMAX], LOG_LIKELIHOOD, F64, {"w_scale": 300.0}),
]


@pytest.mark.cuda
@pytest.mark.parametrize("sizes, acts, loss, dtype, extra", GPU_INFER,
                         ids=[f"{c[0]}-{c[1]}-loss{c[2]}-{c[3].__name__}-{c[4]}"
                              for c in GPU_INFER])
def test_inference_gpu(sizes, acts, loss, dtype, extra):
    _gpu_or_skip().check_inference(sizes, acts, loss, dtype, n=1037, **extra)
