"""Data augmentation on the fly: ``Model.fit(..., augment=Augment([Shift(2), Rotate(10)]))``
trains each epoch on a freshly transformed copy of the training images (one copy at a time,
never a multiple of the data set). Transforms are seeded from the model's generator, so a
seeded fit repeats exactly and a checkpointed fit resumes exactly.

A transform draws one affine map per image, from output pixel (row, col) to the input point it
is sampled at (bilinear, zero outside), as ``float64[n, 3, 3]``; ``Augment`` composes them
(applied in the order given) and warps with the device's ``warp_affine``
(``kernels/augment_cpu.py``, its twin ``fastnet.reference.augment``). Images are one channel:
a model's ``input_shape`` (1, h, w), or (h·w,) with h = w. Tests: ``tests/test_augment.py``.
"""

from __future__ import annotations

import math

import numpy as np

from fastnet import _checks


class Transform:
    """Base class: ``maps(n, shape, rng)`` returns ``float64[n, 3, 3]``."""

    def maps(self, n: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


def _identity(n):
    return np.broadcast_to(np.eye(3), (n, 3, 3)).copy()


class Shift(Transform):
    """Move each image by whole pixels, rows and columns each uniform in
    [−max_pixels, max_pixels] (the book's ``expand_mnist`` moves by one in four directions)."""

    def __init__(self, max_pixels: int = 2):
        self.max_pixels = _checks.positive_int(max_pixels, "max_pixels", minimum=0)

    def maps(self, n, shape, rng):
        m = _identity(n)
        m[:, :2, 2] = -rng.integers(-self.max_pixels, self.max_pixels + 1, (n, 2))
        return m

    def __repr__(self):
        return f"Shift({self.max_pixels})"


class Rotate(Transform):
    """Rotate each image about its centre by an angle uniform in [−max_degrees, max_degrees]
    (positive: counter-clockwise as displayed, rows downwards)."""

    def __init__(self, max_degrees: float = 10.0):
        self.max_degrees = _checks.finite_float(max_degrees, "max_degrees", nonnegative=True)
        if self.max_degrees > 180:
            raise ValueError(f"max_degrees must be at most 180, got {max_degrees!r}")

    def maps(self, n, shape, rng):
        theta = np.radians(rng.uniform(-self.max_degrees, self.max_degrees, n))
        return rotation(theta, shape)

    def __repr__(self):
        return f"Rotate({self.max_degrees:g})"


def rotation(theta: np.ndarray, shape) -> np.ndarray:
    """The sampling maps that rotate images of ``shape`` by ``theta`` (radians) about their
    centre: input = R(θ)ᵀ·(output − centre) + centre in (row, col) with rows downwards."""
    ch, cw = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    cos, sin = np.cos(theta), np.sin(theta)
    m = _identity(len(theta))
    # an image point at (row, col) moves to (row', col') = rotated about the centre by θ
    # counter-clockwise on screen; the sampling map is the inverse rotation
    m[:, 0, 0], m[:, 0, 1] = cos, sin
    m[:, 1, 0], m[:, 1, 1] = -sin, cos
    m[:, 0, 2] = ch - cos * ch - sin * cw
    m[:, 1, 2] = cw + sin * ch - cos * cw
    return m


class Augment:
    """Transforms applied in the order given to every training image, new draws each epoch.
    ``augment(x, shape, rng, device)``: the warped copy of x (n, h·w), same dtype."""

    def __init__(self, transforms):
        if isinstance(transforms, Transform):
            transforms = [transforms]
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not isinstance(t, Transform):
                raise TypeError(f"transforms[{i}] must be a fastnet.augment.Transform, got "
                                f"{type(t).__name__}")

    def maps(self, n, shape, rng) -> np.ndarray:
        m = _identity(n)
        for t in self.transforms:      # out = T_k(…T_1(x)): sample through T_1's map last
            m = m @ t.maps(n, shape, rng)
        return m

    def __call__(self, x, shape, rng, device, threads=None) -> np.ndarray:
        n = len(x)
        images = np.ascontiguousarray(x.reshape(n, *shape))
        maps = np.ascontiguousarray(self.maps(n, shape, rng)[:, :2])
        return device.warp_affine(images, maps, threads).reshape(n, -1)

    def epochs(self, xs, ys, shape, rng, trainer, device, threads=None):
        """``epoch -> trainer.data(...)`` of a new warped copy of the training set ``xs`` (its
        targets ``ys``), drawn from ``rng`` (the model's generator) when called."""
        def make(epoch):
            return trainer.data(self(xs, shape, rng, device, threads), ys)
        return make

    def __repr__(self):
        return f"Augment([{', '.join(map(repr, self.transforms))}])"


def as_augment(augment) -> Augment | None:
    if augment is None or isinstance(augment, Augment):
        return augment
    if isinstance(augment, Transform):
        return Augment([augment])
    raise TypeError(f"augment must be a fastnet.augment.Augment or Transform, got "
                    f"{type(augment).__name__}")


def image_shape(input_shape) -> tuple[int, int]:
    """The (h, w) of a model's one-channel images, or ValueError."""
    if len(input_shape) == 3 and input_shape[0] == 1:
        return tuple(input_shape[1:])
    if len(input_shape) == 1 and math.isqrt(input_shape[0]) ** 2 == input_shape[0]:
        s = math.isqrt(input_shape[0])
        return (s, s)
    raise ValueError(f"augment needs one-channel images: input_shape (1, h, w), or (n,) with "
                     f"n a square; this model's is {tuple(input_shape)}")
