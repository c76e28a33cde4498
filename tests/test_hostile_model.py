"""``fastnet.load`` fuzzed: model files with bytes flipped, cut and inserted, architectures
replaced by arbitrary JSON, and ``.npy`` headers that lie. Whatever the file, ``load`` returns a
model or raises a ``ValueError`` naming it; it never crashes, and never allocates more than
~100× the file's size before refusing it (each case runs in a child under a memory limit,
``hostile.py``).
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import hostile
from hostile import run_limited

if hostile.SKIP_REASON:
    pytest.skip(hostile.SKIP_REASON, allow_module_level=True)

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastnet  # noqa: E402
from fastnet import Conv2D, Dense, Flatten, MaxPool2D, Model  # noqa: E402

FUZZ = hostile.fuzz_settings()
DOCUMENTED = (ValueError,)
worker = hostile.worker_fixture(__name__)


def _load(path) -> None:
    model = fastnet.load(path)
    assert model.params.dtype in (np.float32, np.float64) and np.isfinite(model.params).all()


CHECKS = {"load": _load}


def _valid_files() -> list[bytes]:
    """A dense stack and a CNN as ``Model.save`` writes them: the fuzzers' starting points."""
    import io
    dense = Model([6, 5, 3], loss="log_likelihood", seed=0)
    cnn = Model([Conv2D(1, 2, 3, "relu"), MaxPool2D(2), Flatten(), Dense(8, 3, "softmax")],
                loss="log_likelihood", input_shape=(1, 6, 6), dtype="float64", seed=0)
    files = []
    for m in (dense, cnn):
        buf = io.BytesIO()
        np.savez(buf, params=m.params, architecture=np.array(json.dumps(m.architecture())))
        files.append(buf.getvalue())
    return files


VALID = _valid_files()


def test_the_valid_files_load(worker, tmp_path):
    """The starting points are good files (else the mutations below would test little)."""
    for i, data in enumerate(VALID):
        path = tmp_path / f"v{i}.npz"
        path.write_bytes(data)
        assert run_limited(worker, "load", path) == "accepted"


@FUZZ
@given(which=st.integers(0, len(VALID) - 1), edits=st.lists(
    st.tuples(st.sampled_from(["flip", "cut", "insert", "set"]), st.floats(0, 1),
              st.binary(min_size=1, max_size=8)), min_size=1, max_size=4))
def test_mutated_bytes(worker, tmp_path, which, edits):
    data = bytearray(VALID[which])
    for kind, where, blob in edits:
        i = min(int(where * len(data)), max(len(data) - 1, 0))
        if kind == "flip" and data:
            data[i] ^= blob[0] or 1
        elif kind == "cut":
            del data[i:]
        elif kind == "insert":
            data[i:i] = blob
        else:
            data[i:i + len(blob)] = blob
    path = tmp_path / "m.npz"
    path.write_bytes(bytes(data))
    run_limited(worker, "load", path)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) |
    st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=20)
LAYER = st.fixed_dictionaries({"kind": st.sampled_from(["dense", "conv2d", "maxpool2d",
                                                        "flatten", "dropout", "lstm"])},
                              optional={"n_in": JSON | st.integers(0, 10 ** 12),
                                        "n_out": JSON | st.integers(0, 10 ** 12),
                                        "in_channels": st.integers(-1, 10 ** 6),
                                        "out_channels": st.integers(-1, 10 ** 6),
                                        "kernel_size": JSON, "size": JSON, "p": JSON,
                                        "activation": JSON, "init": JSON})


@FUZZ
@given(layers=st.lists(LAYER, max_size=5) | JSON, loss=JSON | st.sampled_from(
    ["quadratic", "cross_entropy", "log_likelihood"]), dtype=JSON | st.sampled_from(
    ["float32", "float64"]), input_shape=JSON | st.lists(st.integers(-1, 10 ** 9), max_size=4),
    version=JSON | st.just(1), n_params=st.integers(0, 64))
def test_arbitrary_architectures(worker, tmp_path, layers, loss, dtype, input_shape, version,
                                 n_params):
    arch = {"format": "fastnet", "version": version, "layers": layers, "input_shape": input_shape,
            "loss": loss, "dtype": dtype}
    path = tmp_path / "m.npz"
    np.savez(path, params=np.zeros(n_params, np.float32),
             architecture=np.array(json.dumps(arch, allow_nan=True)))
    run_limited(worker, "load", path)


def _npy_header(descr, shape) -> bytes:
    """A version-1.0 ``.npy`` header declaring ``descr`` and ``shape``, whatever the data."""
    text = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode()
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text


@FUZZ
@given(shape=st.lists(st.integers(0, 2 ** 62), max_size=3), descr=st.sampled_from(
    ["<f4", "<f8", ">f8", "|u1", "<U10", "<U99999999", "|O", "|V8", "<c16", [("a", "<f4")],
     [("a", "|O")]]), payload=st.integers(0, 256), deflated=st.booleans())
def test_lying_npy_headers(worker, tmp_path, shape, descr, payload, deflated):
    """params.npy declares any shape and dtype and holds ``payload`` bytes (stored or
    deflated: a deflated member of zeros may claim far more than the file's size)."""
    path = tmp_path / "m.npz"
    method = zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as z:
        z.writestr("params.npy", _npy_header(descr, shape) + b"\0" * payload)
        arch = Model([6, 5, 3]).architecture()
        z.writestr("architecture.npy", _npy_header("<U400", ()) +
                   json.dumps(arch).ljust(400).encode("utf-32-le"))
    run_limited(worker, "load", path)
