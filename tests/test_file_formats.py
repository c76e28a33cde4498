"""Files written by earlier fastnets still load: one small file of each saved format, committed
in tests/data/ (written by tests/data/make_files.py when the format was current)."""

import json
import shutil
from pathlib import Path

import numpy as np

import fastnet
from fastnet import network2
from test_network3 import tiny_data, tiny_net

DATA = Path(__file__).resolve().parent / "data"


def test_model_file_v1():
    model = fastnet.load(DATA / "model_v1.npz")
    assert [type(layer).__name__ for layer in model.layers] == ["Conv2D", "MaxPool2D",
                                                                  "Flatten", "Dense"]
    assert model.dtype == np.float64 and model.loss == "log_likelihood"
    x = np.load(DATA / "model_v1_x.npy")
    # the same float64 kernels on the same parameters: equal to rounding (sums may be ordered
    # differently by a later kernel; 1e-12 is ~5000 ulps at these magnitudes)
    np.testing.assert_allclose(model.predict(x), np.load(DATA / "model_v1_predict.npy"),
                               rtol=1e-12, atol=1e-15)


def test_network2_json():
    net = network2.load(DATA / "network2.json")
    with open(DATA / "network2.json") as f:
        saved = json.load(f)
    assert net.sizes == saved["sizes"] == [4, 3, 2]
    assert net.cost is network2.CrossEntropyCost
    for got, want in zip(net.weights + net.biases, saved["weights"] + saved["biases"]):
        assert np.array_equal(got, np.array(want))


def test_network3_checkpoint_resumes(tmp_path, capsys):
    """A checkpoint after 1 of 2 epochs resumes to the uninterrupted run's end: bit for bit on
    the machine that wrote it (tests/test_network3.py), to rounding here (the file may come
    from a CPU whose vector width orders the kernels' sums differently)."""
    data = tiny_data()
    np.random.seed(0)
    whole = tiny_net()
    whole.SGD(data, 2, 4, 0.5, data, data)
    path = tmp_path / "run.npz"
    shutil.copy(DATA / "network3_checkpoint.npz", path)
    np.random.seed(0)
    resumed = tiny_net()
    resumed.SGD(data, 2, 4, 0.5, data, data, checkpoint=path)
    assert f"Resuming from {path}: 1 epochs done" in capsys.readouterr().out
    np.testing.assert_allclose(resumed.model.params, whole.model.params, rtol=1e-12,
                               atol=1e-15)
