"""``NetSpec``: a network as the devices read it, made from ``Model``'s layers once.

It holds the layers and what the kernels index by: where each layer's parameters lie in the
flat buffer (``slices``; docs/design.md; the ``trainable`` parameters first, then the state no
optimizer touches, such as batch norm's running averages), which entries decay under L2
(``decayed``: the weights), the loss and activation codes of ``kernels/config.py``, the layer-by-layer stages
(``fastnet.layers.fuse``: Conv2D → MaxPool2D pairs fused) and, for a stack of dense layers, the
``layout`` rows ``(n_in, n_out, w_offset, b_offset)`` and ``acts`` codes of the fused kernels.
"""

from __future__ import annotations

import math

import numpy as np

from fastnet.kernels.config import ACTIVATIONS, LOSSES
from fastnet.layers import Dense, fuse

#: The names a model may use (the codes stay behind the seam).
ACTIVATION_NAMES = tuple(ACTIVATIONS)
LOSS_NAMES = tuple(LOSSES)


class NetSpec:
    """layers: the model's layers; input_shape: one sample's shape; loss: a name of
    ``LOSS_NAMES``; dtype: float32 or float64. Allocates nothing the size of the parameters
    but the ``decayed`` mask (bool, one byte per parameter)."""

    def __init__(self, layers, input_shape: tuple[int, ...], loss: str, dtype: np.dtype):
        self.layers, self.input_shape = tuple(layers), tuple(input_shape)
        self.loss, self.dtype = loss, np.dtype(dtype)
        self.loss_code = LOSSES[loss]
        self.slices = [{} for _ in self.layers]
        off = 0
        for shapes in ("param_shapes", "state_shapes"):    # every parameter, then the state
            for layer, entry in zip(self.layers, self.slices):
                for name, shape in getattr(layer, shapes)():
                    entry[name] = (off, shape)
                    off += math.prod(shape)
            if shapes == "param_shapes":
                self.trainable = off
        self.size = off
        self.stages = fuse(list(self.layers))
        self.dense = all(isinstance(layer, Dense) for layer in self.layers)
        self.layout = self.acts = None
        if self.dense:
            self.layout = np.array([(l.n_in, l.n_out, e["w"][0], e["b"][0])
                                    for l, e in zip(self.layers, self.slices)],
                                   dtype=np.int64).reshape(-1, 4)
            self.acts = np.array([ACTIVATIONS[l.activation] for l in self.layers],
                                 dtype=np.int64)

    @property
    def decayed(self) -> np.ndarray:
        """bool[trainable]: True at the weights (they decay under L2), False at the biases."""
        mask = np.zeros(self.trainable, dtype=np.bool_)
        for entry in self.slices:
            if "w" in entry:
                off, shape = entry["w"]
                mask[off:off + math.prod(shape)] = True
        return mask

    def views(self, flat, i: int) -> dict:
        """Views of layer ``i``'s parameters and state into ``flat`` (a flat buffer of this
        network, on the host or a device), shaped as the layer declares them; for a buffer of
        ``trainable`` entries (gradients), of its parameters only."""
        return {name: flat[off:off + math.prod(shape)].reshape(shape)
                for name, (off, shape) in self.slices[i].items()
                if off < flat.shape[0]}

    @property
    def output_code(self) -> int:
        """The output layer's activation code."""
        return ACTIVATIONS[self.layers[-1].activation]
