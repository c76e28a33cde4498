"""The ``"cuda"`` backend of the seam in ``fastnet.backends``: numba.cuda kernels on device
arrays (``fastnet.kernels.dense_cuda``). Created only when a model asks for ``device="cuda"``;
``require_cuda()`` raises a clear error when numba-cuda or a GPU is missing.

Data and parameters are uploaded once per ``fit`` (the ``Model`` calls ``upload``), each epoch is
one cooperative launch, and evaluation brings back two numbers (summed cost, number correct).
"""

from __future__ import annotations

from fastnet._cuda import require_cuda, to_device, to_host


class CudaBackend:
    name = "cuda"

    def __init__(self):
        self._cuda = require_cuda()
        from fastnet.kernels import dense_cuda
        self._k = dense_cuda

    def upload(self, a):
        return to_device(a)

    def download(self, a):
        return to_host(a)

    def inputs(self, x):
        return to_device(x)

    def train_epoch(self, params, layout, acts, loss, x, y, order, batch_size, lr, decay):
        self._k.train_epoch(params, layout, acts, loss, x, y, order, batch_size, lr, decay)

    def evaluate(self, params, layout, acts, loss, x, y):
        return self._k.loss_and_correct(params, layout, acts, loss, x, y)

    def predict(self, params, layout, acts, x):
        return self._k.forward(params, layout, acts, x).copy_to_host()

