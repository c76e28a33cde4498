"""The SGD parameter update over a whole flat parameter buffer, for the layer-by-layer training
path (the fused dense epoch applies its update inside ``dense_cpu.dense_update``).

Twin: ``fastnet.ops.NumpyOps.sgd_apply``. Tests: ``tests/test_layers.py``.

One pass over the buffer, split into ``nthreads`` contiguous ranges under ``prange``: the pass
is memory-bound (the book CNN's 290,000 parameters: 0.30 ms per step on one thread, float32,
mini-batch 10, read back from the other core's cache after the threaded backward), and two
threads move about twice the bytes.
"""

from numba import njit, prange

from . import config

_pjit = njit(**config.CPU_JIT, parallel={"comprehension": False, "reduction": False,
                                         "inplace_binop": False, "setitem": False,
                                         "numpy": False, "stencil": False, "fusion": False,
                                         "prange": True})


@_pjit
def sgd_apply(params, grads, decayed, decay, scale, nthreads):
    """params[P] (updated in place) ← decay·params − scale·grads where decayed[P] (bool:
    weights), params − scale·grads elsewhere (biases)."""
    n = params.shape[0]
    per = (n + nthreads - 1) // nthreads
    for c in prange(nthreads):
        lo = min(c * per, n)
        hi = min(lo + per, n)
        if decay == 1:
            for i in range(lo, hi):
                params[i] -= scale * grads[i]
        else:
            for i in range(lo, hi):
                p = params[i] * decay if decayed[i] else params[i]
                params[i] = p - scale * grads[i]
