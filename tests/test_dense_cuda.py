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

Values are compared with the reference run in float64 by the rule of tests/helpers.py
(tests/cuda_sim/dense_checks.py).
"""

import subprocess
import sys

import numpy as np
import pytest

from fastnet.kernels.config import (CROSS_ENTROPY, LOG_LIKELIHOOD, QUADRATIC, RELU, SIGMOID,
                                    SOFTMAX, SOFTPLUS, TANH)

from cuda_helpers import HAVE_NUMBA_CUDA, REPO, gpu_checks_or_skip, run_simulated


def test_import_fastnet_does_not_import_numba_cuda():
    code = "import sys, fastnet; sys.exit('numba.cuda' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, f"`import fastnet` imported numba.cuda\n{r.stderr}"


@pytest.mark.skipif(not HAVE_NUMBA_CUDA, reason="numba-cuda is not installed")
def test_cuda_kernels_under_simulator():
    run_simulated("sim_dense_cuda.py")


# ---------------------------------------------------------------------------- real GPU
def _gpu_or_skip():
    return gpu_checks_or_skip("dense_checks")


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
