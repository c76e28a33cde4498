"""Tests for fastnet.datasets: MNIST from IDX files (local, downloaded) and the book's pickle.

The real MNIST files are found via $FASTNET_DATA, else <repo>/../shared/data/mnist; tests that need
them are skipped when neither exists. No test touches the network: an autouse fixture points the
default mirrors at a closed local port and refuses connections to any host but 127.0.0.1, and the
download tests run HTTP mirrors on 127.0.0.1 (good, bad-hash and truncated files), a socket that
accepts but never answers, and one whose backlog is full (connections time out).
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from fastnet import _http, datasets
from fastnet.datasets import (
    MNIST_SHA256,
    MNISTNotFoundError,
    default_data_dir,
    load_mnist,
    load_mnist_pickle,
    read_idx,
)
from offline import closed_port_url, isolate

NAMES = list(MNIST_SHA256)


def _real_file(mnist_dir: Path, name: str) -> Path:
    raw = mnist_dir / name
    return raw if raw.is_file() else mnist_dir / (name + ".gz")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Every test offline, with a private cache (``offline.isolate``)."""
    isolate(monkeypatch, tmp_path)


class Mirror:
    """An HTTP server on 127.0.0.1 serving ``files`` (path -> bytes) under ``url``; paths in
    ``short`` announce their full length but send half and close. ``asked``: paths requested."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.short: set[str] = set()
        self.asked: list[str] = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.lstrip("/")
                mirror.asked.append(path)
                body = mirror.files.get(path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if path in mirror.short else body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, prefix: str, files: dict[str, bytes]) -> str:
        """Serve ``files`` (name -> bytes) under ``<url><prefix>/``; returns that base URL."""
        self.files.update({f"{prefix}/{n}": b for n, b in files.items()})
        return f"{self.url}{prefix}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror():
    m = Mirror()
    yield m
    m.close()


@pytest.fixture
def silent_url():
    """A server that accepts connections (the kernel does) but never answers a request."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/mnist/"


@pytest.fixture
def black_hole_url():
    """A server whose accept queue is full: new connections hang (Linux drops their SYN),
    as behind a firewall that drops packets."""
    with socket.socket() as s, socket.socket() as filler:
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        filler.connect(s.getsockname())
        probe = socket.socket()
        probe.settimeout(0.2)
        try:
            probe.connect(s.getsockname())
            pytest.skip("this kernel completes connections beyond a full backlog")
        except OSError:
            pass
        finally:
            probe.close()
        yield f"http://127.0.0.1:{s.getsockname()[1]}/mnist/"


# --------------------------------------------------------------------------- real MNIST


@pytest.fixture(scope="module")
def raw_train(mnist_dir):
    return read_idx(_real_file(mnist_dir, NAMES[0])), read_idx(_real_file(mnist_dir, NAMES[1]))


def test_shapes_and_dtypes(mnist):
    expected = [50000, 10000, 10000]
    for (x, y), n in zip(mnist, expected):
        assert x.shape == (n, 784) and x.dtype == np.float32 and x.flags.c_contiguous
        assert y.shape == (n,) and y.dtype == np.int64


def test_split_is_the_books(mnist, raw_train):
    """train = first 50,000 of the training file, val = its last 10,000, scaled by 1/255."""
    images, labels = raw_train
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    (tr_x, tr_y), (va_x, va_y), _ = mnist
    flat = images.reshape(60000, 784).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(tr_x, flat[:50000])
    np.testing.assert_array_equal(va_x, flat[50000:])
    np.testing.assert_array_equal(tr_y, labels[:50000])
    np.testing.assert_array_equal(va_y, labels[50000:])


def test_value_range_and_mean_pixel(mnist):
    (tr_x, _), (va_x, _), (te_x, _) = mnist
    for x in (tr_x, va_x, te_x):
        assert x.min() == 0.0 and x.max() == 1.0
    total = tr_x.sum(dtype=np.float64) + va_x.sum(dtype=np.float64)
    assert abs(total / (60000 * 784) - 0.1306604762738429) < 1e-6


def test_labels(mnist):
    for _, y in mnist:
        assert y.min() == 0 and y.max() == 9
        assert set(np.unique(y)) == set(range(10))


