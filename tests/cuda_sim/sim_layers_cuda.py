"""``CudaOps`` (the "cuda" op set of the layer-by-layer path) under Numba's CUDA simulator, tiny
shapes, against ``NumpyOps``: the method set, data movement, elementwise ops, softmax's edge
rows, NaN through pooling, dropout and whole models. The kernels one by one (dense,
activations, losses, conv, pool, sgd): ``sim_twins.py``.

Run by ``tests/test_layers_cuda.py::test_cuda_ops_under_simulator`` in a subprocess with
``NUMBA_ENABLE_CUDASIM=1`` and ``FASTNET_CUDA_TPB=32``. Not collected by a bare ``pytest`` (no
``test_`` prefix). By hand: ``NUMBA_ENABLE_CUDASIM=1 FASTNET_CUDA_TPB=32
PYTHONPATH=tests:tests/cuda_sim python -m pytest -q tests/cuda_sim/sim_layers_cuda.py``.

Shapes: batch 1 and 3; pools (2, 2) and (3, 2) with remainder rows/columns; float32 and
float64. The simulator runs every CUDA thread as a Python thread, so the shapes stay tiny; the thread
switch interval is shortened because block barriers otherwise wait out the GIL's 5 ms slices.
"""

import os
import sys

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("simulator-only module: run it with NUMBA_ENABLE_CUDASIM=1",
                allow_module_level=True)

import layers_checks as C  # noqa: E402  (after the guard: it imports numba.cuda)

sys.setswitchinterval(5e-4)

F32, F64 = np.float32, np.float64
DTYPES = pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])


def test_method_set_matches_numpy_ops():
    C.check_method_set()


@DTYPES
def test_optimizer_step(dtype):
    C.check_optimizer(dtype, 37)


@DTYPES
def test_data_movement(dtype):
    C.check_data_movement(dtype)


@DTYPES
@pytest.mark.parametrize("shape", [(3, 5), (1, 2, 3, 4)])
def test_elementwise(dtype, shape):
    C.check_elementwise(dtype, shape)


@DTYPES
@pytest.mark.parametrize("batch", [1, 3])
def test_softmax(dtype, batch):
    C.check_softmax(dtype, batch, 4)


@DTYPES
@pytest.mark.parametrize("size", [(2, 2), (3, 2)])
def test_pooling_keeps_the_first_nan(dtype, size):
    C.check_pooling_nan(dtype, size)


@DTYPES
@pytest.mark.parametrize("shape, p", [((50, 80), 0.3), ((2, 3, 40, 25), 0.5), ((4, 4), 0.0)])
def test_dropout(dtype, shape, p):
    C.check_dropout(dtype, shape, p)


def test_dropout_inference_scales():
    C.check_dropout_inference()


@pytest.mark.parametrize("kind", ["fused", "unfused"])
def test_cnn_model_matches_numpy(kind):
    C.check_cnn_model(kind)


def test_dense_model_fused_path_matches_numpy():
    C.check_dense_model()


def test_strided_conv_refused():
    C.check_strided_conv_refused()


@pytest.mark.parametrize("conv", [False, True], ids=["dense", "conv"])
def test_batchnorm_model_matches_numpy(conv):
    C.check_batchnorm_model(conv)
