"""Writes the files in this directory: one small file of each format fastnet saves, as the
format stood when it was written (the tests in tests/test_file_formats.py load them, so a later
fastnet that cannot read them fails there). Run from the repository root:
``python tests/data/make_files.py``. Not run by the tests: the point is that the files stay as
they were written."""

import os
import random
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import fastnet  # noqa: E402
from fastnet import Conv2D, Dense, Flatten, MaxPool2D, Model, network2  # noqa: E402
from test_network3 import tiny_data, tiny_net  # noqa: E402


def main():
    os.chdir(HERE)
    # Model.save: a small CNN (float64) and the outputs it gives on fixed inputs
    model = Model([Conv2D(1, 2, 3, "relu"), MaxPool2D(2), Flatten(), Dense(8, 3, "softmax")],
                  loss="log_likelihood", input_shape=(1, 6, 6), dtype="float64", seed=0)
    x = np.random.default_rng(1).random((5, 36))
    model.fit(x, np.array([0, 1, 2, 1, 0]), epochs=1, batch_size=2, lr=0.3, verbose=False)
    model.save("model_v1.npz")
    np.save("model_v1_x.npy", x)
    np.save("model_v1_predict.npy", model.predict(x))
    # network2.save: the book's JSON
    np.random.seed(3)
    network2.Network([4, 3, 2], cost=network2.CrossEntropyCost).save("network2.json")
    # a network3 checkpoint after 1 of 2 epochs of tests/test_network3.py's tiny run
    data = tiny_data()
    np.random.seed(0)
    tiny_net().SGD(data, 1, 4, 0.5, data, data, checkpoint="network3_checkpoint.npz")
    print("fastnet", fastnet.__version__, "wrote", sorted(os.listdir(HERE)))


if __name__ == "__main__":
    random.seed(0)
    main()
