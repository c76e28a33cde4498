"""Data augmentation: the warp kernels against their NumPy twins (random maps, odd shapes, batch
1, float32 and float64), pixel expectations for a known shift and a quarter turn, composition
order, seeded draws, and fit(augment=...): deterministic, resumable, and training on new
images each epoch while scoring the given ones. The elastic distortion besides: splitmix64
against its published outputs, the same result on any thread count, seeds that repeat and
differ, alpha = 0 as the identity, its field recovered from warped ramps (the draws smoothed by
a Gaussian written here; Simard's statistics), its place in the order, its arguments."""

import numpy as np
import pytest

from fastnet import Conv2D, Dense, Flatten, MaxPool2D, Model, devices
from fastnet import augment as A
from fastnet.kernels import augment_cpu
from fastnet.reference import augment as ref
from helpers import assert_close, rounding_bound


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


FIT_AUGMENTS = {"affine": [A.Shift(1), A.Rotate(10)],
                "elastic": [A.Shift(1), A.Elastic(alpha=8.0, sigma=2.0), A.Rotate(10)]}


@pytest.mark.parametrize("transforms", FIT_AUGMENTS)
@pytest.mark.parametrize("kind", ["dense", "cnn"])
def test_fit_with_augment(kind, transforms, tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 64)), rng.integers(0, 3, 40)

    def build():
        if kind == "dense":
            return Model([64, 8, 3], dtype="float64", seed=1)
        return Model([Conv2D(1, 2, 3, "relu"), MaxPool2D(2), Flatten(), Dense(18, 3)],
                     input_shape=(1, 8, 8), dtype="float64", seed=1)
    aug = A.Augment(FIT_AUGMENTS[transforms])
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


@pytest.mark.parametrize("augment", [A.Rotate(20), A.Augment([A.Elastic(8.0, 2.0), A.Rotate(20)])],
                         ids=["affine", "elastic"])
def test_augment_on_the_numpy_device_uses_the_twin(augment):
    rng = np.random.default_rng(2)
    x, y = rng.random((20, 49)), rng.integers(0, 2, 20)
    kw = dict(epochs=2, batch_size=5, lr=0.5, verbose=False, augment=augment)
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
    with pytest.raises(ValueError, match="at most one Elastic"):
        A.Augment([A.Elastic(), A.Shift(1), A.Elastic()])


# ---------------------------------------------------------------------------- elastic
def elastic_bound(want, dtype, x, alpha, taps, fields):
    """The rule over the elastic kernel's stages, all in its dtype (x's); ``fields``: the
    twin's Δ[n, 2, h, w]. A Δ is two filter passes of up to len(taps) terms whose sizes sum
    to at most alpha each (the taps sum to 1, |draws| <= alpha): magnitude 2·alpha. A
    coordinate a·(q + Δ) (|a|'s row sums <= √2) carries 2 Δ errors and rounds terms of size up
    to h + w + max|Δ| (n = 4, q's own included when off the grid); an error δ in q moves the
    field read there by up to its largest step between neighbours times δ. A value: its
    interpolation (4 products of weights in [0, 1] with pixels) and each coordinate's error
    times the interpolant's slope, at most the largest step between neighbouring pixels."""
    h, w = x.shape[1:]
    x64 = x.astype(np.float64)
    steps = lambda a: max(np.abs(np.diff(a, axis=-1)).max(initial=0),      # noqa: E731
                          np.abs(np.diff(a, axis=-2)).max(initial=0))
    dmax = np.abs(fields).max()
    field = rounding_bound(dmax, dtype, n=len(taps), magnitude=2 * alpha)
    rounded = rounding_bound(h + w + dmax, dtype, n=4)
    coordinate = 2 * field + 2 * rounded + steps(fields) * rounded
    return (rounding_bound(want, dtype, n=4, magnitude=np.abs(x64).max()) +
            2 * steps(x64) * coordinate)


