"""The SGD parameter update over a whole flat parameter buffer, for the layer-by-layer training
path (the fused dense epoch applies its update inside ``dense_cpu.dense_update``).

One pass over the buffer, split into ``nthreads`` contiguous ranges under ``prange``; each
range's loop runs over slices, which vectorise (docs/kernels.md).

NumPy twin: ``fastnet.devices.ops.NumpyOps.sgd_apply``. Tests: ``tests/test_layers.py``.
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
        p, g, d = params[lo:hi], grads[lo:hi], decayed[lo:hi]  # slices: the loops vectorise
        if decay == 1:
            for i in range(p.shape[0]):
                p[i] -= scale * g[i]
        else:
            for i in range(p.shape[0]):
                v = p[i] * decay if d[i] else p[i]
                p[i] = v - scale * g[i]
