"""fastnet.network2, the drop-in for the book's network2.py: the book's initial weights,
regularised training, monitors and printed lines (against tests/book_reference.py), and the
book's JSON files in both directions."""

import json
import os
import random
import re

import numpy as np
import pytest

from book_reference import (BookCrossEntropyCost, BookNetwork2, BookQuadraticCost, book_load,
                            vectorized_result, assert_same_params, seeded, tiny_data)
from fastnet import network2
from fastnet import Model
from helpers import assert_close

SIZES = [784, 30, 10]


@pytest.fixture(scope="module")
def pairs(mnist):
    """Training pairs (x (784,1) float32, one-hot (10,1)) and validation pairs (x, label)."""
    (x, y), (xv, yv), _ = mnist
    training = list(zip(x.reshape(-1, 784, 1), np.eye(10)[y].reshape(-1, 10, 1)))
    validation = list(zip(xv.reshape(-1, 784, 1), yv))
    return training, validation


# ---------------------------------------------------------------------------- parity
def test_initializers_draw_the_books_weights():
    net, book = seeded(network2.Network, 4, SIZES), seeded(BookNetwork2, 4, SIZES)
    for a, b in zip(net.weights + net.biases, book.weights + book.biases):
        assert np.array_equal(a, b)
    np.random.seed(5)
    net.large_weight_initializer()
    np.random.seed(5)
    biases = [np.random.randn(y, 1) for y in SIZES[1:]]
    weights = [np.random.randn(y, x) for x, y in zip(SIZES[:-1], SIZES[1:])]
    for a, b in zip(net.weights + net.biases, weights + biases):
        assert np.array_equal(a, b)
    assert net.cost is network2.CrossEntropyCost


@pytest.mark.parametrize("cost,book_cost,eta,lmbda", [
    (network2.CrossEntropyCost, BookCrossEntropyCost, 0.5, 5.0),
    (network2.QuadraticCost, BookQuadraticCost, 3.0, 0.1),
])
def test_one_epoch_with_monitors_matches_the_book(pairs, cost, book_cost, eta, lmbda, capsys):
    """1,000 images (n = 1,000 in the decay factor), mini-batch 10, all four monitors."""
    training, validation = pairs
    data, evaluation = training[:1000], validation[:400]
    book = seeded(BookNetwork2, 2, SIZES, cost=book_cost)
    random.seed(2)
    book.SGD(data, 1, 10, eta, lmbda=lmbda)
    net = seeded(network2.Network, 2, SIZES, cost=cost)
    result = net.SGD(data, 1, 10, eta, lmbda=lmbda, evaluation_data=evaluation,
                     monitor_evaluation_cost=True, monitor_evaluation_accuracy=True,
                     monitor_training_cost=True, monitor_training_accuracy=True)
    assert_same_params(net, book, rtol=1e-9)
    (ev_cost,), (ev_acc,), (tr_cost,), (tr_acc,) = result
    assert_close(tr_cost, book.total_cost(data, lmbda), rtol=1e-10, atol=0)
    assert_close(ev_cost, book.total_cost(evaluation, lmbda, convert=True), rtol=1e-10, atol=0)
    assert tr_acc == book.accuracy(data, convert=True)
    assert ev_acc == book.accuracy(evaluation)
    assert capsys.readouterr().out == (
        "Epoch 0 training complete\n"
        f"Cost on training data: {tr_cost}\n"
        f"Accuracy on training data: {tr_acc} / 1000\n"
        f"Cost on evaluation data: {ev_cost}\n"
        f"Accuracy on evaluation data: {ev_acc} / 400\n"
        "\n")
    # the public monitors give the same numbers
    assert net.total_cost(data, lmbda) == tr_cost
    assert net.total_cost(evaluation, lmbda, convert=True) == ev_cost
    assert net.accuracy(data, convert=True) == tr_acc and net.accuracy(evaluation) == ev_acc


def test_monitors_off_print_the_books_lines_and_return_empty_lists(capsys):
    training, _ = tiny_data()
    net = network2.Network([4, 5, 3])
    assert net.SGD(training, 2, 5, 0.5) == ([], [], [], [])
    assert capsys.readouterr().out == ("Epoch 0 training complete\n\n"
                                       "Epoch 1 training complete\n\n")
    with pytest.raises(ValueError, match="need evaluation_data"):
        net.SGD(training, 1, 5, 0.5, monitor_evaluation_accuracy=True)


