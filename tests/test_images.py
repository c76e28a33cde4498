"""``fastnet.images.mnist_like`` on synthetic pictures: the digit ends up light on black,
its bounding box 20 pixels on its longer side (aspect kept), its centre of mass at (14, 14)
within half a pixel; gray, RGB and RGBA give the same result; bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

from fastnet.images import mnist_like


def centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    img = img.reshape(28, 28).astype(np.float64)
    rows, cols = np.indices(img.shape)
    return (rows * img).sum() / img.sum(), (cols * img).sum() / img.sum()


def bbox(img: np.ndarray, level=0.1) -> tuple[int, int]:
    on = img.reshape(28, 28) > level
    r, c = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
    return r[-1] - r[0] + 1, c[-1] - c[0] + 1


def paper_digit(h=120, w=90) -> np.ndarray:
    """A dark "7" drawn on light paper, off-centre, uint8 gray."""
    img = np.full((h, w), 235, np.uint8)
    img[20:28, 10:60] = 20                        # the bar
    for k in range(60):                           # the stroke, down to the left
        r, c = 28 + k, 58 - k // 2
        img[r:r + 2, c - 4:c + 4] = 30
    return img


def test_dark_on_light_is_inverted_scaled_and_centred():
    out = mnist_like(paper_digit())
    assert out.shape == (784,) and out.dtype == np.float32
    assert out.min() == 0 and out.max() == pytest.approx(1.0)
    img = out.reshape(28, 28)
    assert img[0].max() == 0 and img[:, [0, -1]].max() == 0    # the paper is black now
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    h, w = bbox(out)
    assert max(h, w) in (19, 20, 21) and h > w                  # tall digit: 20 rows high


def test_light_on_dark_is_kept():
    light = 255 - paper_digit()
    np.testing.assert_allclose(mnist_like(light), mnist_like(paper_digit()), atol=1e-6)


def test_rgb_and_rgba_match_gray():
    gray = paper_digit()
    rgb = np.repeat(gray[..., None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full(gray.shape + (1,), 255, np.uint8)], axis=2)
    ref = mnist_like(gray)
    np.testing.assert_allclose(mnist_like(rgb), ref, atol=1e-5)
    np.testing.assert_allclose(mnist_like(rgba), ref, atol=1e-5)
    # transparent background with opaque dark ink: read as ink on white paper
    ink = np.zeros(gray.shape + (4,), np.uint8)
    ink[..., 3] = np.where(gray < 128, 255, 0)
    np.testing.assert_allclose(mnist_like(ink), mnist_like(np.where(gray < 128, 0, 255)),
                               atol=1e-5)


@pytest.mark.parametrize("h, w, at", [(28, 28, (2, 2)), (300, 40, (250, 5)), (50, 400, (40, 380))])
def test_small_blobs_anywhere_land_in_the_middle(h, w, at):
    img = np.zeros((h, w), np.float64)
    img[at[0]:at[0] + 4, at[1]:at[1] + 3] = 1.0
    out = mnist_like(img)
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert max(bbox(out)) == 20


@pytest.mark.parametrize("bad, error", [
    (np.zeros((5, 5, 2)), ValueError), (np.zeros(10), ValueError),
    (np.full((8, 8), 2.0), ValueError), (np.full((8, 8), 0.5), ValueError),
    (np.full((8, 8), 300), ValueError), (np.array([["a"]]), TypeError)])
def test_bad_images_are_refused(bad, error):
    with pytest.raises(error):
        mnist_like(bad)
