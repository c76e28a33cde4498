"""``Conv2D(stride=, padding=)``: output shapes by Keras's and PyTorch's rules, values against a
direct float64 statement (zeros around, every stride-th window), gradients by finite
differences, numpy and cpu alike, PyTorch's conv2d where torch is installed, files, and
refusals of bad arguments (the cuda device's refusal: tests/cuda_sim/layers_checks.py)."""

import numpy as np
import pytest

import fastnet
from fastnet import Conv2D, Dense, Flatten, MaxPool2D, Model
from helpers import assert_close


def direct(x, w, b, stride, pads):
    """The correlation of the zero-padded x at every stride-th position, by loops (float64)."""
    top, bottom, left, right = pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))
    n, c, h, wd = xp.shape
    co, _, kh, kw = w.shape
    sh, sw = stride
    oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
    z = np.zeros((n, co, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            z[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w) + b
    return z


@pytest.mark.parametrize("h, k, stride, padding, expect", [
    (28, 5, 1, "valid", 24), (28, 5, 1, "same", 28), (28, 5, 2, "same", 14),
    (7, 3, 2, "same", 4), (7, 3, 2, "valid", 3), (7, 3, 3, 1, 3), (6, 4, 1, "same", 6),
    (5, 5, 1, 2, 5), (1, 3, 1, "same", 1), (4, 3, 2, (1, 1), 2),
])
def test_output_sizes(h, k, stride, padding, expect):
    """Keras's "same" (⌈h/stride⌉) and PyTorch's ⌊(h + 2p − k)/stride⌋ + 1."""
    layer = Conv2D(1, 2, k, stride=stride, padding=padding)
    assert layer.output_shape((1, h, h)) == (2, expect, expect)


def test_same_splits_the_zeros_with_the_odd_one_at_the_bottom_and_right():
    assert Conv2D(1, 1, 4, padding="same").pads(6, 6) == (1, 2, 1, 2)
    assert Conv2D(1, 1, (3, 5), padding="same").pads(6, 9) == (1, 1, 2, 2)
    assert Conv2D(1, 1, 3, stride=2, padding="same").pads(8, 7) == (0, 1, 1, 1)


def model(device, stride, padding, seed=0, dtype="float64", act="tanh"):
    conv = Conv2D(2, 3, (3, 2), act, stride=stride, padding=padding)
    c, oh, ow = conv.output_shape((2, 7, 6))
    return Model([conv, Flatten(), Dense(c * oh * ow, 4, "softmax")], input_shape=(2, 7, 6),
                 loss="log_likelihood", dtype=dtype, device=device, seed=seed)


CASES = [(1, "same"), (2, "valid"), ((2, 3), "same"), (2, (1, 2)), (3, 1)]


@pytest.mark.parametrize("device", ["numpy", "cpu"])
@pytest.mark.parametrize("stride, padding", CASES)
def test_forward_against_the_direct_statement(device, stride, padding):
    m = model(device, stride, padding, act="linear")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 7, 6))
    conv = m.layers[0]
    p = m.params_of(0)
    z = direct(x, p["w"], p["b"], conv.stride, conv.pads(7, 6))
    out = z.reshape(3, -1) @ m.params_of(2)["w"].T + m.params_of(2)["b"]
    expect = np.exp(out - out.max(axis=1, keepdims=True))
    expect /= expect.sum(axis=1, keepdims=True)
    assert_close(m.predict(x.reshape(3, -1)), expect, rtol=1e-12, atol=1e-14, name="outputs")


@pytest.mark.parametrize("device", ["numpy", "cpu"])
@pytest.mark.parametrize("stride, padding", CASES)
def test_gradients_by_finite_differences(device, stride, padding):
    m = model(device, stride, padding)
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((4, 84)), rng.integers(0, 4, 4)
    errors = fastnet.gradcheck(m, x, y, samples=12)
    assert max(errors.values()) <= 1e-6, errors


@pytest.mark.parametrize("stride, padding", CASES[:3])
def test_numpy_and_cpu_train_alike(stride, padding):
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((20, 84)), rng.integers(0, 4, 20)
    a, b = model("numpy", stride, padding), model("cpu", stride, padding)
    for m in (a, b):
        m.fit(x, y, epochs=2, batch_size=6, lr=0.1, verbose=False)
    assert_close(b.params, a.params, rtol=1e-9, atol=1e-12, name="params")


def test_a_strided_conv_before_a_pool_is_not_fused_and_trains_alike():
    """Conv2D(stride 2) → MaxPool2D runs as two stages (the fused kernels are stride 1)."""
    def build(device):
        return Model([Conv2D(1, 2, 3, "relu", stride=2, padding="same"), MaxPool2D(2),
                      Flatten(), Dense(8, 3, "softmax")], input_shape=(1, 8, 8),
                     loss="log_likelihood", dtype="float64", device=device, seed=5)
    assert len(build("cpu")._spec.stages) == 4
    rng = np.random.default_rng(4)
    x, y = rng.random((12, 64)), rng.integers(0, 3, 12)
    a, b = build("numpy"), build("cpu")
    for m in (a, b):
        m.fit(x, y, epochs=2, batch_size=4, lr=0.2, verbose=False)
    assert_close(b.params, a.params, rtol=1e-9, atol=1e-12, name="params")


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 2), (2, 0), (3, (1, 2))])
def test_against_pytorch(stride, padding):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 2, 9, 8))
    conv = Conv2D(2, 3, 3, stride=stride, padding=padding)
    from fastnet.devices.ops import CpuOps
    ops = CpuOps()
    w, b = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    z, _ = conv.forward(ops, {"w": w, "b": b}, x, False, None)
    pad = conv.padding
    theirs = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                                        torch.from_numpy(b), stride=conv.stride, padding=pad)
    assert_close(z, theirs.numpy(), rtol=1e-12, atol=1e-12, name="z")


def test_repr_names_every_option_not_default():
    assert repr(Conv2D(1, 2, 3, padding=1)).endswith("padding=(1, 1))")
    assert repr(Conv2D(1, 2, 3, stride=2)).endswith("stride=(2, 2))")
    assert "stride" not in repr(Conv2D(1, 2, 3)) and "padding" not in repr(Conv2D(1, 2, 3))
    assert Conv2D(1, 2, 3, padding=np.int64(2)).padding == (2, 2)


def test_files_keep_stride_and_padding(tmp_path):
    m = model("cpu", 2, "same")
    m.save(tmp_path / "m.npz")
    back = fastnet.load(tmp_path / "m.npz")
    assert back.layers[0].stride == (2, 2) and back.layers[0].padding == "same"
    assert "stride=(2, 2), padding='same'" in repr(back.layers[0])
    assert "stride" not in Conv2D(1, 2, 3).config()      # old files and fingerprints unchanged


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(stride=0), ValueError, "stride"), (dict(stride=(1, 0)), ValueError, r"stride\[1\]"),
    (dict(padding="full"), ValueError, "padding"), (dict(padding=-1), ValueError, "padding"),
    (dict(padding=1.5), TypeError, "padding"), (dict(padding=(1, -2)), ValueError,
                                                 r"padding\[1\]"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Conv2D(1, 2, 3, **kwargs)


def test_an_input_too_small_even_padded_is_refused():
    with pytest.raises(ValueError, match="after padding"):
        Model([Conv2D(1, 2, 5, padding=1), Flatten(), Dense(2, 2)], input_shape=(1, 2, 2))