@pytest.mark.slow
def test_three_full_epochs_reach_the_books_accuracy(pairs, capsys):
    training, validation = pairs
    book = seeded(BookNetwork2, 3, SIZES)
    random.seed(3)
    book_acc = book.SGD(training, 3, 10, 0.5, lmbda=5.0, evaluation_data=validation)
    net = seeded(network2.Network, 3, SIZES)
    _, acc, _, _ = net.SGD(training, 3, 10, 0.5, lmbda=5.0, evaluation_data=validation,
                           monitor_evaluation_accuracy=True)
    assert np.all(np.abs(np.array(acc) - book_acc) <= 2), (acc, book_acc)
    assert capsys.readouterr().out.count(" / 10000\n") == 3


def test_backprop_and_update_mini_batch_match_the_book():
    training, _ = tiny_data()
    for cost, book_cost in ((network2.CrossEntropyCost, BookCrossEntropyCost),
                            (network2.QuadraticCost, BookQuadraticCost)):
        net = seeded(network2.Network, 6, [4, 5, 3], cost=cost)
        book = seeded(BookNetwork2, 6, [4, 5, 3], cost=book_cost)
        for a, b in zip(sum(net.backprop(*training[1]), []), sum(book.backprop(*training[1]), [])):
            assert_close(a, b, rtol=1e-12, atol=1e-15)
        net.update_mini_batch(training[:7], 0.5, 2.0, 23)
        book.update_mini_batch(training[:7], 0.5, 2.0, 23)
        assert_same_params(net, book, rtol=1e-12)


# ---------------------------------------------------------------------------- costs
def test_cost_formulas_and_saturation():
    a = np.array([[0.2], [0.9], [1.0]])
    y = np.array([[0.0], [1.0], [1.0]])
    assert_close(network2.CrossEntropyCost.fn(a, y), BookCrossEntropyCost.fn(a, y),
                 rtol=0, atol=0)
    assert network2.CrossEntropyCost.fn(np.array([[1.0]]), np.array([[0.0]])) == \
        np.finfo(np.float64).max  # the book's nan_to_num(inf)
    assert network2.QuadraticCost.fn(a, y) == BookQuadraticCost.fn(a, y)
    z = np.array([[0.3], [-2.0], [5.0]])
    assert np.array_equal(network2.CrossEntropyCost.delta(z, a, y), a - y)
    assert_close(network2.QuadraticCost.delta(z, a, y), BookQuadraticCost.delta(z, a, y),
                 rtol=1e-15, atol=0)
    # a network driven into saturation (outputs exactly 0.0 / 1.0): total_cost still gives
    # the book's number, 1.8e308-sized terms included
    net, book = seeded(network2.Network, 1, [4, 5, 10]), seeded(BookNetwork2, 1, [4, 5, 10])
    for n in (net, book):
        n.weights = [w * 20 for w in n.weights]
        n.biases = [b * 20 for b in n.biases]
    _, test = tiny_data(n_out=10)
    with np.errstate(over="ignore"):
        expected = book.total_cost(test, 0.5, convert=True)
    assert expected > 1e300  # saturated: log(0) terms turned into 1.8e308 by nan_to_num
    assert_close(net.total_cost(test, 0.5, convert=True), expected, rtol=1e-12, atol=0)


def test_kernel_cross_entropy_sum_matches_the_books_formula(pairs):
    """The CPU backend's evaluate gives Σ cost from z (softplus(z) − y·z), the book's
    nan_to_num(−y ln a − (1−y) ln(1−a)) from a: the same sum away from saturation. (Where an
    output saturates to a == 1.0 the kernel stays finite (≈ z) and the book gives 1.8e308;
    the monitors use the book's formula on predicted outputs, see network2's docstring.)"""
    training, _ = pairs
    net = seeded(network2.Network, 0, SIZES)
    data = training[:2000]
    x = np.concatenate([x.reshape(1, -1) for x, _ in data]).astype(np.float64)
    y = np.concatenate([y.reshape(1, -1) for _, y in data])
    got = net._model().evaluate(x, y)
    total, correct = got["loss"] * len(data), round(got["accuracy"] * len(data))
    book = BookNetwork2(SIZES)
    book.weights, book.biases = net.weights, net.biases
    assert_close(total / len(data), book.total_cost(data, 0.0), rtol=1e-9, atol=0)
    assert correct == book.accuracy(data, convert=True)


