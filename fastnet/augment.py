"""Data augmentation on the fly: ``Model.fit(..., augment=Augment([Shift(2), Rotate(10)]))``
trains each epoch on a freshly transformed copy of the training images (one copy at a time,
never a multiple of the data set). Transforms are seeded from the model's generator, so a
seeded fit repeats exactly and a checkpointed fit resumes exactly.

An affine transform (``Shift``, ``Rotate``) draws one map per image, from output pixel (row,
col) to the input point it is sampled at (bilinear, zero outside), as ``float64[n, 3, 3]``;
``Augment`` composes them (applied in the order given) and warps once with the device's
``warp_affine``. ``Elastic`` draws one 64-bit seed per image; the kernel draws and smooths the
displacement field from it, and ``Augment`` samples through the maps of the transforms after
it, the field, then the maps of those before it, in one ``warp_elastic``. Kernels:
``kernels/augment_cpu.py``, twins ``fastnet.reference.augment``. Images are one channel: a
model's ``input_shape`` (1, h, w), or (h·w,) with h = w. Tests: ``tests/test_augment.py``.
"""

from __future__ import annotations

import math

import numpy as np

from fastnet import _checks


class Transform:
    """Base class. An affine transform's ``maps(n, shape, rng)`` returns ``float64[n, 3, 3]``;
    ``Elastic`` is the one transform that is not affine."""

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


class Elastic(Transform):
    """Simard, Steinkraus and Platt's elastic distortion ("Best practices for convolutional
    neural networks applied to visual document analysis", ICDAR 2003): each image gets a
    displacement field, Δrow and Δcol uniform in [−1, 1) per pixel, each smoothed by a Gaussian
    of standard deviation ``sigma`` pixels (truncated at 4σ: taps −r…r with r = ⌊4σ + ½⌋,
    normalised to sum 1; zero beyond the image), times ``alpha``; output pixel (row, col) is the
    input's bilinear sample at (row + Δrow, col + Δcol), zero outside. Defaults: Simard's MNIST
    values (alpha 34, sigma 4: each Δ has a standard deviation of alpha·√(1/3)·Σg² ≈ 1.4
    pixels away from the edges, g the filter's taps).

    Seeded: ``seeds(n, rng)`` draws one uint64 per image from ``rng``; inside the kernel, pixel
    (i, j)'s Δrow and Δcol are the two signed 32-bit halves of splitmix64(seed, i·w + j) over
    2³¹, so the fields do not depend on the thread count."""

    TRUNCATE = 4.0

    def __init__(self, alpha: float = 34.0, sigma: float = 4.0):
        self.alpha = _checks.finite_float(alpha, "alpha", nonnegative=True)
        self.sigma = _checks.finite_float(sigma, "sigma", positive=True)
        if self.sigma > 1000:
            raise ValueError(f"sigma must be at most 1000 (pixels), got {sigma!r}")

    def seeds(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """uint64[n]: one seed per image."""
        return rng.integers(0, 2 ** 64, n, dtype=np.uint64)

    def taps(self, shape: tuple[int, int]) -> np.ndarray:
        """float64[2r + 1]: the Gaussian filter, r = ⌊4σ + ½⌋, normalised to sum 1, then cut to
        the taps that can reach inside an image of ``shape`` (|offset| < max(h, w))."""
        r = int(self.TRUNCATE * self.sigma + 0.5)
        g = np.exp(-0.5 * (np.arange(-r, r + 1) / self.sigma) ** 2)
        g /= g.sum()
        keep = min(r, max(shape) - 1)
        return np.ascontiguousarray(g[r - keep:r + keep + 1])

    def maps(self, n, shape, rng):
        raise TypeError("Elastic is not an affine map: Augment applies it (Augment.draw)")

    def __repr__(self):
        return f"Elastic(alpha={self.alpha:g}, sigma={self.sigma:g})"


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
    """Transforms applied in the order given to every training image, new draws each epoch
    (drawn from ``rng`` in the order given). ``augment(x, shape, rng, device)``: the warped copy
    of x (n, h·w), same dtype, resampled once.

    Order: out = T_k(…T_1(x)), each transform a map of the plane (no cropping between them), so
    the output is sampled through T_k's map first and T_1's last. An ``Elastic`` T_j displaces
    the point q that the maps of T_k … T_(j+1) give by its field at q (interpolated between
    pixels, edge values beyond the image), and T_(j−1) … T_1's maps take q + Δ(q) on. At most
    one ``Elastic``."""

    def __init__(self, transforms):
        if isinstance(transforms, Transform):
            transforms = [transforms]
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not isinstance(t, Transform):
                raise TypeError(f"transforms[{i}] must be a fastnet.augment.Transform, got "
                                f"{type(t).__name__}")
        elastic = [t for t in self.transforms if isinstance(t, Elastic)]
        if len(elastic) > 1:
            raise ValueError(f"Augment takes at most one Elastic, got {len(elastic)}")
        self.elastic = elastic[0] if elastic else None

    def maps(self, n, shape, rng) -> np.ndarray:
        """float64[n, 3, 3]: the composed affine maps (no ``Elastic`` in the list)."""
        if self.elastic is not None:
            raise TypeError("Augment.maps: this list holds an Elastic, which is not an affine "
                            "map; use Augment.draw")
        m = _identity(n)
        for t in self.transforms:      # out = T_k(…T_1(x)): sample through T_1's map last
            m = m @ t.maps(n, shape, rng)
        return m

    def draw(self, n, shape, rng) -> tuple[np.ndarray, np.ndarray]:
        """``(m float64[n, 2, 2, 3], seeds uint64[n])`` for ``warp_elastic``: m[:, 0] the maps
        of the transforms before the ``Elastic`` composed, m[:, 1] those after it (identity
        where none), and its seeds; drawn from ``rng`` in the order given."""
        if self.elastic is None:
            raise TypeError("Augment.draw: this list holds no Elastic; use Augment.maps")
        before, after, seeds = _identity(n), _identity(n), None
        for t in self.transforms:
            if t is self.elastic:
                seeds = t.seeds(n, rng)
            elif seeds is None:
                before = before @ t.maps(n, shape, rng)
            else:
                after = after @ t.maps(n, shape, rng)
        return np.ascontiguousarray(np.stack([before[:, :2], after[:, :2]], axis=1)), seeds

    def __call__(self, x, shape, rng, device, threads=None) -> np.ndarray:
        n = len(x)
        images = np.ascontiguousarray(x.reshape(n, *shape))
        if self.elastic is None:
            maps = np.ascontiguousarray(self.maps(n, shape, rng)[:, :2])
            return device.warp_affine(images, maps, threads).reshape(n, -1)
        maps, seeds = self.draw(n, shape, rng)
        return device.warp_elastic(images, maps, seeds, self.elastic.alpha,
                                   self.elastic.taps(shape), threads).reshape(n, -1)

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
