"""Chapter 3: network2.py, [784, 100, 10], cross-entropy, large_weight_initializer, 30 epochs,
mini-batch 10, eta 0.5, lmbda 5.0, validation accuracy monitored. The book reports 97.92% on
the validation data after the last epoch.

    python examples/ch3_large_weights_100.py [--runs 3]
"""

from _book_runs import main

from fastnet import network2


def run(data, args):
    training_data, validation_data, test_data = data
    net = network2.Network([784, 100, 10], cost=network2.CrossEntropyCost)
    net.large_weight_initializer()
    _, accuracy, _, _ = net.SGD(training_data, args.epochs, 10, 0.5, lmbda=5.0,
                                evaluation_data=validation_data,
                                monitor_evaluation_accuracy=True)
    return [100 * a / len(validation_data) for a in accuracy]


if __name__ == "__main__":
    main(__doc__, "97.92% validation (last epoch)", run, default_epochs=30)