# ---------------------------------------------------------------------------- save / load
def test_a_book_file_loads_and_predicts_identically(tmp_path, pairs):
    _, validation = pairs
    book = seeded(BookNetwork2, 8, [784, 12, 10], cost=BookQuadraticCost)
    path = tmp_path / "book.json"
    book.save(path)  # the book's exact key structure and nested lists
    assert set(json.loads(path.read_text())) == {"sizes", "weights", "biases", "cost"}
    np.random.seed(0)
    net = network2.load(path)
    state = np.random.get_state()[1].copy()
    np.random.seed(0)
    book_load(path)  # the book's load draws initial weights first; so does fastnet's
    assert np.array_equal(state, np.random.get_state()[1])
    assert net.cost is network2.QuadraticCost and net.sizes == [784, 12, 10]
    for a, b in zip(net.weights + net.biases, book.weights + book.biases):
        assert np.array_equal(a, b)
    xs = np.concatenate([x for x, _ in validation[:50]], axis=1)
    assert_close(net.feedforward(xs), book.feedforward(xs), rtol=1e-13, atol=1e-300)
    assert net.accuracy(validation[:2000]) == book.accuracy(validation[:2000])


def test_fastnet_files_load_in_the_books_loader(tmp_path):
    training, _ = tiny_data()
    net = seeded(network2.Network, 3, [4, 5, 3], cost=network2.CrossEntropyCost())
    net.SGD(training, 1, 5, 0.5, lmbda=1.0)
    path = tmp_path / "net.json"
    path.write_text("old contents")
    net.save(path)  # an instance as the cost: the book's save fails here, fastnet's does not
    assert os.listdir(tmp_path) == ["net.json"]  # replaced atomically, no temporary left
    data = json.loads(path.read_text())
    assert list(data) == ["sizes", "weights", "biases", "cost"]
    assert data["cost"] == "CrossEntropyCost" and data["sizes"] == [4, 5, 3]
    assert isinstance(data["biases"][0][0], list)  # (y, 1) columns as nested lists
    book = book_load(path)
    assert book.cost is BookCrossEntropyCost
    for a, b in zip(net.weights + net.biases, book.weights + book.biases):
        assert a.shape == b.shape and np.array_equal(a, b)
    again = network2.load(path)
    assert again.cost is network2.CrossEntropyCost


@pytest.mark.parametrize("edit,pattern", [
    (lambda d: d.update(cost="Network"), r"unknown cost 'Network'"),
    (lambda d: d.update(weights=d["weights"][:1]), r"weights must be a list of 2 arrays"),
    (lambda d: d["weights"][1].pop(), r"weights\[1\] has shape \(2, 5\), expected \(3, 5\)"),
    (lambda d: d["biases"][0].append([1.0]), r"biases\[0\] has shape \(6, 1\), expected"),
    (lambda d: d["weights"][0][0].pop(), r"weights\[0\] is not an array of numbers"),
    (lambda d: d.update(sizes=[4, "5", 3]), r"sizes must be a list of at least two"),
    (lambda d: d.pop("cost"), r"keys sizes, weights, biases, cost"),
])
def test_load_rejects_inconsistent_files(tmp_path, edit, pattern):
    net = network2.Network([4, 5, 3])
    path = tmp_path / "net.json"
    net.save(path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=pattern):
        network2.load(path)


def test_load_rejects_non_json(tmp_path):
    path = tmp_path / "net.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a network2 JSON file"):
        network2.load(path)


def _saved(tmp_path):
    """A [4, 5, 3] network's file (path) and its JSON text as a dict."""
    path = tmp_path / "net.json"
    network2.Network([4, 5, 3]).save(path)
    return path, json.loads(path.read_text())


