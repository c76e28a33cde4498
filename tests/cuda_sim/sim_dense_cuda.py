"""The CUDA dense kernels under Numba's CUDA simulator, tiny shapes.

Run by ``tests/test_dense_cuda.py::test_cuda_kernels_under_simulator`` in a subprocess with
``NUMBA_ENABLE_CUDASIM=1`` and ``FASTNET_CUDA_TPB=32`` (the simulator must be chosen before numba
is imported, and its threads are slow). Not collected by a bare ``pytest`` (no ``test_`` prefix).
By hand: ``NUMBA_ENABLE_CUDASIM=1 FASTNET_CUDA_TPB=32 PYTHONPATH=tests python -m pytest -q
tests/cuda_sim/sim_dense_cuda.py``.

Shapes: N = 7 samples with batch sizes 1, 2, 3 (a short last batch), 7 (one step) and 20 of 45
(mini-batch in two chunks); 1, 2 and 3 layers; inputs wider than the 32 threads; both storage
paths of the private workspace; every activation and loss; saturating inputs; and cooperative
grids of 2–5 blocks run concurrently by ``grid_emulator.py`` (the plain simulator runs one).
"""

import os

import numpy as np
import pytest

from fastnet.kernels.config import (CROSS_ENTROPY, LINEAR, LOG_LIKELIHOOD, QUADRATIC, RELU,
                                    SIGMOID, SOFTMAX, SOFTPLUS, TANH)

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("simulator-only module: run it with NUMBA_ENABLE_CUDASIM=1",
                allow_module_level=True)

from dense_checks import check_inference, check_train_epoch  # noqa: E402  (after the guard)

F32, F64 = np.float32, np.float64

TRAIN_CASES = [
    # sizes, acts, loss, batch size, dtype, extra
    ([7, 5, 3], [SIGMOID, SIGMOID], QUADRATIC, 1, F64, {}),
    ([7, 5, 3], [SIGMOID, SIGMOID], QUADRATIC, 2, F32, {}),
    ([7, 5, 3], [SIGMOID, SIGMOID], QUADRATIC, 3, F64, {}),
    ([7, 5, 3], [TANH, SOFTMAX], LOG_LIKELIHOOD, 3, F32, {}),
    ([6, 4, 4, 3], [RELU, SOFTPLUS, SIGMOID], CROSS_ENTROPY, 2, F64, {}),
    ([6, 4, 4, 3], [RELU, SOFTPLUS, SIGMOID], CROSS_ENTROPY, 3, F32, {"storage": "global"}),
    ([6, 4, 4, 3], [LINEAR, TANH, LINEAR], QUADRATIC, 3, F64, {"storage": "global"}),
    ([5, 3], [SOFTMAX], LOG_LIKELIHOOD, 3, F64, {}),
    ([5, 3], [SIGMOID], CROSS_ENTROPY, 7, F32, {}),
    ([40, 5, 3], [SIGMOID, SIGMOID], QUADRATIC, 20, F32, {"n": 45}),
    # saturating: |z| in the hundreds (sigmoid/softmax must not overflow)
    ([7, 5, 3], [SIGMOID, SOFTMAX], LOG_LIKELIHOOD, 2, F64, {"w_scale": 300.0}),
]


@pytest.mark.parametrize("sizes, acts, loss, batch_size, dtype, extra", TRAIN_CASES,
                         ids=[f"{c[0]}-{c[1]}-loss{c[2]}-bs{c[3]}-{c[4].__name__}-{c[5]}"
                              for c in TRAIN_CASES])
def test_train_epoch_sim(sizes, acts, loss, batch_size, dtype, extra):
    check_train_epoch(sizes, acts, loss, batch_size, dtype, **extra)


INFER_CASES = [
    ([7, 5, 3], [SIGMOID, SIGMOID], QUADRATIC, F64, {}),
    ([6, 4, 4, 3], [RELU, SOFTPLUS, SOFTMAX], LOG_LIKELIHOOD, F32, {}),
    ([9, 11, 3], [TANH, SIGMOID], CROSS_ENTROPY, F64, {}),
    ([7, 5, 3], [SIGMOID, SOFTMAX], LOG_LIKELIHOOD, F32, {"w_scale": 1000.0}),
]


@pytest.mark.parametrize("sizes, acts, loss, dtype, extra", INFER_CASES,
                         ids=[f"{c[0]}-{c[1]}-loss{c[2]}-{c[3].__name__}-{c[4]}"
                              for c in INFER_CASES])
def test_inference_sim(sizes, acts, loss, dtype, extra):
    check_inference(sizes, acts, loss, dtype, **extra)


def test_cuda_is_available_in_simulator():
    from fastnet.kernels import cuda_target as _cuda
    assert _cuda.is_available()
    assert _cuda.require_cuda().is_available()


# Several blocks per cooperative grid, run concurrently by grid_emulator (the plain simulator
# runs one block): layer-0 units split over blocks (the last block partly empty), activations
# exchanged through the double buffer, private copies of the upper layers in every block.
GRID_CASES = [
    # sizes, acts, loss, batch size, dtype, extra
    ([7, 5, 3], [SIGMOID, SIGMOID], QUADRATIC, 3, F64, {"units_per_block": 2}),
    ([7, 5, 3], [SIGMOID, SIGMOID], QUADRATIC, 1, F32, {"units_per_block": 1}),
    ([6, 4, 4, 3], [RELU, SOFTPLUS, SIGMOID], CROSS_ENTROPY, 2, F64,
     {"units_per_block": 3, "storage": "global"}),
    ([5, 3], [SOFTMAX], LOG_LIKELIHOOD, 3, F64, {"units_per_block": 2}),
    ([40, 5, 3], [TANH, SOFTMAX], LOG_LIKELIHOOD, 20, F32, {"n": 45, "units_per_block": 2}),
]


@pytest.mark.parametrize("sizes, acts, loss, batch_size, dtype, extra", GRID_CASES,
                         ids=[f"{c[0]}-{c[1]}-loss{c[2]}-bs{c[3]}-{c[4].__name__}-{c[5]}"
                              for c in GRID_CASES])
def test_train_epoch_sim_multiblock(sizes, acts, loss, batch_size, dtype, extra):
    from grid_emulator import concurrent_grids
    with concurrent_grids(max_blocks=8):
        check_train_epoch(sizes, acts, loss, batch_size, dtype, **extra)
