"""Chapter 1: network.py, [784, 30, 10], quadratic cost, 30 epochs, mini-batch 10, eta 3.0,
test accuracy printed after every epoch. The book reports 95.42% at the peak epoch.

    python examples/ch1_30_hidden.py [--runs 3] [--hidden 30]
"""

from _book_runs import main, sgd_counts

from fastnet import network


def options(parser):
    parser.add_argument("--hidden", type=int, default=30, help="hidden neurons (default 30)")


def run(data, args):
    training_data, validation_data, test_data = data
    net = network.Network([784, args.hidden, 10])
    counts = sgd_counts(net, training_data, args.epochs, 10, 3.0, test_data=test_data)
    return [100 * c / len(test_data) for c in counts]


if __name__ == "__main__":
    main(__doc__, "95.42% test (peak epoch)", run, default_epochs=30, add_options=options)