@pytest.mark.parametrize("key,index,text", [
    ("weights", (1, 2, 4), "NaN"), ("weights", (0, 0, 0), "-Infinity"),
    ("biases", (1, 0, 0), "Infinity"), ("biases", (0, 3, 0), "1e999")])
def test_load_refuses_nan_and_inf(tmp_path, key, index, text):
    """JSON's NaN/Infinity literals (which Python's json accepts) and numbers that overflow to
    inf are refused, naming the file and the array; the book's load would accept them."""
    path, data = _saved(tmp_path)
    l, i, j = index
    data[key][l][i][j] = 12345.5
    path.write_text(json.dumps(data).replace("12345.5", text))
    where = re.escape(str(path))
    with pytest.raises(ValueError, match=rf"{where}: {key}\[{l}\] contains NaN or inf "
                                         rf"\(first at \[{i}\]\[{j}\]"):
        network2.load(path)


@pytest.mark.parametrize("value,why", [
    ([["0.5"] * 4] * 5, "str"), ([[None] * 4] * 5, "object"), ([[True] * 4] * 5, "bool"),
    ([[10 ** 400] * 4] * 5, "object")])
def test_load_refuses_arrays_of_non_numbers(tmp_path, value, why):
    """Strings (which ``np.array(..., dtype=float)`` would parse), null, true/false and ints
    too large for a float are not numbers of a weight array."""
    path, data = _saved(tmp_path)
    data["weights"][0] = value
    path.write_text(json.dumps(data))
    where = re.escape(str(path))
    with pytest.raises(ValueError, match=rf"{where}: weights\[0\] is not an array of "
                                         rf"numbers.*{why}"):
        network2.load(path)


@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,                             # RecursionError in json
    '{"sizes": [4, 3], "weights": [' + "9" * 5000 + "]}",    # int beyond the str→int limit
])
def test_load_of_a_hostile_file_is_a_value_error_naming_it(tmp_path, text):
    path = tmp_path / "net.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: not a network2 JSON file"):
        network2.load(path)


def test_load_turns_memory_error_while_parsing_into_value_error(tmp_path, monkeypatch):
    path, _ = _saved(tmp_path)

    def out_of_memory(f):
        raise MemoryError

    monkeypatch.setattr(network2.json, "load", out_of_memory)
    where = re.escape(str(path))
    with pytest.raises(ValueError, match=rf"{where}: not a network2 JSON file.*MemoryError"):
        network2.load(path)


def test_load_allocates_nothing_for_declared_sizes_before_the_shape_check(tmp_path):
    """A file declaring sizes [10**9, 10] with a tiny weight list fails on the shape check
    without building the network (which would draw 10**10 random weights) or allocating
    anything in proportion to the declared sizes."""
    import tracemalloc
    path = tmp_path / "net.json"
    path.write_text(json.dumps({"sizes": [10 ** 9, 10], "weights": [[[0.5]]],
                                "biases": [[[0.0]] * 10], "cost": "CrossEntropyCost"}))
    state = np.random.get_state()[1].copy()
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"weights\[0\] has shape \(1, 1\), expected "
                                             r"\(10, 1000000000\)"):
            network2.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    assert np.array_equal(np.random.get_state()[1], state)  # no weights were drawn


def test_costs_are_checked_and_helpers_exported():
    with pytest.raises(ValueError, match="cost must be QuadraticCost or CrossEntropyCost"):
        network2.Network([4, 5, 3], cost=dict)
    assert np.array_equal(network2.vectorized_result(3), vectorized_result(3))
    assert network2.sigmoid(0.0) == 0.5 and network2.sigmoid_prime(0.0) == 0.25


def test_accuracy_and_total_cost_check_the_convert_form():
    training, test = tiny_data()
    net = network2.Network([4, 5, 3])
    with pytest.raises(TypeError, match=r"data\[0\]: y must be an int label"):
        net.accuracy(training)
    with pytest.raises(ValueError, match=r"data\[0\]: y must have shape \(3, 1\)"):
        net.total_cost(test, 0.0)
    assert net.accuracy(test) == net.accuracy(training, convert=True)
    assert net.total_cost(training, 1.0) == net.total_cost(test, 1.0, convert=True)
