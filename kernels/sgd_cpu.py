"""The SGD parameter update over a whole flat parameter buffer, for the layer-by-layer training
path (the fused dense epoch applies its update inside ``dense_cpu.dense_update``).

Twin: ``fastnet.ops.NumpyOps.sgd_apply``. Tests: ``tests/test_layers.py``.
"""

from numba import njit

from . import config


@njit(**config.CPU_JIT)
def sgd_apply(params, grads, decayed, decay, scale):
    """params[P] (updated in place) ← decay·params − scale·grads where decayed[P] (bool:
    weights), params − scale·grads elsewhere (biases); one pass over the buffer."""
    if decay == 1:
        for i in range(params.shape[0]):
            params[i] -= scale * grads[i]
        return
    for i in range(params.shape[0]):
        p = params[i] * decay if decayed[i] else params[i]
        params[i] = p - scale * grads[i]
