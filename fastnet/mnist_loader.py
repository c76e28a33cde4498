"""Drop-in replacement for ``mnist_loader.py`` of Michael Nielsen's *Neural Networks and Deep
Learning*: ``from fastnet import mnist_loader`` instead of ``import mnist_loader``.

``load_data()`` returns the book's split of MNIST as arrays, ``load_data_wrapper()`` the lists of
``(x, y)`` pairs that ``fastnet.network`` / ``fastnet.network2`` (and the book's own modules)
train on. The images come from the standard IDX files through ``fastnet.datasets.load_mnist``
(``$FASTNET_DATA``, then the per-user cache, downloading once if needed), or from the book's
``mnist.pkl.gz`` when its path is given. Nothing is read at import time.

One difference from the book's file: the IDX images are scaled by 1/255 (values in [0, 1]);
the book's pickle holds them scaled by 1/256 (values in [0, 1)), which is what you get by
passing its path. Accuracies differ by a few images at most either way.
"""

from __future__ import annotations

import os

import numpy as np

from fastnet.datasets import load_mnist, load_mnist_pickle

__all__ = ["load_data", "load_data_wrapper", "vectorized_result"]


def load_data(filename=None):
    """Return ``(training_data, validation_data, test_data)``, each a tuple ``(x, y)``.

    ``x`` is a float32 array of shape ``(n, 784)`` (one image per row, values in [0, 1]) and
    ``y`` an int64 array of shape ``(n,)`` holding the digits 0..9; ``n`` is 50,000 for the
    training data and 10,000 for the validation and test data (the validation images are the
    last 10,000 of MNIST's training file, as in the book).

    filename: ``None`` reads the IDX files from the default places (see
        ``fastnet.datasets.load_mnist``); a directory reads the IDX files there; a file is read
        as the book's ``mnist.pkl.gz`` (gzipped or not) without running it: only numpy arrays
        of plain numeric dtypes are rebuilt (``fastnet.datasets.load_mnist_pickle``).

    Raises FileNotFoundError if ``filename`` does not exist (``MNISTNotFoundError``, also a
    FileNotFoundError, if the IDX files are not found), and ValueError naming the file for a
    corrupt or refused one (a pickle naming forbidden globals or dtypes raises
    ``pickle.UnpicklingError``, which is also a ValueError here).
    """
    if filename is None:
        return load_mnist()
    path = os.fspath(filename)
    if os.path.isdir(path):
        return load_mnist(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or directory (expected the book's "
                                "mnist.pkl.gz or a directory holding the MNIST IDX files)")
    return load_mnist_pickle(path)


def load_data_wrapper(filename=None):
    """Return ``(training_data, validation_data, test_data)`` in the form the networks train on.

    ``training_data`` is a list of 50,000 pairs ``(x, y)``: ``x`` a float32 ``(784, 1)`` column
    (the image) and ``y`` a float64 ``(10, 1)`` one-hot column (the digit, as
    ``vectorized_result`` gives it). ``validation_data`` and ``test_data`` are lists of 10,000
    pairs ``(x, y)`` with ``x`` as above and ``y`` the digit (an integer).

    The book returns ``zip`` objects in its Python 3 ports; lists can be iterated more than once
    and the networks accept either. The ``x`` and ``y`` of all pairs are views into one array per
    data set, so building the lists copies no image.
    """
    tr_d, va_d, te_d = load_data(filename)
    training_inputs = tr_d[0].reshape(-1, 784, 1)
    training_results = np.eye(10)[tr_d[1]].reshape(-1, 10, 1)
    training_data = list(zip(training_inputs, training_results))
    validation_data = list(zip(va_d[0].reshape(-1, 784, 1), va_d[1]))
    test_data = list(zip(te_d[0].reshape(-1, 784, 1), te_d[1]))
    return training_data, validation_data, test_data


def vectorized_result(j):
    """A float64 ``(10, 1)`` column with 1.0 in position ``j`` (a digit 0..9) and zeros
    elsewhere: the desired output of the network for digit ``j``."""
    e = np.zeros((10, 1))
    e[j] = 1.0
    return e