def test_fastnet_data_env_and_empty_validation(monkeypatch, mnist_dir):
    monkeypatch.setenv("FASTNET_DATA", str(mnist_dir))
    (tr_x, tr_y), (va_x, va_y), (te_x, _) = load_mnist(validation=0, download=False)
    assert tr_x.shape == (60000, 784) and tr_y.shape == (60000,)
    assert va_x.shape == (0, 784) and va_x.dtype == np.float32
    assert va_y.shape == (0,) and va_y.dtype == np.int64
    assert te_x.shape == (10000, 784)


def test_reads_uncompressed_files(tmp_path, mnist, mnist_dir):
    for name in NAMES:
        (tmp_path / name).write_bytes(gzip.decompress(_real_file(mnist_dir, name).read_bytes()))
    got = load_mnist(tmp_path, validation=10000)
    for (x, y), (ex, ey) in zip(got, mnist):
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)


def test_real_checksum_mismatch_names_file_and_hashes(tmp_path, mnist_dir):
    for name in NAMES[:3]:
        (tmp_path / (name + ".gz")).symlink_to(_real_file(mnist_dir, name))
    labels = bytearray(gzip.decompress(_real_file(mnist_dir, NAMES[3]).read_bytes()))
    labels[-1] = (labels[-1] + 1) % 10  # still a valid label: only the hash can tell
    (tmp_path / NAMES[3]).write_bytes(bytes(labels))
    with pytest.raises(ValueError) as exc:
        load_mnist(tmp_path)
    msg = str(exc.value)
    assert NAMES[3] in msg and MNIST_SHA256[NAMES[3]] in msg
    assert hashlib.sha256(labels).hexdigest() in msg


def test_download_into_cache(monkeypatch, tmp_path, capsys, mirror, mnist, mnist_dir):
    """First mirror refuses connections, second serves the real files: verified, written
    atomically, once; the refusing mirror is not asked again; one stderr line per URL tried."""
    dead = closed_port_url()
    good = mirror.serve("b", {n + ".gz": _real_file(mnist_dir, n).read_bytes() for n in NAMES})
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy_replace(src, dst):
        replaced.append((os.fspath(src), os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy_replace)
    got = load_mnist(mirrors=[dead, good])
    cache = tmp_path / "cache"
    assert sorted(p.name for p in cache.iterdir()) == sorted(n + ".gz" for n in NAMES)
    assert len(replaced) == 4
    for src, dst in replaced:  # temp file in the same directory, then renamed over
        assert Path(src).parent == Path(dst).parent == cache and src.endswith(".tmp")
    assert sorted(mirror.asked) == sorted(f"b/{n}.gz" for n in NAMES)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 5, err  # the dead mirror once (then skipped), the good one four times
    assert err[0].startswith(f"fastnet: downloading {dead}{NAMES[0]}.gz ... failed: ")
    assert "refused" in err[0]
    assert all(line.endswith("MB)") and "... done (" in line for line in err[1:])
    for (x, y), (ex, ey) in zip(got, mnist):
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)
    # Second call: found in the cache, nothing asked of the network.
    mirror.asked.clear()
    tr, _, _ = load_mnist(mirrors=[dead, good], validation=0, verbose=False)
    assert mirror.asked == [] and tr[0].shape == (60000, 784)


# --------------------------------------------------------------------------- synthetic MNIST


