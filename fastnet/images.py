"""Turning a picture of a digit into an MNIST-like input, as MNIST's digits were made (LeCun et
al.): the digit light on black, its bounding box scaled to fit a 20×20 box (aspect ratio kept,
area-averaged), then placed in 28×28 so that its centre of mass is at the centre.

``mnist_like(image)`` works on arrays (NumPy only); ``read_image(path)`` reads a PNG/JPEG with
Pillow (the ``image`` extra) into such an array. Used by ``fastnet predict``.
"""

from __future__ import annotations

import numpy as np

SIDE, BOX = 28, 20


def _gray(image) -> np.ndarray:
    """``image`` as float64 gray levels in [0, 1]: ``(h, w)`` gray, ``(h, w, 3)`` RGB or
    ``(h, w, 4)`` RGBA (composited over white: a transparent background reads as paper);
    integers are levels 0–255 (uint16: 0–65535), floats must lie in [0, 1]."""
    a = np.asarray(image)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or \
            min(a.shape[:2], default=0) < 1:
        raise ValueError(f"image must be (h, w) gray, (h, w, 3) RGB or (h, w, 4) RGBA, got "
                         f"shape {a.shape}")
    if a.dtype.kind in "ui":
        top = 65535 if a.dtype == np.uint16 else 255       # 16-bit PNGs; else 8-bit levels
        if a.size and (a.min() < 0 or a.max() > top):
            raise ValueError(f"an integer image must hold levels in [0, {top}], got "
                             f"[{a.min()}, {a.max()}]")
        a = a.astype(np.float64) / top
    elif a.dtype.kind == "f":
        a = a.astype(np.float64)
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise ValueError("a float image must hold finite values in [0, 1]")
    elif a.dtype.kind == "b":
        a = a.astype(np.float64)
    else:
        raise TypeError(f"image must hold numbers, got dtype {a.dtype}")
    if a.ndim == 3:
        rgb = a[..., :3] @ np.array([0.299, 0.587, 0.114])
        if a.shape[2] == 4:
            alpha = a[..., 3]
            rgb = rgb * alpha + (1.0 - alpha)
        a = rgb
    return a


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights averaging the input pixels each output pixel covers (area
    resampling: exact for shrinking, piecewise constant for growing)."""
    edges = np.linspace(0.0, n_in, n_out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    pix = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, pix + 1) - np.maximum(lo, pix), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def mnist_like(image, *, threshold: float = 0.1) -> np.ndarray:
    """``float32[784]`` in [0, 1]: ``image`` (see ``_gray`` for the forms) made like an MNIST
    digit. A light background (the median of the border pixels above 0.5) is inverted, so a
    dark digit on paper becomes light on black; the background level is subtracted and the
    brightest pixel scaled to 1. The digit's bounding box (pixels above ``threshold``) is
    scaled so its longer side is 20 pixels and placed in 28×28 with its centre of mass at
    (14, 14), to within half a pixel (clamped so nothing is cut off). Raises ValueError for a
    blank image."""
    g = _gray(image)
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    if np.median(border) > 0.5:
        g = 1.0 - g
        border = 1.0 - border
    g = np.clip(g - np.median(border), 0.0, None)
    top = g.max()
    if top <= 0:
        raise ValueError("the image is blank: no digit found (one gray level throughout)")
    g /= top
    rows, cols = np.flatnonzero((g > threshold).any(axis=1)), np.flatnonzero(
        (g > threshold).any(axis=0))
    g = g[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = g.shape
    scale = BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    digit = _resize_matrix(h, nh) @ g @ _resize_matrix(w, nw).T
    mass = digit.sum()
    cy = (np.arange(nh) @ digit.sum(axis=1)) / mass
    cx = (np.arange(nw) @ digit.sum(axis=0)) / mass
    top_row = int(np.clip(round(SIDE / 2 - cy), 0, SIDE - nh))
    left = int(np.clip(round(SIDE / 2 - cx), 0, SIDE - nw))
    out = np.zeros((SIDE, SIDE))
    out[top_row:top_row + nh, left:left + nw] = digit
    return np.clip(out, 0.0, 1.0).astype(np.float32).ravel()


def read_image(path) -> np.ndarray:
    """The picture at ``path`` (any format Pillow reads: PNG, JPEG, …) as a uint8 array:
    ``(h, w)`` gray, ``(h, w, 3)`` RGB, or ``(h, w, 4)`` RGBA when it has transparency.
    Needs Pillow (``pip install 'fastnet[image]'``); raises ImportError without it and
    ValueError for a file Pillow cannot read."""
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError:
        raise ImportError("reading images needs Pillow: pip install 'fastnet[image]'") from None
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if "A" in img.getbands() or "transparency" in img.info:
                mode = "RGBA"
            elif img.mode in ("1", "L", "I", "I;16", "F"):
                mode = "L"
            else:
                mode = "RGB"
            return np.asarray(img.convert(mode))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not an image Pillow can read ({exc})") from None
