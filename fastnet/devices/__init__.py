"""The seam between the API and the kernels: one device per place a network can train, each
turning a network's description (``NetSpec``) into a ``Trainer`` (``trainer.py``).

- ``"numpy"``: the NumPy reference (``fastnet.reference``), the oracle;
- ``"cpu"``: Numba kernels; the only place an epoch variant is chosen (dense or sparse-input
  fused epochs, the CNN epoch, layer by layer) and thread counts are decided;
- ``"cuda"``: numba.cuda kernels (imported when first asked for).

``get(name)`` returns the device, ``resolve(name)`` reads ``$FASTNET_DEVICE`` for None and
checks the name. Importing this package compiles nothing and touches no GPU.
"""

from __future__ import annotations

import os
from functools import cached_property

import numpy as np

from fastnet.devices.spec import ACTIVATION_NAMES, LOSS_NAMES, NetSpec

NAMES = ("numpy", "cpu", "cuda")
__all__ = ["NAMES", "ACTIVATION_NAMES", "LOSS_NAMES", "NetSpec", "activate", "check_spec", "get",
           "resolve"]


def resolve(device) -> str:
    """``device``, or ``$FASTNET_DEVICE`` when it is None (default ``"cpu"``), checked."""
    if device is None:
        device = os.environ.get("FASTNET_DEVICE", "") or "cpu"
    if not isinstance(device, str):
        raise TypeError(f"device must be one of {list(NAMES)}, got {type(device).__name__}")
    if device not in NAMES:
        raise ValueError(f"device must be one of {list(NAMES)}, got {device!r}")
    return device


class Device:
    """Makes trainers. ``trainer(spec, params, *, dropout_rng, threads=None)``: a trainer of
    the network ``spec`` over the host buffer ``params``; ``threads`` (CPU) fixes the thread
    count of its epochs and inference, None lets the device choose."""

    name = ""

    def compiled(self) -> bool:
        """Whether this device's kernels are ready to load (False: the first run here compiles
        them, which takes a while once)."""
        return True

    def check_threads(self, threads) -> int | None:
        """``threads`` checked for this device (None passes)."""
        if threads is None:
            return None
        from fastnet import _checks
        return _checks.positive_int(threads, "threads")

    def warp_affine(self, x, m, threads=None):
        """Data augmentation's warp of images ``x[n, h, w]`` by the maps ``m[n, 2, 3]``
        (``kernels/augment_cpu.py``), as a new array. On the host for every device: the
        compiled kernel on Numba's threads (or ``threads``); the numpy device's is the twin."""
        import numba

        from fastnet.kernels import augment_cpu
        out = np.empty_like(x)
        augment_cpu.warp_affine(x, m, out, threads or numba.get_num_threads())
        return out

    def warp_elastic(self, x, m, seeds, alpha, taps, threads=None):
        """Data augmentation's elastic distortion of images ``x[n, h, w]`` between the maps
        ``m[n, 2, 2, 3]``, fields from ``seeds[n]`` (uint64), ``alpha`` and the filter ``taps``
        (``kernels/augment_cpu.py``), as a new array; on the host, as ``warp_affine``."""
        import numba

        from fastnet.kernels import augment_cpu
        out = np.empty_like(x)
        augment_cpu.warp_elastic(x, m, seeds, float(alpha), taps, out,
                                 threads or numba.get_num_threads())
        return out


class NumpyDevice(Device):
    name = "numpy"

    def warp_affine(self, x, m, threads=None):
        from fastnet.reference import augment
        out = np.empty_like(x)
        augment.warp_affine(x, m, out)
        return out

    def warp_elastic(self, x, m, seeds, alpha, taps, threads=None):
        from fastnet.reference import augment
        out = np.empty_like(x)
        augment.warp_elastic(x, m, seeds, alpha, taps, out)
        return out

    @cached_property
    def dense(self):
        from fastnet.devices.dense import NumpyDense
        return NumpyDense()

    @cached_property
    def ops(self):
        from fastnet.devices.ops import NumpyOps
        return NumpyOps()

    def trainer(self, spec, params, *, dropout_rng, threads=None):
        from fastnet.devices.dense import DenseTrainer
        from fastnet.devices.layerwise import LayerwiseTrainer
        if spec.dense:
            return DenseTrainer(spec, params, self.dense, threads=1, inference_threads=1)
        return LayerwiseTrainer(spec, params, self.ops, dropout_rng=dropout_rng)


