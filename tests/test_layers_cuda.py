"""``CudaOps`` — the op set for device "cuda" in the layer-by-layer path (convolution, pooling,
dropout, flatten layers; kernels ``fastnet.kernels.layers_cuda`` and ``conv_cuda``) — against
``NumpyOps``.

Two groups, by the hardware they need:
- ``test_cuda_ops_under_simulator``: every CudaOps method and two end-to-end fits (a tiny CNN
  layer by layer, a dense stack on the fused path) under Numba's CUDA simulator, tiny shapes,
  run in a subprocess (``tests/cuda_sim/sim_layers_cuda.py``) so the simulated and the real
  CUDA target never mix in this process. Runs everywhere (CI has no GPU); skipped only when
  numba-cuda is not installed.
- ``@pytest.mark.cuda``: the same checks on a real GPU with the book's CNN shapes; skipped,
  with the reason, where ``numba.cuda.is_available()`` is False.

Values are compared by the rule of tests/helpers.py (tests/cuda_sim/layers_checks.py), which
states each sum's length and magnitude, so one bound serves the simulator's tiny shapes and the
GPU's sums over thousands of terms.
"""


import numpy as np
import pytest

from fastnet.kernels.config import RELU, SIGMOID, TANH

from cuda_helpers import HAVE_NUMBA_CUDA, gpu_checks_or_skip, run_simulated


@pytest.mark.skipif(not HAVE_NUMBA_CUDA, reason="numba-cuda is not installed")
def test_cuda_ops_under_simulator():
    run_simulated("sim_layers_cuda.py")


# ---------------------------------------------------------------------------- real GPU
def _gpu_or_skip():
    return gpu_checks_or_skip("layers_checks")


F32, F64 = np.float32, np.float64
DTYPES = pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.cuda
def test_method_set_gpu():
    _gpu_or_skip().check_method_set()


@pytest.mark.cuda
@DTYPES
def test_elementwise_and_output_layer_gpu(dtype):
    C = _gpu_or_skip()
    C.check_data_movement(dtype)
    C.check_elementwise(dtype, (10, 20, 24, 24))
    C.check_softmax(dtype, 1000, 10)
    C.check_output_layer(dtype, 1000, 10)
    C.check_sgd(dtype, 100_003)


@pytest.mark.cuda
@DTYPES
@pytest.mark.parametrize("batch, n_in, n_out", [(10, 640, 100), (100, 100, 10), (1, 784, 30),
                                                (1000, 30, 10)])
def test_dense_gpu(dtype, batch, n_in, n_out):
    _gpu_or_skip().check_dense(dtype, batch, n_in, n_out)


@pytest.mark.cuda
@DTYPES
@pytest.mark.parametrize("x_shape, w_shape, need_dx", [
    ((10, 1, 28, 28), (20, 1, 5, 5), False),
    ((10, 20, 12, 12), (40, 20, 5, 5), True),
    ((3, 3, 31, 17), (5, 3, 4, 2), True),
])
def test_conv2d_gpu(dtype, x_shape, w_shape, need_dx):
    _gpu_or_skip().check_conv2d(dtype, x_shape, w_shape, need_dx)


@pytest.mark.cuda
@DTYPES
@pytest.mark.parametrize("x_shape, size", [((10, 20, 24, 24), (2, 2)), ((7, 3, 25, 23), (3, 2)),
                                           ((2, 4, 8, 9), (3, 4))])
def test_maxpool_gpu(dtype, x_shape, size):
    _gpu_or_skip().check_maxpool(dtype, x_shape, size)


@pytest.mark.cuda
@DTYPES
@pytest.mark.parametrize("x_shape, w_shape, size, code, need_dx", [
    ((10, 1, 28, 28), (20, 1, 5, 5), (2, 2), SIGMOID, False),
    ((100, 20, 12, 12), (40, 20, 5, 5), (2, 2), RELU, True),
    ((3, 2, 29, 27), (4, 2, 5, 5), (3, 2), TANH, True),
])
def test_convpool_gpu(dtype, x_shape, w_shape, size, code, need_dx):
    _gpu_or_skip().check_convpool(dtype, x_shape, w_shape, size, code, need_dx)


@pytest.mark.cuda
@DTYPES
@pytest.mark.parametrize("shape, p", [((100, 1000), 0.5), ((10, 20, 12, 12), 0.2)])
def test_dropout_gpu(dtype, shape, p):
    _gpu_or_skip().check_dropout(dtype, shape, p)


@pytest.mark.cuda
def test_models_gpu():
    C = _gpu_or_skip()
    from fastnet import Conv2D, Dense, Dropout, Flatten, MaxPool2D

    def layers():
        return [Conv2D(1, 4, 5, "sigmoid"), MaxPool2D(2), Conv2D(4, 6, 3, "relu"), Flatten(),
                Dropout(0.0), Dense(54, 10, "tanh"), Dense(10, 3, "softmax")]
    C.check_cnn_model("fused", n=60, batch_size=10, input_shape=(1, 14, 14), layers=layers)
    C.check_cnn_model("unfused", n=50, batch_size=7)
    C.check_dropout_inference()
    C.check_dense_model(sizes=(20, 8, 3), n=50, batch_size=10)
