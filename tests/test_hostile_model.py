"""``fastnet.load`` fuzzed: model files with bytes flipped, cut, inserted, and architectures
replaced by arbitrary JSON. Whatever the file, ``load`` returns a model or raises
``ValueError``; it never crashes, and never allocates more than ~100× the file's size before
refusing it (each case runs in a child under ``RLIMIT_AS``, see ``hostile.py``).

``FASTNET_FUZZ_EXAMPLES`` sets the number of examples per test (default 200); under
``CI=true`` the examples are drawn from a fixed seed, so a failure there repeats.
"""

import json
import os
import zipfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastnet  # noqa: E402
from fastnet import Conv2D, Dense, Flatten, MaxPool2D, Model  # noqa: E402
from hostile import error_name, needs_fork, outcome  # noqa: E402

pytestmark = needs_fork

FUZZ = settings(max_examples=int(os.environ.get("FASTNET_FUZZ_EXAMPLES", "200")),
                deadline=None, derandomize=os.environ.get("CI") == "true",
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
SLACK = 16 << 20          # the child's own small allocations (parsing, a few arrays)
ALLOWED = {"ok", "builtins.ValueError"}


def _valid_files(directory):
    dense = Model([6, 5, 3], loss="log_likelihood", seed=0)
    cnn = Model([Conv2D(1, 2, 3, "relu"), MaxPool2D(2), Flatten(), Dense(8, 3, "softmax")],
                loss="log_likelihood", input_shape=(1, 6, 6), dtype="float64", seed=0)
    paths = []
    for i, m in enumerate((dense, cnn)):
        path = directory / f"valid{i}.npz"
        m.save(path)
        paths.append(path.read_bytes())
    return paths


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    return _valid_files(tmp_path_factory.mktemp("valid"))


def _check(path):
    size = path.stat().st_size
    result = outcome(fastnet.load, path, limit=100 * size + SLACK)
    assert error_name(result) in ALLOWED, result


@FUZZ
@given(which=st.integers(0, 1), edits=st.lists(
    st.tuples(st.sampled_from(["flip", "cut", "insert", "set"]), st.floats(0, 1),
              st.binary(min_size=1, max_size=8)), min_size=1, max_size=4))
def test_mutated_bytes(tmp_path, valid, which, edits):
    data = bytearray(valid[which])
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
    _check(path)


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
def test_arbitrary_architectures(tmp_path, layers, loss, dtype, input_shape, version, n_params):
    arch = {"format": "fastnet", "version": version, "layers": layers, "input_shape": input_shape,
            "loss": loss, "dtype": dtype}
    path = tmp_path / "m.npz"
    np.savez(path, params=np.zeros(n_params, np.float32),
             architecture=np.array(json.dumps(arch, allow_nan=True)))
    _check(path)


def _npy_header(descr, shape) -> bytes:
    """A version-1.0 ``.npy`` header declaring ``descr`` and ``shape``, whatever the data."""
    text = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode()
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text


@FUZZ
@given(shape=st.lists(st.integers(0, 2 ** 62), max_size=3), descr=st.sampled_from(
    ["<f4", "<f8", ">f8", "|u1", "<U10", "<U99999999", "|O", "|V8", "<c16", [("a", "<f4")],
     [("a", "|O")]]), payload=st.integers(0, 256))
def test_lying_npy_headers(tmp_path, shape, descr, payload):
    """params.npy declares any shape and dtype and holds ``payload`` bytes."""
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("params.npy", _npy_header(descr, shape) + b"\0" * payload)
        z.writestr("architecture.npy", _npy_header("<U64", ()) + b"\0" * 256)
    _check(path)


def test_the_valid_files_load(tmp_path, valid):
    """The fuzzers' starting points are good files (else they would test nothing)."""
    for i, data in enumerate(valid):
        path = tmp_path / f"v{i}.npz"
        path.write_bytes(data)
        assert outcome(fastnet.load, path, limit=100 * len(data) + SLACK) == "ok"
