"""Run the book's chapter-1 and chapter-3 drop-ins and network3's first CNN on ``device="cuda"``
next to the CPU, same seeds, and print the test counts and wall times (needs a CUDA GPU).

    FASTNET_DATA=<mnist dir> python examples/gpu_dropins_check.py
"""

import random
import time

import numpy as np

from fastnet import mnist_loader, network, network2, network3


def run(label, fn):
    t = time.perf_counter()
    out = fn()
    print(f"{label}: {out} ({time.perf_counter() - t:.2f} s)", flush=True)


def main():
    training_data, validation_data, test_data = mnist_loader.load_data_wrapper()
    for device in ("cpu", "cuda"):
        random.seed(0)
        np.random.seed(0)
        net = network.Network([784, 30, 10], device=device)
        run(f"network ch1, 3 epochs, {device}",
            lambda: (net.SGD(training_data, 3, 10, 3.0), net.evaluate(test_data))[1])
        random.seed(0)
        np.random.seed(0)
        net2 = network2.Network([784, 30, 10], cost=network2.CrossEntropyCost, device=device)
        run(f"network2 ch3, 3 epochs, {device}",
            lambda: net2.SGD(training_data, 3, 10, 0.5, lmbda=5.0, evaluation_data=test_data,
                             monitor_evaluation_accuracy=True)[1])
    tr, va, te = network3.load_data_shared()
    for device in ("cpu", "cuda"):
        np.random.seed(0)
        net3 = network3.Network([
            network3.ConvPoolLayer(image_shape=(10, 1, 28, 28), filter_shape=(20, 1, 5, 5)),
            network3.FullyConnectedLayer(n_in=20 * 12 * 12, n_out=100),
            network3.SoftmaxLayer(n_in=100, n_out=10)], 10, device=device)
        run(f"network3 first CNN, 1 epoch, {device}",
            lambda: (net3.SGD(tr, 1, 10, 0.1, va, te), net3.test_accuracy)[1])


if __name__ == "__main__":
    main()
