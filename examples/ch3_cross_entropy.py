"""Chapter 3: network2.py, [784, 30, 10], cross-entropy, 30 epochs, mini-batch 10, eta 0.5,
lmbda 5.0, test accuracy monitored. The book reports 96.49% on the test data.

The book runs this in its regularisation section, before it introduces the scaled initial
weights, after ``net.large_weight_initializer()``; that is this script's default
(``--init default`` keeps network2's default N(0, 1/n_in) weights).

    python examples/ch3_cross_entropy.py [--runs 3] [--init large|default]
"""

from _book_runs import add_init_option, cross_entropy_network, main


def run(data, args):
    training_data, validation_data, test_data = data
    net = cross_entropy_network([784, 30, 10], args.init)
    _, accuracy, _, _ = net.SGD(training_data, args.epochs, 10, 0.5, lmbda=5.0,
                                evaluation_data=test_data, monitor_evaluation_accuracy=True)
    return [100 * a / len(test_data) for a in accuracy]


if __name__ == "__main__":
    main(__doc__, "96.49% test", run, default_epochs=30, add_options=add_init_option)