def _idx(arr: np.ndarray, type_byte: int = 0x08) -> bytes:
    header = bytes([0, 0, type_byte, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.tobytes()


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A 7-train / 3-test MNIST look-alike in tmp_path/tiny (gzipped), hashes patched in."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 7, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 3, dtype=np.uint8),
    }
    d = tmp_path / "tiny"
    d.mkdir()
    for name, arr in arrays.items():
        data = _idx(arr)
        monkeypatch.setitem(MNIST_SHA256, name, hashlib.sha256(data).hexdigest())
        (d / (name + ".gz")).write_bytes(gzip.compress(data))
    return d, arrays


def test_tiny_split_and_scaling(tiny):
    d, arrays = tiny
    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = load_mnist(d, validation=np.int64(2))
    images = arrays["train-images-idx3-ubyte"].reshape(7, 784)
    np.testing.assert_array_equal(tr_x, images[:5].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(va_x, images[5:].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(tr_y, arrays["train-labels-idx1-ubyte"][:5])
    np.testing.assert_array_equal(va_y, arrays["train-labels-idx1-ubyte"][5:])
    assert te_x.shape == (3, 784) and te_y.dtype == np.int64


def test_truncated_gzip_file(tiny):
    d, _ = tiny
    f = d / "train-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-6])
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz.*truncated or corrupt"):
        load_mnist(d, validation=2)


def test_truncated_raw_file(tiny):
    d, _ = tiny
    gz = d / "t10k-images-idx3-ubyte.gz"
    data = gzip.decompress(gz.read_bytes())
    gz.unlink()
    (d / "t10k-images-idx3-ubyte").write_bytes(data[:-100])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: IDX file is truncated"):
        load_mnist(d, validation=2)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"\x01" + b[1:], "not an IDX file"),
        (lambda b: b[:2] + b"\x07" + b[3:], "unsupported IDX element type 0x07"),
        (lambda b: b[:2] + b"\x0c" + b[3:], "truncated"),  # int32 payload: 4x the bytes
        (lambda b: b[:3] + b"\x02" + b[4:], "corrupt"),  # 2 dims read as (7, 28): wrong size
        (lambda b: b[:3] + b"\x09", "truncated or corrupt IDX header"),
        (lambda b: b[:2], "no header"),
        (lambda b: b + b"\x00", "trailing bytes"),
    ],
)
def test_corrupt_header(tiny, mutate, message):
    d, _ = tiny
    gz = d / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(mutate(gzip.decompress(gz.read_bytes()))))
    with pytest.raises(ValueError, match=message) as exc:
        load_mnist(d, validation=2)
    assert "train-images-idx3-ubyte.gz" in str(exc.value)


def test_wrong_shape_and_dtype(tiny):
    d, arrays = tiny
    name = "t10k-images-idx3-ubyte"
    (d / (name + ".gz")).unlink()
    (d / name).write_bytes(_idx(arrays[name].reshape(3, 784)))
    with pytest.raises(ValueError, match=r"shape \(n, 28, 28\), got \(3, 784\)"):
        load_mnist(d, validation=2)
    (d / name).write_bytes(_idx(arrays[name].view(np.int8), 0x09))
    with pytest.raises(ValueError, match="expected uint8"):
        load_mnist(d, validation=2)


def test_label_range_and_count(tiny, monkeypatch):
    d, arrays = tiny
    name = "train-labels-idx1-ubyte"
    bad = arrays[name].copy()
    bad[3] = 10
    (d / (name + ".gz")).write_bytes(gzip.compress(_idx(bad)))
    with pytest.raises(ValueError, match="labels must be in 0..9, found 10"):
        load_mnist(d, validation=2)
    short = _idx(arrays[name][:6])
    monkeypatch.setitem(MNIST_SHA256, name, hashlib.sha256(short).hexdigest())
    (d / (name + ".gz")).write_bytes(gzip.compress(short))
    with pytest.raises(ValueError, match="holds 7 images but .* holds 6 labels"):
        load_mnist(d, validation=2)


def test_checksum_mismatch(tiny):
    d, arrays = tiny
    name = "t10k-labels-idx1-ubyte"
    labels = arrays[name].copy()
    labels[0] = (labels[0] + 1) % 10
    data = _idx(labels)
    (d / (name + ".gz")).write_bytes(gzip.compress(data))
    with pytest.raises(ValueError, match="sha256") as exc:
        load_mnist(d, validation=2)
    msg = str(exc.value)
    assert name in msg and MNIST_SHA256[name] in msg and hashlib.sha256(data).hexdigest() in msg


@pytest.mark.parametrize("bad", [-1, 60000, 10**9, 1.5, 10000.0, "10", True, None])
def test_validation_argument(tmp_path, bad):
    with pytest.raises(ValueError, match="validation"):
        load_mnist(tmp_path / "nowhere", validation=bad)


def test_validation_larger_than_training_file(tiny):
    d, _ = tiny
    with pytest.raises(ValueError, match="validation=7 leaves no training images"):
        load_mnist(d, validation=7)


# --------------------------------------------------------------------------- missing / download