ELASTIC_LISTS = {
    "elastic": [A.Elastic()],
    "shift-elastic-rotate": [A.Shift(2), A.Elastic(20.0, 2.5), A.Rotate(30)],   # q off the grid
    "rotate-elastic": [A.Rotate(15), A.Elastic(34.0, 1.0)],
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, h, w", [(1, 5, 7), (13, 28, 28), (4, 9, 3), (3, 37, 33), (2, 1, 6)])
@pytest.mark.parametrize("transforms", ELASTIC_LISTS)
def test_elastic_kernel_matches_the_twin(dtype, n, h, w, transforms):
    rng = np.random.default_rng(n * h * w)
    x = rng.random((n, h, w)).astype(dtype)
    aug = A.Augment(ELASTIC_LISTS[transforms])
    m, seeds = aug.draw(n, (h, w), rng)
    alpha, taps = aug.elastic.alpha, aug.elastic.taps((h, w))
    got, want = np.full_like(x, np.nan), np.empty((n, h, w))
    augment_cpu.warp_elastic(x, m, seeds, alpha, taps, got, 2)
    ref.warp_elastic(x.astype(np.float64), m, seeds, alpha, taps, want)
    fields = ref.displacements(seeds, alpha, taps, h, w)
    assert_close(got, want.astype(dtype), bound=elastic_bound(want, dtype, x, alpha, taps, fields),
                 name="elastic")


def identity_maps(n):
    return np.ascontiguousarray(np.broadcast_to(np.eye(3)[:2], (n, 2, 2, 3)))


def elastic(x, seeds, alpha=34.0, sigma=4.0, nthreads=1, maps=None):
    """The kernel alone (identity maps unless given)."""
    out = np.full_like(x, np.nan)
    maps = identity_maps(len(x)) if maps is None else maps
    augment_cpu.warp_elastic(x, maps, np.asarray(seeds, np.uint64), alpha,
                             A.Elastic(alpha, sigma).taps(x.shape[1:]), out, nthreads)
    return out


def test_splitmix64_gives_its_published_outputs():
    """The first five outputs of Vigna's splitmix64.c seeded with 1234567."""
    published = [6457827717110365317, 3203168211198807973, 9817491932198370423,
                 4593380528125082431, 16408922859458223821]
    seed = np.uint64(1234567)
    assert [int(v) for v in ref.splitmix64(seed, np.arange(5, dtype=np.uint64))] == published
    assert [int(augment_cpu.splitmix64(seed, np.uint64(k))) for k in range(5)] == published


def test_elastic_is_the_same_on_any_thread_count():
    rng = np.random.default_rng(3)
    x = rng.random((11, 28, 28)).astype(np.float32)
    seeds = rng.integers(0, 2 ** 64, 11, dtype=np.uint64)
    one = elastic(x, seeds)
    for nthreads in (2, 3, 11):
        np.testing.assert_array_equal(elastic(x, seeds, nthreads=nthreads), one)
    aug, cpu = A.Augment([A.Shift(2), A.Rotate(10), A.Elastic()]), devices.get("cpu")
    flat = x.reshape(11, -1)
    np.testing.assert_array_equal(aug(flat, (28, 28), np.random.default_rng(4), cpu, threads=1),
                                  aug(flat, (28, 28), np.random.default_rng(4), cpu, threads=2))


def test_elastic_draws_are_seeded():
    """The same generator state, the same images; another, others; and each image its own
    field (here the same image three times)."""
    aug, cpu = A.Augment([A.Elastic()]), devices.get("cpu")
    x = np.tile(np.random.default_rng(0).random((1, 784)).astype(np.float32), (3, 1))
    a = aug(x, (28, 28), np.random.default_rng(1), cpu)
    np.testing.assert_array_equal(a, aug(x, (28, 28), np.random.default_rng(1), cpu))
    assert np.abs(a - aug(x, (28, 28), np.random.default_rng(2), cpu)).max() > 0.1
    assert np.abs(a[0] - a[1]).max() > 0.1 and np.abs(a[1] - a[2]).max() > 0.1
    seeds = A.Elastic().seeds(1000, np.random.default_rng(5))
    assert seeds.dtype == np.uint64 and len(np.unique(seeds)) == 1000
    assert (seeds >> np.uint64(63)).any()                   # all 64 bits drawn


def test_elastic_with_alpha_0_is_the_identity_or_the_affine_map_alone():
    rng = np.random.default_rng(6)
    x = rng.random((5, 28 * 28)).astype(np.float32)
    cpu, shape = devices.get("cpu"), (28, 28)
    np.testing.assert_array_equal(A.Augment([A.Elastic(alpha=0)])(x, shape, rng, cpu), x)
    # the Elastic draws its seeds after the Shift's draws: the same shifts, on the grid
    np.testing.assert_array_equal(
        A.Augment([A.Shift(3), A.Elastic(alpha=0.0)])(x, shape, np.random.default_rng(7), cpu),
        A.Augment([A.Shift(3)])(x, shape, np.random.default_rng(7), cpu))
    x64 = x.astype(np.float64)
    turned = A.Augment([A.Rotate(30), A.Elastic(alpha=0)])(x64, shape, np.random.default_rng(8),
                                                           cpu)
    want = A.Augment([A.Rotate(30)])(x64, shape, np.random.default_rng(8), cpu)
    # both sample at the same rotated points, rounded on their own (as the warp test's bound)
    assert_close(turned, want, n=4, magnitude=(28 + 28) * np.abs(x64).max(), name="turned")


def gaussian_smoothing(v, sigma, truncate=4.0):
    """v[..., h, w] filtered along both axes by the Gaussian of ``sigma`` truncated at
    ``truncate``·σ and normalised, zeros beyond the ends (np.convolve, mode "same")."""
    r = int(truncate * sigma + 0.5)
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    g /= g.sum()
    along = lambda a, axis: np.apply_along_axis(np.convolve, axis, a, g, "same")  # noqa: E731
    return along(along(v, -1), -2)


def recovered_fields(seeds, h, w, alpha=34.0, sigma=4.0):
    """(Δrow, Δcol)[n, h, w] read off the warps of the ramps x = row and x = col (bilinear
    interpolation of a linear function is exact where the sample stays inside the image)."""
    rows = np.broadcast_to(np.arange(h, dtype=np.float64)[:, None], (h, w))
    cols = np.broadcast_to(np.arange(w, dtype=np.float64)[None, :], (h, w))
    n = len(seeds)
    ramps = np.concatenate([np.broadcast_to(rows, (n, h, w)), np.broadcast_to(cols, (n, h, w))])
    out = elastic(np.ascontiguousarray(ramps), np.concatenate([seeds, seeds]), alpha, sigma)
    return out[:n] - rows, out[n:] - cols


def test_the_field_is_the_draws_smoothed_by_a_gaussian():
    """Where the field is read off whole (8 pixels from the edges, more than any Δ here), it is
    each pixel's two halves of splitmix64 (signed, /2³¹, times alpha) filtered by the Gaussian
    written above. Bound: the field's rounding in float64 (two passes of 33 terms, K·ε·(alpha +
    √33·2·alpha) ≈ 4e-12) and the ramp's sample (ε·h), well within 1e-9; a tap off by one, σ
    read as a variance, or a truncation at 3σ move Δ by 1e-3 or more."""
    h, w, alpha, sigma = 48, 44, 34.0, 4.0
    seeds = np.random.default_rng(9).integers(0, 2 ** 64, 3, dtype=np.uint64)
    d_row, d_col = recovered_fields(seeds, h, w, alpha, sigma)
    z = ref.splitmix64(seeds[:, None], np.arange(h * w, dtype=np.uint64)[None, :])
    signed = lambda half: np.where(half >= 2 ** 31, half - 2 ** 32, half)   # noqa: E731
    hi = signed((z >> np.uint64(32)).astype(np.int64))
    lo = signed((z & np.uint64(2 ** 32 - 1)).astype(np.int64))
    inner = (slice(None), slice(8, h - 8), slice(8, w - 8))
    assert max(np.abs(d_row[inner]).max(), np.abs(d_col[inner]).max()) < 7
    for got, half in ((d_row, hi), (d_col, lo)):
        want = gaussian_smoothing(alpha * half.reshape(-1, h, w) / 2.0 ** 31, sigma)
        assert_close(got[inner], want[inner], rtol=0.0, atol=1e-9, name="field")


def test_the_field_has_simards_statistics():
    """Δrow and Δcol away from the edges: mean 0, standard deviation alpha·√(1/3)·Σg² (draws of
    variance alpha²/3 through the separable filter g: (Σg²)² per pixel; 1.38 pixels for
    Simard's alpha 34, σ 4), uncorrelated. 200 images of 48×48, about 5 independent patches
    each away from the edges: the standard deviation is known to ~2 %, checked to 10 %."""
    h = w = 48
    seeds = np.random.default_rng(10).integers(0, 2 ** 64, 200, dtype=np.uint64)
    d_row, d_col = recovered_fields(seeds, h, w)
    g = A.Elastic().taps((h, w))
    want = 34.0 * np.sqrt(1 / 3) * np.sum(g ** 2)
    for d in (d_row, d_col):
        inner = d[:, 8:-8, 8:-8]
        assert abs(inner.mean()) < 0.2
        assert abs(inner.std() / want - 1) < 0.1, (inner.std(), want)
    corr = np.corrcoef(d_row[:, 8:-8, 8:-8].ravel(), d_col[:, 8:-8, 8:-8].ravel())[0, 1]
    assert abs(corr) < 0.15


def test_elastic_composes_in_the_order_given():
    """On an image whose content keeps clear of the edges, one warp through [Shift, Elastic]
    equals the shift's warp and then the distortion's, and [Elastic, Shift] the distortion and
    then the shift; the two orders differ. Bound: as the warp test's (the same points sampled,
    the coordinates rounded on their own)."""
    h = w = 24
    rng = np.random.default_rng(11)
    x = np.zeros((1, h, w))
    x[0, 7:17, 7:17] = rng.random((10, 10))
    shift, el = A.Shift(3), A.Elastic(10.0, 3.0)
    bound = dict(n=4, magnitude=(h + w) * np.abs(x).max())
    # shift, then distort
    m, seeds = A.Augment([shift, el]).draw(1, (h, w), np.random.default_rng(12))
    r = np.random.default_rng(12)
    m_shift, s = shift.maps(1, (h, w), r), el.seeds(1, r)
    assert np.array_equal(seeds, s) and np.abs(m_shift[0, :2, 2]).max() > 0
    first = elastic(x, seeds, 10.0, 3.0, maps=m)
    assert_close(first, elastic(warp(x, m_shift), seeds, 10.0, 3.0), **bound, name="shift first")
    # distort, then shift
    m, seeds = A.Augment([el, shift]).draw(1, (h, w), np.random.default_rng(12))
    r = np.random.default_rng(12)
    s, m_shift = el.seeds(1, r), shift.maps(1, (h, w), r)
    assert np.array_equal(seeds, s) and np.abs(m_shift[0, :2, 2]).max() > 0
    last = elastic(x, seeds, 10.0, 3.0, maps=m)
    assert_close(last, warp(elastic(x, seeds, 10.0, 3.0), m_shift), **bound, name="shift last")
    assert np.abs(first - last).max() > 0.1


def test_elastic_arguments():
    assert repr(A.Elastic()) == "Elastic(alpha=34, sigma=4)"
    assert repr(A.Augment([A.Shift(2), A.Elastic(8, 2.5)])) == \
        "Augment([Shift(2), Elastic(alpha=8, sigma=2.5)])"
    for bad, error, match in [
            (dict(alpha=-1.0), ValueError, "alpha must be a finite number >= 0"),
            (dict(alpha=float("inf")), ValueError, "alpha must be a finite number >= 0"),
            (dict(alpha="34"), TypeError, "alpha must be a finite number >= 0"),
            (dict(sigma=0.0), ValueError, "sigma must be a finite number > 0"),
            (dict(sigma=float("nan")), ValueError, "sigma must be a finite number > 0"),
            (dict(sigma=True), TypeError, "sigma must be a finite number > 0"),
            (dict(sigma=1e4), ValueError, "sigma must be at most 1000")]:
        with pytest.raises(error, match=match):
            A.Elastic(**bad)
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match="Elastic is not an affine map"):
        A.Elastic().maps(2, (5, 5), rng)
    with pytest.raises(TypeError, match="holds an Elastic"):
        A.Augment([A.Shift(1), A.Elastic()]).maps(2, (5, 5), rng)
    with pytest.raises(TypeError, match="holds no Elastic"):
        A.Augment([A.Shift(1)]).draw(2, (5, 5), rng)


def test_elastic_taps():
    """The Gaussian of σ truncated at 4σ and normalised; cut to the image's reach."""
    g = A.Elastic(sigma=4.0).taps((28, 28))
    assert len(g) == 33 and abs(g.sum() - 1) < 1e-15 and g[16] == g.max()
    np.testing.assert_allclose(g[17] / g[16], np.exp(-0.5 / 16))
    assert len(A.Elastic(sigma=4.0).taps((5, 7))) == 2 * 6 + 1          # |offset| < 7
    assert len(A.Elastic(sigma=0.1).taps((28, 28))) == 1