class CpuDevice(Device):
    """A dense stack trains a whole epoch per compiled call (on MNIST-like inputs, mostly
    zeros, the sparse-input epoch); a ConvPool → Flatten → Dense… model too (``CnnTrainer``);
    any other model layer by layer, each dense layer's update fused into its backward kernel.
    Threads: Numba's count (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``) unless
    ``threads`` is given; a dense epoch may use fewer where its layers are too small to pay."""

    name = "cpu"

    @cached_property
    def dense(self):
        from fastnet.devices.dense import CpuDense
        return CpuDense()

    @cached_property
    def ops(self):
        from fastnet.devices.ops import CpuOps
        return CpuOps()

    def compiled(self) -> bool:
        """True when this install's kernel cache directory holds builds (the first run on a
        machine, or after an upgrade, compiles them into it)."""
        import glob

        from fastnet.kernels.config import CACHE, kernel_cache_dir
        return not CACHE or bool(glob.glob(os.path.join(kernel_cache_dir(), "*.nbi")))

    def check_threads(self, threads) -> int | None:
        threads = super().check_threads(threads)
        if threads is not None:
            import numba
            if threads > numba.config.NUMBA_NUM_THREADS:
                raise ValueError(f"threads must be at most {numba.config.NUMBA_NUM_THREADS} "
                                 f"(NUMBA_NUM_THREADS), got {threads}")
        return threads

    def trainer(self, spec, params, *, dropout_rng, threads=None):
        from fastnet.devices.dense import DenseTrainer
        from fastnet.devices.layerwise import CnnTrainer, LayerwiseTrainer, cnn_plan
        threads = self.check_threads(threads)
        if spec.dense:
            import numba
            inference = numba.get_num_threads() if threads is None else threads
            return DenseTrainer(spec, params, self.dense, threads=threads,
                                inference_threads=inference)
        kwargs = dict(dropout_rng=dropout_rng, fused_sgd=True, threads=threads)
        plan = cnn_plan(spec)
        if plan is not None:
            return CnnTrainer(spec, params, self.ops, plan, **kwargs)
        return LayerwiseTrainer(spec, params, self.ops, **kwargs)


class CudaDevice(Device):
    """A dense stack's epoch in one cooperative launch; other models layer by layer. Raises
    RuntimeError, saying what is missing, without numba-cuda or a GPU."""

    name = "cuda"

    def __init__(self):
        from fastnet.devices.cuda import CudaDense, CudaOps
        self.dense, self.ops = CudaDense(), CudaOps()

    def trainer(self, spec, params, *, dropout_rng, threads=None):
        from fastnet.devices.dense import DenseTrainer
        from fastnet.devices.layerwise import LayerwiseTrainer
        self.check_threads(threads)
        check_spec(self.name, spec)
        if spec.dense:
            return DenseTrainer(spec, params, self.dense, threads=1, inference_threads=1)
        return LayerwiseTrainer(spec, params, self.ops, dropout_rng=dropout_rng)


_DEVICES = {"numpy": NumpyDevice, "cpu": CpuDevice, "cuda": CudaDevice}
_made: dict[str, Device] = {}


def check_spec(name: str, spec) -> None:
    """ValueError when device ``name`` cannot train the network ``spec``: checked by
    ``Model.fit`` before anything changes (without making the device, so a missing GPU does
    not hide the reason), and by the device's ``trainer``."""
    if name == "cuda" and any(layer.kind == "conv2d" and not layer.plain
                              for layer in spec.layers):
        raise ValueError("device 'cuda' computes Conv2D with stride 1 and no padding only: "
                         "train a strided or padded Conv2D on device 'cpu' or 'numpy'")


def get(name: str) -> Device:
    """The device called ``name`` (one of ``NAMES``), made on first use."""
    name = resolve(name)
    if name not in _made:
        _made[name] = _DEVICES[name]()
    return _made[name]


def activate(z, name: str):
    """``name``'s activation of ``z`` (a C-contiguous float32/float64 array) as a new array,
    by the CPU kernels' compiled, numerically stable functions (``dense_cpu.activate_flat``)."""
    from fastnet.kernels import dense_cpu
    from fastnet.kernels.config import ACTIVATIONS
    out = np.empty_like(z)
    dense_cpu.activate_flat(z, out, ACTIVATIONS[name])
    return out
