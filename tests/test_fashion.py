"""Fashion-MNIST loading (``fastnet.datasets.load_fashion_mnist``) on IDX files the tests write:
the checksums (of the .gz files) are patched to the written files' own; a file that does not
match them, or is not gzipped, is refused; the download goes into Fashion-MNIST's own cache."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import struct
import threading

import numpy as np
import pytest

from fastnet import datasets
from fastnet.datasets import MNISTNotFoundError, default_data_dir, load_fashion_mnist
from offline import isolate

NAMES = list(datasets.FASHION_MNIST_GZ_MD5)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    isolate(monkeypatch, tmp_path)


def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


@pytest.fixture
def fashion(monkeypatch):
    """The four files of a 12-train / 4-test look-alike, gzipped, with their checksums patched
    into the tables: {name + ".gz": bytes}."""
    rng = np.random.default_rng(1)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, 12, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, 4, dtype=np.uint8)}
    files = {}
    for name, arr in arrays.items():
        blob = gzip.compress(_idx(arr), mtime=0)
        monkeypatch.setitem(datasets.FASHION_MNIST_GZ_SHA256, name,
                            hashlib.sha256(blob).hexdigest())
        monkeypatch.setitem(datasets.FASHION_MNIST_GZ_MD5, name, hashlib.md5(blob).hexdigest())
        files[name + ".gz"] = blob
    return files, arrays


def _write(directory, files):
    directory.mkdir(parents=True, exist_ok=True)
    for fname, blob in files.items():
        (directory / fname).write_bytes(blob)
    return directory


def test_loads_from_a_directory(tmp_path, fashion):
    files, arrays = fashion
    (x, y), (xv, yv), (xt, yt) = load_fashion_mnist(_write(tmp_path / "f", files), validation=2)
    assert x.shape == (10, 784) and xv.shape == (2, 784) and xt.shape == (4, 784)
    assert x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(yt, arrays["t10k-labels-idx1-ubyte"])
    np.testing.assert_allclose(xt[0] * 255, arrays["t10k-images-idx3-ubyte"][0].ravel(), atol=1e-4)


def test_the_real_mnist_checksums_refuse_these_files(tmp_path, fashion, monkeypatch):
    files, _ = fashion
    monkeypatch.setitem(datasets.FASHION_MNIST_GZ_MD5, NAMES[2], "0" * 32)
    with pytest.raises(ValueError, match="md5 of the .gz file mismatch.*not the standard "
                                         "Fashion-MNIST"):
        load_fashion_mnist(_write(tmp_path / "f", files))


def test_raw_files_are_not_used(tmp_path, fashion):
    """Only the .gz files can be checked against the published checksums."""
    files, _ = fashion
    d = tmp_path / "raw"
    d.mkdir()
    for fname, blob in files.items():
        (d / fname.removesuffix(".gz")).write_bytes(gzip.decompress(blob))
    with pytest.raises(MNISTNotFoundError, match="Fashion-MNIST files not found"):
        load_fashion_mnist(d)


def test_env_variable_and_own_cache_directory(tmp_path, fashion, monkeypatch):
    files, _ = fashion
    assert default_data_dir("fashion-mnist") == tmp_path / "cache" / "fashion-mnist"
    with pytest.raises(ValueError, match="dataset must be"):
        default_data_dir("cifar")
    monkeypatch.setenv("FASTNET_FASHION_DATA", str(_write(tmp_path / "env", files)))
    monkeypatch.setenv("FASTNET_DATA", str(tmp_path / "nothing-here"))
    (x, _), _, _ = load_fashion_mnist(validation=0)
    assert len(x) == 12
    monkeypatch.delenv("FASTNET_FASHION_DATA")
    with pytest.raises(MNISTNotFoundError) as exc:
        load_fashion_mnist(download=False)
    assert "FASTNET_FASHION_DATA" in str(exc.value) and "Fashion-MNIST" in str(exc.value)


def test_downloads_once_into_its_cache(tmp_path, fashion):
    files, _ = fashion
    asked = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            body = files.get(self.path.rsplit("/", 1)[-1])
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/fashion/"
        load_fashion_mnist(mirrors=[url], verbose=False, validation=2)
        load_fashion_mnist(mirrors=[url], verbose=False, validation=2)
    finally:
        server.shutdown()
    assert len(asked) == 4
    assert sorted(p.name for p in default_data_dir("fashion-mnist").iterdir()) == sorted(files)
    assert not default_data_dir("mnist").joinpath("train-images-idx3-ubyte.gz").exists()