def test_explicit_path_missing_never_downloads(tmp_path, monkeypatch, mirror):
    monkeypatch.setattr(datasets, "MIRRORS", (mirror.serve("m", {}),))
    where = tmp_path / "not-here"
    with pytest.raises(MNISTNotFoundError) as exc:
        load_mnist(where)
    assert isinstance(exc.value, FileNotFoundError)
    msg = str(exc.value)
    assert str(where) in msg and "no such directory" in msg
    assert "load_mnist(path=" in msg and "FASTNET_DATA=" in msg and "--data DIR" in msg
    assert all(n in msg for n in NAMES)
    assert exc.value.missing == tuple(NAMES) and exc.value.looked == ((where, "path argument"),)
    assert mirror.asked == []


def test_no_network_lists_every_place(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("FASTNET_DATA", str(data))
    mirror_a, mirror_b = closed_port_url(), closed_port_url().rstrip("/")
    with pytest.raises(MNISTNotFoundError) as exc:
        load_mnist(mirrors=[mirror_a, mirror_b], verbose=False)
    msg = str(exc.value)
    assert str(data) in msg and "$FASTNET_DATA" in msg
    assert str(tmp_path / "cache") in msg
    assert mirror_a + "train-images-idx3-ubyte.gz" in msg
    assert mirror_b + "/train-images-idx3-ubyte.gz" in msg
    assert "refused" in msg and "load_mnist(path=" in msg and "--data DIR" in msg
    assert msg.count("not tried (the mirror was unreachable for an earlier file)") == 6
    assert len(exc.value.failures) == 4
    assert not (tmp_path / "cache").exists()


def test_default_mirrors_are_read_at_call_time(monkeypatch, mirror, tiny):
    d, _ = tiny
    monkeypatch.setattr(datasets, "MIRRORS",
                        (mirror.serve("m", {n + ".gz": (d / (n + ".gz")).read_bytes()
                                            for n in NAMES}),))
    (tr_x, _), _, _ = load_mnist(validation=2, verbose=False)
    assert tr_x.shape == (5, 784) and len(mirror.asked) == 4


def test_download_disabled(tmp_path, monkeypatch, mirror):
    monkeypatch.setattr(datasets, "MIRRORS", (mirror.serve("m", {}),))
    with pytest.raises(MNISTNotFoundError, match="download disabled") as exc:
        load_mnist(download=False)
    assert str(tmp_path / "cache") in str(exc.value) and mirror.asked == []


def test_download_rejects_wrong_hash_leaving_nothing(tiny, tmp_path, mirror):
    d, _ = tiny
    files = {n + ".gz": (d / (n + ".gz")).read_bytes() for n in NAMES}
    bad = "train-images-idx3-ubyte"
    files[bad + ".gz"] = gzip.compress(_idx(np.zeros((2, 28, 28), np.uint8)))
    url = mirror.serve("a", files)
    with pytest.raises(ValueError, match="sha256 mismatch") as exc:
        load_mnist(mirrors=[url], verbose=False)
    assert MNIST_SHA256[bad] in str(exc.value) and url + bad + ".gz" in str(exc.value)
    cache = tmp_path / "cache"
    assert not (cache / (bad + ".gz")).exists()
    assert not list(cache.glob("*.part")) and not list(cache.glob(".*"))


def test_download_truncated_response_falls_back(tiny, tmp_path, mirror):
    """Mirror A's gzip streams are cut short (half of them also as HTTP bodies shorter than
    their Content-Length): each is refused and mirror B, which serves them whole, is used."""
    d, arrays = tiny
    whole = {n + ".gz": (d / (n + ".gz")).read_bytes() for n in NAMES}
    url_a = mirror.serve("a", {n: b[:-8] for n, b in whole.items()})
    url_b = mirror.serve("b", whole)
    mirror.short |= {f"a/{n}.gz" for n in NAMES[:2]}
    (tr_x, _), _, (_, te_y) = load_mnist(mirrors=[url_a, url_b], validation=2, verbose=False)
    assert tr_x.shape == (5, 784)
    np.testing.assert_array_equal(te_y, arrays["t10k-labels-idx1-ubyte"])
    assert len(mirror.asked) == 8  # a truncated file does not make a mirror "unreachable"
    # Only mirror A: not found, with each reason listed.
    for f in (tmp_path / "cache").iterdir():
        f.unlink()
    with pytest.raises(MNISTNotFoundError) as exc:
        load_mnist(mirrors=[url_a], verbose=False)
    msg = str(exc.value)
    assert "IncompleteRead" in msg and "gzip stream is truncated or corrupt" in msg


def test_download_read_timeout(tiny, monkeypatch, capsys, silent_url, mirror):
    """A mirror that accepts the connection but never answers costs one read timeout, once:
    it is not asked for the other three files; the next mirror serves them."""
    d, _ = tiny
    monkeypatch.setattr(_http, "READ_TIMEOUT_S", 0.5)
    good = mirror.serve("b", {n + ".gz": (d / (n + ".gz")).read_bytes() for n in NAMES})
    t0 = time.perf_counter()
    (tr_x, _), _, _ = load_mnist(mirrors=[silent_url, good], validation=2)
    assert time.perf_counter() - t0 < 3
    assert tr_x.shape == (5, 784) and len(mirror.asked) == 4
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 5 and "timed out" in err[0] and silent_url in err[0]


def test_download_connect_timeout(monkeypatch, capsys, black_hole_url):
    """A mirror whose connections hang (packets dropped) fails after the connect timeout, once,
    and the error says how to point fastnet at local files."""
    monkeypatch.setattr(_http, "CONNECT_TIMEOUT_S", 0.5)
    t0 = time.perf_counter()
    with pytest.raises(MNISTNotFoundError) as exc:
        load_mnist(mirrors=[black_hole_url])
    assert time.perf_counter() - t0 < 3
    msg = str(exc.value)
    assert "timed out" in msg and "--data DIR" in msg and "FASTNET_DATA=" in msg
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "failed: URLError" in err[0] and "timed out" in err[0]


def test_interrupted_write_leaves_no_partial_file(tiny, tmp_path, monkeypatch, mirror):
    d, _ = tiny
    url = mirror.serve("a", {n + ".gz": (d / (n + ".gz")).read_bytes() for n in NAMES})

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(MNISTNotFoundError, match="disk full"):
        load_mnist(mirrors=[url], verbose=False)
    assert list((tmp_path / "cache").iterdir()) == []


# --------------------------------------------------------------------------- helpers


def test_read_idx_other_types_and_file_objects(tmp_path):
    arr = np.arange(-3, 3, dtype=np.int32).reshape(2, 3)
    blob = _idx(arr.astype(">i4"), 0x0C)
    got = read_idx(io.BytesIO(gzip.compress(blob)))
    assert got.dtype == np.int32 and got.dtype.isnative and got.flags.writeable
    np.testing.assert_array_equal(got, arr)
    f = tmp_path / "x.idx"
    f.write_bytes(_idx(np.array([1.5, -2.0], ">f8"), 0x0E))
    np.testing.assert_array_equal(read_idx(f), [1.5, -2.0])
    f.write_bytes(blob[:-1])
    with pytest.raises(ValueError, match=r"x\.idx: IDX file is truncated"):
        read_idx(str(f))


def test_default_data_dir(monkeypatch, tmp_path):
    assert default_data_dir() == tmp_path / "cache"  # $FASTNET_CACHE, from the autouse fixture
    monkeypatch.delenv("FASTNET_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "fastnet" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".cache" / "fastnet" / "mnist"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert default_data_dir() == tmp_path / "local" / "fastnet" / "mnist"


def test_import_has_no_side_effects(tmp_path):
    code = (
        "import sys, fastnet.datasets, fastnet.mnist_loader, fastnet.__main__; "
        "assert 'urllib.request' not in sys.modules and 'http.client' not in sys.modules; "
        "assert 'fastnet._safe_pickle' not in sys.modules and 'pickletools' not in sys.modules"
    )
    # run outside the checkout: its fastnet/ (without kernels/) would shadow an installed one
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == ""


# --------------------------------------------------------------------------- book pickle


def _book_like_splits():
    rng = np.random.default_rng(1)
    return tuple(
        (rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64))
        for n in (5, 3, 2)
    )


class _Py2StylePickler(pickle.Pickler):
    """Pickles arrays as Python 2's cPickle did: numpy.core names, payloads as (latin-1) str."""

    def reducer_override(self, obj):
        if type(obj) is np.ndarray:
            func, args, (version, shape, dtype, fortran, data) = obj.__reduce__()
            state = (version, shape, dtype, fortran, data.decode("latin1"))
            return func, (np.ndarray, (0,), "b"), state
        return NotImplemented


def _check_splits(got, expected):
    for (x, y), (ex, ey) in zip(got, expected):
        assert x.dtype == np.float32 and x.shape == ex.shape and y.dtype == np.int64
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)


