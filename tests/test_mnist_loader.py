"""fastnet.mnist_loader, the drop-in for the book's mnist_loader.py: the book's split and forms,
from the IDX files or the book's mnist.pkl.gz."""

import gzip
import pickle
import subprocess
import sys

import numpy as np
import pytest

from fastnet import mnist_loader


@pytest.fixture(scope="module")
def wrapped(mnist_dir):
    return mnist_loader.load_data_wrapper(mnist_dir)


def test_load_data_is_the_books_split(mnist_dir, mnist):
    splits = mnist_loader.load_data(mnist_dir)
    assert [len(x) for x, _ in splits] == [50000, 10000, 10000]
    for (x, y), (ex, ey) in zip(splits, mnist):
        assert x.dtype == np.float32 and x.shape[1] == 784 and y.shape == (len(x),)
        assert y.dtype.kind == "i" and 0 <= x.min() and x.max() <= 1
        assert np.array_equal(x, ex) and np.array_equal(y, ey)


def test_load_data_reads_the_default_places(monkeypatch, mnist_dir):
    monkeypatch.setenv("FASTNET_DATA", str(mnist_dir))
    (x, y), _, _ = mnist_loader.load_data()
    assert x.shape == (50000, 784)


def test_wrapper_forms(wrapped, mnist):
    training, validation, test = wrapped
    assert all(isinstance(d, list) for d in wrapped)
    assert [len(d) for d in wrapped] == [50000, 10000, 10000]
    (x, y), (xv, yv), (xt, yt) = mnist
    tx, ty = training[123]
    assert tx.shape == (784, 1) and tx.dtype == np.float32
    assert ty.shape == (10, 1) and ty.dtype == np.float64
    assert np.array_equal(ty, mnist_loader.vectorized_result(y[123]))
    assert np.array_equal(tx[:, 0], x[123])
    for data, labels in ((validation, yv), (test, yt)):
        vx, vy = data[-1]
        assert vx.shape == (784, 1) and int(vy) == labels[-1]
        assert isinstance(vy, (int, np.integer))
    # the pairs are views into one array per data set: building them copies no image
    assert training[0][0].base is not None and training[0][0].base is training[-1][0].base


def test_vectorized_result():
    e = mnist_loader.vectorized_result(7)
    assert e.shape == (10, 1) and e.dtype == np.float64
    assert e[7, 0] == 1.0 and e.sum() == 1.0


def test_the_books_pickle(tmp_path):
    """A file in the book's format (a protocol-2 pickle of three (x, y) array pairs, gzipped)
    is read through the restricted unpickler."""
    rng = np.random.default_rng(0)
    splits = tuple((rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n))
                   for n in (7, 3, 4))
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(splits, f, protocol=2)
    loaded = mnist_loader.load_data(path)
    for (x, y), (ex, ey) in zip(loaded, splits):
        assert np.array_equal(x, ex) and np.array_equal(y, ey)
    training, validation, test = mnist_loader.load_data_wrapper(str(path))
    assert len(training) == 7 and training[2][1][splits[0][1][2], 0] == 1.0
    assert [int(y) for _, y in test] == splits[2][1].tolist()


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(print, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="forbidden global"):
        mnist_loader.load_data(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="mnist.pkl.gz"):
        mnist_loader.load_data(tmp_path / "nope.pkl.gz")


def test_crafted_object_array_pickle_is_refused_not_a_crash(tmp_path):
    """The issue's file: an int64 array's pickled dtype code changed to object ('O8'), so
    numpy would rebuild an object array whose pointers are 0x4141... from the file. Run in a
    subprocess: before the fix the process died of SIGSEGV."""
    path = tmp_path / "e.pkl"
    x = np.full((2, 784), 0x4141414141414141, np.int64)
    y = np.zeros(2, np.uint8)
    d = pickle.dumps(((x, y), (x, y), (x, y)), protocol=2)
    path.write_bytes(d.replace(b"X\x02\x00\x00\x00i8", b"X\x02\x00\x00\x00O8", 1))
    code = ("import pickle, sys\n"
            "from fastnet import mnist_loader\n"
            "try:\n"
            "    mnist_loader.load_data(sys.argv[1])\n"
            "except (ValueError, pickle.UnpicklingError) as e:\n"
            "    print(isinstance(e, ValueError), isinstance(e, pickle.UnpicklingError), e)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.startswith("True True ") and str(path) in proc.stdout
    assert "forbidden array dtype 'O8'" in proc.stdout


def test_refusals_name_the_file(tmp_path):
    path = tmp_path / "bad.pkl"
    path.write_bytes(b"\x80\x02K\x01")  # an int, and no STOP
    with pytest.raises(ValueError, match=f"{path}: pickle is truncated"):
        mnist_loader.load_data(path)
    path.write_bytes(pickle.dumps(print, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=f"{path}: forbidden global"):
        mnist_loader.load_data(path)
