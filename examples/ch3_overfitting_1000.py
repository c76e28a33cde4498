"""Chapter 3: network2.py, [784, 30, 10], cross-entropy, the first 1,000 training images,
400 epochs, mini-batch 10, eta 0.5, lmbda 0.1, all four monitors on with the test data as
evaluation data. The book reports 87.1% test accuracy with lmbda 0.1 and 82.27% with lmbda 0.

As in the book's overfitting experiment (its fig/overfitting.py), the network starts from
``net.large_weight_initializer()``; ``--init default`` keeps network2's default weights.

    python examples/ch3_overfitting_1000.py [--runs 3] [--lmbda 0.1] [--init large|default]
"""

from _book_runs import add_init_option, cross_entropy_network, main

BOOK = {0.1: "87.1% test", 0.0: "82.27% test"}


def options(parser):
    parser.add_argument("--lmbda", type=float, default=0.1,
                        help="L2 regularisation (default 0.1; the book also runs 0)")
    add_init_option(parser)


def run(data, args):
    training_data, validation_data, test_data = data
    net = cross_entropy_network([784, 30, 10], args.init)
    _, accuracy, _, _ = net.SGD(training_data[:1000], args.epochs, 10, 0.5, lmbda=args.lmbda,
                                evaluation_data=test_data,
                                monitor_evaluation_cost=True, monitor_evaluation_accuracy=True,
                                monitor_training_cost=True, monitor_training_accuracy=True)
    return [100 * a / len(test_data) for a in accuracy]


if __name__ == "__main__":
    main(__doc__, lambda args: BOOK.get(args.lmbda, "no figure for this lmbda"), run,
         default_epochs=400, add_options=options)
