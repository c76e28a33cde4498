"""Chapter 1: network.py, [784, 100, 10], quadratic cost, 30 epochs, mini-batch 10, eta 3.0,
test accuracy printed after every epoch. The book reports 96.59% (its best epoch).

    python examples/ch1_100_hidden.py [--runs 3]
"""

from _book_runs import main, sgd_counts

from fastnet import network


def run(data, args):
    training_data, validation_data, test_data = data
    net = network.Network([784, 100, 10])
    counts = sgd_counts(net, training_data, args.epochs, 10, 3.0, test_data=test_data)
    return [100 * c / len(test_data) for c in counts]


if __name__ == "__main__":
    main(__doc__, "96.59% test", run, default_epochs=30)
