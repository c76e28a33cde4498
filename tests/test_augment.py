"""Data augmentation: the warp kernel against its NumPy twin (random maps, odd shapes, batch 1,
float32 and float64), pixel expectations for a known shift and a quarter turn, composition
order, seeded draws, and fit(augment=...): deterministic, resumable, and training on new
images each epoch while scoring the given ones."""

import numpy as np
import pytest

from fastnet import Conv2D, Dense, Flatten, MaxPool2D, Model
from fastnet import augment as A
from fastnet.kernels import augment_cpu
from fastnet.reference import augment as ref
from helpers import assert_close


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, h, w", [(1, 5, 7), (13, 28, 28), (4, 9, 3)])
def test_warp_kernel_matches_the_twin(dtype, n, h, w):
    rng = np.random.default_rng(n * h * w)
    x = rng.random((n, h, w)).astype(dtype)
    maps = np.ascontiguousarray(A.Augment([A.Shift(2), A.Rotate(30)]).maps(n, (h, w), rng)[:, :2])
    maps[:, :, 2] += rng.uniform(-0.5, 0.5, (n, 2))           # sub-pixel offsets too
    got, want = np.empty_like(x), np.empty((n, h, w))
    augment_cpu.warp_affine(x, maps, got, 2)
    ref.warp_affine(x.astype(np.float64), maps, want)
    # each pixel is a sum of 4 products of weights in [0, 1] with pixels; the weights come
    # from sample coordinates of size up to ~h + w, each rounded (ε·(h + w) per weight)
    magnitude = (h + w) * np.abs(x).max()
    assert_close(got, want.astype(dtype), n=4, magnitude=magnitude, name="warp")


def warp(x, maps):
    out = np.empty_like(x)
    augment_cpu.warp_affine(x, np.ascontiguousarray(maps[:, :2]), out, 1)
    return out


def test_a_known_shift_and_a_quarter_turn():
    img = np.arange(1, 26, dtype=np.float64).reshape(1, 5, 5)
    m = np.eye(3)[None].copy()
    m[0, :2, 2] = [-1, 2]                     # down 1 row, left 2 columns
    want = np.zeros((5, 5))
    want[1:, :3] = img[0, :4, 2:]
    np.testing.assert_array_equal(warp(img, m)[0], want)
    turned = warp(img, A.rotation(np.array([np.pi / 2]), (5, 5)))[0]
    np.testing.assert_allclose(turned, np.rot90(img[0]), atol=1e-12)   # counter-clockwise


class QuarterTurn(A.Transform):
    """A quarter turn every time: on the pixel grid, so warping twice loses nothing."""

    def maps(self, n, shape, rng):
        return A.rotation(np.full(n, np.pi / 2), shape)


def test_composition_applies_transforms_in_order():
    """Shift then turn, in one warp, equals the two warps one after the other (both on the
    grid); turn then shift does not."""
    rng = np.random.default_rng(0)
    img = rng.random((1, 8, 8))
    shift, turn = A.Shift(3), QuarterTurn()
    both = A.Augment([shift, turn])
    m = both.maps(1, (8, 8), np.random.default_rng(5))
    r = np.random.default_rng(5)
    m_shift, m_turn = shift.maps(1, (8, 8), r), turn.maps(1, (8, 8), r)
    np.testing.assert_allclose(warp(img, m), warp(warp(img, m_shift), m_turn), atol=1e-12)
    assert np.abs(warp(img, m) - warp(warp(img, m_turn), m_shift)).max() > 0.1


def test_draws_are_seeded_and_in_range():
    a = A.Augment([A.Shift(2), A.Rotate(15)])
    m1 = a.maps(500, (28, 28), np.random.default_rng(1))
    assert np.array_equal(m1, a.maps(500, (28, 28), np.random.default_rng(1)))
    shifts = A.Shift(2).maps(500, (28, 28), np.random.default_rng(2))[:, :2, 2]
    assert set(np.unique(shifts)) == {-2, -1, 0, 1, 2}
    angles = np.degrees(np.arctan2(m1[:, 0, 1], m1[:, 0, 0]))
    assert np.abs(angles).max() <= 15 and np.abs(angles).max() > 14


@pytest.mark.parametrize("kind", ["dense", "cnn"])
def test_fit_with_augment(kind, tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 64)), rng.integers(0, 3, 40)

    def build():
        if kind == "dense":
            return Model([64, 8, 3], dtype="float64", seed=1)
        return Model([Conv2D(1, 2, 3, "relu"), MaxPool2D(2), Flatten(), Dense(18, 3)],
                     input_shape=(1, 8, 8), dtype="float64", seed=1)
    aug = A.Augment([A.Shift(1), A.Rotate(10)])
    kw = dict(batch_size=5, lr=0.5, verbose=False)
    a, b, plain = build(), build(), build()
    ha = a.fit(x, y, epochs=3, augment=aug, **kw)
    b.fit(x, y, epochs=3, augment=aug, **kw)
    plain.fit(x, y, epochs=3, **kw)
    np.testing.assert_array_equal(a.params, b.params)                  # seeded
    assert not np.array_equal(a.params, plain.params)                  # other images
    assert ha.loss[-1] == a.evaluate(x, y)["loss"]                      # scored as given
    c = build()
    c.fit(x, y, epochs=1, augment=aug, checkpoint=tmp_path / "c.npz", **kw)
    c = build()
    c.fit(x, y, epochs=3, augment=aug, checkpoint=tmp_path / "c.npz", **kw)
    np.testing.assert_array_equal(a.params, c.params)                  # resumed exactly


def test_augment_on_the_numpy_device_uses_the_twin():
    rng = np.random.default_rng(2)
    x, y = rng.random((20, 49)), rng.integers(0, 2, 20)
    kw = dict(epochs=2, batch_size=5, lr=0.5, verbose=False, augment=A.Rotate(20))
    cpu = Model([49, 4, 2], dtype="float64", seed=3)
    ref_model = Model([49, 4, 2], dtype="float64", seed=3, device="numpy")
    cpu.fit(x, y, **kw)
    ref_model.fit(x, y, **kw)
    np.testing.assert_allclose(cpu.params, ref_model.params, rtol=1e-9, atol=1e-12)


def test_bad_augment():
    m = Model([10, 2], seed=0)
    x, y = np.ones((4, 10)), np.zeros(4, int)
    with pytest.raises(ValueError, match="augment needs one-channel images"):
        m.fit(x, y, epochs=1, batch_size=2, lr=0.1, augment=A.Shift(1), verbose=False)
    with pytest.raises(TypeError, match="augment must be a fastnet.augment"):
        Model([9, 2], seed=0).fit(np.ones((4, 9)), y, epochs=1, batch_size=2, lr=0.1,
                                  augment="shift", verbose=False)
    with pytest.raises(TypeError, match=r"transforms\[1\] must be"):
        A.Augment([A.Shift(1), 3])
    with pytest.raises(ValueError, match="max_degrees must be at most 180"):
        A.Rotate(200)