def test_pickle_loader_protocol2_gz(tmp_path):
    splits = _book_like_splits()
    f = tmp_path / "mnist.pkl.gz"
    f.write_bytes(gzip.compress(pickle.dumps(splits, protocol=2)))
    got = load_mnist_pickle(f)
    assert len(got) == 3
    _check_splits(got, splits)


def test_pickle_loader_python2_style(tmp_path):
    splits = _book_like_splits()
    buf = io.BytesIO()
    _Py2StylePickler(buf, protocol=2).dump(splits)
    blob = buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"cnumpy.core.multiarray\n_reconstruct" in blob
    f = tmp_path / "mnist.pkl"
    f.write_bytes(blob)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy.core deprecation warning either
        got = load_mnist_pickle(str(f))
    _check_splits(got, splits)


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_pickle_loader_rejects_code(tmp_path):
    marker = tmp_path / "pwned"
    x, y = np.zeros((1, 784), np.float32), np.zeros(1, np.int64)
    payload = ((x, y), (x, _Evil(f"touch {marker}")), (x, y))
    f = tmp_path / "evil.pkl.gz"
    f.write_bytes(gzip.compress(pickle.dumps(payload, protocol=2)))
    forbidden = rf"forbidden global.*{os.system.__module__}\.system"
    with pytest.raises(pickle.UnpicklingError, match=forbidden):
        load_mnist_pickle(f)
    assert not marker.exists()
    # eval smuggled the way the pickle module itself would write it.
    f.write_bytes(b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1q\x00\x85R.")
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        load_mnist_pickle(f)
    # _codecs.encode is allowed only for latin-1 (how protocol 2 stores bytes).
    f.write_bytes(pickle.dumps(b"ab", protocol=2).replace(b"latin1", b"rot_13"))
    with pytest.raises(pickle.UnpicklingError, match="forbidden encoding"):
        load_mnist_pickle(f)


def test_pickle_loader_truncated_and_malformed(tmp_path):
    f = tmp_path / "mnist.pkl.gz"
    f.write_bytes(gzip.compress(pickle.dumps(_book_like_splits(), protocol=2))[:-20])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_mnist_pickle(f)
    f.write_bytes(pickle.dumps(((1, 2), (3, 4)), protocol=2))
    with pytest.raises(ValueError, match="expected"):
        load_mnist_pickle(f)
    x = np.zeros((2, 10), np.float32)
    f.write_bytes(pickle.dumps(((x, np.zeros(2, np.int64)),) * 3, protocol=2))
    with pytest.raises(ValueError, match=r"train split has shapes \(2, 10\)"):
        load_mnist_pickle(f)


def test_expand_by_shifts():
    """Five rows per image: the image and its four one-pixel shifts, zeros shifted in."""
    from fastnet.datasets import expand_by_shifts
    rng = np.random.default_rng(0)
    x = rng.random((3, 784)).astype(np.float32)
    y = np.array([4, 7, 1])
    x5, y5 = expand_by_shifts(x, y, seed=1)
    assert x5.shape == (15, 784) and x5.dtype == np.float32
    assert sorted(y5) == [1] * 5 + [4] * 5 + [7] * 5
    img = x[1].reshape(28, 28)
    got = {tuple(np.round(r, 6)) for r, lab in zip(x5, y5) if lab == 7}
    down = np.zeros((28, 28), np.float32)
    down[1:] = img[:-1]
    left = np.zeros((28, 28), np.float32)
    left[:, :-1] = img[:, 1:]
    for want in (img, down, left):
        assert tuple(np.round(want.ravel(), 6)) in got
    with pytest.raises(ValueError, match="784"):
        expand_by_shifts(x[:, :100], y)
