"""The CUDA kernels (``fastnet.kernels.layers_cuda``, ``conv_cuda``) behind the CPU kernels'
names and signatures: inputs uploaded, the device results written into the out-parameters, so
``tests/twin_checks.py`` checks them as it checks the CPU kernels and the NumPy twins
(``tests/cuda_sim/sim_twins.py``). ``nthreads`` is ignored (the grid is the kernels' own).
Kernels with no CUDA counterpart: ``twin_checks.NO_CUDA``. Imports numba.cuda: not a test module.
"""

import numpy as np
from numba import cuda

from fastnet.kernels import conv_cuda, layers_cuda, norm_cuda


def up(*arrays):
    return [cuda.to_device(np.ascontiguousarray(a)) for a in arrays]


def down(*arrays):
    """The kernels' results on the host; each must be a C-contiguous device array."""
    for a in arrays:
        assert a is None or (getattr(a, "__cuda_ndarray__", False) and a.is_c_contiguous()), a
    return [None if a is None else a.copy_to_host() for a in arrays]


# ---------------------------------------------------------------------------- dense, losses
def dense_forward(x, w, b, z):
    z[...], = down(layers_cuda.dense_forward(*up(x, w, b)))


def dense_backward_par(x, w, dz, dx, gw, gb, need_dx, nthreads):
    gx, gw[...], gb[...] = down(*layers_cuda.dense_backward(*up(x, w, dz), need_dx))
    if need_dx:
        dx[...] = gx


def activate(z, a, code):
    a[...], = down(layers_cuda.activate(*up(z), code))


def activation_prime(z, a, code, out):
    out[...], = down(layers_cuda.act_backward(*up(z, a), code, *up(out)))


def output_delta(z, a, y, loss, act, delta):
    delta[...], = down(layers_cuda.output_delta(*up(z, a, y), loss, act))


def loss_and_correct(z, a, y, loss):
    return layers_cuda.loss_and_correct(*up(z, a, y), loss)


def sgd_apply(params, grads, decayed, decay, scale, nthreads):
    d_params, d_grads, d_decayed = up(params, grads, decayed)
    layers_cuda.sgd_apply(d_params, d_grads, d_decayed, decay, scale)
    params[...], = down(d_params)


# ---------------------------------------------------------------------------- batch norm
def batchnorm_forward(x, gamma, beta, running_mean, running_var, train, momentum, eps, y,
                      xhat, invstd):
    d_rm, d_rv = up(running_mean, running_var)
    d_y, d_xhat, d_inv = up(y, xhat, invstd)
    norm_cuda.batchnorm_forward(*up(x, gamma, beta), d_rm, d_rv, train, momentum, eps, d_y,
                                d_xhat, d_inv)
    running_mean[...], running_var[...], y[...], xhat[...], invstd[...] = \
        down(d_rm, d_rv, d_y, d_xhat, d_inv)


def batchnorm_backward(xhat, invstd, gamma, dy, need_dx, dx, dgamma, dbeta):
    d_dx, d_dg, d_db = up(dx, dgamma, dbeta)
    norm_cuda.batchnorm_backward(*up(xhat, invstd, gamma, dy), need_dx, d_dx, d_dg, d_db)
    dgamma[...], dbeta[...] = down(d_dg, d_db)
    if need_dx:
        dx[...], = down(d_dx)


# ---------------------------------------------------------------------------- conv, pool
def conv2d_forward(x, w, b):
    return down(conv_cuda.conv2d_forward(*up(x, w, b)))[0]


def conv2d_backward(x, w, dz, need_dx=True):
    return tuple(down(*conv_cuda.conv2d_backward(*up(x, w, dz), need_dx)))


def convpool_forward(x, w, b, pool=(2, 2), act=1):
    return tuple(down(*conv_cuda.convpool_forward(*up(x, w, b), pool, act)))


def convpool_backward(x, w, z, a, argmax, da, act=1, need_dx=True):
    return tuple(down(*conv_cuda.convpool_backward(*up(x, w, z, a, argmax, da), act, need_dx)))


def maxpool_forward(x, size=(2, 2)):
    return tuple(down(*conv_cuda.maxpool_forward(*up(x), size)))


def maxpool_backward(dy, argmax, x_shape):
    return down(conv_cuda.maxpool_backward(*up(dy, argmax), x_shape))[0]
