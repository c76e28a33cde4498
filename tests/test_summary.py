"""``repr(model)`` and ``model.summary()`` (``fastnet.summary``): layers, output shapes,
parameter counts and FLOPs per sample, checked by hand for a dense and a convolutional net."""

from __future__ import annotations

import fastnet
from fastnet import Conv2D, Dense, Dropout, Flatten, MaxPool2D, Model
from fastnet.summary import layer_rows


def test_dense_repr_and_summary():
    m = Model([784, 30, 10])
    text = repr(m)
    assert text.splitlines()[1].startswith("  Dense(784, 30, activation='sigmoid'),")
    assert "# -> (30,), 23,550 params" in text and "# -> (10,), 310 params" in text
    assert text.endswith("device='cpu', params=23860)")
    table = m.summary().splitlines()
    assert table[1].split()[:2] == ["#", "layer"]
    assert table[3].split()[-2:] == ["23,550", f"{2 * 784 * 30 + 60:,}"]
    assert table[-2].split() == ["total", "23,860", f"{2 * 784 * 30 + 60 + 2 * 30 * 10 + 20:,}"]


def test_cnn_rows():
    m = Model([Conv2D(1, 20, 5, activation="relu"), MaxPool2D(2), Flatten(), Dropout(0.5),
               Dense(2880, 100, "relu"), Dense(100, 10, "softmax")], loss="log_likelihood",
              input_shape=(1, 28, 28))
    rows = layer_rows(m)
    assert [r[2] for r in rows] == [(20, 24, 24), (20, 12, 12), (2880,), (2880,), (100,),
                                    (10,)]
    assert [r[3] for r in rows] == [520, 0, 0, 0, 288100, 1010]
    assert rows[0][4] == (2 * 25 + 2) * 20 * 24 * 24 and rows[1][4] == 20 * 12 * 12 * 3
    assert sum(r[3] for r in rows) == m.params.size
    assert f"params={m.params.size}" in repr(m)


def test_a_loaded_model_reads_the_same(tmp_path):
    m = Model([Dense(5, 4, "tanh"), Dense(4, 2)], seed=0)
    m.save(tmp_path / "m.npz")
    assert repr(fastnet.load(tmp_path / "m.npz")) == repr(m)
    assert fastnet.load(tmp_path / "m.npz").summary() == m.summary()
